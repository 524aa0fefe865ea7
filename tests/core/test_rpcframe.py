"""Consul msgpack-RPC frames (`_core.rpcframe`) on both implementations.

A stream is fed whole, byte by byte, split at every offset and in random chunks; bad
input must raise the same DecodeError subclass, reason and offset from the compiled
module and its twin, whatever the chunking. Random tests name their seed on failure.
"""
from __future__ import annotations

import array
import os
import random

import msgpack
import pytest

from _core import load_impl
from _core.errors import BadHeader, DecodeError, FrameTooLarge, MalformedFrame

packb = msgpack.packb
REQUEST, REPLY = 0, 1
MIB = 1024 * 1024


def _load(kind: str):
    try:
        return load_impl("rpcframe", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


@pytest.fixture(params=["py", "c"])
def rpcframe(request):
    return _load(request.param)


@pytest.fixture
def both():
    """(twin, compiled), for differential tests."""
    return _load("py"), _load("c")


# -- helpers ----------------------------------------------------------------------------

def req(method, seq, body, **extra) -> bytes:
    return packb({"ServiceMethod": method, "Seq": seq, **extra}) + packb(body)


def rep(method, seq, error, body) -> bytes:
    return packb({"ServiceMethod": method, "Seq": seq, "Error": error}) + packb(body)


def unpacked(body):
    """What msgpack itself decodes `body` to (tuples become lists, ...)."""
    return msgpack.unpackb(packb(body), strict_map_key=False)


def feed_chunks(dec, stream: bytes, cuts) -> list:
    frames = []
    edges = [0, *cuts, len(stream)]
    for a, b in zip(edges, edges[1:]):
        frames += dec.feed(stream[a:b])
    return frames


def outcome(mod, stream: bytes, cuts=(), kind=REQUEST, limits=()):
    """("ok", frames, buffered, consumed) or ("error", class, reason, offset)."""
    dec = mod.FrameDecoder(kind, *limits)
    try:
        frames = feed_chunks(dec, stream, cuts)
    except DecodeError as exc:
        return ("error", type(exc).__name__, exc.reason, exc.offset)
    return ("ok", repr(frames), dec.buffered, dec.consumed)   # repr: NaN == NaN


def random_cuts(rng: random.Random, n: int) -> list[int]:
    if n < 2:
        return []
    k = rng.choice([1, 2, 5, max(1, n // 3), max(1, n // 20)])
    return sorted(rng.sample(range(1, n), min(k, n - 1)))


def error_of(mod, stream, kind=REQUEST, limits=(), cuts=()) -> DecodeError:
    dec = mod.FrameDecoder(kind, *limits)
    with pytest.raises(DecodeError) as info:
        feed_chunks(dec, stream, cuts)
    return info.value


INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
STR_LENGTHS = [0, 1, 31, 32, 255, 256, 65535, 65536]
BODIES = [
    None, True, False, *INTS, 0.0, -0.0, 1.5, -2.25e300, float("inf"),
    *("s" * n for n in STR_LENGTHS), "é€😀", "\x00",
    b"", b"\x00", b"x" * 255, b"x" * 256, b"x" * 65535, b"x" * 65536,
    [], [None], list(range(15)), list(range(16)), list(range(65536)),
    {}, {"a": 1}, {str(i): i for i in range(16)}, {1: "int key", -2: None, b"bin": 3},
    [1, [2, [3, [4, {"deep": [5, {"deeper": b"\xff"}]}]]]],
    {"Datacenter": "dc1", "AllowStale": False, "Token": "", "Filter": "x" * 40},
    *(msgpack.ExtType(7, b"e" * n) for n in (0, 1, 2, 3, 4, 8, 16, 17, 255, 256, 65536)),
    msgpack.ExtType(127, b"\x01"),
    msgpack.Timestamp(1, 2), msgpack.Timestamp(2**34 + 1, 999_999_999),
]


# -- round trips ------------------------------------------------------------------------

@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b)[:30])
def test_request_round_trip(rpcframe, body):
    stream = rpcframe.encode_request("Catalog.Register", 42, body)
    dec = rpcframe.FrameDecoder()
    assert dec.feed(stream) == [("Catalog.Register", 42, unpacked(body))]
    assert (dec.buffered, dec.consumed) == (0, len(stream))


@pytest.mark.parametrize("body", BODIES, ids=lambda b: repr(b)[:30])
def test_reply_round_trip(rpcframe, body):
    stream = rpcframe.encode_reply("Catalog.Register", 2**64 - 1, "rpc error: boom", body)
    dec = rpcframe.FrameDecoder(rpcframe.REPLY)
    assert dec.feed(stream) == [("Catalog.Register", 2**64 - 1, "rpc error: boom", unpacked(body))]


@pytest.mark.parametrize("n", STR_LENGTHS + [70000])
def test_method_and_error_lengths_round_trip(rpcframe, n):
    method, error = "m" * n, "é" * n
    dec = rpcframe.FrameDecoder(rpcframe.REPLY, max_header=4 * n + 100)
    for seq in (0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        assert dec.feed(rpcframe.encode_reply(method, seq, error, None)) == [(method, seq, error, None)]


def test_float32_and_all_int_encodings_decode(rpcframe):
    # packb never writes float32 or the narrow int formats for small values: write them by hand.
    body = bytes.fromhex("9a" "ca3fc00000" "cc01" "cd0001" "ce00000001" "cf0000000000000001"
                         "d0ff" "d1fffe" "d2fffffffd" "d3fffffffffffffffc" "d9015a")
    stream = packb({"ServiceMethod": "a", "Seq": 1}) + body
    assert rpcframe.FrameDecoder().feed(stream) == [("a", 1, [1.5, 1, 1, 1, 1, -1, -2, -3, -4, "Z"])]


def test_foreign_header_shapes(rpcframe):
    # Key order, extra keys, non-str keys and "Error" on a request are all fine.
    header = {"Extra": [1, 2], 7: "x", "Seq": 9, "Error": 5, "ServiceMethod": "KVS.Get"}
    assert rpcframe.FrameDecoder().feed(packb(header) + packb("b")) == [("KVS.Get", 9, "b")]


@pytest.mark.parametrize("error, expected", [(None, ""), ("", ""), ("x", "x")])
def test_reply_error_nil_or_present(rpcframe, error, expected):
    stream = rep("S.M", 1, error, 5)
    assert rpcframe.FrameDecoder(rpcframe.REPLY).feed(stream) == [("S.M", 1, expected, 5)]


def test_reply_without_error_key_is_empty(rpcframe):
    stream = req("S.M", 1, 5)
    assert rpcframe.FrameDecoder(rpcframe.REPLY).feed(stream) == [("S.M", 1, "", 5)]


# -- encoder ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", STR_LENGTHS)
def test_encoder_equals_packb(rpcframe, n):
    for method in ("m" * n, "ü" * n):
        for seq in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
            for body in (None, {"a": [1, 2.5, b"x"]}, "x" * n):
                assert rpcframe.encode_request(method, seq, body) == (
                    packb({"ServiceMethod": method, "Seq": seq}) + packb(body))
                for error in ("", "e" * n):
                    assert rpcframe.encode_reply(method, seq, error, body) == (
                        packb({"ServiceMethod": method, "Seq": seq, "Error": error}) + packb(body))


def test_encoder_accepts_subclasses_like_packb(rpcframe):
    class S(str):
        pass

    class I(int):
        pass

    assert rpcframe.encode_request(S("m"), I(300), 1) == packb({"ServiceMethod": "m", "Seq": 300}) + packb(1)


@pytest.mark.parametrize("args, exc", [
    ((1, 1, None), TypeError),
    ((None, 1, None), TypeError),
    ((b"m", 1, None), TypeError),
    (("m", True, None), TypeError),
    (("m", 1.0, None), TypeError),
    (("m", "1", None), TypeError),
    (("m", -1, None), ValueError),
    (("m", 2**64, None), ValueError),
    (("\udc80", 1, None), UnicodeEncodeError),
    (("m", 1, object()), TypeError),
])
def test_encode_request_rejects(rpcframe, args, exc):
    with pytest.raises(exc):
        rpcframe.encode_request(*args)


@pytest.mark.parametrize("error, exc", [(None, TypeError), (1, TypeError), ("\ud800", UnicodeEncodeError)])
def test_encode_reply_rejects_bad_error(rpcframe, error, exc):
    with pytest.raises(exc):
        rpcframe.encode_reply("m", 1, error, None)


# -- chunking ---------------------------------------------------------------------------

MULTI = [
    b"".join(req(f"Svc.M{i}", i * 1000, body) for i, body in
             enumerate([None, {"a": [1, 2, {"b": b"xy"}]}, "s" * 40, [1.5, -7], msgpack.ExtType(3, b"abcd")])),
    req("Status.Ping", 1, {"Datacenter": "dc1", "AllowStale": False, "Token": ""}) * 3,
    req("A", 2**64 - 1, "x" * 300) + req("B", 0, b"y" * 70) + req("C", 5, {}),
]


@pytest.mark.parametrize("stream", MULTI, ids=["mixed", "ping3", "str16"])
def test_every_chunking_gives_the_same_frames(rpcframe, stream):
    whole = rpcframe.FrameDecoder()
    expected = whole.feed(stream)
    assert len(expected) >= 3 and whole.consumed == len(stream)
    assert feed_chunks(rpcframe.FrameDecoder(), stream, range(1, len(stream))) == expected
    for cut in range(1, len(stream)):
        dec = rpcframe.FrameDecoder()
        assert feed_chunks(dec, stream, [cut]) == expected, cut
        assert (dec.buffered, dec.consumed) == (0, len(stream)), cut


def test_frames_come_out_as_soon_as_complete(rpcframe):
    frames = [req("S.M", i, {"i": i}) for i in range(4)]
    dec = rpcframe.FrameDecoder()
    assert dec.feed(frames[0] + frames[1] + frames[2][:5]) == [("S.M", 0, {"i": 0}), ("S.M", 1, {"i": 1})]
    assert dec.consumed == len(frames[0]) + len(frames[1])
    assert dec.buffered == 5
    assert dec.feed(frames[2][5:] + frames[3]) == [("S.M", 2, {"i": 2}), ("S.M", 3, {"i": 3})]
    assert (dec.buffered, dec.consumed) == (0, sum(map(len, frames)))
    assert dec.feed(b"") == []


def test_buffered_holds_only_the_incomplete_object(rpcframe):
    header = packb({"ServiceMethod": "S.M", "Seq": 1})
    body = packb(b"z" * 1000)
    dec = rpcframe.FrameDecoder()
    assert dec.feed(header + body[:600]) == []
    assert dec.buffered == 600                 # the decoded header is not held
    assert dec.feed(body[600:]) == [("S.M", 1, b"z" * 1000)]
    assert dec.buffered == 0


def test_input_buffers_of_any_kind(rpcframe):
    stream = MULTI[0]
    cut = len(stream) // 8 * 4
    dec = rpcframe.FrameDecoder()
    frames = dec.feed(memoryview(array.array("I", stream[:cut])))     # format "I", not "B"
    chunk = bytearray(stream[cut:cut + 30])
    frames += dec.feed(chunk)
    chunk[:] = b"\xc1" * 30                    # the decoder copied what it kept
    frames += dec.feed(memoryview(b"pad" + stream[cut + 30:])[3:])
    assert frames == rpcframe.FrameDecoder().feed(stream)


def test_large_body_in_small_chunks_near_the_limit(rpcframe):
    payload = b"\xab" * (rpcframe.DEFAULT_MAX_BODY - 5)     # bin32: 5 header bytes
    stream = req("Big.Put", 3, payload) + req("Small", 4, 1)
    dec = rpcframe.FrameDecoder()
    frames = []
    for i in range(0, len(stream), 64 * 1024):
        frames += dec.feed(stream[i:i + 64 * 1024])
        assert dec.buffered <= rpcframe.DEFAULT_MAX_BODY
    assert [f[:2] for f in frames] == [("Big.Put", 3), ("Small", 4)]
    assert frames[0][2] == payload


def test_scan_resumes_instead_of_restarting(rpcframe):
    # 300k small elements fed 100 bytes at a time: rescanning from the object's start
    # on every feed would take ~4.5e8 element steps; resuming takes 3e5.
    body = packb(list(range(100)) * 3000)
    stream = packb({"ServiceMethod": "A", "Seq": 1}) + body
    dec = rpcframe.FrameDecoder()
    frames = []
    for i in range(0, len(stream), 100):
        frames += dec.feed(stream[i:i + 100])
    assert len(frames) == 1 and len(frames[0][2]) == 300_000


# -- limits -----------------------------------------------------------------------------

def test_header_limit_is_inclusive(rpcframe):
    header = packb({"ServiceMethod": "Health.ServiceNodes", "Seq": 77})
    stream = header + packb(None)
    assert rpcframe.FrameDecoder(max_header=len(header)).feed(stream) == [("Health.ServiceNodes", 77, None)]
    exc = error_of(rpcframe, stream, limits=(len(header) - 1,))
    assert isinstance(exc, FrameTooLarge)
    assert exc.reason == f"header larger than {len(header) - 1} bytes"
    assert exc.offset == len(header) - 5       # the "Seq" key: its value cannot fit after it


def test_body_limit_is_inclusive(rpcframe):
    header = packb({"ServiceMethod": "A", "Seq": 1})
    stream = header + packb(b"x" * 1000)        # bin16: 1003 bytes
    assert rpcframe.FrameDecoder(max_body=1003).feed(stream)[0][2] == b"x" * 1000
    exc = error_of(rpcframe, stream, limits=(100, 1002))
    assert (type(exc), exc.reason, exc.offset) == (FrameTooLarge, "body larger than 1002 bytes", len(header))


@pytest.mark.parametrize("declared", [
    bytes.fromhex("db7fffffff"),    # str32 of 2 GiB
    bytes.fromhex("c6ffffffff"),    # bin32
    bytes.fromhex("c9ffffffff07"),  # ext32
    bytes.fromhex("ddffffffff"),    # array32 of 2**32-1 elements
    bytes.fromhex("dfffffffff"),    # map32
    bytes.fromhex("dc0400"),        # array16 of 1024: needs >= 1027 bytes
    bytes.fromhex("9f" + "dc0100" * 4),   # counts add up: 15 + 4*256 elements
])
def test_declared_size_fails_before_the_bytes_arrive(rpcframe, declared):
    header = packb({"ServiceMethod": "A", "Seq": 1})
    stream = header + declared
    dec = rpcframe.FrameDecoder(max_body=1000)
    fed = 0
    with pytest.raises(FrameTooLarge) as info:
        for i in range(len(stream)):
            dec.feed(stream[i:i + 1])
            fed += 1
            assert dec.buffered < 32           # nothing big is ever held
    assert fed == len(stream) - 1              # raised by the feed completing the count
    assert info.value.offset >= len(header) and info.value.reason == "body larger than 1000 bytes"


def test_huge_declared_header_string_fails_early(rpcframe):
    stream = b"\x82\xadServiceMethod\xdb\x00\x10\x00\x00"    # 1 MiB method name
    exc = error_of(rpcframe, stream)
    assert (type(exc), exc.offset) == (FrameTooLarge, 15)
    assert exc.reason == f"header larger than {rpcframe.DEFAULT_MAX_HEADER} bytes"


def test_default_body_limit(rpcframe):
    header = packb({"ServiceMethod": "A", "Seq": 1})
    stream = header + b"\xc6" + (rpcframe.DEFAULT_MAX_BODY - 4).to_bytes(4, "big")
    exc = error_of(rpcframe, stream)
    assert (type(exc), exc.offset) == (FrameTooLarge, len(header))


@pytest.mark.parametrize("kwargs, exc", [
    ({"kind": 2}, ValueError),
    ({"max_header": 0}, ValueError),
    ({"max_body": -1}, ValueError),
    ({"max_body": 2**41}, ValueError),
    ({"max_header": "10"}, TypeError),
    ({"max_body": 1.5}, TypeError),
])
def test_constructor_rejects(rpcframe, kwargs, exc):
    with pytest.raises(exc):
        rpcframe.FrameDecoder(**kwargs)


# -- bad input --------------------------------------------------------------------------

H = packb({"ServiceMethod": "S.M", "Seq": 1})
BAD = [
    # (name, stream, kind, class, reason, offset)
    ("c1 first", b"\xc1", REQUEST, MalformedFrame, "invalid msgpack type byte 0xc1", 0),
    ("c1 in header", b"\x82\xc1", REQUEST, MalformedFrame, "invalid msgpack type byte 0xc1", 1),
    ("c1 in body", H + b"\x92\x01\xc1", REQUEST, MalformedFrame, "invalid msgpack type byte 0xc1", len(H) + 2),
    ("header list", packb([1, 2]) + packb(0), REQUEST, BadHeader, "header is not a map", 0),
    ("header int", packb(5) + packb(0), REQUEST, BadHeader, "header is not a map", 0),
    ("no method", packb({"Seq": 1}) + packb(0), REQUEST, BadHeader, "header has no ServiceMethod", 0),
    ("nil method", packb({"ServiceMethod": None, "Seq": 1}), REQUEST, BadHeader, "header has no ServiceMethod", 0),
    ("bin method key", packb({b"ServiceMethod": "x", "Seq": 1}), REQUEST, BadHeader, "header has no ServiceMethod", 0),
    ("int method", packb({"ServiceMethod": 3, "Seq": 1}), REQUEST, BadHeader, "ServiceMethod is not a string", 0),
    ("bin method", packb({"ServiceMethod": b"x", "Seq": 1}), REQUEST, BadHeader, "ServiceMethod is not a string", 0),
    ("no seq", packb({"ServiceMethod": "x"}), REQUEST, BadHeader, "header has no Seq", 0),
    ("str seq", packb({"ServiceMethod": "x", "Seq": "1"}), REQUEST, BadHeader, "Seq is not an integer", 0),
    ("bool seq", packb({"ServiceMethod": "x", "Seq": True}), REQUEST, BadHeader, "Seq is not an integer", 0),
    ("float seq", packb({"ServiceMethod": "x", "Seq": 1e30}), REQUEST, BadHeader, "Seq is not an integer", 0),
    ("seq -1", packb({"ServiceMethod": "x", "Seq": -1}), REQUEST, BadHeader, "Seq out of range", 0),
    ("seq -2**63", packb({"ServiceMethod": "x", "Seq": -2**63}), REQUEST, BadHeader, "Seq out of range", 0),
    ("int error", packb({"ServiceMethod": "x", "Seq": 1, "Error": 1}), REPLY, BadHeader, "Error is not a string", 0),
    ("bin error", packb({"ServiceMethod": "x", "Seq": 1, "Error": b"e"}), REPLY, BadHeader, "Error is not a string", 0),
    ("bad utf8 header", b"\x82\xadServiceMethod\xa1\xff\xa3Seq\x01", REQUEST, MalformedFrame,
     "undecodable header: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
     "invalid start byte", 0),
    ("bad utf8 body", H + b"\xa2a\xfe", REQUEST, MalformedFrame,
     "undecodable body: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xfe in position 1: "
     "invalid start byte", len(H)),
    ("bad body then c1", H + b"\xa1\xff\xc1", REQUEST, MalformedFrame,   # decoded before the scan error
     "undecodable body: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
     "invalid start byte", len(H)),
    ("list key", H + b"\x81\x91\x01\x02", REQUEST, MalformedFrame,
     "undecodable body: TypeError: unhashable type: 'list'", len(H)),
    ("map key", H + b"\x81\x80\x02", REQUEST, MalformedFrame,
     "undecodable body: TypeError: unhashable type: 'dict'", len(H)),
    ("too deep", H + b"\x91" * 2000 + b"\xc0", REQUEST, MalformedFrame, "undecodable body: StackError", len(H)),
    ("bad timestamp", H + b"\xd5\xff\x00\x00", REQUEST, MalformedFrame,
     "undecodable body: ValueError: invalid timestamp data (length 2)", len(H)),
    # Objects above the compiled module's small-object size take its other decode path.
    ("big bad utf8", H + b"\xda\x40\x00" + b"a" * 0x3fff + b"\xff", REQUEST, MalformedFrame,
     "undecodable body: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 16383: "
     "invalid start byte", len(H)),
    ("big too deep", H + b"\x92" + packb("x" * 10000) + b"\x91" * 2000 + b"\xc0", REQUEST, MalformedFrame,
     "undecodable body: StackError", len(H)),
    ("big list key", H + b"\x82\x01" + packb("x" * 10000) + b"\x91\x01\x02", REQUEST, MalformedFrame,
     "undecodable body: TypeError: unhashable type: 'list'", len(H)),
    ("big bad header", packb({"ServiceMethod": "x" * 10000, "Seq": -5}), REQUEST, BadHeader, "Seq out of range", 0),
]


@pytest.mark.parametrize("name, stream, kind, cls, reason, offset", BAD, ids=[b[0] for b in BAD])
def test_bad_input(rpcframe, name, stream, kind, cls, reason, offset):
    stream = req("Ok.First", 1, [1, 2]) + stream      # a good frame first: offsets are absolute
    offset += len(req("Ok.First", 1, [1, 2]))
    for cuts in ([], range(1, len(stream)) if len(stream) < 300 else [7, 100, len(stream) - 1]):
        exc = error_of(rpcframe, stream, kind, cuts=cuts)
        assert (type(exc), exc.reason, exc.offset) == (cls, reason, offset)
        assert str(exc) == f"{reason} (at byte {offset})"


def test_seq_bounds_accepted(rpcframe):
    for seq in (0, 2**64 - 1):     # msgpack cannot encode a larger int than 2**64-1
        assert rpcframe.FrameDecoder().feed(req("A", seq, 0)) == [("A", seq, 0)]


def test_failure_is_sticky_and_drops_earlier_frames_of_the_chunk(rpcframe):
    dec = rpcframe.FrameDecoder()
    assert dec.feed(req("A", 1, 0)) == [("A", 1, 0)]
    with pytest.raises(MalformedFrame) as first:
        dec.feed(req("B", 2, 0) + b"\xc1")      # B completes in this chunk: raised anyway
    for later in (req("C", 3, 0), b"", b"\xc1"):
        with pytest.raises(MalformedFrame) as again:
            dec.feed(later)
        assert (again.value.reason, again.value.offset) == (first.value.reason, first.value.offset)
    assert first.value.offset == len(req("A", 1, 0)) * 2


def test_scan_error_after_a_bad_header_reports_the_header(rpcframe):
    # The header is checked before its body is scanned, whatever the chunking.
    stream = packb({"ServiceMethod": 1, "Seq": 1}) + b"\xc1"
    for cuts in ([], [len(stream) - 1], range(1, len(stream))):
        assert type(error_of(rpcframe, stream, cuts=cuts)) is BadHeader


def test_feed_rejects_non_buffers(rpcframe):
    with pytest.raises(TypeError):
        rpcframe.FrameDecoder().feed("text")
    with pytest.raises(BufferError):
        rpcframe.FrameDecoder().feed(memoryview(req("A", 1, 0))[::2])


# -- differential: twin vs compiled, any chunking ---------------------------------------

def rand_str(rng: random.Random) -> str:
    n = rng.choice([0, 1, 5, 31, 32, 40, 255, 256, rng.randrange(300)])
    alphabet = "abcXYZ019._-/" if rng.random() < 0.8 else "aZ0._-é€😀"
    return "".join(rng.choice(alphabet) for _ in range(n))


def rand_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12 if depth < 4 else 9)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(INTS)
    if kind == 2:
        return rng.randrange(-2**63, 2**64)
    if kind == 3:
        return rng.choice([0.5, -1e300, rng.random(), float("inf")])
    if kind in (4, 5):
        return rand_str(rng)
    if kind == 6:
        return rng.randbytes(rng.choice([0, 1, 255, 256, rng.randrange(300)]))
    if kind == 7:
        return msgpack.ExtType(rng.randrange(0, 128), rng.randbytes(rng.choice([1, 2, 3, 4, 8, 16, 20])))
    if kind == 8:
        return rng.randrange(-32, 128)
    if kind in (9, 10):
        return [rand_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 16, rng.randrange(20)]))]
    return {(rand_str(rng) if rng.random() < 0.8 else rng.randrange(100)): rand_value(rng, depth + 1)
            for _ in range(rng.choice([0, 1, 3, 16, rng.randrange(20)]))}


def rand_stream(rng: random.Random, kind: int) -> bytes:
    out = []
    for _ in range(rng.randint(1, 5)):
        header = {"ServiceMethod": rand_str(rng), "Seq": rng.choice([0, 1, 2**64 - 1, rng.randrange(2**64)])}
        if kind == REPLY and rng.random() < 0.8:
            header["Error"] = rng.choice(["", None, rand_str(rng)])
        if rng.random() < 0.2:
            header["Extra"] = rand_value(rng, 2)
        items = list(header.items())
        rng.shuffle(items)
        out.append(packb(dict(items)) + packb(rand_value(rng)))
    return b"".join(out)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not b:
            break
        i = rng.randrange(len(b))
        op = rng.randrange(6)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice([0xC1, 0xDB, 0xDD, 0xDF, 0xC6, 0xC9, 0xFF, 0x00, 0x90, 0xDC, rng.randrange(256)])
        elif op == 2:
            b.insert(i, rng.randrange(256))
        elif op == 3:
            del b[i]
        elif op == 4:
            del b[i:]
        else:
            b[i:i] = bytes.fromhex(rng.choice(["91" * 1100, "dc0400", "d5ff0000", "a2fffe", "81918080"]))
    return bytes(b)


def rand_limits(rng: random.Random) -> tuple[int, int]:
    return (rng.choice([64 * 1024, rng.randint(1, 80)]), rng.choice([8 * MIB, rng.randint(1, 600)]))


def check_same(both, rng: random.Random, stream: bytes, kind: int, limits, seed: int):
    py, c = both
    expected = outcome(py, stream, (), kind, limits)
    runs = [(py, random_cuts(rng, len(stream))), (c, ()), (c, random_cuts(rng, len(stream))),
            (c, random_cuts(rng, len(stream)))]
    if len(stream) < 400:
        runs.append((c, range(1, len(stream))))
    for mod, cuts in runs:
        got = outcome(mod, stream, cuts, kind, limits)
        assert got == expected, f"seed={seed} impl={mod.__name__} cuts={list(cuts)[:20]}"
    return expected


def test_many_small_and_big_frames_in_one_chunk(both):
    # Hundreds of objects per feed and bodies above 8 KiB between them: the compiled
    # module decodes small objects in runs and large ones in place; errors in either
    # must come out as from the twin.
    py, c = both
    rng = random.Random(5)
    bodies = [None, "x" * 40, b"y" * 9000, list(range(30)), {"k": "v" * 200}]
    frames = [req(f"S.M{i}", i, rng.choice(bodies)) for i in range(1500)]
    stream = b"".join(frames)
    expected = outcome(py, stream)
    assert expected[0] == "ok" and expected[3] == len(stream)
    for cuts in ([], [len(stream) // 3], sorted(rng.sample(range(1, len(stream)), 300))):
        assert outcome(c, stream, cuts) == expected
    after_big = next(i for i in range(600, 1500) if len(frames[i - 1]) > 9000)
    for victim in (1, 255, 256, 257, 700, after_big):
        at = sum(map(len, frames[:victim])) + len(H)
        for bad_body in (b"\xa1\xff", b"\xc1", b"\xda\x40\x00" + b"a" * 0x3fff + b"\xff"):
            bad = b"".join(frames[:victim]) + H + bad_body + b"".join(frames[victim:])
            expected = outcome(py, bad)
            assert expected[0] == "error" and expected[3] == at
            for cuts in ([], sorted(rng.sample(range(1, len(bad)), 50))):
                assert outcome(c, bad, cuts) == expected, (victim, bad_body[:3])


@pytest.mark.parametrize("seed", range(8))
def test_random_valid_streams_agree(both, seed):
    rng = random.Random(seed)
    for i in range(60):
        kind = rng.choice([REQUEST, REPLY])
        stream = rand_stream(rng, kind)
        result = check_same(both, rng, stream, kind, (), seed)
        assert result[0] == "ok" and result[3] == len(stream), f"seed={seed} stream #{i}"


@pytest.mark.parametrize("seed", range(16))
def test_random_mutations_agree(both, seed):
    rng = random.Random(1000 + seed)
    kinds = {"ok": 0, "error": 0}
    for _ in range(250):
        kind = rng.choice([REQUEST, REPLY])
        stream = mutate(rng, rand_stream(rng, kind))
        limits = rand_limits(rng) if rng.random() < 0.3 else ()
        kinds[check_same(both, rng, stream, kind, limits, seed)[0]] += 1
    assert kinds["error"] > 0 and kinds["ok"] > 0, f"seed={seed} {kinds}"

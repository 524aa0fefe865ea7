"""Go's compress/lzw, LSB order, literal width 8 (`_core.lzw`) on both implementations.

Expected bytes come from Go: the vectors of shared/spec/memberlist-wire.md §1.8 and of
Go's reader_test.go, SHA-256 digests of what Go 1.19's lzw.NewWriter(w, lzw.LSB, 8)
writes for the deterministic inputs below, and memberlist messages captured from Serf
(shared/vectors/serf/lzw-*.hex). Bad input must raise the same DecodeError subclass,
reason and offset from the compiled module and its twin. Random tests name their seed.
"""
from __future__ import annotations

import array
import hashlib
import os
import random
import tracemalloc

import msgpack
import pytest

from tests.vectors import SERF_VECTORS

from _core import load_impl
from _core.errors import BadCompression, DecodeError, PacketTooLarge

VECTORS = SERF_VECTORS
MIB = 1024 * 1024


def _load(kind: str):
    try:
        return load_impl("lzw", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


@pytest.fixture(params=["py", "c"])
def lzw(request):
    return _load(request.param)


@pytest.fixture
def both():
    """(twin, compiled), for differential tests."""
    return _load("py"), _load("c")


# -- helpers ----------------------------------------------------------------------------

def shake(n: int, tag: bytes = b"isthmus-lzw") -> bytes:
    """n deterministic pseudo-random bytes (an XOF: shorter outputs are prefixes)."""
    return hashlib.shake_256(tag).digest(n)


def pack(codes) -> bytes:
    """Pack codes LSB first at the width Go's reader expects each one (§1.8): 9 bits after
    a clear (or at the start), one wider each time hi reaches 2**width, at most 12."""
    bits = nbits = 0
    width, hi = 9, 257
    out = bytearray()
    for code in codes:
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
        if code == 256:
            width, hi = 9, 257
        elif code != 257:
            hi += 1
            if hi >= 1 << width:
                if width == 12:
                    hi -= 1
                else:
                    width += 1
    if nbits:
        out.append(bits & 0xFF)
    return bytes(out)


def outcome(mod, data, max_size=40 * MIB):
    """What decompress does with `data`: ("ok", bytes) or (error class, reason, offset)."""
    try:
        return ("ok", mod.decompress(data, max_size))
    except DecodeError as exc:
        return (type(exc), exc.reason, exc.offset)


def captured_buf(name: str) -> bytes:
    """The LZW data of a captured `u8 9 | msgpack {Algo: 0, Buf: ...}` message."""
    raw = bytes.fromhex((VECTORS / f"{name}.hex").read_text().split()[0])
    assert raw[0] == 9
    wrapper = msgpack.unpackb(raw[1:], raw=True)
    assert wrapper[b"Algo"] == 0
    return wrapper[b"Buf"]


TOBE = b"TOBEORNOTTOBEORTOBEORNOT"


# -- Go's writer, byte for byte ---------------------------------------------------------

@pytest.mark.parametrize(
    "raw, compressed",
    [
        (b"", "00 03 02"),
        (b"ab", "00 c3 88 09 08"),
        (TOBE, "00 a9 3c 11 52 e4 89 14 27 4f a8 08 24 68 70 61 c1 83 09 03 02"),
    ],
    ids=["empty", "ab", "tobe"],
)
def test_go_writer_vectors(lzw, raw, compressed):
    data = bytes.fromhex(compressed)
    assert lzw.compress(raw) == data
    assert lzw.decompress(data) == raw


# name -> (input, len and SHA-256 of Go 1.19's lzw.NewWriter(w, LSB, 8) output)
GO_DIGESTS = {
    # hi reaches 512 / 1024 / 2048 in Close's final step: EOF goes out one bit wider.
    "random-255": (lambda: shake(255), 290,
                   "23dce630a59439f8ee2ef0cbafda7a0d711f453318f94e8e647863bb773b448e"),
    "random-770": (lambda: shake(770), 930,
                   "08fa5e1be7f39935b631c44a8d040985240d7904a43cd767d230ab9e25c6a10d"),
    "random-1812": (lambda: shake(1812), 2338,
                    "9fb26f0f0638f311841fbfc0bbec4278d33dfcd5ccfa18a7271ab0bad4de862f"),
    # hi reaches 4095 in Close's final step (3955): a clear at width 12, EOF at width 9.
    "random-3954": (lambda: shake(3954), 5407,
                    "2255b6181c6341c9610735b135780a95c9e9cf0be4a37619aeb523df8ab0cd36"),
    "random-3955": (lambda: shake(3955), 5410,
                    "7909511b04f47fa3c17f40c2c7a57ebd24d670078abd99f2813297ef08d48d5f"),
    "random-3956": (lambda: shake(3956), 5411,
                    "35d7a7fb6b6a74fe79692153f9d8f609b27532890765bc8c8ee4e7f840498f09"),
    # Many table resets.
    "random-200k": (lambda: shake(200 * 1024), 280616,
                    "d692ffd67a82bc664704bf99165fe41d379ff953737d6ff2d6182e386f1727f2"),
    "low-entropy-200k": (lambda: bytes(b & 3 for b in shake(200 * 1024, b"low")), 61024,
                         "38a9dbec8498b5f54c18e1e9706d20bb8951787b63fb1b3b4fda8a2a962ad3ea"),
    "repetitive-200k": (
        lambda: b"".join(b"node-%d:alive:7946;" % (i % 50) for i in range(12000))[:200 * 1024],
        17442, "2aa0cb637ca5317019f7cb88e4f973e537c19335ad5d059428e98dfc8c579656"),
    "zeros-100k": (lambda: bytes(100 * 1024), 537,
                   "3496e9f3704cf9fee684fe49e6146ec6a46a10db7ada97758e9f1d5ce8c92399"),
}


@pytest.mark.parametrize("name", list(GO_DIGESTS))
def test_go_writer_digests(lzw, name):
    make, size, digest = GO_DIGESTS[name]
    raw = make()
    data = lzw.compress(raw)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (size, digest)
    assert lzw.decompress(data) == raw


# -- Go's reader --------------------------------------------------------------------------

@pytest.mark.parametrize(
    "compressed, raw",
    [
        # Go's reader_test.go (LSB, 8): no leading clear code.
        ("01 01", b""),
        ("54 9e 08 29 f2 44 8a 93 27 54 04 12 34 b8 b0 e0 c1 84 01 01", TOBE),
        # The GIF example of reader_test.go (leading clear).
        ("00 51 fc 1b 28 70 a0 c1 83 01 01", b"\x28\xff\xff\xff\x28" + b"\xff" * 10),
    ],
    ids=["empty", "tobe", "gif"],
)
def test_go_reader_vectors(lzw, compressed, raw):
    assert lzw.decompress(bytes.fromhex(compressed)) == raw


def test_reader_keeps_decoding_once_the_table_is_full(lzw):
    # Go's TestNoLongerSavingPriorExpansions: 3839 zero codes bring hi to 4095 at width
    # 12; code 4095 is then KwKwK ("00"), after which no code is defined until a clear.
    data = bytes(5406) + bytes.fromhex("80 ff 0f 08")
    assert pack([0] * 3839 + [4095, 257]) == data
    assert lzw.decompress(data) == bytes(3841)
    # Saturated: codes keep decoding, 4095 (== hi, no previous code) is its table entry;
    # every code 258..4095 is "00" here (each was defined as "0" + the next "0").
    more = pack([0] * 3839 + [4095, 65, 4095, 258, 4094, 257])
    assert lzw.decompress(more) == bytes(3841) + b"A" + bytes(6)
    # A clear code starts over at 9 bits.
    again = pack([0] * 3839 + [4095, 256, 66, 258, 257])
    assert lzw.decompress(again) == bytes(3841) + b"BBB"


def test_first_code_after_a_clear_defines_nothing(lzw):
    # hi starts at 257 (the EOF code), not 258: "A" then 258 is KwKwK ("AA"), then 259
    # is "AAA". A code may be hi itself (KwKwK), never past it.
    assert lzw.decompress(pack([256, 65, 258, 259, 257])) == b"A" * 6
    assert lzw.decompress(pack([65, 258, 257])) == b"AAA"
    assert lzw.decompress(pack([65, 66, 258, 259, 257])) == b"ABABBA"
    assert lzw.decompress(pack([65, 66, 259, 257])) == b"ABBB"
    with pytest.raises(BadCompression) as err:
        lzw.decompress(pack([65, 66, 260, 257]))
    assert err.value.reason == "invalid LZW code 260 (> 259)"


def test_bits_and_bytes_after_the_eof_code_are_ignored(lzw):
    data = lzw.compress(TOBE)
    assert lzw.decompress(data + b"\xff\x00garbage") == TOBE
    assert lzw.decompress(pack([65, 257, 258, 4000])) == b"A"


# -- round trips --------------------------------------------------------------------------

SIZES = [0, 1, 2, 3, 7, 100, 255, 256, 257, 511, 512, 1000, 4095, 4096, 4097, 9000, 50000]


@pytest.mark.parametrize("kind", ["random", "two-symbols", "text", "run"])
def test_round_trips(lzw, kind):
    rng = random.Random(f"round-trip-{kind}")
    for n in SIZES:
        if kind == "random":
            raw = rng.randbytes(n)
        elif kind == "two-symbols":
            raw = bytes(rng.choice(b"ab") for _ in range(n))
        elif kind == "text":
            words = [b"alive", b"suspect", b"dead", b"node", b"7946", b"\x00", b"\xff"]
            raw = b" ".join(rng.choice(words) for _ in range(n))[:n]
        else:
            raw = bytes([rng.randrange(256)]) * n
        data = lzw.compress(raw)
        assert lzw.decompress(data) == raw, f"n={n}"
        assert lzw.decompress(data, max_size=n) == raw, f"n={n}"


def test_accepts_any_contiguous_buffer(lzw):
    data = lzw.compress(TOBE)
    assert lzw.compress(bytearray(TOBE)) == data
    assert lzw.compress(memoryview(b"xx" + TOBE)[2:]) == data
    assert lzw.decompress(bytearray(data)) == TOBE
    assert lzw.decompress(memoryview(data)) == TOBE
    words = array.array("I", [1, 2, 3, 0xFFFFFFFF])
    assert lzw.decompress(lzw.compress(words)) == words.tobytes()
    with pytest.raises(BufferError):
        lzw.compress(memoryview(TOBE)[::2])
    with pytest.raises(TypeError):
        lzw.compress("text")


def test_compiled_and_twin_write_the_same_bytes(both):
    py, c = both
    seed = 1234
    rng = random.Random(seed)
    for i in range(60):
        n = rng.choice([rng.randrange(64), rng.randrange(5000), rng.randrange(30000)])
        alphabet = rng.randrange(1, 257)
        raw = bytes(rng.randrange(alphabet) for _ in range(n)) if n < 5000 else rng.randbytes(n)
        data = c.compress(raw)
        assert py.compress(raw) == data, f"seed={seed} i={i}"
        assert c.decompress(data) == raw == py.decompress(data), f"seed={seed} i={i}"


# -- memberlist messages captured from Serf ----------------------------------------------

@pytest.mark.parametrize(
    "name, size, first",
    [
        ("lzw-tcp-pushpull-join-request", 689, 6),    # push/pull (type 6) stream body
        ("lzw-tcp-pushpull-join-response", 689, 6),
        ("lzw-udp-ack-compressed", 150, 2),            # ackResp (type 2) packet
    ],
)
def test_captured_memberlist_messages(lzw, name, size, first):
    buf = captured_buf(name)
    raw = lzw.decompress(buf)
    assert len(raw) == size
    assert raw[0] == first
    assert lzw.compress(raw) == buf              # Go's writer is deterministic


# -- bad input ----------------------------------------------------------------------------

def test_missing_eof_code(lzw):
    for data in (b"", b"\x00", pack([256, 65, 66])):
        with pytest.raises(BadCompression) as err:
            lzw.decompress(data)
        assert err.value.reason == "LZW stream ends without the EOF code"
        assert err.value.offset == len(data)


@pytest.mark.parametrize("name", ["tobe", "ack"])
def test_every_truncation_is_rejected(both, name):
    py, c = both
    data = c.compress(TOBE) if name == "tobe" else captured_buf("lzw-udp-ack-compressed")
    # Go's tobe-truncated vector: output so far, then io.ErrUnexpectedEOF.
    with pytest.raises(BadCompression):
        c.decompress(bytes.fromhex("54 9e 08 29 f2 44 8a 93 27 54 04"))
    for cut in range(len(data)):            # the last byte always holds bits of the EOF code
        expected = (BadCompression, "LZW stream ends without the EOF code", cut)
        assert outcome(py, data[:cut]) == expected == outcome(c, data[:cut]), f"cut={cut}"


@pytest.mark.parametrize(
    "codes, reason, offset",
    [
        ([258, 257], "invalid LZW code 258 (> 257)", 0),
        ([256, 258, 257], "invalid LZW code 258 (> 257)", 1),
        ([65, 259, 257], "invalid LZW code 259 (> 258)", 1),
        ([65, 66, 67, 300], "invalid LZW code 300 (> 260)", 3),
        # 255 codes of 9 bits, 45 of 10: the bad code starts at bit 2745.
        ([0] * 300 + [600], "invalid LZW code 600 (> 557)", 343),
        ([65, 66, 256, 67, 300], "invalid LZW code 300 (> 258)", 4),  # hi back to 257
    ],
)
def test_invalid_codes(lzw, codes, reason, offset):
    assert outcome(lzw, pack(codes)) == (BadCompression, reason, offset)


def test_max_size(lzw):
    raw = b"x" * 1000 + TOBE
    data = lzw.compress(raw)
    assert lzw.decompress(data, max_size=len(raw)) == raw
    with pytest.raises(PacketTooLarge) as err:
        lzw.decompress(data, max_size=len(raw) - 1)
    assert err.value.reason == f"decompressed LZW payload exceeds {len(raw) - 1} bytes"
    assert lzw.decompress(pack([257]), max_size=0) == b""
    assert outcome(lzw, pack([65, 257]), 0) == (
        PacketTooLarge, "decompressed LZW payload exceeds 0 bytes", 0)
    with pytest.raises(ValueError):
        lzw.decompress(data, max_size=-1)
    with pytest.raises(TypeError):
        lzw.decompress(data, max_size=1.5)
    assert lzw.DEFAULT_MAX_SIZE == 40 * MIB


def bomb(generations: int) -> bytes:
    """Codes 0, 258, 259, ..., 4095 expand to 1, 2, 3, ... zero bytes: ~7.4 MB out of
    ~5.6 KB in per table generation."""
    return pack(([256, 0] + list(range(258, 4096))) * generations + [257])


def test_zip_bomb_stops_at_max_size(lzw):
    data = bomb(20)                                      # ~110 KB -> ~147 MB
    limit = 4 * MIB
    tracemalloc.start()
    try:
        with pytest.raises(PacketTooLarge) as err:
            lzw.decompress(data, max_size=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.offset < 6000                       # stopped in the first generation
    assert peak < 1.25 * limit + len(data) + MIB, peak   # output bounded by the limit
    assert len(lzw.decompress(bomb(1))) == sum(range(1, 3840))   # as Go: 7,370,880


def test_fuzzed_streams_behave_alike(both):
    py, c = both
    seed = 2024
    rng = random.Random(seed)
    bases = [
        c.compress(TOBE),
        captured_buf("lzw-udp-ack-compressed"),
        captured_buf("lzw-tcp-pushpull-join-request"),
        c.compress(rng.randbytes(6000)),
        c.compress(bytes(rng.randrange(3) for _ in range(20000))),
        pack([0] * 3839 + [4095, 65, 4095, 257]),
    ]
    seen = set()
    for i in range(4000):
        data = bytearray(rng.choice(bases))
        op = rng.randrange(5)
        if op == 0:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:
            del data[rng.randrange(len(data)):]
        elif op == 3:
            at = rng.randrange(len(data))
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
        else:
            data = bytearray(rng.randbytes(rng.randrange(64)))
        max_size = rng.choice([40 * MIB, 40 * MIB, rng.randrange(2000)])
        got = outcome(c, bytes(data), max_size)
        assert outcome(py, bytes(data), max_size) == got, f"seed={seed} i={i}"
        seen.add(got[0])
    assert seen == {"ok", BadCompression, PacketTooLarge}


def random_codes(rng: random.Random, count: int, p_bad: float) -> list:
    """A code sequence as a (possibly hostile) peer might send: mostly codes the reader
    has defined (literals, table codes, hi itself), some clears, rarely a code past hi,
    usually but not always ending with EOF. Tracks hi as Go's reader does."""
    codes = [256] if rng.random() < 0.5 else []
    hi, width, have_last = 257, 9, False
    p_clear = rng.choice([0.0, 0.0005, 0.01])
    for _ in range(count):
        x = rng.random()
        if x < p_clear:
            codes.append(256)
            hi, width, have_last = 257, 9, False
            continue
        if x < p_clear + p_bad and hi + 1 < 1 << width:
            code = rng.randrange(hi + 1, 1 << width)
        elif x < 0.2 and (have_last or hi == 4095):
            code = hi
        elif hi <= 258 or x < 0.4:
            code = rng.randrange(256)
        else:
            code = rng.randrange(258, hi)
        codes.append(code)
        have_last = True
        hi += 1
        if hi >= 1 << width:
            if width == 12:
                hi, have_last = hi - 1, False
            else:
                width += 1
    if rng.random() < 0.9:
        codes.append(257)
    return codes


def test_random_code_streams_behave_alike(both):
    # Crosses table saturation (hi stuck at 4095), KwKwK codes and clears at any point.
    py, c = both
    seed = 77
    rng = random.Random(seed)
    seen = set()
    for i in range(120):
        data = pack(random_codes(rng, rng.randrange(9000), rng.choice([0.0, 0.0, 0.0005])))
        max_size = rng.choice([40 * MIB, rng.randrange(1, 200000)])
        got = outcome(c, data, max_size)
        assert outcome(py, data, max_size) == got, f"seed={seed} i={i}"
        seen.add(got[0])
    assert seen == {"ok", BadCompression, PacketTooLarge}


def test_selector_exposes_the_api():
    from _core import lzw

    assert lzw.decompress(lzw.compress(TOBE)) == TOBE
    assert lzw.DEFAULT_MAX_SIZE == 40 * MIB
    if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
        assert lzw.compress is load_impl("lzw", "c").compress

"""memberlist/Serf wire codec (`_core.wire`) on both implementations.

Every captured frame in shared/vectors/serf decodes to the values annotated next to it
and re-encodes byte for byte (LZW, CRC and — with the captured nonce — AES-GCM included).
Streams are fed whole, byte by byte and split at every offset; seeded mutations of the
vectors must give the same result or the same DecodeError (class, reason, offset) from the
compiled module and its twin, and never any other exception. Random tests name their seed.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import zlib

import msgpack
import pytest

from _core import load_impl
from _core.errors import (BadChecksum, BadCompression, DecodeError, DecryptError,
                          MalformedPacket, PacketTooLarge)
from _core.keyring import Keyring
from _core.messages import (
    Ack, Alive, Dead, DecodedPacket, Err, IndirectPing, Nack, Ping, PushNodeState, PushPull,
    SerfJoin, SerfLeave, SerfPushPull, SerfQuery, SerfQueryResponse, SerfRelay, SerfUserEvent,
    SerfUserEvents, Suspect, User,
)

VECTORS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                        "shared", "vectors", "serf"))
SERF_KEY = base64.b64decode("Xq6k3tUGAF0Dj8Y1zq8cHq8Bp6QmKxKpxvWJ9wX2f+Y=")  # vectors README
RING = Keyring([SERF_KEY])
NONCE = bytes(range(12))
MIB = 1024 * 1024
VSN = bytes([1, 5, 2, 2, 5, 5])
V4 = bytes([127, 0, 20, 1])
V6 = bytes.fromhex("fe80000000000000c0a8fffe8001ff01")   # bytes ≥ 0x80: not UTF-8


def packb(obj, **kw) -> bytes:
    return msgpack.packb(obj, use_bin_type=False, **kw)


def _load(kind: str):
    try:
        return load_impl("wire", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


@pytest.fixture(params=["py", "c"])
def wire(request):
    return _load(request.param)


@pytest.fixture
def both():
    """(twin, compiled), for differential tests."""
    return _load("py"), _load("c")


# -- captured vectors -------------------------------------------------------------------

class Block:
    """One captured datagram or TCP direction with its annotation lines."""

    def __init__(self, name: str, title: str, data: bytes, notes: list[str]) -> None:
        self.name, self.title, self.data, self.notes = name, title, data, notes
        self.prefix = name.split("-")[0]              # plain / lzw / aes
        self.stream = "TCP" in title

    @property
    def ring(self):
        return RING if self.prefix == "aes" else None

    def __repr__(self) -> str:
        return self.name


def _read_blocks() -> list[Block]:
    blocks = []
    for fname in sorted(os.listdir(VECTORS)):
        path = os.path.join(VECTORS, fname)
        if fname.endswith("-all-decoded.txt"):
            with open(path) as f:
                text = f.read()
            for chunk in text.split("=== ")[1:]:
                lines = chunk.splitlines()
                title = lines[0]
                data = bytes.fromhex(lines[1].removeprefix("hex: ").strip())
                tag = re.sub(r"\W+", "-", title.split(" t=")[0].split(" len=")[0]).strip("-")
                blocks.append(Block(f"{fname[:-len('-all-decoded.txt')]}-{tag}", title, data,
                                    lines[2:]))
        elif fname.endswith(".txt"):
            with open(path) as f:
                lines = f.read().splitlines()
            with open(path[:-4] + ".hex") as f:
                data = bytes.fromhex(f.read().strip())
            i = next(i for i, l in enumerate(lines) if l.startswith("# decoded"))
            assert bytes.fromhex(lines[i - 1].strip()) == data
            blocks.append(Block(fname[:-4], lines[1], data, lines[i + 1:]))
    return blocks


BLOCKS = _read_blocks()
UDP_BLOCKS = [b for b in BLOCKS if not b.stream]
TCP_BLOCKS = [b for b in BLOCKS if b.stream]


def _json(line: str):
    return json.loads(line[min(i for i in (line.find("["), line.find("{")) if i >= 0):
                           max(line.rfind("]"), line.rfind("}")) + 1])


def hexb(b: bytes) -> str:
    return "0x" + b.hex()


def go_view(m) -> dict:
    """A message as the annotation's JSON shows it (Go field names, bytes as 0x-hex)."""
    t = type(m)
    if t is Ping:
        return {"Node": m.node, "SeqNo": m.seq_no, "SourceAddr": hexb(m.source_addr),
                "SourceNode": m.source_node, "SourcePort": m.source_port}
    if t is Ack:
        return {"Payload": hexb(m.payload), "SeqNo": m.seq_no}
    if t is Alive:
        return {"Addr": hexb(m.addr), "Incarnation": m.incarnation, "Meta": hexb(m.meta),
                "Node": m.node, "Port": m.port, "Vsn": hexb(m.vsn)}
    if t is Dead or t is Suspect:
        return {"From": m.from_, "Incarnation": m.incarnation, "Node": m.node}
    if t is PushNodeState:
        return {"Addr": hexb(m.addr), "Incarnation": m.incarnation, "Meta": hexb(m.meta),
                "Name": m.name, "Port": m.port, "State": m.state, "Vsn": hexb(m.vsn)}
    if t is SerfJoin:
        return {"LTime": m.ltime, "Node": m.node}
    if t is SerfLeave:
        return {"LTime": m.ltime, "Node": m.node, "Prune": m.prune}
    if t is SerfPushPull:
        return {"EventLTime": m.event_ltime, "LTime": m.ltime, "LeftMembers": m.left_members,
                "QueryLTime": m.query_ltime, "StatusLTimes": m.status_ltimes,
                "Events": [None if e is None else
                           {"LTime": e.ltime, "Events": [{"Name": n, "Payload": hexb(p)}
                                                         for n, p in e.events]}
                           for e in m.events]}
    raise AssertionError(f"no view for {t.__name__}")


def expected_udp(block: Block):
    """(messages as (kind, json...), layers) from the annotation of a datagram."""
    msgs, layers = [], {"crc": None, "compress": False, "compound": []}
    for raw in block.notes:
        line = raw.strip()
        if line.startswith("hasCrc"):
            layers["crc"] = re.search(r"crc=([0-9a-f]{8}) ok=true", line).group(1)
        elif line.startswith("compress algo=0"):
            layers["compress"] = True
        elif line.startswith("compound parts="):
            n = int(re.search(r"parts=(\d+)", line).group(1))
            layers["compound"].append(n)
        elif line.startswith(("ping [", "alive [", "dead [", "suspect [", "ackResp [")):
            (obj,) = _json(line)
            msgs.append([line.split()[0], obj])
        elif line.startswith("ack.Payload:"):
            (coord,) = _json(line)
            assert "pingVersion=1" in line
            msgs[-1].append(coord)
        elif line.startswith("user(serf "):
            (obj,) = _json(line)
            msgs.append(["user", line[len("user(serf "):line.index(")")], obj])
        elif line.startswith(("udp-encrypted vsn=1 decrypt_err=<nil>",)):
            continue
        else:
            raise AssertionError(f"unknown annotation {line!r}")
    return msgs, layers


def check_serf_user(wire, payload: bytes, kind: str, want: dict) -> None:
    msg = wire.decode_serf(payload)
    assert type(msg) is {"join": SerfJoin, "leave": SerfLeave}[kind]
    assert go_view(msg) == want
    assert wire.encode_serf(msg) == payload


@pytest.mark.parametrize("block", UDP_BLOCKS, ids=repr)
def test_captured_packet_decodes_to_annotation_and_reencodes(wire, block):
    want, layers = expected_udp(block)
    msgs = wire.decode_packet(block.data, keyring=block.ring)
    assert type(msgs) is DecodedPacket and msgs.truncated == 0 and msgs.dropped == []
    assert len(msgs) == len(want)
    for m, w in zip(msgs, want):
        kind = w[0]
        if kind == "user":
            assert type(m) is User
            check_serf_user(wire, m.payload, w[1], w[2])
            continue
        assert type(m) is {"ping": Ping, "ackResp": Ack, "alive": Alive, "dead": Dead,
                           "suspect": Suspect}[kind]
        assert go_view(m) == w[1]
        if kind == "ackResp":
            coord = wire.decode_ack_payload(m.payload)
            assert coord == w[2]
            assert wire.encode_ack_payload(coord) == m.payload
    # re-encode with the sender's settings: Go's LZW writer and CRC are deterministic, and
    # AES-GCM is too once given the captured nonce
    parts = [wire.encode_message(m) for m in msgs]
    if layers["compound"]:
        assert layers["compound"] == [len(parts)]
        parts = [wire.make_compound(parts)]
    again = wire.encode_packet(parts, compress=block.prefix != "plain",
                               crc=layers["crc"] is not None, keyring=block.ring,
                               nonce=block.data[1:13] if block.ring else None)
    assert again == block.data
    if layers["crc"] is not None:
        plain = RING.decrypt(block.data) if block.ring else block.data
        assert plain[1:5].hex() == layers["crc"] == f"{zlib.crc32(plain[5:]):08x}"


def expected_stream(block: Block):
    header = states = serf = None
    states = []
    compressed = False
    for raw in block.notes:
        line = raw.strip()
        if line.startswith("pushPull header"):
            header = _json(line)
        elif line.startswith("pushNodeState"):
            states.append(_json(line))
        elif line.startswith("userState(serf pushPull)"):
            (serf,) = _json(line)
        elif line.startswith("compress algo=0"):
            compressed = True
        elif not line.startswith("encrypt len="):
            raise AssertionError(f"unknown annotation {line!r}")
    return header, states, serf, compressed


@pytest.mark.parametrize("block", TCP_BLOCKS, ids=repr)
def test_captured_stream_decodes_to_annotation_and_reencodes(wire, block):
    header, states, serf, compressed = expected_stream(block)
    dec = wire.StreamDecoder(keyring=block.ring)
    (msg,) = dec.feed(block.data)
    assert dec.consumed == len(block.data) and dec.buffered == 0
    assert type(msg) is PushPull
    assert header == {"Join": msg.join, "Nodes": len(msg.states),
                      "UserStateLen": len(msg.user_state)}
    assert [go_view(s) for s in msg.states] == states
    assert msg.user_state[0] == 2
    sp = wire.decode_serf(msg.user_state)
    assert go_view(sp) == serf
    assert wire.encode_serf(sp) == msg.user_state     # one StatusLTimes entry: no map order
    assert compressed == (block.prefix != "plain")
    again = wire.encode_stream(msg, compress=compressed, keyring=block.ring,
                               nonce=block.data[6:18] if block.ring else None)
    assert again == block.data


def test_all_vectors_were_read():
    names = {b.name for b in BLOCKS}
    assert len(UDP_BLOCKS) >= 90 and len(TCP_BLOCKS) == 12
    for fname in os.listdir(VECTORS):
        if fname.endswith(".hex"):
            assert fname[:-4] in names


# -- stream chunking ----------------------------------------------------------------------

def feed_chunks(dec, stream: bytes, cuts) -> list:
    out = []
    edges = [0, *cuts, len(stream)]
    for a, b in zip(edges, edges[1:]):
        out += dec.feed(stream[a:b])
    return out


def stream_outcome(mod, stream: bytes, cuts=(), **kw):
    dec = mod.StreamDecoder(**kw)
    try:
        msgs = feed_chunks(dec, stream, cuts)
    except DecodeError as exc:
        return ("error", type(exc).__name__, exc.reason, exc.offset)
    return ("ok", repr(msgs), dec.consumed, dec.buffered)


@pytest.mark.parametrize("block", TCP_BLOCKS, ids=repr)
def test_stream_vectors_whole_bytewise_and_every_split(wire, block):
    kw = {"keyring": block.ring}
    whole = stream_outcome(wire, block.data, **kw)
    assert whole[0] == "ok" and whole[2] == len(block.data)
    assert stream_outcome(wire, block.data, range(1, len(block.data)), **kw) == whole
    for cut in range(1, len(block.data)):
        assert stream_outcome(wire, block.data, [cut], **kw) == whole, cut


def test_messages_come_out_as_soon_as_complete(wire):
    a = wire.encode_stream(Ping(1, "n"), compress=False)
    b = wire.encode_stream(Ack(1, b"p"), compress=True)
    dec = wire.StreamDecoder()
    assert dec.feed(a[:-1]) == [] and dec.buffered == len(a) - 1
    assert dec.feed(a[-1:] + b[:3]) == [Ping(1, "n")]
    assert dec.consumed == len(a) and dec.buffered == 3
    assert dec.feed(b[3:]) == [Ack(1, b"p")]
    assert dec.consumed == len(a) + len(b) and dec.buffered == 0


def test_input_buffers_of_any_kind(wire):
    s = wire.encode_stream(Ping(7, "x"), compress=False)
    for data in (s, bytearray(s), memoryview(s)):
        assert wire.StreamDecoder().feed(data) == [Ping(7, "x")]
        assert wire.decode_packet(data) == [Ping(7, "x")]
    assert wire.StreamDecoder().feed(b"") == []


# -- round trips --------------------------------------------------------------------------

def rand_addr(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((4, 16)))


def rand_name(rng: random.Random) -> str:
    alphabet = "abcxyz-.0123456789ÄßΩ中🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.choice((0, 1, 5, 31, 32, 40, 300))))


def rand_u(rng: random.Random, bits: int) -> int:
    v = rng.choice((0, 1, 127, 128, 255, 256, 65535, 65536, (1 << bits) - 1,
                    rng.getrandbits(bits)))
    return v if v < 1 << bits else (1 << bits) - 1


def rand_message(rng: random.Random):
    k = rng.randrange(9)
    if k == 0:
        src = rng.random() < 0.5
        return Ping(rand_u(rng, 32), rand_name(rng), rand_addr(rng) if src else b"",
                    rand_u(rng, 16) if src else 0, rand_name(rng) if src else "")
    if k == 1:
        return IndirectPing(rand_u(rng, 32), rand_addr(rng), rand_u(rng, 16), rand_name(rng),
                            rng.random() < 0.5, rand_addr(rng), rand_u(rng, 16), rand_name(rng))
    if k == 2:
        return Ack(rand_u(rng, 32), rng.choice((None, b"", rng.randbytes(rng.randrange(300)))))
    if k == 3:
        return Nack(rand_u(rng, 32))
    if k == 4:
        return Suspect(rand_u(rng, 32), rand_name(rng), rand_name(rng))
    if k == 5:
        return Dead(rand_u(rng, 32), rand_name(rng), rand_name(rng))
    if k == 6:
        return Alive(rand_u(rng, 32), rand_name(rng), rand_addr(rng), rand_u(rng, 16),
                     rng.randbytes(rng.randrange(600)), rng.randbytes(6))
    return User(rng.randbytes(rng.randrange(400)))


@pytest.mark.parametrize("seed", range(6))
def test_random_packets_round_trip(wire, seed):
    rng = random.Random(seed)
    ring = Keyring([bytes(32), bytes(range(16))])
    for i in range(60):
        msgs = [rand_message(rng) for _ in range(rng.choice((1, 1, 2, 5, 30)))]
        parts = [wire.encode_message(m) for m in msgs]
        opts = {"compress": rng.random() < 0.5, "crc": rng.random() < 0.5}
        label = rng.choice((b"", b"", b"dc1", bytes(255)))
        enc = rng.random() < 0.3
        if enc:
            opts.update(keyring=ring, nonce=rng.randbytes(12))
        data = wire.encode_packet(parts, label=label, **opts)
        got = wire.decode_packet(data, keyring=ring if enc else None, label=label)
        assert list(got) == msgs, (seed, i)
        assert got.truncated == 0 and got.dropped == []


def test_ipv6_and_non_ascii_fields_round_trip(wire):
    msgs = [Alive(1, "nöde-Ω", V6, 7946, b"\xff\x81\xa1a\xa1b", VSN),
            Ping(2, "b", V6, 1, "a"), IndirectPing(3, V6, 8301, "t", True, V6, 9, "s"),
            PushNodeState("n", V6, 1, b"\x80\xff", 4, 3, VSN)]
    for m in msgs[:3]:
        assert wire.decode_packet(wire.encode_message(m)) == [m]
    pp = PushPull(False, [msgs[3]], b"")
    assert wire.StreamDecoder().feed(wire.encode_stream(pp)) == [pp]


def test_big_push_pull_streams(wire):
    rng = random.Random(5)
    states = [PushNodeState(f"node-{i:05d}", rand_addr(rng), 7946, b"\xff\x80", i + 1, i % 4,
                            VSN) for i in range(3000)]
    pp = PushPull(True, states, rng.randbytes(70_000))
    ring = Keyring([bytes(16)])
    for kw in ({"compress": False}, {"compress": True},
               {"compress": True, "keyring": ring, "nonce": NONCE}):
        data = wire.encode_stream(pp, **kw)
        dec = wire.StreamDecoder(keyring=kw.get("keyring"))
        msgs = feed_chunks(dec, data, range(4096, len(data), 4096))
        assert msgs == [pp] and dec.buffered == 0


def test_every_stream_message_kind_in_one_stream(wire):
    ring = Keyring([bytes(24)])
    seq = [Ping(1, "x", V4, 5, "y"), Ack(1, None), Ack(2, b"abc"), Err("boom"),
           User(b"hello"), User(b""), PushPull(False, [], b""),
           PushPull(True, [PushNodeState("a", V4, 1, b"", 1, 0, VSN)], b"\x02\x80")]
    for kw in ({"compress": False}, {"compress": True},
               {"compress": False, "keyring": ring, "nonce": NONCE},
               {"compress": True, "keyring": ring, "nonce": NONCE}):
        data = b"".join(wire.encode_stream(m, **kw) for m in seq)
        for cuts in ((), range(1, len(data))):
            assert feed_chunks(wire.StreamDecoder(keyring=kw.get("keyring")), data, cuts) == seq


def test_user_message_stream_form(wire):
    data = wire.encode_stream(User(b"payload"), compress=False)
    assert data == b"\x08" + packb({"UserMsgLen": 7}) + b"payload"
    assert wire.encode_message(User(b"payload")) == b"\x08payload"      # the packet form


# -- encoding: Go's bytes -------------------------------------------------------------------

def test_ping_worked_example(wire):
    # spec §1.3: UDP ping to "b", SeqNo 1, no source fields
    assert wire.encode_message(Ping(1, "b")) == bytes.fromhex(
        "0082a44e6f6465a162a55365714e6f01")


def test_integer_string_and_bytes_forms(wire):
    out = wire.encode_message(Suspect(300, "n" * 40, "f" * 31))
    assert out == (b"\x03\x83\xa4From\xbf" + b"f" * 31 + b"\xabIncarnation\xcd\x01\x2c"
                   b"\xa4Node\xda\x00\x28" + b"n" * 40)          # no str8 (d9), ever
    out = wire.encode_message(Alive(0xFFFFFFFF, "a", V4, 65535, b"m" * 200, VSN))
    assert b"\xabIncarnation\xce\xff\xff\xff\xff" in out
    assert b"\xa4Meta\xda\x00\xc8" + b"m" * 200 in out       # []byte in the raw family too
    assert b"\xa3Vsn\xa6" + VSN in out and b"\xa4Addr\xa4" + V4 in out
    assert b"\xa4Port\xcd\xff\xff" in out


def test_struct_keys_in_go_sorted_order(wire):
    def keys(data: bytes) -> list[str]:
        return list(msgpack.unpackb(data[1:], raw=False, unicode_errors="surrogateescape"))
    assert keys(wire.encode_message(IndirectPing(1, V4, 2, "n", True, V4, 3, "s"))) == [
        "Nack", "Node", "Port", "SeqNo", "SourceAddr", "SourceNode", "SourcePort", "Target"]
    assert keys(wire.encode_message(IndirectPing(1, V4, 2, "n"))) == [
        "Nack", "Node", "Port", "SeqNo", "Target"]                  # omitempty Source*
    assert keys(wire.encode_message(Alive(1, "n", V4, 1, b"", VSN))) == [
        "Addr", "Incarnation", "Meta", "Node", "Port", "Vsn"]
    assert keys(wire.encode_message(Ack(1))) == ["Payload", "SeqNo"]
    assert wire.encode_message(Ack(1)) == b"\x02\x82\xa7Payload\xc0\xa5SeqNo\x01"
    assert keys(wire.encode_message(Nack(1))) == ["SeqNo"]
    assert keys(wire.encode_message(Err("x"))) == ["Error"]
    q = SerfQuery(1, 2, V4, 3, "src", "name", b"p", [b"\x00\x90"], 1, 2, -5)
    assert keys(wire.encode_serf(q)) == ["Addr", "Filters", "Flags", "ID", "LTime", "Name",
                                         "Payload", "Port", "RelayFactor", "SourceNode",
                                         "Timeout"]
    assert keys(wire.encode_serf(SerfQueryResponse(1, 2, "f", b"", 1))) == [
        "Flags", "From", "ID", "LTime", "Payload"]
    assert keys(wire.encode_serf(SerfUserEvent(1, "e", b"", True))) == [
        "CC", "LTime", "Name", "Payload"]
    assert keys(wire.encode_serf(SerfPushPull(1))) == [
        "EventLTime", "Events", "LTime", "LeftMembers", "QueryLTime", "StatusLTimes"]


@pytest.mark.parametrize("msg,exc", [
    (Alive(1, "n", b"\x01\x02\x03", 1, b"", VSN), ValueError),
    (Alive(1, "n", V4, 1, b"", b"\x01\x02"), ValueError),
    (IndirectPing(1, b"", 1, "n"), ValueError),
    (Ping(1, "n", b"\x01", 1, "s"), ValueError),
    ("not a message", TypeError),
    (SerfJoin(1, "n"), TypeError),
])
def test_encode_message_rejects(wire, msg, exc):
    with pytest.raises(exc):
        wire.encode_message(msg)


def test_encode_stream_rejects_packet_only_messages(wire):
    with pytest.raises(TypeError):
        wire.encode_stream(Alive(1, "n", V4, 1, b"", VSN))
    with pytest.raises(ValueError):
        wire.encode_stream(Ping(1), keyring=RING)              # no nonce


# -- decoding: go-msgpack's rules ---------------------------------------------------------

@pytest.mark.parametrize("body,want", [
    ({"SeqNo": 5, "Node": "x"}, Ping(5, "x")),                         # any key order
    ({"Node": "x", "Other": [1, {"a": 2}], "SeqNo": 5, 7: None}, None),  # non-str key
    ({"Node": "x", "Other": [1, {2: 3}], "SeqNo": 5}, Ping(5, "x")),   # unknown keys skipped
    ({}, Ping(0)),                                                     # missing → zero values
    (None, Ping(0)),                                                   # nil struct
    ({"Node": None, "SeqNo": None, "SourceAddr": None}, Ping(0)),      # nil fields
    ({"SeqNo": 1, "SourceAddr": [127, 0, 0, 1]}, Ping(1, "", b"\x7f\x00\x00\x01")),
])
def test_go_decoding_rules(wire, body, want):
    data = b"\x00" + packb(body, strict_types=False)
    if want is None:
        with pytest.raises(MalformedPacket, match="map key that is not a str"):
            wire.decode_packet(data)
    else:
        assert wire.decode_packet(data) == [want]


def test_wide_int_forms_bool_ints_bin_bytes_and_trailing_bytes(wire):
    body = (b"\x85\xa5SeqNo\xcf" + (5).to_bytes(8, "big") + b"\xa4Node\xa1x"
            + b"\xa6Target\xc4\x04" + V4 + b"\xa4Port\xd3" + (9).to_bytes(8, "big")
            + b"\xa4Nack\x01")
    assert wire.decode_packet(b"\x01" + body + b"\xc1garbage") == [
        IndirectPing(5, V4, 9, "x", True)]


@pytest.mark.parametrize("body,reason", [
    (b"\x81\xa4Node\xc4\x01x", "ping field Node: expected str, got bin"),
    (b"\x81\xa4Node\xa2\xff\xfe", "ping field Node: not valid UTF-8"),
    (b"\x81\xa4Node\xa3\xed\xa0\x80", "ping field Node: not valid UTF-8"),   # a surrogate
    (b"\x81\xa5SeqNo\xff", "ping field SeqNo: -1 out of range for uint32"),
    (b"\x81\xa5SeqNo\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
     "ping field SeqNo: 4294967296 out of range for uint32"),
    (b"\x81\xa5SeqNo\xcb\x00\x00\x00\x00\x00\x00\x00\x00",
     "ping field SeqNo: expected uint32, got float"),
    (b"\x81\xa5SeqNo\xc3", "ping field SeqNo: expected uint32, got bool"),
    (b"\x81\xaaSourceAddr\xa3abc", "ping field SourceAddr: address must be 4 or 16 bytes, got 3"),
    (b"\x81\xaaSourcePort\xce\x00\x01\x00\x00",
     "ping field SourcePort: 65536 out of range for uint16"),
    (b"\x81\xc4\x04Node\xa1x", "ping has a map key that is not a str (bin)"),
    (b"\x92\x01\x02", "ping is not a map (got array)"),
    (b"\x81\xa4Node\x92\x01\x02", "ping field Node: expected str, got array"),
])
def test_bad_ping_bodies(wire, body, reason):
    with pytest.raises(MalformedPacket) as info:
        wire.decode_packet(b"\x00" + body)
    assert info.value.reason == reason and info.value.offset == 0


@pytest.mark.parametrize("msg,field,value,reason", [
    ("alive", "Vsn", b"\x01\x02\x03\x04\x05", "alive field Vsn: Vsn must be 6 bytes, got 5"),
    ("alive", "Addr", b"\x01\x02\x03", "alive field Addr: address must be 4 or 16 bytes, got 3"),
    ("alive", "Addr", None, "alive field Addr: address must be 4 or 16 bytes, got 0"),
    ("alive", "Port", -1, "alive field Port: -1 out of range for uint16"),
    ("alive", "Meta", 5, "alive field Meta: expected bytes, got int"),
    ("alive", "Meta", [1, 256], "alive field Meta: array element 256 is not a uint8"),
    ("indirect", "Target", b"", "indirect ping field Target: address must be 4 or 16 bytes, "
                                "got 0"),
    ("indirect", "Nack", 2, "indirect ping field Nack: expected bool, got int"),
])
def test_bad_fields(wire, msg, field, value, reason):
    if msg == "alive":
        body = {"Addr": V4, "Incarnation": 1, "Meta": b"", "Node": "n", "Port": 1, "Vsn": VSN}
        t = b"\x04"
    else:
        body = {"Nack": False, "Node": "n", "Port": 1, "SeqNo": 1, "Target": V4}
        t = b"\x01"
    body[field] = value
    with pytest.raises(MalformedPacket) as info:
        wire.decode_packet(t + packb(body))
    assert info.value.reason == reason


def test_alive_without_vsn_decodes_to_empty_vsn(wire):
    body = packb({"Addr": V4, "Incarnation": 1, "Node": "n", "Port": 1})
    assert wire.decode_packet(b"\x04" + body) == [Alive(1, "n", V4, 1, b"", b"")]


@pytest.mark.parametrize("data,cls,reason,offset", [
    (b"", MalformedPacket, "missing message type byte", 0),
    (b"\x0e\x80", MalformedPacket, "unknown message type 14", 0),
    (b"\x06\x80", MalformedPacket, "unknown message type 6", 0),      # push/pull: TCP only
    (b"\x0d\x80", MalformedPacket, "unknown message type 13", 0),
    (b"\x0c\x00\x00\x00", MalformedPacket, "unknown message type 12", 0),   # < 5: no CRC
    (b"\xf4\x01a\x00\x80", MalformedPacket, "discarding packet with unacceptable label b'a'", 0),
    (b"\xf4", MalformedPacket, "cannot decode label; packet has been truncated", 0),
    (b"\xf4\x00\x00", MalformedPacket, "label header cannot be empty when present", 0),
    (b"\xf4\x05ab", MalformedPacket, "cannot decode label; packet has been truncated", 0),
    (b"\x00", MalformedPacket, "undecodable ping: ValueError: Unpack failed: incomplete input", 0),
    (b"\x00\xc1", MalformedPacket, None, 0),
    (b"\x07", MalformedPacket, "missing compound length byte", 0),
    (b"\x07\x02\x00\x01", MalformedPacket, "truncated len slice", 0),
    (b"\x0c\x00\x00\x00\x00\x00\x80", BadChecksum, "invalid checksum ac6191df, expected "
                                                  "00000000", 0),
    (b"\x09" + packb({"Algo": 1, "Buf": b""}), BadCompression,
     "Cannot decompress unknown algorithm 1", 0),
    (b"\x09" + packb({"Algo": 0, "Buf": b"\x00"}), BadCompression, None, None),
    (b"\x09" + packb({"Algo": 0, "Buf": b"\x00\x03\x02"}), MalformedPacket,
     "missing message type byte", 0),                                 # LZW of nothing
])
def test_bad_packets(wire, data, cls, reason, offset):
    with pytest.raises(DecodeError) as info:
        wire.decode_packet(data)
    assert type(info.value) is cls
    if reason is not None:
        assert info.value.reason.startswith(reason)
    if offset is not None:
        assert info.value.offset == offset


def test_crc_mismatch_and_match(wire):
    inner = wire.encode_message(Ping(1, "n"))
    good = wire.encode_packet([inner], crc=True)
    assert good[0] == 12 and good[1:5] == zlib.crc32(inner).to_bytes(4, "big")
    assert wire.decode_packet(good) == [Ping(1, "n")]
    bad = bytearray(good)
    bad[-1] ^= 1
    with pytest.raises(BadChecksum) as info:
        wire.decode_packet(bytes(bad))
    assert info.value.reason.startswith("invalid checksum")
    # a CRC is an outer layer only: inside a compound it is an unknown type
    got = wire.decode_packet(wire.make_compound([good, inner]))
    assert list(got) == [Ping(1, "n")]
    assert [(type(e), e.reason, e.offset) for e in got.dropped] == [
        (MalformedPacket, "unknown message type 12", 6)]


def test_compress_only_when_shorter(wire):
    small = wire.encode_message(Ping(1, "n"))
    assert wire.encode_packet([small], compress=True) == small
    big = wire.encode_message(User(b"a" * 500))
    packed = wire.encode_packet([big], compress=True)
    assert packed[0] == 9 and len(packed) < len(big)
    assert wire.decode_packet(packed) == [User(b"a" * 500)]


def test_layers_order_crc_over_compressed_then_encrypted_then_label(wire):
    ring = Keyring([bytes(16)])
    part = wire.encode_message(User(b"z" * 300))
    data = wire.encode_packet([part, part], compress=True, crc=True, keyring=ring,
                              nonce=NONCE, label=b"lab")
    assert data[:5] == b"\xf4\x03lab"
    plain = ring.decrypt(data[5:], aad=b"lab")
    assert plain[0] == 12 and plain[5] == 9
    assert plain[1:5] == zlib.crc32(plain[5:]).to_bytes(4, "big")
    assert wire.decode_packet(data, keyring=ring, label=b"lab") == [User(b"z" * 300)] * 2


# -- compound -------------------------------------------------------------------------------

def test_compound_with_255_parts(wire):
    parts = [wire.encode_message(Nack(i)) for i in range(255)]
    data = wire.make_compound(parts)
    assert data[:2] == b"\x07\xff"
    assert wire.decode_packet(data) == [Nack(i) for i in range(255)]
    assert wire.encode_packet(parts) == data
    with pytest.raises(ValueError):
        wire.make_compound(parts + [parts[0]])
    with pytest.raises(ValueError):
        wire.make_compound([b"\x08" + bytes(65535)])
    assert wire.make_compound([]) == b"\x07\x00"
    assert wire.decode_packet(b"\x07\x00") == []


@pytest.mark.parametrize("cut", range(0, 12))
def test_truncated_compound_keeps_the_complete_parts(wire, cut):
    parts = [wire.encode_message(Nack(i)) for i in range(3)]     # 9 bytes each
    data = wire.make_compound(parts)
    got = wire.decode_packet(data[:len(data) - cut])
    whole = 3 - (cut + 8) // 9 if cut else 3
    assert list(got) == [Nack(i) for i in range(whole)]
    assert got.truncated == 3 - whole and got.dropped == []


def test_bad_part_is_dropped_alone(wire):
    parts = [wire.encode_message(Nack(1)), b"", b"\x00\xc1", b"\x63",
             wire.encode_message(Nack(2)), b"\x07", b"\x07\x01\x00\x01\x0e"]
    got = wire.decode_packet(wire.make_compound(parts))
    assert list(got) == [Nack(1), Nack(2)]
    assert [(type(e).__name__, e.reason.split(":")[0], e.offset) for e in got.dropped] == [
        ("MalformedPacket", "missing message type byte", 25),
        ("MalformedPacket", "undecodable ping", 25),
        ("MalformedPacket", "unknown message type 99", 27),
        ("MalformedPacket", "missing compound length byte", 37),
        ("MalformedPacket", "unknown message type 14", 42),
    ]


def test_nested_compound_and_compress_flatten_in_order(wire):
    a, b, c = (wire.encode_message(Nack(i)) for i in range(3))
    inner = wire.make_compound([b, wire.compress_message(c)])
    data = wire.encode_packet([a, wire.compress_message(inner)], crc=True)
    assert wire.decode_packet(data) == [Nack(0), Nack(1), Nack(2)]


def test_nesting_is_bounded(wire):
    msg = wire.encode_message(Nack(1))
    for _ in range(16):
        msg = wire.make_compound([msg])
    assert wire.decode_packet(msg) == [Nack(1)]
    deep = wire.make_compound([msg])
    got = wire.decode_packet(deep)
    assert list(got) == []
    assert [e.reason for e in got.dropped] == ["messages nested more than 16 deep"]
    nested = wire.encode_message(Nack(1))
    for _ in range(17):
        nested = wire.compress_message(nested)
    with pytest.raises(MalformedPacket, match="nested more than 16 deep"):
        wire.decode_packet(nested)


def test_decompression_budget(wire):
    data = wire.encode_packet([wire.encode_message(User(b"q" * 5000))], compress=True)
    assert wire.decode_packet(data, max_decompressed=5001) == [User(b"q" * 5000)]
    with pytest.raises(PacketTooLarge):
        wire.decode_packet(data, max_decompressed=5000)
    both_parts = wire.make_compound([data, data])
    assert len(wire.decode_packet(both_parts, max_decompressed=10002)) == 2
    got = wire.decode_packet(both_parts, max_decompressed=10001)   # one budget per packet
    assert len(got) == 1 and type(got.dropped[0]) is PacketTooLarge


# -- encryption, labels, enforcement -------------------------------------------------------

def test_encrypted_packets(wire):
    ring = Keyring([bytes(16), bytes(range(32))])
    part = wire.encode_message(Ping(3, "n"))
    data = wire.encode_packet([part], keyring=ring, nonce=NONCE)
    assert data[0] == 1 and data[1:13] == NONCE and len(data) == len(part) + 29
    assert wire.decode_packet(data, keyring=ring) == [Ping(3, "n")]
    other = Keyring([bytes(24)])
    with pytest.raises(DecryptError, match="No installed keys could decrypt the message"):
        wire.decode_packet(data, keyring=other)
    with pytest.raises(ValueError):
        wire.encode_packet([part], keyring=ring)                    # a nonce is required


def test_verify_incoming_off_accepts_plaintext(wire):
    ring = Keyring([bytes(16)])
    plain = wire.encode_packet([wire.encode_message(Ping(3, "n"))], crc=True)
    with pytest.raises(DecryptError):
        wire.decode_packet(plain, keyring=ring)
    assert wire.decode_packet(plain, keyring=ring, verify_incoming=False) == [Ping(3, "n")]
    sealed = wire.encode_packet([plain], keyring=ring, nonce=NONCE)
    assert wire.decode_packet(sealed, keyring=ring, verify_incoming=False) == [Ping(3, "n")]
    # streams: plaintext accepted, encrypted still decrypted
    s = wire.encode_stream(Ping(1, "n"))
    with pytest.raises(DecryptError, match="Encryption is configured but remote state is not "
                                           "encrypted"):
        wire.StreamDecoder(keyring=ring).feed(s)
    assert wire.StreamDecoder(keyring=ring, verify_incoming=False).feed(s) == [Ping(1, "n")]
    e = wire.encode_stream(Ping(1, "n"), keyring=ring, nonce=NONCE)
    assert wire.StreamDecoder(keyring=ring, verify_incoming=False).feed(e) == [Ping(1, "n")]


def test_encrypted_stream_without_keyring(wire):
    e = wire.encode_stream(Ping(1, "n"), keyring=RING, nonce=NONCE)
    with pytest.raises(DecryptError) as info:
        wire.StreamDecoder().feed(e[:1])
    assert info.value.reason == "Remote state is encrypted and encryption is not configured"


def test_encrypted_stream_header_is_aad(wire):
    e = bytearray(wire.encode_stream(Ping(1, "n"), keyring=RING, nonce=NONCE))
    assert e[0] == 10 and int.from_bytes(e[1:5], "big") == len(e) - 5
    e += b"\x00"
    e[4] += 1                               # a length one longer, still in the buffer
    with pytest.raises(DecryptError, match="No installed keys"):
        wire.StreamDecoder(keyring=RING).feed(bytes(e))


def test_packet_labels(wire):
    ring = Keyring([bytes(16)])
    part = wire.encode_message(Ping(1, "n"))
    data = wire.encode_packet([part], label=b"dc1")
    assert data == b"\xf4\x03dc1" + part
    assert wire.decode_packet(data, label=b"dc1") == [Ping(1, "n")]
    for wrong in (b"", b"dc2", b"dc"):
        with pytest.raises(MalformedPacket, match="unacceptable label b'dc1'"):
            wire.decode_packet(data, label=wrong)
    with pytest.raises(MalformedPacket, match=r"unacceptable label b''"):
        wire.decode_packet(part, label=b"dc1")
    sealed = wire.encode_packet([part], keyring=ring, nonce=NONCE, label=b"dc1")
    assert sealed[:5] == b"\xf4\x03dc1"
    assert ring.decrypt(sealed[5:], aad=b"dc1") == part            # label = AAD
    assert wire.decode_packet(sealed, keyring=ring, label=b"dc1") == [Ping(1, "n")]
    with pytest.raises(ValueError):
        wire.encode_packet([part], label=bytes(256))
    with pytest.raises(TypeError):
        wire.decode_packet(part, label="dc1")


def test_stream_labels(wire):
    ring = Keyring([bytes(16)])
    assert wire.label_header(b"") == b""
    assert wire.label_header(b"dc1") == b"\xf4\x03dc1"
    msg = wire.encode_stream(Ping(1, "n"), keyring=ring, nonce=NONCE, label=b"dc1")
    hdr = wire.label_header(b"dc1")
    # accepting side: header once, then messages; label is also the AAD
    stream = hdr + msg + msg
    for cuts in ((), range(1, len(stream))):
        dec = wire.StreamDecoder(keyring=ring, label=b"dc1", require_label_header=True)
        assert feed_chunks(dec, stream, cuts) == [Ping(1, "n")] * 2
        assert dec.consumed == len(stream)
    # dialing side: replies carry no header
    assert wire.StreamDecoder(keyring=ring, label=b"dc1").feed(msg) == [Ping(1, "n")]
    with pytest.raises(DecryptError):                                  # AAD differs
        wire.StreamDecoder(keyring=ring).feed(msg)
    plain = wire.encode_stream(Ping(1, "n"))
    cases = [
        (dict(label=b"dc1"), plain, "discarding stream with unacceptable label b''"),
        (dict(), hdr + plain, "discarding stream with unacceptable label b'dc1'"),
        (dict(label=b"dc2"), hdr + plain, "discarding stream with unacceptable label b'dc1'"),
        (dict(), b"\xf4\x00" + plain, "label header cannot be empty when present"),
    ]
    for kw, data, reason in cases:
        with pytest.raises(MalformedPacket) as info:
            wire.StreamDecoder(require_label_header=True, **kw).feed(data)
        assert info.value.reason == reason and info.value.offset == 0
    dec = wire.StreamDecoder(require_label_header=True)
    assert dec.feed(plain) == [Ping(1, "n")]                           # no label, no header
    assert wire.StreamDecoder(require_label_header=True).feed(b"\xf4") == []   # waits


# -- stream errors --------------------------------------------------------------------------

def test_stream_size_limits(wire):
    # encrypted: refused as soon as the length is known
    with pytest.raises(PacketTooLarge) as info:
        wire.StreamDecoder(keyring=RING).feed(b"\x0a" + (20 * MIB + 1).to_bytes(4, "big"))
    assert info.value.reason == f"Remote node state is larger than limit ({20 * MIB + 1})"
    assert wire.StreamDecoder(keyring=RING).feed(b"\x0a" + (20 * MIB).to_bytes(4, "big")) == []
    # plain push/pull: the header's counts decide before any state arrives
    hdr = b"\x06" + packb({"Join": False, "Nodes": 1, "UserStateLen": 20 * MIB})
    with pytest.raises(PacketTooLarge) as info:
        wire.StreamDecoder().feed(hdr)
    assert info.value.reason == f"stream message larger than {20 * MIB} bytes"
    hdr = b"\x06" + packb({"Join": False, "Nodes": 2 ** 63 - 1, "UserStateLen": 2 ** 63 - 1})
    with pytest.raises(PacketTooLarge):
        wire.StreamDecoder().feed(hdr)
    # a declared string length
    with pytest.raises(PacketTooLarge) as info:
        wire.StreamDecoder(max_size=1000).feed(b"\x00\x81\xa4Node\xdb\x00\x01\x00\x00")
    assert info.value.offset == 7
    # inclusive limit
    s = wire.encode_stream(PushPull(True, [PushNodeState("a", V4, 1, b"", 1, 0, VSN)], b"xyz"),
                           compress=False)
    assert len(wire.StreamDecoder(max_size=len(s)).feed(s)) == 1
    for cuts in ((), range(1, len(s))):
        with pytest.raises(PacketTooLarge):
            feed_chunks(wire.StreamDecoder(max_size=len(s) - 1), s, cuts)
    # decompressed size
    c = wire.encode_stream(User(b"u" * 1000))
    with pytest.raises(PacketTooLarge):
        wire.StreamDecoder(max_decompressed=1000).feed(c)


@pytest.mark.parametrize("data,cls,reason,offset", [
    (b"\x03\x80", MalformedPacket, "unexpected stream message type 3", 0),
    (b"\x07\x00", MalformedPacket, "unexpected stream message type 7", 0),
    (b"\x0c\x00", MalformedPacket, "unexpected stream message type 12", 0),
    (b"\x00\xc1", MalformedPacket, "invalid msgpack type byte 0xc1", 1),
    (b"\x06\x92\x01\x02", MalformedPacket, "push/pull header is not a map (got array)", 0),
    (b"\x06" + packb({"Nodes": -1}), MalformedPacket,
     "push/pull header field Nodes: negative count -1", 0),
    (b"\x08" + packb({"UserMsgLen": -5}), MalformedPacket,
     "user message header field UserMsgLen: negative length -5", 0),
    (b"\x06" + packb({"Nodes": 1}) + b"\x05", MalformedPacket,
     "push/pull node state is not a map (got int)", 0),
    (b"\x09" + packb({"Algo": 0, "Buf": b""}), BadCompression, None, None),
])
def test_bad_streams(wire, data, cls, reason, offset):
    for cuts in ((), range(1, len(data))):
        with pytest.raises(DecodeError) as info:
            feed_chunks(wire.StreamDecoder(), data, cuts)
        assert type(info.value) is cls
        if reason is not None:
            assert info.value.reason == reason
        if offset is not None:
            assert info.value.offset == offset


def test_streams_inside_encryption_or_compression(wire):
    ring = Keyring([bytes(16)])

    def sealed(body: bytes) -> bytes:
        hdr = b"\x0a" + (len(body) + 29).to_bytes(4, "big")
        return hdr + ring.encrypt(body, NONCE, hdr)
    cases = [
        (b"", "missing message type byte"),
        (b"\x0a", "unexpected stream message type 10"),
        (wire.compress_message(wire.compress_message(b"\x00\x80")),
         "unexpected stream message type 9"),
        (b"\x06" + packb({"Nodes": 2}) + packb({"Addr": V4, "Name": "x"}),
         "push/pull node state truncated"),
        (b"\x06" + packb({"UserStateLen": 4}) + b"abc", "push/pull user state truncated"),
        (b"\x08" + packb({"UserMsgLen": 4}) + b"abc", "user message truncated"),
        (b"\x06\x81\xa4Nod", "push/pull header truncated"),
    ]
    for body, reason in cases:
        with pytest.raises(MalformedPacket) as info:
            wire.StreamDecoder(keyring=ring).feed(b"\x00" * 0 + sealed(body))
        assert info.value.reason == reason
        assert info.value.offset == 0
    # trailing bytes inside one encrypted message are ignored, as Go's reader does
    assert wire.StreamDecoder(keyring=ring).feed(
        sealed(wire.encode_message(Ping(4, "n")) + b"junk")) == [Ping(4, "n")]


def test_failure_is_sticky(wire):
    dec = wire.StreamDecoder()
    with pytest.raises(MalformedPacket) as first:
        dec.feed(b"\x03")
    with pytest.raises(MalformedPacket) as again:
        dec.feed(wire.encode_stream(Ping(1)))
    assert again.value is first.value


def test_stream_offsets_count_from_the_first_byte_fed(wire):
    a = wire.encode_stream(Ping(1), compress=False)
    with pytest.raises(MalformedPacket) as info:
        feed_chunks(wire.StreamDecoder(), a + a + b"\x05", [3, len(a) + 1])
    assert info.value.offset == 2 * len(a)


# -- Serf -----------------------------------------------------------------------------------

SERF_MESSAGES = [
    SerfJoin(1, "nodeA"),
    SerfLeave(2 ** 64 - 1, "n", True),
    SerfUserEvent(7, "deploy", b"\x00\xffpayload", True),
    SerfUserEvent(7, "e"),
    SerfQuery(3, 0xFFFFFFFF, V6, 7946, "src", "_serf_ping", b"x",
              [b"\x00" + packb(["a", "b"]), b"\x01" + packb({"Expr": ".*", "Tag": "role"})],
              3, 2, 15_000_000_000),
    SerfQuery(3, 1, V4, 1, "", "q", b"", [], 0, 0, -1),
    SerfQueryResponse(3, 4, "nodeB", b"\x06\xc0", 1),
    SerfPushPull(5, {"a": 1, "b": 2 ** 64 - 1}, ["c", "d"], 9,
                 [None, SerfUserEvents(9, [("deploy", b"v1"), ("x", b"")]), None,
                  SerfUserEvents(10, [])], 4),
    SerfPushPull(1),
    SerfRelay(V4, 7946, "nodeB", b"\x05" + packb({"Flags": 0}), ""),
    SerfRelay(V6, 1, "n", b"", "eth0"),
]


@pytest.mark.parametrize("msg", SERF_MESSAGES, ids=lambda m: type(m).__name__)
def test_serf_round_trip(wire, msg):
    data = wire.encode_serf(msg)
    assert data[0] == {SerfLeave: 0, SerfJoin: 1, SerfPushPull: 2, SerfUserEvent: 3,
                       SerfQuery: 4, SerfQueryResponse: 5, SerfRelay: 9}[type(msg)]
    assert wire.decode_serf(data) == msg
    assert wire.decode_serf(memoryview(data + b"\xc1" * (type(msg) is not SerfRelay))) == msg


def test_serf_relay_layout(wire):
    inner = wire.encode_serf(SerfQueryResponse(1, 2, "x"))
    data = wire.encode_serf(SerfRelay(V4, 99, "dest", inner))
    header = packb({"DestAddr": {"IP": V4, "Port": 99, "Zone": ""}, "DestName": "dest"})
    assert data == b"\x09" + header + inner


@pytest.mark.parametrize("data,reason", [
    (b"", "missing Serf message type byte"),
    (b"\x06\xc0", "unknown Serf message type 6"),
    (b"\x0a\x80", "unknown Serf message type 10"),
    (b"\x01\xc1", "undecodable serf join: FormatError"),
    (b"\x01" + packb({"LTime": -1}), "serf join field LTime: -1 out of range for uint64"),
    (b"\x02" + packb({"StatusLTimes": {"a": "b"}}),
     "serf push/pull field StatusLTimes['a']: expected uint64, got str"),
    (b"\x02" + packb({"Events": [{"Events": [{"Name": 5}]}]}),
     "serf push/pull Events[0] Events[0] field Name: expected str, got int"),
    (b"\x04" + packb({"Addr": b"12"}), "serf query field Addr: address must be 4 or 16 bytes, "
                                       "got 2"),
    (b"\x09" + packb({"DestName": "x"}), "serf relay header field DestAddr: missing"),
    (b"\x09\x81", "serf relay header truncated"),
])
def test_bad_serf(wire, data, reason):
    with pytest.raises(MalformedPacket) as info:
        wire.decode_serf(data)
    assert info.value.reason.startswith(reason)


def test_tags(wire):
    meta = wire.encode_tags({"role": "web", "dc": "dc1", "ü": "ö"})
    assert meta[0] == 0xFF
    assert list(msgpack.unpackb(meta[1:], raw=False)) == ["dc", "role", "ü"]   # sorted
    assert wire.decode_tags(meta) == {"role": "web", "dc": "dc1", "ü": "ö"}
    assert wire.encode_tags({}) == b"\xff\x80"
    assert wire.decode_tags(b"\xff\x80") == {}
    assert wire.decode_tags(b"web") == {"role": "web"}                # serf protocol 2
    assert wire.decode_tags(b"") == {"role": ""}
    with pytest.raises(MalformedPacket):
        wire.decode_tags(b"\xff\x81\xa1a\x01")
    with pytest.raises(MalformedPacket):
        wire.decode_tags(b"\xff\xc1")
    with pytest.raises(TypeError):
        wire.encode_tags({"a": 1})


def test_ack_payload(wire):
    coord = {"Vec": [0.5, -1, 0, 0, 0, 0, 0, 2e-7], "Error": 1.5, "Height": 1e-5,
             "Adjustment": 0}
    data = wire.encode_ack_payload(coord)
    assert data[:2] == b"\x01\x84" and data[2:13] == b"\xaaAdjustment"
    assert b"\xcb" + (0).to_bytes(8, "big") in data                   # ints sent as float64
    got = wire.decode_ack_payload(data)
    assert got == {"Adjustment": 0.0, "Error": 1.5, "Height": 1e-5,
                   "Vec": [0.5, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2e-7]}
    assert all(type(x) is float for x in got["Vec"])
    with pytest.raises(MalformedPacket, match="unsupported ping version 2"):
        wire.decode_ack_payload(b"\x02" + data[1:])
    with pytest.raises(MalformedPacket, match="empty ack payload"):
        wire.decode_ack_payload(b"")
    with pytest.raises(MalformedPacket, match="coordinate field Vec"):
        wire.decode_ack_payload(b"\x01" + packb({"Vec": "x"}))


# -- differential fuzz ------------------------------------------------------------------------

def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:                                  # flip a bit
            i = min(i, len(b) - 1)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:                                # set a byte
            b[min(i, len(b) - 1)] = rng.choice((0, 0xC1, 0xFF, 0x80, 0x7F, rng.randrange(256)))
        elif op == 2:                                      # insert bytes
            b[i:i] = rng.randbytes(rng.choice((1, 1, 2, 5)))
        elif op == 3:                                      # delete a range
            del b[i:i + rng.choice((1, 1, 2, 8))]
        elif op == 4:                                      # truncate
            del b[i:]
        else:                                              # duplicate a range
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[min(i, j):max(i, j)][:64]
    return bytes(b)


def packet_outcome(mod, data: bytes, **kw):
    try:
        got = mod.decode_packet(data, **kw)
    except DecodeError as exc:
        return ("error", type(exc).__name__, exc.reason, exc.offset)
    return ("ok", repr(list(got)), got.truncated,
            [(type(e).__name__, e.reason, e.offset) for e in got.dropped])


def _fuzz_packets() -> list[tuple[bytes, object]]:
    targets = [(b.data, b.ring) for b in UDP_BLOCKS]
    targets += [(RING.decrypt(b.data), None) for b in UDP_BLOCKS if b.ring]
    py = load_impl("wire", "py")
    extra = [py.make_compound([py.encode_message(Nack(1)), py.compress_message(
        py.make_compound([py.encode_message(Ping(1, "a", V6, 2, "b")), b"\x08xyz"]))])]
    extra.append(py.encode_packet([py.encode_message(Alive(1, "n", V6, 1, b"\xff\x80", VSN))],
                                  crc=True, label=b"lbl"))
    targets += [(d, None) for d in extra]
    # unique, keep order
    seen, out = set(), []
    for d, ring in targets:
        if d not in seen:
            seen.add(d)
            out.append((d, ring))
    return out


FUZZ_PACKETS = _fuzz_packets()


@pytest.mark.parametrize("seed", range(4))
def test_packet_mutations_agree(both, seed):
    py, c = both
    rng = random.Random(seed)
    sealed = [t for t in FUZZ_PACKETS if t[1] is not None]
    plain = [t for t in FUZZ_PACKETS if t[1] is None]
    for n in range(5000):
        data, ring = rng.choice(sealed if rng.random() < 0.1 else plain)
        bad = mutate(rng, data)
        kw = {"keyring": ring}
        if data.startswith(b"\xf4"):
            kw["label"] = b"lbl"
        if ring is not None and rng.random() < 0.3:
            kw["verify_incoming"] = False
        a = packet_outcome(py, bad, **kw)
        assert a == packet_outcome(c, bad, **kw), (seed, n, bad.hex())


@pytest.mark.parametrize("seed", range(4))
def test_stream_mutations_agree_whatever_the_chunking(both, seed):
    py, c = both
    rng = random.Random(seed)
    streams = [(b.data, b.ring) for b in TCP_BLOCKS]
    ring2 = Keyring([bytes(16)])
    small = b"".join(py.encode_stream(m, compress=rng.random() < 0.5) for m in
                     (Ping(1, "n", V6, 2, "s"), User(b"abc"), Err("e"), Ack(5, b"p"),
                      PushPull(False, [PushNodeState("x", V4, 1, b"", 1, 1, VSN)], b"us")))
    streams.append((small, None))
    streams.append((py.encode_stream(Ping(9), keyring=ring2, nonce=NONCE), ring2))
    for n in range(400):
        data, ring = rng.choice(streams)
        bad = mutate(rng, data)
        kw = {"keyring": ring, "max_size": rng.choice((20 * MIB, 700, 64))}
        cuts = sorted(rng.sample(range(1, len(bad)), min(len(bad) - 1, rng.choice((1, 3, 20)))))\
            if len(bad) > 1 else []
        want = stream_outcome(c, bad, **kw)
        assert stream_outcome(c, bad, cuts, **kw) == want, (seed, n, bad.hex(), cuts)
        assert stream_outcome(py, bad, cuts, **kw) == want, (seed, n, bad.hex(), cuts)


def test_random_bytes_never_raise_anything_else(both):
    rng = random.Random(99)
    py, c = both
    for n in range(3000):
        data = bytes([rng.choice((0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 12))]) + rng.randbytes(
            rng.randrange(40))
        assert packet_outcome(py, data) == packet_outcome(c, data), (n, data.hex())


FIELD_NAMES = ["SeqNo", "Node", "SourceAddr", "SourcePort", "SourceNode", "Payload",
               "Incarnation", "From", "Addr", "Port", "Meta", "Vsn", "Target", "Nack", "Other"]


def rand_value(rng: random.Random):
    k = rng.randrange(16)
    if k == 0:
        return None
    if k == 1:
        return rng.choice((True, False))
    if k == 2:
        return rng.choice((0, 1, 2, 255, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1, -1,
                           -2 ** 63))
    if k == 3:
        return rng.random()
    if k in (4, 5):
        return "".join(rng.choice("ab.Ωz") for _ in range(rng.randrange(8)))
    if k in (6, 7, 8):                       # raw bytes: valid or invalid UTF-8
        return rng.choice((V4, V6, VSN, b"", b"\xff\x80", rng.randbytes(rng.randrange(20))))
    if k == 9:
        return msgpack.ExtType(1, b"x")
    if k == 10:
        return [rng.randrange(300) for _ in range(rng.choice((4, 6, 16)))]
    if k == 11:
        return {"a": 1}
    if k == 12:
        return bytearray(rng.choice((V4, V6, VSN, b"abc")))   # packed as bin
    return rng.choice((V4, VSN, "nodeA"))


VALID_BODIES = {
    0: {"Node": "b", "SeqNo": 1, "SourceAddr": V4, "SourceNode": "a", "SourcePort": 7946},
    1: {"Nack": True, "Node": "n", "Port": 1, "SeqNo": 2, "SourceAddr": V6, "Target": V4},
    2: {"Payload": b"\x01\x80", "SeqNo": 3},
    3: {"From": "a", "Incarnation": 4, "Node": "b"},
    4: {"Addr": V4, "Incarnation": 1, "Meta": b"\xff\x80", "Node": "n", "Port": 1, "Vsn": VSN},
    5: {"From": "a", "Incarnation": 4, "Node": "b"},
    11: {"SeqNo": 9},
}


def test_random_struct_fields_agree(both):
    """Struct fields given values of every msgpack family: the compiled fast path and the
    shared mapping must agree on the message or the error."""
    py, c = both
    rng = random.Random(7)
    plain = msgpack.Packer(use_bin_type=False, strict_types=False,
                           unicode_errors="surrogateescape")
    binary = msgpack.Packer(use_bin_type=True, unicode_errors="surrogateescape")
    kinds = set()
    for n in range(6000):
        t = rng.choice(list(VALID_BODIES))
        body = dict(VALID_BODIES[t])
        for _ in range(rng.choice((0, 1, 1, 2, 4))):
            body[rng.choice(FIELD_NAMES)] = rand_value(rng)
        if rng.random() < 0.3:
            body.pop(rng.choice(list(body)), None)
        if rng.random() < 0.03:
            body[rng.choice((1, b"Node", 2.5))] = 1
        if rng.random() < 0.05:
            body = dict(reversed(list(body.items())))
        packer = binary if rng.random() < 0.3 else plain
        data = bytes((t,)) + packer.pack(body)
        want = packet_outcome(py, data)
        assert packet_outcome(c, data) == want, (n, data.hex())
        kinds.add(want[0])
    assert kinds == {"ok", "error"}


def encode_outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:          # encoding a bad message: the same exception type
        return ("error", type(exc).__name__)


ODD_VALUES = [None, True, -1, 2 ** 64, 2 ** 70, 1.5, "s", "Ω\udcff", b"", V4, bytearray(V4),
              VSN, [1, 2], "x" * 40, b"y" * 70000]


def test_random_messages_encode_alike(both):
    py, c = both
    rng = random.Random(11)
    for n in range(3000):
        msg = rand_message(rng)
        if rng.random() < 0.3:                       # a field of an unexpected type or value
            fields = [f for f in type(msg).__slots__]
            setattr(msg, rng.choice(fields), rng.choice(ODD_VALUES))
        want = encode_outcome(py.encode_message, msg)
        assert encode_outcome(c.encode_message, msg) == want, (n, msg)


def test_ack_payloads_encode_alike(both):
    py, c = both
    rng = random.Random(12)
    values = [0, 1, -3, 1.5, -0.0, float("inf"), 1e-300, 2 ** 1100, True, "1.5", None]
    for n in range(2000):
        coord = {"Adjustment": rng.random(), "Error": rng.random() * 2,
                 "Height": rng.random() * 1e-4,
                 "Vec": [rng.uniform(-1e-3, 1e-3) for _ in range(rng.choice((8, 8, 0, 3, 20)))]}
        if rng.random() < 0.4:
            key = rng.choice(list(coord))
            if key == "Vec" and rng.random() < 0.5:
                coord["Vec"] = rng.choice((tuple(coord["Vec"]), "abc", None, [1, "x"],
                                           [rng.choice(values)] * 3))
            elif rng.random() < 0.2:
                del coord[key]
            else:
                coord[key] = rng.choice(values)
        want = encode_outcome(py.encode_ack_payload, coord)
        assert encode_outcome(c.encode_ack_payload, coord) == want, (n, coord)
        if want[0] == "ok":
            assert py.decode_ack_payload(want[1])["Error"] == float(coord.get("Error", 0.0))

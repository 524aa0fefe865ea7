"""memberlist/Serf packets: the compiled `wire_c`, its twin `wire_py`, and bare msgpack doing
the unavoidable part of the same work (the baseline), one group per operation.

  wire-decode-compound   decode + flatten the captured compound (CRC, 2 alives, a Serf join)
                         and a compound of a ping + 6 alive broadcasts; baseline: unpackb of
                         the same message bodies (with the options the codec needs)
  wire-encode-ping-ack   encode a ping packet and an ack packet carrying a Vivaldi coordinate;
                         baseline: packb of the same bodies (dicts in Go's key order)
  wire-encrypted-packet  encode + encrypt, then decrypt + decode a gossip packet (CRC,
                         compound of 3 alives and a Serf join); baseline: packb + AES-GCM seal
                         + open + unpackb of the same bodies

Quote ratios of medians:
    pytest benchmarks/bench_wire.py --benchmark-only --benchmark-columns=median,iqr
    python -m benchmarks.bench_wire          # 5 runs: medians of the runs' medians, ratios
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

import msgpack
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from _core import load_impl
from _core.keyring import Keyring
from _core.messages import Ack, Alive, Ping, SerfJoin

VECTORS = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared",
                                        "vectors", "serf"))
IMPLS = ["c", "py"]
VSN = bytes([1, 5, 2, 2, 5, 5])
KEY = bytes(range(32))
NONCE = bytes(12)
UNPACK = {"raw": False, "unicode_errors": "surrogateescape", "strict_map_key": False}

with open(os.path.join(VECTORS, "plain-udp-compound-alive-join.hex")) as _f:
    VECTOR = bytes.fromhex(_f.read().strip())

_py = load_impl("wire", "py")
ALIVES = [Alive(i + 1, f"node-{i:03d}.dc1", bytes([10, 0, i >> 8, i & 0xFF]), 8301,
                b"\xff\x83\xa4role\xa6consul\xa2dc\xa3dc1\xa2id\xa4abcd", VSN) for i in range(6)]
PING = Ping(17, "node-042.dc1", bytes([10, 0, 0, 1]), 8301, "node-001.dc1")
PING_ALIVES = _py.make_compound([_py.encode_message(m) for m in [PING, *ALIVES]])
COORD = {"Adjustment": 1.2e-5, "Error": 1.3, "Height": 2.1e-5,
         "Vec": [1.5e-5, -2.5e-6, 3e-5, 0.0, -1e-5, 2e-6, 7e-6, -4e-6]}
GOSSIP = [_py.encode_message(m) for m in ALIVES[:3]] + [
    b"\x08" + _py.encode_serf(SerfJoin(12, "node-001.dc1"))]
RING = Keyring([KEY])
SEALED = _py.encode_packet(GOSSIP, crc=True, keyring=RING, nonce=NONCE)

PACKETS = {"vector": VECTOR, "ping+6alive": PING_ALIVES}


def impl(kind: str):
    try:
        return load_impl("wire", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


def bodies(packet: bytes) -> list[bytes]:
    """The msgpack bodies (and user payloads) inside a packet: what any decoder must unpack."""
    if packet[0] == 12:
        packet = packet[5:]
    if packet[0] != 7:
        return [packet[1:]]
    n = packet[1]
    lens = [int.from_bytes(packet[2 + 2 * i:4 + 2 * i], "big") for i in range(n)]
    out, p = [], 2 + 2 * n
    for length in lens:
        out.append(packet[p + 1:p + length])
        p += length
    return out


def unpack_all(blobs: list[bytes]) -> int:
    unpackb = msgpack.unpackb
    for b in blobs:
        unpackb(b, **UNPACK)
    return len(blobs)


# -- wire-decode-compound

@pytest.mark.parametrize("packet", list(PACKETS))
@pytest.mark.parametrize("kind", IMPLS)
def test_decode_compound(benchmark, kind, packet):
    benchmark.group = "wire-decode-compound"
    mod = impl(kind)
    data = PACKETS[packet]
    assert len(benchmark(mod.decode_packet, data)) == len(bodies(data))


@pytest.mark.parametrize("packet", list(PACKETS))
def test_decode_compound_msgpack(benchmark, packet):
    benchmark.group = "wire-decode-compound"
    # the Serf join's user payload is unpacked too: as its body, after the type byte
    blobs = [b[1:] if b[:1] == b"\x01" else b for b in bodies(PACKETS[packet])]
    assert benchmark(unpack_all, blobs) == len(blobs)


# -- wire-encode-ping-ack

def encode_ping_ack(mod) -> int:
    ping = mod.encode_packet([mod.encode_message(PING)])
    ack = mod.encode_packet([mod.encode_message(Ack(17, mod.encode_ack_payload(COORD)))])
    return len(ping) + len(ack)


def packb_ping_ack() -> int:
    packb = msgpack.packb
    ping = packb({"Node": PING.node, "SeqNo": PING.seq_no, "SourceAddr": PING.source_addr,
                  "SourceNode": PING.source_node, "SourcePort": PING.source_port},
                 use_bin_type=False)
    payload = packb({"Adjustment": COORD["Adjustment"], "Error": COORD["Error"],
                     "Height": COORD["Height"], "Vec": COORD["Vec"]}, use_bin_type=False)
    ack = packb({"Payload": payload, "SeqNo": 17}, use_bin_type=False)
    return len(ping) + len(ack) + 3


@pytest.mark.parametrize("kind", IMPLS)
def test_encode_ping_ack(benchmark, kind):
    benchmark.group = "wire-encode-ping-ack"
    mod = impl(kind)
    assert benchmark(encode_ping_ack, mod) == packb_ping_ack()


def test_encode_ping_ack_msgpack(benchmark):
    benchmark.group = "wire-encode-ping-ack"
    assert benchmark(packb_ping_ack) > 0


# -- wire-encrypted-packet

def seal_open(mod) -> int:
    data = mod.encode_packet(GOSSIP, crc=True, keyring=RING, nonce=NONCE)
    return len(mod.decode_packet(data, keyring=RING))


ALIVE_DICTS = [{"Addr": m.addr, "Incarnation": m.incarnation, "Meta": m.meta, "Node": m.node,
                "Port": m.port, "Vsn": m.vsn} for m in ALIVES[:3]]
AEAD = AESGCM(KEY)


def bare_seal_open() -> int:
    packb, unpackb = msgpack.packb, msgpack.unpackb
    blobs = [packb(d, use_bin_type=False) for d in ALIVE_DICTS]
    blobs.append(packb({"LTime": 12, "Node": "node-001.dc1"}, use_bin_type=False))
    sealed = AEAD.encrypt(NONCE, b"".join(blobs), None)
    AEAD.decrypt(NONCE, sealed, None)
    for b in blobs:
        unpackb(b, **UNPACK)
    return len(blobs)


@pytest.mark.parametrize("kind", IMPLS)
def test_encrypted_packet(benchmark, kind):
    benchmark.group = "wire-encrypted-packet"
    mod = impl(kind)
    assert mod.encode_packet(GOSSIP, crc=True, keyring=RING, nonce=NONCE) == SEALED
    assert benchmark(seal_open, mod) == 4


def test_encrypted_packet_msgpack(benchmark):
    benchmark.group = "wire-encrypted-packet"
    assert benchmark(bare_seal_open) == 4


# -- 5 runs, medians, ratios

def _main(runs: int = 5) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    medians: dict[str, list[float]] = {}
    for _ in range(runs):
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run([sys.executable, "-m", "pytest", os.path.join(here, "bench_wire.py"),
                            "--benchmark-only", "-q", "-p", "no:randomly",
                            f"--benchmark-json={out.name}"],
                           check=True, cwd=os.path.dirname(here), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            for b in json.load(out)["benchmarks"]:
                medians.setdefault(b["name"], []).append(b["stats"]["median"] * 1e6)
    med = {name: statistics.median(v) for name, v in medians.items()}
    rows = [
        ("decode captured compound", "test_decode_compound[c-vector]",
         "test_decode_compound[py-vector]", "test_decode_compound_msgpack[vector]"),
        ("decode ping + 6 alives", "test_decode_compound[c-ping+6alive]",
         "test_decode_compound[py-ping+6alive]", "test_decode_compound_msgpack[ping+6alive]"),
        ("encode ping + ack", "test_encode_ping_ack[c]", "test_encode_ping_ack[py]",
         "test_encode_ping_ack_msgpack"),
        ("seal+open gossip packet", "test_encrypted_packet[c]", "test_encrypted_packet[py]",
         "test_encrypted_packet_msgpack"),
    ]
    print(f"medians of {runs} runs (µs)")
    print(f"{'operation':<26}{'compiled':>10}{'twin':>10}{'baseline':>10}"
          f"{'c/base':>9}{'twin/base':>11}{'c/twin':>8}")
    for label, c, py, base in rows:
        if c not in med:
            continue
        print(f"{label:<26}{med[c]:>10.2f}{med[py]:>10.2f}{med[base]:>10.2f}"
              f"{med[c] / med[base]:>8.2f}x{med[py] / med[base]:>10.2f}x{med[c] / med[py]:>8.2f}")


if __name__ == "__main__":
    _main()

"""Go-compatible LZW (memberlist compression): the compiled `lzw_c`, its twin `lzw_py` (the
baseline: the pure-Python path the compiled one replaces), and zlib level 1 as an outside
reference for what a C compressor costs on the same bytes (zlib's output is not LZW).

Payloads: the 689-byte push/pull plaintext captured from Serf (the message memberlist
compresses on every join and push/pull), and a ~64 KiB push/pull-like body with 200 node
states (Consul-style tags in Meta) plus a Serf user state. Quote ratios of medians:
    pytest benchmarks/bench_lzw.py --benchmark-only --benchmark-columns=median,iqr
"""
from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import msgpack
import pytest

from _core import load_impl

packb = msgpack.packb
VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "serf"
IMPLS = ["c", "py"]


def impl(kind: str):
    try:
        return load_impl("lzw", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


def captured_pushpull() -> bytes:
    """The 689-byte push/pull body of shared/vectors/serf/lzw-tcp-pushpull-join-request."""
    raw = bytes.fromhex((VECTORS / "lzw-tcp-pushpull-join-request.hex").read_text().split()[0])
    buf = msgpack.unpackb(raw[1:], raw=True)[b"Buf"]     # u8 9 | {Algo: 0, Buf: lzw}
    return load_impl("lzw", "py").decompress(buf)


def pushpull_200_nodes(seed: int = 200) -> bytes:
    """A push/pull body (type 6 | header | 200 pushNodeStates | Serf user state)."""
    rng = random.Random(seed)
    states = []
    for i in range(200):
        tags = {
            "role": "consul" if i < 5 else "node", "dc": "dc1", "segment": "",
            "id": "%08x-%04x-%04x-%04x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                                 rng.getrandbits(16), rng.getrandbits(16),
                                                 rng.getrandbits(48)),
            "vsn": "2", "vsn_min": "2", "vsn_max": "3", "build": "1.15.4:7f8e8dd3",
            "port": "8300", "raft_vsn": "3", "wan_join_port": "8302", "expect": "3",
            "ft_fs": "1", "ft_si": "1", "grpc_port": "8502",
        }
        states.append({
            "Name": f"node-{i:03d}.dc1.example.internal",
            "Addr": bytes([10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]),
            "Port": 8301, "Meta": packb(tags), "Incarnation": rng.randrange(1, 50),
            "State": rng.choice([0, 0, 0, 0, 1, 2]), "Vsn": bytes([1, 5, 2, 2, 5, 4]),
        })
    user = packb({
        "LTime": 4711, "StatusLTimes": {s["Name"]: rng.randrange(4711) for s in states},
        "LeftMembers": [], "EventLTime": 99, "Events": [None] * 512, "QueryLTime": 12,
    })
    header = packb({"Join": False, "Nodes": len(states), "UserStateLen": len(user)})
    return b"\x06" + header + b"".join(packb(s) for s in states) + user


PAYLOADS = {"pushpull-689B": captured_pushpull(), "pushpull-200-nodes": pushpull_200_nodes()}
COMPRESSED = {name: load_impl("lzw", "py").compress(raw) for name, raw in PAYLOADS.items()}
ZLIB = {name: zlib.compress(raw, 1) for name, raw in PAYLOADS.items()}


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("kind", IMPLS)
def test_compress_isthmus(benchmark, kind, payload):
    benchmark.group = "lzw-compress"
    benchmark.extra_info.update(payload=payload, size=len(PAYLOADS[payload]))
    assert benchmark(impl(kind).compress, PAYLOADS[payload]) == COMPRESSED[payload]


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_compress_zlib_level1(benchmark, payload):
    benchmark.group = "lzw-compress"
    benchmark.extra_info.update(payload=payload, size=len(PAYLOADS[payload]))
    assert benchmark(zlib.compress, PAYLOADS[payload], 1) == ZLIB[payload]


@pytest.mark.parametrize("payload", list(PAYLOADS))
@pytest.mark.parametrize("kind", IMPLS)
def test_decompress_isthmus(benchmark, kind, payload):
    benchmark.group = "lzw-decompress"
    benchmark.extra_info.update(payload=payload, size=len(PAYLOADS[payload]))
    assert benchmark(impl(kind).decompress, COMPRESSED[payload]) == PAYLOADS[payload]


@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_decompress_zlib(benchmark, payload):
    benchmark.group = "lzw-decompress"
    benchmark.extra_info.update(payload=payload, size=len(PAYLOADS[payload]))
    assert benchmark(zlib.decompress, ZLIB[payload]) == PAYLOADS[payload]

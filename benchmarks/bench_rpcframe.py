"""Consul msgpack-RPC frames: the compiled `rpcframe_c`, its twin `rpcframe_py`, and bare
msgpack doing the same work without framing checks (the baseline), one group per operation.

Targets (issue): compiled decoder <= 1.3x a bare msgpack.Unpacker fed the same chunks, and
faster than the twin. Quote ratios of medians:
    pytest benchmarks/bench_rpcframe.py --benchmark-only --benchmark-columns=median,iqr
"""
from __future__ import annotations

import os

import msgpack
import pytest

from _core import load_impl

packb = msgpack.packb
N = 1000
CHUNK = 64 * 1024
BODY = {"Datacenter": "dc1", "AllowStale": False, "Token": ""}
STREAM = b"".join(packb({"ServiceMethod": "Status.Ping", "Seq": i}) + packb(BODY) for i in range(N))
CHUNKS = [STREAM[i:i + CHUNK] for i in range(0, len(STREAM), CHUNK)]

BIG = b"\x5a" * (8 * 1024 * 1024 - 64)          # one body near the default 8 MiB limit
BIG_STREAM = packb({"ServiceMethod": "KVS.Apply", "Seq": 1}) + packb({"Value": BIG})
BIG_CHUNKS = [BIG_STREAM[i:i + CHUNK] for i in range(0, len(BIG_STREAM), CHUNK)]

IMPLS = ["c", "py"]


def impl(kind: str):
    try:
        return load_impl("rpcframe", kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


def decode_frames(mod, chunks) -> int:
    dec = mod.FrameDecoder()
    n = 0
    for chunk in chunks:
        n += len(dec.feed(chunk))
    return n


def unpacker_objects(chunks) -> int:
    unpacker = msgpack.Unpacker(strict_map_key=False)
    n = 0
    for chunk in chunks:
        unpacker.feed(chunk)
        for _ in unpacker:
            n += 1
    return n


@pytest.mark.parametrize("kind", IMPLS)
def test_decode_isthmus(benchmark, kind):
    benchmark.group = "rpcframe-decode-1000-pings"
    mod = impl(kind)
    assert benchmark(decode_frames, mod, CHUNKS) == N


def test_decode_msgpack_unpacker(benchmark):
    benchmark.group = "rpcframe-decode-1000-pings"
    assert benchmark(unpacker_objects, CHUNKS) == 2 * N


@pytest.mark.parametrize("kind", IMPLS)
def test_decode_big_isthmus(benchmark, kind):
    benchmark.group = "rpcframe-decode-8MiB-body"
    mod = impl(kind)
    assert benchmark(decode_frames, mod, BIG_CHUNKS) == 1


def test_decode_big_msgpack_unpacker(benchmark):
    benchmark.group = "rpcframe-decode-8MiB-body"
    assert benchmark(unpacker_objects, BIG_CHUNKS) == 2


def encode_requests(encode) -> int:
    n = 0
    for i in range(N):
        n += len(encode("Status.Ping", i, BODY))
    return n


def encode_replies(encode) -> int:
    n = 0
    for i in range(N):
        n += len(encode("Status.Ping", i, "", BODY))
    return n


def packb_requests() -> int:
    n = 0
    for i in range(N):
        n += len(packb({"ServiceMethod": "Status.Ping", "Seq": i}) + packb(BODY))
    return n


def packb_replies() -> int:
    n = 0
    for i in range(N):
        n += len(packb({"ServiceMethod": "Status.Ping", "Seq": i, "Error": ""}) + packb(BODY))
    return n


@pytest.mark.parametrize("kind", IMPLS)
def test_encode_request_isthmus(benchmark, kind):
    benchmark.group = "rpcframe-encode-1000-requests"
    assert benchmark(encode_requests, impl(kind).encode_request) == len(STREAM)


def test_encode_request_msgpack_packb(benchmark):
    benchmark.group = "rpcframe-encode-1000-requests"
    assert benchmark(packb_requests) == len(STREAM)


@pytest.mark.parametrize("kind", IMPLS)
def test_encode_reply_isthmus(benchmark, kind):
    benchmark.group = "rpcframe-encode-1000-replies"
    benchmark(encode_replies, impl(kind).encode_reply)


def test_encode_reply_msgpack_packb(benchmark):
    benchmark.group = "rpcframe-encode-1000-replies"
    benchmark(packb_replies)

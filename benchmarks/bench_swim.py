"""The SWIM core: the compiled `_core.swim` (Cython pure-Python mode) against its own `.py`
source, one group per operation, plus the bare wire decode as the floor of packet handling.

Groups:
* swim-handle-compound: `step_packet` on one compound gossip packet (a ping + 20 alive
  broadcasts about known members, LZW-compressed, CRC) at a node with 1,000 members, then
  `drain()` (the ack, with nothing left to piggyback). Baseline: `wire.decode_packet` alone.
* swim-sim-1000x60: 1,000 simulated nodes (converged start) for 60 virtual seconds, one
  node killed at 10 s and detected; one round each (the source run takes minutes; skip it
  with ISTHMUS_BENCH_QUICK=1). Target: < 60 real s compiled.
* swim-memory: tracemalloc bytes per member of one node that learned 1,000 members from a
  push/pull (target ≤ 2 KiB), and per member record of the whole 1,000-node cluster.

    pytest benchmarks/bench_swim.py --benchmark-only --benchmark-columns=median,iqr
"""
from __future__ import annotations

import gc
import os
import random
import time
import tracemalloc

import pytest

from _core import messages as m
from _core import wire
from _core.gossip_config import GossipConfig
from agent.sim import SimCluster, pure_python_swim, sim_address

QUICK = os.environ.get("ISTHMUS_BENCH_QUICK") == "1"
N = 1000
META = b"\xff\x82\xa4role\xa4node\xa2dc\xa3dc1"     # Serf tags, as a Serf member carries


def impl(kind: str):
    if kind == "source":
        return pure_python_swim()
    import _core.swim as compiled
    if compiled.__file__.endswith(".py"):
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise ImportError("_core.swim is not compiled")
        pytest.skip("compiled _core.swim not built")
    return compiled


def states(n: int, inc: int = 1) -> list:
    cfg = GossipConfig()
    out = []
    for i in range(n):
        _, raw = sim_address(i)
        out.append(m.PushNodeState("node-%04d" % i, raw, 7946, META, inc, m.STATE_ALIVE,
                                   cfg.vsn))
    return out


def node_with_members(mod, n: int):
    """A node that learned `n` members from one push/pull (decoded from real bytes)."""
    cfg = GossipConfig()
    node = mod.SwimNode(cfg, "me", bytes((10, 9, 9, 9)), 7946, random.Random(1), 0.0)
    (pp,) = wire.StreamDecoder().feed(wire.encode_stream(m.PushPull(True, states(n), b"")))
    node.handle_stream([pp], ("10.0.0.1", 40000), 0.0)
    node._broadcasts.reset()
    node.drain()
    return node


def compound_packet() -> bytes:
    cfg = GossipConfig()
    parts = [wire.encode_message(m.Ping(7, "me", bytes((10, 0, 0, 1)), 7946, "node-0000"))]
    for i in range(20):
        _, raw = sim_address(100 + i)
        parts.append(wire.encode_message(m.Alive(1, "node-%04d" % (100 + i), raw, 7946, META,
                                                 cfg.vsn)))
    return wire.encode_packet(parts, compress=True, crc=True)


@pytest.mark.parametrize("kind", ["compiled", "source"])
def test_handle_compound(benchmark, kind):
    benchmark.group = "swim-handle-compound"
    node = node_with_members(impl(kind), N)
    data = compound_packet()
    src = ("10.0.0.1", 7946)

    def step():
        node.step_packet(data, src, 1.0)
        return node.drain()

    ready = benchmark(step)
    assert len(ready.packets) == 1 and node.stats.malformed == 0


def test_handle_compound_decode_only(benchmark):
    benchmark.group = "swim-handle-compound"
    data = compound_packet()
    assert len(benchmark(wire.decode_packet, data)) == 21


def run_sim(mod) -> SimCluster:
    c = SimCluster(N, 7, converged=True, swim_module=mod)
    c.run_for(10.0)
    victim = c.nodes[N // 2].name
    c.kill(victim)
    c.run_for(50.0)
    assert c.all_see(victim, m.STATE_DEAD), c.seed
    return c


@pytest.mark.parametrize("kind", ["compiled", "source"])
def test_sim_1000x60(benchmark, kind):
    benchmark.group = "swim-sim-1000x60"
    if kind == "source" and QUICK:
        pytest.skip("ISTHMUS_BENCH_QUICK: the source run takes minutes")
    mod = impl(kind)
    t0 = time.perf_counter()
    c = benchmark.pedantic(run_sim, args=(mod,), rounds=1, iterations=1)
    benchmark.extra_info["real_s"] = round(time.perf_counter() - t0, 1)
    benchmark.extra_info["packets"] = c.network.sent


@pytest.mark.parametrize("kind", ["compiled", "source"])
def test_memory_per_member(benchmark, kind):
    benchmark.group = "swim-memory"
    mod = impl(kind)

    def measure() -> tuple[float, float]:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            node = node_with_members(mod, N)
            gc.collect()
            one = (tracemalloc.get_traced_memory()[0] - base) / node.num_members
            base = tracemalloc.get_traced_memory()[0]
            cluster = SimCluster(N, 3, converged=True, record=False, swim_module=mod)
            gc.collect()
            whole = (tracemalloc.get_traced_memory()[0] - base) / (N * N)
            assert cluster.nodes[0].swim.num_members == N
        finally:
            tracemalloc.stop()
        return one, whole

    one, whole = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["bytes_per_member_one_node"] = round(one)
    benchmark.extra_info["bytes_per_member_record_cluster"] = round(whole)
    print(f"\n{kind}: {one:.0f} B per member (one node, 1,000 members from a push/pull); "
          f"{whole:.0f} B per member record (1,000-node cluster)")
    assert one <= 2048

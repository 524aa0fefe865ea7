"""Serf's Vivaldi coordinates: `CoordinateClient.update()` compiled (`_core.vivaldi`, Cython
pure-Python mode) against the very same `_core/vivaldi.py` run by the interpreter.

One group, "vivaldi-update": 10,000 update() calls on a client observing 16 peers
(RTTs of a 16-node line, 1 ms apart), 5 rounds; quote the ratio of the medians:
    pytest benchmarks/bench_vivaldi.py --benchmark-only --benchmark-columns=median,iqr
or, without pytest-benchmark, medians of 5 runs and their ratio:
    python -m benchmarks.bench_vivaldi
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random
import statistics
import sys
import time
from pathlib import Path

import pytest

N_UPDATES = 10_000
N_PEERS = 16
ROUNDS = 5
SOURCE = Path(__file__).resolve().parents[1] / "_core" / "vivaldi.py"
MEDIANS: dict[str, float] = {}


def load(kind: str):
    """The compiled module ("c") or the .py source run by the interpreter ("py")."""
    if kind == "c":
        mod = importlib.import_module("_core.vivaldi")
        if not mod.__file__.endswith((".so", ".pyd")):
            raise ImportError("_core.vivaldi is not compiled")
        return mod
    name = "_isthmus_vivaldi_source"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SOURCE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def workload(mod):
    """A fresh client and the N_UPDATES observations it will be fed (not timed)."""
    config = mod.CoordinateConfig()
    rng = random.Random(42)
    peers = []
    for j in range(N_PEERS):
        vec = [0.0] * config.dimensionality
        vec[0] = 0.001 * (j + 1)                      # a line: never on top of the client
        peers.append((f"node_{j}", mod.Coordinate(vec, 0.5, 0.0, config.height_min)))
    obs = []
    for k in range(N_UPDATES):
        name, other = peers[k % N_PEERS]
        obs.append((name, other, 0.001 * (k % N_PEERS + 1) * rng.uniform(0.95, 1.05)))
    return mod.CoordinateClient(config, rng), obs


def run_updates(cl, obs) -> int:
    update = cl.update
    for name, other, rtt in obs:
        update(name, other, rtt)
    return len(obs)


def impl(kind: str):
    try:
        return load(kind)
    except ImportError:
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            raise
        pytest.skip("compiled module not built")


@pytest.mark.parametrize("kind", ["c", "py"])
def test_update(benchmark, kind):
    benchmark.group = "vivaldi-update"
    mod = impl(kind)
    result = benchmark.pedantic(run_updates, setup=lambda: (workload(mod), {}),
                                rounds=ROUNDS, iterations=1)
    assert result == N_UPDATES
    stats = getattr(benchmark, "stats", None)
    if stats is not None and not getattr(benchmark, "disabled", False):
        MEDIANS[kind] = stats.stats.median
        if "c" in MEDIANS and "py" in MEDIANS:
            benchmark.extra_info["py/c median ratio"] = round(MEDIANS["py"] / MEDIANS["c"], 2)


def measure(kind: str) -> float:
    """Median seconds of ROUNDS runs of N_UPDATES updates."""
    mod = load(kind)
    times = []
    for _ in range(ROUNDS):
        cl, obs = workload(mod)
        t0 = time.perf_counter()
        run_updates(cl, obs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    c, py = measure("c"), measure("py")
    print(f"vivaldi-update: {N_UPDATES:,} updates, median of {ROUNDS} runs")
    print(f"  compiled  {c * 1e3:8.2f} ms  ({c / N_UPDATES * 1e6:.2f} µs/update)")
    print(f"  .py       {py * 1e3:8.2f} ms  ({py / N_UPDATES * 1e6:.2f} µs/update)")
    print(f"  ratio .py/compiled {py / c:.2f}x")


if __name__ == "__main__":
    main()

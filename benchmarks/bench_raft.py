"""Raft side by side: three-node clusters of our engine and of pysyncobj 0.3.17 (configured as
shared/spec/raft-notes.md §4 row A0), as whole processes on loopback, in one run.

Every node, whatever its engine, is `python -m benchmarks.raft_nodes.<module>` with the same
flags and answers the JSON-lines ops of benchmarks/raft_nodes/control.py; the harness drives
all of them through that port, so each measured write pays the same control round trip.

Per round and kind: start 3 nodes (free loopback ports, fresh data dirs), wait until all three
report the same leader, let the cluster settle SETTLE_SECONDS, then measure
  idle       utime+stime of each node over `idle_seconds` as % of one core (mean and max),
             and VmRSS per node; RSS again after the writes
  sequential `seq_puts` puts at the leader, one after another: ops/s, latency p50/p99
  pipelined  `window` puts kept in flight at the leader for `pipe_seconds`: ops/s, p50/p99
  failover   `kill -9` of the leader until both survivors report the same new leader, and
             until a put at that new leader is acknowledged
(`warmup_puts` unmeasured puts go first, so the journal's first growth is not timed). A put
counts when the node acknowledges it committed and applied there. Medians over the rounds;
the isthmus kinds also get their ratios to pysyncobj.

  python -m benchmarks.bench_raft [ROUNDS] [KINDS...]     # default 5 rounds, every kind available
Under pytest with --benchmark-disable (as CI runs it): one round with small counts. Load
overrides from the environment: ISTHMUS_RAFT_SEQ_PUTS, _WINDOW, _PIPE_SECONDS, _IDLE_SECONDS.
The pysyncobj kind needs `pip install -e '.[bench]'`; the isthmus kinds need
benchmarks/raft_nodes/isthmus_node.py. Kinds that cannot run are skipped, with the reason.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from benchmarks.common import free_ports, load_from_env
from benchmarks.procstat import cpu_seconds, rss_kib
from benchmarks.raft_nodes.control import ControlClient
from benchmarks.summary import RESULTS

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "benchmarks" / "raft_nodes"
GROUP = "raft 3 nodes"
KINDS: dict[str, tuple[str, list[str]]] = {
    "pysyncobj": ("benchmarks.raft_nodes.pysyncobj_node", []),
    "isthmus": ("benchmarks.raft_nodes.isthmus_node", ["--fsync", "1"]),
    "isthmus-nofsync": ("benchmarks.raft_nodes.isthmus_node", ["--fsync", "0"]),
}
BASELINE = "pysyncobj"
SETTLE_SECONDS = 1.0
POLL = 0.005
START_WITHIN = 30.0
LEADER_WITHIN = 30.0
PUT_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Load:
    seq_puts: int = 1000
    window: int = 100
    pipe_seconds: float = 3.0
    idle_seconds: float = 5.0
    warmup_puts: int = 200
    value_bytes: int = 100
    keys: int = 1000

    def from_env(self) -> Load:
        env = {"seq_puts": "ISTHMUS_RAFT_SEQ_PUTS", "window": "ISTHMUS_RAFT_WINDOW",
               "pipe_seconds": "ISTHMUS_RAFT_PIPE_SECONDS", "idle_seconds": "ISTHMUS_RAFT_IDLE_SECONDS"}
        return load_from_env(self, env)


FULL = Load()
SMOKE = Load(seq_puts=100, window=20, pipe_seconds=0.5, idle_seconds=1.0, warmup_puts=20)


def unavailable(kind: str) -> str | None:
    """Why `kind` cannot run here, or None."""
    module = KINDS[kind][0]
    if not (NODE_DIR / (module.rsplit(".", 1)[1] + ".py")).exists():
        return f"{module.replace('.', '/')}.py does not exist yet"
    if kind == "pysyncobj" and find_spec("pysyncobj") is None:
        return "pysyncobj is not installed (pip install -e '.[bench]')"
    return None


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


def percentile_ms(sorted_seconds: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list, in ms."""
    if not sorted_seconds:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_seconds)))
    return sorted_seconds[rank - 1] * 1e3


class Cluster:
    """Three node processes of one kind on 127.0.0.1; ended by PID in kill() and close()."""

    def __init__(self, kind: str) -> None:
        module, extra = KINDS[kind]
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"isthmus-raft-{kind}-")
        ports = free_ports(6)
        self.addrs = [f"127.0.0.1:{p}" for p in ports[:3]]
        self.control_ports = ports[3:]
        self.procs: list[subprocess.Popen] = []
        self.clients: list[ControlClient | None] = [None] * 3
        try:
            for i, addr in enumerate(self.addrs):
                data = os.path.join(self.dir, f"n{i + 1}")
                os.makedirs(data)
                with open(self.log_path(i), "wb") as log:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-m", module, "--name", f"n{i + 1}", "--self", addr,
                         "--peers", ",".join(a for a in self.addrs if a != addr),
                         "--control", str(self.control_ports[i]), "--data-dir", data, *extra],
                        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        except BaseException:
            self.close()
            raise

    def log_path(self, i: int) -> str:
        return os.path.join(self.dir, f"n{i + 1}.log")

    def _check_alive(self, nodes) -> None:
        for i in nodes:
            if self.procs[i].poll() is not None:
                with open(self.log_path(i), errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError(f"{self.kind} node n{i + 1} exited with {self.procs[i].returncode}:\n{tail}")

    async def connect(self) -> None:
        deadline = time.monotonic() + START_WITHIN
        for i, port in enumerate(self.control_ports):
            while self.clients[i] is None:
                self._check_alive([i])
                try:
                    self.clients[i] = await ControlClient.connect(port)
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.kind} node n{i + 1} control port not up "
                                           f"within {START_WITHIN}s") from None
                    await asyncio.sleep(0.02)

    async def status(self, i: int) -> dict | None:
        client = self.clients[i]
        if client is None or client.closed:
            return None
        try:
            return await client.call("status", timeout=1.0)
        except (OSError, TimeoutError):
            return None

    async def agreed_leader(self, nodes: list[int], not_this: str | None = None) -> tuple[int, str]:
        """Wait until every node in `nodes` reports the same leader (not `not_this`) and exactly one
        of them claims it is that leader; returns (its index, the leader id the nodes report)."""
        deadline = time.monotonic() + LEADER_WITHIN
        while True:
            seen = await asyncio.gather(*(self.status(i) for i in nodes))
            if all(seen):
                leaders = {s["leader"] for s in seen}
                claimants = [i for i, s in zip(nodes, seen) if s["is_leader"]]
                if len(leaders) == 1 and len(claimants) == 1 and "" not in leaders and not_this not in leaders:
                    return claimants[0], leaders.pop()
            self._check_alive(nodes)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind}: no agreed leader among {nodes} within "
                                   f"{LEADER_WITHIN}s; last statuses {seen}")
            await asyncio.sleep(POLL)

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if self.clients[i] is not None:
            self.clients[i].close()

    def close(self) -> None:
        for i, client in enumerate(self.clients):
            if client is not None:
                client.close()
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


async def put_ok(client: ControlClient, key: str, value: str) -> bool:
    reply = await client.call("put", key=key, value=value, timeout=PUT_TIMEOUT)
    return bool(reply.get("ok"))


async def sequential(client: ControlClient, load: Load) -> dict:
    value = "v" * load.value_bytes
    lats: list[float] = []
    errors = 0
    clock = time.perf_counter
    t0 = clock()
    for i in range(load.seq_puts):
        t = clock()
        if await put_ok(client, f"k{i % load.keys}", value):
            lats.append(clock() - t)
        else:
            errors += 1
    elapsed = clock() - t0
    lats.sort()
    return {"seq_ops_s": len(lats) / elapsed, "seq_p50_ms": percentile_ms(lats, 50),
            "seq_p99_ms": percentile_ms(lats, 99), "seq_errors": errors}


async def pipelined(client: ControlClient, load: Load) -> dict:
    """`window` lanes, each putting again as soon as its previous put is acknowledged."""
    value = "v" * load.value_bytes
    lats: list[float] = []
    errors = 0
    clock = time.perf_counter
    deadline = clock() + load.pipe_seconds

    async def lane(j: int) -> None:
        nonlocal errors
        i = j
        while clock() < deadline:
            t = clock()
            if await put_ok(client, f"k{i % load.keys}", value):
                lats.append(clock() - t)
            else:
                errors += 1
            i += load.window

    t0 = clock()
    await asyncio.gather(*(lane(j) for j in range(load.window)))
    elapsed = clock() - t0
    lats.sort()
    return {"pipe_ops_s": len(lats) / elapsed, "pipe_p50_ms": percentile_ms(lats, 50),
            "pipe_p99_ms": percentile_ms(lats, 99), "pipe_errors": errors}


async def idle(cluster: Cluster, seconds: float) -> dict:
    pids = [p.pid for p in cluster.procs]
    before = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    cpu = [(cpu_seconds(p) - b) / (time.monotonic() - t0) * 100 for p, b in zip(pids, before)]
    rss = [rss_mib(p) for p in pids]
    return {"idle_cpu_pct": statistics.mean(cpu), "idle_cpu_pct_max": max(cpu),
            "rss_mib": statistics.mean(rss), "rss_max_mib": max(rss)}


async def failover(cluster: Cluster, leader: int, leader_id: str) -> dict:
    survivors = [i for i in range(3) if i != leader]
    t0 = time.monotonic()
    cluster.kill(leader)
    new, new_id = await cluster.agreed_leader(survivors, not_this=leader_id)
    elected = time.monotonic() - t0
    attempts = 1
    while not await put_ok(cluster.clients[new], "failover", new_id):
        if time.monotonic() - t0 > LEADER_WITHIN:
            raise TimeoutError(f"{cluster.kind}: no put acknowledged within {LEADER_WITHIN}s of the kill")
        attempts += 1
        await asyncio.sleep(POLL)
        new, new_id = await cluster.agreed_leader(survivors, not_this=leader_id)
    return {"failover_leader_s": elected, "failover_put_s": time.monotonic() - t0,
            "failover_put_attempts": attempts}


async def one_round(kind: str, load: Load) -> dict:
    t0 = time.monotonic()
    cluster = Cluster(kind)
    try:
        await cluster.connect()
        leader, leader_id = await cluster.agreed_leader([0, 1, 2])
        out = {"start_to_leader_s": time.monotonic() - t0}
        await asyncio.sleep(SETTLE_SECONDS)
        out.update(await idle(cluster, load.idle_seconds))
        leader, leader_id = await cluster.agreed_leader([0, 1, 2])
        client = cluster.clients[leader]
        term = (await client.call("status"))["term"]
        value = "w" * load.value_bytes
        for i in range(load.warmup_puts):
            await put_ok(client, f"k{i % load.keys}", value)
        out.update(await sequential(client, load))
        out.update(await pipelined(client, load))
        out["rss_after_mib"] = statistics.mean(rss_mib(p.pid) for p in cluster.procs)
        now = await client.call("status")
        out["term_changes"] = now["term"] - term
        if not now["is_leader"]:
            leader, leader_id = await cluster.agreed_leader([0, 1, 2])
        out.update(await failover(cluster, leader, leader_id))
        return out
    finally:
        cluster.close()


def medians(rounds: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in rounds), 4) for k in rounds[0]} | {"rounds": len(rounds)}


# for each metric, True when a larger value is better (ratios are printed as ours/baseline)
METRICS = {"seq_ops_s": True, "seq_p50_ms": False, "seq_p99_ms": False, "pipe_ops_s": True,
           "pipe_p50_ms": False, "pipe_p99_ms": False, "idle_cpu_pct": False, "rss_mib": False,
           "rss_after_mib": False, "failover_leader_s": False, "failover_put_s": False}


def ratios(results: dict[str, dict]) -> dict[str, dict[str, float]]:
    """{kind: {metric: kind/baseline}} for every non-baseline kind present next to the baseline."""
    base = results.get(BASELINE)
    out = {}
    for kind, r in results.items():
        if kind != BASELINE and base:
            out[f"{kind}/{BASELINE}"] = {m: round(r[m] / base[m], 3) if base[m] else None
                                         for m in METRICS if m in r and m in base}
    return out


def raft_lines() -> list[str]:
    """One line per kind for a terminal summary (for benchmarks/conftest.py)."""
    r = RESULTS.get(GROUP, {})
    lines = [f"{kind:<16} seq {m['seq_ops_s']:>7,.0f} ops/s p50 {m['seq_p50_ms']:.2f} ms; "
             f"pipelined {m['pipe_ops_s']:>7,.0f} ops/s p99 {m['pipe_p99_ms']:.1f} ms; idle CPU "
             f"{m['idle_cpu_pct']:.2f}%; RSS {m['rss_mib']:.1f} MiB; failover {m['failover_leader_s']:.2f} s "
             f"/ put {m['failover_put_s']:.2f} s" for kind, m in r.items()]
    for name, q in ratios(r).items():
        shown = {m: "n/a" if q[m] is None else f"{q[m]:.2f}x" for m in q}
        lines.append(f"{name}: seq ops {shown['seq_ops_s']}, seq p50 {shown['seq_p50_ms']}, pipelined ops "
                     f"{shown['pipe_ops_s']}, idle CPU {shown['idle_cpu_pct']}, RSS {shown['rss_mib']}, "
                     f"failover {shown['failover_leader_s']}")
    return lines


def run(rounds: int, kinds: list[str], load: Load) -> dict[str, dict]:
    """Medians per kind; rounds interleave the kinds so drift on the machine hits all alike."""
    import uvloop

    got: dict[str, list[dict]] = {k: [] for k in kinds}
    for n in range(rounds):
        for kind in kinds:
            got[kind].append(uvloop.run(one_round(kind, load)))
            print(f"round {n + 1}/{rounds} {kind}: {json.dumps(got[kind][-1])}", file=sys.stderr)
    return {kind: medians(rs) for kind, rs in got.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_raft_cluster(benchmark, kind):
    reason = unavailable(kind)
    if reason:
        pytest.skip(reason)
    rounds, load = (1, SMOKE) if benchmark.disabled else (5, FULL)
    benchmark.group = GROUP
    result: dict = {}
    benchmark.pedantic(lambda: result.update(run(rounds, [kind], load.from_env())[kind]),
                       rounds=1, iterations=1)
    assert result["seq_ops_s"] > 0 and result["pipe_ops_s"] > 0
    benchmark.extra_info.update(result)
    RESULTS.setdefault(GROUP, {})[kind] = result
    print(json.dumps({kind: result, **ratios(RESULTS[GROUP])}, indent=1))


def main(argv: list[str]) -> None:
    rounds = int(argv[0]) if argv else 5
    kinds = argv[1:] or list(KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    runnable = []
    for kind in kinds:
        reason = unavailable(kind)
        if reason:
            print(f"skipping {kind}: {reason}", file=sys.stderr)
        else:
            runnable.append(kind)
    results = run(rounds, runnable, FULL.from_env())
    RESULTS.setdefault(GROUP, {}).update(results)
    print(json.dumps({**results, **ratios(results)}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])

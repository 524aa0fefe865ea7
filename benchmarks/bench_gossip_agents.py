"""Whole agents, side by side: N `isthmus agent` processes vs N real `serf agent` processes on
loopback, same memberlist LAN profile, in one run.

Per round and implementation: start N agents (agent i on 127.0.S.(i+1)), join agents 1..N-1
to agent 0 one after another, then measure
  convergence  from the last join's return until every agent lists N members alive
  idle CPU     utime+stime of every agent over IDLE_SECONDS, as % of one core (mean per agent)
  RSS          VmRSS per agent (mean), and for isthmus a bare Python process that imports the
               same packages (the issue's RSS bound is 1.25x that)
  detection    `kill -9` of the last agent until every other agent lists it failed
(as shared/spec/serf-peer.md measured Serf). The serf agents carry the same tags as an
Isthmus client agent, so gossip messages have the same sizes on both sides. Medians over the rounds are printed at the end;
`python -m benchmarks.bench_gossip_agents N ROUNDS` runs it without pytest.
Needs the serf binary (ISTHMUS_SERF or ~/.cache/isthmus-serf/bin/serf); skipped without it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import pytest

from benchmarks.procstat import cpu_seconds, rss_kib
from benchmarks.summary import RESULTS

SERF = os.environ.get("ISTHMUS_SERF") or shutil.which("serf") or os.path.expanduser(
    "~/.cache/isthmus-serf/bin/serf")
IDLE_SECONDS = 10.0
POLL = 0.1
BARE_IMPORTS = "import asyncio, uvloop, msgpack, aiohttp, cryptography.hazmat.primitives.ciphers.aead"


def _wait(pred, within: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if pred():
            return time.monotonic() - t0
        time.sleep(POLL)
    raise TimeoutError(f"{what} not within {within}s")


def consul_like_tags(i: int) -> list[str]:
    """The tags an Isthmus client agent gossips, so both sides carry the same meta size
    (alive messages of the same size fill gossip packets alike)."""
    tags = {"role": "node", "dc": "dc1", "segment": "", "id": str(uuid.UUID(int=i + 1)),
            "vsn": "2", "vsn_min": "2", "vsn_max": "3", "build": "1.22.0:isthmus"}
    return [f"-tag={k}={v}" for k, v in tags.items()]


class SerfCluster:
    def __init__(self, n: int, subnet: int) -> None:
        self.hosts = [f"127.0.{subnet}.{i + 1}" for i in range(n)]
        self.procs = [subprocess.Popen(
            [SERF, "agent", f"-node=s{i:02d}", f"-bind={h}:7946", f"-rpc-addr={h}:7373",
             "-log-level=warn", *consul_like_tags(i)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, h in enumerate(self.hosts)]
        try:
            for h in self.hosts:
                _wait(lambda h=h: self._members(h) is not None, 30, f"serf {h} up")
        except BaseException:
            self.close()                # no orphans holding the addresses of the next run
            raise

    def _members(self, h: str):
        r = subprocess.run([SERF, "members", f"-rpc-addr={h}:7373", "-format=json"],
                           capture_output=True, text=True)
        return json.loads(r.stdout)["members"] if r.returncode == 0 else None

    def join(self, i: int) -> None:
        subprocess.run([SERF, "join", f"-rpc-addr={self.hosts[i]}:7373", f"{self.hosts[0]}:7946"],
                       check=True, capture_output=True)

    def statuses(self, i: int) -> dict[str, str]:
        return {m["name"]: m["status"] for m in self._members(self.hosts[i]) or []}

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class IsthmusCluster:
    def __init__(self, n: int, subnet: int, data: str) -> None:
        self.hosts = [f"127.0.{subnet}.{i + 1}" for i in range(n)]
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "agent", "agent", "-node", f"i{i:02d}", "-bind", h, "-client", h,
             "-data-dir", os.path.join(data, f"i{i}"), "-log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i, h in enumerate(self.hosts)]
        try:
            for h in self.hosts:
                # 50 Python processes starting at once on 2 cores take a while
                _wait(lambda h=h: self._get(h, "/v1/agent/self") is not None, 60 + 3 * n,
                      f"isthmus {h} up")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _get(h: str, path: str, method: str = "GET"):
        try:
            req = urllib.request.Request(f"http://{h}:8500{path}", method=method)
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read()
                return json.loads(body) if body else {}
        except OSError:
            return None

    def join(self, i: int) -> None:
        if self._get(self.hosts[i], f"/v1/agent/join/{self.hosts[0]}:8301", "PUT") is None:
            raise RuntimeError(f"join from {self.hosts[i]} failed")

    def statuses(self, i: int) -> dict[str, str]:
        names = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
        got = self._get(self.hosts[i], "/v1/agent/members") or []
        return {m["Name"]: names.get(m["Status"], "none") for m in got}

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bare_python_rss_kib() -> int:
    p = subprocess.Popen([sys.executable, "-c", BARE_IMPORTS + "; import time; time.sleep(30)"])
    time.sleep(3)
    try:
        return rss_kib(p.pid)
    finally:
        p.kill()
        p.wait()


def one_round(kind: str, n: int) -> dict:
    data = tempfile.mkdtemp(prefix="isthmus-bench-")
    subnet = 60 if kind == "serf" else 61
    cluster = SerfCluster(n, subnet) if kind == "serf" else IsthmusCluster(n, subnet, data)
    try:
        for i in range(1, n):
            cluster.join(i)
        everyone = lambda: all(  # noqa: E731
            list(cluster.statuses(i).values()).count("alive") == n for i in range(n))
        try:
            converge = _wait(everyone, 60, "convergence")
        except TimeoutError:
            # counted, not fatal: the median over rounds still says how the two compare
            print(f"{kind} N={n}: not converged within 60 s", file=sys.stderr)
            converge = math.inf
        pids = [p.pid for p in cluster.procs]
        c0 = [cpu_seconds(p) for p in pids]
        time.sleep(IDLE_SECONDS)
        cpu = statistics.mean((cpu_seconds(p) - a) / IDLE_SECONDS * 100 for p, a in zip(pids, c0))
        rss = statistics.mean(rss_kib(p) for p in pids) / 1024
        victim = cluster.procs[-1]
        vname = ("s" if kind == "serf" else "i") + f"{n - 1:02d}"
        t0 = time.monotonic()
        victim.kill()
        victim.wait()
        try:
            _wait(lambda: all(cluster.statuses(i).get(vname) == "failed" for i in range(n - 1)),
                  90, "failure detection")
            detect = time.monotonic() - t0
        except TimeoutError:
            print(f"{kind} N={n}: failure not detected everywhere within 90 s", file=sys.stderr)
            detect = math.inf
        return {"converge_s": converge, "idle_cpu_pct": cpu, "rss_mib": rss, "detect_s": detect}
    finally:
        cluster.close()
        shutil.rmtree(data, ignore_errors=True)


def run(n: int, rounds: int) -> dict[str, dict[str, float]]:
    out: dict[str, list[dict]] = {"serf": [], "isthmus": []}
    for _ in range(rounds):
        for kind in ("serf", "isthmus"):
            out[kind].append(one_round(kind, n))
    med = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in out.items()}
    med["isthmus"]["bare_python_rss_mib"] = bare_python_rss_kib() / 1024
    return med


@pytest.mark.skipif(not os.path.exists(SERF), reason="no serf binary")
@pytest.mark.parametrize("n", [5, 20, 50])
def test_agents_vs_serf(benchmark, n):
    rounds = 1 if benchmark.disabled else 5
    if benchmark.disabled and n > 5:
        pytest.skip("smoke run: N=5 only")
    benchmark.group = f"gossip agents N={n}"
    result = {}
    benchmark.pedantic(lambda: result.update(run(n, rounds)), rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    RESULTS.setdefault(f"gossip N={n}", {}).update(result)
    print(json.dumps({f"N={n}": result}, indent=1))


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    print(json.dumps(run(n, rounds), indent=1))

"""Small pieces every whole-process benchmark uses."""
from __future__ import annotations

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
from pathlib import Path

from agent.ports import free_ports

from benchmarks.summary import RESULTS

__all__ = ["free_ports", "load_from_env", "pinned", "load_client", "medians", "alternating",
           "record", "run_benchmark", "main_rounds", "RoundProcs", "ROOT"]

ROOT = Path(__file__).resolve().parent.parent


def load_from_env(load, env: dict[str, str]):
    """`load` (a frozen dataclass of sizes) with the fields named in `env` ({field: VAR})
    replaced by the environment's values, converted to each field's type."""
    changes = {f: type(getattr(load, f))(os.environ[v]) for f, v in env.items() if v in os.environ}
    return dataclasses.replace(load, **changes)


def pinned(cpus: set[int] | None):
    """A preexec_fn that pins the child to `cpus` (None: no pinning, or none possible)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def load_client(argv: list[str], spec: dict, cpus: set[int] | None) -> dict:
    """Run `python -m ARGV JSON(spec)` pinned to `cpus`; its last stdout line, as JSON."""
    proc = subprocess.run([sys.executable, "-m", *argv, json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, preexec_fn=pinned(cpus))
    if proc.returncode != 0:
        raise RuntimeError(f"load client failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def medians(rounds: list[dict], spread: tuple[str, ...] = ()) -> dict:
    """{test: {kind: {metric: median over the rounds that have the test}, "rounds": n}}; for
    the kinds in `spread` also each metric's _min and _max over the rounds."""
    out: dict = {}
    for test in rounds[0]:
        out[test] = {}
        for kind in rounds[0][test]:
            rs = [r[test][kind] for r in rounds if test in r]
            out[test][kind] = {m: round(statistics.median(r[m] for r in rs), 4) for m in rs[0]}
            if kind in spread:
                for m in rs[0]:
                    out[test][kind][m + "_min"] = round(min(r[m] for r in rs), 4)
                    out[test][kind][m + "_max"] = round(max(r[m] for r in rs), 4)
            out[test][kind]["rounds"] = len(rs)
    return out


def alternating(rounds: int, kinds: tuple[str, ...], one_round, load) -> dict:
    """medians() of `rounds` calls one_round(load, order), the order of `kinds` reversed
    every other round; each round's figures go to stderr."""
    got = []
    for n in range(rounds):
        order = kinds if n % 2 == 0 else kinds[::-1]
        got.append(one_round(load, order))
        print(f"round {n + 1}/{rounds}: {json.dumps(got[-1])}", file=sys.stderr)
    return medians(got)


def record(prefix: str, results: dict) -> None:
    """Results into RESULTS (for benchmarks/conftest.py's summary), each test as prefix+test."""
    for test, r in results.items():
        RESULTS.setdefault(prefix + test, {}).update(r)


def run_benchmark(benchmark, group: str, run, full, smoke) -> tuple[dict, int, object]:
    """A test_* body: run(rounds, load) once under pytest-benchmark — 1 round of `smoke` with
    --benchmark-disable, else 5 of `full` (both with the environment's overrides) — checks
    that no measurement had errors or no replies, and returns (result, rounds, load)."""
    rounds, load = (1, smoke) if benchmark.disabled else (5, full)
    load = load.from_env()
    benchmark.group = group
    result: dict = {}
    benchmark.pedantic(lambda: result.update(run(rounds, load)), rounds=1, iterations=1)
    for test, kinds in result.items():
        for kind, m in kinds.items():
            assert m.get("errors", 0) == 0, (test, kind, m)
            assert m.get("rate", 1) > 0 and not math.isnan(m.get("p50_ms", 0)), (test, kind, m)
    benchmark.extra_info.update(result)
    return result, rounds, load


def main_rounds(argv: list[str], full, run, prefix: str, info: dict, derived) -> tuple[dict, int, object]:
    """A benchmark's command line, `python -m benchmarks.bench_X [ROUNDS]` (default 5): run()
    with `full` (and the environment's overrides), record, print the JSON of the load, the
    rounds, `info`, the time taken, the medians and derived(medians) ({name: figures});
    returns (medians, rounds, load)."""
    rounds = int(argv[0]) if argv else 5
    load = full.from_env()
    t0 = time.monotonic()
    results = run(rounds, load)
    record(prefix, results)
    print(json.dumps({"load": dataclasses.asdict(load), "rounds": rounds, **info,
                      "seconds": round(time.monotonic() - t0, 1), "medians": results,
                      **derived(results)}, indent=1))
    return results, rounds, load


class RoundProcs:
    """The processes of one round (logs in a temporary directory); all ended by PID in
    close()."""

    def __init__(self, prefix: str) -> None:
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.procs: dict[str, subprocess.Popen] = {}

    def check_alive(self, kind: str) -> None:
        proc = self.procs[kind]
        if proc.poll() is not None:
            tail = ""
            path = os.path.join(self.dir, f"{kind}.log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    tail = f.read()[-3000:]
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{tail}")

    def start_dev_agent(self, cpus: set[int] | None) -> dict[str, int]:
        """`isthmus agent -dev` on free ports as procs["isthmus"] (log isthmus.log); its ports."""
        ports = dict(zip(("http", "server", "serf-lan", "serf-wan", "dns"), free_ports(5)))
        with open(os.path.join(self.dir, "isthmus.log"), "wb") as log:
            self.procs["isthmus"] = subprocess.Popen(
                [sys.executable, "-m", "agent", "agent", "-dev", "-log-level", "warn",
                 *(a for name, port in ports.items() for a in (f"-{name}-port", str(port)))],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=pinned(cpus))
        return ports

    def start_port_printer(self, kind: str, argv: list[str], cpus: set[int] | None) -> int:
        """`python -m ARGV` as procs[kind], which prints the port it listens on first."""
        proc = self.procs[kind] = subprocess.Popen(
            [sys.executable, "-m", *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=pinned(cpus))
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{kind} ({argv[0]}) did not start: {line!r} {proc.stdout.read()!r}")
        return int(line)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)

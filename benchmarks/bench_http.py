"""The HTTP API, side by side: a real `isthmus agent -dev` process vs a minimal aiohttp server
process answering the same URLs with the agent's own replies (benchmarks/http_bare.py: same
status, headers and body bytes, captured off the agent each round) -- the limit any aiohttp
handler can reach on this machine. Both are driven by the same client process
(benchmarks/http_load.py: aiohttp ClientSession on uvloop). On a machine with >= 2 CPUs the
server under test is pinned to CPU 0 and the client to CPU 1, so each has one core (the agent's
threads included) and the client never takes the server's CPU.

Per round: start the agent (free loopback ports, -log-level warn), wait for its leadership, put
`bench/k` (100 bytes) and `w`, register `services` catalog entries (one node each, n0000..,
every one an instance of service "web" with tags v1 and rack-<i % 10> and a passing service
check), capture the replies, start the bare server with them, then measure, the two servers
one after the other (order alternating by round):
  kv put / kv get / kv get stale     `conc` connections for `duration` s after `warmup` s:
      PUT /v1/kv/bench/put/<connection> (100 bytes; default consistency: a Raft apply),
      GET /v1/kv/bench/k, GET /v1/kv/bench/k?stale
      -> replies/s, p50/p99 ms, and the server's CPU % and µs per reply over the same window
  catalog services / catalog service / health service     the same, for GET
      /v1/catalog/services, /v1/catalog/service/web, /v1/health/service/web (`services`
      instances), plus one connection for `seq_duration` s -> sequential p50 ms
  watch     `watchers` connections from one client process blocked on
      GET /v1/kv/w?index=<current>&wait=5m; once all are held (the server owns that many
      sockets and its CPU is still), PUT /v1/kv/w on an open connection -> ms from sending the
      PUT until every watcher has its reply (the bare server releases its waiters from one
      asyncio.Event set by the PUT), and the server's and the client's CPU ms over that span
Medians over the rounds; ratios isthmus/bare: rate, CPU capacity (bare µs per reply / ours:
the share of the limit we would reach if neither side were held back by the client) and,
for the watchers, time. Issue #5's targets: KV get >= 0.5x the bare rate; 1,000 watchers
answered within 2x the bare handler's time.

  python -m benchmarks.bench_http [ROUNDS]        # default 5
Under pytest with --benchmark-disable (as CI runs it): one round with small loads. Overrides
from the environment: ISTHMUS_HTTP_DURATION, _CONC, _WATCHERS, _SERVICES; ISTHMUS_HTTP_PIN=0
leaves every process free to run on any CPU.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request

from benchmarks.common import (RoundProcs, alternating, load_from_env, main_rounds, record,
                               run_benchmark)
from benchmarks.common import load_client as run_load_client
from benchmarks.summary import RESULTS

PREFIX = "http "
KINDS = ("isthmus", "bare")
PIN = (os.cpu_count() or 1) >= 2 and os.environ.get("ISTHMUS_HTTP_PIN", "1") != "0"
SERVER_CPU, CLIENT_CPU = ({0}, {1}) if PIN else (None, None)
START_WITHIN = 60.0
VALUE = "v" * 100
KV_SHAPES = {
    "kv put": None,             # one key per connection, filled in by rate_requests()
    "kv get": "/v1/kv/bench/k",
    "kv get stale": "/v1/kv/bench/k?stale",
}
CATALOG_SHAPES = {
    "catalog services": "/v1/catalog/services",
    "catalog service": "/v1/catalog/service/web",
    "health service": "/v1/health/service/web",
}


@dataclasses.dataclass(frozen=True)
class Load:
    duration: float = 3.0
    warmup: float = 0.5
    seq_duration: float = 1.5
    conc: int = 32
    watchers: int = 1000
    services: int = 1000

    def from_env(self) -> Load:
        env = {"duration": "ISTHMUS_HTTP_DURATION", "conc": "ISTHMUS_HTTP_CONC",
               "watchers": "ISTHMUS_HTTP_WATCHERS", "services": "ISTHMUS_HTTP_SERVICES"}
        return load_from_env(self, env)


FULL = Load()
SMOKE = Load(duration=0.3, warmup=0.1, seq_duration=0.2, conc=8, watchers=1000, services=100)


def request(base: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Servers(RoundProcs):
    """The agent and the bare server of one round; both ended by PID in close()."""

    def __init__(self) -> None:
        super().__init__("isthmus-http-")
        self.base: dict[str, str] = {}

    def start_agent(self) -> None:
        http = self.start_dev_agent(SERVER_CPU)["http"]
        base = self.base["isthmus"] = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + START_WITHIN
        while True:
            self.check_alive("isthmus")
            try:
                status, _, body = request(base, "GET", "/v1/status/leader")
                if status == 200 and json.loads(body):
                    status, _, body = request(base, "PUT", "/v1/kv/bench/k", VALUE.encode())
                    if status == 200 and body == b"true":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent not leading within {START_WITHIN}s")
            time.sleep(0.05)

    def start_bare(self, responses: dict) -> None:
        path = os.path.join(self.dir, "responses.json")
        with open(path, "w") as f:
            json.dump(responses, f)
        port = self.start_port_printer("bare", ["benchmarks.http_bare", path], SERVER_CPU)
        self.base["bare"] = f"http://127.0.0.1:{port}"


def register(base: str, n: int) -> float:
    """`n` nodes with one instance of "web" each; returns registrations per second."""
    t0 = time.perf_counter()
    for i in range(n):
        body = {"Node": f"n{i:04d}", "Address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                "Service": {"Service": "web", "ID": f"web-{i}", "Port": 8080,
                            "Tags": ["v1", f"rack-{i % 10}"]},
                "Check": {"CheckID": f"service:web-{i}", "Name": "web alive", "ServiceID": f"web-{i}",
                          "Status": "passing"}}
        status, _, reply = request(base, "PUT", "/v1/catalog/register", json.dumps(body).encode())
        if status != 200 or reply != b"true":
            raise RuntimeError(f"register n{i:04d}: {status} {reply[:200]!r}")
    return n / (time.perf_counter() - t0)


def capture(base: str, method: str, path: str, body: str | None = None) -> dict:
    status, headers, reply = request(base, method, path, body.encode() if body is not None else None)
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {reply[:200]!r}")
    return {"status": status, "headers": headers, "body": reply.decode("latin-1")}


def load_client(spec: dict) -> dict:
    return run_load_client(["benchmarks.http_load"], spec, CLIENT_CPU)


def rate_requests(shape: str, load: Load) -> list:
    if shape == "kv put":
        return [["PUT", f"/v1/kv/bench/put/{i}", VALUE] for i in range(load.conc)]
    path = KV_SHAPES.get(shape) or CATALOG_SHAPES[shape]
    return [["GET", path, None]]


def one_round(load: Load, order: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    """{test: {kind: metrics}} for one round."""
    servers = Servers()
    out: dict[str, dict[str, dict]] = {}
    try:
        servers.start_agent()
        agent = servers.base["isthmus"]
        capture(agent, "PUT", "/v1/kv/w", "0")
        reg_rate = register(agent, load.services)
        responses = {"PUT *": capture(agent, "PUT", "/v1/kv/bench/put/0", VALUE)}
        for path in [*filter(None, KV_SHAPES.values()), "/v1/kv/w", *CATALOG_SHAPES.values()]:
            responses[f"GET {path}"] = capture(agent, "GET", path)
        entries = json.loads(responses["GET /v1/catalog/service/web"]["body"])
        if len(entries) != load.services:
            raise RuntimeError(f"/v1/catalog/service/web lists {len(entries)} of {load.services}")
        servers.start_bare(responses)
        pids = {k: p.pid for k, p in servers.procs.items()}
        for shape in [*KV_SHAPES, *CATALOG_SHAPES]:
            out[shape] = {}
            for kind in order:
                spec = {"mode": "rate", "base": servers.base[kind], "pid": pids[kind], "conc": load.conc,
                        "warmup": load.warmup, "duration": load.duration,
                        "requests": rate_requests(shape, load)}
                r = load_client(spec)
                if shape in CATALOG_SHAPES:
                    seq = load_client({**spec, "conc": 1, "duration": load.seq_duration})
                    r["seq_p50_ms"] = seq["p50_ms"]
                    r["body_bytes"] = len(responses[f"GET {CATALOG_SHAPES[shape]}"]["body"])
                out[shape][kind] = r
        watch = f"watch {load.watchers}"
        out[watch] = {}
        for kind in order:
            _, headers, _ = request(servers.base["isthmus"], "GET", "/v1/kv/w")
            out[watch][kind] = load_client({
                "mode": "watch", "base": servers.base[kind], "pid": pids[kind], "path": "/v1/kv/w",
                "index": int(headers["X-Consul-Index"]), "wait": "5m", "watchers": load.watchers,
                "new_index": kind == "isthmus", "trigger": ["PUT", "/v1/kv/w", "1"]})
        out["catalog register"] = {"isthmus": {"rate": reg_rate}}
        return out
    finally:
        servers.close()


def ratios(results: dict) -> dict[str, dict[str, float]]:
    """{test: {metric: isthmus/bare}}; cpu_capacity = bare µs per reply / ours."""
    out = {}
    for test, r in results.items():
        if not {"isthmus", "bare"} <= set(r):
            continue
        ours, bare = r["isthmus"], r["bare"]
        if "all_ms" in ours:
            out[test] = {m: round(ours[m] / bare[m], 3) for m in ("all_ms", "p50_ms", "server_cpu_ms")
                         if bare[m]}
        else:
            out[test] = {"rate": round(ours["rate"] / bare["rate"], 3),
                         "cpu_capacity": round(bare["server_us"] / ours["server_us"], 3)}
    return out


def http_lines() -> list[str]:
    """One line per test for a terminal summary (for benchmarks/conftest.py)."""
    r = {t[len(PREFIX):]: v for t, v in RESULTS.items() if t.startswith(PREFIX)}
    q = ratios(r)
    lines = []
    for test, kinds in r.items():
        if test == "catalog register":
            lines.append(f"{test:<17} {kinds['isthmus']['rate']:>8,.0f} PUT /v1/catalog/register "
                         "per s (one at a time, no baseline)")
        if test not in q:
            continue
        us, bare, k = kinds["isthmus"], kinds["bare"], q[test]
        if "all_ms" in us:
            lines.append(
                f"{test:<17} all answered {us['all_ms']:7.1f} ms (p50 {us['p50_ms']:.1f}) vs bare "
                f"{bare['all_ms']:.1f} ms (p50 {bare['p50_ms']:.1f}): {k['all_ms']:.2f}x (target <= 2x); "
                f"server CPU {us['server_cpu_ms']:.1f} vs {bare['server_cpu_ms']:.1f} ms "
                f"({k.get('server_cpu_ms', math.nan):.2f}x), client CPU {us['client_cpu_ms']:.1f} vs "
                f"{bare['client_cpu_ms']:.1f} ms")
            continue
        seq = f"; seq p50 {us['seq_p50_ms']:.2f} vs {bare['seq_p50_ms']:.2f} ms" if "seq_p50_ms" in us else ""
        target = " (target >= 0.5x)" if test == "kv get" else ""
        lines.append(
            f"{test:<17} {us['rate']:>8,.0f} req/s p50 {us['p50_ms']:.2f} ms, {us['server_us']:.0f} µs/req "
            f"vs bare {bare['rate']:>8,.0f} req/s, {bare['server_us']:.0f} µs/req: rate {k['rate']:.2f}x"
            f"{target}, CPU capacity {k['cpu_capacity']:.2f}x{seq}")
    return lines


def run(rounds: int, load: Load) -> dict:
    return alternating(rounds, KINDS, one_round, load)


def test_http(benchmark):
    result, _, _ = run_benchmark(benchmark, "http agent vs bare aiohttp", run, FULL, SMOKE)
    record(PREFIX, result)
    print(json.dumps({"medians": result, "ratios": ratios(result)}, indent=1))


def main(argv: list[str]) -> None:
    main_rounds(argv, FULL, run, PREFIX, {"pinned": PIN}, lambda r: {"ratios": ratios(r)})
    for line in http_lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

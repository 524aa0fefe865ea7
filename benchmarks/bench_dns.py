"""The DNS interface, side by side: a real `isthmus agent -dev` answering a service lookup
(`web.service.consul A`: Health.ServiceNodes in-process, health filter, shuffle, dnspython
encoding) vs a bare dnspython-over-asyncio UDP responder (uvloop) that decodes each query
with dnspython and answers it with the same answer records, fixed (captured off the agent
each round) -- the limit of any dnspython responder on this machine. Both are driven by the
same client process (this file's `load` mode: one UDP socket on uvloop, `window` queries in
flight). On a machine with >= 2 CPUs the server under test is pinned to CPU 0 and the client
to CPU 1.

Per round: start the agent (free loopback ports, -log-level warn), wait until it answers
`consul.service.consul`, register `instances` nodes with one instance of "web" each (passing
check), capture the agent's reply, start the bare responder with it, then measure, the two
servers one after the other (order alternating by round):
  service A       `window` queries in flight for `duration` s after `warmup` s -> replies/s,
                  p50/p99 ms, the server's CPU % and µs per reply over the same window
  service A seq   one query at a time for `seq_duration` s -> p50 ms
Medians over the rounds; ratios isthmus/bare: rate and CPU capacity (bare µs per reply / ours).

  python -m benchmarks.bench_dns [ROUNDS]        # default 5
Under pytest with --benchmark-disable (as CI runs it): one round with a small load. Overrides
from the environment: ISTHMUS_DNS_DURATION, _WINDOW, _INSTANCES; ISTHMUS_DNS_PIN=0 leaves
every process free to run on any CPU.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import sys
import time
import urllib.request

from benchmarks.common import (RoundProcs, alternating, load_from_env, main_rounds, record,
                               run_benchmark)
from benchmarks.common import load_client as run_load_client
from benchmarks.summary import RESULTS

PREFIX = "dns "
KINDS = ("isthmus", "bare")
PIN = (os.cpu_count() or 1) >= 2 and os.environ.get("ISTHMUS_DNS_PIN", "1") != "0"
SERVER_CPU, CLIENT_CPU = ({0}, {1}) if PIN else (None, None)
START_WITHIN = 60.0
QNAME = "web.service.consul"


@dataclasses.dataclass(frozen=True)
class Load:
    duration: float = 3.0
    warmup: float = 0.5
    seq_duration: float = 1.5
    window: int = 32
    instances: int = 10

    def from_env(self) -> Load:
        env = {"duration": "ISTHMUS_DNS_DURATION", "window": "ISTHMUS_DNS_WINDOW",
               "instances": "ISTHMUS_DNS_INSTANCES"}
        return load_from_env(self, env)


FULL = Load()
SMOKE = Load(duration=0.3, warmup=0.1, seq_duration=0.2, window=8, instances=5)


def _query_wire(qid: int = 0) -> bytes:
    import dns.message
    q = dns.message.make_query(QNAME, "A", id=qid)
    q.flags = 0x0100                    # RD only, as dig and stub resolvers send
    return q.to_wire()


def _ask(port: int, wire: bytes, timeout: float = 2.0) -> bytes | None:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(wire, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except OSError:
            return None


class Servers(RoundProcs):
    """The agent and the bare responder of one round; both ended by PID in close()."""

    def __init__(self) -> None:
        super().__init__("isthmus-dns-")
        self.port: dict[str, int] = {}

    def start_agent(self) -> None:
        import dns.message
        ports = self.start_dev_agent(SERVER_CPU)
        dnsp = self.port["isthmus"] = ports["dns"]
        self.http = f"http://127.0.0.1:{ports['http']}"
        probe = dns.message.make_query("consul.service.consul", "A").to_wire()
        deadline = time.monotonic() + START_WITHIN
        while True:
            self.check_alive("isthmus")
            try:
                with urllib.request.urlopen(self.http + "/v1/status/leader", timeout=5) as r:
                    leader = json.loads(r.read())
            except OSError:
                leader = ""
            reply = _ask(dnsp, probe, 0.5) if leader else None
            if reply and dns.message.from_wire(reply).answer:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"agent not answering DNS within {START_WITHIN}s")
            time.sleep(0.05)

    def register(self, n: int) -> None:
        for i in range(n):
            body = {"Node": f"n{i:04d}", "Address": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    "Service": {"Service": "web", "ID": f"web-{i}", "Port": 8080},
                    "Check": {"CheckID": f"service:web-{i}", "Name": "web alive",
                              "ServiceID": f"web-{i}", "Status": "passing"}}
            req = urllib.request.Request(self.http + "/v1/catalog/register",
                                         data=json.dumps(body).encode(), method="PUT")
            with urllib.request.urlopen(req, timeout=30) as r:
                if r.status != 200:
                    raise RuntimeError(f"register n{i:04d}: {r.status}")

    def start_bare(self, reply: bytes) -> None:
        self.port["bare"] = self.start_port_printer(
            "bare", ["benchmarks.bench_dns", "bare", reply.hex()], SERVER_CPU)


def load_client(spec: dict) -> dict:
    return run_load_client(["benchmarks.bench_dns", "load"], spec, CLIENT_CPU)


def one_round(load: Load, order: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    """{test: {kind: metrics}} for one round."""
    import dns.message
    servers = Servers()
    out: dict[str, dict[str, dict]] = {}
    try:
        servers.start_agent()
        servers.register(load.instances)
        reply = _ask(servers.port["isthmus"], _query_wire(1))
        if reply is None:
            raise RuntimeError("the agent did not answer the service lookup")
        parsed = dns.message.from_wire(reply)
        want = min(3, load.instances)             # udp_answer_limit without EDNS
        if sum(len(rrset) for rrset in parsed.answer) != want:
            raise RuntimeError(f"{QNAME}: {parsed}")
        servers.start_bare(reply)
        pids = {k: p.pid for k, p in servers.procs.items()}
        for test, window, duration in (("service A", load.window, load.duration),
                                       ("service A seq", 1, load.seq_duration)):
            out[test] = {}
            for kind in order:
                out[test][kind] = load_client({
                    "port": servers.port[kind], "pid": pids[kind], "window": window,
                    "warmup": load.warmup, "duration": duration, "answers": want})
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
        out[test] = {"rate": round(ours["rate"] / bare["rate"], 3) if bare["rate"] else math.nan,
                     "p50": round(ours["p50_ms"] / bare["p50_ms"], 3) if bare["p50_ms"] else math.nan,
                     "cpu_capacity": round(bare["server_us"] / ours["server_us"], 3)
                     if ours["server_us"] else math.nan}
    return out


def dns_lines() -> list[str]:
    """One line per test for a terminal summary."""
    r = {t[len(PREFIX):]: v for t, v in RESULTS.items() if t.startswith(PREFIX)}
    q = ratios(r)
    lines = []
    for test, kinds in r.items():
        if test not in q:
            continue
        us, bare, k = kinds["isthmus"], kinds["bare"], q[test]
        lines.append(
            f"{test:<14} {us['rate']:>8,.0f} q/s p50 {us['p50_ms']:.3f} ms, {us['server_us']:.0f} µs/q "
            f"vs bare dnspython {bare['rate']:>8,.0f} q/s p50 {bare['p50_ms']:.3f} ms, "
            f"{bare['server_us']:.0f} µs/q: rate {k['rate']:.2f}x, CPU capacity {k['cpu_capacity']:.2f}x")
    return lines


def run(rounds: int, load: Load) -> dict:
    return alternating(rounds, KINDS, one_round, load)


def test_dns(benchmark):
    result, _, _ = run_benchmark(benchmark, "dns service lookup vs bare dnspython responder",
                                 run, FULL, SMOKE)
    record(PREFIX, result)
    print(json.dumps({"medians": result, "ratios": ratios(result)}, indent=1))
    for line in dns_lines():
        print(line)


# ----------------------------------------------------------------------- the bare responder

class _Bare(asyncio.DatagramProtocol):
    """Decodes each query with dnspython and answers it with the fixed answer records."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        import dns.message
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return
        r = dns.message.make_response(q)
        r.flags |= 0x0400                          # AA, as the agent answers
        r.answer = list(self.answer)
        self.transport.sendto(r.to_wire(), addr)


async def _bare_main(reply_hex: str) -> None:
    import dns.message
    answer = dns.message.from_wire(bytes.fromhex(reply_hex)).answer
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Bare(answer),
                                                       local_addr=("127.0.0.1", 0))
    print(transport.get_extra_info("sockname")[1], flush=True)
    await asyncio.Event().wait()


# ----------------------------------------------------------------------- the load client

class _Client(asyncio.DatagramProtocol):
    """`window` queries in flight on one socket; each reply sends the next query. A query
    unanswered for LOST_AFTER s counts as an error and is replaced."""
    LOST_AFTER = 1.0

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.transport = None
        self.sent: dict[int, float] = {}
        self.lats: list[float] = []
        self.errors = 0
        self.next_id = 1
        self.counting = (0.0, 0.0)       # (start, end) of the counted window
        self.done = asyncio.get_running_loop().create_future()
        self.tail = _query_wire(0)[2:]   # everything after the ID

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self) -> None:
        qid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        self.sent[qid] = time.perf_counter()
        self.transport.sendto(qid.to_bytes(2, "big") + self.tail)

    def datagram_received(self, data: bytes, addr) -> None:
        now = time.perf_counter()
        qid = int.from_bytes(data[:2], "big")
        t = self.sent.pop(qid, None)
        if t is None:
            return
        start, end = self.counting
        if start <= now <= end:
            # a reply counts when it is a NOERROR answer with the expected answer count
            ok = len(data) > 12 and data[3] & 0x0F == 0 and \
                int.from_bytes(data[6:8], "big") == self.spec["answers"]
            if ok:
                self.lats.append(now - t)
            else:
                self.errors += 1
        if now < end:
            self.send()
        elif not self.sent and not self.done.done():
            self.done.set_result(None)

    def reap(self) -> None:
        now = time.perf_counter()
        for qid, t in list(self.sent.items()):
            if now - t > self.LOST_AFTER:
                del self.sent[qid]
                if self.counting[0] <= now <= self.counting[1]:
                    self.errors += 1
                if now < self.counting[1]:
                    self.send()


async def _load_main(spec: dict) -> dict:
    from benchmarks.http_load import pct, run_ns
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(
        lambda: _Client(spec), remote_addr=("127.0.0.1", spec["port"]))
    t0 = time.perf_counter()
    start = t0 + spec["warmup"]
    end = start + spec["duration"]
    client.counting = (start, end)
    for _ in range(spec["window"]):
        client.send()
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    pid, me = spec["pid"], os.getpid()
    s0, c0, w0 = run_ns(pid), run_ns(me), time.perf_counter()
    while time.perf_counter() < end:
        await asyncio.sleep(min(0.2, max(0.0, end - time.perf_counter())))
        client.reap()
    s1, c1, wall = run_ns(pid), run_ns(me), time.perf_counter() - w0
    try:
        await asyncio.wait_for(asyncio.shield(client.done), 2.0)
    except asyncio.TimeoutError:
        pass
    transport.close()
    lats = sorted(client.lats)
    n = len(lats)
    return {"rate": n / spec["duration"], "replies": n, "errors": client.errors,
            "p50_ms": pct(lats, 50), "p99_ms": pct(lats, 99),
            "server_cpu_pct": (s1 - s0) / 1e9 / wall * 100,
            "client_cpu_pct": (c1 - c0) / 1e9 / wall * 100,
            "server_us": (s1 - s0) / 1e3 / n if n else float("nan")}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "bare":
        import uvloop
        uvloop.run(_bare_main(argv[1]))
        return
    if argv and argv[0] == "load":
        import uvloop
        print(json.dumps(uvloop.run(_load_main(json.loads(argv[1])))), flush=True)
        return
    main_rounds(argv, FULL, run, PREFIX, {"pinned": PIN}, lambda r: {"ratios": ratios(r)})
    for line in dns_lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

"""RPC round trips over loopback: Isthmus's RPC server vs a bare msgpack-RPC server vs a
raw uvloop echo server, driven by the same load generator, plain and TLS.

Shapes (connections × calls in flight): 1×1, 1×64, 16×64. Each server runs in its own
process pinned to CPU 0, the load generator (this process) on CPU 1. Every round opens
fresh connections, warms up, then times a fixed number of round trips; the server's CPU
per call comes from /proc/<pid>/stat. The pytest-benchmark time of a round divided by its
call count is the time per call; `extra_info` holds the server CPU µs per call of each
round. The session summary (conftest.py) prints medians and the ratios:
isthmus/bare server CPU per call (target ≤ 1.5) and isthmus/echo.
"""
from __future__ import annotations

import asyncio
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time

import pytest

from _core.rpcframe import encode_reply, encode_request

from benchmarks.summary import RESULTS

HERE = os.path.dirname(os.path.abspath(__file__))
REQ = encode_request("Status.Ping", 7, {})
RESP = encode_reply("Status.Ping", 7, "", {})
SHAPES = {"1x1": (1, 1, 20_000), "1x64": (1, 64, 500_000), "16x64": (16, 64, 1_000_000)}
ROUNDS = 5
SERVER_CPU, CLIENT_CPU = 0, 1


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from agent.cli.tls_cmd import run as tls
    d = tmp_path_factory.mktemp("benchcerts")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        assert tls(["ca", "create"]) == 0
        assert tls(["cert", "create", "-server", "-dc", "dc1"]) == 0
    finally:
        os.chdir(cwd)
    return str(d / "dc1-server-consul-0.pem"), str(d / "dc1-server-consul-0-key.pem")


class Server:
    def __init__(self, kind: str, tls: tuple[str, str] | None) -> None:
        cmd = [sys.executable, os.path.join(HERE, "rpc_servers.py"), kind, "--cpu", str(SERVER_CPU)]
        if tls:
            cmd += ["--tls", *tls]
        self.kind = kind
        self.tls = tls is not None
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class LoadClient(asyncio.Protocol):
    """Keeps `window` calls in flight; counts replies by their fixed size."""

    def __init__(self, window: int, state: dict, reply_size: int) -> None:
        self.window = window
        self.state = state
        self.partial = 0
        self.reply_size = reply_size
        self.big = REQ * window

    def connection_made(self, transport):
        self.tr = transport

    def start(self):
        self.tr.write(self.big)

    def data_received(self, data):
        n, self.partial = divmod(self.partial + len(data), self.reply_size)
        if n:
            st = self.state
            st["n"] += n
            if st["n"] >= st["target"] and not st["done"].done():
                st["done"].set_result(None)
            self.tr.write(REQ * n)


async def _connect(server: Server, state: dict, window: int, ctx: ssl.SSLContext | None):
    loop = asyncio.get_running_loop()
    reply_size = len(REQ) if server.kind == "echo" else len(RESP)
    factory = lambda: LoadClient(window, state, reply_size)  # noqa: E731
    if server.kind != "isthmus":
        tr, proto = await loop.create_connection(factory, "127.0.0.1", server.port, ssl=ctx,
                                                 server_hostname="" if ctx else None)
        return tr, proto
    if ctx is None:
        tr, proto = await loop.create_connection(factory, "127.0.0.1", server.port)
        tr.write(b"\x00")
        return tr, proto
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    await loop.sock_sendall(sock, b"\x03")
    tr, proto = await loop.create_connection(factory, sock=sock, ssl=ctx, server_hostname="")
    tr.write(b"\x00")
    return tr, proto


def one_round(server: Server, conns: int, window: int, calls: int) -> dict:
    ctx = None
    if server.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    async def main():
        loop = asyncio.get_running_loop()
        warm = max(calls // 10, 200)
        state = {"n": 0, "target": warm, "done": loop.create_future()}
        links = [await _connect(server, state, window, ctx) for _ in range(conns)]
        for _, proto in links:
            proto.start()
        await asyncio.wait_for(state["done"], 60)
        state.update(n=0, target=calls, done=loop.create_future())
        c0, t0 = _cpu_seconds(server.proc.pid), time.perf_counter()
        await asyncio.wait_for(state["done"], 120)
        t1, c1 = time.perf_counter(), _cpu_seconds(server.proc.pid)
        n = state["n"]
        for tr, _ in links:
            tr.close()
        await asyncio.sleep(0.01)
        return {"calls": n, "seconds": t1 - t0, "server_us_per_call": (c1 - c0) * 1e6 / n}

    import uvloop
    return uvloop.run(main())


KINDS = ["echo", "bare", "isthmus"]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", KINDS)
def test_rpc_round_trips(benchmark, kind, shape, tls, certs):
    conns, window, calls = SHAPES[shape]
    if os.environ.get("ISTHMUS_BENCH_QUICK") or benchmark.disabled:
        calls = min(calls, 2_000)
    group = f"rpc {shape} {'tls' if tls else 'plain'}"
    benchmark.group = group
    server = Server(kind, certs if tls else None)
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU % os.cpu_count()})
    rounds: list[dict] = []
    try:
        def round_():
            r = one_round(server, conns, window, calls)
            rounds.append(r)
            return r
        rounds_n = 1 if benchmark.disabled else ROUNDS
        benchmark.pedantic(round_, rounds=rounds_n, iterations=1)
    finally:
        os.sched_setaffinity(0, old)
        server.close()
    cpu = statistics.median(r["server_us_per_call"] for r in rounds)
    rate = statistics.median(r["calls"] / r["seconds"] for r in rounds)
    benchmark.extra_info.update(calls_per_round=calls, server_us_per_call_median=round(cpu, 3),
                                calls_per_s_median=round(rate),
                                server_us_per_call=[round(r["server_us_per_call"], 3) for r in rounds])
    RESULTS.setdefault(group, {})[kind] = {"server_us": cpu, "rate": rate}

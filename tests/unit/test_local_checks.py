"""Check runners against local servers on 127.0.0.1: TTL expiry, HTTP statuses, TCP, scripts."""
from __future__ import annotations

import asyncio
import random
import sys

import pytest
from aiohttp import web

from agent.local.checks import (HTTPCheck, ScriptCheck, TCPCheck, TTLCheck, make_runner,
                                truncate)
from tests.aio import run


class Results:
    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.event = asyncio.Event()

    def __call__(self, cid: str, status: str, output: str) -> None:
        self.items.append((cid, status, output))
        self.event.set()

    async def next(self, within: float = 5.0) -> tuple[str, str, str]:
        await asyncio.wait_for(self.event.wait(), within)
        self.event.clear()
        return self.items[-1]


def test_ttl_expires_to_critical_with_consuls_output():
    async def main():
        res = Results()
        ttl = TTLCheck("t", res, ttl=0.05)
        ttl.start()
        assert await res.next() == ("t", "critical", "TTL expired")
        ttl.set_status("passing", "fine")
        assert res.items[-1] == ("t", "passing", "fine")
        res.event.clear()
        assert await res.next() == ("t", "critical",
                                    "TTL expired (last output before timeout follows): fine")
        await ttl.stop()
    run(main)


def test_ttl_updates_renew_the_deadline():
    async def main():
        res = Results()
        ttl = TTLCheck("t", res, ttl=0.3)
        ttl.start()
        for _ in range(4):
            await asyncio.sleep(0.1)
            ttl.set_status("passing", "")
        assert all(s == "passing" for _, s, _ in res.items)
        await ttl.stop()
    run(main)


def test_output_cap():
    out = truncate("x" * 5000)
    assert out.endswith(" ... (captured 4096 of 5000 bytes)") and out.startswith("x" * 4096)


async def _http_server(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, port


@pytest.mark.parametrize("code,status", [(200, "passing"), (204, "passing"), (429, "warning"),
                                         (500, "critical"), (404, "critical")])
def test_http_check_statuses_and_output(code, status):
    async def main():
        seen = {}

        async def handler(request):
            seen["ua"] = request.headers.get("User-Agent")
            seen["method"] = request.method
            return web.Response(status=code, text="body text" if code != 204 else None)
        runner, port = await _http_server(handler)
        try:
            url = f"http://127.0.0.1:{port}/health"
            chk = HTTPCheck("h", lambda *a: None, url, interval=10, timeout=2)
            got_status, output = await chk.run_once()
            reason = {200: "OK", 204: "No Content", 429: "Too Many Requests",
                      500: "Internal Server Error", 404: "Not Found"}[code]
            body = "" if code == 204 else "body text"
            assert got_status == status
            assert output == f"HTTP GET {url}: {code} {reason} Output: {body}"
            assert seen == {"ua": "Consul Health Check", "method": "GET"}
        finally:
            await runner.cleanup()
    run(main)


def test_http_check_connection_refused_and_timeout():
    async def main():
        async def slow(request):
            await asyncio.sleep(2)
            return web.Response(text="late")
        runner, port = await _http_server(slow)
        try:
            chk = HTTPCheck("h", lambda *a: None, f"http://127.0.0.1:{port}/", 10, timeout=0.1)
            status, output = await chk.run_once()
            assert status == "critical" and "Client.Timeout exceeded" in output
        finally:
            await runner.cleanup()
        chk = HTTPCheck("h", lambda *a: None, f"http://127.0.0.1:{port}/", 10, timeout=1)
        status, output = await chk.run_once()
        assert status == "critical"
        assert output == (f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: '
                          "connect: connection refused")
    run(main)


def test_tcp_check():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        chk = TCPCheck("t", lambda *a: None, f"127.0.0.1:{port}", interval=10, timeout=1)
        assert await chk.run_once() == ("passing", f"TCP connect 127.0.0.1:{port}: Success")
        server.close()
        await server.wait_closed()
        status, output = await chk.run_once()
        assert status == "critical"
        assert output == f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    run(main)


@pytest.mark.parametrize("code,status", [(0, "passing"), (1, "warning"), (2, "critical")])
def test_script_check_exit_codes(code, status):
    async def main():
        chk = ScriptCheck("s", lambda *a: None,
                          [sys.executable, "-c", f"print('hi'); raise SystemExit({code})"],
                          interval=10, timeout=10)
        assert await chk.run_once() == (status, "hi\n")
    run(main)


def test_script_check_timeout():
    async def main():
        chk = ScriptCheck("s", lambda *a: None, [sys.executable, "-c", "import time; time.sleep(5)"],
                          interval=10, timeout=0.2)
        assert await chk.run_once() == ("critical", "Timed out (200ms) running check")
    run(main)


def test_interval_runner_reports_every_interval():
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        res = Results()
        runner = make_runner("t", {"TCP": f"127.0.0.1:{port}", "Interval": 0.05}, res,
                             min_interval=0.05)
        assert isinstance(runner, TCPCheck)
        runner._rng = random.Random(0)
        runner.start()
        for _ in range(3):
            assert (await res.next())[1] == "passing"
        await runner.stop()
        server.close()
        await server.wait_closed()
    run(main)


def test_min_interval_is_one_second():
    runner = make_runner("h", {"HTTP": "http://x/", "Interval": 0.01}, lambda *a: None)
    assert runner.interval == 1.0

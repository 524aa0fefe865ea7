"""Consul's HTTP error conventions, on the real aiohttp app with test routes."""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from agent.config.model import AgentConfig, Ports
from agent.errors import IsthmusError, NoServersError
from agent.http.errors import bad_request
from agent.http.server import HTTPServer
from tests.aio import run


class FakeAgent:
    config = AgentConfig(ports=Ports(http=0))


async def boom(agent, request):
    raise KeyError("oops")


async def denied(agent, request):
    raise IsthmusError("Permission denied")


async def invalid(agent, request):
    raise bad_request("Invalid wait time")


async def no_servers(agent, request):
    raise NoServersError()


async def echo(agent, request):
    return {"b": [1, "é"], "a": None}


ROUTES = {"/t/boom": boom, "/t/denied": denied, "/t/invalid": invalid,
          "/t/servers": no_servers, "/t/echo": echo}


@pytest.mark.parametrize("path,status,body", [
    ("/t/boom", 500, "internal error: KeyError: 'oops'"),
    ("/t/denied", 403, "Permission denied"),
    ("/t/invalid", 400, "Invalid wait time"),
    ("/t/servers", 500, "No known Consul servers"),
    ("/v1/nothing/here", 404, "404 page not found\n"),
    ("/t/echo", 200, '{"b":[1,"é"],"a":null}'),
    ("/t/echo?pretty", 200, '{\n    "b": [\n        1,\n        "é"\n    ],\n    "a": null\n}\n'),
])
def test_status_codes_and_plain_text_bodies(path, status, body):
    async def main():
        srv = HTTPServer(FakeAgent())
        for p, fn in ROUTES.items():
            srv.route("GET", p, fn)
        await srv.start()
        host, port = srv.addresses[0]
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{host}:{port}{path}") as r:
                text = await r.text()
                ctype = r.headers["Content-Type"]
            async with s.post(f"http://{host}:{port}/t/echo") as r2:
                assert r2.status == 405 and await r2.text() == "method POST not allowed"
                assert r2.headers["Allow"] == "GET"
        await srv.stop()
        await asyncio.sleep(0)
        return text, ctype, r.status
    text, ctype, got = run(main)
    assert (got, text) == (status, body)
    assert ctype.startswith("application/json" if status == 200 else "text/plain")

"""The limit for bench_http.py: a minimal aiohttp server answering the agent's URLs from replies
captured off the real agent (same status, same headers, same body bytes), in its own process.

  python -m benchmarks.http_bare RESPONSES.json
RESPONSES.json maps "METHOD /path?query" (tried first), "METHOD /path", then "METHOD *" to
{"status": int, "headers": {name: value}, "body": latin-1 str}. A GET carrying `index=` in its
query is held until the next PUT (any path) releases every held GET at once, through one
asyncio.Event set by the PUT's handler, and is then answered as "GET /path". Same stack as the
agent: aiohttp.web on uvloop, access log off, the default backlog. Prints the listening port
on stdout, then serves until killed (or 15 minutes pass).
"""
from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

MAX_SECONDS = 900
# aiohttp writes these itself; everything else the agent sent is copied
_OWN_HEADERS = {"content-length", "date", "server", "connection", "transfer-encoding"}


def load(path: str) -> dict[str, tuple[int, dict[str, str], bytes]]:
    with open(path) as f:
        raw = json.load(f)
    return {k: (v["status"], {h: x for h, x in v["headers"].items() if h.lower() not in _OWN_HEADERS},
                v["body"].encode("latin-1")) for k, v in raw.items()}


def app(responses: dict[str, tuple[int, dict[str, str], bytes]]) -> web.Application:
    released = asyncio.Event()

    def reply(request: web.Request) -> web.Response:
        for key in (f"{request.method} {request.path_qs}", f"{request.method} {request.path}",
                    f"{request.method} *"):
            hit = responses.get(key)
            if hit is not None:
                status, headers, body = hit
                return web.Response(status=status, headers=headers, body=body)
        return web.Response(status=404, text="404 page not found\n")

    async def handle(request: web.Request) -> web.Response:
        nonlocal released
        if request.method == "GET" and "index" in request.query:
            await released.wait()
            return reply(request)
        if request.method == "PUT":
            await request.read()
            ev, released = released, asyncio.Event()
            ev.set()
        return reply(request)

    a = web.Application(client_max_size=32 * 1024 * 1024)
    a.router.add_route("*", "/{tail:.*}", handle)
    return a


async def serve(responses_path: str) -> None:
    runner = web.AppRunner(app(load(responses_path)), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(MAX_SECONDS)
    await runner.cleanup()


def main() -> None:
    import uvloop
    uvloop.run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()

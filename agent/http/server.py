"""Consul's HTTP API on aiohttp: routing, error conventions, JSON and `?pretty`.

Errors are plain text as in Consul's agent/http.go: 400 bad request, 403 permission
denied, 404 unknown path ("404 page not found"), 405 wrong method ("method X not
allowed", with Allow), 500 anything else with the error string as body.
"""
from __future__ import annotations

import importlib
import json
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from .. import log
from ..errors import IsthmusError
from .errors import HTTPError

if TYPE_CHECKING:
    from ..agent import Agent

_log = log.get("http")
# Endpoint modules (agent/http/<name>.py), each with ROUTES = {path: {method: fn}}.
ROUTE_MODULES = [
    "agent_endpoints",
    "agent_service_endpoints",
    "catalog_endpoints",
    "coordinate_endpoints",
    "gossip_endpoints",
    "health_endpoints",
    "kv_endpoints",
    "operator_endpoints",
    "operator_area_endpoints",
    "status_endpoints",
    "session_endpoints",
    "txn_endpoints",
    "event_endpoints",
]
Endpoint = Callable[["Agent", web.Request], Awaitable[Any]]


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode   # made once:
# json.dumps with options makes an encoder per call, a third of the cost of a small reply


def encode(obj: Any, pretty: bool) -> bytes:
    """JSON as Go's encoding/json writes it: compact, or indented by 4 with a newline (?pretty)."""
    if pretty:
        return (json.dumps(obj, indent=4, ensure_ascii=False) + "\n").encode()
    return _COMPACT(obj).encode()


def _text(status: int, body: str, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, text=body, headers=headers,
                        content_type="text/plain", charset="utf-8")


def _permission_denied(exc: Exception) -> bool:
    msg = str(exc)
    return msg.startswith("Permission denied") or msg.startswith("ACL not found")


class HTTPServer:
    """Serves the agent's HTTP API on every client address."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.app = web.Application(client_max_size=32 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self.addresses: list[tuple[str, int]] = []
        self._routes: dict[str, dict[str, Endpoint]] = {}
        for name in ROUTE_MODULES:
            mod = importlib.import_module(f"{__package__}.{name}")
            for path, methods in mod.ROUTES.items():
                for method, fn in methods.items():
                    self.route(method, path, fn)
        self.app.router.add_route("*", "/{tail:.*}", self._not_found)   # after every route

    def route(self, method: str, path: str, fn: Endpoint) -> None:
        """Serve `method path` with `fn(agent, request)`, whose result is sent as JSON."""
        methods = self._routes.get(path)
        if methods is None:
            route = self.app.router.add_route("*", path, self._dispatch)
            # `{key:.*}` is canonical `{key}`: requests find their methods by the canonical
            methods = self._routes[path] = self._routes[route.resource.canonical] = {}
        methods[method] = fn

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        # errors are answered here, not by a middleware: a middleware adds two coroutine
        # levels that every suspended request (a forwarded one) pays again to resume
        try:
            methods = self._routes[request.match_info.route.resource.canonical]
            fn = methods.get(request.method)
            if fn is None:
                if request.method == "OPTIONS":
                    allow = ",".join(sorted(methods) + ["OPTIONS"])
                    return web.Response(status=200, headers={"Allow": allow})
                raise HTTPError(405, f"method {request.method} not allowed",
                                {"Allow": ",".join(sorted(methods))})
            result = await fn(self.agent, request)
            if isinstance(result, web.StreamResponse):
                return result
            return web.Response(body=encode(result, "pretty" in request.query),
                                content_type="application/json")
        except HTTPError as exc:
            return _text(exc.status, str(exc), exc.headers)
        except web.HTTPException as exc:
            return _text(exc.status, exc.reason)
        except IsthmusError as exc:
            return _text(403 if _permission_denied(exc) else 500, str(exc))
        except Exception as exc:               # our bug: log it, answer 500, keep serving
            _log.exception("request %s %s failed", request.method, request.path)
            return _text(500, f"internal error: {type(exc).__name__}: {exc}")

    @staticmethod
    async def _not_found(request: web.Request) -> web.StreamResponse:
        return _text(404, "404 page not found\n")

    async def start(self) -> None:
        cfg = self.agent.config
        if cfg.ports.http < 0:
            return
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        for host in cfg.client_addrs:
            site = web.TCPSite(self._runner, host, cfg.ports.http, reuse_address=True)
            await site.start()
            for sock in site._server.sockets:       # the bound port (0 → ephemeral in tests)
                self.addresses.append(sock.getsockname()[:2])
        _log.info("HTTP API listening on %s",
                  ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

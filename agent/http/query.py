"""Consul's query parameters and response headers shared by every read endpoint:
`?dc`, `?stale`, `?consistent`, `?index` + `?wait` (blocking), and the X-Consul-* headers."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..config.load import parse_go_duration
from .errors import bad_request

if TYPE_CHECKING:
    from ..agent import Agent


def flag(request: web.Request, name: str) -> bool:
    """Consul counts query flags by presence (`?recurse`, `?recurse=`, `?recurse=true`)."""
    return name in request.query


def datacenter(agent: "Agent", request: web.Request) -> str:
    return request.query.get("dc") or agent.config.datacenter


def query_options(agent: "Agent", request: web.Request) -> dict:
    """Consul's QueryOptions + Datacenter from the query string (400 on bad values)."""
    q = request.query
    stale, consistent = flag(request, "stale"), flag(request, "consistent")
    if stale and consistent:
        raise bad_request("Cannot specify ?stale with ?consistent, conflicting semantics.")
    opts = {"Datacenter": datacenter(agent, request), "AllowStale": stale,
            "RequireConsistent": consistent}
    if "index" in q:
        raw = q["index"]
        if not raw.isdigit():
            raise bad_request("Invalid index")
        opts["MinQueryIndex"] = int(raw)
    if "wait" in q:
        try:
            opts["MaxQueryTime"] = parse_go_duration(q["wait"])
        except ValueError:
            raise bad_request("Invalid wait time") from None
    return opts


def meta_headers(reply: dict) -> dict:
    """X-Consul-Index / KnownLeader / LastContact / Effective-Consistency from an RPC
    reply's query meta (the last only when the reply names one, as Consul's setConsistency)."""
    headers = {"X-Consul-Index": str(reply.get("Index", 0)),
               "X-Consul-KnownLeader": "true" if reply.get("KnownLeader") else "false",
               "X-Consul-LastContact": str(reply.get("LastContact", 0))}
    level = reply.get("ConsistencyLevel")
    if level:
        headers["X-Consul-Effective-Consistency"] = level
    return headers

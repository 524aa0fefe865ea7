"""/v1/event/fire/<name> and /v1/event/list (Consul's agent/event_endpoint.go): user events
over the LAN gossip pool (agent/user_events.py)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from .. import user_events
from ..rpc.blocking import MAX_WAIT
from .errors import HTTPError, bad_request
from .query import datacenter, query_options

if TYPE_CHECKING:
    from ..agent import Agent

MAX_PAYLOAD_READ = 64 * 1024        # Serf refuses far less; read no more than this (more
                                    # than it fails Serf's size check just the same)


async def fire(agent: "Agent", request: web.Request) -> dict:
    name = request.match_info.get("name", "")
    if not name:
        raise bad_request("Missing name")
    dc = datacenter(agent, request)
    if dc != agent.config.datacenter:
        # Consul fires through a server of that datacenter; we have no path to others yet
        raise HTTPError(500, "No path to datacenter")
    payload = await request.content.read(MAX_PAYLOAD_READ + 1)
    q = request.query
    ev = user_events.Event("", name, payload, q.get("node", ""), q.get("service", ""),
                           q.get("tag", ""))
    try:
        ue = user_events.attach(agent)
        ue.fire(ev)
    except user_events.EventError as exc:
        raise HTTPError(500, str(exc)) from None
    out = ev.as_api()
    out["LTime"] = 0                    # as Consul: the fire reply does not know the LTime
    return out


async def list_(agent: "Agent", request: web.Request) -> web.Response:
    from .server import encode
    opts = query_options(agent, request)
    name = request.query.get("name", "")
    ue = user_events.attach(agent)
    min_index = opts.get("MinQueryIndex") or 0
    wait = min(opts.get("MaxQueryTime") or MAX_WAIT, MAX_WAIT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        events = ue.list(name)
        # Consul: index 1 when empty (no hot loop for watchers); else the last event's ID
        index = user_events.uuid_to_uint64(events[-1].id) if events else 1
        # the index is not monotonic: block only while it equals the one asked about
        if not min_index or index != min_index or loop.time() >= deadline:
            break
        await ue.wait(deadline - loop.time())
    return web.Response(body=encode([e.as_api() for e in events], "pretty" in request.query),
                        content_type="application/json", headers={"X-Consul-Index": str(index)})


ROUTES = {
    "/v1/event/fire/{name:.*}": {"PUT": fire},
    "/v1/event/list": {"GET": list_},
}

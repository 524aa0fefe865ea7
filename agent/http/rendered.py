"""Reads rendered by the server that answers them.

A read that another server answers — one forwarded to another datacenter (`?dc=`), or any
read of a client agent — asks that server for the reply's body as the HTTP API sends it:
the RPC's options carry `Render` (the view: `Pretty`, `Filter`, `Passing`), and the reply
carries `JSON` (bytes) in place of its rows. The answering server renders a service read
from its body cache (catalog_endpoints.service_body), so a read of 1,000 instances from
another datacenter is a cached body there instead of a decode, a reshape and an encode of
1,000 instances on the asking agent; the asking agent sends the bytes on. A server that does
not know `Render` (Consul's) ignores it and sends the rows, which are then rendered here.

Only the methods in `views()` take `Render`; it is not a Consul field, and Consul's servers
ignore fields they do not know.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from ..agent import Agent
    from ..rpc.registry import Registry

View = Callable[["Agent", dict, dict, dict], "bytes | None"]
"""view(agent, options, reply, render) -> the body, or None for a reply with no rows
(the endpoint's 404)"""


@functools.cache
def views() -> dict[str, tuple[View, str]]:
    """RPC method -> (its view, the reply field of the rows the view renders)."""
    from . import catalog_endpoints, health_endpoints, kv_endpoints
    return {
        "Catalog.ServiceNodes": (catalog_endpoints.service_view, "ServiceNodes"),
        "Health.ServiceNodes": (health_endpoints.service_view, "Nodes"),
        "KVS.Get": (kv_endpoints.entries_view, "Entries"),
        "KVS.List": (kv_endpoints.entries_view, "Entries"),
    }


async def read(agent: "Agent", method: str, opts: dict, render: dict) -> tuple[dict, bytes | None]:
    """(reply, body) of a read through `method`'s view; the server that answers renders it
    when that is not this one."""
    elsewhere = agent.consensus is None or opts.get("Datacenter") != agent.config.datacenter
    if elsewhere:
        opts["Render"] = render
    reply = await agent.rpc(method, opts)
    if elsewhere and "JSON" in reply:
        return reply, reply["JSON"]
    return reply, views()[method][0](agent, opts, reply, render)


def serve(registry: "Registry", agent: "Agent") -> None:
    """Servers: the view methods answer a request that carries `Render` with its body."""
    for method, (view, rows) in views().items():
        fn, is_async = registry.methods[method]
        if not is_async:
            raise TypeError(f"{method}: a view method's handler is async")

        async def rendered(body: Any, ctx: Any, fn=fn, view=view, rows=rows) -> Any:
            reply = await fn(body, ctx)
            render = body.get("Render") if body.__class__ is dict else None
            if render.__class__ is not dict or "JSON" in reply:   # rendered by the leader
                return reply
            out = {k: v for k, v in reply.items() if k != rows}
            out["JSON"] = view(agent, body, reply, render)
            if out["JSON"] is None:                 # no rows: the caller answers its 404
                out[rows] = reply.get(rows)
            return out
        registry.methods[method] = (rendered, True)

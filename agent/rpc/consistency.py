"""Where a server answers a request, as Consul's `srv.forward` and `blockingQuery` decide.

Writes go to the leader. Reads by `QueryOptions`: `AllowStale` — any server answers from
its own state; default — the leader answers from its state without checking that it still
leads (Consul's documented default); `RequireConsistent` — the leader first confirms its
leadership with a quorum (ReadIndex) and waits until it has applied that index. Replies
carry `Index`, `KnownLeader`, `LastContact` (ms since the leader was last heard) and
`ConsistencyLevel` (the mode that served the read; HTTP's X-Consul-Effective-Consistency).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..router.core import NoPath
from .blocking import wait_time

if TYPE_CHECKING:
    from ..consensus import Consensus


def check_dc(body: Any, datacenter: str) -> None:
    """A handler's guard: a request for another datacenter is forwarded by the registry
    before any handler runs (agent/federation.py), so one that gets here had no path."""
    dc = body.get("Datacenter") if isinstance(body, dict) else None
    if dc and dc != datacenter:
        raise NoPath(dc)


async def write(consensus: "Consensus", method: str, body: dict,
                local: Callable[[], Awaitable[Any]]) -> Any:
    """Run `local()` on the leader, or forward the whole call there."""
    return await consensus.route(method, body, local)


def consistency_level(body: dict) -> str:
    """Consul's QueryOptions.ConsistencyLevel: "consistent" wins over "stale"; else "leader"."""
    if body.get("RequireConsistent"):
        return "consistent"
    if body.get("AllowStale"):
        return "stale"
    return "leader"


async def read(consensus: "Consensus", method: str, body: dict,
               local: Callable[[], dict], tables: tuple[str, ...] = ()) -> dict:
    """`local()` → reply dict with "Index", on the server the request's consistency mode
    picks. With `MinQueryIndex` (and `tables`, the tables `local` reads) it is a blocking
    query: it returns once the index passes MinQueryIndex or `MaxQueryTime` (seconds;
    default 5 min, at most 10, plus up to 1/16 jitter) runs out, as Consul's blockingQuery."""
    node = consensus.node
    if not body.get("AllowStale") and consensus.not_leader():
        async def here() -> dict:           # we became the leader while waiting for one
            return await read(consensus, method, body, local, tables)
        return await consensus.route(method, body, here)
    min_index = body.get("MinQueryIndex") or 0
    if body.get("RequireConsistent"):
        await node.consistent_read()
    reply = local()
    if min_index > 0 and tables:
        loop = asyncio.get_running_loop()
        wait = wait_time(float(body.get("MaxQueryTime") or 0))
        deadline = loop.time() + wait + consensus.rng.random() * wait / 16
        while reply["Index"] <= min_index and loop.time() < deadline:
            await consensus.notifier.wait(tables, deadline - loop.time())
            if body.get("RequireConsistent"):
                await node.consistent_read()
            reply = local()
    reply["Index"] = max(1, reply["Index"])
    reply["KnownLeader"] = bool(node.leader_id)
    reply["LastContact"] = node.last_contact_ms()
    reply["ConsistencyLevel"] = consistency_level(body)
    return reply

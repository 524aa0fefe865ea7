"""Where a server answers a request, as Consul's `srv.forward` and `blockingQuery` decide.

Writes go to the leader. Reads by `QueryOptions`: `AllowStale` — any server answers from
its own state; default — the leader answers from its state without checking that it still
leads (Consul's documented default); `RequireConsistent` — the leader first confirms its
leadership with a quorum (ReadIndex) and waits until it has applied that index. Replies
carry `Index`, `KnownLeader` and `LastContact` (ms since the leader was last heard).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..errors import IsthmusError

if TYPE_CHECKING:
    from ..consensus import Consensus


class NoPath(IsthmusError):
    def __init__(self, dc: str) -> None:
        super().__init__("No path to datacenter")
        self.dc = dc


def check_dc(body: Any, datacenter: str) -> None:
    """Forwarding to other datacenters arrives with the router (issue #6); until then every
    other datacenter is one this server has no path to."""
    dc = body.get("Datacenter") if isinstance(body, dict) else None
    if dc and dc != datacenter:
        raise NoPath(dc)


async def write(consensus: "Consensus", method: str, body: dict,
                local: Callable[[], Awaitable[Any]]) -> Any:
    """Run `local()` on the leader, or forward the whole call there."""
    if consensus.not_leader():
        return await consensus.forward_to_leader(method, body)
    return await local()


async def read(consensus: "Consensus", method: str, body: dict,
               local: Callable[[], dict]) -> dict:
    """`local()` → reply dict, on the server the request's consistency mode picks."""
    stale = bool(body.get("AllowStale"))
    node = consensus.node
    if not stale and consensus.not_leader():
        return await consensus.forward_to_leader(method, body)
    if body.get("RequireConsistent"):
        await node.consistent_read()
    reply = local()
    reply["KnownLeader"] = bool(node.leader_id)
    reply["LastContact"] = node.last_contact_ms()
    return reply

"""`Status.*` endpoints: Ping, Leader, Peers (Consul's agent/consul/status_endpoint.go)."""
from __future__ import annotations

from typing import Any, Protocol

from ..errors import IsthmusError
from .registry import CallContext, Registry


class Leadership(Protocol):
    """What the Status endpoints need from consensus (Raft arrives with issue #4)."""

    def leader(self) -> str: ...          # "ip:port" of the leader's RPC address, "" if none
    def peers(self) -> list[str]: ...     # RPC addresses of the voters


class SingleServer:
    """`-dev`: one in-memory server that is its own leader and only peer."""

    def __init__(self, rpc_addr: str) -> None:
        self._addr = rpc_addr

    def leader(self) -> str:
        return self._addr

    def peers(self) -> list[str]:
        return [self._addr]


class NoConsensus:
    """A server before any consensus exists: no leader, no peers (Consul answers "")."""

    def leader(self) -> str:
        return ""

    def peers(self) -> list[str]:
        return []


class NoPath(IsthmusError):
    def __init__(self, dc: str) -> None:
        super().__init__("No path to datacenter")
        self.dc = dc


def register_status(registry: Registry, datacenter: str, leadership: Leadership) -> None:
    """Register Status.Ping/Leader/Peers for a server of `datacenter`."""

    def check_dc(body: Any) -> None:
        # Forwarding to other datacenters arrives with the router (issue #6); until then
        # every other datacenter is one this server has no path to.
        dc = body.get("Datacenter") if isinstance(body, dict) else None
        if dc and dc != datacenter:
            raise NoPath(dc)

    def ping(body: Any, ctx: CallContext) -> dict:
        return {}

    def leader(body: Any, ctx: CallContext) -> str:
        check_dc(body)
        return leadership.leader()

    def peers(body: Any, ctx: CallContext) -> list[str]:
        check_dc(body)
        return leadership.peers()

    registry.register("Status.Ping", ping)
    registry.register("Status.Leader", leader)
    registry.register("Status.Peers", peers)

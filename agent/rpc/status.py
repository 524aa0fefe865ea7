"""`Status.*` endpoints: Ping, Leader, Peers (Consul's agent/consul/status_endpoint.go)."""
from __future__ import annotations

from typing import Any, Protocol

from .consistency import check_dc
from .registry import CallContext, Registry


class Leadership(Protocol):
    """What the Status endpoints need from consensus (`agent.consensus.Consensus`)."""

    def leader(self) -> str: ...          # "ip:port" of the leader's RPC address, "" if none
    def peers(self) -> list[str]: ...     # RPC addresses of the voters


class SingleServer:
    """A fixed leadership: one server that is its own leader and only peer (RPC tests and
    benchmarks that need Status.* without running Raft)."""

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


def register_status(registry: Registry, datacenter: str, leadership: Leadership) -> None:
    """Register Status.Ping/Leader/Peers for a server of `datacenter`."""

    def ping(body: Any, ctx: CallContext) -> dict:
        return {}

    def leader(body: Any, ctx: CallContext) -> str:
        check_dc(body, datacenter)
        return leadership.leader()

    def peers(body: Any, ctx: CallContext) -> list[str]:
        check_dc(body, datacenter)
        return leadership.peers()

    registry.register("Status.Ping", ping)
    registry.register("Status.Leader", leader)
    registry.register("Status.Peers", peers)

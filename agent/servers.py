"""A client agent's view of its datacenter's servers (Consul's agent/router/manager.go).

Servers are learnt from LAN gossip: members alive with tags role=consul, dc=<ours> and an
RPC `port`. The list is shuffled when servers are added, so that clients spread over the
servers; calls go to the first one, and a server that cannot be reached is moved to the
end of the list (Consul's NotifyFailedServer) before the next one is tried.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from . import log
from .errors import ConnectionLost, NoServersError, RPCConnectError
from .router.core import server_from_tags
from .serf.core import STATUS_ALIVE, MemberEvent

_log = log.get("router")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server of our datacenter as its LAN tags describe it."""
    name: str
    addr: tuple[str, int]
    use_tls: bool


def server_from_member(member: Any, datacenter: str) -> ServerInfo | None:
    """The server a LAN member is, or None (a client, another DC, not alive, no port)."""
    s = server_from_tags(member.name, member.addr, member.tags)
    if s is None or s.dc != datacenter or member.status != STATUS_ALIVE:
        return None
    return ServerInfo(member.name, s.addr, s.use_tls)


Caller = Callable[[tuple[str, int], str, Any], Awaitable[Any]]


class ServerManager:
    """This DC's servers in the order calls try them; `call()` sends an RPC to one."""

    def __init__(self, datacenter: str, caller: Caller, *, rng: random.Random | None = None,
                 on_server_up: Callable[[], None] | None = None) -> None:
        self.datacenter = datacenter
        self._caller = caller
        self._rng = rng or random.Random()
        self._servers: list[ServerInfo] = []
        self._on_server_up = on_server_up

    @property
    def servers(self) -> list[ServerInfo]:
        return list(self._servers)

    def attach(self, lan) -> None:
        """Follow a LAN pool: rebuild the list on every member event."""
        lan.listeners.append(lambda ev: self._on_event(ev, lan))
        self.update(lan.members())

    def _on_event(self, ev: Any, lan) -> None:
        if isinstance(ev, MemberEvent):
            self.update(lan.members())

    def update(self, members: list) -> None:
        """Keep the known order for servers still alive; new servers go in at random places."""
        found = {}
        for m in members:
            s = server_from_member(m, self.datacenter)
            if s is not None:
                found[s.name] = s
        kept = [found.pop(s.name) for s in self._servers if s.name in found]
        added = list(found.values())
        for s in added:
            kept.insert(self._rng.randint(0, len(kept)), s)
        self._servers = kept
        if added:
            _log.info("Adding LAN servers: %s", ", ".join(
                f"{s.name} ({s.addr[0]}:{s.addr[1]})" for s in added))
            if self._on_server_up is not None:
                self._on_server_up()          # Consul: a new server triggers a full sync

    def notify_failed(self, server: ServerInfo) -> None:
        """Move a server that failed to the end, so that the next call tries another."""
        if len(self._servers) > 1 and self._servers[0] == server:
            self._servers.append(self._servers.pop(0))

    async def call(self, method: str, body: Any) -> Any:
        """Send an RPC to a server, trying each known server once on connection errors."""
        if not self._servers:
            raise NoServersError()
        last: Exception | None = None
        for _ in range(len(self._servers)):
            if not self._servers:
                break
            server = self._servers[0]
            try:
                return await self._caller(server.addr, method, body)
            except RPCConnectError as exc:
                # Only a call that never reached a server is retried elsewhere: one whose
                # connection broke mid-call may have been applied (a KV CAS must not run twice).
                _log.warning("RPC %s to %s failed: %s peer=%s:%d", method, server.name, exc,
                             *server.addr)
                last = exc
                self.notify_failed(server)
            except ConnectionLost:
                self.notify_failed(server)      # the next call tries another server
                raise
        if last is not None:
            raise last
        raise NoServersError()

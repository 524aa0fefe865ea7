"""One network area's gossip pool: a GossipPool whose packets and streams ride the server
RPC port (byte 6, agent/areas/transport.py) instead of UDP + TCP on a gossip port.

Everything else — SWIM, Serf, members, join, leave, Vivaldi coordinates — is GossipPool's:
only its four transport methods are replaced. The pool's gossip address is the server's RPC
address (advertise IP + RPC port), so members show `IP:8300` and the router can dial them.

One addition (ours, above memberlist): when the pool goes from no alive member of the peer
datacenter to some — the area was just joined, from either side, or came back after every
remote server was gone — this server pushes/pulls its full state with each alive server of
its own datacenter in the pool, once. Memberlist alone tells them by gossip, but in a pool
this small every alive broadcast gets retransmit_mult × ceil(log10(n + 1)) = 4 sends, all
spent in one WAN gossip round on 4 random peers (often the member itself or servers that
already know it), and only servers that learn it anew pass it on: about one round in three
left one server without a member until the next push/pull (WAN: 60 s). The push/pull is
the join memberlist already does (the same as a flood join), no new message.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
from typing import TYPE_CHECKING, Any

from _core.gossip_config import GossipConfig

from ..errors import RPCConnectError
from ..gossip.pool import GossipPool, parse_join_address, resolve_join_address
from ..serf.core import STATUS_ALIVE, MemberEvent, SerfConfig, SerfMember
from .transport import AreaGossipHandler, AreaLinks, Hello

if TYPE_CHECKING:
    import ssl

Addr = tuple[str, int]
NO_ESTIMATE = -1          # RTT of a member without a coordinate (spec §2: negative = no estimate)


class AreaPool(GossipPool):
    """The gossip pool of one network area on this server (members `<node>.<dc>`)."""

    transport_name = "RPC port, area gossip"

    def __init__(self, area_id: str, peer_dc: str, cfg: GossipConfig, *,
                 handler: AreaGossipHandler, datacenter: str, node_name: str, advertise: str,
                 port: int, tags: dict[str, str], bind: str = "",
                 tls_context: "ssl.SSLContext | None" = None,
                 tls_names: tuple[str, ...] | None = None, dial_timeout: float = 10.0,
                 serf_cfg: SerfConfig | None = None, seed: int | None = None,
                 snapshot_path: str | None = None) -> None:
        # no keyring: area traffic is secured by TLS, never by the gossip key (spec §4.5)
        super().__init__("area", cfg, node_name=node_name, bind=bind or advertise, port=port,
                         advertise=advertise, tags=tags, keyring=None, serf_cfg=serf_cfg,
                         seed=seed, snapshot_path=snapshot_path)
        self.area_id = area_id
        self.peer_dc = peer_dc
        self.datacenter = datacenter
        self.handler = handler
        self.running = False
        self._linked = False        # an alive member of the peer DC seen since the last sync
        self.links = AreaLinks(self._hello, self._spawn, dial_timeout=dial_timeout,
                               tls_context=tls_context, tls_names=tls_names, logger=self._log)

    @property
    def use_tls(self) -> bool:
        """Whether this pool dials its peers with TLS."""
        return self.links.tls_context is not None

    def set_tls(self, tls_context: "ssl.SSLContext | None",
                tls_names: tuple[str, ...] | None = None) -> None:
        """Dial with this TLS setting from now on (live: open packet connections are redialled)."""
        self.links.set_tls(tls_context, tls_names)

    def _hello(self, kind: str) -> Hello:
        return Hello(kind, self.datacenter, self.peer_dc, (self.advertise, self.port),
                     self.node_name)

    # ------------------------------------------------------------------ transport

    async def _listen(self) -> None:
        self.handler.add(self)
        self.running = True
        self._log.info("area %s (peer datacenter %s): gossip over the RPC port %s:%d",
                       self.area_id, self.peer_dc, self.advertise, self.port)

    def _close_listeners(self) -> None:
        self.running = False
        self.handler.remove(self)
        self.links.close()

    def _send_packet(self, addr: Addr, payload: bytes) -> None:
        if self.running:
            self.links.send(addr, payload)

    async def _open_stream(self, addr: Addr, timeout: float
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self.running:
            raise ConnectionError("area pool stopped")
        try:
            return await self.links.open_stream(addr, timeout)
        except RPCConnectError as exc:
            raise ConnectionError(str(exc)) from None       # GossipPool handles OSError

    def packet_received(self, data: bytes, src: Addr) -> None:
        if self.running:
            super().packet_received(data, src)

    def stream_received(self, msgs: list, src: Addr) -> bytes | None:
        return super().stream_received(msgs, src) if self.running else None

    # ------------------------------------------------------------------ linking up

    def _on_serf_event(self, ev: Any) -> None:
        super()._on_serf_event(ev)
        if not isinstance(ev, MemberEvent) or ev.member.name == self.node_name:
            return
        if ev.kind == "member-join":
            dc = ev.member.tags.get("dc", "")
            if not self._linked and dc and dc != self.datacenter and self.running:
                self._linked = True
                self._spawn(self._sync_local())
        elif ev.kind in ("member-leave", "member-failed", "member-reap") and self._linked:
            self._linked = any(m.status == STATUS_ALIVE and m.tags.get("dc", self.datacenter)
                               != self.datacenter for m in self.members())

    async def _sync_local(self) -> None:
        """Push/pull with every other alive server of our DC in the pool (see the module doc)."""
        targets = [(m.addr, m.port) for m in self.members()
                   if m.name != self.node_name and m.status == STATUS_ALIVE
                   and m.tags.get("dc") == self.datacenter]
        if not targets or self.swim is None:
            return
        loop = asyncio.get_running_loop()
        join_id = self.swim.join(targets, loop.time())
        fut = loop.create_future()
        self._joins[join_id] = fut
        self._flush()
        result = await fut
        self._log.debug("area %s: peer datacenter %s linked up: state pushed/pulled with %d "
                        "of %d local servers", self.area_id, self.peer_dc, result.successes,
                        len(targets))

    # ------------------------------------------------------------------ API

    async def join_address(self, text: str) -> tuple[bool, str]:
        """Join through one address as an operator typed it (port defaults to the RPC port):
        (joined, error text or "")."""
        try:
            host, port = parse_join_address(text, self.port)
        except ValueError as exc:
            return False, invalid_address(text, str(exc))
        try:
            targets = await resolve_join_address(host, port)
        except OSError as exc:
            return False, f"Failed to resolve {host}: {exc.strerror or exc}"
        if not targets:
            return False, f"Failed to resolve {host}: no IP address"
        for t in targets:
            self.links.last_error.pop(t, None)
        try:
            n, errors = await self.join([_join_text(t) for t in targets])
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return False, f"area {self.area_id} was removed while joining"
        if n:
            return True, ""
        # the dial error (Consul's wording) says more than memberlist's "connection failed"
        dial_errors = [self.links.last_error[t] for t in targets if t in self.links.last_error]
        if dial_errors:
            return False, "; ".join(dial_errors)
        msg = "; ".join(errors) or "join failed"
        if not self.use_tls and "connection failed or timed out" in msg:
            # a server with verify_incoming closes plaintext connections without a word
            msg += " (no answer: if that server requires TLS, the area needs UseTLS)"
        return False, msg

    def members_json(self) -> list[dict]:
        """Members in Consul's SerfMember shape (spec §2), sorted by name; RTT in ns from this
        server's coordinate in this pool: 0 for itself, NO_ESTIMATE without a coordinate."""
        return [self.member_json(m) for m in sorted(self.members(), key=lambda m: m.name)]

    def member_json(self, m: SerfMember) -> dict:
        tags = m.tags
        role = tags.get("role", "")
        return {
            "ID": tags.get("id", ""),
            "Name": m.name,
            "Addr": m.addr,
            "Port": m.port,
            "Datacenter": tags.get("dc", ""),
            "Role": "server" if role == "consul" else "client" if role == "node" else "unknown",
            "Build": tags.get("build", "").split(":", 1)[0],
            "Protocol": _int(tags.get("vsn")),
            "Status": m.status_name,
            "RTT": self.rtt_ns(m.name),
        }

    def rtt_ns(self, name: str) -> int:
        """Estimated round trip to member `name` in nanoseconds (Vivaldi, this pool)."""
        if name == self.node_name:
            return 0
        serf = self.serf
        if serf is None or serf.coords is None:
            return NO_ESTIMATE
        other = serf.coord_cache.get(name)
        if other is None:
            return NO_ESTIMATE
        try:
            return int(round(serf.coords.get_coordinate().distance_to(other) * 1e9))
        except (ValueError, ArithmeticError):      # incompatible dimensions, NaN
            return NO_ESTIMATE


def invalid_address(text: Any, reason: str) -> str:
    """`invalid address "<text>": <reason>` (worded as agent/rpc/operator_area.py's check)."""
    if reason.startswith("invalid literal for int()"):
        reason = "invalid port"
    elif reason.startswith("not an IP address or host name"):
        reason = "not an IP address or host name"          # the address is quoted already
    return f"invalid address {json.dumps(str(text), ensure_ascii=False)}: {reason}"


def _join_text(addr: Addr) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0

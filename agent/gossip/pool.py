"""One gossip pool (LAN or WAN) on uvloop: UDP + TCP on one port around a SwimNode + SerfCore.

The driver only does I/O: datagrams and streams in, `drain()` out, one timer at the
cores' next deadline. Protocol decisions stay in `_core.swim` and `agent.serf.core`.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import random
from typing import Any

from _core import wire
from _core.errors import DecodeError
from _core.gossip_config import GossipConfig
from _core.swim import JoinResult, LeaveDone, Malformed, SwimNode

from .. import log
from ..serf.core import ConflictResolved, MemberEvent, NameConflict, SerfConfig, SerfCore, SerfMember
from .snapshot import Snapshot

Addr = tuple[str, int]


class NoncePool:
    """12-byte AES-GCM nonces from one os.urandom call per 4 KiB (not one syscall per packet)."""

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self._buf = b""
        self._pos = 0

    def __call__(self, n: int = 12) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf = os.urandom(max(self._chunk, n))
            self._pos = 0
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out


def parse_join_address(text: str, default_port: int) -> Addr:
    """`ip`, `ip:port`, `[v6]:port` → (ip, port); ValueError for anything else."""
    text = text.strip()
    if "/" in text:                       # memberlist's optional "name/" prefix
        text = text.split("/", 1)[1]
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, p = text.split(":")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):     # a DNS name, resolved when joining
            raise ValueError(f"not an IP address or host name: {host!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}")
    return host, port


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


async def resolve_join_address(host: str, port: int) -> list[Addr]:
    """Every address a join target names: an IP as is, a host name's IPs (memberlist joins
    each address a name resolves to)."""
    try:
        ipaddress.ip_address(host)
        return [(host, port)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[Addr] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (sockaddr[0], port) not in out:
            out.append((sockaddr[0], port))
    return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, pool: "GossipPool") -> None:
        self._pool = pool

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self._pool.packet_received(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        self._pool._log.debug("UDP error: %s", exc)


class _InboundStream(asyncio.Protocol):
    """A peer's TCP stream: one message in (push/pull, ping, user), our reply out, close."""

    def __init__(self, pool: "GossipPool") -> None:
        self._pool = pool
        self._decoder = pool.stream_decoder(inbound=True)
        self._tr: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._peer: Addr = ("", 0)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._tr = transport
        self._peer = transport.get_extra_info("peername")[:2]
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._pool.cfg.tcp_timeout, transport.abort)

    def data_received(self, data: bytes) -> None:
        try:
            msgs = self._decoder.feed(data)
        except DecodeError as exc:
            self._pool.bad_input("stream", exc, self._peer)
            self._tr.abort()
            return
        if not msgs:
            return
        self._tr.pause_reading()
        reply = self._pool.stream_received(msgs, self._peer)
        if reply:
            self._tr.write(reply)
        self._tr.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class GossipPool:
    """A running LAN or WAN pool: members, join, leave, user events, keyring queries."""

    def __init__(self, kind: str, cfg: GossipConfig, *, node_name: str, bind: str, port: int,
                 advertise: str, tags: dict[str, str], keyring: Any = None,
                 serf_cfg: SerfConfig | None = None, seed: int | None = None,
                 snapshot_path: str | None = None) -> None:
        self.kind = kind
        self.cfg = cfg
        self.serf_cfg = serf_cfg or SerfConfig()
        self.node_name = node_name
        self.bind = bind
        self.port = port
        self.advertise = advertise
        self.tags = tags
        self.keyring = keyring
        self._rng = random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big"))
        self._nonce = NoncePool()
        self._log = log.get(f"gossip.{kind}")
        self._bad = log.RateLimited(self._log)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._stopping: asyncio.Task | None = None     # a lost name-conflict vote
        self._joins: dict[int, asyncio.Future] = {}
        self._leave_done: asyncio.Future | None = None
        self.swim: SwimNode | None = None
        self.serf: SerfCore | None = None
        self.listeners: list = []           # callables(event) for member/user events
        self._snapshot = Snapshot(snapshot_path) if snapshot_path else None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        await self._listen()
        self.serf = SerfCore(self.serf_cfg, self.node_name, self.advertise, self.port, self.tags,
                             self._rng, now, retransmit_mult=self.cfg.retransmit_mult,
                             gossip_interval=self.cfg.gossip_interval, keyring=self.keyring)
        self.swim = SwimNode(self.cfg, self.node_name, ipaddress.ip_address(self.advertise).packed,
                             self.port, self._rng, now, delegate=self.serf, keyring=self.keyring,
                             nonce_source=self._nonce if self.keyring is not None else None)
        self.serf.attach(self.swim)
        self._log.info("%s gossip pool listening on %s:%d (%s) node=%s", self.kind.upper(),
                       self.bind, self.port, self.transport_name, self.node_name)
        if self._snapshot is not None:
            self._restore(self._snapshot.replay())
            self._snapshot.open()
        self._flush()

    # ------------------------------------------------------------------ transport
    # The four methods below are the pool's only socket I/O: a subclass that carries the
    # same memberlist packets and streams another way (agent.areas.pool.AreaPool, over the
    # server RPC port) replaces them and nothing else.

    transport_name = "UDP+TCP"

    async def _listen(self) -> None:
        """Bind the UDP and TCP listeners on `bind:port` (port 0: the kernel picks one)."""
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self),
                                                           local_addr=(self.bind, self.port))
        if self.port == 0:
            self.port = self._udp.get_extra_info("sockname")[1]
        try:
            self._tcp = await loop.create_server(lambda: _InboundStream(self), self.bind, self.port,
                                                 reuse_address=True)
        except OSError:
            self._udp.close()
            raise

    def _close_listeners(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def _send_packet(self, addr: Addr, payload: bytes) -> None:
        """Send one memberlist packet (best effort: a lost packet is the protocol's business)."""
        if self._udp is not None:
            self._udp.sendto(payload, addr)

    async def _open_stream(self, addr: Addr, timeout: float
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection for one memberlist stream exchange with `addr` (OSError/TimeoutError
        when it cannot be opened within `timeout`)."""
        return await asyncio.wait_for(asyncio.open_connection(*addr), timeout)

    def _restore(self, replayed) -> None:
        """Clocks from the snapshot, and a background rejoin of the peers it lists."""
        serf = self.serf
        serf.clock.witness(replayed.clock)
        serf.event_clock.witness(replayed.event_clock)
        serf.query_clock.witness(replayed.query_clock)
        serf.event_min_time = replayed.event_clock + 1
        serf.query_min_time = replayed.query_clock + 1
        peers = [addr for name, addr in replayed.alive.items() if name != self.node_name]
        if replayed.left:
            self._log.info("snapshot says we left the cluster: not rejoining its peers")
        elif peers:
            self._spawn(self._rejoin(peers))

    async def _rejoin(self, peers: list[str]) -> None:
        self._rng.shuffle(peers)
        for addr in peers:
            n, _ = await self.join([addr])
            if n:
                self._log.info("rejoined the cluster through %s (from the snapshot)", addr)
                return
        self._log.warning("failed to rejoin any of %d peers from the snapshot", len(peers))

    async def stop(self) -> None:
        if self._snapshot is not None:
            self._snapshot.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_listeners()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for fut in self._joins.values():
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ I/O in

    def packet_received(self, data: bytes, src: Addr) -> None:
        now = asyncio.get_running_loop().time()
        self.swim.step_packet(data, src, now)
        self._flush()

    def stream_decoder(self, inbound: bool = False):
        """A decoder for one stream; only the dialer writes the label header (memberlist),
        so only inbound streams must start with it."""
        return wire.StreamDecoder(keyring=self.keyring,
                                  verify_incoming=self.cfg.gossip_verify_incoming,
                                  label=self.cfg.label,
                                  require_label_header=inbound and bool(self.cfg.label))

    def stream_received(self, msgs: list, src: Addr) -> bytes | None:
        now = asyncio.get_running_loop().time()
        reply = self.swim.handle_stream(msgs, src, now)
        self._flush()
        return reply

    def bad_input(self, what: str, exc: Exception, peer: Addr) -> None:
        self._bad.warning(what, "malformed gossip %s dropped: %s peer=%s:%s", what, exc, *peer)

    # ------------------------------------------------------------------ I/O out

    def _flush(self) -> None:
        if self.swim is None:
            return
        ready = self.swim.drain()
        send = self._send_packet
        for addr, payload in ready.packets:
            send(addr, payload)
        for req in ready.streams:
            self._spawn(self._run_stream(req))
        for ev in ready.events:
            self._on_swim_event(ev)
        for ev in self.serf.drain_events():
            self._on_serf_event(ev)
        deadline = min(ready.next_deadline, self.serf.next_deadline())
        if self._timer is not None:
            if self._timer_due <= deadline:
                return
            self._timer.cancel()
        self._timer_due = deadline
        self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        # libuv timers have millisecond resolution and may fire up to 1 ms early: run the
        # cores at the time they asked for, or they find nothing due and we spin.
        now = max(asyncio.get_running_loop().time(), self._timer_due)
        self.swim.tick(now)
        self.serf.tick(now)
        if self._snapshot is not None:
            serf = self.serf
            self._snapshot.clocks(serf.clock.time(), serf.event_clock.time(), serf.query_clock.time())
        self._flush()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_stream(self, req) -> None:
        reply = None
        writer = None
        try:
            reader, writer = await self._open_stream(req.addr, req.timeout)
            writer.write(req.payload)
            decoder = self.stream_decoder()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + req.timeout
            while reply is None:
                chunk = await asyncio.wait_for(reader.read(65536), max(0.001, deadline - loop.time()))
                if not chunk:
                    break
                msgs = decoder.feed(chunk)
                if msgs:
                    reply = msgs[0]
        except DecodeError as exc:
            self.bad_input("stream reply", exc, req.addr)
        except (OSError, TimeoutError) as exc:
            self._log.debug("stream to %s:%s failed: %s", *req.addr, exc)
        finally:
            if writer is not None:
                writer.close()
        if self.swim is not None:
            self.swim.stream_result(req.req_id, reply, asyncio.get_running_loop().time())
            self._flush()

    # ------------------------------------------------------------------ events

    def _on_swim_event(self, ev: Any) -> None:
        if isinstance(ev, JoinResult):
            fut = self._joins.pop(ev.join_id, None)
            if fut is not None and not fut.done():
                fut.set_result(ev)
        elif isinstance(ev, LeaveDone):
            if self._leave_done is not None and not self._leave_done.done():
                self._leave_done.set_result(None)
        elif isinstance(ev, Malformed):
            self.bad_input("packet", ev.reason, ev.src)

    def _on_serf_event(self, ev: Any) -> None:
        if isinstance(ev, MemberEvent):
            mem = ev.member
            self._log.info("EventMember%s: %s %s", ev.kind.split("-")[1].capitalize(), mem.name,
                           mem.addr)
            if self._snapshot is not None and mem.name != self.node_name:
                if ev.kind in ("member-join", "member-update"):
                    self._snapshot.alive(mem.name, mem.addr, mem.port)
                else:
                    self._snapshot.not_alive(mem.name)
        elif isinstance(ev, NameConflict):
            self._log.error("Node name conflicts with another node at %s. Names must be unique! "
                            "(Resolution enabled: true)", ev.other)
        elif isinstance(ev, ConflictResolved):
            if ev.majority:
                self._log.info("majority in name conflict resolution [%d / %d]", ev.matching,
                               ev.responses)
            else:
                self._log.warning("minority in name conflict resolution, quitting [%d / %d]",
                                  ev.matching, ev.responses)
                # not one of self._tasks: stop() cancels those
                self._stopping = asyncio.get_running_loop().create_task(self.stop())
        for fn in self.listeners:
            fn(ev)

    # ------------------------------------------------------------------ API

    def members(self) -> list[SerfMember]:
        return self.serf.member_list() if self.serf else []

    async def join(self, addrs: list[str]) -> tuple[int, list[str]]:
        """Push/pull with each address; (number joined, errors). Then a Serf join intent."""
        targets, errors = [], []
        for a in addrs:
            try:
                host, port = parse_join_address(a, self.port)
                targets += await resolve_join_address(host, port)
            except ValueError as exc:
                errors.append(f"{a}: {exc}")
            except OSError as exc:                  # socket.gaierror: the name did not resolve
                errors.append(f"Failed to resolve {a}: {exc.strerror or exc}")
        if not targets:
            return 0, errors
        loop = asyncio.get_running_loop()
        join_id = self.swim.join(targets, loop.time())
        fut = loop.create_future()
        self._joins[join_id] = fut
        self._flush()
        result = await fut
        if result.successes:
            self.serf.join_intent(loop.time())
            self._flush()
        return result.successes, errors + list(result.errors)

    async def leave(self) -> None:
        """Graceful leave: Serf leave intent out first, then memberlist's dead(self)."""
        loop = asyncio.get_running_loop()
        if self._snapshot is not None:
            self._snapshot.leave()
        self.swim.begin_leave()             # the leave goes to nodes that can pass it on
        self.serf.leave(loop.time())
        self._flush()
        others_alive = any(m.status_name == "alive" for m in self.members() if m.name != self.node_name)
        deadline = loop.time() + self.serf_cfg.broadcast_timeout
        while others_alive and self.serf.intents_pending() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        self._leave_done = loop.create_future()
        self.swim.leave(loop.time())
        self._flush()
        if others_alive:
            try:
                await asyncio.wait_for(self._leave_done, max(0.1, deadline - loop.time()))
            except TimeoutError:
                self._log.warning("timeout waiting for leave broadcast")
            await asyncio.sleep(self.serf_cfg.leave_propagate_delay)

    def force_leave(self, node: str) -> bool:
        ok = self.serf.force_leave(node, False, asyncio.get_running_loop().time())
        self._flush()
        return ok

    def user_event(self, name: str, payload: bytes, coalesce: bool = True) -> None:
        self.serf.user_event(name, payload, coalesce, asyncio.get_running_loop().time())
        self._flush()

    async def query(self, name: str, payload: bytes, timeout: float | None = None):
        """Run a Serf query and wait for its deadline; the QueryResult with all responses."""
        loop = asyncio.get_running_loop()
        q = self.serf.query(name, payload, loop.time(), timeout=timeout)
        self._flush()
        await asyncio.sleep(max(0.0, q.deadline - loop.time()) + 0.01)
        self.serf.tick(loop.time())
        self._flush()
        return q

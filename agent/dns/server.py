"""The DNS listeners: UDP and TCP on `ports.dns` at every client address, on uvloop.

Each query goes through `Resolver.resolve` (pure); this driver carries out the steps it
yields — catalog reads through `Agent.rpc` (so client agents ask their servers, and other
datacenters are reached through the servers' router) and forwarding to the recursors — and
writes the reply. TCP carries one query per 2-byte-length-prefixed frame, several per
connection (answered as they complete); a connection idle for IDLE_TIMEOUT seconds is
closed. Nothing a client sends can stop the server: undecodable input is answered FORMERR
or dropped by the resolver, and a failure inside a query's handling is logged and
answered SERVFAIL.

The sockets are bound by `start()` (a port in use fails the agent's start), but the
resolver, and with it dnspython (~2.5 MiB resident), is imported by the first query: an
agent nobody asks over DNS never loads it.
"""
from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from typing import TYPE_CHECKING, Any, Callable

from .. import log
from ..config.load import recursor_address
from ..errors import IsthmusError

if TYPE_CHECKING:
    from ..agent import Agent
    from .resolver import Lookup, Recurse, Resolver

_log = log.get("dns")

IDLE_TIMEOUT = 8.0            # seconds a TCP connection may sit without a complete query
MAX_INFLIGHT = 4096           # queries being answered at once; UDP queries beyond are dropped
TCP_PAUSE_AT = 64             # queries in flight on one TCP connection before reading pauses
LOG_EVERY = 10.0              # seconds between two log lines about bad input
_LEN = struct.Struct("!H")

Send = Callable[[bytes], None]


class DNSServer:
    """Consul's DNS interface for one agent: `start()` binds, `stop()` closes."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self._resolver: Resolver | None = None
        self.addresses: list[tuple[str, int]] = []      # bound (host, port), UDP and TCP alike
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp: list[asyncio.AbstractServer] = []
        self._conns: set["_TCPConnection"] = set()
        self._tasks: set[asyncio.Task] = set()
        self._rng = random.Random()
        self._recursors: list[tuple[str, int]] = []
        self._logged_at: dict[str, float] = {}
        self.dropped = 0

    async def start(self) -> None:
        cfg = self.agent.config
        if cfg.ports.dns <= 0:
            return
        loop = asyncio.get_running_loop()
        for item in cfg.recursors:
            parsed = recursor_address(item)
            if parsed is None:                       # the loader already refused these
                raise IsthmusError(f"Invalid recursor address: {item}")
            host, port = parsed
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise IsthmusError(f"Invalid recursor address: {item}: {exc}") from None
            self._recursors.append(infos[0][4][:2])
        try:
            for host in cfg.client_addrs:
                where = f"{host}:{cfg.ports.dns}" if ":" not in host else \
                    f"[{host}]:{cfg.ports.dns}"
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UDPProtocol(self), local_addr=(host, cfg.ports.dns))
                except OSError as exc:
                    raise IsthmusError(f"Failed to start DNS server {where} (udp): "
                                       f"{_reason(exc)}") from None
                self._udp.append(transport)
                try:
                    server = await loop.create_server(lambda: _TCPConnection(self), host,
                                                      cfg.ports.dns, reuse_address=True)
                except OSError as exc:
                    raise IsthmusError(f"Failed to start DNS server {where} (tcp): "
                                       f"{_reason(exc)}") from None
                self._tcp.append(server)
                self.addresses.append(transport.get_extra_info("sockname")[:2])
        except BaseException:
            await self.stop()
            raise
        _log.info("DNS listening on %s (udp, tcp)",
                  ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def stop(self) -> None:
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        for server in self._tcp:
            server.close()
        for conn in list(self._conns):
            conn.close()
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def resolver(self) -> Resolver:
        """The resolver, built on first use: importing it loads dnspython."""
        if self._resolver is None:
            from .resolver import Resolver, ResolverConfig
            self._resolver = Resolver(ResolverConfig.from_agent(self.agent.config))
        return self._resolver

    # -- one query ----------------------------------------------------------------------

    def query(self, wire: bytes, network: str, send: Send, peer: Any) -> asyncio.Task | None:
        """Answer `wire`; the reply goes to `send`. Answers that need no lookup are sent at
        once; the others run as a task (returned)."""
        resolver = self.resolver
        malformed = resolver.stats.malformed
        gen = resolver.resolve(wire, network, time.time(), self._rng)
        try:
            step = next(gen)
        except StopIteration as stop:
            if stop.value is not None:
                send(stop.value)
            if resolver.stats.malformed > malformed:
                self._note("malformed", f"undecodable DNS message over {network} "
                           f"({'answered FORMERR' if stop.value else 'dropped'})", peer)
            return None
        except Exception:                            # our bug: answer, log, keep serving
            _log.exception("DNS query failed peer=%s", _fmt(peer))
            self._servfail(wire, send)
            return None
        if len(self._tasks) >= MAX_INFLIGHT:
            gen.close()
            self.dropped += 1
            self._note("overload", f"{MAX_INFLIGHT} DNS queries in flight: dropping", peer)
            return None
        task = asyncio.get_running_loop().create_task(self._run(gen, step, wire, send, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, gen, step, wire: bytes, send: Send, peer: Any) -> None:
        from .resolver import Lookup                 # loaded already: a step came from it
        try:
            while True:
                if isinstance(step, Lookup):
                    result = await self._lookup(step)
                else:
                    result = await self._recurse(step)
                step = gen.send(result)
        except StopIteration as stop:
            if stop.value is not None:
                send(stop.value)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("DNS query failed peer=%s", _fmt(peer))
            self._servfail(wire, send)

    async def _lookup(self, step: Lookup) -> Any:
        from .resolver import Failed
        try:
            return await self.agent.rpc(step.method, step.body)
        except IsthmusError as exc:
            dc = step.body.get("Datacenter", "")
            _log.debug("DNS lookup %s failed: %s dc=%s", step.method, exc, dc)
            return Failed(str(exc))
        except (OSError, asyncio.TimeoutError) as exc:
            return Failed(f"{type(exc).__name__}: {exc}")

    async def _recurse(self, step: Recurse) -> bytes | None:
        from .resolver import acceptable_upstream_reply
        qid = _LEN.unpack_from(step.query)[0]         # the header's first field
        timeout = self.agent.config.dns_config.recursor_timeout
        for i in step.order:
            addr = self._recursors[i]
            try:
                if step.network == "tcp":
                    reply = await asyncio.wait_for(_exchange_tcp(addr, step.query), timeout)
                else:
                    reply = await asyncio.wait_for(_exchange_udp(addr, step.query, qid), timeout)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
                _log.debug("recursor %s:%d failed: %s", addr[0], addr[1],
                           exc or type(exc).__name__)
                continue
            if reply is not None and acceptable_upstream_reply(qid, reply):
                return reply
        _log.debug("all recursors failed for a query")
        return None

    def _servfail(self, wire: bytes, send: Send) -> None:
        from .resolver import HEADER, SERVFAIL, Resolver
        if len(wire) >= HEADER.size:
            qid, flags = struct.unpack_from("!HH", wire)
            if not flags & 0x8000:
                send(Resolver._header_only(qid, flags, SERVFAIL))

    def _note(self, kind: str, text: str, peer: Any) -> None:
        """Log bad input or overload at most once per LOG_EVERY seconds per kind."""
        now = time.monotonic()
        if now - self._logged_at.get(kind, -LOG_EVERY) >= LOG_EVERY:
            self._logged_at[kind] = now
            _log.warning("%s (malformed so far: %d, dropped: %d) peer=%s", text,
                         self.resolver.stats.malformed, self.dropped, _fmt(peer))


def _reason(exc: OSError) -> str:
    """The OS's reason for a failed bind (uvloop keeps it in the exception's cause)."""
    inner = exc.__cause__ or exc.__context__
    if isinstance(inner, OSError) and inner.strerror:
        exc = inner
    return f"bind: {exc.strerror.lower()}" if exc.errno and exc.strerror and \
        "error while" not in exc.strerror else str(exc)


def _fmt(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        transport = self.transport

        def send(reply: bytes) -> None:
            if not transport.is_closing():
                transport.sendto(reply, addr)
        self.server.query(data, "udp", send, addr)

    def error_received(self, exc: Exception) -> None:
        pass                        # ICMP errors for clients gone away: nothing to do


class _TCPConnection(asyncio.Protocol):
    """One TCP client: 2-byte big-endian length, then the message (RFC 1035 §4.2.2)."""

    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.buf = bytearray()
        self.inflight = 0
        self.paused = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.server._conns.add(self)
        self._arm()

    def connection_lost(self, exc) -> None:
        self.server._conns.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._idle)

    def _idle(self) -> None:
        if self.inflight:
            self._arm()             # still answering: the client is waiting, not idle
        else:
            self.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            n = _LEN.unpack_from(self.buf)[0]
            if len(self.buf) < 2 + n:
                break
            wire = bytes(self.buf[2:2 + n])
            del self.buf[:2 + n]
            self._arm()
            self.inflight += 1
            task = self.server.query(wire, "tcp", self._send, self.peer)
            if task is None:
                self.inflight -= 1
            else:
                task.add_done_callback(self._done)
        if self.inflight >= TCP_PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _send(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_LEN.pack(len(reply)) + reply)

    def _done(self, _task: asyncio.Task) -> None:
        self.inflight -= 1
        if self.paused and self.inflight < TCP_PAUSE_AT // 2 and self.transport is not None \
                and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()


# ----------------------------------------------------------------------- upstream exchanges

class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, qid: int) -> None:
        self.qid = qid
        self.reply: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        # a fresh socket per query, connected to the recursor: only a matching ID counts
        if len(data) >= 2 and _LEN.unpack_from(data)[0] == self.qid and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _exchange_udp(addr: tuple[str, int], query: bytes, qid: int) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _Upstream(qid),
                                                           remote_addr=addr)
    try:
        transport.sendto(query)
        return await proto.reply
    finally:
        transport.close()


async def _exchange_tcp(addr: tuple[str, int], query: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(addr[0], addr[1])
    try:
        writer.write(_LEN.pack(len(query)) + query)
        n = _LEN.unpack(await reader.readexactly(2))[0]
        return await reader.readexactly(n)
    finally:
        writer.close()

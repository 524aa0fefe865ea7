"""Area gossip on the server RPC port (type byte 6): framing, the hello, connections.

DESIGN.md "Area gossip", shared/spec/federation.md §4.4. Consul Enterprise's format for
this is not public, so the framing is ours (interop with Enterprise at this layer is
impossible anyway; memberlist's messages inside are the usual ones). One connection:

    [0x03 + TLS handshake, when the area uses TLS]  0x06  hello-frame  body

    frame  = u32 big-endian length N (1 <= N <= the limit), then N bytes
    hello  = the first frame (N <= MAX_HELLO, 1 KiB), a msgpack map:
               {"V": 1,                          this framing's version
                "Kind": "packet" | "stream",
                "DC": "<sender's datacenter>",
                "PeerDC": "<peer datacenter of the sender's area>",
                "Addr": ["<ip>", <port>],        the sender's gossip address = its RPC address
                "Name": "<sender's member name>"}   (for logs)
    body, Kind "packet": frames (N <= MAX_FRAME, 1 MiB), sender to receiver only, each one
               memberlist packet exactly as a UDP datagram would carry it; the receiver hands
               it to its pool with src = the hello's Addr. The connection stays open: one per
               (area pool, destination), reused for every packet, closed after IDLE_TIMEOUT
               without traffic. The receiver never writes on it. Replies (acks) travel on the
               receiver's own packet connection to the sender.
    body, Kind "stream": the raw bytes of one memberlist stream exchange (push/pull, TCP
               ping) both ways, exactly as on memberlist's TCP port; then closed.

The receiver maps a hello to one local area pool (only one area may exist per peer DC):
    DC != own DC  ->  the pool whose PeerDatacenter is DC (and PeerDC must be our own DC);
    DC == own DC  ->  the pool whose PeerDatacenter is PeerDC (two servers of one DC).
A connection that maps to no pool, a bad or oversized hello or frame, or a hello that does
not arrive within HELLO_TIMEOUT is counted in `AreaGossipHandler.stats`, logged (rate
limited, with the peer) and closed; a refused stream first gets a memberlist error message,
so the dialer's join reports why ("remote error: no network area for ..."). Nothing reaches a
pool before a valid hello, and nothing a peer sends can raise out of the handler.

Plaintext and TLS connections are both accepted whatever an area's UseTLS says (UseTLS is
"use TLS when dialing, if possible"; `verify_incoming` is what forbids plaintext, enforced by
the RPC server for every byte). Only servers run an RPC server, an AreaGossipHandler and area
pools: a client agent has none, so it can never take part in an area, and byte 6 is only
ever answered by server processes.
"""
from __future__ import annotations

import asyncio
import ipaddress
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import msgpack

from _core import wire
from _core.errors import DecodeError
from _core.messages import Err

from .. import log
from ..errors import RPCConnectError
from ..rpc.client import dial
from ..rpc.server import RPC_GOSSIP

if TYPE_CHECKING:
    import ssl

    from .pool import AreaPool

Addr = tuple[str, int]

FRAMING_VERSION = 1
KIND_PACKET = "packet"
KIND_STREAM = "stream"
KINDS = (KIND_PACKET, KIND_STREAM)
MAX_HELLO = 1024                 # bytes of a hello frame's body
MAX_FRAME = 1 << 20              # bytes of one packet frame's body (memberlist's are ~1.4 KiB)
MAX_NAME = 256                   # longest DC / member name accepted in a hello
HELLO_TIMEOUT = 5.0              # seconds a new byte-6 connection has to send its hello
IDLE_TIMEOUT = 120.0             # an outgoing packet connection unused this long is closed
INBOUND_IDLE_TIMEOUT = 300.0     # an incoming one that long silent is closed (sender redials)
MAX_QUEUED = 64                  # packets held while their connection is being dialled
MAX_BUFFERED = 4 << 20           # write-buffer bytes above which packets are dropped (as UDP would)
DIAL_BACKOFF = 1.0               # seconds packets to an address are dropped after a failed dial
_LEN = struct.Struct(">I")

_log = log.get("area")


class FrameError(DecodeError):
    """A byte-6 frame or hello that is malformed or over its limit."""


# ---------------------------------------------------------------------------- pure codec

@dataclass(frozen=True, slots=True)
class Hello:
    """The first frame of an area gossip connection (see the module docstring)."""
    kind: str
    dc: str
    peer_dc: str
    addr: Addr
    name: str = ""

    def encode(self) -> bytes:
        """The whole hello frame (length prefix included)."""
        return encode_frame(msgpack.packb({"V": FRAMING_VERSION, "Kind": self.kind, "DC": self.dc,
                                           "PeerDC": self.peer_dc,
                                           "Addr": [self.addr[0], self.addr[1]],
                                           "Name": self.name}))


def encode_frame(payload: bytes) -> bytes:
    """`u32be len | payload`."""
    return _LEN.pack(len(payload)) + payload


def decode_hello(body: bytes) -> Hello:
    """A hello frame's body -> Hello; FrameError for anything but a valid hello."""
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FrameError(f"hello is not msgpack: {exc}", 4) from None
    if not isinstance(obj, dict):
        raise FrameError(f"hello is a {type(obj).__name__}, not a map", 4)
    v = obj.get("V")
    if v != FRAMING_VERSION or isinstance(v, bool):
        raise FrameError(f"unsupported area gossip framing version {v!r}", 4)
    kind = obj.get("Kind")
    if kind not in KINDS:
        raise FrameError(f"hello Kind must be 'packet' or 'stream', got {kind!r}", 4)
    dc, peer = obj.get("DC"), obj.get("PeerDC")
    for what, val in (("DC", dc), ("PeerDC", peer)):
        if not isinstance(val, str) or not val or len(val) > MAX_NAME:
            raise FrameError(f"hello {what} must be a datacenter name, got {val!r}", 4)
    addr = obj.get("Addr")
    if (not isinstance(addr, (list, tuple)) or len(addr) != 2 or not isinstance(addr[0], str)
            or not isinstance(addr[1], int) or isinstance(addr[1], bool)
            or not 0 < addr[1] < 65536):
        raise FrameError(f"hello Addr must be [ip, port], got {addr!r}", 4)
    try:
        ip = str(ipaddress.ip_address(addr[0]))
    except ValueError:
        raise FrameError(f"hello Addr has no IP address: {addr[0]!r}", 4) from None
    name = obj.get("Name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise FrameError("hello Name must be a string of at most 256 characters", 4)
    return Hello(kind, dc, peer, (ip, addr[1]), name)


def read_hello(buf: bytes | bytearray) -> tuple[Hello, int] | None:
    """The hello at the start of `buf` and the bytes it took, None until it is complete;
    FrameError as soon as its length is bad (so a garbage prefix is refused at once)."""
    if len(buf) < 4:
        return None
    (n,) = _LEN.unpack_from(buf)
    if n == 0 or n > MAX_HELLO:
        raise FrameError(f"hello frame of {n} bytes (1..{MAX_HELLO} allowed)", 0)
    if len(buf) < 4 + n:
        return None
    return decode_hello(bytes(buf[4:4 + n])), 4 + n


class FrameDecoder:
    """Splits a byte stream into length-prefixed frames; FrameError (sticky) on a length 0
    or over `limit`. Errors depend only on the bytes, never on how they were chunked."""

    __slots__ = ("_limit", "_buf", "_offset", "_failed")

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._offset = 0                  # stream offset of _buf[0] (for error positions)
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """The frames `data` completes, in order."""
        if self._failed is not None:
            raise self._failed
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n == 0 or n > self._limit:
                self._failed = FrameError(f"frame of {n} bytes (1..{self._limit} allowed)",
                                          self._offset + pos)
                del buf[:]
                raise self._failed
            if end - pos - 4 < n:
                break
            out.append(bytes(buf[pos + 4:pos + 4 + n]))
            pos += 4 + n
        if pos:
            del buf[:pos]
            self._offset += pos
        return out


def cert_names(cert: dict | None) -> list[str]:
    """The DNS names of a certificate as `ssl` reports it (`getpeercert()`)."""
    if not cert:
        return []
    return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching of one certificate DNS name (`*.` leftmost wildcard) against `name`."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in name and name.split(".", 1)[1] == pattern[2:]
    return pattern == name


# ---------------------------------------------------------------------------- receiving

class AreaGossipHandler:
    """The one byte-6 handler of a server: hands each connection to its area's pool."""

    def __init__(self, datacenter: str) -> None:
        self.datacenter = datacenter
        self._pools: dict[str, "AreaPool"] = {}        # peer DC -> pool
        self._conns: set[_Inbound] = set()
        self._bad = log.RateLimited(_log)
        self.stats = {"connections": 0, "packets": 0, "streams": 0, "bad_hello": 0,
                      "hello_timeout": 0, "unknown_area": 0, "bad_frame": 0}

    def attach(self, rpc_server: Any) -> None:
        """Serve byte 6 on `rpc_server` (agent.rpc.server.RPCServer)."""
        rpc_server.register_stream(RPC_GOSSIP, self.factory)

    def factory(self, peer: tuple, tls: bool, release: Callable[[], None]) -> asyncio.Protocol:
        return _Inbound(self, peer, tls, release)

    def add(self, pool: "AreaPool") -> None:
        """Route connections for `pool.peer_dc` to `pool` (ValueError if one already is)."""
        other = self._pools.get(pool.peer_dc)
        if other is not None and other is not pool:
            raise ValueError(f"an area pool for peer datacenter {pool.peer_dc!r} is already "
                             f"running (area {other.area_id})")
        self._pools[pool.peer_dc] = pool

    def remove(self, pool: "AreaPool") -> None:
        """Stop routing to `pool`, and close the connections already bound to it."""
        if self._pools.get(pool.peer_dc) is pool:
            del self._pools[pool.peer_dc]
        for c in [c for c in self._conns if c.pool is pool]:
            c.abort()

    def close(self) -> None:
        """Close every incoming area gossip connection."""
        for c in list(self._conns):
            c.abort()

    def lookup(self, hello: Hello) -> tuple["AreaPool | None", str]:
        """The local pool a hello addresses, or (None, why not)."""
        own = self.datacenter
        if hello.dc != own:
            if hello.peer_dc != own:
                return None, (f"area gossip from datacenter {hello.dc} is for its area with "
                              f"{hello.peer_dc}, but this server is in datacenter {own}")
            pool = self._pools.get(hello.dc)
            if pool is None:
                return None, (f"no network area for peer datacenter {hello.dc} on this server "
                              f"(datacenter {own}); create the reciprocal area here first")
            return pool, ""
        if hello.peer_dc == own:
            return None, f"area gossip names datacenter {own} as its own peer"
        pool = self._pools.get(hello.peer_dc)
        if pool is None:
            return None, (f"no network area for peer datacenter {hello.peer_dc} on this server "
                          f"(datacenter {own})")
        return pool, ""

    def refused(self, key: str, why: str, peer: tuple) -> None:
        self.stats[key] += 1
        self._bad.warning(key, "area gossip connection refused: %s peer=%s:%s", why, *peer[:2])


_HELLO, _PACKETS, _STREAM, _DRAIN, _DONE = range(5)


class _Inbound(asyncio.Protocol):
    """One incoming byte-6 connection: hello, then packets or one stream exchange."""

    def __init__(self, handler: AreaGossipHandler, peer: tuple, tls: bool,
                 release: Callable[[], None]) -> None:
        self._handler = handler
        self._peer = tuple(peer[:2])
        self.tls = tls
        self._release = release
        self._tr: asyncio.Transport | None = None
        self._phase = _HELLO
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._frames: FrameDecoder | None = None
        self._stream: Any = None
        self._last = 0.0
        self.pool: "AreaPool | None" = None
        self.hello: Hello | None = None

    # -- life cycle

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._tr = transport
        self._handler._conns.add(self)
        self._handler.stats["connections"] += 1
        self._timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self._hello_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _DONE
        self.pool = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._handler._conns.discard(self)
        self._release()

    def abort(self) -> None:
        self._phase = _DONE
        self.pool = None
        if self._tr is not None:
            self._tr.abort()

    def _hello_expired(self) -> None:
        self._timer = None
        self._handler.refused("hello_timeout", f"no hello within {HELLO_TIMEOUT:g}s", self._peer)
        self.abort()

    # -- input

    def data_received(self, data: bytes) -> None:
        phase = self._phase
        if phase == _PACKETS:
            self._on_packets(data)
        elif phase == _STREAM:
            self._on_stream(data)
        elif phase == _HELLO:
            self._on_hello(data)
        # _DRAIN / _DONE: discard

    def _on_hello(self, data: bytes) -> None:
        self._buf += data
        try:
            got = read_hello(self._buf)
        except FrameError as exc:
            self._handler.refused("bad_hello", f"bad hello: {exc}", self._peer)
            self.abort()
            return
        if got is None:
            return
        hello, used = got
        rest = bytes(self._buf[used:])
        self._buf = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.hello = hello
        pool, why = self._handler.lookup(hello)
        if pool is None or not pool.running:
            self._refuse(why or f"area pool for {hello.peer_dc} is stopping")
            return
        self.pool = pool
        loop = asyncio.get_running_loop()
        if hello.kind == KIND_PACKET:
            self._handler.stats["packets"] += 1
            self._phase = _PACKETS
            self._frames = FrameDecoder(MAX_FRAME)
            self._last = loop.time()
            self._timer = loop.call_later(INBOUND_IDLE_TIMEOUT, self._check_idle)
            if rest:
                self._on_packets(rest)
        else:
            self._handler.stats["streams"] += 1
            self._phase = _STREAM
            self._stream = pool.stream_decoder(inbound=True)
            self._timer = loop.call_later(pool.cfg.tcp_timeout, self.abort)
            if rest:
                self._on_stream(rest)

    def _refuse(self, why: str) -> None:
        self._handler.refused("unknown_area", f"{why} (from {self.hello.name or '?'} "
                              f"{self.hello.addr[0]}:{self.hello.addr[1]})", self._peer)
        if self.hello.kind != KIND_STREAM:
            self.abort()
            return
        # Tell the dialer why (its join reports "remote error: ..."), then read until it
        # closes: closing with its request unread would reset the connection and could
        # lose our answer on the way.
        self._tr.write(wire.encode_stream(Err(why), compress=False))
        self._phase = _DRAIN
        self._timer = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, self.abort)

    def _on_packets(self, data: bytes) -> None:
        try:
            frames = self._frames.feed(data)
        except FrameError as exc:
            self._handler.refused("bad_frame", f"bad packet frame: {exc}", self._peer)
            self.abort()
            return
        if not frames:
            return
        pool = self.pool
        src = self.hello.addr
        self._last = asyncio.get_running_loop().time()
        for f in frames:
            if self.pool is None:            # closed under us (pool stopped)
                return
            pool.packet_received(f, src)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self._last
        if idle >= INBOUND_IDLE_TIMEOUT:
            self._timer = None
            self._tr.close()
            return
        self._timer = loop.call_later(INBOUND_IDLE_TIMEOUT - idle, self._check_idle)

    def _on_stream(self, data: bytes) -> None:
        pool = self.pool
        try:
            msgs = self._stream.feed(data)
        except DecodeError as exc:
            pool.bad_input("stream", exc, self.hello.addr)
            self.abort()
            return
        if not msgs:
            return
        self._phase = _DONE
        self._tr.pause_reading()
        reply = pool.stream_received(msgs, self.hello.addr)
        if reply:
            self._tr.write(reply)
        self._tr.close()


# ---------------------------------------------------------------------------- sending

class _PacketConn(asyncio.Protocol):
    """An outgoing packet connection (frames one way; the receiver never writes)."""

    def __init__(self, links: "AreaLinks", addr: Addr) -> None:
        self._links = links
        self.addr = addr
        self.tr: asyncio.Transport | None = None
        self.closed = False
        self.last = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.tr = transport
        self.last = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self._links._bad.warning("reply", "unexpected bytes on an area packet connection; "
                                 "closing it peer=%s:%s", *self.addr)
        self.tr.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._links._lost(self)


class AreaLinks:
    """The sending side of one area pool: pooled packet connections, one per destination,
    and one connection per stream exchange, all dialled to the peers' RPC ports with byte 6
    (inside TLS when a context is set)."""

    def __init__(self, hello: Callable[[str], Hello], spawn: Callable[[Any], None], *,
                 dial_timeout: float = 10.0, tls_context: "ssl.SSLContext | None" = None,
                 tls_names: tuple[str, ...] | None = None, logger: Any = None) -> None:
        self._hello = hello
        self._spawn = spawn
        self.dial_timeout = dial_timeout
        self.tls_context = tls_context
        self.tls_names = tls_names
        self._log = logger or _log
        self._bad = log.RateLimited(self._log)
        self._conns: dict[Addr, _PacketConn] = {}
        self._queued: dict[Addr, list[bytes]] = {}      # dial in flight: frames waiting for it
        self._backoff: dict[Addr, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self.last_error: dict[Addr, str] = {}            # newest dial error per address
        self.stats = {"sent": 0, "dropped": 0, "dials": 0, "dial_failures": 0}

    def set_tls(self, tls_context: "ssl.SSLContext | None",
                tls_names: tuple[str, ...] | None) -> None:
        """Use this TLS setting from now on: packet connections are closed and redialled."""
        self.tls_context = tls_context
        self.tls_names = tls_names
        self._backoff.clear()
        for conn in list(self._conns.values()):
            if conn.tr is not None:
                conn.tr.close()
        self._conns.clear()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self._conns.values()):
            if conn.tr is not None:
                conn.tr.close()
        self._conns.clear()
        self._queued.clear()

    # -- packets

    def send(self, addr: Addr, payload: bytes) -> None:
        """Queue one memberlist packet for `addr`; dropped (counted) when it cannot go soon."""
        if self._closed:
            return
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            tr = conn.tr
            if tr.get_write_buffer_size() > MAX_BUFFERED:
                self.stats["dropped"] += 1
                return
            tr.write(encode_frame(payload))
            conn.last = asyncio.get_running_loop().time()
            self.stats["sent"] += 1
            return
        q = self._queued.get(addr)
        if q is not None:
            if len(q) < MAX_QUEUED:
                q.append(encode_frame(payload))
            else:
                self.stats["dropped"] += 1
            return
        now = asyncio.get_running_loop().time()
        if self._backoff.get(addr, 0.0) > now:
            self.stats["dropped"] += 1
            return
        self._backoff.pop(addr, None)
        self._queued[addr] = [encode_frame(payload)]
        self._spawn(self._connect(addr))

    async def _connect(self, addr: Addr) -> None:
        self.stats["dials"] += 1
        tls = self.tls_context
        try:
            tr, conn = await self._dial(addr, KIND_PACKET, lambda: _PacketConn(self, addr),
                                        self.dial_timeout)
        except RPCConnectError as exc:
            self.stats["dial_failures"] += 1
            dropped = self._queued.pop(addr, [])
            self.stats["dropped"] += len(dropped)
            self._backoff[addr] = asyncio.get_running_loop().time() + DIAL_BACKOFF
            self.last_error[addr] = str(exc)
            self._log.debug("area gossip packets to %s:%s dropped: %s", *addr, exc)
            return
        except BaseException:
            self._queued.pop(addr, None)
            raise
        frames = self._queued.pop(addr, [])
        if self._closed or conn.closed or tls is not self.tls_context:
            tr.close()                       # stopped, lost, or TLS flipped while dialling
            self.stats["dropped"] += len(frames)
            return
        self.last_error.pop(addr, None)
        self._conns[addr] = conn
        if frames:
            tr.write(b"".join(frames))
            self.stats["sent"] += len(frames)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 2, self._sweep)

    def _lost(self, conn: _PacketConn) -> None:
        if self._conns.get(conn.addr) is conn:
            del self._conns[conn.addr]

    def _sweep(self) -> None:
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        for conn in list(self._conns.values()):
            if now - conn.last >= IDLE_TIMEOUT and conn.tr is not None:
                conn.tr.close()
        if self._conns and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 2, self._sweep)

    # -- streams

    async def open_stream(self, addr: Addr, timeout: float
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A fresh stream connection to `addr`, hello sent; RPCConnectError on failure."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2 ** 16)
        tr, proto = await self._dial(addr, KIND_STREAM,
                                     lambda: asyncio.StreamReaderProtocol(reader),
                                     min(timeout, self.dial_timeout))
        self.last_error.pop(addr, None)
        return reader, asyncio.StreamWriter(tr, proto, reader, loop)

    async def _dial(self, addr: Addr, kind: str, factory: Callable[[], asyncio.Protocol],
                    timeout: float) -> tuple[asyncio.Transport, asyncio.Protocol]:
        try:
            tr, proto = await dial(addr, RPC_GOSSIP, factory, tls_context=self.tls_context,
                                   server_name=None, timeout=timeout)
        except RPCConnectError as exc:
            self.last_error[addr] = str(exc)
            raise
        try:
            if self.tls_context is not None and self.tls_names:
                self._check_name(tr, addr)
            tr.write(self._hello(kind).encode())
        except BaseException:
            tr.abort()
            raise
        return tr, proto

    def _check_name(self, tr: asyncio.Transport, addr: Addr) -> None:
        """With verify_server_hostname: the peer's certificate must name a server of one of
        the area's two datacenters (`server.<dc>.<domain>`); which one is not known before
        the handshake when joining."""
        cert = tr.get_extra_info("peercert")
        if cert is None:
            obj = tr.get_extra_info("ssl_object")
            cert = obj.getpeercert() if obj is not None else None
        names = cert_names(cert)
        if any(name_matches(p, want) for p in names for want in self.tls_names):
            return
        where = f"{addr[0]}:{addr[1]}"
        err = (f'failed to connect to "{where}": TLS handshake failed: certificate is valid for '
               f'{", ".join(names) or "no DNS name"}, not {" or ".join(self.tls_names)}')
        self.last_error[addr] = err
        raise RPCConnectError(err)

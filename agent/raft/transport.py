"""Raft messages between servers over the RPC port: streams opened with type byte 1
(`RPC_RAFT`), inside TLS (byte 3 first) when the agent's internal RPC uses TLS.

Each server dials one outgoing stream per peer and only writes on it; what it receives
arrives on the streams its peers dialed. A frame is a 4-byte big-endian length and one
`messages.encode_message` body; the first frame of a stream is a hello, msgpack
[server ID, RPC address], so a server can answer one that is not (yet) in its
configuration (a new server answering the leader that adds it). Raft tolerates loss, so the transport never blocks: a peer
that is unreachable, or whose stream is backed up, loses the message and the core is told
(`on_unreachable`), which moves that follower back to probing.
"""
from __future__ import annotations

import asyncio
import ssl
import struct
from typing import Callable

import msgpack

from _core.errors import DecodeError

from .. import log
from ..errors import RPCConnectError
from ..rpc.client import dial
from ..rpc.server import RPC_RAFT
from .messages import Message, decode_message, encode_message

_log = log.get("raft.transport")
_LEN = struct.Struct(">I")

MAX_FRAME = 256 << 20               # a snapshot travels in one frame
MAX_BUFFERED = 16 << 20             # bytes queued for one peer before we drop messages


def frame(msg: Message) -> bytes:
    body = encode_message(msg)
    return _LEN.pack(len(body)) + body


def hello_frame(id: str, address: str) -> bytes:
    body = msgpack.packb([id, address])
    return _LEN.pack(len(body)) + body


def decode_hello(body: bytes) -> tuple[str, str]:
    try:
        raw = msgpack.unpackb(body)
    except Exception as exc:
        raise DecodeError(f"bad raft hello: {exc}") from None
    if (not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str)
            or not isinstance(raw[1], str) or not raw[1].rpartition(":")[2].isdigit()):
        raise DecodeError("bad raft hello")
    return raw[0], raw[1]


class FrameReader:
    """Incremental decoder of length-prefixed Raft frames (DecodeError on garbage); the
    first frame is the stream's hello, kept in `hello`."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame
        self.hello: tuple[str, str] | None = None

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        out = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self._max:
                raise DecodeError(f"raft frame of {size} bytes exceeds {self._max}", pos)
            if n - pos - 4 < size:
                break
            body = bytes(buf[pos + 4:pos + 4 + size])
            if self.hello is None:
                self.hello = decode_hello(body)
            else:
                out.append(decode_message(body))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out


class _Inbound(asyncio.Protocol):
    """A stream a peer dialed to us: frames in, nothing out."""

    def __init__(self, transport: "RaftTransport", peer: tuple, release: Callable[[], None]) -> None:
        self._owner = transport
        self._peer = peer
        self._release = release
        self._reader = FrameReader()
        self._tr: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._tr = transport

    def data_received(self, data: bytes) -> None:
        try:
            msgs = self._reader.feed(data)
        except DecodeError as exc:
            self._owner.stats["malformed"] += 1
            _log.warning("malformed raft stream, closing: %s peer=%s:%s", exc, *self._peer[:2])
            self._tr.abort()
            return
        hello = self._reader.hello
        if hello is not None and self._owner.learned.get(hello[0]) != hello[1]:
            self._owner.learned[hello[0]] = hello[1]
        deliver = self._owner.on_message
        for msg in msgs:
            deliver(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()


class _Outbound(asyncio.Protocol):
    def __init__(self, peer: "_Peer") -> None:
        self._peer = peer

    def connection_lost(self, exc: Exception | None) -> None:
        self._peer.lost(self)

    def data_received(self, data: bytes) -> None:
        pass                            # peers never write on a stream we dialed


class _Peer:
    """The outgoing stream to one address, (re)dialed on demand."""

    def __init__(self, owner: "RaftTransport", address: tuple[str, int]) -> None:
        self.owner = owner
        self.address = address
        self.tr: asyncio.Transport | None = None
        self.proto: _Outbound | None = None
        self.dialing: asyncio.Task | None = None
        self.pending: list[bytes] = []
        self.pending_ids: set[str] = set()
        self.pending_bytes = 0

    def send(self, to: str, data: bytes) -> None:
        tr = self.tr
        if tr is not None:
            if tr.get_write_buffer_size() > MAX_BUFFERED:
                self.owner.dropped(to, "stream backed up")
                return
            tr.write(data)
            return
        if self.pending_bytes + len(data) > MAX_BUFFERED:
            self.owner.dropped(to, "dial in progress, buffer full")
            return
        self.pending.append(data)
        self.pending_ids.add(to)
        self.pending_bytes += len(data)
        if self.dialing is None:
            self.dialing = asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        owner = self.owner
        try:
            tr, proto = await dial(self.address, RPC_RAFT, lambda: _Outbound(self),
                                   tls_context=owner.tls_context, server_name=owner.server_name,
                                   timeout=owner.connect_timeout)
        except (RPCConnectError, OSError, ssl.SSLError) as exc:
            ids, self.pending_ids = self.pending_ids, set()
            self.pending, self.pending_bytes = [], 0
            owner.stats["dial_failures"] += 1
            _log.debug("raft dial failed: %s", exc)
            for to in ids:
                owner.dropped(to, "unreachable")
            return
        finally:
            self.dialing = None
        if owner.closed:
            tr.close()
            return
        self.tr, self.proto = tr, proto
        tr.write(owner.hello)
        if self.pending:
            tr.write(b"".join(self.pending))
        self.pending, self.pending_ids, self.pending_bytes = [], set(), 0

    def lost(self, proto: _Outbound) -> None:
        if self.proto is proto:
            self.tr = self.proto = None

    def close(self) -> None:
        if self.dialing is not None:
            self.dialing.cancel()
        if self.tr is not None:
            self.tr.close()
        self.tr = self.proto = None


class RaftTransport:
    """Sends core messages to peers by address; hands received ones to `on_message`."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, server_name: str | None = None,
                 connect_timeout: float = 1.0) -> None:
        self.tls_context = tls_context
        self.server_name = server_name
        self.connect_timeout = connect_timeout
        self.on_message: Callable[[Message], None] = lambda msg: None
        self.on_unreachable: Callable[[str], None] = lambda id_: None
        self.closed = False
        self.hello = b""                    # set by identify()
        self.learned: dict[str, str] = {}   # server ID -> RPC address, from peers' hellos
        self._peers: dict[tuple[str, int], _Peer] = {}
        self.stats = {"sent": 0, "dropped": 0, "dial_failures": 0, "malformed": 0}

    def identify(self, id: str, address: str) -> None:
        """Who we are: sent as the hello of every stream we dial."""
        self.hello = hello_frame(id, address)

    def stream_factory(self, peer: tuple, tls: bool, release: Callable[[], None]) -> asyncio.Protocol:
        """For `RPCServer.register_stream(RPC_RAFT, ...)`."""
        return _Inbound(self, peer, release)

    def send(self, address: tuple[str, int], msg: Message) -> None:
        if self.closed:
            return
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _Peer(self, address)
        self.stats["sent"] += 1
        peer.send(msg.to, frame(msg))

    def dropped(self, to: str, why: str) -> None:
        self.stats["dropped"] += 1
        self.on_unreachable(to)

    def forget(self, address: tuple[str, int]) -> None:
        """Close the stream to a server that left the configuration."""
        peer = self._peers.pop(address, None)
        if peer is not None:
            peer.close()

    async def close(self) -> None:
        self.closed = True
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        await asyncio.sleep(0)


"""The server RPC listener (8300/tcp): the first byte of a connection picks its protocol.

Bytes (shared/spec/federation.md §5): 0 msgpack-RPC, 3 TLS upgrade (then another byte
inside TLS), 1 Raft and 6 area gossip registered by later subsystems through
`register_stream`. Unknown byte, plaintext under verify_incoming, TLS-in-TLS, a client
that says nothing within `limits.rpc_handshake_timeout`, or more than
`limits.rpc_max_conns_per_client` connections from one IP: logged and closed.

The type byte is read with `recv(1)` before the socket is handed to the loop's transport,
so the bytes that follow it (a TLS ClientHello) are never consumed by us by mistake.
msgpack-RPC connections carry many calls at once, matched by `Seq` and answered in any
order (a superset of Consul, whose servers answer one connection's calls in order).
"""
from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import Any, Callable

from _core.errors import DecodeError
from _core.rpcframe import REQUEST, FrameDecoder, encode_reply

from .. import log
from ..config.model import Limits
from ..errors import IsthmusError
from .registry import CallContext, Registry

RPC_CONSUL = 0
RPC_RAFT = 1
RPC_MULTIPLEX = 2
RPC_TLS = 3
RPC_MULTIPLEX_V2 = 4
RPC_SNAPSHOT = 5
RPC_GOSSIP = 6

MAX_INFLIGHT = 512          # async calls per connection before we stop reading from it
ERROR_BODY: dict = {}       # Go's net/rpc sends struct{}{} as the body of an error reply

StreamFactory = Callable[[tuple, bool, Callable[[], None]], asyncio.Protocol]
"""factory(peer, tls, release) -> Protocol; the protocol calls release() once when closed."""

_log = log.get("rpc")


class RPCServer:
    """Accepts connections on the server port and serves the msgpack-RPC registry."""

    def __init__(self, registry: Registry, *, host: str, port: int, limits: Limits,
                 tls_context: ssl.SSLContext | None = None, verify_incoming: bool = False) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.limits = limits
        self.tls_context = tls_context
        self.verify_incoming = verify_incoming
        self._streams: dict[int, StreamFactory] = {}
        self._per_ip: dict[str, int] = {}
        self._transports: set[asyncio.BaseTransport] = set()
        self._pending: set[socket.socket] = set()   # accepted, type byte not read yet
        self._tasks: set[asyncio.Task] = set()
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self._bad = log.RateLimited(_log)
        self.stats = {"accepted": 0, "refused_limit": 0, "bad_byte": 0, "handshake_timeout": 0,
                      "tls_failed": 0, "malformed": 0, "calls": 0}

    # ------------------------------------------------------------------ life cycle

    def register_stream(self, byte: int, factory: StreamFactory) -> None:
        """Serve connections whose type byte is `byte` (1 Raft, 6 area gossip) with `factory`."""
        if byte in (RPC_CONSUL, RPC_TLS) or byte in self._streams:
            raise ValueError(f"RPC type byte {byte} is taken")
        self._streams[byte] = factory

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(4096)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting, close every connection, cancel calls still running."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            await asyncio.gather(self._accept_task, return_exceptions=True)
            self._accept_task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for s in list(self._pending):
            s.close()
        for tr in list(self._transports):
            tr.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # ------------------------------------------------------------------ accepting

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                # EMFILE and friends: back off instead of spinning; the listener stays up.
                _log.error("accept failed: %s", exc)
                await asyncio.sleep(0.1 if exc.errno in (errno.EMFILE, errno.ENFILE) else 0.01)
                continue
            self.stats["accepted"] += 1
            ip = peer[0]
            n = self._per_ip.get(ip, 0)
            if n >= self.limits.rpc_max_conns_per_client:
                self.stats["refused_limit"] += 1
                self._bad.warning("limit", "rejecting RPC connection: too many connections from "
                                  "this client (limit %d) peer=%s:%s",
                                  self.limits.rpc_max_conns_per_client, ip, peer[1])
                conn.close()
                continue
            self._per_ip[ip] = n + 1
            conn.setblocking(False)
            self._pending.add(conn)
            self._spawn(self._handshake(conn, peer))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _releaser(self, ip: str) -> Callable[[], None]:
        done = False

        def release() -> None:
            nonlocal done
            if not done:
                done = True
                n = self._per_ip.get(ip, 1) - 1
                if n:
                    self._per_ip[ip] = n
                else:
                    self._per_ip.pop(ip, None)
        return release

    async def _handshake(self, sock: socket.socket, peer: tuple) -> None:
        loop = asyncio.get_running_loop()
        release = self._releaser(peer[0])
        deadline = loop.time() + self.limits.rpc_handshake_timeout
        handed_off = False
        try:
            try:
                first = await asyncio.wait_for(loop.sock_recv(sock, 1),
                                               self.limits.rpc_handshake_timeout)
            except TimeoutError:
                self.stats["handshake_timeout"] += 1
                self._bad.warning("timeout", "RPC connection sent nothing for %.1fs; closing "
                                  "peer=%s:%s", self.limits.rpc_handshake_timeout, *peer[:2])
                return
            except OSError:
                return
            if not first:
                return
            typ = first[0]
            if typ == RPC_TLS:
                if self.tls_context is None:
                    self._bad.warning("tls-off", "TLS connection attempted, server not configured "
                                      "for TLS; closing peer=%s:%s", *peer[:2])
                    return
                factory = lambda: _InnerDispatch(self, peer, release, deadline)  # noqa: E731
                self._pending.discard(sock)
                handed_off = True
                try:
                    await loop.connect_accepted_socket(
                        factory, sock, ssl=self.tls_context,
                        ssl_handshake_timeout=max(0.05, deadline - loop.time()))
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
                    self.stats["tls_failed"] += 1
                    self._bad.warning("tls", "TLS handshake failed: %s peer=%s:%s",
                                      exc or type(exc).__name__, *peer[:2])
                    sock.close()
                    release()
                return
            if self.verify_incoming:
                self._bad.warning("plain", "non-TLS connection attempted with verify_incoming set; "
                                  "closing peer=%s:%s", *peer[:2])
                return
            factory = self._factory(typ, peer, False, release)
            if factory is None:
                return
            self._pending.discard(sock)
            handed_off = True
            await loop.connect_accepted_socket(factory, sock)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("RPC connection set-up failed peer=%s:%s", *peer[:2])
        finally:
            if not handed_off:
                self._pending.discard(sock)
                sock.close()
                release()

    def _factory(self, typ: int, peer: tuple, tls: bool,
                 release: Callable[[], None]) -> Callable[[], asyncio.Protocol] | None:
        """The protocol factory for type byte `typ`, or None (logged) if there is none."""
        if typ == RPC_CONSUL:
            return lambda: RPCConnection(self, peer, tls, release)
        stream = self._streams.get(typ)
        if stream is not None:
            return lambda: stream(peer, tls, release)
        self.stats["bad_byte"] += 1
        if typ == RPC_TLS:
            self._bad.warning("byte", "TLS-in-TLS connection refused peer=%s:%s", *peer[:2])
        else:
            self._bad.warning("byte", "unrecognized RPC byte: byte=%d peer=%s:%s", typ, *peer[:2])
        return None

    def _track(self, transport: asyncio.BaseTransport) -> None:
        self._transports.add(transport)

    def _untrack(self, transport: asyncio.BaseTransport) -> None:
        self._transports.discard(transport)


class _InnerDispatch(asyncio.Protocol):
    """Inside TLS: reads the inner type byte, then hands the transport to its protocol."""

    def __init__(self, server: RPCServer, peer: tuple, release: Callable[[], None],
                 deadline: float) -> None:
        self._server = server
        self._peer = peer
        self._release = release
        self._deadline = deadline
        self._tr: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._tr = transport
        self._server._track(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(self._deadline, self._expired)

    def _expired(self) -> None:
        self._server.stats["handshake_timeout"] += 1
        self._server._bad.warning("timeout", "TLS RPC connection sent no type byte in time; closing "
                                  "peer=%s:%s", *self._peer[:2])
        self._tr.close()

    def data_received(self, data: bytes) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        factory = self._server._factory(data[0], self._peer, True, self._release)
        if factory is None:
            self._tr.close()
            return
        proto = factory()
        self._tr.set_protocol(proto)
        self._server._untrack(self._tr)
        proto.connection_made(self._tr)
        if len(data) > 1:
            proto.data_received(data[1:])

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._server._untrack(self._tr)
        if self._tr.get_protocol() is self:     # never handed off
            self._release()


class _GoOn:
    """Awaiting it goes on with a coroutine that already ran up to a wait outside any task
    (it yielded `waiting_on`, a future): the awaiting task waits on that future and then
    drives the coroutine to its end, as if it had run it from the start."""
    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro, waiting_on) -> None:
        self.coro, self.waiting_on = coro, waiting_on

    def __await__(self):
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except BaseException as exc:            # cancelled: so is the coroutine
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _go_on(coro, waiting_on) -> Any:
    return await _GoOn(coro, waiting_on)


class RPCConnection(asyncio.Protocol):
    """One msgpack-RPC connection: many calls in flight, replies coalesced per read."""

    def __init__(self, server: RPCServer, peer: tuple, tls: bool,
                 release: Callable[[], None]) -> None:
        limits = server.limits
        self._server = server
        self._peer = peer
        self._release = release
        self._feed = FrameDecoder(REQUEST, limits.rpc_max_header_bytes,
                                  limits.rpc_max_body_bytes).feed
        self._registry = server.registry
        self._methods = server.registry.methods
        self._ctx = CallContext(peer, tls)
        self._tr: asyncio.Transport | None = None
        self._out: list[bytes] = []          # async replies of this loop iteration, one write
        self._inflight = 0
        self._paused = 0            # bit 1: write buffer full, bit 2: too many calls in flight
        self._closed = False

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._tr = transport
        self._server._track(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._untrack(self._tr)
        self._release()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._feed(data)
        except DecodeError as exc:
            self._server.stats["malformed"] += 1
            self._server._bad.warning("malformed", "malformed RPC request, closing: %s peer=%s:%s",
                                      exc, *self._peer[:2])
            self._tr.abort()
            return
        if not frames:
            return
        self._server.stats["calls"] += len(frames)
        out = []
        methods = self._methods
        ctx = self._ctx
        for method, seq, body in frames:
            entry = methods.get(method)
            if entry is None:
                out.append(encode_reply(method, seq, self._registry.missing(method), ERROR_BODY))
                continue
            fn, is_async = entry
            if self._registry.remote(body):        # another datacenter's request
                fn, is_async = self._forwarder(method), True
            if is_async:
                reply = self._start_async(fn, method, seq, body)
                if reply is not None:
                    out.append(reply)
                continue
            try:
                out.append(encode_reply(method, seq, "", fn(body, ctx)))
            except Exception as exc:        # the handler's error goes back to the caller
                out.append(self._error_reply(method, seq, exc))
        if out:
            self._tr.write(out[0] if len(out) == 1 else b"".join(out))

    def _forwarder(self, method: str) -> Callable:
        forward = self._registry.forward
        return lambda body, ctx: forward(method, body)

    def _error_reply(self, method: str, seq: int, exc: BaseException) -> bytes:
        if isinstance(exc, IsthmusError):
            msg = str(exc)
        else:
            _log.error("RPC handler %s failed peer=%s:%s", method, *self._peer[:2], exc_info=exc)
            msg = f"rpc error: internal error in {method}: {type(exc).__name__}: {exc}"
        return encode_reply(method, seq, msg, ERROR_BODY)

    def _start_async(self, fn: Callable, method: str, seq: int, body: Any) -> bytes | None:
        """Run an async handler up to its first wait here, as an eager task: a read served
        from the store (a stale one, or the leader's) never waits, and its reply is then
        returned to go out with this batch's, without a task or a loop iteration of its
        own. A handler that does wait goes on in a task, which sends its reply when done."""
        coro = fn(body, self._ctx)
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            try:
                return encode_reply(method, seq, "", done.value)
            except Exception as exc:
                return self._error_reply(method, seq, exc)
        except Exception as exc:
            return self._error_reply(method, seq, exc)
        task = asyncio.get_running_loop().create_task(_go_on(coro, waiting_on))
        self._server._tasks.add(task)
        self._inflight += 1
        if self._inflight == MAX_INFLIGHT:
            self._pause(2)
        task.add_done_callback(lambda t: self._finish_async(t, method, seq))
        return None

    def _finish_async(self, task: asyncio.Task, method: str, seq: int) -> None:
        self._server._tasks.discard(task)
        self._inflight -= 1
        if self._inflight == MAX_INFLIGHT - 1:
            self._resume(2)
        if self._closed or task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            try:
                reply = encode_reply(method, seq, "", task.result())
            except Exception as enc_exc:
                reply = self._error_reply(method, seq, enc_exc)
        else:
            reply = self._error_reply(method, seq, exc)
        out = self._out
        out.append(reply)
        if len(out) == 1:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self._closed:
            self._tr.write(out[0] if len(out) == 1 else b"".join(out))

    # Back-pressure: stop reading while the peer does not read its replies, or while too
    # many of its calls are still running.
    def pause_writing(self) -> None:
        self._pause(1)

    def resume_writing(self) -> None:
        self._resume(1)

    def _pause(self, bit: int) -> None:
        if not self._paused and not self._closed:
            self._tr.pause_reading()
        self._paused |= bit

    def _resume(self, bit: int) -> None:
        was = self._paused
        self._paused &= ~bit
        if was and not self._paused and not self._closed:
            self._tr.resume_reading()

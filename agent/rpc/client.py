"""Outgoing msgpack-RPC: a pool with one connection per server address.

Calls share the connection and are matched by `Seq`; each has its own deadline. A broken
connection fails its calls with ConnectionLost and is dropped; the next call reconnects.
TLS (when a client context is given): connect, send byte 3, handshake, then byte 0 inside.
A call may ask for TLS (`tls=True`: servers of an area with UseTLS) where the default is
plaintext; it then uses `tls_if_possible`, or plaintext when the agent has no TLS material.
"""
from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any, Callable

from _core.errors import DecodeError
from _core.rpcframe import REPLY, FrameDecoder, encode_request

from .. import log
from ..config.model import Limits
from ..errors import ConnectionLost, RPCConnectError, RPCTimeout, remote_error
from .blocking import wait_time
from .server import RPC_CONSUL, RPC_TLS

Addr = tuple[str, int]
_log = log.get("rpc.client")


class _ClientConn(asyncio.Protocol):
    def __init__(self, pool: "RPCPool", addr: Addr, key: tuple) -> None:
        self._pool = pool
        self.addr = addr
        self.key = key
        self._feed = FrameDecoder(REPLY, pool.limits.rpc_max_header_bytes,
                                  pool.limits.rpc_max_body_bytes).feed
        # seq -> (future, deadline or None, method, timeout); one timer per connection at
        # the earliest deadline (a timer per call cost more than the rest of the call)
        self._pending: dict[int, tuple[asyncio.Future, float | None, str, float | None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._seq = 0
        self.tr: asyncio.Transport | None = None
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: list[bytes] = []          # requests of this loop iteration, one write

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.tr = transport
        self._loop = asyncio.get_running_loop()

    def call(self, method: str, body: Any, timeout: float | None) -> asyncio.Future:
        loop = self._loop
        self._seq += 1
        seq = self._seq
        fut = loop.create_future()
        deadline = None
        if timeout:
            deadline = loop.time() + timeout
            if self._timer is None or deadline < self._timer_at:
                self._arm(deadline)
        self._pending[seq] = (fut, deadline, method, timeout)
        out = self._out
        out.append(encode_request(method, seq, body))
        if len(out) == 1:       # a write syscall per call was ~30 % of a forwarding server's CPU
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed:
            self.tr.write(out[0] if len(out) == 1 else b"".join(out))

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        """Fail the calls whose deadline has passed; re-arm for the earliest one left."""
        self._timer = None
        now = self._loop.time()
        earliest = None
        for seq, (fut, deadline, method, timeout) in list(self._pending.items()):
            if deadline is None:
                continue
            if deadline <= now:
                del self._pending[seq]
                if not fut.done():
                    fut.set_exception(RPCTimeout(
                        f"rpc error making call: {method} to {self.addr[0]}:{self.addr[1]} "
                        f"timed out after {timeout:g}s"))
            elif earliest is None or deadline < earliest:
                earliest = deadline
        if earliest is not None and not self.closed:
            self._arm(earliest)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._feed(data)
        except DecodeError as exc:
            _log.warning("malformed RPC reply, closing: %s peer=%s:%s", exc, *self.addr)
            self._fail(ConnectionLost(f"malformed reply from {self.addr[0]}:{self.addr[1]}: {exc}"))
            self.tr.abort()
            return
        pending = self._pending
        for method, seq, error, body in frames:
            entry = pending.pop(seq, None)
            if entry is None:
                continue                        # timed out or cancelled earlier
            fut = entry[0]
            if fut.done():
                continue
            if error:
                fut.set_exception(remote_error(error, method))
            else:
                fut.set_result(body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        why = f": {exc}" if exc else ""
        self._fail(ConnectionLost(f"connection to {self.addr[0]}:{self.addr[1]} closed{why}"))

    def _fail(self, err: Exception) -> None:
        pending, self._pending = self._pending, {}
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut, *_ in pending.values():
            if not fut.done():
                fut.set_exception(err)

    @property
    def inflight(self) -> int:
        return len(self._pending)


class RPCPool:
    """Connections to servers, one per address, shared by concurrent calls."""

    def __init__(self, limits: Limits | None = None, *, tls_context: ssl.SSLContext | None = None,
                 server_name: Callable[[str | None], str | None] | None = None,
                 connect_timeout: float = 10.0,
                 tls_if_possible: ssl.SSLContext | None = None) -> None:
        self.limits = limits or Limits()
        self.tls_context = tls_context
        self.tls_if_possible = tls_if_possible or tls_context
        self._server_name = server_name or (lambda dc: None)
        self.connect_timeout = connect_timeout
        self._conns: dict[tuple, _ClientConn] = {}
        self._connecting: dict[tuple, asyncio.Future] = {}

    async def call(self, addr: Addr, method: str, body: Any = None, *,
                   timeout: float | None = None, dc: str | None = None,
                   tls: bool = False) -> Any:
        """Call `method` on the server at `addr`; its error reply raises a typed RPCError."""
        ctx = self.tls_if_possible if tls else self.tls_context
        key = (addr, ctx is not None)
        conn = self._conns.get(key)
        if conn is None or conn.closed:
            conn = await self._get(key, dc, ctx)
        body = {} if body is None else body
        return await conn.call(method, body, self._timeout(body) if timeout is None else timeout)

    def call_open(self, addr: Addr, method: str, body: dict, tls: bool = False
                  ) -> asyncio.Future | None:
        """`call(addr, method, body, tls=tls)` as a future when a connection to `addr` is
        open already (one coroutine less for a hot caller to resume), else None."""
        ctx = self.tls_if_possible if tls else self.tls_context
        conn = self._conns.get((addr, ctx is not None))
        if conn is None or conn.closed:
            return None
        return conn.call(method, body, self._timeout(body))

    def _timeout(self, body: Any) -> float:
        timeout = self.limits.rpc_client_timeout
        if body.__class__ is dict and body.get("MinQueryIndex"):
            # a blocking query holds the reply for its wait (plus 1/16 jitter): Consul's
            # client adds that to rpc_client_timeout
            timeout += wait_time(float(body.get("MaxQueryTime") or 0)) * 17 / 16
        return timeout

    async def close(self) -> None:
        """Close every connection; calls in flight fail with ConnectionLost."""
        for fut in list(self._connecting.values()):
            fut.cancel()
        for conn in list(self._conns.values()):
            if conn.tr is not None:
                conn.tr.close()
        self._conns.clear()
        await asyncio.sleep(0)

    def _forget(self, conn: _ClientConn) -> None:
        if self._conns.get(conn.key) is conn:
            del self._conns[conn.key]

    async def _get(self, key: tuple, dc: str | None, ctx: ssl.SSLContext | None) -> _ClientConn:
        waiting = self._connecting.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        fut = asyncio.get_running_loop().create_future()
        self._connecting[key] = fut
        try:
            conn = await self._connect(key, dc, ctx)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()            # retrieved: no "never retrieved" warning
            raise
        finally:
            self._connecting.pop(key, None)
        self._conns[key] = conn
        fut.set_result(conn)
        return conn

    async def _connect(self, key: tuple, dc: str | None,
                       ctx: ssl.SSLContext | None) -> _ClientConn:
        addr = key[0]
        _, conn = await dial(addr, RPC_CONSUL, lambda: _ClientConn(self, addr, key),
                             tls_context=ctx,
                             server_name=self._server_name(dc) if ctx is self.tls_context else None,
                             timeout=self.connect_timeout)
        return conn


async def dial(addr: Addr, type_byte: int, factory: Callable[[], asyncio.Protocol], *,
               tls_context: ssl.SSLContext | None, server_name: str | None,
               timeout: float) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """Connect to a server's RPC port and open a `type_byte` stream (0 RPC, 1 Raft, 6 area
    gossip), inside TLS (byte 3, handshake, then the byte) when `tls_context` is given.
    RPCConnectError, worded as Consul's, when that fails."""
    loop = asyncio.get_running_loop()
    host, port = addr
    where = f"{host}:{port}"
    try:
        if tls_context is None:
            tr, proto = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
                await loop.sock_sendall(sock, bytes((RPC_TLS,)))
                tr, proto = await asyncio.wait_for(
                    loop.create_connection(factory, sock=sock, ssl=tls_context,
                                           server_hostname=server_name or "",
                                           ssl_handshake_timeout=timeout),
                    timeout + 1)
            except BaseException:
                sock.close()
                raise
        tr.write(bytes((type_byte,)))
        return tr, proto
    except TimeoutError:
        raise RPCConnectError(f'failed to connect to "{where}": dial tcp {where}: '
                              f"i/o timeout") from None
    except ssl.SSLError as exc:
        raise RPCConnectError(f'failed to connect to "{where}": TLS handshake failed: '
                              f"{exc.reason or exc}") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise RPCConnectError(f'failed to connect to "{where}": dial tcp {where}: '
                              f"connect: {reason}") from None

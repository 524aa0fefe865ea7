"""The control port every Raft benchmark node serves, and the client the harness uses.

Wire: TCP on 127.0.0.1, one JSON object per line in each direction. Each request carries an
"id" (any JSON value); its reply carries the same "id". A connection may have any number of
requests in flight, and replies come back as each request finishes, not in request order.

Ops a node implements (handler replies; `serve_control` adds the "id"):
  {"op": "status"}                     -> {"leader": str, "is_leader": bool, "term": int, "commit": int}
      leader: the identity of the node this one believes is leader, "" when it knows none;
      it must be the same string on every node (the raft address "127.0.0.1:PORT" from
      --self/--peers is what every node knows of every other).
  {"op": "put", "key": str, "value": str} -> {"ok": true} once committed and applied here,
                                           or {"ok": false, "error": str} (e.g. not leader)
  {"op": "get", "key": str}            -> {"ok": true, "value": str or null}
A handler that raises, or an op it does not know, answers {"ok": false, "error": str}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

HOST = "127.0.0.1"
MAX_LINE = 1 << 24

Handler = Callable[[dict], Awaitable[dict]]

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _line(obj: dict) -> bytes:
    return _dumps(obj).encode() + b"\n"


class _Outbox:
    """Lines written within one loop iteration leave in one send: with many requests in flight
    this saves a syscall per message on both ends, and costs a sequential caller nothing."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._lines: list[bytes] = []

    def put(self, line: bytes) -> None:
        if not self._lines:
            asyncio.get_running_loop().call_soon(self._flush)
        self._lines.append(line)

    def _flush(self) -> None:
        lines, self._lines = self._lines, []
        if not self._transport.is_closing():
            self._transport.write(b"".join(lines))


class _LineBuffer:
    """Splits a byte stream into lines; refuses lines longer than MAX_LINE."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        *lines, self._pending = (self._pending + data).split(b"\n")
        if len(self._pending) > MAX_LINE:
            raise ValueError("control line too long")
        return lines


class _ServerConnection(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._lines = _LineBuffer()
        self._transport: asyncio.Transport | None = None
        self._outbox: _Outbox | None = None
        self._running: set[asyncio.Task] = set()

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._outbox = _Outbox(transport)

    def data_received(self, data: bytes) -> None:
        try:
            lines = self._lines.feed(data)
        except ValueError:
            self._transport.close()
            return
        for raw in lines:
            if not raw.strip():
                continue
            try:
                req = json.loads(raw)
                if not isinstance(req, dict):
                    raise ValueError("request is not an object")
            except ValueError as e:
                self._send({"id": None, "ok": False, "error": f"bad request: {e}"})
                continue
            task = asyncio.ensure_future(self._answer(req))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _answer(self, req: dict) -> None:
        try:
            reply = dict(await self._handler(req))
        except Exception as e:  # one bad request must not take the node down
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        reply["id"] = req.get("id")
        self._send(reply)

    def _send(self, reply: dict) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._outbox.put(_line(reply))

    def connection_lost(self, exc) -> None:
        self._transport = None
        for task in list(self._running):
            task.cancel()


async def serve_control(port: int, handler: Handler) -> asyncio.base_events.Server:
    """Listen on 127.0.0.1:port; every request is answered by `await handler(req)` in its own
    task on the running loop, so slow requests (a put waiting for commit) do not hold up the
    ones behind them. Returns the server; closing it stops accepting connections."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _ServerConnection(handler), HOST, port)


def unknown_op(req: dict) -> dict:
    return {"ok": False, "error": f"unknown op {req.get('op')!r}"}


class _ClientConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self._lines = _LineBuffer()
        self.transport: asyncio.Transport | None = None
        self.outbox: _Outbox | None = None
        self.waiting: dict[int, asyncio.Future] = {}
        self.lost: BaseException | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.outbox = _Outbox(transport)

    def data_received(self, data: bytes) -> None:
        for raw in self._lines.feed(data):
            if raw.strip():
                reply = json.loads(raw)
                fut = self.waiting.pop(reply.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.lost = exc or ConnectionResetError("control connection closed")
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError(str(self.lost)))
        self.waiting.clear()


def _expire(fut: asyncio.Future, op: str, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no reply to {op!r} within {timeout}s"))


class ControlClient:
    """One connection to a node's control port. `call` may be awaited from many tasks at once;
    every call gets its own id, and replies are matched by id."""

    def __init__(self, conn: _ClientConnection, port: int) -> None:
        self._conn = conn
        self.port = port
        self._next_id = 0

    @classmethod
    async def connect(cls, port: int, timeout: float = 2.0) -> ControlClient:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(loop.create_connection(_ClientConnection, HOST, port), timeout)
        return cls(conn, port)

    @property
    def closed(self) -> bool:
        return self._conn.lost is not None or self._conn.transport is None

    async def call(self, op: str, timeout: float | None = 10.0, **fields: Any) -> dict:
        """Send {"op": op, **fields} and wait for its reply (raises ConnectionError when the node
        goes away, TimeoutError after `timeout` seconds; None waits forever)."""
        conn = self._conn
        if conn.lost is not None:
            raise ConnectionResetError(str(conn.lost))
        self._next_id += 1
        rid = self._next_id
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        conn.waiting[rid] = fut
        fields["op"] = op
        fields["id"] = rid
        conn.outbox.put(_line(fields))
        # a bare timer instead of asyncio.wait_for: this sits on every measured round trip
        timer = None if timeout is None else loop.call_later(timeout, _expire, fut, op, timeout)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            conn.waiting.pop(rid, None)

    def close(self) -> None:
        if self._conn.transport is not None:
            self._conn.transport.close()


def node_arguments(description: str) -> argparse.ArgumentParser:
    """The command line every benchmark node takes (bench_raft.py starts them all alike)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--name", required=True)
    ap.add_argument("--self", required=True, help="this node's raft address, 127.0.0.1:PORT")
    ap.add_argument("--peers", required=True, help="the other nodes' raft addresses, comma-separated")
    ap.add_argument("--control", type=int, required=True, help="control port on 127.0.0.1")
    ap.add_argument("--data-dir", required=True)
    return ap


def parse_node_arguments(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, refusing any address off loopback."""
    args = ap.parse_args(argv)
    for addr in [args.self, *args.peers.split(",")]:
        if addr and not addr.startswith("127.0.0.1:"):
            ap.error(f"loopback only: {addr}")
    return args

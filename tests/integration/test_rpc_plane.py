"""The server RPC plane over real loopback sockets, in one process: dispatch by first byte,
many calls per connection, errors, and every bad-input case of issue #2."""
from __future__ import annotations

import asyncio
import socket
import time

import msgpack
import pytest

from _core.rpcframe import encode_request
from agent.cli.agent_cmd import raise_open_file_limit
from agent.config.model import Limits
from agent.errors import ConnectionLost, IsthmusError, RPCConnectError, RPCError, RPCTimeout, UnknownMethod
from agent.rpc.client import RPCPool
from agent.rpc.registry import Registry
from agent.rpc.server import RPCServer
from agent.rpc.status import SingleServer, register_status
from tests.aio import run


class Boom(IsthmusError):
    pass


def make_registry() -> Registry:
    reg = Registry()
    register_status(reg, "dc1", SingleServer("127.0.0.1:8300"))

    async def sleepy(body, ctx):
        await asyncio.sleep(body["delay"])
        return body["n"]

    def fail(body, ctx):
        raise Boom("it went boom")

    def crash(body, ctx):
        raise KeyError("bug")

    async def maybe(body, ctx):
        """Waits `waits` times (0: answers at once), then fails if asked to."""
        for _ in range(body["waits"]):
            await asyncio.sleep(0)
        if body.get("fail"):
            raise Boom(f"failed after {body['waits']} waits")
        return {"waits": body["waits"], "in_task": asyncio.current_task() is not None}

    reg.register("Test.Sleep", sleepy)
    reg.register("Test.Maybe", maybe)
    reg.register("Test.Fail", fail)
    reg.register("Test.Crash", crash)
    reg.register("Test.Echo", lambda body, ctx: body)
    return reg


async def start_server(**limits) -> RPCServer:
    srv = RPCServer(make_registry(), host="127.0.0.1", port=0,
                    limits=Limits(**{"rpc_handshake_timeout": 0.5, **limits}))
    await srv.start()
    return srv


async def raw_conn(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, within: float = 5.0) -> bool:
    """True if the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), within)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def still_serves(srv: RPCServer) -> None:
    pool = RPCPool()
    try:
        assert await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}) == {}
    finally:
        await pool.close()


def test_ping_leader_peers_round_trip():
    async def main():
        srv = await start_server()
        pool = RPCPool()
        addr = ("127.0.0.1", srv.port)
        assert await pool.call(addr, "Status.Ping", {}) == {}
        assert await pool.call(addr, "Status.Leader", {"Datacenter": "dc1"}) == "127.0.0.1:8300"
        assert await pool.call(addr, "Status.Peers", {}) == ["127.0.0.1:8300"]
        with pytest.raises(RPCError, match="No path to datacenter"):
            await pool.call(addr, "Status.Leader", {"Datacenter": "dc9"})
        await pool.close()
        await srv.stop()
    run(main)


def test_many_calls_in_flight_on_one_connection_answered_out_of_order():
    async def main():
        srv = await start_server()
        pool = RPCPool()
        addr = ("127.0.0.1", srv.port)
        # later calls finish first: replies come back in reverse order, matched by Seq
        calls = [pool.call(addr, "Test.Sleep", {"delay": 0.2 - i * 0.002, "n": i}) for i in range(100)]
        assert await asyncio.gather(*calls) == list(range(100))
        assert len(pool._conns) == 1 and srv.stats["accepted"] == 1
        await pool.close()
        await srv.stop()
    run(main)


def test_async_handlers_run_eagerly_and_go_on_in_a_task_when_they_wait():
    async def main():
        srv = await start_server()
        pool = RPCPool()
        addr = ("127.0.0.1", srv.port)
        # one batch on one connection: answered at once and waiting handlers mixed
        got = await asyncio.gather(*[pool.call(addr, "Test.Maybe", {"waits": i % 3})
                                     for i in range(30)])
        assert got == [{"waits": i % 3, "in_task": i % 3 > 0} for i in range(30)]
        for waits in (0, 2):
            with pytest.raises(RPCError, match=f"failed after {waits} waits"):
                await pool.call(addr, "Test.Maybe", {"waits": waits, "fail": True})
        assert not srv._tasks                   # every waiting handler finished
        # a handler still waiting when the server stops is cancelled; the client hears
        call = asyncio.ensure_future(pool.call(addr, "Test.Sleep", {"delay": 30, "n": 1}))
        await asyncio.sleep(0.1)
        assert len(srv._tasks) == 1
        await srv.stop()
        with pytest.raises(ConnectionLost):
            await call
        await pool.close()
    run(main)


def test_errors_are_typed_and_carry_the_message():
    async def main():
        srv = await start_server()
        pool = RPCPool()
        addr = ("127.0.0.1", srv.port)
        with pytest.raises(UnknownMethod, match="rpc: can't find service Nope.Ping"):
            await pool.call(addr, "Nope.Ping", {})
        with pytest.raises(UnknownMethod, match="rpc: can't find method Status.Nope"):
            await pool.call(addr, "Status.Nope", {})
        with pytest.raises(RPCError, match="it went boom") as info:
            await pool.call(addr, "Test.Fail", {})
        assert info.value.message == "it went boom"
        with pytest.raises(RPCError, match="internal error in Test.Crash"):
            await pool.call(addr, "Test.Crash", {})
        # the connection survived all of that
        assert await pool.call(addr, "Test.Echo", {"a": [1, 2, 3]}) == {"a": [1, 2, 3]}
        await pool.close()
        await srv.stop()
    run(main)


def test_per_call_timeout_leaves_connection_usable():
    async def main():
        srv = await start_server()
        pool = RPCPool()
        addr = ("127.0.0.1", srv.port)
        with pytest.raises(RPCTimeout):
            await pool.call(addr, "Test.Sleep", {"delay": 1.0, "n": 1}, timeout=0.05)
        assert await pool.call(addr, "Status.Ping", {}) == {}
        await pool.close()
        await srv.stop()
    run(main)


def test_pool_reconnects_after_server_restart():
    async def main():
        srv = await start_server()
        port = srv.port
        pool = RPCPool()
        addr = ("127.0.0.1", port)
        assert await pool.call(addr, "Status.Ping", {}) == {}
        await srv.stop()
        await asyncio.sleep(0.05)
        with pytest.raises((RPCConnectError, ConnectionLost)):
            await pool.call(addr, "Status.Ping", {})
        srv2 = RPCServer(make_registry(), host="127.0.0.1", port=port, limits=Limits())
        await srv2.start()
        assert await pool.call(addr, "Status.Ping", {}) == {}
        await pool.close()
        await srv2.stop()
    run(main)


def test_connect_refused_is_a_clear_error():
    async def main():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        pool = RPCPool()
        with pytest.raises(RPCConnectError, match=f"failed to connect to \"127.0.0.1:{port}\""):
            await pool.call(("127.0.0.1", port), "Status.Ping", {})
        await pool.close()
    run(main)


@pytest.mark.parametrize("first", [b"\x02", b"\x07", b"\xff", b"GET / HTTP/1.1\r\n\r\n"])
def test_unknown_first_byte_is_closed_and_others_are_served(first):
    async def main():
        srv = await start_server()
        reader, writer = await raw_conn(srv.port)
        writer.write(first)
        assert await closed_by_server(reader)
        writer.close()
        assert srv.stats["bad_byte"] == 1
        await still_serves(srv)
        await srv.stop()
    run(main)


@pytest.mark.parametrize("garbage", [
    b"\xc1",                                            # never-used msgpack byte
    msgpack.packb(["not", "a", "map"]) + msgpack.packb({}),
    msgpack.packb({"ServiceMethod": 5, "Seq": 1}) + msgpack.packb({}),
    msgpack.packb({"ServiceMethod": "Status.Ping", "Seq": -1}) + msgpack.packb({}),
])
def test_garbage_frames_close_the_connection_only(garbage):
    async def main():
        srv = await start_server()
        reader, writer = await raw_conn(srv.port)
        writer.write(b"\x00" + garbage)
        assert await closed_by_server(reader)
        writer.close()
        assert srv.stats["malformed"] == 1
        await still_serves(srv)
        await srv.stop()
    run(main)


def test_valid_calls_before_garbage_on_the_same_connection_are_answered():
    async def main():
        srv = await start_server()
        reader, writer = await raw_conn(srv.port)
        writer.write(b"\x00" + encode_request("Status.Ping", 1, {}))
        unpacker = msgpack.Unpacker()
        got = []
        while len(got) < 2:
            unpacker.feed(await asyncio.wait_for(reader.read(4096), 5))
            got.extend(unpacker)
        assert got[0] == {"ServiceMethod": "Status.Ping", "Seq": 1, "Error": ""}
        writer.write(b"\xc1")
        assert await closed_by_server(reader)
        writer.close()
        await srv.stop()
    run(main)


def test_truncated_frame_then_close_is_harmless():
    async def main():
        srv = await start_server()
        reader, writer = await raw_conn(srv.port)
        frame = encode_request("Status.Ping", 1, {"Datacenter": "dc1"})
        writer.write(b"\x00" + frame[:-3])
        await writer.drain()
        writer.close()
        await asyncio.sleep(0.05)
        await still_serves(srv)
        await srv.stop()
    run(main)


def test_oversized_header_and_body_are_refused_early():
    async def main():
        srv = await start_server(rpc_max_header_bytes=1024, rpc_max_body_bytes=64 * 1024)
        # body declares 1 MiB but sends only its first bytes: refused without waiting
        reader, writer = await raw_conn(srv.port)
        big = msgpack.packb({"ServiceMethod": "Test.Echo", "Seq": 1}) + b"\xdb" + (1 << 20).to_bytes(4, "big")
        writer.write(b"\x00" + big + b"x" * 100)
        assert await closed_by_server(reader)
        writer.close()
        reader, writer = await raw_conn(srv.port)
        writer.write(b"\x00" + msgpack.packb({"ServiceMethod": "x" * 2000, "Seq": 1}))
        assert await closed_by_server(reader)
        writer.close()
        assert srv.stats["malformed"] == 2
        # a body just under the limit is fine
        pool = RPCPool()
        blob = "y" * (60 * 1024)
        assert await pool.call(("127.0.0.1", srv.port), "Test.Echo", blob) == blob
        await pool.close()
        await srv.stop()
    run(main)


def test_silent_client_is_closed_after_the_handshake_timeout():
    async def main():
        srv = await start_server(rpc_handshake_timeout=0.3)
        t0 = time.monotonic()
        reader, writer = await raw_conn(srv.port)
        assert await closed_by_server(reader, within=3.0)
        took = time.monotonic() - t0
        writer.close()
        print(f"silent connection closed after {took:.3f}s (timeout 0.3s)")
        assert srv.stats["handshake_timeout"] == 1
        await still_serves(srv)
        await srv.stop()
    run(main)


def test_tls_byte_on_a_server_without_tls_is_closed():
    async def main():
        srv = await start_server()
        reader, writer = await raw_conn(srv.port)
        writer.write(b"\x03\x16\x03\x01\x00\x05hello")
        assert await closed_by_server(reader)
        writer.close()
        await still_serves(srv)
        await srv.stop()
    run(main)


def test_thousand_connections_from_one_address_beyond_the_limit_are_refused():
    raise_open_file_limit()

    async def main():
        srv = await start_server(rpc_max_conns_per_client=100, rpc_handshake_timeout=5.0)
        conns = await asyncio.gather(*(raw_conn(srv.port) for _ in range(1000)),
                                     return_exceptions=True)
        opened = [c for c in conns if not isinstance(c, BaseException)]
        # every accepted connection beyond the 100th is closed at once by the server
        deadline = time.monotonic() + 15
        while srv.stats["accepted"] < len(opened) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert srv.stats["refused_limit"] == len(opened) - 100, srv.stats
        # the 100 admitted ones still work (they speak RPC now)
        admitted = 0
        for reader, writer in opened:
            if reader.at_eof():
                continue
            writer.write(b"\x00" + encode_request("Status.Ping", 1, {}))
        for reader, writer in opened:
            try:
                data = await asyncio.wait_for(reader.read(100), 5)
            except (ConnectionResetError, TimeoutError):
                data = b""
            if data:
                admitted += 1
            writer.close()
        assert admitted == 100
        await asyncio.sleep(0.1)
        await still_serves(srv)        # slots were released when those closed
        await srv.stop()
    run(main, timeout=90)

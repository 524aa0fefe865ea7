"""Federation.forward: failover between servers and between paths (WAN and an area) when a
connection cannot be made, and the distinct errors for unknown and unreachable DCs."""
from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest

from agent.errors import ConnectionLost, RPCConnectError
from agent.federation import Federation
from agent.router.core import UNREACHABLE, WAN_AREA, DCUnreachable, NoPath, Server


class FakePool:
    """rpc_pool.call: addresses in `down` refuse the connection; `lost` drop mid-call. An
    address called once has an open connection: call_open answers for it from then on."""

    def __init__(self, down=(), lost=()) -> None:
        self.down, self.lost = set(down), set(lost)
        self.calls: list[tuple] = []
        self.open: set = set()

    async def call(self, addr, method, body, *, dc=None, tls=False, timeout=None):
        self.calls.append((addr, tls))
        if addr in self.down:
            raise RPCConnectError(f'failed to connect to "{addr[0]}:{addr[1]}"')
        self.open.add(addr)
        if addr in self.lost:
            raise ConnectionLost("closed")
        return {"served_by": addr}

    def call_open(self, addr, method, body, tls=False):
        if addr not in self.open or addr in self.down:
            return None
        self.calls.append((addr, tls))
        fut = asyncio.get_running_loop().create_future()
        if addr in self.lost:
            fut.set_exception(ConnectionLost("closed"))
        else:
            fut.set_result({"served_by": addr})
        return fut


def federation(pool: FakePool) -> Federation:
    agent = SimpleNamespace(config=SimpleNamespace(datacenter="dc1"), rpc_pool=pool,
                            wan=None, lan=None)
    f = Federation(agent, random.Random(1))
    f.router.add_area(WAN_AREA)
    f.router.add_area("area-1", use_tls=True)
    return f


def srv(node: str, port: int) -> Server:
    return Server(f"{node}.dc2", node, "dc2", ("127.0.0.2", port))


def run(coro):
    return asyncio.run(coro)


def test_wan_path_down_area_path_answers():
    pool = FakePool(down={("127.0.0.2", 1), ("127.0.0.2", 2)})
    f = federation(pool)
    f.router.add_server(WAN_AREA, srv("a", 1), 0)
    f.router.add_server(WAN_AREA, srv("b", 2), 0)
    f.router.add_server("area-1", srv("a", 3), 0)
    reply = run(f.forward("KVS.Get", {"Datacenter": "dc2"}))
    assert reply == {"served_by": ("127.0.0.2", 3)}
    assert pool.calls[-1] == (("127.0.0.2", 3), True)          # the area's TLS
    assert f.stats["failovers"] == 2


def test_area_path_down_wan_answers_and_the_next_request_goes_straight_there():
    pool = FakePool(down={("127.0.0.2", 3)})
    f = federation(pool)
    f.router.add_server("area-1", srv("a", 3), 0)
    f.router.add_server(WAN_AREA, srv("a", 1), 0)
    assert run(f.forward("KVS.Get", {"Datacenter": "dc2"})) == {"served_by": ("127.0.0.2", 1)}


def test_every_server_down_is_unreachable_then_offline():
    pool = FakePool(down={("127.0.0.2", 1), ("127.0.0.2", 3)})
    f = federation(pool)
    f.router.add_server(WAN_AREA, srv("a", 1), 0)
    f.router.add_server("area-1", srv("a", 3), 0)
    with pytest.raises(DCUnreachable, match=UNREACHABLE):
        run(f.forward("KVS.Get", {"Datacenter": "dc2"}))
    assert all(m.offline for m in f.router.managers("dc2"))
    pool.down.clear()                   # offline paths are still tried, last
    assert run(f.forward("KVS.Get", {"Datacenter": "dc2"}))["served_by"]


def test_unknown_dc_is_no_path_and_nothing_is_dialled():
    pool = FakePool()
    f = federation(pool)
    with pytest.raises(NoPath, match="No path to datacenter"):
        run(f.forward("KVS.Get", {"Datacenter": "dc9"}))
    assert pool.calls == []


def test_an_error_after_sending_is_not_retried_but_rotates():
    pool = FakePool(lost={("127.0.0.2", 1)})
    f = federation(pool)
    f.router.add_server(WAN_AREA, srv("a", 1), 0)
    f.router.add_server(WAN_AREA, srv("b", 2), 0)
    with pytest.raises(ConnectionLost):
        run(f.forward("KVS.Apply", {"Datacenter": "dc2"}))
    assert len(pool.calls) == 1                                # a write is never sent twice
    assert run(f.forward("KVS.Apply", {"Datacenter": "dc2"})) == {"served_by": ("127.0.0.2", 2)}

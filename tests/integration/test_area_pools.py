"""Network-area gossip pools over real RPC servers on loopback, in one process: pools join
across datacenters through byte 6 on the RPC port, see each other alive, notice a killed
server, run inside TLS, shrug off garbage; the AreaManager follows the areas table.

Pools use memberlist's Local profile (probe 1 s, suspicion ×3) so failures show in seconds;
the manager defaults to the WAN profile like Consul's areas."""
from __future__ import annotations

import asyncio
import socket
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace

import pytest

from _core import wire
from _core.gossip_config import GossipConfig
from agent.areas import AreaGossipHandler, AreaManager, AreaPool, UnknownArea, area_tags
from agent.areas.transport import Hello, encode_frame
from agent.config.model import AgentConfig, Limits, Ports, TLSSettings
from agent.rpc.blocking import Notifier
from agent.rpc.registry import Registry
from agent.rpc.server import RPCServer
from agent.tlsutil.context import client_context, server_context
from tests.aio import run
from tests.integration.procs import free_ports
from tests.integration.test_rpc_tls import make_pki

pytestmark = pytest.mark.integration

FAST = GossipConfig.local()
DEADLINE = 60.0          # Local profile, 3 nodes: detection + spread take a few seconds


async def until(what: str, pred, within: float = DEADLINE) -> float:
    t0 = time.monotonic()
    while True:
        if pred():
            took = time.monotonic() - t0
            print(f"{what}: {took:.2f}s")
            return took
        if time.monotonic() - t0 > within:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.05)


class Node:
    """One server: an RPC server with the byte-6 handler, and area pools added by hand."""

    def __init__(self, name: str, dc: str, host: str, tls: TLSSettings | None = None) -> None:
        self.name, self.dc, self.host = name, dc, host
        self.tls = tls
        self.srv: RPCServer | None = None
        self.handler = AreaGossipHandler(dc)
        self.pools: dict[str, AreaPool] = {}

    async def start(self) -> "Node":
        (port,) = free_ports(1, self.host)
        tls = self.tls
        self.srv = RPCServer(Registry(), host=self.host, port=port, limits=Limits(),
                             tls_context=server_context(tls) if tls else None,
                             verify_incoming=bool(tls and tls.verify_incoming))
        await self.srv.start()
        self.handler.attach(self.srv)
        return self

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.srv.port}"

    async def area(self, peer_dc: str, area_id: str | None = None, use_tls: bool = False,
                   names: tuple[str, ...] | None = None) -> AreaPool:
        ctx = None
        if use_tls:
            ctx = client_context(replace(self.tls, verify_outgoing=True,
                                         verify_server_hostname=False))
            if names is None and self.tls.verify_server_hostname:
                names = (f"server.{self.dc}.consul", f"server.{peer_dc}.consul")
        cfg = AgentConfig(datacenter=self.dc, node_name=self.name, server=True,
                          ports=Ports(server=self.srv.port))
        pool = AreaPool(area_id or str(uuid.uuid4()), peer_dc, FAST, handler=self.handler,
                        datacenter=self.dc, node_name=f"{self.name}.{self.dc}",
                        advertise=self.host, port=self.srv.port,
                        tags=area_tags(cfg, str(uuid.uuid4()), self.srv.port),
                        tls_context=ctx, tls_names=names)
        await pool.start()
        self.pools[peer_dc] = pool
        return pool

    def statuses(self, peer_dc: str) -> dict[str, str]:
        return {m["Name"]: m["Status"] for m in self.pools[peer_dc].members_json()}

    async def kill(self) -> None:
        """Stop without leaving: peers must find out by probing."""
        for p in self.pools.values():
            await p.stop()
        await self.srv.stop()
        self.handler.close()


async def stop_all(*nodes: Node) -> None:
    for n in nodes:
        for p in n.pools.values():
            await p.stop()
        if n.srv is not None:
            await n.srv.stop()
        n.handler.close()


def all_alive(nodes, peer_of) -> bool:
    names = {f"{n.name}.{n.dc}" for n in nodes}
    return all(n.statuses(peer_of[n.dc]) == {x: "alive" for x in names} for n in nodes)


# ---------------------------------------------------------------------------- pools

@pytest.mark.slow
def test_pools_join_across_dcs_see_all_alive_and_mark_a_killed_server_failed():
    async def main():
        a = await Node("s1", "dc1", "127.0.0.1").start()
        b = await Node("s2", "dc1", "127.0.0.2").start()
        c = await Node("s3", "dc2", "127.0.0.1").start()
        try:
            pa = await a.area("dc2")
            await b.area("dc2")
            await c.area("dc1")
            assert await pa.join_address(b.addr) == (True, "")          # same DC
            assert await pa.join_address(c.addr) == (True, "")          # cross DC
            peer_of = {"dc1": "dc2", "dc2": "dc1"}
            await until("all three see all three alive", lambda: all_alive([a, b, c], peer_of))
            me = {m["Name"]: m for m in pa.members_json()}
            s3 = me["s3.dc2"]
            assert (s3["Addr"], s3["Port"], s3["Datacenter"], s3["Role"], s3["Status"]) == \
                ("127.0.0.1", c.srv.port, "dc2", "server", "alive")
            assert s3["Protocol"] == 2 and s3["Build"] and ":" not in s3["Build"]
            assert me["s1.dc1"]["RTT"] == 0 and all(isinstance(m["RTT"], int) for m in me.values())
            await until("an RTT estimate to s3", lambda: pa.rtt_ns("s3.dc2") > 0)
            # nothing went over UDP: every pool talked through byte-6 connections
            assert a.handler.stats["packets"] >= 1 and c.handler.stats["streams"] >= 1
            assert not any(a.handler.stats[k] for k in ("bad_hello", "unknown_area", "bad_frame"))

            await c.kill()
            await until("s1 and s2 see s3 failed",
                        lambda: a.statuses("dc2").get("s3.dc2") == "failed"
                        and b.statuses("dc2").get("s3.dc2") == "failed")
            assert a.statuses("dc2")["s2.dc1"] == "alive"
        finally:
            await stop_all(a, b, c)
    run(main, timeout=3 * DEADLINE)


def test_join_errors_are_per_address_and_clear():
    async def main():
        a = await Node("s1", "dc1", "127.0.0.1").start()
        d = await Node("s4", "dc2", "127.0.0.1").start()        # in an area with dc9, not dc1
        try:
            pa = await a.area("dc2")
            pd = await d.area("dc9")
            (dead,) = free_ports(1)
            ok, err = await pa.join_address(f"127.0.0.1:{dead}")
            assert not ok and err == (f'failed to connect to "127.0.0.1:{dead}": dial tcp '
                                      f'127.0.0.1:{dead}: connect: connection refused')
            ok, err = await pa.join_address("not an address")
            assert not ok
            assert err == 'invalid address "not an address": not an IP address or host name'
            ok, err = await pa.join_address("127.0.0.1:port")
            assert not ok and err == 'invalid address "127.0.0.1:port": invalid port'
            # a server with no area for our DC refuses, and says why
            ok, err = await pa.join_address(d.addr)
            assert not ok and "no network area for peer datacenter dc1" in err, err
            ok, err = await pd.join_address(a.addr)
            assert not ok and "is for its area with dc9" in err, err
            assert a.handler.stats["unknown_area"] == 1 and d.handler.stats["unknown_area"] == 1
            assert [m["Name"] for m in pa.members_json()] == ["s1.dc1"]
        finally:
            await stop_all(a, d)
    run(main)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("areapki")
    a, b, c, imposter = make_pki(root, ("server", "dc1"), ("server", "dc1"), ("server", "dc2"),
                                 ("server", "dc3"))
    ca = str(root / "consul-agent-ca.pem")
    strict = dict(verify_incoming=True, verify_outgoing=True, verify_server_hostname=True)
    return {name: TLSSettings(ca_file=ca, cert_file=cert, key_file=key, **strict)
            for name, (cert, key) in (("a", a), ("b", b), ("c", c), ("imposter", imposter))}


@pytest.mark.slow
def test_area_gossip_inside_tls_with_verification(pki):
    async def main():
        a = await Node("s1", "dc1", "127.0.0.1", pki["a"]).start()
        b = await Node("s2", "dc1", "127.0.0.2", pki["b"]).start()
        c = await Node("s3", "dc2", "127.0.0.1", pki["c"]).start()
        # an imposter claims to be a dc2 server but holds a dc3 certificate
        x = await Node("sx", "dc2", "127.0.0.2", pki["imposter"]).start()
        plain = await Node("sp", "dc2", "127.0.0.2", pki["c"]).start()
        try:
            pa = await a.area("dc2", use_tls=True)
            await b.area("dc2", use_tls=True)
            await c.area("dc1", use_tls=True)
            await x.area("dc1", use_tls=True)
            pp = await plain.area("dc1", use_tls=False)
            assert await pa.join_address(b.addr) == (True, "")
            assert await pa.join_address(c.addr) == (True, "")
            peer_of = {"dc1": "dc2", "dc2": "dc1"}
            await until("all alive over TLS", lambda: all_alive([a, b, c], peer_of))
            assert all(conn.tls for conn in a.handler._conns)
            ok, err = await pa.join_address(x.addr)
            assert not ok and "TLS handshake failed: certificate is valid for server.dc3.consul" \
                in err and "not server.dc1.consul or server.dc2.consul" in err, err
            # plaintext to a verify_incoming server: the RPC port closes it
            ok, err = await pp.join_address(a.addr)
            print("plaintext join to a verify_incoming server:", err)
            assert not ok and err, err
            assert a.srv.stats["accepted"] > 0
            assert "sx.dc2" not in a.statuses("dc2") and "sp.dc2" not in a.statuses("dc2")
            await c.kill()
            await until("s3 failed (seen over TLS)",
                        lambda: a.statuses("dc2").get("s3.dc2") == "failed")
        finally:
            await stop_all(a, b, c, x, plain)
    run(main, timeout=3 * DEADLINE)


def raw(port: int, data: bytes, read: bool = False, host: str = "127.0.0.1") -> bytes:
    got = b""
    with socket.create_connection((host, port), timeout=5) as s:
        try:
            s.sendall(data)
            while read:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:     # the server's reset or our timeout: keep what arrived before it
            pass
    return got


def test_garbage_on_byte_6_does_not_break_the_pool():
    async def main():
        a = await Node("s1", "dc1", "127.0.0.1").start()
        c = await Node("s3", "dc2", "127.0.0.1").start()
        try:
            pa = await a.area("dc2")
            await c.area("dc1")
            assert await pa.join_address(c.addr) == (True, "")
            port = a.srv.port
            good = Hello("packet", "dc2", "dc1", ("127.0.0.1", c.srv.port), "s3.dc2").encode()
            loop = asyncio.get_running_loop()
            garbage = [
                b"\x06" + b"\x00" * 64,
                b"\x06" + b"\xff\xff\xff\xff" + b"x" * 100,
                b"\x06" + bytes(range(256)) * 8,
                b"\x06" + encode_frame(b"\x82\xa1V\x01\xa4Kind\xa3rpc"),
                b"\x06" + good + encode_frame(b"\xde\xad\xbe\xef") + encode_frame(b"") + b"zz",
                b"\x06" + good + b"\x00\x20\x00\x00" + b"y" * 1000,     # 2 MiB frame announced
                b"\x06" + good + encode_frame(wire.encode_packet([b"\x99garbage"])),
                b"\x06" + Hello("stream", "dc2", "dc1", ("127.0.0.1", 9), "x").encode()
                + b"\xff" * 50,
            ]
            for g in garbage:
                await loop.run_in_executor(None, raw, port, g)
            # a stream for an area we do not have gets a memberlist error back
            reply = await loop.run_in_executor(
                None, raw, port, b"\x06" + Hello("stream", "dc7", "dc1", ("127.0.0.1", 9)).encode(),
                True)
            msgs = wire.StreamDecoder().feed(reply)
            assert "no network area for peer datacenter dc7" in msgs[0].error
            await until("garbage counted",
                        lambda: a.handler.stats["bad_hello"] >= 4
                        and a.handler.stats["bad_frame"] >= 2
                        and a.handler.stats["unknown_area"] >= 1)
            # the pool carries on: s3 stays alive through several probe rounds, and a fresh
            # server still joins
            await asyncio.sleep(3 * FAST.probe_interval)
            assert a.statuses("dc2") == {"s1.dc1": "alive", "s3.dc2": "alive"}
            b = await Node("s2", "dc1", "127.0.0.2").start()
            try:
                pb = await b.area("dc2")
                assert await pb.join_address(a.addr) == (True, "")
                await until("s2 seen by s3", lambda: c.statuses("dc1").get("s2.dc1") == "alive")
            finally:
                await stop_all(b)
        finally:
            await stop_all(a, c)
    run(main, timeout=3 * DEADLINE)


# ---------------------------------------------------------------------------- AreaManager

class FakeAreas:
    """agent/state/areas.py's read API over a dict (the BRIEF's contract #1)."""

    def __init__(self, notifier: Notifier) -> None:
        self.rows: dict[str, dict] = {}
        self.index = 0
        self.notifier = notifier

    def list(self):
        return self.index, [dict(self.rows[k]) for k in sorted(self.rows)]

    def get(self, area_id):
        return dict(self.rows[area_id]) if area_id in self.rows else None

    def by_peer(self, dc):
        return next((dict(r) for r in self.rows.values() if r["PeerDatacenter"] == dc), None)

    def put(self, area_id: str, peer: str, retry_join=None, use_tls=False,
            notify: bool = True) -> None:
        self.index += 1
        old = self.rows.get(area_id)
        self.rows[area_id] = {"ID": area_id, "PeerDatacenter": peer, "RetryJoin": retry_join,
                              "UseTLS": use_tls,
                              "CreateIndex": old["CreateIndex"] if old else self.index,
                              "ModifyIndex": self.index}
        if notify:
            self.notifier.notify({"areas"})

    def delete(self, area_id: str) -> None:
        self.index += 1
        del self.rows[area_id]
        self.notifier.notify({"areas"})


class FakeStore:
    def __init__(self) -> None:
        self.notifier = Notifier()
        self.areas = FakeAreas(self.notifier)

    def max_index(self, *tables):
        return self.areas.index


class FakeFederation:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add_pool(self, area_id, pool, use_tls):
        self.calls.append(("add", area_id, use_tls))

    def remove_pool(self, area_id):
        self.calls.append(("remove", area_id))

    def set_tls(self, area_id, use_tls):
        self.calls.append(("tls", area_id, use_tls))


async def server_agent(name: str, dc: str, host: str, store: FakeStore,
                       tls: TLSSettings | None = None, data_dir=None) -> SimpleNamespace:
    (port,) = free_ports(1, host)
    tls = tls or TLSSettings()
    cfg = AgentConfig(datacenter=dc, node_name=name, server=True, bind_addr=host,
                      advertise_addr=host, ports=Ports(server=port), tls_internal_rpc=tls,
                      data_dir=str(data_dir) if data_dir else None)
    srv = RPCServer(Registry(), host=host, port=port, limits=Limits(),
                    tls_context=server_context(tls), verify_incoming=tls.verify_incoming)
    await srv.start()
    agent = SimpleNamespace(config=cfg, node_id=str(uuid.uuid4()), rpc_server=srv,
                            consensus=SimpleNamespace(store=store, notifier=store.notifier),
                            federation=FakeFederation())
    agent.areas = AreaManager(agent, gossip_config=FAST, retry_join_interval=0.5)
    await agent.areas.start()
    return agent


def statuses(agent, area_id) -> dict[str, str]:
    return {m["Name"]: m["Status"] for m in agent.areas.members(area_id)}


def test_manager_follows_the_areas_table(caplog, tmp_path):
    async def main():
        dc1, dc2 = FakeStore(), FakeStore()          # one replicated table per DC
        m1 = await server_agent("s1", "dc1", "127.0.0.1", dc1)
        m2 = await server_agent("s2", "dc1", "127.0.0.2", dc1)
        m3 = await server_agent("s3", "dc2", "127.0.0.1", dc2, data_dir=tmp_path)
        agents = [m1, m2, m3]
        try:
            with pytest.raises(UnknownArea, match='unknown area "nope"'):
                m1.areas.members("nope")
            with pytest.raises(UnknownArea):
                await m1.areas.join("nope", ["127.0.0.1"])
            a1, a2 = "5b1c9e1a-0c4d-7e52-3f9a-2d8e61b0c7a4", "a93d0f6e-27b4-51c8-e0d2-7c4f18a6b935"
            dc1.areas.put(a1, "dc2")
            await until("dc1 servers start the area's pool",
                        lambda: a1 in m1.areas.pools and a1 in m2.areas.pools)
            assert m1.federation.calls == [("add", a1, False)]
            assert statuses(m1, a1) == {"s1.dc1": "alive"}
            pool = m1.areas.pools[a1]
            assert (pool.port, pool.node_name) == (m1.rpc_server.port, "s1.dc1")
            assert pool.tags["port"] == str(m1.rpc_server.port) and "wan_join_port" not in pool.tags

            # dc2's reciprocal area joins dc1 by itself (RetryJoin), even before dc1 answers
            dc2.areas.put(a2, "dc1", retry_join=[m1.rpc_server.address[0] + ":"
                                                 + str(m1.rpc_server.port)])
            await until("RetryJoin joined dc2 to dc1",
                        lambda: a2 in m3.areas.pools and "s3.dc2" in statuses(m1, a1))
            await until("RetryJoin task finished", lambda: not m3.areas._retry)

            (dead,) = free_ports(1)
            got = await m1.areas.join(a1, [f"127.0.0.2:{m2.rpc_server.port}", "bad host",
                                           f"127.0.0.1:{dead}", 42])
            assert [(r["Address"], r["Joined"]) for r in got] == [
                (f"127.0.0.2:{m2.rpc_server.port}", True), ("bad host", False),
                (f"127.0.0.1:{dead}", False), ("42", False)]
            assert got[0]["Error"] == "" and "invalid address" in got[1]["Error"]
            assert got[2]["Error"].startswith(f'failed to connect to "127.0.0.1:{dead}"')
            want = {"s1.dc1": "alive", "s2.dc1": "alive", "s3.dc2": "alive"}
            await until("everyone sees everyone",
                        lambda: statuses(m1, a1) == statuses(m2, a1) == statuses(m3, a2) == want)
            row = next(m for m in m3.areas.members(a2) if m["Name"] == "s1.dc1")
            assert set(row) == {"ID", "Name", "Addr", "Port", "Datacenter", "Role", "Build",
                                "Protocol", "Status", "RTT"}
            assert (row["ID"], row["Datacenter"], row["Port"]) == \
                (m1.node_id, "dc1", m1.rpc_server.port)

            snapshot = tmp_path / "serf" / f"area-{a2}.snapshot"
            await until("s3's area snapshot lists its peers",
                        lambda: "alive: s1.dc1 " in snapshot.read_text())

            # UseTLS without TLS material: stays plaintext, with a warning; router told
            dc1.areas.put(a1, "dc2", use_tls=True)
            await until("TLS update seen", lambda: ("tls", a1, False) in m1.federation.calls)
            assert "has UseTLS but this server has no TLS CA" in caplog.text

            # deleting dc2's area: s3 leaves gracefully, dc1 sees it left
            dc2.areas.delete(a2)
            await until("dc2's pool stopped", lambda: not m3.areas.pools)
            assert m3.federation.calls[-1] == ("remove", a2)
            await until("s3 seen left", lambda: statuses(m1, a1).get("s3.dc2") == "left")
            assert statuses(m2, a1)["s3.dc2"] in ("alive", "leaving", "left")   # spreading
            with pytest.raises(UnknownArea):
                m3.areas.members(a2)
            await until("the deleted area's snapshot removed", lambda: not snapshot.exists())
        finally:
            for ag in agents:
                await ag.areas.stop()
                await ag.rpc_server.stop()
    run(main, timeout=3 * DEADLINE)


@pytest.mark.slow
def test_manager_flips_tls_live(pki):
    async def main():
        relaxed = {k: replace(v, verify_incoming=False) for k, v in pki.items()}
        dc1, dc2 = FakeStore(), FakeStore()
        m1 = await server_agent("s1", "dc1", "127.0.0.1", dc1, relaxed["a"])
        m3 = await server_agent("s3", "dc2", "127.0.0.1", dc2, relaxed["c"])
        try:
            a1, a2 = str(uuid.uuid4()), str(uuid.uuid4())
            dc1.areas.put(a1, "dc2")
            dc2.areas.put(a2, "dc1")
            await until("pools up", lambda: a1 in m1.areas.pools and a2 in m3.areas.pools)
            got = await m1.areas.join(a1, [f"127.0.0.1:{m3.rpc_server.port}"])
            assert got[0]["Joined"], got
            want = {"s1.dc1": "alive", "s3.dc2": "alive"}
            await until("joined in plaintext", lambda: statuses(m1, a1) == statuses(m3, a2) == want)
            tls_in = lambda ag: [c.tls for c in ag.areas.handler._conns]   # noqa: E731
            assert not any(tls_in(m1))
            dc1.areas.put(a1, "dc2", use_tls=True)
            dc2.areas.put(a2, "dc1", use_tls=True)
            await until("TLS flipped on both sides",
                        lambda: m1.areas.pools[a1].use_tls and m3.areas.pools[a2].use_tls)
            assert ("tls", a1, True) in m1.federation.calls
            await until("packets now arrive inside TLS",
                        lambda: any(tls_in(m1)) and any(tls_in(m3)))
            await asyncio.sleep(3 * FAST.probe_interval)
            assert statuses(m1, a1) == statuses(m3, a2) == want
        finally:
            for ag in (m1, m3):
                await ag.areas.stop()
                await ag.rpc_server.stop()
    run(main, timeout=3 * DEADLINE)


def test_an_area_in_the_table_whose_pool_is_not_up_yet():
    async def main():
        store = FakeStore()
        m1 = await server_agent("s1", "dc1", "127.0.0.1", store)
        try:
            store.areas.put("a1", "dc2", notify=False)         # applied, not reconciled yet
            with pytest.raises(UnknownArea, match='area "a1" is not running on this server yet'):
                m1.areas.members("a1")
            got = await m1.areas.join("a1", [""])               # starts the pool first
            assert got == [{"Address": "", "Joined": False,
                            "Error": 'invalid address "": empty address'}]
            assert [m["Name"] for m in m1.areas.members("a1")] == ["s1.dc1"]
        finally:
            await m1.areas.stop()
            await m1.rpc_server.stop()
    run(main)


def test_manager_needs_a_server():
    async def main():
        agent = SimpleNamespace(config=AgentConfig(), node_id="x", rpc_server=None,
                                consensus=None, federation=None)
        with pytest.raises(Exception, match="servers only"):
            await AreaManager(agent).start()
    run(main)

"""Network areas: the store's "areas" table (pure, deterministic) and the `Operator.Area*`
RPC layer on a single-server fake consensus with a fake area manager."""
from __future__ import annotations

import random
from types import SimpleNamespace

import msgpack
import pytest

from agent.rpc.operator_area import AreaError, parse_area_address, register
from agent.rpc.registry import CallContext, Registry
from agent.state.areas import AREA_REQUEST, area_command
from agent.state.store import CommandError, Store
from tests.aio import run

A1 = "11111111-1111-1111-1111-111111111111"
A2 = "22222222-2222-2222-2222-222222222222"


def _create(s: Store, index: int, area_id: str, peer: str, dc: str = "dc1", **kw) -> object:
    return s.apply(index, area_command("create", {"ID": area_id, "PeerDatacenter": peer, **kw}, dc))


def _snapshot_areas(s: Store) -> list:
    return s.areas.list()[1]


# ---------------------------------------------------------------------------- store


def test_create_list_get_by_peer():
    s = Store()
    assert s.indexes["areas"] == 0
    assert _create(s, 5, A2, "dc3") == A2
    assert _create(s, 7, A1, "dc2", RetryJoin=["10.0.2.10", "10.0.2.11:8300"], UseTLS=True) == A1
    index, found = s.areas.list()
    assert index == 7 and s.max_index("areas") == 7
    assert [a["ID"] for a in found] == [A1, A2]                      # sorted by ID
    assert found[0] == {"ID": A1, "PeerDatacenter": "dc2", "RetryJoin": ["10.0.2.10", "10.0.2.11:8300"],
                        "UseTLS": True, "CreateIndex": 7, "ModifyIndex": 7}
    assert found[1] == {"ID": A2, "PeerDatacenter": "dc3", "RetryJoin": None, "UseTLS": False,
                        "CreateIndex": 5, "ModifyIndex": 5}
    assert s.areas.get(A2) == found[1] and s.areas.get("nope") is None
    assert s.areas.by_peer("dc2")["ID"] == A1 and s.areas.by_peer("dc9") is None
    assert s.drain_changed() >= {"areas"}
    # reads hand out copies
    s.areas.get(A1)["RetryJoin"].append("x")
    assert s.areas.get(A1)["RetryJoin"] == ["10.0.2.10", "10.0.2.11:8300"]


def test_update_changes_use_tls_and_retry_join_only():
    s = Store()
    _create(s, 3, A1, "dc2", RetryJoin=["10.0.0.1"])
    assert s.apply(4, area_command("update", {"ID": A1, "UseTLS": True})) == A1
    a = s.areas.get(A1)
    assert (a["UseTLS"], a["RetryJoin"], a["CreateIndex"], a["ModifyIndex"]) == (True, ["10.0.0.1"], 3, 4)
    # null / absent fields stay; the same PeerDatacenter (a Go client sends the whole Area) is fine
    assert s.apply(6, area_command("update", {"ID": A1, "PeerDatacenter": "dc2", "RetryJoin": ["b"],
                                              "UseTLS": None})) == A1
    a = s.areas.get(A1)
    assert (a["UseTLS"], a["RetryJoin"], a["ModifyIndex"]) == (True, ["b"], 6)
    assert s.indexes["areas"] == 6


def test_delete():
    s = Store()
    _create(s, 3, A1, "dc2")
    assert s.apply(4, area_command("delete", {"ID": A1})) == A1
    assert s.areas.get(A1) is None and s.areas.list() == (4, [])
    # the peer is free again
    assert _create(s, 5, A2, "dc2") == A2


@pytest.mark.parametrize("area,dc,msg", [
    ({"ID": A2, "PeerDatacenter": ""}, "dc1", "Must provide a PeerDatacenter"),
    ({"ID": A2}, "dc1", "Must provide a PeerDatacenter"),
    ({"ID": A2, "PeerDatacenter": "dc1"}, "dc1",
     'Cannot create an area with the local datacenter "dc1" as its peer'),
    ({"ID": A2, "PeerDatacenter": "dc2"}, "dc1",
     f'An area for peer datacenter "dc2" already exists (ID "{A1}")'),
    ({"ID": A1, "PeerDatacenter": "dc7"}, "dc1", f'area "{A1}" already exists'),
    ({"ID": "", "PeerDatacenter": "dc7"}, "dc1", "Missing area ID"),
    ({"ID": A2, "PeerDatacenter": 5}, "dc1", "PeerDatacenter must be a string"),
    ({"ID": A2, "PeerDatacenter": "dc7", "RetryJoin": "10.0.0.1"}, "dc1",
     "RetryJoin must be a list of addresses (strings)"),
    ({"ID": A2, "PeerDatacenter": "dc7", "RetryJoin": [""]}, "dc1",
     "RetryJoin must not contain empty addresses"),
    ({"ID": A2, "PeerDatacenter": "dc7", "UseTLS": "yes"}, "dc1", "UseTLS must be a boolean"),
])
def test_bad_create_changes_nothing(area, dc, msg):
    s = Store()
    _create(s, 3, A1, "dc2")
    before = (_snapshot_areas(s), dict(s.indexes))
    s.drain_changed()
    got = s.apply(9, area_command("create", area, dc))
    assert isinstance(got, CommandError) and str(got) == msg
    assert (_snapshot_areas(s), dict(s.indexes)) == before and not s.drain_changed()


@pytest.mark.parametrize("op,area,msg", [
    ("update", {"ID": A2, "UseTLS": True}, f'unknown area "{A2}"'),
    ("update", {"ID": A1, "PeerDatacenter": "dc3"},
     f'Cannot change the PeerDatacenter of area "{A1}" (it is "dc2"); delete it and create a new one'),
    ("update", {"ID": A1, "UseTLS": 1}, "UseTLS must be a boolean"),
    ("update", {"ID": A1, "RetryJoin": [1]}, "RetryJoin must be a list of addresses (strings)"),
    ("delete", {"ID": A2}, f'unknown area "{A2}"'),
    ("delete", {}, "Missing area ID"),
])
def test_bad_update_and_delete_change_nothing(op, area, msg):
    s = Store()
    _create(s, 3, A1, "dc2")
    before = (_snapshot_areas(s), dict(s.indexes))
    got = s.apply(9, area_command(op, area))
    assert isinstance(got, CommandError) and str(got) == msg
    assert (_snapshot_areas(s), dict(s.indexes)) == before


def test_malformed_commands_are_refused():
    s = Store()
    for body in ({"Op": "create"}, {"Op": "explode", "Area": {"ID": A1}}, ["create"]):
        got = s.apply(2, bytes((AREA_REQUEST,)) + msgpack.packb(body))
        assert isinstance(got, CommandError)
    with pytest.raises(CommandError):
        area_command("explode", {})
    assert s.areas.list() == (0, [])


def test_snapshot_restore_and_replay_are_deterministic():
    cmds = [area_command("create", {"ID": A1, "PeerDatacenter": "dc2", "RetryJoin": ["a:1"]}, "dc1"),
            area_command("create", {"ID": A2, "PeerDatacenter": "dc3", "UseTLS": True}, "dc1"),
            area_command("create", {"ID": "x", "PeerDatacenter": "dc2"}, "dc1"),   # refused
            area_command("update", {"ID": A1, "UseTLS": True}),
            area_command("delete", {"ID": A2})]
    a, b = Store(), Store()
    for i, c in enumerate(cmds, start=1):
        ra, rb = a.apply(i, c), b.apply(i, c)
        assert type(ra) is type(rb) and str(ra) == str(rb)
    assert a.areas.list() == b.areas.list() == (5, [{
        "ID": A1, "PeerDatacenter": "dc2", "RetryJoin": ["a:1"], "UseTLS": True,
        "CreateIndex": 1, "ModifyIndex": 4}])
    c = Store()
    c.restore(a.snapshot())
    assert c.areas.list() == a.areas.list()
    assert "areas" in c.drain_changed()
    # the restored table keeps enforcing its rules
    assert isinstance(_create(c, 6, A2, "dc2"), CommandError)


# ---------------------------------------------------------------------------- RPC layer


class FakeNode:
    def __init__(self, store: Store) -> None:
        self.store, self.index = store, 0
        self.is_leader, self.leader_id = True, "me"

    async def apply(self, data: bytes):
        self.index += 1
        result = self.store.apply(self.index, data)
        if isinstance(result, Exception):
            raise result
        return self.index, result

    async def consistent_read(self) -> int:
        return self.index

    def last_contact_ms(self) -> int:
        return 0


class FakeConsensus:
    def __init__(self) -> None:
        self.store = Store()
        self.node = FakeNode(self.store)
        self.rng = random.Random(1)
        self.proposed = 0

    async def route(self, method, body, local):
        return await local()

    def not_leader(self) -> bool:
        return False


class FakeManager:
    """agent.areas as helper A's AreaManager answers (contract #2)."""

    def __init__(self) -> None:
        self.joins: list = []

    async def join(self, area_id: str, addrs: list[str]) -> list[dict]:
        self.joins.append((area_id, list(addrs)))
        return [{"Address": a, "Joined": a.startswith("127."), "Error":
                 "" if a.startswith("127.") else f'failed to connect to "{a}:8300"'} for a in addrs]

    def members(self, area_id: str) -> list[dict]:
        return [{"ID": "n1", "Name": "srv.dc1", "Addr": "127.0.0.1", "Port": 8300,
                 "Datacenter": "dc1", "Role": "server", "Build": "0.8.0", "Protocol": 2,
                 "Status": "alive", "RTT": 0}]


def _server(manager=None):
    cons = FakeConsensus()
    agent = SimpleNamespace(consensus=cons, areas=manager, config=SimpleNamespace(
        datacenter="dc1", ports=SimpleNamespace(server=8300)))
    reg = Registry()
    register(reg, agent)
    ctx = CallContext(("local", 0), False)

    async def call(method: str, body: dict):
        return await reg.methods[method][0](body, ctx)
    return cons, call


def test_rpc_lifecycle():
    cons, call = _server(FakeManager())

    async def main():
        area_id = await call("Operator.AreaCreate", {"Datacenter": "dc1", "Area": {
            "PeerDatacenter": "dc2", "RetryJoin": ["10.0.0.1", "srv.example:8300"]}})
        assert len(area_id) == 36 and cons.store.areas.get(area_id)["PeerDatacenter"] == "dc2"
        got = await call("Operator.AreaList", {"Datacenter": "dc1"})
        assert [a["ID"] for a in got["Areas"]] == [area_id] and got["Index"] == 1
        assert got["KnownLeader"] is True
        got = await call("Operator.AreaGet", {"Datacenter": "dc1", "AreaID": area_id})
        assert got["Areas"][0]["RetryJoin"] == ["10.0.0.1", "srv.example:8300"]
        assert (await call("Operator.AreaGet", {"AreaID": "nope"}))["Areas"] == []
        assert await call("Operator.AreaUpdate", {"Area": {"ID": area_id, "UseTLS": True}}) == area_id
        assert cons.store.areas.get(area_id)["UseTLS"] is True
        assert await call("Operator.AreaDelete", {"AreaID": area_id}) == area_id
        assert cons.store.areas.list() == (3, [])
    run(main)


@pytest.mark.parametrize("method,body,msg", [
    ("Operator.AreaCreate", {"Area": {}}, "Must provide a PeerDatacenter"),
    ("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc1"}},
     'Cannot create an area with the local datacenter "dc1" as its peer'),
    ("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc2"}}, "An area for peer datacenter"),
    ("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc3", "ID": A2}}, "Must not provide an ID"),
    ("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc3", "RetryJoin": ["bad host"]}},
     'invalid address "bad host": not an IP address or host name'),
    ("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc3", "RetryJoin": ["10.0.0.1:port"]}},
     'invalid address "10.0.0.1:port": invalid port'),
    ("Operator.AreaCreate", {}, "Must provide an Area"),
    ("Operator.AreaUpdate", {"Area": {"ID": A2, "UseTLS": True}}, f'unknown area "{A2}"'),
    ("Operator.AreaUpdate", {"Area": {"UseTLS": True}}, "Must provide an area ID"),
    ("Operator.AreaDelete", {"AreaID": A2}, f'unknown area "{A2}"'),
    ("Operator.AreaJoin", {"AreaID": A2, "Addresses": ["127.0.0.1"]}, f'unknown area "{A2}"'),
    ("Operator.AreaListMembers", {"AreaID": A2}, f'unknown area "{A2}"'),
])
def test_rpc_bad_input_is_refused_before_proposing(method, body, msg):
    cons, call = _server(FakeManager())

    async def main():
        await call("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc2"}})
        before = (cons.node.index, cons.store.areas.list())
        with pytest.raises(Exception) as info:
            await call(method, body)
        assert str(info.value).startswith(msg), str(info.value)
        assert (cons.node.index, cons.store.areas.list()) == before     # nothing was proposed
    run(main)


def test_rpc_join_hands_every_address_to_the_pools_and_returns_their_results():
    """The area's pool refuses unparsable addresses itself, one result per address
    (tests/integration/test_area_api.py checks the wording with the real manager)."""
    mgr = FakeManager()
    cons, call = _server(mgr)

    async def main():
        area_id = await call("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc2"}})
        addrs = ["127.0.0.2", "10.9.9.9:8300", "[::1]:8300"]
        got = await call("Operator.AreaJoin", {"AreaID": area_id, "Addresses": addrs})
        assert [(r["Address"], r["Joined"]) for r in got] == [
            ("127.0.0.2", True), ("10.9.9.9:8300", False), ("[::1]:8300", False)]
        assert mgr.joins == [(area_id, addrs)]
        with pytest.raises(AreaError, match="Addresses must be a list"):
            await call("Operator.AreaJoin", {"AreaID": area_id, "Addresses": "127.0.0.2"})
        members = await call("Operator.AreaListMembers", {"AreaID": area_id})
        assert members[0]["Name"] == "srv.dc1"
    run(main)


def test_rpc_join_without_area_manager_says_so():
    cons, call = _server(None)

    async def main():
        area_id = await call("Operator.AreaCreate", {"Area": {"PeerDatacenter": "dc2"}})
        for method, body in (("Operator.AreaJoin", {"AreaID": area_id, "Addresses": ["127.0.0.1"]}),
                             ("Operator.AreaListMembers", {"AreaID": area_id})):
            with pytest.raises(AreaError, match="network areas are not running on this server"):
                await call(method, body)
    run(main)


@pytest.mark.parametrize("text,want", [
    ("10.0.0.1", ("10.0.0.1", 8300)), ("10.0.0.1:9000", ("10.0.0.1", 9000)),
    ("srv-1.example", ("srv-1.example", 8300)), ("[::1]:7", ("::1", 7)),
])
def test_parse_area_address(text, want):
    assert parse_area_address(text, 8300) == want


@pytest.mark.parametrize("text", ["", "  ", "a b", "10.0.0.1:0", "h:p", 5])
def test_parse_area_address_refuses(text):
    with pytest.raises(AreaError, match="invalid address"):
        parse_area_address(text, 8300)

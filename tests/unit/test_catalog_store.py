"""The catalog tables (Consul's state/catalog.go semantics): registration, defaults, indexes,
deregistration cascades, check listeners, read queries, snapshot/restore, and the leader's
member reconciliation decisions."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from agent.rpc.catalog import BadRequest, member_commands, register_request
from agent.serf.core import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT
from agent.state.catalog import Catalog, deregister_command, register_command
from agent.state.store import CommandError, Store


def reg(**kw) -> bytes:
    body = {"Datacenter": "dc1", "Node": "n1", "Address": "10.0.0.1"}
    body.update(kw)
    return register_command(body)


def dereg(node: str, sid: str = "", cid: str = "") -> bytes:
    return deregister_command({"Node": node, "ServiceID": sid, "CheckID": cid})


@pytest.fixture
def cat():
    s = Store()
    c = getattr(s, "catalog", None) or Catalog(s)
    events: list = []
    s.check_listeners.append(lambda *a: events.append(a))
    c.events = events
    return c


def test_register_node_service_check_with_defaults(cat):
    s = cat.store
    assert s.apply(5, reg(NodeMeta={"rack": "r1"},
                          Service={"Service": "web", "Tags": ["v1"], "Port": 80},
                          Checks=[{"Name": "web-up", "ServiceID": "web"}],
                          Check={"CheckID": "mem", "Status": "passing"})) is True
    n = cat.get_node("N1")                              # names are case-insensitive
    assert (n["Node"], n["Address"], n["Meta"], n["CreateIndex"]) == ("n1", "10.0.0.1",
                                                                      {"rack": "r1"}, 5)
    _, ns = cat.node_services("n1")
    web = ns["Services"]["web"]
    assert web["ID"] == "web" and web["Weights"] == {"Passing": 1, "Warning": 1}
    _, checks = cat.node_checks("n1")
    by_id = {c["CheckID"]: c for c in checks}
    assert by_id["web-up"]["Status"] == "critical"     # Consul's default status
    assert by_id["web-up"]["ServiceName"] == "web" and by_id["web-up"]["ServiceTags"] == ["v1"]
    assert by_id["mem"]["Status"] == "passing" and by_id["mem"]["ServiceID"] == ""
    assert s.indexes["nodes"] == s.indexes["services"] == s.indexes["checks"] == 5


def test_unchanged_registration_writes_nothing(cat):
    s = cat.store
    s.apply(1, reg(Service={"Service": "web"}, Check={"CheckID": "c", "Status": "passing"}))
    s.apply(2, reg(Service={"Service": "web"}, Check={"CheckID": "c", "Status": "passing"}))
    assert s.indexes == {**s.indexes, "nodes": 1, "services": 1, "checks": 1}
    s.apply(3, reg(Check={"CheckID": "c", "Status": "warning"}))
    _, checks = cat.node_checks("n1")
    assert (checks[0]["CreateIndex"], checks[0]["ModifyIndex"]) == (1, 3)
    assert s.indexes["checks"] == 3 and s.indexes["nodes"] == 1


def test_check_needs_its_service_and_nothing_half_applies(cat):
    s = cat.store
    r = s.apply(1, reg(Service={"Service": "web"},
                       Checks=[{"CheckID": "x", "ServiceID": "nope"}]))
    assert isinstance(r, CommandError) and "Missing service registration" in str(r)
    assert cat.get_node("n1") is None and s.indexes["nodes"] == 0
    r = s.apply(2, reg(Node="n2", Checks=[{"CheckID": "x", "Node": "ghost"}]))
    assert "Missing node registration" in str(r)


def test_node_id_moves_to_a_new_name_and_the_old_node_goes(cat):
    """Consul's ensureNodeTxn: a known ID under a new name renames the node."""
    s = cat.store
    nid = "cda916bc-a357-4a19-b886-59419fcee50c"
    s.apply(1, reg(ID=nid, Service={"Service": "web"}))
    assert s.apply(2, reg(Node="other", ID=nid.upper())) is True
    assert cat.get_node("n1") is None and cat.get_node("other")["ID"] == nid.upper()


def serf(status: str) -> dict:
    return {"CheckID": "serfHealth", "Name": "Serf Health Status", "Status": status}


def test_a_name_is_reserved_by_a_live_node_with_another_id(cat):
    """Consul's ensureNoNodeWithSimilarNameTxn, for a new ID and for a rename."""
    s = cat.store
    a, b = "cda916bc-a357-4a19-b886-59419fcee50c", "0e1f3c2a-9d8b-4c7e-a6f5-1b2c3d4e5f60"
    s.apply(1, reg(ID=a, Check=serf("passing")))
    r = s.apply(2, reg(Node="N1", ID=b))                  # case-insensitive name clash
    assert isinstance(r, CommandError)
    assert str(r) == (f"failed inserting node: Node name N1 is reserved by node {a} with "
                      f"name n1 (10.0.0.1)")
    s.apply(3, reg(Node="m1", ID=b))
    r = s.apply(4, reg(Node="n1", ID=b))                  # rename of b onto a's live name
    assert str(r).startswith(f'Error while renaming Node ID: "{b}" (10.0.0.1): Node name n1 '
                             f"is reserved by node {a}")
    assert cat.get_node("m1")["ID"] == b and cat.get_node("n1")["ID"] == a   # nothing changed
    s.apply(5, reg(ID=a, Check=serf("critical")))         # a is failing: its name is free
    assert s.apply(6, reg(Node="n1", ID=b)) is True
    assert cat.get_node("n1")["ID"] == b and cat.get_node("m1") is None


def test_skip_node_update_keeps_the_node(cat):
    s = cat.store
    s.apply(1, reg(NodeMeta={"a": "1"}))
    s.apply(2, reg(Address="", SkipNodeUpdate=True, Check={"CheckID": "c"}))
    n = cat.get_node("n1")
    assert (n["Address"], n["Meta"], n["ModifyIndex"]) == ("10.0.0.1", {"a": "1"}, 1)


def test_deregister_service_check_node_cascade_and_listeners(cat):
    s = cat.store
    s.apply(1, reg(Service={"Service": "web", "ID": "w1"},
                   Checks=[{"CheckID": "svc", "ServiceID": "w1", "Status": "passing"},
                           {"CheckID": "node", "Status": "passing"}]))
    assert ("n1", "svc", "passing") in [e[1:] for e in cat.events]
    s.apply(2, dereg("n1", sid="w1"))
    _, checks = cat.node_checks("n1")
    assert [c["CheckID"] for c in checks] == ["node"]
    assert (2, "n1", "svc", "") in cat.events
    s.apply(3, reg(Check={"CheckID": "node", "Status": "critical"}))
    assert (3, "n1", "node", "critical") in cat.events
    s.apply(4, dereg("n1", cid="node"))
    assert cat.node_checks("n1")[1] == []
    s.apply(5, reg(Service={"Service": "db"}, Check={"CheckID": "x"}))
    s.apply(6, dereg("N1"))
    assert cat.get_node("n1") is None and cat.list_services()[1] == {}
    assert (6, "n1", "", "") in cat.events                 # node gone: its sessions go
    assert s.indexes["nodes"] == s.indexes["services"] == s.indexes["checks"] == 6
    s.apply(7, dereg("n1"))                                  # unknown node: no-op
    assert s.indexes["nodes"] == 6


def test_reads_filters_and_order(cat):
    s = cat.store
    s.apply(1, reg(Node="b", NodeMeta={"env": "prod"},
                   Service={"Service": "web", "Tags": ["Primary", "v1"]},
                   Check={"CheckID": "ok", "Status": "passing"}))
    s.apply(2, reg(Node="a", NodeMeta={"env": "dev"}, Service={"Service": "web", "Tags": ["v2"]},
                   Checks=[{"CheckID": "bad", "ServiceID": "web", "Status": "critical"}]))
    s.apply(3, reg(Node="c", Service={"Service": "db"}))
    assert [n["Node"] for n in cat.list_nodes()[1]] == ["a", "b", "c"]
    assert [n["Node"] for n in cat.list_nodes({"env": "prod"})[1]] == ["b"]
    assert cat.list_services()[1] == {"web": ["Primary", "v1", "v2"], "db": []}
    assert cat.list_services({"env": "dev"})[1] == {"web": ["v2"]}
    assert [x["Node"] for x in cat.service_nodes("WEB")[1]] == ["a", "b"]
    assert [x["Node"] for x in cat.service_nodes("web", ["primary"])[1]] == ["b"]
    assert cat.service_nodes("web", ["primary", "v2"])[1] == []
    assert [x["Node"] for x in cat.service_nodes("web", node_meta={"env": "dev"})[1]] == ["a"]
    _, csn = cat.check_service_nodes("web")
    assert [(x["Node"]["Node"], [c["CheckID"] for c in x["Checks"]]) for x in csn] == \
        [("a", ["bad"]), ("b", ["ok"])]
    assert [c["CheckID"] for c in cat.checks_in_state("critical")[1]] == ["bad"]
    assert [c["CheckID"] for c in cat.checks_in_state("any")[1]] == ["bad", "ok"]
    assert cat.checks_in_state("bogus")[1] == []
    assert [c["CheckID"] for c in cat.service_checks("web")[1]] == ["bad"]
    assert cat.node_services("nope") == (cat.store.max_index("nodes", "services"), None)
    # results are copies
    cat.list_nodes()[1][0]["Node"] = "changed"
    assert cat.list_nodes()[1][0]["Node"] == "a"


def test_snapshot_restore_round_trip(cat):
    s = cat.store
    s.apply(1, reg(Service={"Service": "web"}, Check={"CheckID": "c", "Status": "passing"}))
    t = Store()
    tc = getattr(t, "catalog", None) or Catalog(t)
    t.restore(s.snapshot())
    assert tc.nodes == cat.nodes and tc.services == cat.services and tc.checks == cat.checks
    assert t.indexes["checks"] == 1


def test_register_request_validation():
    with pytest.raises(BadRequest, match="Must provide node"):
        register_request({"Address": "1.2.3.4"}, "dc1")
    with pytest.raises(BadRequest, match="Must provide address if SkipNodeUpdate is not set"):
        register_request({"Node": "n"}, "dc1")
    with pytest.raises(BadRequest, match="Bad node ID: uuid string is wrong length"):
        register_request({"Node": "n", "Address": "a", "ID": "x"}, "dc1")
    with pytest.raises(BadRequest, match=r"Must provide service name \(Service.Service\)"):
        register_request({"Node": "n", "Address": "a", "Service": {"ID": "x"}}, "dc1")
    with pytest.raises(BadRequest, match="Invalid service address"):
        register_request({"Node": "n", "Address": "a",
                          "Service": {"Service": "x", "Address": "0.0.0.0"}}, "dc1")
    req = register_request({"Node": "n", "Address": "a", "Check": {"Name": "up"},
                            "Service": {"Service": "web"}}, "dc1")
    assert req["Datacenter"] == "dc1" and req["Service"]["ID"] == "web"
    assert req["Checks"][0]["CheckID"] == "up" and req["Checks"][0]["Node"] == "n"


@dataclass
class M:
    name: str
    addr: str
    status: int
    tags: dict = field(default_factory=dict)
    pmin: int = 2
    pmax: int = 5
    pcur: int = 2


def _server(name: str, status: int = STATUS_ALIVE) -> M:
    return M(name, "127.0.0.1", status, {"role": "consul", "dc": "dc1", "port": "8300",
                                         "id": "cda916bc-a357-4a19-b886-59419fcee50c",
                                         "build": "1.22.0:isthmus", "raft_vsn": "3"})


def _apply_all(cat, cmds, start: int) -> int:
    for i, cmd in enumerate(cmds):
        assert cat.store.apply(start + i, cmd) is True
    return start + len(cmds)


def test_member_reconciliation(cat):
    client = M("c1", "127.0.0.2", STATUS_ALIVE, {"role": "node", "dc": "dc1", "id": ""})
    other_dc = M("x", "127.0.0.3", STATUS_ALIVE, {"role": "node", "dc": "dc2"})
    members = [_server("s1"), client, other_dc]
    idx = _apply_all(cat, member_commands(members, cat, "dc1", "s1"), 1)
    assert [n["Node"] for n in cat.list_nodes()[1]] == ["c1", "s1"]
    _, ns = cat.node_services("s1")
    consul = ns["Services"]["consul"]
    assert consul["Port"] == 8300 and consul["Meta"]["version"] == "1.22.0"
    assert consul["Meta"]["raft_version"] == "3" and consul["Meta"]["serf_protocol_current"] == "2"
    chk = cat.node_checks("c1")[1][0]
    assert (chk["CheckID"], chk["Name"], chk["Status"], chk["Output"]) == \
        ("serfHealth", "Serf Health Status", "passing", "Agent alive and reachable")
    assert member_commands(members, cat, "dc1", "s1") == []           # in line: nothing to do
    client.status = STATUS_FAILED
    idx = _apply_all(cat, member_commands(members, cat, "dc1", "s1"), idx)
    chk = cat.node_checks("c1")[1][0]
    assert (chk["Status"], chk["Output"]) == ("critical", "Agent not live or unreachable")
    client.status = STATUS_LEFT
    idx = _apply_all(cat, member_commands(members, cat, "dc1", "s1"), idx)
    assert cat.get_node("c1") is None
    # reaped: a serfHealth node that is no longer a member goes; the leader itself stays
    cat.store.apply(idx, reg(Node="gone", Check={"CheckID": "serfHealth", "Status": "passing"}))
    cmds = member_commands([_server("s1", STATUS_LEFT)], cat, "dc1", "s1")
    _apply_all(cat, cmds, idx + 1)
    assert [n["Node"] for n in cat.list_nodes()[1]] == ["s1"]

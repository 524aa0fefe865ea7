"""Catalog operations (Node, Service, Check) in transactions (Consul's state/txn.go
txnNode/txnService/txnCheck): verbs, Consul's messages, all-or-nothing with KV, and the
reach of a catalog write (sessions, their keys, coordinates) undone on failure."""
from __future__ import annotations

import msgpack

from agent.state.catalog import register_command
from agent.state.sessions import session_command
from agent.state.store import Store, kv_command
from agent.state.txn import txn_command


def node(verb: str, name: str, **kw) -> dict:
    return {"Node": {"Verb": verb, "Node": {"Node": name, "Address": "10.0.0.1", **kw}}}


def svc(verb: str, node_name: str, sid: str, **kw) -> dict:
    return {"Service": {"Verb": verb, "Node": node_name,
                        "Service": {"ID": sid, "Service": kw.pop("name", sid), **kw}}}


def chk(verb: str, node_name: str, cid: str, **kw) -> dict:
    return {"Check": {"Verb": verb, "Check": {"Node": node_name, "CheckID": cid, **kw}}}


def run(s: Store, index: int, *ops: dict) -> dict:
    return s.apply(index, txn_command(list(ops)))


def state(s: Store) -> dict:
    """Everything a snapshot holds but the last applied index (a failed transaction
    still consumed its Raft index)."""
    snap = msgpack.unpackb(s.snapshot())
    del snap["last_index"]
    return snap


def whats(out: dict) -> list:
    return [(e["OpIndex"], e["What"]) for e in out["Errors"]]


def test_set_get_node_service_check_in_one_transaction():
    s = Store()
    out = run(s, 5, node("set", "n1", Meta={"rack": "r1"}),
              svc("set", "n1", "web", Port=80, Tags=["v1"]),
              chk("set", "n1", "web-up", Name="web up", ServiceID="web", Status="passing"),
              {"KV": {"Verb": "set", "Key": "k", "Value": b"v"}})
    assert out["Errors"] is None
    n, sv, c, kv = out["Results"]
    assert n["Node"]["Node"] == "n1" and n["Node"]["Meta"] == {"rack": "r1"}
    assert (n["Node"]["CreateIndex"], n["Node"]["ModifyIndex"]) == (5, 5)
    assert (sv["Service"]["ID"], sv["Service"]["Port"], sv["Service"]["ModifyIndex"]) == ("web", 80, 5)
    assert (c["Check"]["CheckID"], c["Check"]["ServiceName"], c["Check"]["Status"]) == \
        ("web-up", "web", "passing")
    assert kv["KV"]["Key"] == "k"
    assert s.catalog.node_services("n1")[1]["Services"]["web"]["Tags"] == ["v1"]
    assert s.indexes["nodes"] == s.indexes["services"] == s.indexes["checks"] == 5
    # gets (case-insensitive, as the catalog's indexes)
    out = s.txn.run(6, [node("get", "N1"), svc("get", "n1", "WEB"), chk("get", "n1", "web-up")],
                    read_only=True)
    assert [list(r) for r in out["Results"]] == [["Node"], ["Service"], ["Check"]]
    assert out["Results"][1]["Service"]["Service"] == "web"
    # a get by node ID
    run(s, 7, node("set", "n2", ID="11111111-2222-3333-4444-555555555555"))
    out = s.txn.run(8, [{"Node": {"Verb": "get", "Node": {
        "ID": "11111111-2222-3333-4444-555555555555"}}}], read_only=True)
    assert out["Results"][0]["Node"]["Node"] == "n2"


def test_missing_rows_and_unknown_verbs_use_consuls_messages():
    s = Store()
    out = s.txn.run(1, [node("get", "ghost"), svc("get", "ghost", "web"),
                        chk("get", "ghost", "c1")], read_only=True)
    assert whats(out) == [(0, 'node "ghost" doesn\'t exist'),
                          (1, 'service "web" on node "ghost" doesn\'t exist'),
                          (2, 'check "c1" on node "ghost" doesn\'t exist')]
    out = run(s, 2, svc("set", "ghost", "web"), chk("set", "ghost", "c1"),
              node("explode", "n"), svc("nope", "n", "s"), chk("zap", "n", "c"))
    assert whats(out) == [(0, "Missing node registration"), (1, "Missing node registration"),
                          (2, 'unknown Node verb "explode"'), (3, 'unknown Service verb "nope"'),
                          (4, 'unknown Check verb "zap"')]
    run(s, 3, node("set", "n1"))
    out = run(s, 4, chk("set", "n1", "c1", ServiceID="nosuch"))
    assert whats(out) == [(0, "Missing service registration")]
    assert s.catalog.node_checks("n1")[1] == []


def test_cas_and_delete_cas():
    s = Store()
    run(s, 2, node("set", "n1"), svc("set", "n1", "web"), chk("set", "n1", "c1"))
    # ModifyIndex 0 = only if absent
    out = run(s, 3, node("cas", "n1"), svc("cas", "n1", "web"), chk("cas", "n1", "c1"))
    assert whats(out) == [(0, 'failed to set node "n1", index is stale'),
                          (1, 'failed to set service "web" on node "n1", index is stale'),
                          (2, 'failed to set check "c1" on node "n1", index is stale')]
    out = run(s, 4, node("cas", "n1", ModifyIndex=9, Meta={"a": "b"}),
              svc("cas", "n1", "new", ModifyIndex=3))
    assert whats(out) == [(0, 'failed to set node "n1", index is stale'),
                          (1, 'failed to set service "new" on node "n1", index is stale')]
    out = run(s, 5, node("cas", "n1", ModifyIndex=2, Meta={"a": "b"}),
              svc("cas", "n1", "web", ModifyIndex=2, Port=81),
              chk("cas", "n1", "c1", ModifyIndex=2, Status="passing"),
              svc("cas", "n1", "api"))
    assert out["Errors"] is None
    assert [r[k]["ModifyIndex"] for r, k in zip(out["Results"], ("Node", "Service", "Check", "Service"))] == [5] * 4
    out = run(s, 6, node("delete-cas", "n1", ModifyIndex=2), svc("delete-cas", "n1", "web", ModifyIndex=2),
              chk("delete-cas", "n1", "c1", ModifyIndex=2), svc("delete-cas", "n1", "gone", ModifyIndex=1))
    assert whats(out) == [(0, 'failed to delete node "n1", index is stale'),
                          (1, 'failed to delete service "web" on node "n1", index is stale'),
                          (2, 'failed to delete check "c1" on node "n1", index is stale'),
                          (3, 'failed to delete service "gone" on node "n1", index is stale')]
    out = run(s, 7, svc("delete-cas", "n1", "web", ModifyIndex=5),
              chk("delete-cas", "n1", "c1", ModifyIndex=5))
    assert out == {"Results": None, "Errors": None}
    assert list(s.catalog.node_services("n1")[1]["Services"]) == ["api"]
    assert s.catalog.node_checks("n1")[1] == []
    assert run(s, 8, node("delete-cas", "n1", ModifyIndex=5))["Errors"] is None
    assert s.catalog.get_node("n1") is None


def test_deletes_of_missing_rows_succeed_without_writing():
    s = Store()
    run(s, 2, node("set", "n1"))
    before = dict(s.indexes)
    out = run(s, 3, node("delete", "ghost"), svc("delete", "n1", "nope"), chk("delete", "n1", "nope"),
              svc("delete", "", "x"))
    assert out == {"Results": None, "Errors": None}
    assert s.indexes == before


def test_delete_node_cascades():
    s = Store()
    run(s, 2, node("set", "n1"), svc("set", "n1", "web"), chk("set", "n1", "c1", ServiceID="web"))
    assert run(s, 3, svc("delete", "n1", "web"))["Errors"] is None
    assert s.catalog.node_checks("n1")[1] == []          # the service's checks went with it
    run(s, 4, svc("set", "n1", "web"), chk("set", "n1", "c2"))
    assert run(s, 5, node("delete", "n1"))["Errors"] is None
    assert s.catalog.get_node("n1") is None and s.catalog.node_checks("n1")[1] == []


def test_any_failure_undoes_catalog_and_kv_changes():
    s = Store()
    run(s, 2, node("set", "n1"), svc("set", "n1", "web"))
    snap = state(s)
    s.drain_changed()
    out = run(s, 3, node("set", "n2"), svc("set", "n2", "db"), svc("delete", "n1", "web"),
              node("set", "n1", Meta={"x": "y"}), {"KV": {"Verb": "set", "Key": "k", "Value": b"1"}},
              {"KV": {"Verb": "get", "Key": "missing"}})
    assert whats(out) == [(5, 'key "missing" doesn\'t exist')]
    assert s.catalog.get_node("n2") is None
    assert "web" in s.catalog.node_services("n1")[1]["Services"]
    assert s.catalog.get_node("n1")["Meta"] is None and s.kv_get("k") is None
    assert state(s) == snap and s.drain_changed() == set()     # nothing to wake
    # ... and a failing KV op after a catalog write the other way round
    out = run(s, 4, {"KV": {"Verb": "cas", "Key": "k", "Index": 7, "Value": b""}}, node("delete", "n1"))
    assert whats(out) == [(0, 'failed to set key "k", index is stale')]
    assert s.catalog.get_node("n1") is not None and state(s) == snap


def test_session_invalidation_inside_a_failed_transaction_is_undone():
    s = Store()
    s.apply(1, register_command({"Node": "n1", "Address": "10.0.0.1",
                                 "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}))
    assert s.apply(2, session_command("create", {"ID": "s1", "Node": "n1",
                                                 "NodeChecks": ["serfHealth"]})) == "s1"
    assert s.apply(3, kv_command("lock", "lk", b"v", session="s1")) is True
    delays, destroyed = [], []
    s.sessions.lock_delay_listeners.append(lambda k, d: delays.append(k))
    s.sessions.destroy_listeners.append(destroyed.append)
    snap = state(s)
    # the check goes critical (invalidating s1, releasing lk), then an op fails
    out = run(s, 4, chk("set", "n1", "serfHealth", Status="critical"), node("get", "ghost"))
    assert whats(out) == [(1, 'node "ghost" doesn\'t exist')]
    assert s.sessions.get("s1") is not None and s.kv_get("lk").session == "s1"
    assert state(s) == snap and delays == [] and destroyed == []
    # the same change alone commits, and the drivers hear of it then
    out = run(s, 5, chk("set", "n1", "serfHealth", Status="critical"))
    assert out["Errors"] is None
    assert s.sessions.get("s1") is None and s.kv_get("lk").session == ""
    assert delays == ["lk"] and destroyed == ["s1"]
    # and the listeners are the drivers' again
    assert s.sessions.destroy_listeners[-1] == destroyed.append


def test_read_only_runs_refuse_catalog_writes():
    s = Store()
    out = s.txn.run(1, [node("set", "n1"), svc("delete", "n1", "x"), chk("cas", "n1", "c")],
                    read_only=True)
    assert whats(out) == [(0, "cannot set in a read-only transaction"),
                          (1, "cannot delete in a read-only transaction"),
                          (2, "cannot cas in a read-only transaction")]
    assert s.catalog.get_node("n1") is None


def test_malformed_operations_are_errors_not_crashes():
    s = Store()
    out = run(s, 1, {"Node": {"Verb": "set", "Node": "n1"}},
              {"Service": {"Verb": "set", "Node": 3, "Service": {}}},
              {"Check": {"Verb": "get", "Check": {"Node": "n", "CheckID": 5}}},
              {"Node": {"Verb": "cas", "Node": {"Node": "n", "ModifyIndex": -1}}},
              {"Node": []})
    assert [e["OpIndex"] for e in out["Errors"]] == [0, 1, 2, 3, 4]
    assert all("malformed" in e["What"] for e in out["Errors"])


def test_survives_snapshot_restore():
    s = Store()
    run(s, 2, node("set", "n1"), svc("set", "n1", "web"), chk("set", "n1", "c1", ServiceID="web"))
    t = Store()
    t.restore(s.snapshot())
    assert t.snapshot() == s.snapshot()
    assert t.txn.run(3, [chk("get", "n1", "c1")], read_only=True)["Results"][0]["Check"]["ServiceName"] == "web"


def test_a_failed_node_delete_keeps_the_nodes_coordinates():
    from agent.state.coordinates import batch_update_command
    s = Store()
    run(s, 1, node("set", "n1"))
    coord = {"Vec": [0.001] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}
    assert s.apply(2, batch_update_command([{"Node": "n1", "Coord": coord}])) is True
    assert len(s.coordinates.node("n1")[1]) == 1
    out = run(s, 3, node("delete", "n1"), node("get", "n1"))
    assert whats(out) == [(1, 'node "n1" doesn\'t exist')]     # gone within the transaction
    assert len(s.coordinates.node("n1")[1]) == 1 and s.catalog.get_node("n1") is not None
    assert run(s, 4, node("delete", "n1"))["Errors"] is None
    assert s.coordinates.node("n1")[1] == []

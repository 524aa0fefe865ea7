"""Sessions, KV locks and transactions in the state store (pure, deterministic)."""
from __future__ import annotations

from agent.state.sessions import session_command
from agent.state.store import CommandError, kv_command
from agent.state.store import Store as _Store
from agent.state.txn import txn_command


def _register(s: Store, index: int, node: str, checks: dict) -> None:
    from agent.state.catalog import register_command
    s.apply(index, register_command({
        "Node": node, "Address": "10.0.0.1",
        "Checks": [{"CheckID": c, "Name": c, "Status": st} for c, st in checks.items()]}))


def Store() -> _Store:                                    # noqa: N802 - a store with nodes
    """A store whose catalog has nodes n1, n2 and other (serfHealth and db passing); the
    catalog checks sessions' nodes and checks, so the tests need them."""
    s = _Store()
    for node in ("n1", "n2", "other"):
        _register(s, 0, node, {"serfHealth": "passing", "db": "passing"})
    return s


def _create(s: _Store, index: int, sid: str, **kw) -> object:
    body = {"ID": sid, "Node": kw.pop("node", "n1"), "NodeChecks": ["serfHealth"]}
    body.update(kw)
    return s.apply(index, session_command("create", body))


def test_create_get_list_node_and_destroy():
    s = Store()
    assert _create(s, 3, "s1", Name="web", TTL="10s") == "s1"
    assert _create(s, 4, "s2", node="N2") == "s2"
    sess = s.sessions.get("s1")
    assert (sess.name, sess.behavior, sess.lock_delay, sess.ttl) == ("web", "release", 15_000_000_000, "10s")
    assert sess.as_api()["NodeChecks"] == ["serfHealth"] and "Checks" not in sess.as_api()
    assert [x.id for x in s.sessions.list()] == ["s1", "s2"]
    assert [x.id for x in s.sessions.node_sessions("n2")] == ["s2"]      # case-insensitive
    assert s.indexes["sessions"] == 4
    assert s.apply(5, session_command("destroy", {"ID": "s1"})) is True
    assert s.sessions.get("s1") is None and s.indexes["sessions"] == 5
    # destroying a missing session is a no-op that succeeds (and leaves the index alone)
    assert s.apply(6, session_command("destroy", {"ID": "nope"})) is True
    assert s.indexes["sessions"] == 5


def test_create_errors_are_consuls():
    s = Store()
    assert str(_create(s, 1, "", Behavior="release")) == "Missing session ID"
    assert str(_create(s, 2, "x", Behavior="explode")) == "Invalid session behavior: explode"
    assert s.sessions.list() == [] and s.indexes["sessions"] == 0


def test_lock_acquire_release_semantics():
    s = Store()
    _create(s, 1, "a")
    _create(s, 2, "b")
    assert s.apply(3, kv_command("lock", "k", b"v1", session="a")) is True
    e = s.kv_get("k")
    assert (e.session, e.lock_index, e.value, e.create_index) == ("a", 1, b"v1", 3)
    assert s.apply(4, kv_command("lock", "k", b"v2", session="b")) is False   # held by a
    assert s.apply(5, kv_command("lock", "k", b"v3", session="a")) is True    # re-acquire
    assert (s.kv_get("k").lock_index, s.kv_get("k").value) == (1, b"v3")
    assert s.apply(6, kv_command("unlock", "k", b"x", session="b")) is False  # not the holder
    assert s.apply(7, kv_command("unlock", "k", b"r", session="a")) is True
    e = s.kv_get("k")
    assert (e.session, e.lock_index, e.value) == ("", 1, b"r")
    assert s.apply(8, kv_command("lock", "k", b"", session="b")) is True
    assert (s.kv_get("k").session, s.kv_get("k").lock_index) == ("b", 2)
    # a plain set keeps the holder
    s.apply(9, kv_command("set", "k", b"z"))
    assert s.kv_get("k").session == "b"
    assert str(s.apply(10, kv_command("lock", "k2", b"", session="ghost"))) == 'invalid session "ghost"'
    assert s.apply(11, kv_command("unlock", "missing", b"", session="a")) is False
    assert isinstance(s.apply(12, kv_command("lock", "k2")), CommandError)     # missing session


def test_destroy_releases_or_deletes_and_reports_lock_delay():
    s = Store()
    delays = []
    s.sessions.lock_delay_listeners.append(lambda k, d: delays.append((k, d)))
    _create(s, 1, "rel", LockDelay=5_000_000_000)
    _create(s, 2, "del", Behavior="delete", LockDelay=0)
    s.apply(3, kv_command("lock", "a", b"1", session="rel"))
    s.apply(4, kv_command("lock", "b", b"2", session="del"))
    s.apply(5, session_command("destroy", {"ID": "rel"}))
    assert s.kv_get("a").session == "" and s.kv_get("a").modify_index == 5
    assert delays == [("a", 5.0)]
    s.apply(6, session_command("destroy", {"ID": "del"}))
    assert s.kv_get("b") is None and delays == [("a", 5.0)]
    assert s.indexes["kvs"] == 6


def test_lock_delay_is_capped_at_60s():
    s = Store()
    delays = []
    s.sessions.lock_delay_listeners.append(lambda k, d: delays.append(d))
    _create(s, 1, "x", LockDelay=3600 * 10**9)
    s.apply(2, kv_command("lock", "k", b"", session="x"))
    s.apply(3, session_command("destroy", {"ID": "x"}))
    assert delays == [60.0]


def test_check_listeners_invalidate_sessions():
    s = Store()
    _create(s, 1, "s1", NodeChecks=["serfHealth", "db"])
    _create(s, 2, "s2", NodeChecks=[])
    _create(s, 3, "s3", node="other", NodeChecks=["db"])
    s.apply(4, kv_command("lock", "k", b"", session="s1"))
    for fn in s.check_listeners:
        fn(5, "n1", "db", "warning")                  # not critical: nothing happens
    assert s.sessions.get("s1") is not None
    for fn in s.check_listeners:
        fn(6, "n1", "db", "critical")
    assert s.sessions.get("s1") is None and s.sessions.get("s3") is not None
    assert s.kv_get("k").session == "" and s.indexes["sessions"] == 6
    for fn in s.check_listeners:
        fn(7, "n1", "", "")                           # node deregistered
    assert s.sessions.get("s2") is None


def test_catalog_validation():
    s = _Store()
    _register(s, 1, "n1", {"serfHealth": "passing", "bad": "critical"})
    assert str(_create(s, 1, "x", node="n9")) == "Missing node registration"
    assert str(_create(s, 2, "x", NodeChecks=["nope"])) == "Missing check 'nope' registration"
    assert str(_create(s, 3, "x", NodeChecks=["bad"])) == "Check 'bad' is in critical state"
    assert _create(s, 4, "x") == "x"
    assert _create(s, 5, "y", node="N1") == "y"                   # node names: any case
    # the catalog's own changes invalidate: serfHealth critical, then a deleted check
    _create(s, 6, "z", NodeChecks=[])
    _register(s, 7, "n1", {"serfHealth": "critical", "bad": "critical"})
    assert s.sessions.get("x") is None and s.sessions.get("y") is None
    assert s.sessions.get("z") is not None


def test_snapshot_restore_keeps_sessions_and_locks():
    s = Store()
    _create(s, 1, "s1", TTL="30s")
    s.apply(2, kv_command("lock", "k", b"v", session="s1"))
    t = _Store()
    t.restore(s.snapshot())
    assert t.sessions.get("s1") == s.sessions.get("s1")
    assert t.kv_get("k").session == "s1" and t.kv_get("k").lock_index == 1
    # the restored store keeps working: destroying releases the restored lock
    t.apply(3, session_command("destroy", {"ID": "s1"}))
    assert t.kv_get("k").session == ""


def test_txn_all_or_nothing():
    s = Store()
    s.apply(1, kv_command("set", "a", b"1"))
    before = (dict(s.indexes), {k: (e.value, e.modify_index) for k, e in s.kv.items()})
    out = s.apply(2, txn_command([
        {"KV": {"Verb": "set", "Key": "b", "Value": b"2"}},
        {"KV": {"Verb": "delete", "Key": "a"}},
        {"KV": {"Verb": "cas", "Key": "c", "Value": b"3", "Index": 77}},
        {"KV": {"Verb": "check-not-exists", "Key": "b"}},
        {"KV": {"Verb": "frob", "Key": "b"}},
    ]))
    assert out["Results"] is None
    assert out["Errors"] == [
        {"OpIndex": 2, "What": 'failed to set key "c", index is stale'},
        {"OpIndex": 3, "What": 'key "b" exists'},
        {"OpIndex": 4, "What": 'unknown KV verb "frob"'}]
    assert (dict(s.indexes), {k: (e.value, e.modify_index) for k, e in s.kv.items()}) == before


def test_txn_success_results():
    s = Store()
    s.apply(1, kv_command("set", "a", b"1"))
    _create(s, 2, "s")
    out = s.apply(3, txn_command([
        {"KV": {"Verb": "set", "Key": "b", "Value": b"2", "Flags": 4}},
        {"KV": {"Verb": "get", "Key": "a"}},
        {"KV": {"Verb": "lock", "Key": "l", "Session": "s"}},
        {"KV": {"Verb": "check-session", "Key": "l", "Session": "s"}},
        {"KV": {"Verb": "check-index", "Key": "a", "Index": 1}},
        {"KV": {"Verb": "get-tree", "Key": ""}},
        {"KV": {"Verb": "delete-cas", "Key": "a", "Index": 1}},
    ]))
    assert out["Errors"] is None
    r = out["Results"]
    assert r[0]["KV"]["Key"] == "b" and r[0]["KV"]["Value"] is None and r[0]["KV"]["Flags"] == 4
    assert r[1]["KV"]["Value"] == b"1"
    assert r[2]["KV"]["Session"] == "s" and r[2]["KV"]["LockIndex"] == 1
    assert [x["KV"]["Key"] for x in r[5:]] == ["a", "b", "l"]
    assert s.kv_get("a") is None and s.kv_get("b").modify_index == 3


def test_txn_read_only_changes_nothing():
    s = Store()
    s.apply(1, kv_command("set", "a", b"1"))
    out = s.txn.run(1, [{"KV": {"Verb": "get", "Key": "a"}}], read_only=True)
    assert out["Results"][0]["KV"]["Value"] == b"1"
    out = s.txn.run(1, [{"KV": {"Verb": "set", "Key": "x"}}], read_only=True)
    assert out["Errors"] and s.kv_get("x") is None

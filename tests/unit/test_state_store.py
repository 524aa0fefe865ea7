"""The state store's KV table: Consul's index semantics, CAS, deletes, snapshot/restore."""
from __future__ import annotations

from agent.state.store import CommandError, Store, kv_command


def test_set_get_indexes():
    s = Store()
    assert s.apply(5, kv_command("set", "a", b"1", flags=7)) is True
    e = s.kv_get("a")
    assert (e.value, e.flags, e.create_index, e.modify_index) == (b"1", 7, 5, 5)
    s.apply(9, kv_command("set", "a", b"2"))
    e = s.kv_get("a")
    assert (e.create_index, e.modify_index, s.indexes["kvs"]) == (5, 9, 9)


def test_cas_semantics():
    s = Store()
    assert s.apply(1, kv_command("cas", "k", b"v", cas=0)) is True      # create only if absent
    assert s.apply(2, kv_command("cas", "k", b"w", cas=0)) is False
    assert s.apply(3, kv_command("cas", "k", b"w", cas=99)) is False
    assert s.apply(4, kv_command("cas", "k", b"w", cas=1)) is True
    assert s.kv_get("k").value == b"w"
    assert s.apply(5, kv_command("delete-cas", "k", cas=1)) is False
    assert s.apply(6, kv_command("delete-cas", "k", cas=4)) is True
    assert s.apply(7, kv_command("delete-cas", "k", cas=4)) is True     # gone counts as deleted
    assert s.kv_get("k") is None


def test_delete_tree_and_index_moves_forward():
    s = Store()
    for i, k in enumerate(["a/1", "a/2", "b"], start=1):
        s.apply(i, kv_command("set", k, b"x"))
    s.apply(10, kv_command("delete-tree", "a/"))
    assert [e.key for e in s.kv_list("")] == ["b"]
    assert s.indexes["kvs"] == 10
    s.apply(11, kv_command("delete", "missing"))
    assert s.indexes["kvs"] == 11


def test_bad_commands_do_not_raise_or_change_state():
    s = Store()
    s.apply(1, kv_command("set", "a", b"1"))
    assert isinstance(s.apply(2, b"\x63\x01"), CommandError)           # unknown type
    assert isinstance(s.apply(3, b"\x02\xc1"), CommandError)           # bad msgpack
    assert s.kv_get("a").value == b"1"


def test_snapshot_restore_round_trip():
    s = Store()
    s.apply(3, kv_command("set", "x", b"\x00\xff", flags=2))
    s.apply(4, kv_command("set", "y", b""))
    t = Store()
    t.restore(s.snapshot())
    assert t.kv == s.kv and t.indexes == s.indexes and t.last_index == 4

"""Log compaction, InstallSnapshot and restarts (Raft paper §7; §5 for persisted state)."""
from __future__ import annotations

import pytest

from agent.raft.core import RaftCore, Restored
from agent.raft.messages import (
    FOLLOWER, LEADER, MSG_APP_RESP, MSG_SNAP, HardState, Message, SnapshotMeta,
)

from .helpers import CFG, Net, drain, make, servers


def _lagging_c_after_compaction():
    net = Net()
    leader = net.elect("a")
    net.isolate("c")
    for k in range(10):
        leader.propose(b"%d" % k)
    net.stabilize()
    leader.compact(leader.applied)
    net.disks["a"].snapshot = leader.snapshot_meta()
    return net, leader


def test_compact_drops_entries_and_limits():
    """§7: a server discards log entries covered by its snapshot; it cannot snapshot what it
    has not applied."""
    net = Net()
    leader = net.elect("a")
    for k in range(5):
        leader.propose(b"%d" % k)
    net.stabilize()
    applied = leader.applied
    with pytest.raises(ValueError):
        leader.compact(applied + 1)
    leader.compact(applied - 2)
    assert leader.first_index == applied - 1
    meta = leader.snapshot_meta()
    assert meta.index == applied - 2 and meta.configuration == tuple(servers("abc"))
    leader.compact(1)                       # older than the snapshot: nothing to do
    assert leader.first_index == applied - 1


def test_lagging_follower_gets_snapshot_then_log():
    """§7: the leader sends InstallSnapshot to a follower that lags behind its first log
    entry; the follower replaces its log and then continues from the log."""
    net, leader = _lagging_c_after_compaction()
    net.heal()
    leader.tick()
    net.stabilize()
    snaps = [m for m in net.sent if m.type == MSG_SNAP]
    assert [m.to for m in snaps] == ["c"] and snaps[0].snapshot.index == leader.first_index - 1
    c = net.nodes["c"]
    assert c.stats["snapshot_installed"] == 1
    assert net.applied["c"][-1][2] == "snapshot" or net.applied["c"][-1][0] == leader.commit
    leader.propose(b"after")
    net.stabilize()
    assert net.data("c")[-1] == b"after" and c.commit == leader.commit
    assert leader.status()["progress"]["c"]["state"] == "replicate"


def test_new_member_after_compaction_gets_snapshot():
    """§7 and thesis §4.2.1: a server added after compaction catches up via a snapshot (taken
    before it joined: the configuration in the log still brings it in)."""
    net, leader = _lagging_c_after_compaction()
    net.heal()
    net.add("d")
    new = tuple(leader.configuration()) + (servers("d")[0],)
    leader.propose_conf_change(new)
    net.stabilize()
    d = net.nodes["d"]
    assert d.stats["snapshot_installed"] == 1
    assert d.configuration() == new and d.commit == leader.commit


def test_report_snapshot_failure_probes_again():
    """§7: if sending the snapshot fails, the leader returns to probing (and retries)."""
    net, leader = _lagging_c_after_compaction()
    net.heal()
    net.report_snapshots = False
    net.drop_if = lambda m: m.type == MSG_SNAP
    leader.tick()
    net.stabilize()
    assert leader.status()["progress"]["c"]["state"] == "snapshot"
    leader.report_snapshot("c", False)
    assert leader.status()["progress"]["c"]["state"] == "probe"
    net.heal()
    for _ in range(3):
        leader.tick()
        net.stabilize()
    assert net.nodes["c"].commit == leader.commit


def test_snapshot_not_ahead_of_commit_is_ignored():
    """§7: a snapshot that covers no more than the follower has committed is ignored."""
    n = make("b", terms=(1, 1, 1, 1, 1), term=1, commit=4)
    n.step(Message(MSG_SNAP, "b", "a", 1, snapshot=SnapshotMeta(3, 1, tuple(servers("abc")))))
    (resp,) = drain(n)
    assert (resp.type, resp.index) == (MSG_APP_RESP, 4)
    assert n.last_index == 5 and n.first_index == 1


def test_snapshot_matching_log_keeps_suffix():
    """§7: if the follower's log has an entry with the snapshot's last index and term, the
    entries following it are retained (only the commit index moves)."""
    n = make("b", terms=(1, 1, 1, 1, 1), term=1, commit=1)
    n.step(Message(MSG_SNAP, "b", "a", 1, snapshot=SnapshotMeta(3, 1, tuple(servers("abc")))))
    assert n.last_index == 5 and n.commit == 3 and n.first_index == 1
    assert n.ready().snapshot is None


def test_snapshot_replaces_conflicting_log():
    """§7: if the follower's log does not contain the snapshot's last entry, the whole log
    is discarded and replaced by the snapshot."""
    n = make("b", terms=(1, 1, 2, 2), term=3, commit=1)
    meta = SnapshotMeta(6, 3, tuple(servers("abcd")))
    n.step(Message(MSG_SNAP, "b", "a", 3, snapshot=meta))
    rd = n.ready()
    assert rd.snapshot == meta and rd.committed == []
    assert n.last_index == 6 and n.first_index == 7 and n.commit == 6
    assert n.configuration() == meta.configuration
    n.advance(rd)
    assert n.applied == 6 and not n.has_ready()


def test_restart_from_restored_keeps_state():
    """§5 (Figure 2, persistent state): currentTerm, votedFor and the log survive a restart;
    the node restarts as a follower and re-applies committed entries after its snapshot."""
    net = Net()
    leader = net.elect("a")
    for k in range(3):
        leader.propose(b"%d" % k)
    net.stabilize()
    before = net.nodes["b"]
    term, vote, commit, last = before.term, before.vote, before.commit, before.last_index
    b = net.restart("b")
    assert (b.term, b.vote, b.role, b.leader) == (term, vote, FOLLOWER, "")
    assert (b.commit, b.last_index, b.applied) == (commit, last, 0)
    assert b.configuration() == tuple(servers("abc"))
    net.stabilize()
    assert net.data("b") == [b"0", b"1", b"2"]


def test_restart_after_compaction_and_leader_restart():
    """§7 and §5.2: a server restarts from its snapshot plus the entries after it; a
    restarted leader comes back as a follower and the cluster carries on."""
    net = Net()
    leader = net.elect("a")
    for k in range(4):
        leader.propose(b"%d" % k)
    net.stabilize()
    idx = leader.applied
    leader.compact(idx)
    disk = net.disks["a"]
    disk.snapshot = leader.snapshot_meta()
    disk.entries = [e for e in disk.entries if e.index > idx]
    a = net.restart("a")
    assert a.role == FOLLOWER and a.first_index == idx + 1 and a.applied == idx
    assert a.configuration() == tuple(servers("abc"))
    net.tick_all(4 * CFG.election_tick)
    assert len(net.leaders()) == 1
    lead = net.nodes[net.leaders()[0]]
    lead.propose(b"more")
    net.stabilize()
    assert net.data("a")[-1] == b"more"


def test_restart_without_snapshot_restored_none_fields():
    """§5: a node restored with an empty hard state and no entries is a fresh node."""
    n = RaftCore(CFG, "a", __import__("random").Random(1), Restored(HardState(), None, []))
    assert (n.term, n.last_index, n.commit, n.configuration()) == (0, 0, 0, ())


def test_bootstrap_rules():
    """§5.2 / Consul bootstrap-expect: only an empty node bootstraps; an unbootstrapped node
    never campaigns; a bootstrapped lone voter elects itself."""
    n = make("a", ids="a", terms=(1,), term=1)
    with pytest.raises(ValueError):
        n.bootstrap(servers("a"))
    net = Net(("a",), bootstrap=False)
    a = net.nodes["a"]
    for _ in range(5 * CFG.election_tick):
        a.tick()
    assert a.role == FOLLOWER and a.term == 0
    a.bootstrap(servers("a"))
    with pytest.raises(ValueError):
        a.bootstrap(servers("a"))
    net.tick_all(3 * CFG.election_tick)
    assert a.role == LEADER and a.commit == 2


def test_compact_with_trailing_entries_sends_the_drivers_snapshot():
    """§7: a server may keep some entries its snapshot covers (so slightly lagging
    followers need no snapshot); one that lags further gets the snapshot the driver holds."""
    net = Net()
    leader = net.elect("a")
    net.isolate("c")
    for k in range(10):
        leader.propose(b"%d" % k)
    net.stabilize()
    applied = leader.applied
    meta = leader.snapshot_meta(applied)
    assert (meta.index, meta.term, meta.configuration) == \
           (applied, leader.term, tuple(servers("abc")))
    with pytest.raises(ValueError):
        leader.compact(applied - 3, SnapshotMeta(applied - 4, 1, ()))   # does not cover it
    leader.compact(applied - 3, meta)
    assert leader.first_index == applied - 2 and leader.snapshot_meta() == meta
    with pytest.raises(ValueError):
        leader.snapshot_meta(1)                                           # compacted
    net.heal()
    leader.tick()
    net.stabilize()
    snaps = [m for m in net.sent if m.type == MSG_SNAP]
    assert [m.snapshot for m in snaps] == [meta]
    c = net.nodes["c"]
    assert c.first_index == applied + 1 and c.commit == leader.commit
    assert c.snapshot_meta() == meta

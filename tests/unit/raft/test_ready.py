"""The Ready/advance contract, single-node clusters, flow control and hostile input
(Raft paper §5.3 for replication; thesis §10.2.1 for the leader's parallel disk write)."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from agent.raft.core import ProposalDropped, RaftConfig, RaftCore, SoftState
from agent.raft.messages import (
    ENTRY_CONFIG, LEADER, MSG_APP, MSG_APP_RESP, MSG_HEARTBEAT, MSG_MAX, MSG_SNAP, MSG_VOTE,
    Entry, HardState, Message, SnapshotMeta, Server,
)

from .helpers import CFG, Net, app, entries, make, servers


def test_single_node_elects_itself_and_commits_after_advance():
    """§5.2/§5.3: a lone voter is a majority of one: campaign() makes it leader at once; its
    entries commit only once persisted (advance())."""
    a = make("a", ids="a", term=1)
    a.campaign()
    assert a.role == LEADER
    idx, _ = a.propose(b"x")
    rd = a.ready()
    assert [e.index for e in rd.entries] == [1, 2] and rd.committed == []
    assert a.commit == 0
    a.advance(rd)
    assert a.commit == idx
    rd = a.ready()
    assert [e.data for e in rd.committed] == [b"", b"x"] and rd.hard_state.commit == idx
    a.advance(rd)
    assert a.applied == idx and not a.has_ready()


def test_ready_repeats_until_advance_and_keeps_new_messages():
    """§5 (Figure 2, rules for all servers): nothing is lost between ready() and advance():
    a second ready() repeats pending output, and output produced after ready() survives
    the advance of the earlier Ready."""
    net = Net()
    leader = net.elect("a")
    leader.propose(b"1")
    rd1 = leader.ready()
    rd2 = leader.ready()
    assert rd1.entries == rd2.entries and rd1.messages == rd2.messages
    leader.tick()                           # a heartbeat queued after rd1 was taken
    leader.advance(rd1)
    rd3 = leader.ready()
    assert rd3.entries == [] and [m.type for m in rd3.messages] == [MSG_HEARTBEAT] * 2
    leader.advance(rd3)
    assert not leader.has_ready()


def test_hard_and_soft_state_reported_on_change_only():
    """§5 (Figure 2): currentTerm/votedFor/commit are handed out to persist when they change;
    role and leader are reported when they change."""
    a = make("a", term=1)
    assert not a.has_ready()
    a.campaign()
    rd = a.ready()
    assert rd.soft_state == SoftState("", "pre-candidate") and rd.hard_state is None
    a.advance(rd)
    a.step(Message(8, "a", "b", 2))        # granted pre-vote: the real election begins
    rd = a.ready()
    assert rd.hard_state == HardState(2, "a", 0) and rd.soft_state.role == "candidate"
    a.advance(rd)
    assert not a.has_ready()


def test_committed_never_ahead_of_stable():
    """Thesis §10.2.1: the leader may replicate before its own write completes, but an entry
    is applied only after this node persisted it."""
    a = make("a", cfg=CFG)
    a.campaign()
    a.step(Message(8, "a", "b", a.term + 1))
    a.step(Message(6, "a", "b", a.term))
    assert a.role == LEADER
    li = a.last_index
    for f in "bc":
        a.step(Message(MSG_APP_RESP, "a", f, a.term, index=li))
    assert a.commit == li                   # b and c hold it...
    rd = a.ready()
    assert rd.committed == [] and rd.entries[-1].index == li   # ...but not our disk yet
    a.advance(rd)
    assert [e.index for e in a.ready().committed] == [li]


def test_follower_stable_tracks_truncation():
    """§5.3: entries handed out for persistence and then replaced by the leader are handed
    out again (the driver overwrites from the first one)."""
    n = make("b", terms=(1,), term=2, commit=1)
    n.step(app("a", "b", 2, 1, 1, entries(2, 2, start=2)))
    rd = n.ready()
    assert [e.index for e in rd.entries] == [2, 3]
    n.step(app("c", "b", 3, 1, 1, entries(3, start=2)))
    n.advance(rd)                            # rd's entries no longer match: not stable
    rd = n.ready()
    assert [(e.index, e.term) for e in rd.entries] == [(2, 3)]


def test_inflight_window_limits_pipelining():
    """§5.3: the leader pipelines AppendEntries optimistically, at most max_inflight
    un-acknowledged per follower."""
    cfg = replace(CFG, max_inflight=2, max_msg_entries=1)
    net = Net(cfg=cfg)
    leader = net.elect("a")
    for k in range(6):
        leader.propose(b"%d" % k)
    rd = net.persist("a")
    to_b = [m for m in rd.messages if m.to == "b" and m.type == MSG_APP]
    assert len(to_b) == 2 and all(len(m.entries) == 1 for m in to_b)
    assert leader.status()["progress"]["b"]["inflight"] == 2
    net.stabilize()
    assert all(n.commit == leader.last_index for n in net.nodes.values())


def test_msg_size_limits():
    """§5.3: one AppendEntries carries at most max_msg_entries entries and max_msg_bytes of
    data, but always at least one entry."""
    cfg = replace(CFG, max_msg_entries=3, max_msg_bytes=10)
    net = Net(cfg=cfg)
    leader = net.elect("a")
    for size in (4, 4, 4, 20, 1):
        leader.propose(b"x" * size)
    rd = net.persist("a")
    sizes = [[len(e.data) for e in m.entries] for m in rd.messages if m.to == "b"]
    assert sizes[0] == [4, 4]
    net.stabilize()
    assert net.data("b") == [b"x" * s for s in (4, 4, 4, 20, 1)]


def test_probe_sends_one_at_a_time_after_unreachable():
    """§5.3: when the follower may be missing messages the leader probes: one
    AppendEntries at a time until it finds where the logs match."""
    net = Net()
    leader = net.elect("a")
    leader.report_unreachable("b")
    assert leader.status()["progress"]["b"]["state"] == "probe"
    for k in range(3):
        leader.propose(b"%d" % k)
        rd = net.persist("a")
        assert len([m for m in rd.messages if m.to == "b"]) == (1 if k == 0 else 0)
        net.queue.clear()
    leader.tick()
    net.stabilize()
    assert leader.status()["progress"]["b"]["state"] == "replicate"
    assert net.nodes["b"].last_index == leader.last_index


def test_reject_hint_skips_whole_terms():
    """§5.3 (the optimization at the end): with the conflicting term and the first index the
    follower has for it, the leader skips all conflicting entries of a term per round trip."""
    leader_terms = (1,) * 3 + (4,) * 50
    follower_terms = (1,) * 3 + (2,) * 50 + (3,) * 50
    net = Net(("a", "b", "c"), cfg=CFG, bootstrap=False)
    net.nodes["a"] = make("a", terms=leader_terms, term=5)
    net.nodes["b"] = make("b", terms=follower_terms, term=5)
    net.nodes["c"] = make("c", terms=(1,), term=5)
    net.elect("a")
    probes = [m for m in net.sent if m.type == MSG_APP and m.to == "b"]
    assert len(probes) <= 5
    a, b = net.nodes["a"], net.nodes["b"]
    assert [b._log.term(i) for i in range(1, b.last_index + 1)] == \
           [a._log.term(i) for i in range(1, a.last_index + 1)]


def test_stale_app_resp_does_not_regress_progress():
    """§5.3: a late or duplicate AppendEntries response never moves matchIndex back."""
    net = Net()
    leader = net.elect("a")
    leader.propose(b"x")
    net.stabilize()
    match = leader.status()["progress"]["b"]["match"]
    leader.step(Message(MSG_APP_RESP, "a", "b", leader.term, index=1))
    leader.step(Message(MSG_APP_RESP, "a", "b", leader.term, index=1, reject=True, reject_hint=0))
    assert leader.status()["progress"]["b"]["match"] == match


def test_uncommitted_size_limit():
    """§5.3 (flow control beyond the paper, etcd's MaxUncommittedEntriesSize): the leader
    refuses new proposals once too much data awaits commitment."""
    net = Net(cfg=replace(CFG, max_uncommitted_bytes=10))
    leader = net.elect("a")
    net.isolate("a")
    leader.propose(b"x" * 8)
    with pytest.raises(ProposalDropped):
        leader.propose(b"x" * 8)
    net.heal()
    leader.tick()
    net.stabilize()
    leader.propose(b"x" * 8)


def _garbage():
    good_cfg = servers("ab")
    return [
        "not a message",
        Message(MSG_APP, "zz", "b", 1),                        # not for us
        Message(MSG_APP, "a", "a", 1),                         # from ourselves
        Message(MSG_APP, "a", "", 1),
        Message(MSG_APP, "a", "b", 0),                         # term 0
        Message(99, "a", "b", 1),
        Message(0, "a", "b", 1),                               # local-only type
        Message(MSG_APP, "a", "b", -1),
        Message(MSG_APP, "a", "b", 1, index=True),
        Message(MSG_APP, "a", "b", 1, context="str"),
        Message(MSG_APP, "a", "b", 1, 0, 0, entries=[Entry(1, 5)]),          # gap
        Message(MSG_APP, "a", "b", 1, 0, 0, entries=[Entry(2, 1)]),          # term > msg term
        Message(MSG_APP, "a", "b", 2, 2, 0, entries=[Entry(1, 1)]),          # term < prev
        Message(MSG_APP, "a", "b", 1, 0, 0, entries=[Entry(1, 1, 7)]),       # entry type
        Message(MSG_APP, "a", "b", 1, 0, 0, entries=[Entry(1, 1, ENTRY_CONFIG, b"\xc1")]),
        Message(MSG_APP, "a", "b", 1, 0, 0, entries=[Entry(1, 1, 0, "s")]),
        Message(MSG_APP, "a", "b", 1, 3, 0),                                 # log_term > term
        Message(MSG_SNAP, "a", "b", 1),                                      # no snapshot
        Message(MSG_SNAP, "a", "b", 1, snapshot=SnapshotMeta(5, 9, tuple(good_cfg))),
        Message(MSG_SNAP, "a", "b", 1, snapshot=SnapshotMeta(5, 1, ("x",))),
        Message(MSG_VOTE, "a", "b", 1, 5, 0),
    ]


@pytest.mark.parametrize("msg", _garbage())
def test_garbage_is_counted_and_dropped(msg):
    """§5.1 (robustness beyond the paper): malformed input is dropped and counted; it never
    raises and never changes state."""
    n = make("a", ids="ab", terms=(1,), term=1, commit=1)
    before = n.status()
    n.step(msg)
    assert n.stats["dropped_invalid"] == 1
    assert n.status() == before and not n._msgs


def test_random_messages_never_raise():
    """§5.1 (robustness): any well-typed message in any state is handled without raising."""
    rng = random.Random(5)
    ids = ["a", "b", "c"]
    for seed in range(30):
        net = Net(seed=seed)
        net.elect("a")
        for _ in range(200):
            to = rng.choice(ids)
            frm = rng.choice([i for i in ids if i != to] + ["x"])
            n = net.nodes[to]
            base = rng.randrange(0, n.last_index + 3)
            t = rng.randrange(max(1, n._log.last_term()), n.term + 3)
            ents = [Entry(rng.randint(max(1, t - 1), t), base + 1 + k) for k in range(rng.randrange(3))]
            snap = SnapshotMeta(rng.randrange(1, 10), rng.randint(1, t), tuple(servers("abc")))
            m = Message(rng.randint(3, MSG_MAX), to, frm, t, min(t, rng.randrange(0, t + 1)),
                        base, rng.randrange(0, 12), rng.random() < 0.3, rng.randrange(0, 8),
                        rng.choice([b"", b"1", b"transfer", b"zz"]), ents,
                        snap if rng.random() < 0.5 else None)
            n.step(m)
            if rng.random() < 0.2:
                n.tick()
            if rng.random() < 0.3:
                # forged acknowledgements can make a leader probe forever: liveness is not
                # the point here, only that nothing raises
                net.stabilize(limit=50, strict=False)


def test_config_problems():
    """§5.2: the election timeout must exceed the heartbeat interval (broadcastTime ≪
    electionTimeout); the lease needs CheckQuorum."""
    assert RaftConfig().problems() == []
    probs = RaftConfig(election_tick=1, heartbeat_tick=1, max_inflight=0,
                       read_only_lease=True, check_quorum=False).problems()
    assert len(probs) == 3
    with pytest.raises(ValueError):
        RaftCore(RaftConfig(election_tick=0), "a", random.Random(1))


def test_status_view():
    """§5 (Figure 2, volatile state on leaders): nextIndex and matchIndex per follower."""
    net = Net()
    leader = net.elect("a")
    st = leader.status()
    assert st["role"] == LEADER and st["leader"] == "a" and st["term"] == leader.term
    assert set(st["progress"]) == {"a", "b", "c"}
    assert st["progress"]["b"]["match"] == leader.last_index
    assert "progress" not in net.nodes["b"].status()
    assert Server("a", "a:8300") in leader.configuration()

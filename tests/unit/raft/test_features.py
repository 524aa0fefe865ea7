"""PreVote, CheckQuorum with leader stickiness, ReadIndex and leadership transfer (Ongaro's
thesis §6.4, §9.6, §3.10 / §4.2.3; etcd-io/raft's raft.go behaviour)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from agent.raft.core import NotLeader, ProposalDropped, RaftConfig, ReadState
from agent.raft.messages import (
    CANDIDATE, FOLLOWER, LEADER, MSG_APP, MSG_HEARTBEAT, MSG_PRE_VOTE, MSG_PRE_VOTE_RESP,
    MSG_READ_INDEX, MSG_TIMEOUT_NOW, MSG_TRANSFER_LEADER, MSG_VOTE, MSG_VOTE_RESP,
    PRE_CANDIDATE, Message,
)

from .helpers import CFG, Net, drain, make

NO_CQ = RaftConfig(check_quorum=False)


# ------------------------------------------------------------------ elections by ticks
def test_ticks_alone_elect_one_leader():
    """§5.2: with randomized timeouts, a cluster that only ticks elects exactly one leader
    and every member learns who it is."""
    net = Net(("a", "b", "c", "d", "e"))
    net.tick_all(40)
    assert len(net.leaders()) == 1
    lead = net.leaders()[0]
    assert all(n.leader == lead for n in net.nodes.values())


def test_new_leader_appends_noop_and_commits_it():
    """§5.4.2 / thesis §6.4: a new leader appends a no-op entry of its term at once and
    commits it, which also commits earlier terms' entries."""
    net = Net()
    leader = net.elect("a")
    e = leader._log.ents[-1]
    assert (e.term, e.data) == (leader.term, b"") and leader.commit == e.index
    assert all(n.commit == e.index for n in net.nodes.values())


# ------------------------------------------------------------------ PreVote
def test_prevote_partitioned_node_does_not_disrupt():
    """Thesis §9.6: with PreVote a partitioned server cannot win a pre-election, so its
    term does not grow and it does not depose the leader when it rejoins."""
    net = Net()
    leader = net.elect("a")
    term = leader.term
    net.isolate("c")
    net.tick_all(60)
    c = net.nodes["c"]
    assert c.term == term and c.role in (PRE_CANDIDATE, FOLLOWER)
    net.heal()
    net.tick_all(3)
    assert leader.role == LEADER and leader.term == term
    assert c.role == FOLLOWER and c.leader == "a"


def test_prevote_never_changes_the_receivers_term():
    """Thesis §9.6: a PreVote request with a higher term is answered (granted if the log is
    up to date) without the receiver adopting that term or recording a vote."""
    n = make("a", term=2, cfg=NO_CQ)
    n.step(Message(MSG_PRE_VOTE, "a", "b", 3, 0, 0))
    (resp,) = drain(n)
    assert (resp.type, resp.term, resp.reject) == (MSG_PRE_VOTE_RESP, 3, False)
    assert n.term == 2 and n.vote == ""


def test_prevote_granted_with_higher_term_keeps_precandidate():
    """Thesis §9.6: a granted pre-vote carries the future term; it does not make the
    pre-candidate step down. A quorum of them starts the real election at term+1."""
    n = make("a", ids="abcde", term=2)
    n.campaign()
    assert n.role == PRE_CANDIDATE and n.term == 2
    n.step(Message(MSG_PRE_VOTE_RESP, "a", "b", 3))
    assert n.role == PRE_CANDIDATE and n.term == 2
    n.step(Message(MSG_PRE_VOTE_RESP, "a", "c", 3))
    assert n.role == CANDIDATE and n.term == 3 and n.vote == "a"
    votes = [m for m in drain(n) if m.type == MSG_VOTE]
    assert sorted(m.to for m in votes) == ["b", "c", "d", "e"]


def test_prevote_rejected_with_higher_term_steps_down():
    """§5.1: a rejection carrying a higher term makes the pre-candidate adopt it."""
    n = make("a", term=2)
    n.campaign()
    n.step(Message(MSG_PRE_VOTE_RESP, "a", "b", 7, reject=True))
    assert n.role == FOLLOWER and n.term == 7


def test_prevote_denied_to_stale_log():
    """§5.4.1 applies to pre-votes too: a node whose log is behind wins no pre-election."""
    n = make("a", terms=(1, 2), term=2, cfg=NO_CQ)
    n.step(Message(MSG_PRE_VOTE, "a", "b", 3, 1, 5))
    (resp,) = drain(n)
    assert resp.reject and resp.term == 2


# ------------------------------------------------------------------ CheckQuorum
def test_check_quorum_isolated_leader_steps_down():
    """Thesis §6.2: a leader that has not heard from a majority within an election timeout
    steps down (so clients can find the real leader)."""
    net = Net()
    leader = net.elect("a")
    net.isolate("a")
    for _ in range(2 * CFG.election_tick):
        leader.tick()
    assert leader.role == FOLLOWER and leader.stats["check_quorum_step_down"] == 1


def test_check_quorum_leader_keeps_leading_with_majority():
    """Thesis §6.2: responses from a majority within each election timeout keep the
    leader in place."""
    net = Net()
    leader = net.elect("a")
    net.isolate("c")
    net.tick_all(5 * CFG.election_tick)
    assert leader.role == LEADER


def test_leader_stickiness_ignores_votes_within_lease():
    """Thesis §4.2.3: a server that heard from a current leader within the minimum election
    timeout neither grants a vote nor updates its term on a RequestVote."""
    net = Net()
    net.elect("a")
    b = net.nodes["b"]
    term = b.term
    b.step(Message(MSG_VOTE, "b", "c", term + 1, b._log.last_term(), b.last_index))
    assert b.term == term and b.vote == "a" and not b._msgs
    assert b.stats["vote_ignored_in_lease"] == 1


def test_transfer_vote_overrides_stickiness():
    """Thesis §3.10: vote requests of a leadership transfer are not subject to the lease
    (the leader asked for them)."""
    net = Net()
    net.elect("a")
    b = net.nodes["b"]
    term = b.term
    b.step(Message(MSG_VOTE, "b", "c", term + 1, b._log.last_term(), b.last_index,
                   context=b"transfer"))
    assert b.term == term + 1 and b.vote == "c"


def test_stale_leader_learns_higher_term_from_follower():
    """§5.1 with PreVote: a follower answers a stale leader's heartbeat with its higher
    term, so the stale leader (which pre-vote keeps from raising anyone's term) steps down."""
    net = Net(cfg=RaftConfig(check_quorum=False, pre_vote=True))
    old = net.elect("a")
    net.isolate("a")
    net.elect("b")
    assert old.role == LEADER and old.term < net.nodes["b"].term
    net.heal()
    old.tick()
    net.stabilize()
    assert old.role == FOLLOWER and old.term == net.nodes["b"].term
    net.tick_all(1)
    assert old.leader == "b" and net.leaders() == ["b"]


def test_stale_leader_steps_down_on_response():
    """§5.1: a leader that receives any response with a higher term reverts to follower."""
    n = make("a", term=1)
    n.campaign()
    n.step(Message(MSG_PRE_VOTE_RESP, "a", "b", 2))
    n.step(Message(MSG_VOTE_RESP, "a", "b", 2))
    assert n.role == LEADER
    n.step(Message(4, "a", "b", 9))                        # MsgAppResp at term 9
    assert n.role == FOLLOWER and n.term == 9


# ------------------------------------------------------------------ ReadIndex
def _leader_with_reads(cfg=CFG):
    net = Net(cfg=cfg)
    leader = net.elect("a")
    leader.propose(b"x")
    net.stabilize()
    return net, leader


def test_read_index_needs_heartbeat_quorum():
    """Thesis §6.4: the leader records its commit index as the read index, then confirms it
    is still leader by a heartbeat round acknowledged by a majority before serving."""
    net, leader = _leader_with_reads()
    leader.read_index(b"r1")
    rd = net.persist("a")
    hbs = [m for m in rd.messages if m.type == MSG_HEARTBEAT]
    assert len(hbs) == 2 and not rd.read_states and hbs[0].context
    net.queue.clear()
    net.nodes["b"].step(hbs[0] if hbs[0].to == "b" else hbs[1])
    for m in drain(net.nodes["b"]):
        leader.step(m)
    assert net.persist("a").read_states == [ReadState(leader.commit, b"r1")]


def test_read_index_batched_into_one_round():
    """Thesis §6.4.1: many reads share one heartbeat round (batching)."""
    net, leader = _leader_with_reads()
    for k in range(5):
        leader.read_index(b"r%d" % k)
    rd = net.persist("a")
    assert len([m for m in rd.messages if m.type == MSG_HEARTBEAT]) == 2
    net.stabilize()
    assert [r.context for r in net.reads["a"]] == [b"r%d" % k for k in range(5)]


def test_read_index_waits_for_noop_commit():
    """Thesis §6.4: a new leader serves no read until an entry of its term has committed
    (before that, its commit index may be stale)."""
    net = Net()
    a = net.nodes["a"]
    a.campaign()
    # deliver the (pre-)votes only, so a becomes leader with its no-op uncommitted
    net.drop_if = lambda m: m.type == MSG_APP
    net.stabilize()
    assert a.role == LEADER and a.commit < a.last_index
    a.read_index(b"early")
    net.stabilize()
    assert net.reads["a"] == []
    net.heal()
    a.tick()
    net.stabilize()
    assert [r.context for r in net.reads["a"]] == [b"early"]
    assert net.reads["a"][0].index >= a.last_index


def test_follower_read_index_forwarded_to_leader():
    """Thesis §6.4: a follower asks the leader for the read index and serves the read once
    its state machine has applied up to it."""
    net, leader = _leader_with_reads()
    b = net.nodes["b"]
    b.read_index(b"fr")
    rd = net.persist("b")
    assert [(m.type, m.to, m.context) for m in rd.messages] == [(MSG_READ_INDEX, "a", b"fr")]
    net.stabilize()
    assert net.reads["b"] == [ReadState(leader.commit, b"fr")]


def test_read_index_fails_without_leader():
    """Thesis §6.4: a server that knows no leader cannot serve a linearizable read."""
    n = make("a", term=1)
    n.read_index(b"x")
    assert n.ready().failed_reads == [b"x"]


def test_reads_fail_when_leadership_is_lost():
    """Thesis §6.4: reads a deposed leader was confirming, and reads a follower forwarded
    to a leader that is gone, are failed rather than left hanging."""
    net, leader = _leader_with_reads()
    net.isolate("a")
    leader.read_index(b"lost")
    net.nodes["b"].read_index(b"fwd")
    net.persist("b")
    for _ in range(2 * CFG.election_tick):
        leader.tick()
    assert leader.role == FOLLOWER
    assert net.persist("a").failed_reads == [b"lost"]
    net.tick_all(4 * CFG.election_tick)
    assert b"fwd" in net.failed["b"]


def test_minority_leader_serves_no_safe_read():
    """Thesis §6.4: a leader cut off from the majority never confirms a read round."""
    net, leader = _leader_with_reads()
    net.isolate("a")
    leader.read_index(b"r")
    net.stabilize()
    leader.tick()
    net.stabilize()
    assert net.reads["a"] == []


def test_lease_read_served_without_round():
    """Thesis §6.4.1: with a lease (CheckQuorum bounds how long a deposed leader can think
    it leads), the leader answers with its commit index at once."""
    net, leader = _leader_with_reads(replace(CFG, read_only_lease=True))
    leader.read_index(b"l")
    rd = net.persist("a")
    assert rd.read_states == [ReadState(leader.commit, b"l")]
    assert not [m for m in rd.messages if m.type == MSG_HEARTBEAT]


def test_single_node_read():
    """Thesis §6.4: a lone voter is its own majority: reads are served once its no-op
    commits."""
    net = Net(("a",))
    net.elect("a")
    net.nodes["a"].read_index(b"s")
    net.stabilize()
    assert net.reads["a"] == [ReadState(net.nodes["a"].commit, b"s")]


# ------------------------------------------------------------------ leadership transfer
def test_transfer_to_up_to_date_follower():
    """Thesis §3.10: the leader sends TimeoutNow to an up-to-date target, which starts an
    election at once (skipping PreVote) and wins."""
    net, leader = _leader_with_reads()
    term = leader.term
    leader.transfer_leader("b")
    rd = net.persist("a")
    assert [(m.type, m.to) for m in rd.messages] == [(MSG_TIMEOUT_NOW, "b")]
    net.stabilize()
    assert net.leaders() == ["b"] and net.nodes["b"].term == term + 1


def test_transfer_to_lagging_follower_catches_it_up_first():
    """Thesis §3.10: the leader first brings the target's log up to date, then sends
    TimeoutNow."""
    net, leader = _leader_with_reads()
    net.isolate("c")
    for k in range(5):
        leader.propose(b"%d" % k)
    net.stabilize()
    net.heal()
    leader.transfer_leader("c")
    net.stabilize()
    assert net.leaders() == ["c"]
    assert net.data("c")[-5:] == [b"%d" % k for k in range(5)]


def test_proposals_dropped_during_transfer():
    """Thesis §3.10: while a transfer is in progress the leader stops accepting
    proposals (they would likely be lost)."""
    net, leader = _leader_with_reads()
    net.isolate("c")
    leader.propose(b"y")
    net.stabilize()
    leader.transfer_leader("c")
    with pytest.raises(ProposalDropped):
        leader.propose(b"z")


def test_transfer_aborts_after_election_timeout():
    """Thesis §3.10: if the transfer does not complete within an election timeout, the
    leader aborts it and resumes accepting proposals."""
    net, leader = _leader_with_reads()
    net.isolate("c")
    leader.propose(b"y")
    net.stabilize()
    leader.transfer_leader("c")
    assert leader.lead_transferee == "c"
    for _ in range(CFG.election_tick):
        leader.tick()
    assert leader.lead_transferee == "" and leader.role == LEADER
    leader.propose(b"after")


def test_follower_forwards_transfer_request():
    """Thesis §3.10: a transfer asked of a follower is forwarded to the leader (the message
    names the target in `frm`)."""
    net, _ = _leader_with_reads()
    net.nodes["b"].transfer_leader("b")
    rd = net.persist("b")
    assert [(m.type, m.to, m.frm) for m in rd.messages] == [(MSG_TRANSFER_LEADER, "a", "b")]
    net.stabilize()
    assert net.leaders() == ["b"]


def test_transfer_without_leader_raises():
    """Thesis §3.10: with no known leader there is no one to transfer from."""
    with pytest.raises(NotLeader) as exc:
        make("a", term=1).transfer_leader("b")
    assert exc.value.leader == ""


def test_transfer_to_unknown_or_self_ignored():
    """Thesis §3.10: only a voting member other than the leader can receive leadership."""
    net, leader = _leader_with_reads()
    leader.transfer_leader("zz")
    leader.transfer_leader("a")
    assert leader.lead_transferee == "" and leader.stats["transfer_ignored"] == 2


def test_propose_on_follower_names_leader():
    """§5.1: clients that contact a follower are redirected to the leader."""
    net, _ = _leader_with_reads()
    with pytest.raises(NotLeader) as exc:
        net.nodes["b"].propose(b"x")
    assert exc.value.leader == "a"

"""The Raft paper's rules, in the spirit of etcd-io/raft's raft_paper_test.go (Ongaro &
Ousterhout, "In Search of an Understandable Consensus Algorithm", §5)."""
from __future__ import annotations

import pytest

from agent.raft.core import RaftConfig, RaftCore
from agent.raft.messages import (
    CANDIDATE, FOLLOWER, LEADER, MSG_APP, MSG_APP_RESP, MSG_HEARTBEAT, MSG_PRE_VOTE_RESP,
    MSG_VOTE, MSG_VOTE_RESP, PRE_CANDIDATE, Message,
)

from .helpers import Net, app, drain, entries, make

NO_PV = RaftConfig(election_tick=10, heartbeat_tick=1, pre_vote=False, check_quorum=False)


def become(node: RaftCore, role: str, ids=("a", "b", "c")) -> None:
    """Drive `node` into `role` by hand (votes delivered directly)."""
    if role == FOLLOWER:
        return
    node.campaign()
    if node.role == PRE_CANDIDATE and role != PRE_CANDIDATE:
        node.step(Message(MSG_PRE_VOTE_RESP, node.id, "b", node.term + 1))   # granted pre-vote from b
    if role == LEADER:
        node.step(Message(MSG_VOTE_RESP, node.id, "b", node.term))
    assert node.role == role


def test_start_as_follower():
    """§5.2: when servers start up, they begin as followers."""
    n = make("a")
    assert n.role == FOLLOWER and n.leader == ""


@pytest.mark.parametrize("role", [FOLLOWER, CANDIDATE, LEADER])
def test_update_term_from_message(role):
    """§5.1: a server that sees a larger term adopts it; a candidate or leader that discovers
    its term is out of date reverts to follower."""
    n = make("a", cfg=NO_PV)
    become(n, role)
    n.step(app("b", "a", 10, 0, 0))
    assert n.term == 10 and n.role == FOLLOWER and n.leader == "b"


def test_reject_stale_term_message():
    """§5.1: a server that receives a request with a stale term number rejects it (the
    stale leader is told the newer term)."""
    n = make("a", term=5)
    n.step(app("b", "a", 3, 0, 0, entries(3)))
    assert n.last_index == 0
    msgs = drain(n)
    assert [(m.type, m.term) for m in msgs] == [(MSG_APP_RESP, 5)]


def test_leader_bcast_beat():
    """§5.2: the leader sends periodic heartbeats (empty AppendEntries) to all followers."""
    n = make("a", cfg=NO_PV)
    become(n, LEADER)
    drain(n)
    n.tick()
    hb = drain(n)
    assert sorted((m.to, m.type) for m in hb) == [("b", MSG_HEARTBEAT), ("c", MSG_HEARTBEAT)]
    assert all(not m.entries for m in hb)


@pytest.mark.parametrize("role", [FOLLOWER, CANDIDATE])
def test_nonleader_start_election(role):
    """§5.2: a follower (or candidate) that hears nothing over an election timeout increments
    its term, becomes a candidate, votes for itself and sends RequestVote to the others."""
    n = make("a", term=1, cfg=NO_PV)
    become(n, role)
    start = n.term
    for _ in range(2 * NO_PV.election_tick):
        n.tick()
    assert n.term == start + 1 and n.role == CANDIDATE and n.vote == "a"
    reqs = [m for m in drain(n) if m.term == n.term]
    assert sorted((m.to, m.type) for m in reqs) == [("b", MSG_VOTE), ("c", MSG_VOTE)]


@pytest.mark.parametrize("size,grants,rejects,want", [
    (1, [], [], LEADER),
    (3, ["b"], [], LEADER),
    (3, ["b", "c"], [], LEADER),
    (5, ["b", "c"], [], LEADER),
    (5, ["b"], [], CANDIDATE),
    (3, [], ["b", "c"], FOLLOWER),
    (5, ["b"], ["c", "d", "e"], FOLLOWER),
    (5, [], [], CANDIDATE),
])
def test_leader_election_in_one_round(size, grants, rejects, want):
    """§5.2: a candidate wins with votes from a majority of the cluster, loses to a
    majority of refusals, and otherwise keeps waiting."""
    ids = "abcde"[:size]
    n = make("a", ids=ids, term=1, cfg=NO_PV)
    n.campaign()
    for g in grants:
        n.step(Message(MSG_VOTE_RESP, "a", g, n.term))
    for r in rejects:
        n.step(Message(MSG_VOTE_RESP, "a", r, n.term, reject=True))
    assert n.role == want


def test_follower_votes_once_per_term():
    """§5.2: each server votes for at most one candidate in a given term,
    first-come-first-served."""
    n = make("a", term=1, cfg=NO_PV)
    n.step(Message(MSG_VOTE, "a", "b", 2))
    n.step(Message(MSG_VOTE, "a", "c", 2))
    n.step(Message(MSG_VOTE, "a", "b", 2))        # a repeated request from b: granted again
    resps = [(m.to, m.reject) for m in drain(n)]
    assert resps == [("b", False), ("c", True), ("b", False)]
    assert n.vote == "b"


def test_candidate_falls_back_on_leader_append():
    """§5.2: a candidate that receives AppendEntries from a leader whose term is at least its
    own recognizes the leader and returns to follower state."""
    for term_delta in (0, 1):
        n = make("a", term=1, cfg=NO_PV)
        n.campaign()
        n.step(app("b", "a", n.term + term_delta, 0, 0))
        assert n.role == FOLLOWER and n.leader == "b"


def test_election_timeout_randomized():
    """§5.2: election timeouts are chosen randomly from a fixed interval
    [election_tick, 2*election_tick), and vary."""
    seen = set()
    for seed in range(50):
        n = make("a", term=1, cfg=NO_PV, seed=seed)
        t = 0
        while n.role != CANDIDATE:
            n.tick()
            t += 1
        assert NO_PV.election_tick <= t < 2 * NO_PV.election_tick
        seen.add(t)
    assert len(seen) > NO_PV.election_tick // 2


def test_election_timeouts_rarely_conflict():
    """§5.2: randomized timeouts make it rare that two followers time out together."""
    clashes = 0
    for seed in range(200):
        a = make("a", term=1, cfg=NO_PV, seed=seed)
        b = make("b", term=1, cfg=NO_PV, seed=seed + 1000)
        while a.role == FOLLOWER and b.role == FOLLOWER:
            a.tick()
            b.tick()
        clashes += a.role == b.role == CANDIDATE
    assert clashes < 40


def test_leader_start_replication():
    """§5.3: the leader appends a command to its log as a new entry, then issues
    AppendEntries to each follower with the previous entry's index and term and its commit."""
    n = make("a", cfg=NO_PV)
    become(n, LEADER)
    drain(n)
    li = n.last_index
    for f in ("b", "c"):    # followers acknowledge the no-op, so both are replicating
        n.step(Message(MSG_APP_RESP, "a", f, n.term, index=li))
    drain(n)
    idx, term = n.propose(b"x")
    assert (idx, term) == (li + 1, n.term)
    msgs = drain(n)
    assert sorted(m.to for m in msgs) == ["b", "c"]
    for m in msgs:
        assert (m.type, m.index, m.log_term) == (MSG_APP, li, n.term)
        assert [(e.index, e.data) for e in m.entries] == [(li + 1, b"x")]


def test_leader_commits_after_majority_and_tells_followers():
    """§5.3: an entry is committed once the leader has replicated it on a majority; the
    leader then applies it and includes the commit index in later AppendEntries."""
    net = Net()
    leader = net.elect("a")
    net.cut.add(("a", "c"))
    idx, _ = leader.propose(b"x")
    net.stabilize()
    assert leader.commit == idx and net.data("a") == [b"x"]
    assert net.nodes["b"].commit == idx          # b learns the commit from the next MsgApp
    assert net.nodes["c"].commit < idx


@pytest.mark.parametrize("size,acks,committed", [
    (1, [], True), (3, [], False), (3, ["b"], True), (3, ["b", "c"], True),
    (5, ["b"], False), (5, ["b", "c"], True), (5, ["b", "c", "d"], True),
])
def test_leader_acknowledges_commit(size, acks, committed):
    """§5.3: the leader commits an entry once a majority (itself included, once its own copy
    is persisted) stores it."""
    ids = "abcde"[:size]
    n = make("a", ids=ids, cfg=NO_PV)
    n.campaign()
    for f in ids[1:]:
        n.step(Message(MSG_VOTE_RESP, "a", f, n.term))
    assert n.role == LEADER
    drain(n)                                   # the no-op is persisted by this advance
    li = n.last_index
    for f in acks:
        n.step(Message(MSG_APP_RESP, "a", f, n.term, index=li))
    assert (n.commit == li) is committed


def test_leader_counts_itself_only_once_persisted():
    """§5.3 / §10.2.1 of the thesis: the leader's own log counts toward a majority only once
    its entries are on its disk (advance()); followers alone can still form a majority."""
    n = make("a", cfg=NO_PV)
    become(n, LEADER)
    li = n.last_index
    n.step(Message(MSG_APP_RESP, "a", "b", n.term, index=li))
    assert n.commit < li                      # leader's no-op not persisted yet
    n.step(Message(MSG_APP_RESP, "a", "c", n.term, index=li))
    assert n.commit == li                     # b and c are a majority on their own


def test_leader_commits_preceding_entries():
    """§5.3: committing an entry of the current term also commits all preceding entries,
    including those of earlier terms."""
    for prior in ([], [2], [1, 1], [1, 2]):
        n = make("a", terms=prior, term=2, cfg=NO_PV)
        become(n, LEADER)
        drain(n)
        n.step(Message(MSG_APP_RESP, "a", "b", n.term, index=n.last_index))
        assert n.commit == n.last_index == len(prior) + 1


def test_follower_commits_up_to_leader_commit():
    """§5.3: once a follower learns an entry is committed it applies it; it never commits
    past the entries it knows match the leader."""
    n = make("a", term=1)
    n.step(app("b", "a", 1, 0, 0, entries(1, 1, 1), commit=2))
    rd = n.ready()
    n.advance(rd)
    assert n.commit == 2
    assert [e.index for e in n.ready().committed] == [1, 2]
    # A heartbeat-free MsgApp claiming commit 10 commits only what it showed us (index 3).
    n.step(app("b", "a", 1, 3, 1, [], commit=10))
    assert n.commit == 3


@pytest.mark.parametrize("term,index,ok,hint", [
    (0, 0, True, 0),   # the empty prefix always matches
    (1, 1, True, 0),
    (2, 2, True, 0),
    (1, 2, False, 1),  # term mismatch at 2: our last index with term <= 1 is 1
    (3, 3, False, 2),  # index 3 is beyond our log: hint our last index
])
def test_follower_checks_msg_app(term, index, ok, hint):
    """§5.3: if the follower does not find an entry with the same index and term as the
    leader's previous entry, it refuses the new entries (with a hint where to retry)."""
    n = make("a", terms=(1, 2), term=2, commit=1)
    n.step(app("b", "a", max(2, term), index, term))
    (resp,) = drain(n)
    assert resp.reject is (not ok)
    if not ok:
        assert resp.index == index and resp.reject_hint == hint


@pytest.mark.parametrize("index,log_term,ents,want", [
    (2, 2, [3], [1, 2, 3]),
    (1, 1, [3, 4], [1, 3, 4]),      # a conflicting suffix is replaced
    (0, 0, [1], [1, 2]),            # all match: nothing is truncated
    (0, 0, [3], [3]),
])
def test_follower_append_entries(index, log_term, ents, want):
    """§5.3: if an existing entry conflicts with a new one (same index, different terms),
    delete it and all that follow; append any new entries not already in the log."""
    n = make("a", terms=(1, 2), term=2)
    n.step(app("b", "a", 4, index, log_term, entries(*ents, start=index + 1)))
    assert [n._log.term(i) for i in range(1, n.last_index + 1)] == want


def test_stale_duplicate_reordered_app_does_not_truncate():
    """§5.3: log matching — an AppendEntries that arrives late, twice or out of order never
    removes entries that match; only a real conflict truncates."""
    n = make("a", term=1)
    first = app("b", "a", 1, 0, 0, entries(1, 1))
    second = app("b", "a", 1, 2, 1, entries(1, 1, start=3))
    n.step(first)
    n.step(second)
    n.step(first)                  # duplicate, reordered after the later one
    n.step(app("b", "a", 1, 1, 1, entries(1, start=2)))   # stale prefix
    assert n.last_index == 4
    resps = [m.index for m in drain(n)]
    assert resps == [2, 4, 2, 2]


def test_leader_syncs_follower_logs_figure7():
    """§5.3 (Figure 7): the leader forces followers' logs to duplicate its own, whatever they
    hold: missing entries, extra uncommitted entries, or both."""
    leader_terms = (1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
    follower_logs = [
        (1, 1, 1, 4, 4, 5, 5, 6, 6),              # (a) missing one
        (1, 1, 1, 4),                             # (b) missing many
        (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6),        # (c) extra entry
        (1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7),     # (d) extra entries of a newer term
        (1, 1, 1, 4, 4, 4, 4),                    # (e) missing and extra
        (1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),        # (f) extra old-term entries
    ]
    for flog in follower_logs:
        net = Net(("a", "b", "c"), cfg=NO_PV, bootstrap=False)
        net.nodes["a"] = make("a", terms=leader_terms, term=8, commit=0, cfg=NO_PV)
        net.nodes["b"] = make("b", terms=flog, term=8, cfg=NO_PV)
        net.nodes["c"] = make("c", terms=(1, 1, 1), term=8, cfg=NO_PV)   # votes for a
        net.elect("a")
        a, b = net.nodes["a"], net.nodes["b"]
        assert [b._log.term(i) for i in range(1, b.last_index + 1)] == \
               [a._log.term(i) for i in range(1, a.last_index + 1)], flog


@pytest.mark.parametrize("voter_terms,cand_index,cand_term,granted", [
    ((2, 2), 2, 2, True), ((2, 2), 3, 2, True), ((2, 2), 1, 2, False),
    ((2, 2), 1, 3, True), ((2, 2), 5, 1, False),
])
def test_voter_election_restriction(voter_terms, cand_index, cand_term, granted):
    """§5.4.1: the voter denies its vote if its own log is more up-to-date than the
    candidate's (compare last terms, then lengths)."""
    n = make("a", terms=voter_terms, term=3, cfg=NO_PV)
    n.step(Message(MSG_VOTE, "a", "b", 4, cand_term, cand_index))
    (resp,) = drain(n)
    assert resp.reject is (not granted)
    assert (n.vote == "b") is granted


def test_leader_only_commits_current_term_by_counting_figure8():
    """§5.4.2 (Figure 8): a leader never commits an entry of a previous term by counting
    replicas; only once an entry of its own term is replicated on a majority."""
    n = make("a", ids="abcde", terms=(1, 2), term=4, commit=1, cfg=NO_PV)
    n.campaign()
    for f in "bc":
        n.step(Message(MSG_VOTE_RESP, "a", f, n.term))
    assert n.role == LEADER
    drain(n)
    # b and c acknowledge index 2 (term 2) only: a majority holds it, but it is term 2.
    for f in "bc":
        n.step(Message(MSG_APP_RESP, "a", f, n.term, index=2))
    assert n.commit == 1
    for f in "bc":
        n.step(Message(MSG_APP_RESP, "a", f, n.term, index=3))
    assert n.commit == 3


def test_candidate_restarts_election_after_timeout():
    """§5.2: a candidate that neither wins nor loses times out and starts a new election
    with a new term."""
    n = make("a", term=1, cfg=NO_PV)
    n.campaign()
    t = n.term
    for _ in range(2 * NO_PV.election_tick):
        n.tick()
    assert n.role == CANDIDATE and n.term == t + 1


def test_heartbeat_commit_bounded_by_match():
    """§5.3: the leader tells each follower a commit index no larger than what it knows the
    follower holds (min(match, commit)), so heartbeats never commit unmatched entries."""
    net = Net()
    leader = net.elect("a")
    net.cut.add(("a", "c"))
    leader.propose(b"x")
    net.stabilize()
    net.heal()
    leader.tick()
    hb = [m for m in drain(leader) if m.type == MSG_HEARTBEAT]
    by_to = {m.to: m.commit for m in hb}
    assert by_to["b"] == leader.commit
    assert by_to["c"] == leader._prs["c"].match < leader.commit

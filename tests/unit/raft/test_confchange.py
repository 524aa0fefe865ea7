"""Single-server membership changes and learners (Ongaro's thesis §4.1-§4.2, §4.2.1 for
non-voting members; etcd's learners; Consul's non-voters)."""
from __future__ import annotations

import pytest

from agent.raft.core import ConfChangeRejected, NotLeader, RaftConfig
from agent.raft.messages import (
    ENTRY_CONFIG, FOLLOWER, LEADER, MSG_APP, MSG_APP_RESP, MSG_VOTE_RESP, Entry, Message,
    Server, encode_configuration,
)

from .helpers import CFG, Net, app, entries, make, servers


def grow(net: Net, nid: str, voter: bool = True) -> tuple[int, int]:
    """Add a brand-new (unbootstrapped) node and propose it into the configuration."""
    net.add(nid)
    leader = net.nodes[net.leaders()[0]]
    new = tuple(leader.configuration()) + (Server(nid, f"{nid}:8300", voter),)
    idx = leader.propose_conf_change(new)
    net.stabilize()
    return idx


def test_add_voter_takes_effect_on_append():
    """Thesis §4.1: a server uses the latest configuration in its log, committed or not."""
    net = Net()
    leader = net.elect("a")
    net.add("d")
    net.isolate("d")
    net.cut.update({("a", "b"), ("a", "c")})
    new = tuple(leader.configuration()) + (Server("d", "d:8300"),)
    idx, _ = leader.propose_conf_change(new)
    assert leader.configuration() == new
    assert [s.id for s in leader.committed_configuration()] == ["a", "b", "c"]
    assert "d" in leader.status()["progress"]
    net.heal()
    net.stabilize()
    assert leader.commit >= idx
    assert net.nodes["d"].configuration() == new
    assert net.nodes["d"].committed_configuration() == new


def test_added_voter_counts_toward_quorum():
    """Thesis §4.1: once d is a voter, a majority is 3 of 4: a and b alone commit nothing."""
    net = Net()
    leader = net.elect("a")
    grow(net, "d")
    net.isolate("c")
    net.isolate("d")
    idx, _ = leader.propose(b"x")
    net.stabilize()
    assert leader.commit < idx
    net.heal()
    leader.tick()
    net.stabilize()
    assert leader.commit >= idx and net.data("d") == [b"x"]


def test_remove_follower_shrinks_quorum():
    """Thesis §4.1: after c is removed, a and b are a majority by themselves."""
    net = Net()
    leader = net.elect("a")
    leader.propose_conf_change(servers("ab"))
    net.stabilize()
    assert [s.id for s in leader.committed_configuration()] == ["a", "b"]
    assert "c" not in leader.status()["progress"]
    net.isolate("c")
    idx, _ = leader.propose(b"y")
    net.stabilize()
    assert leader.commit >= idx


def test_learner_gets_log_but_counts_for_nothing():
    """Thesis §4.2.1: a non-voting member receives the log but is not counted for commit or
    elections, and never campaigns."""
    net = Net()
    leader = net.elect("a")
    grow(net, "d", voter=False)
    assert net.nodes["d"].commit == leader.commit
    net.isolate("b")
    net.isolate("c")
    idx, _ = leader.propose(b"x")
    net.stabilize()
    assert net.nodes["d"].last_index >= idx and leader.commit < idx
    d = net.nodes["d"]
    term = d.term
    net.isolate("d")
    for _ in range(10 * CFG.election_tick):
        d.tick()
    d.campaign()
    assert d.role == FOLLOWER and d.term == term
    assert d.stats["campaign_refused_not_voter"] == 1


def test_learner_promotion():
    """Thesis §4.2.1: once caught up, a non-voter is promoted to voter by a configuration
    change that flips only its voting flag; then it counts."""
    net = Net()
    leader = net.elect("a")
    grow(net, "d", voter=False)
    promoted = tuple(s if s.id != "d" else Server("d", "d:8300", True)
                     for s in leader.configuration())
    leader.propose_conf_change(promoted)
    net.stabilize()
    assert net.nodes["d"].committed_configuration() == promoted
    assert not leader.status()["progress"]["d"]["learner"]
    net.isolate("c")
    net.isolate("b")
    idx, _ = leader.propose(b"z")
    net.stabilize()
    assert leader.commit < idx      # 2 of 4 voters
    net.heal()
    net.isolate("c")
    leader.tick()
    net.stabilize()
    assert leader.commit >= idx     # a, b, d


def test_removed_leader_steps_down_once_committed():
    """Thesis §4.2.2: a leader removed from the configuration manages the cluster until the
    entry commits (not counting itself), then steps down; it never campaigns again."""
    net = Net()
    leader = net.elect("a")
    net.cut.update({("a", "b"), ("a", "c")})
    leader.propose_conf_change(servers("bc"))
    net.stabilize()
    assert leader.role == LEADER              # not committed yet
    net.heal()
    leader.tick()
    net.stabilize()
    assert leader.role == FOLLOWER and leader.stats["stepped_down_removed"] == 1
    assert all(n.committed_configuration() == tuple(servers("bc")) for n in net.nodes.values())
    net.tick_all(5 * CFG.election_tick)
    assert len(net.leaders()) == 1 and net.leaders()[0] in "bc"
    assert leader.role == FOLLOWER


def test_config_rolls_back_on_truncation():
    """Thesis §4.1: an uncommitted configuration entry removed by log repair stops being
    used: the server falls back to the previous configuration in its log."""
    n = make("b", terms=(1,), term=2, commit=1)
    new = tuple(servers("abcd"))
    cfg_entry = Entry(2, 2, ENTRY_CONFIG, encode_configuration(new))
    n.step(app("a", "b", 2, 1, 1, [cfg_entry], commit=1))
    assert n.configuration() == new and n.committed_configuration() == tuple(servers("abc"))
    n.step(app("c", "b", 3, 1, 1, entries(3, start=2), commit=1))
    assert n.configuration() == tuple(servers("abc"))


def test_one_change_at_a_time():
    """Thesis §4.1: a leader does not start a configuration change until the previous one
    has committed."""
    net = Net()
    leader = net.elect("a")
    net.cut.update({("a", "b"), ("a", "c")})
    leader.propose_conf_change(servers("abcd"))
    with pytest.raises(ConfChangeRejected, match="not committed"):
        leader.propose_conf_change(servers("abc"))
    net.heal()
    leader.tick()
    net.stabilize()
    leader.propose_conf_change(servers("abc"))


def test_change_refused_before_noop_commits():
    """Thesis §4.1 (the 2015 fix): a new leader makes no configuration change until an
    entry of its own term has committed."""
    net = Net()
    a = net.nodes["a"]
    a.campaign()
    net.drop_if = lambda m: m.type == MSG_APP
    net.stabilize()
    assert a.role == LEADER
    with pytest.raises(ConfChangeRejected, match="no-op"):
        a.propose_conf_change(servers("abcd"))


@pytest.mark.parametrize("new,why", [
    (servers("abcde"), "one server"),              # two added
    (servers("a"), "one server"),                  # two removed
    (servers("abd"), "one server"),                # one out, one in
    (servers("abc"), "not change"),
    (servers("abc", learners="abc"), "voter"),
    (servers("aab"), "twice"),
])
def test_refused_changes(new, why):
    """Thesis §4.1: only one server may be added, removed or changed per configuration
    change, and a configuration needs at least one voter."""
    net = Net()
    leader = net.elect("a")
    with pytest.raises(ConfChangeRejected, match=why):
        leader.propose_conf_change(new)


def test_address_change_allowed_and_not_leader_refused():
    """Thesis §4.1: changing one server's address is a one-server change; only the leader
    proposes changes."""
    net = Net()
    leader = net.elect("a")
    moved = tuple(s if s.id != "c" else Server("c", "c:9999") for s in leader.configuration())
    leader.propose_conf_change(moved)
    net.stabilize()
    assert net.nodes["c"].committed_configuration() == moved
    with pytest.raises(NotLeader):
        net.nodes["b"].propose_conf_change(servers("ab"))


def test_member_removed_by_uncommitted_entry_can_still_campaign():
    """Thesis §4.2.2: a server removed by a configuration entry that is not committed yet
    may still campaign (it may hold the only copy of that entry); its votes are counted in
    the new configuration, and once elected it commits the entry and steps down."""
    c = make("c", ids="ac", terms=(1,), term=1, commit=1,
             cfg=RaftConfig(pre_vote=False, check_quorum=False))
    only_a = tuple(servers("a"))
    c.step(app("a", "c", 1, 1, 1, [Entry(1, 2, ENTRY_CONFIG, encode_configuration(only_a))],
               commit=1))
    assert c.configuration() == only_a and c.commit == 1
    c.campaign()
    assert c.role == "candidate"
    c.step(Message(MSG_VOTE_RESP, "c", "a", c.term))
    assert c.role == LEADER
    rd = c.ready()
    c.advance(rd)
    c.step(Message(
        MSG_APP_RESP, "c", "a", c.term, index=c.last_index))
    assert c.commit == c.last_index and c.role == FOLLOWER

"""Network areas on the simulator (agent/sim/areas.py): DCs in a tree, one WAN-profile pool
per edge, a router per server fed by `apply_member_event`. Routes follow adjacency only;
when a whole DC dies its neighbours detect it (with the suspicion timer memberlist-wire.md
§4.5 predicts), route to it until a rebalance finds no server answering, and get "No path
to datacenter" once the pool reaps it."""
from __future__ import annotations

import random

import pytest

from agent.router.core import NoPath, Router, apply_member_event
from agent.sim.areas import (NO_PATH, ROUTE, UNREACHABLE, AreaSim, AreaTree, run_scenario,
                             suspicion_prediction)

TAGS = {"role": "consul", "dc": "dc2", "port": "8300", "id": "x"}


def test_failed_event_keeps_an_offline_manager_offline():
    """Consul's FailServer only rotates: a failed event after a rebalance found no server
    answering must not put the dead DC back in use (the tree run found this)."""
    r = Router("dc1", random.Random(1))
    r.add_area("a")
    for i in (1, 2):
        apply_member_event(r, "a", "member-join", f"s{i}.dc2", f"10.0.0.{i}", TAGS, False, 0.0)
    m = r.manager("a", "dc2")
    r.rebalanced(m, list(m.servers), None, 1.0)            # no ping answered
    assert m.offline
    apply_member_event(r, "a", "member-failed", "s1.dc2", "10.0.0.1", TAGS, True, 2.0)
    assert m.offline and [s.name for s in m.servers] == ["s2.dc2", "s1.dc2"]
    apply_member_event(r, "a", "member-join", "s1.dc2", "10.0.0.1", TAGS, False, 3.0)
    assert not m.offline                                   # back: AddServer clears it
    # a failed member never seen before is added (at the back), as when seeding a path
    apply_member_event(r, "a", "member-failed", "s3.dc2", "10.0.0.3", TAGS, True, 4.0)
    assert [s.name for s in m.servers][-1] == "s3.dc2"
    assert apply_member_event(r, "a", "member-join", "c1", "10.0.0.9", {"role": "node"},
                              False, 5.0) is None


def test_trees():
    t = AreaTree.balanced(13)
    assert t.neighbours("dc1") == ["dc2", "dc3", "dc4"]
    assert t.neighbours("dc2") == ["dc1", "dc5", "dc6", "dc7"]
    assert (t.interior(), t.leaf()) == ("dc2", "dc13")
    r = AreaTree.random(30, random.Random(4))
    assert len(r.edges) == 29 and len({b for _, b in r.edges}) == 29


def test_routes_follow_adjacency_only():
    tree = AreaTree.balanced(13)
    sim = AreaSim(tree, seed=7)
    sim.run_until(sim.converged, within=600, check_every=0.5)
    sim.run_for(10)
    for s in sim.all_servers():
        assert s.router.datacenters() == sorted({s.dc, *tree.neighbours(s.dc)})
        for dc in tree.dcs:
            if dc == s.dc or dc in tree.neighbours(s.dc):
                continue
            with pytest.raises(NoPath):
                s.router.find_route(dc)
    assert sim.route_problems() == [] and sim.violations == []
    assert not sim.failures                                # nobody was ever failed


def check(o) -> None:
    everyone = [f"s{i}.{dc}" for dc in o.neighbours for i in range(1, o.servers + 1)]
    assert o.violations == [] and o.route_problems == [], (o.violations, o.route_problems)
    assert sorted(o.detect_s) == sorted(everyone)          # every neighbour server saw it
    assert sorted(o.nopath_s) == sorted(everyone)          # ... and ended with NoPath
    assert o.false_failures == 0
    # every suspicion timer that declared a dead server ran what §4.5 predicts for its
    # number of confirmations (+ the last-chance ping): virtual time, exact
    assert o.timers and o.timer_error_s < 1e-6, o.timers
    for name in everyone:
        # soft fail: routed until a rebalance found nobody answering, then NoPath after reap
        assert o.unreachable_s[name] < o.nopath_s[name]
        assert o.detect_s[name] < o.reap_s[name] <= o.nopath_s[name]
        assert o.reap_s[name] - o.detect_s[name] > o.reconnect_timeout


@pytest.mark.parametrize("kind,seed", [("interior", 1), ("leaf", 2)])
def test_dead_dc_is_detected_by_its_neighbours_then_no_path(kind, seed):
    o = run_scenario(13, seed, kind=kind, reconnect_timeout=120.0)
    assert o.victim == ("dc2" if kind == "interior" else "dc13")
    check(o)


def test_route_states_only_move_forward():
    sim = AreaSim(AreaTree.balanced(13), seed=3, reconnect_timeout=120.0)
    sim.run_until(sim.converged, within=600, check_every=0.5)
    sim.watch("dc2")
    sim.kill_dc("dc2")
    sim.run_until(lambda: all(log[-1][1] == NO_PATH for log in sim.route_log.values()),
                  within=1200)
    for name, log in sim.route_log.items():
        assert [st for _, st in log] == [ROUTE, UNREACHABLE, NO_PATH], (name, log)


def test_deterministic_for_a_seed():
    a = run_scenario(13, 9, reconnect_timeout=60.0)
    b = run_scenario(13, 9, reconnect_timeout=60.0)
    assert (a.detect_s, a.unreachable_s, a.nopath_s, a.packets) == \
        (b.detect_s, b.unreachable_s, b.nopath_s, b.packets)


def test_prediction_matches_the_spec_examples():
    from _core.gossip_config import GossipConfig
    wan = GossipConfig.wan()
    p = suspicion_prediction(wan, 20, 0)                   # memberlist-wire.md §4.5 example
    assert (p["k"], p["min_s"], round(p["max_s"], 2)) == (4, 39.03, 234.18)
    assert suspicion_prediction(wan, 5, 4)["k"] == 0       # n ≤ 5: fixed 30 s
    p = suspicion_prediction(wan, 6, 2)
    assert (p["min_s"], p["max_s"], p["timer_s"]) == (30.0, 180.0, 77.609)


@pytest.mark.slow
def test_random_tree_with_loss():
    o = run_scenario(40, 4, shape="random", kind="interior", loss=0.01, reconnect_timeout=120.0)
    check(o)


@pytest.mark.slow
def test_hundred_dcs():
    o = run_scenario(100, 1, kind="interior", reconnect_timeout=120.0)
    assert len(o.neighbours) == 4
    check(o)

"""The router core (agent/router/core.py): Consul's per-path, per-DC server managers."""
from __future__ import annotations

import random

import pytest

from agent.router.core import (UNREACHABLE, WAN_AREA, DCUnreachable, NoPath, Router, Server,
                               server_from_tags)


def srv(node: str, dc: str, port: int = 8300) -> Server:
    return Server(f"{node}.{dc}", node, dc, ("127.0.0.1", port))


def router() -> Router:
    r = Router("dc1", random.Random(1))
    r.add_area(WAN_AREA)
    return r


def test_server_from_tags_needs_role_dc_and_port():
    tags = {"role": "consul", "dc": "dc2", "port": "8300", "id": "x"}
    s = server_from_tags("a.dc2", "10.0.0.1", tags)
    assert s == Server("a.dc2", "a", "dc2", ("10.0.0.1", 8300), False, "x")
    assert server_from_tags("a.dc2", "10.0.0.1", {**tags, "role": "node"}) is None
    assert server_from_tags("a.dc2", "10.0.0.1", {**tags, "port": "x"}) is None
    assert server_from_tags("a", "10.0.0.1", {k: v for k, v in tags.items() if k != "dc"}) is None
    assert server_from_tags("a.dc2", "1.2.3.4", {**tags, "use_tls": "1"}).use_tls


def test_unknown_dc_has_no_path():
    r = router()
    with pytest.raises(NoPath, match="No path to datacenter"):
        r.find_route("dc9")
    with pytest.raises(NoPath):
        r.candidates("dc9")


def test_front_server_is_used_and_failure_rotates_it_to_the_back():
    r = router()
    a, b, c = srv("a", "dc2"), srv("b", "dc2"), srv("c", "dc2")
    for s in (a, b, c):
        r.add_server(WAN_AREA, s, 0)
    assert r.find_route("dc2") == (WAN_AREA, a)
    r.notify_failed(WAN_AREA, b)                 # not in front: nothing moves
    assert r.find_route("dc2")[1] == a
    r.notify_failed(WAN_AREA, a)
    assert r.find_route("dc2")[1] == b
    assert [s.name for _, s in r.candidates("dc2")] == ["b.dc2", "c.dc2", "a.dc2"]


def test_soft_fail_keeps_the_server_until_it_leaves():
    r = router()
    a, b = srv("a", "dc2"), srv("b", "dc2")
    r.add_server(WAN_AREA, a, 0)
    r.add_server(WAN_AREA, b, 0)
    r.fail_server(WAN_AREA, "a.dc2", "dc2")
    assert [s.name for _, s in r.candidates("dc2")] == ["b.dc2", "a.dc2"]
    r.remove_server(WAN_AREA, "b.dc2", "dc2")
    r.remove_server(WAN_AREA, "a.dc2", "dc2")
    with pytest.raises(NoPath):                  # last server gone: the DC is gone
        r.find_route("dc2")
    assert r.datacenters() == ["dc1"]


def test_offline_path_is_skipped_for_the_other_one_and_both_offline_is_unreachable():
    r = router()
    r.add_area("area-1")
    w, x = srv("w", "dc2"), srv("x", "dc2", 8301)
    r.add_server(WAN_AREA, w, 0)
    r.add_server("area-1", x, 0)
    assert r.find_route("dc2") == (WAN_AREA, w)
    m = r.manager(WAN_AREA, "dc2")
    r.rebalanced(m, [w], None, 1.0)
    assert m.offline
    assert r.find_route("dc2") == ("area-1", x)
    assert r.candidates("dc2") == [("area-1", x), (WAN_AREA, w)]
    r.rebalanced(r.manager("area-1", "dc2"), [x], None, 1.0)
    with pytest.raises(DCUnreachable, match=UNREACHABLE):
        r.find_route("dc2")
    r.add_server(WAN_AREA, w, 2.0)               # a server (re)appears: online again
    assert r.find_route("dc2") == (WAN_AREA, w)


def test_rebalance_puts_the_answering_server_in_front_and_keeps_concurrent_changes():
    r = router()
    a, b, c, d = (srv(n, "dc2") for n in "abcd")
    for s in (a, b, c):
        r.add_server(WAN_AREA, s, 0)
    m = r.manager(WAN_AREA, "dc2")
    order = [c, a, b]
    r.remove_server(WAN_AREA, "b.dc2", "dc2")    # changes while the pings ran
    r.add_server(WAN_AREA, d, 0)
    r.rebalanced(m, order, a, 10.0)
    assert [s.name for s in m.servers] == ["a.dc2", "c.dc2", "d.dc2"]
    assert m.rebalance_at >= 10.0 + 120


def test_due_managers_and_intervals():
    r = router()
    r.add_server(WAN_AREA, srv("a", "dc2"), 0)
    assert r.due(1.0) == []
    m = r.manager(WAN_AREA, "dc2")
    assert 120 <= m.rebalance_at <= 180
    assert r.due(181.0) == [m]


def test_removing_an_area_drops_its_routes():
    r = router()
    r.add_area("area-1")
    r.add_server("area-1", srv("x", "dc3"), 0)
    assert r.datacenters() == ["dc1", "dc3"]
    r.remove_area("area-1")
    with pytest.raises(NoPath):
        r.find_route("dc3")


def test_tls_follows_the_area():
    r = router()
    r.add_area("area-1", use_tls=True)
    r.add_server("area-1", srv("x", "dc3"), 0)
    assert r.find_route("dc3")[1].use_tls
    r.set_tls("area-1", False)
    assert not r.find_route("dc3")[1].use_tls


def test_datacenters_by_distance_min_over_paths_of_upper_median():
    r = router()
    r.add_area("area-1")
    for node, dc in (("s1", "dc1"), ("a", "dc2"), ("b", "dc2"), ("c", "dc2"), ("x", "dc3"),
                     ("y", "dc4")):
        r.add_server(WAN_AREA, srv(node, dc), 0)
    r.add_server("area-1", srv("q", "dc3", 9000), 0)
    rtt = {(WAN_AREA, "a.dc2"): 0.010, (WAN_AREA, "b.dc2"): 0.030, (WAN_AREA, "c.dc2"): 0.020,
           (WAN_AREA, "x.dc3"): 0.050, ("area-1", "q.dc3"): 0.005}
    order = r.datacenters_by_distance(lambda area, s: rtt.get((area, s.name)))
    # dc1 is 0; dc3 0.005 through the area; dc2's median 0.020; dc4 has no coordinate
    assert order == ["dc1", "dc3", "dc2", "dc4"]


def test_datacenters_by_distance_ties_are_alphabetical():
    r = router()
    for dc in ("dc4", "dc3", "dc2"):
        r.add_server(WAN_AREA, srv("a", dc), 0)
    assert r.datacenters_by_distance(lambda a, s: None) == ["dc1", "dc2", "dc3", "dc4"]

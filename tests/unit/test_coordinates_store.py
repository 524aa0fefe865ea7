"""Coordinates in the state store, `?near=` sorting and the leader's update batching (pure)."""
from __future__ import annotations

import math
import random

from agent.coordinate_sender import PendingUpdates, rate_scaled_interval
from agent.state.catalog import deregister_command, register_command
from agent.state.coordinates import (COORDINATE_BATCH_UPDATE, batch_update_command,
                                     compute_distance, intersect, parse_coordinate)
from agent.state.store import Store

from _core.vivaldi import Coordinate


def coord(*vec: float, height: float = 1e-5, adjustment: float = 0.0, error: float = 1.5) -> dict:
    v = list(vec) + [0.0] * (8 - len(vec))
    return {"Adjustment": adjustment, "Error": error, "Height": height, "Vec": v}


def store(*nodes: str) -> Store:
    s = Store()
    for i, n in enumerate(nodes, 1):
        s.apply(i, register_command({"Node": n, "Address": f"10.0.0.{i}"}))
    return s


def update(s: Store, index: int, *rows: tuple) -> object:
    return s.apply(index, batch_update_command(
        [{"Node": n, "Segment": "", "Coord": c} for n, c in rows]))


def test_batch_update_upserts_known_nodes_and_moves_the_index():
    s = store("n1", "n2")
    assert batch_update_command([])[0] == COORDINATE_BATCH_UPDATE == 6
    assert update(s, 10, ("n1", coord(0.001)), ("N2", coord(0.002))) is True
    idx, rows = s.coordinates.list()
    assert idx == 10 and s.indexes["coordinates"] == 10
    assert [(r["Node"], r["Segment"], r["Coord"]["Vec"][0]) for r in rows] == \
        [("n1", "", 0.001), ("N2", "", 0.002)]
    # the latest wins; node names match case-insensitively
    update(s, 11, ("N1", coord(0.005)))
    assert s.coordinates.node("n1") == (11, [{"Node": "N1", "Segment": "", "Coord": coord(0.005)}])
    # reads are copies
    _, rows = s.coordinates.list()
    rows[0]["Coord"]["Vec"][0] = 99.0
    assert s.coordinates.list()[1][0]["Coord"]["Vec"][0] == 0.005


def test_unknown_nodes_and_bad_coordinates_are_dropped_silently():
    s = store("n1")
    nan = coord(float("nan"))
    inf = coord(height=float("inf"))
    assert update(s, 5, ("ghost", coord(0.1)), ("n1", nan), ("n1", inf), ("", coord())) is True
    assert s.coordinates.list() == (5, [])         # nothing stored, but the index moved
    # malformed entries and bodies are skipped, never fatal
    assert s.apply(6, bytes((6,)) + b"\x01") is True
    assert s.apply(7, batch_update_command([{"Node": "n1", "Coord": {"Vec": "x"}}])) is True
    assert s.coordinates.list() == (7, [])


def test_deregistering_a_node_deletes_its_coordinates():
    s = store("n1", "n2")
    update(s, 10, ("n1", coord(0.001)), ("n2", coord(0.002)))
    s.apply(11, deregister_command({"Node": "n1"}))
    idx, rows = s.coordinates.list()
    assert idx == 11 and [r["Node"] for r in rows] == ["n2"]
    # deleting a service or a check leaves coordinates alone (and their index)
    s.apply(12, register_command({"Node": "n2", "Address": "10.0.0.2",
                                  "Service": {"Service": "web"}}))
    s.apply(13, deregister_command({"Node": "n2", "ServiceID": "web"}))
    assert s.coordinates.list() == (11, [{"Node": "n2", "Segment": "", "Coord": coord(0.002)}])
    # a node without coordinates going away does not move the index
    s.apply(14, register_command({"Node": "n3", "Address": "10.0.0.3"}))
    s.apply(15, deregister_command({"Node": "n3"}))
    assert s.indexes["coordinates"] == 11


def test_snapshot_restore_round_trip_skips_bad_rows():
    s = store("n1", "n2")
    update(s, 10, ("n1", coord(0.001)), ("n2", coord(0.002)))
    data = s.snapshot()
    t = Store()
    t.restore(data)
    assert t.coordinates.list() == s.coordinates.list()
    assert t.indexes["coordinates"] == 10
    t.coordinates.restore([["n1", "", coord(float("nan"))], ["n2", "", coord(0.3)]])
    assert [r["Node"] for r in t.coordinates.list()[1]] == ["n2"]
    assert t.coordinates.sort_by_distance("n2", ["n1", "n2"], str) == ["n2", "n1"]


def test_parse_and_distance_follow_serf():
    assert parse_coordinate({"Vec": [1, 2], "Error": 1, "Adjustment": 0, "Height": 0}).vec == [1.0, 2.0]
    assert parse_coordinate("x") is None and parse_coordinate({"Vec": "x"}) is None
    assert parse_coordinate({"Vec": [float("inf")]}) is None
    a, b = Coordinate([0.0, 0.0], 1.5, 0.0, 0.0), Coordinate([0.003, 0.004], 1.5, 0.0, 0.0)
    assert compute_distance(a, b) == a.distance_to(b) == 0.005
    assert compute_distance(a, None) == math.inf == compute_distance(None, b)
    assert compute_distance(a, Coordinate([0.0], 1.5, 0.0, 0.0)) == math.inf   # dims differ
    # Consul's CoordinateSet.Intersect: default segment unless a side has exactly one
    x, y = Coordinate([1.0]), Coordinate([2.0])
    assert intersect({"": x, "alpha": y}, {"": y, "alpha": x}) == (x, y)
    assert intersect({"alpha": x}, {"": y, "alpha": y}) == (x, y)
    assert intersect({"": x, "beta": x}, {"beta": y}) == (x, y)


def test_sort_by_distance_is_consuls_stable_sort_with_missing_last():
    s = store("src", "far", "near", "mid", "none1", "none2")
    update(s, 20, ("src", coord(0.0)), ("far", coord(0.050)), ("near", coord(0.001)),
           ("mid", coord(0.010)))
    names = ["none1", "far", "none2", "mid", "near", "src"]
    assert s.coordinates.sort_by_distance("src", names, str) == \
        ["src", "near", "mid", "far", "none1", "none2"]
    # a source with no coordinate (or none at all): no sorting
    assert s.coordinates.sort_by_distance("none1", names, str) == names
    assert s.coordinates.sort_by_distance("", names, str) == names
    # equal distances keep their order (stable)
    update(s, 21, ("far", coord(0.001)))
    assert s.coordinates.sort_by_distance("src", ["far", "near"], str) == ["far", "near"]
    assert s.coordinates.sort_by_distance("src", ["near", "far"], str) == ["near", "far"]


def test_sort_near_needs_a_source_node_of_this_datacenter():
    s = store("src", "a", "b")
    update(s, 20, ("src", coord(0.0)), ("a", coord(0.050)), ("b", coord(0.001)))
    rows = [{"Node": "a"}, {"Node": "b"}]
    by = lambda r: r["Node"]                                        # noqa: E731
    assert s.coordinates.sort_near({"Datacenter": "dc1", "Node": "src"}, "dc1", rows, by) == \
        [{"Node": "b"}, {"Node": "a"}]
    for source in (None, {}, {"Datacenter": "dc1"}, {"Datacenter": "dc2", "Node": "src"},
                   {"Node": "src"}, {"Datacenter": "dc1", "Node": 5}, "src"):
        assert s.coordinates.sort_near(source, "dc1", rows, by) == rows


def test_pending_updates_keep_the_latest_per_node_and_cap_batches():
    p = PendingUpdates()
    for i in range(3):
        p.add({"Node": "n1", "Segment": "", "Coord": coord(i)})
    p.add({"Node": "n1", "Segment": "alpha", "Coord": coord(7)})
    assert len(p) == 2
    batches, discarded = p.take(128, 5)
    assert discarded == 0 and len(batches) == 1
    assert [(u["Segment"], u["Coord"]["Vec"][0]) for u in batches[0]] == [("", 2.0), ("alpha", 7.0)]
    assert len(p) == 0 and p.take(128, 5) == ([], 0)
    for i in range(700):
        p.add({"Node": f"n{i}", "Segment": "", "Coord": coord()})
    batches, discarded = p.take(128, 5)
    assert [len(b) for b in batches] == [128] * 5 and discarded == 700 - 640


def test_rate_scaled_interval_is_consuls():
    assert rate_scaled_interval(64.0, 15.0, 1) == 15.0
    assert rate_scaled_interval(64.0, 15.0, 960) == 15.0          # 960 / 64 = 15
    assert rate_scaled_interval(64.0, 15.0, 6400) == 100.0
    assert rate_scaled_interval(0.0, 15.0, 6400) == 15.0


def test_sender_interval_includes_a_stagger_of_up_to_one_interval():
    from types import SimpleNamespace

    from agent.coordinate_sender import CoordinateSender
    agent = SimpleNamespace(lan=None, consensus=None)
    sender = CoordinateSender(agent, rng=random.Random(3))
    waits = [sender.interval() for _ in range(200)]
    assert all(15.0 <= w < 30.0 for w in waits) and max(waits) - min(waits) > 5.0
    assert sender.update_request() is None                         # no LAN pool: no coordinate

"""Serf's network coordinates (`_core.vivaldi`), compiled and from its .py source.

Ports hashicorp/serf coordinate/{coordinate,client,performance}_test.go. The module is
one source compiled by Cython (pure-Python mode), so every test runs on the compiled
module ("c") and on the same .py loaded from its file ("py"). Bit-exactness with Serf is
checked against values produced by Serf's Go code (see GO_GOLDEN); the ack payload
against a capture from a real serf agent (shared/vectors/serf/plain-udp-ack.hex).
Simulations use seeded `random.Random`s and name their seed on failure.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import random
import struct
import sys
from pathlib import Path

import msgpack
import pytest

from tests.vectors import SERF_VECTORS

SOURCE = Path(__file__).resolve().parents[2] / "_core" / "vivaldi.py"
VECTORS = SERF_VECTORS

INF = float("inf")
NAN = float("nan")


def _load(kind: str):
    if kind == "c":
        mod = importlib.import_module("_core.vivaldi")
        if not mod.__file__.endswith((".so", ".pyd")):
            if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
                pytest.fail("_core.vivaldi is not compiled (python setup.py build_ext --inplace)")
            pytest.skip("compiled module not built")
        return mod
    name = "_isthmus_vivaldi_source"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SOURCE)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod          # dataclasses look their module up while defining
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(params=["py", "c"], scope="module")
def viv(request):
    return _load(request.param)


def cfg3(viv, **kw):
    return viv.CoordinateConfig(dimensionality=3, **kw)


def client(viv, config=None, seed=1):
    return viv.CoordinateClient(config or viv.CoordinateConfig(), random.Random(seed))


def coord(viv, vec, error=1.5, adjustment=0.0, height=0.0):
    return viv.Coordinate(vec, error, adjustment, height)


def close(a, b, tol=1.0e-6):
    """Serf's verifyEqualFloats."""
    return abs(a - b) <= tol


def close_vec(a, b, tol=1.0e-6):
    return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))


class NoRng:
    """For runs where no two coordinates may coincide: drawing a direction is a bug."""

    def random(self):
        raise AssertionError("random direction drawn")


class ScriptedRng:
    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def random(self):
        self.calls += 1
        return self.values.pop(0)


# -- configuration ------------------------------------------------------------------------

def test_default_config_is_serfs(viv):
    c = viv.CoordinateConfig()
    assert (c.dimensionality, c.vivaldi_error_max, c.vivaldi_ce, c.vivaldi_cc) == (8, 1.5, 0.25, 0.25)
    assert (c.adjustment_window_size, c.height_min, c.latency_filter_size, c.gravity_rho) == \
        (20, 1.0e-5, 3, 150.0)
    assert c.problems() == []
    assert viv.ZERO_THRESHOLD == 1.0e-6 and viv.MAX_RTT == 10.0


def test_config_problems_are_all_reported(viv):
    bad = viv.CoordinateConfig(dimensionality=0, latency_filter_size=0, adjustment_window_size=-1,
                               gravity_rho=NAN, vivaldi_cc=-1.0)
    problems = bad.problems()
    assert len(problems) == 5
    assert any("dimensionality" in p for p in problems)
    with pytest.raises(ValueError, match="dimensionality must be >0"):
        viv.CoordinateClient(viv.CoordinateConfig(dimensionality=0), random.Random(1))


# -- Coordinate (coordinate_test.go) ---------------------------------------------------------

def test_new_coordinate(viv):
    config = viv.CoordinateConfig()
    c = viv.Coordinate.new(config)
    assert c.vec == [0.0] * 8
    assert (c.error, c.adjustment, c.height) == (1.5, 0.0, 1.0e-5)
    assert len(viv.Coordinate.new(cfg3(viv)).vec) == 3


def test_clone_is_independent(viv):
    c = viv.Coordinate.new(viv.CoordinateConfig())
    c.vec[0], c.vec[1], c.vec[2] = 1.0, 2.0, 3.0
    c.error, c.adjustment, c.height = 5.0, 10.0, 4.2
    other = c.clone()
    assert other == c and other is not c
    other.vec[0] = c.vec[0] + 0.5
    assert other != c


def test_coordinate_is_mutable_and_unhashable(viv):
    c = viv.Coordinate.new(viv.CoordinateConfig())
    with pytest.raises(TypeError):
        hash(c)
    assert repr(c).startswith("Coordinate(vec=[0.0")
    assert (c == "x") is False


def test_is_valid(viv):
    c = viv.Coordinate.new(viv.CoordinateConfig())

    def setters():
        for i in range(len(c.vec)):
            yield lambda v, i=i: c.vec.__setitem__(i, v)
        for name in ("error", "adjustment", "height"):
            yield lambda v, name=name: setattr(c, name, v)

    for i, put in enumerate(setters()):
        assert c.is_valid(), i
        for poison in (NAN, INF, -INF):
            put(poison)
            assert not c.is_valid(), (i, poison)
            put(0.0)
            assert c.is_valid(), i


def test_is_compatible_with(viv):
    c1 = viv.Coordinate.new(cfg3(viv))
    c2 = viv.Coordinate.new(cfg3(viv))
    alien = viv.Coordinate.new(viv.CoordinateConfig(dimensionality=2))
    for c in (c1, c2, alien):
        assert c.is_compatible_with(c)
    assert c1.is_compatible_with(c2) and c2.is_compatible_with(c1)
    assert not any(a.is_compatible_with(b) for a, b in
                   ((c1, alien), (c2, alien), (alien, c1), (alien, c2)))


def test_apply_force(viv):
    config = cfg3(viv, height_min=0.0)
    rng = random.Random(4)
    origin = viv.Coordinate.new(config)

    # normalised, the right direction, the force multiplier applied
    above = viv.Coordinate.new(config)
    above.vec = [0.0, 0.0, 2.9]
    c = origin.apply_force(config, 5.3, above, rng)
    assert close_vec(c.vec, [0.0, 0.0, -5.3])

    # nothing special about the origin
    right = viv.Coordinate.new(config)
    right.vec = [3.4, 0.0, -5.3]
    c = c.apply_force(config, 2.0, right, rng)
    assert close_vec(c.vec, [-2.0, 0.0, -5.3])

    # on top of each other: one unit away in a random direction, no division by zero
    c = origin.apply_force(config, 1.0, origin, rng)
    assert close(origin.distance_to(c), 1.0)

    # the height minimum is factored in ...
    config = cfg3(viv, height_min=10.0e-6)
    origin = viv.Coordinate.new(config)
    c = origin.apply_force(config, 5.3, above, rng)
    assert close_vec(c.vec, [0.0, 0.0, -5.3])
    assert close(c.height, config.height_min + 5.3 * config.height_min / 2.9)

    # ... and enforced
    c = origin.apply_force(config, -5.3, above, rng)
    assert close_vec(c.vec, [0.0, 0.0, 5.3])
    assert c.height == config.height_min

    bad = c.clone()
    bad.vec = [0.0] * (len(c.vec) + 1)
    with pytest.raises(ValueError, match="dimensionality does not match"):
        c.apply_force(config, 1.0, bad, rng)


def test_apply_force_returns_a_copy(viv):
    config = cfg3(viv)
    c = coord(viv, [1.0, 0.0, 0.0], height=0.5)
    before = c.clone()
    moved = c.apply_force(config, 1.0, coord(viv, [0.0, 0.0, 0.0]), NoRng())
    assert c == before and moved is not c
    assert moved.vec == [2.0, 0.0, 0.0]
    # height: (h + other.h) * force / mag + h
    assert moved.height == (0.5 + 0.0) * 1.0 / 1.0 + 0.5


def test_coincident_direction_comes_from_injected_rng(viv):
    config = cfg3(viv)
    here = viv.Coordinate.new(config)
    rng = ScriptedRng([0.9, 0.5, 0.1])           # (0.4, 0, -0.4): 45 degrees in the x-z plane
    c = here.apply_force(config, 2.0, here, rng)
    assert rng.calls == 3
    s = 0.4 * (1.0 / math.sqrt(0.4 * 0.4 + 0.4 * 0.4)) * 2.0
    assert c.vec == [s, 0.0 * 2.0, -s]
    assert c.height == here.height               # no separation: height untouched

    # a random vector that is itself ~0: along the first axis (Serf's last resort)
    c = here.apply_force(config, 2.0, here, ScriptedRng([0.5, 0.5, 0.5]))
    assert c.vec == [2.0, 0.0, 0.0]

    # same seed, same direction
    a = here.apply_force(config, 1.0, here, random.Random(99))
    b = here.apply_force(config, 1.0, here, random.Random(99))
    assert a == b and close(math.sqrt(sum(x * x for x in a.vec)), 1.0)


def test_client_draws_directions_from_its_rng(viv):
    """A fresh client observing a fresh peer: both at the origin, so the step direction is
    random; it comes from the injected generator alone."""
    config = viv.CoordinateConfig()
    runs = {}
    for seed in (7, 7, 8):
        cl = viv.CoordinateClient(config, random.Random(seed))
        runs.setdefault(seed, []).append(cl.update("peer", viv.Coordinate.new(config), 0.010))
    assert runs[7][0] == runs[7][1]
    assert runs[7][0] != runs[8][0]
    # only the direction differs: both moved the same way out from the origin
    norms = [math.sqrt(sum(x * x for x in runs[s][0].vec)) for s in (7, 8)]
    assert norms[0] > 0.001 and math.isclose(norms[0], norms[1], rel_tol=1e-12)
    scripted = ScriptedRng([0.75] + [0.5] * 7)                 # (0.25, 0, ...): the first axis
    c = viv.CoordinateClient(config, scripted).update("peer", viv.Coordinate.new(config), 0.010)
    assert scripted.calls == 8                                  # one draw per dimension, once
    assert c.vec[0] > 0.0 and c.vec[1:] == [0.0] * 7


def test_distance_to(viv):
    c1 = coord(viv, [-0.5, 1.3, 2.4])
    c2 = coord(viv, [1.2, -2.3, 3.4])
    base = 4.104875150354758
    assert c1.distance_to(c1) == 0.0
    assert c1.distance_to(c2) == c2.distance_to(c1)
    assert close(c1.distance_to(c2), base)

    c1.adjustment = -1.0e6                       # negative total adjustment: ignored
    assert close(c1.distance_to(c2), base)
    c1.adjustment, c2.adjustment = 0.1, 0.2
    assert close(c1.distance_to(c2), base + 0.3)
    c1.height, c2.height = 0.7, 0.1
    assert close(c1.distance_to(c2), base + 0.3 + 0.8)

    bad = c1.clone()
    bad.vec = [0.0] * 4
    with pytest.raises(ValueError, match="dimensionality does not match"):
        c1.distance_to(bad)


def test_distance_is_a_go_duration(viv):
    """Serf returns time.Duration: whole nanoseconds, truncated toward zero."""
    here = coord(viv, [0.0, 0.0, 0.0])
    assert here.distance_to(coord(viv, [0.0, 0.0, 12.345])) == 12.345
    assert here.distance_to(coord(viv, [1.9e-9, 0.0, 0.0])) == 1.0e-9
    assert here.distance_to(coord(viv, [0.0, 2.5e-6 + 0.7e-9, 0.0])) == 2.5e-6
    # raw_distance_to is the plain float, without adjustments
    far = coord(viv, [1.9e-9, 0.0, 0.0], adjustment=1.0)
    assert here.raw_distance_to(far) == 1.9e-9


def test_dist_example(viv):
    """The self-contained `dist` function of Serf's documentation agrees."""
    c1 = coord(viv, [-0.5, 1.3, 2.4], adjustment=0.1, height=0.7)
    c2 = coord(viv, [1.2, -2.3, 3.4], adjustment=0.2, height=0.1)
    sumsq = sum((a - b) ** 2 for a, b in zip(c1.vec, c2.vec))
    rtt = math.sqrt(sumsq) + c1.height + c2.height
    adjusted = rtt + c1.adjustment + c2.adjustment
    if adjusted > 0.0:
        rtt = adjusted
    assert close(c1.distance_to(c2), int(rtt * 1.0e9) / 1.0e9)


def test_raw_distance_to(viv):
    c1 = coord(viv, [-0.5, 1.3, 2.4])
    c2 = coord(viv, [1.2, -2.3, 3.4])
    base = 4.104875150354758
    assert c1.raw_distance_to(c1) == 0.0
    assert c1.raw_distance_to(c2) == c2.raw_distance_to(c1)
    assert close(c1.raw_distance_to(c2), base)
    c1.adjustment = 1.0e6
    assert close(c1.raw_distance_to(c2), base)
    c1.height, c2.height = 0.7, 0.1
    assert close(c1.raw_distance_to(c2), base + 0.8)


# -- wire form ------------------------------------------------------------------------------

def _ack_coordinate_bytes() -> bytes:
    data = bytes.fromhex((VECTORS / "plain-udp-ack.hex").read_text().strip())
    assert data[0] == 2                                          # ackResp
    ack = msgpack.unpackb(data[1:], raw=True)
    payload = ack[b"Payload"]
    assert payload[0] == 1                                       # serf pingVersion
    return payload[1:]


def test_to_wire_matches_serf_ack_payload(viv):
    want = _ack_coordinate_bytes()
    wire = viv.Coordinate.new(viv.CoordinateConfig()).to_wire()
    assert list(wire) == ["Adjustment", "Error", "Height", "Vec"]
    got = msgpack.packb(wire, use_bin_type=False, use_single_float=False)
    assert got == want


def test_from_wire_decodes_serf_ack_payload(viv):
    raw = msgpack.unpackb(_ack_coordinate_bytes(), raw=True)     # keys come back as bytes
    c = viv.Coordinate.from_wire(raw)
    assert c == viv.Coordinate.new(viv.CoordinateConfig())
    assert viv.Coordinate.from_wire(msgpack.unpackb(_ack_coordinate_bytes(), raw=False)) == c


def test_wire_round_trip(viv):
    c = coord(viv, [0.1, -2.5e-3, 7.0], error=0.25, adjustment=-1.0e-4, height=3.0e-5)
    packed = msgpack.packb(c.to_wire(), use_bin_type=False, use_single_float=False)
    assert viv.Coordinate.from_wire(msgpack.unpackb(packed, raw=True)) == c
    wire = c.to_wire()
    wire["Vec"].append(1.0)                                      # to_wire copies the vector
    assert len(c.vec) == 3


def test_from_wire_is_as_lenient_as_go(viv):
    c = viv.Coordinate.from_wire({"Vec": [1, None], "Error": 1, "Unknown": "x", "Height": None})
    assert c == coord(viv, [1.0, 0.0], error=1.0, adjustment=0.0, height=0.0)
    assert all(type(x) is float for x in c.vec)
    empty = viv.Coordinate.from_wire({})                         # Go's zero value
    assert empty.vec == [] and empty.error == 0.0
    assert not empty.is_compatible_with(viv.Coordinate.new(viv.CoordinateConfig()))
    # NaN decodes (it is a float); is_valid and the client reject it
    assert not viv.Coordinate.from_wire({"Vec": [NAN], "Error": 1.0}).is_valid()


@pytest.mark.parametrize("obj", [
    None, [], b"x", 3,
    {"Vec": "abc"}, {"Vec": 1.0}, {"Vec": {"a": 1}}, {"Vec": [1.0, "x"]}, {"Vec": [b"1"]},
    {"Vec": [True]}, {"Error": "1.5"}, {"Height": b"\x00"}, {"Adjustment": [1.0]},
    {"Error": True}, {b"Height": {}},
])
def test_from_wire_rejects_bad_shapes(viv, obj):
    with pytest.raises(ValueError):
        viv.Coordinate.from_wire(obj)


# -- Client (client_test.go) ---------------------------------------------------------------

def test_new_client_is_at_origin(viv):
    config = viv.CoordinateConfig(dimensionality=7)
    cl = client(viv, config)
    assert cl.get_coordinate() == viv.Coordinate.new(config)
    assert cl.stats.resets == 0 and cl.stats.zero_rtt == 0
    assert cl.config is config


def test_update_moves_away_when_rtt_is_longer(viv):
    cl = client(viv, cfg3(viv))
    assert cl.get_coordinate().vec == [0.0, 0.0, 0.0]
    other = viv.Coordinate.new(cfg3(viv))
    other.vec[2] = 0.001
    c = cl.update("node", other, 2.0 * other.vec[2])
    assert c.vec[2] < 0.0                                        # scooted down, away from it

    c.vec[2] = 99.0
    cl.set_coordinate(c)
    assert close(cl.get_coordinate().vec[2], 99.0)


def test_update_moves_closer_when_rtt_is_shorter(viv):
    config = cfg3(viv)
    cl = client(viv, config)
    cl.set_coordinate(coord(viv, [0.0, 0.0, -0.050], error=1.5, height=config.height_min))
    other = coord(viv, [0.0, 0.0, 0.050], error=1.5, height=config.height_min)
    before = cl.distance_to(other)
    c = cl.update("node", other, 0.010)
    assert c.vec[2] > -0.050 and c.vec[:2] == [0.0, 0.0]          # straight towards it
    assert cl.distance_to(other) < before


def test_update_returns_a_copy(viv):
    cl = client(viv, cfg3(viv))
    other = coord(viv, [0.0, 0.0, 0.01])
    c = cl.update("node", other, 0.02)
    c.vec[0] = 42.0
    assert cl.get_coordinate().vec[0] != 42.0
    got = cl.get_coordinate()
    got.vec[1] = 42.0
    assert cl.get_coordinate().vec[1] != 42.0


def test_invalid_rtts_are_rejected_and_change_nothing(viv):
    cl = client(viv, cfg3(viv))
    other = viv.Coordinate.new(cfg3(viv))
    other.vec[2] = 0.001
    dist = cl.distance_to(other)
    before = cl.get_coordinate()
    for rtt in (float(1 << 63), -35.0, 11.0, 10.000001, -1.0e-12, INF, -INF, NAN):
        with pytest.raises(ValueError, match="round trip time not in valid range"):
            cl.update("node", other, rtt)
        assert cl.distance_to(other) == dist
    assert cl.get_coordinate() == before
    cl.update("node", other, 10.0)                               # both ends are allowed
    cl.update("node", other, 0.0)
    assert cl.stats.zero_rtt == 1


def test_client_distance_to(viv):
    cl = client(viv, cfg3(viv, height_min=0.0))
    other = viv.Coordinate.new(cfg3(viv, height_min=0.0))
    other.vec[2] = 12.345
    assert cl.distance_to(other) == int(12.345 * 1.0e9) / 1.0e9
    with pytest.raises(ValueError):
        cl.distance_to(viv.Coordinate.new(viv.CoordinateConfig()))


def test_median_rtt_latency_filter_table(viv):
    """Serf's TestClient_latencyFilter, on the median the filter takes."""
    windows: dict[str, list] = {}

    def feed(node, rtt):
        w = windows.setdefault(node, [])
        w.append(rtt)
        if len(w) > 3:
            del w[0]
        return viv.median_rtt(w)

    table = [("alice", 0.201, 0.201), ("alice", 0.200, 0.201), ("alice", 0.207, 0.201),
             ("alice", 1.9, 0.207),             # the glitch is medianed out
             ("alice", 0.203, 0.207), ("alice", 0.199, 0.203), ("alice", 0.211, 0.203),
             ("bob", 0.310, 0.310)]             # nodes are not coupled
    for node, rtt, want in table:
        assert feed(node, rtt) == want, (node, rtt)
    windows.pop("alice")                        # ForgetNode
    assert feed("alice", 0.888) == 0.888
    assert viv.median_rtt([3.0, 1.0]) == 3.0    # element len//2 of the sorted samples
    with pytest.raises(ValueError):
        viv.median_rtt([])


def _run(viv, updates, config=None):
    cl = viv.CoordinateClient(config or cfg3(viv), random.Random(5))
    cl.set_coordinate(coord(viv, [0.001, 0.0, 0.0], error=1.5, height=1.0e-5))
    other = coord(viv, [-0.001, 0.0, 0.0], error=0.5, height=1.0e-5)
    out = None
    for node, rtt in updates:
        if node is None:
            cl.forget_node("alice")
            continue
        out = cl.update(node, other, rtt)
    return out, cl


def test_latency_filter_inside_update(viv):
    # the 1.9 s glitch never reaches Vivaldi: same bits as if 0.207 had been seen
    glitch, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("alice", 0.207), ("alice", 1.9)])
    clean, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("alice", 0.207), ("alice", 0.207)])
    assert glitch == clean
    # peers are filtered apart: bob's first sample is used as is
    a, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("bob", 0.5)])
    b, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("carol", 0.5)])
    assert a == b
    # forget_node drops alice's window: 0.888 is then taken alone
    f, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("alice", 0.207), (None, 0),
                      ("alice", 0.888)])
    g, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("alice", 0.207), ("dave", 0.888)])
    assert f == g
    h, _ = _run(viv, [("alice", 0.201), ("alice", 0.200), ("alice", 0.207), ("alice", 0.888)])
    assert h != f


def test_adjustment_window(viv):
    """Adjustment = sum of the ring of (rtt - raw distance) samples / (2 * window)."""
    # gravity off in effect (rho huge): the returned coordinate is the one the sample saw
    config = cfg3(viv, gravity_rho=1.0e300)
    cl = viv.CoordinateClient(config, random.Random(5))
    cl.set_coordinate(coord(viv, [0.001, 0.002, 0.0], error=1.0, height=1.0e-5))
    ring = [0.0] * 20
    rng = random.Random(11)
    for k in range(47):
        other = coord(viv, [rng.uniform(-0.01, 0.01) for _ in range(3)], error=0.3, height=2e-5)
        rtt = round(rng.uniform(0.001, 0.02), 9)
        c = cl.update(f"n{k}", other, rtt)
        # samples are taken after the Vivaldi step, without the adjustment terms
        ring[k % 20] = rtt - c.raw_distance_to(other)
        total = 0.0
        for s in ring:
            total += s
        assert c.adjustment == total / 40.0, k

    off = viv.CoordinateClient(cfg3(viv, adjustment_window_size=0), random.Random(5))
    for k in range(5):
        c = off.update("n", coord(viv, [0.01, 0.0, 0.0], error=0.3, height=2e-5), 0.05)
    assert c.adjustment == 0.0


def test_height_floor(viv):
    config = cfg3(viv)
    cl = viv.CoordinateClient(config, random.Random(3))
    other = coord(viv, [0.0, 0.0, 0.02], error=0.5, height=config.height_min)
    for k in range(50):                        # RTTs far below the distance: heights shrink
        c = cl.update("n", other, 1.0e-6)
        assert c.height >= config.height_min, k
    assert c.height == config.height_min


def test_gravity_pulls_toward_the_origin(viv):
    """force = -(distance(origin, self) / rho)^2 along the line from the origin."""
    config = cfg3(viv, vivaldi_cc=0.0, adjustment_window_size=0)   # no Vivaldi step
    cl = viv.CoordinateClient(config, NoRng())
    x = 30.0
    cl.set_coordinate(coord(viv, [x, 0.0, 0.0], error=1.0, height=config.height_min))
    other = coord(viv, [x, 5.0, 0.0], error=1.0, height=config.height_min)
    c = cl.update("n", other, 5.0)
    dist = viv.Coordinate.new(config).distance_to(coord(viv, [x, 0.0, 0.0], height=config.height_min))
    assert math.isclose(c.vec[0], x - (dist / 150.0) ** 2, rel_tol=1e-15)
    assert c.vec[1:] == [0.0, 0.0]
    assert x - c.vec[0] > 0.04                                     # (30/150)^2 = 0.04


def test_invalid_other_is_rejected(viv):
    """Serf's TestClient_NaN_Defense."""
    config = cfg3(viv)
    cl = client(viv, config)
    other = viv.Coordinate.new(config)
    other.vec[0] = NAN
    assert not other.is_valid()
    with pytest.raises(ValueError, match="coordinate is invalid"):
        cl.update("node", other, 0.25)
    assert cl.get_coordinate().is_valid()
    with pytest.raises(ValueError, match="coordinate is invalid"):
        cl.set_coordinate(other)
    assert cl.get_coordinate().is_valid()

    other.vec = [0.0] * 6
    with pytest.raises(ValueError, match="dimensions aren't compatible"):
        cl.update("node", other, 0.25)
    with pytest.raises(ValueError, match="dimensions aren't compatible"):
        cl.set_coordinate(other)
    assert cl.get_coordinate().is_valid()
    for bad in (None, "coordinate", {"Vec": [0.0] * 3}):
        with pytest.raises(TypeError):
            cl.update("node", bad, 0.25)
    assert cl.get_coordinate() == viv.Coordinate.new(config)


def test_reset_when_the_state_goes_invalid(viv):
    """Serf poisons its coordinate with NaN; here a huge finite one overflows to NaN."""
    config = cfg3(viv)
    cl = client(viv, config)
    cl.set_coordinate(coord(viv, [1.0e308, 0.0, 0.0], error=1.0, height=config.height_min))
    c = cl.update("node", viv.Coordinate.new(config), 0.25)
    assert c.is_valid() and c == viv.Coordinate.new(config)
    assert cl.stats.resets == 1
    # As in Serf (checked against its Go code), a reset keeps the adjustment ring: its NaN
    # sample resets every update until it is overwritten 20 updates later.
    for k in range(2, 26):
        c = cl.update("node", viv.Coordinate.new(config), 0.25)
        assert c.is_valid()
        assert cl.stats.resets == min(k, 20), k
    assert c.adjustment > 0.1


# -- bit-exact against Serf's Go code ---------------------------------------------------------

# Produced by hashicorp/serf's coordinate package (client.go, coordinate.go; go1.19.8
# linux/amd64) driven through exactly the schedule of `_golden_scenario` with RTTs as
# time.Duration nanoseconds. Each coordinate line: Vec bits, Error, Adjustment, Height as
# float64 hex; "dist i j" is int64(client_i.DistanceTo(client_j)) in nanoseconds.
GO_GOLDEN = """\
scenario n=5 dim=8 cycles=300 spacing=10000000
bf7501e1376e275c,3f842ebb4ba7ed08,3f56f5616124f20f,bf819e60106aa893,bf83a502d96a4722,3f71f2bb389bad37,3f54ce7f982e5a54,bf815983d74bd599 3f707683b3104aa6 3f204a3431f6944a 3f29bfb09d891d95
bf660e0d00c5a555,3f75a7d355080a05,3f4fdfc10e018989,bf7064a4e9e83968,bf74fc2a0b74b89a,3f608b4e1bb191d5,3f4d311be7b443cb,bf700ed0451e90a8 3f7760d6ac91a2f0 3f12b37f8f9b54ba 3ee4f8b588e368f1
bf2a32178dd7224a,3f2c2bf5aa148b5f,3f3cecce9fd86bb9,3f3752458dce6260,bf2b495e55607877,bf3746ae9ac9fecf,3f3cb428caab6709,3f378aeb62fb672b 3f769d92154c8bb4 3f0d53492f228ce0 3ee4f8b588e368f1
3f6384f9ef36305b,bf74889d113e0826,bf4b0e4a12d97fc3,3f71ae07d006a005,3f73f600f68059db,bf672a514cc07adb,bf48c3d9a7e2c684,3f7164b9c2a7c8dd 3f780545add8e1fa 3f1244177bb90483 3ee4fe89c7aa8e85
3f75f2ecbf87cf58,bf853d42a284b72d,bf610f295b2cb259,3f7f5bca97e7e948,3f847975f611db34,bf770dcbbccbf8e3,bf5f0f20048df4c4,3f7e97fdeb750d4c 3f74197160bb60ee 3f1f65930c4c9766 3f23594250e98870
dist 0 2 20073500
dist 1 3 20088837
dist 2 4 20096150
dist 3 0 30004764
dist 4 1 30010783
scenario n=4 dim=2 cycles=500 spacing=1000000
3f4b923845cf715d,3f48dd3554a3af10 3f898eb6335217c6 3ebbdf4c32ff539a 3f193b47f977a99b
bf0950908a8081b7,3f40655cab62cdb0 3f90f3ee24e32619 bec7a38c2aaaa933 3eedf217c69791e4
bf4ced95924bda43,bf20ce9534b94205 3f946823922768ed beb8c14a321ed59a 3eeff0f637327056
bf5e310061aed348,bf3a56cb59bd830a 3f8e6e0519e779cf bed91f0fd29d413a 3f01a1eaab896932
dist 0 2 2050671
dist 1 3 2047622
dist 2 0 2050671
dist 3 1 2047622
scenario n=6 dim=3 cycles=200 spacing=50000000
bf93ca41ad6f55ad,3fbc3caf4ecfb501,3fa24edb9fea7480 3f8f80caf4818172 3f69dedb5792cb46 3f723bbc7e4f5559
bf86035d07821168,3fb1d9559dda437e,3f9a0ecb1a9a2a76 3f9c5663ffa08eff 3f5eb0b5e672a450 3ee4f8b588e368f1
bf58252e25e613a4,3f97d1eccd9a3dd4,3f8a94af61cd1105 3f9876d4ec1bbc6a 3f58ee934fe32f36 3ee4f8b588e368f1
3f783a174bab4bfb,bf96ecff07511c33,bf6b8dbc48f189a8 3f98f3a60af2ee94 3f58a7832548604d 3ee7e12a7a7a079b
3f8ad6a066bd613e,bfb0d96a9fce5e75,bf9923d1d4fcad60 3f9ae3cf5fb1a7a8 3f5e6cb202aec3c8 3ef113b5b660c751
3f9295c98fc17006,bfba773004b699cb,bfa7dde1a07b10bd 3f95e078e61906f0 3f68ccb40f7c7583 3f6f58fd9698a197
dist 0 2 100865966
dist 1 3 101338841
dist 2 4 101160358
dist 3 5 100999319
dist 4 0 198444714
dist 5 1 198454986
"""


def _golden_scenario(viv, n, dim, cycles, spacing_ns):
    config = viv.CoordinateConfig(dimensionality=dim)
    clients = []
    for i in range(n):
        cl = viv.CoordinateClient(config, NoRng())
        c = viv.Coordinate.new(config)
        for k in range(dim):
            c.vec[k] = 0.0001 * float((i * 7 + k * 3) % 11 + 1) * float(1 - 2 * ((i + k) % 2))
        cl.set_coordinate(c)
        clients.append(cl)
    for cycle in range(cycles):
        for i in range(n):
            j = (i + 1 + cycle % (n - 1)) % n
            rtt_ns = abs(i - j) * spacing_ns + ((cycle * 31 + i * 17) % 97) * 1000 + cycle % 5
            if cycle % 13 == 0 and i == 0:
                rtt_ns = 0
            clients[i].update(f"node_{j}", clients[j].get_coordinate(), rtt_ns / 1e9)
    lines = [f"scenario n={n} dim={dim} cycles={cycles} spacing={spacing_ns}"]
    for cl in clients:
        c = cl.get_coordinate()
        fields = [",".join(_hex(v) for v in c.vec), _hex(c.error), _hex(c.adjustment), _hex(c.height)]
        lines.append(" ".join(fields))
    for i in range(n):
        j = (i + 2) % n
        ns = round(clients[i].distance_to(clients[j].get_coordinate()) * 1e9)
        lines.append(f"dist {i} {j} {ns}")
    return lines


def _hex(x: float) -> str:
    return struct.pack(">d", x).hex()


def test_bit_exact_with_serf(viv):
    got = (_golden_scenario(viv, 5, 8, 300, 10_000_000) + _golden_scenario(viv, 4, 2, 500, 1_000_000)
           + _golden_scenario(viv, 6, 3, 200, 50_000_000))
    want = GO_GOLDEN.splitlines()
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"line {k}"


# -- convergence (performance_test.go) on simulated networks -------------------------------
#
# Serf's simulation: every cycle each node pings one node picked at random (skipping
# itself) and observes the true RTT; one seeded generator drives the schedule and the
# clients' random directions, as Go's global math/rand does, and is reseeded per run.
# Serf's bounds were tuned to Go's seed 1: running Serf's own code over Go seeds 1-10
# gives e.g. line avg 0.0012-0.0034 / max 0.006-0.017 (Serf asserts 0.0018 / 0.0092),
# grid max up to 0.046 (0.022), split not yet separated in 3 of 10 runs (avg up to
# 0.0014, against 0.00006), other heights up to 0.043 r (0.03 r). The bounds below
# hold for Serf's code over those seeds; Serf's own number is quoted beside each.

class SharedRng:
    """One generator for the schedule and all clients, like Go's global math/rand."""

    def __init__(self) -> None:
        self.gen = random.Random(0)

    def random(self) -> float:
        return self.gen.random()


def seeds_for(viv):
    # the compiled module on three networks; its source (bit-identical) on one
    return (1, 2, 3) if viv.__name__ == "_core.vivaldi" else (1,)


def make_clients(viv, n, config, rng):
    return [viv.CoordinateClient(config, rng) for _ in range(n)]


def simulate(clients, truth, cycles, rng: SharedRng, seed):
    rng.gen.seed(seed)
    n = len(clients)
    for _ in range(cycles):
        for i in range(n):
            j = rng.gen.randrange(n)
            if j != i:
                clients[i].update(f"node_{j}", clients[j].get_coordinate(), truth[i][j])


def evaluate(clients, truth):
    """(average, max) relative error of the estimated RTTs over all pairs."""
    errors = []
    for i in range(len(clients)):
        for j in range(i + 1, len(clients)):
            est = clients[i].distance_to(clients[j].get_coordinate())
            errors.append(abs(est - truth[i][j]) / truth[i][j])
    return sum(errors) / len(errors), max(errors)


def _matrix(n, rtt):
    t = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            t[i][j] = t[j][i] = rtt(i, j)
    return t


def line_truth(n, spacing):
    return _matrix(n, lambda i, j: (j - i) * spacing)


def grid_truth(n, spacing):
    k = int(math.sqrt(n))
    return _matrix(n, lambda i, j: math.hypot(j % k - i % k, j // k - i // k) * spacing)


def split_truth(n, lan, wan):
    half = n // 2
    return _matrix(n, lambda i, j: lan + (wan if (i <= half) != (j <= half) else 0.0))


def circle_truth(n, radius):
    """Nodes on a circle; node 0 is 'in the middle', 2r from all: it must grow a height."""
    def rtt(i, j):
        if i == 0:
            return 2 * radius
        a, b = 2 * math.pi * i / n, 2 * math.pi * j / n
        return math.hypot(math.cos(b) - math.cos(a), math.sin(b) - math.sin(a)) * radius
    return _matrix(n, rtt)


def run_network(viv, n, truth, seed, dimensionality=8, cycles=1000):
    rng = SharedRng()
    clients = make_clients(viv, n, viv.CoordinateConfig(dimensionality=dimensionality), rng)
    simulate(clients, truth, cycles, rng, seed)
    return clients, evaluate(clients, truth)


def test_converges_on_a_line(viv):
    for seed in seeds_for(viv):
        _, (avg, worst) = run_network(viv, 10, line_truth(10, 0.010), seed)
        assert avg < 0.005 and worst < 0.03, f"seed={seed} avg={avg} max={worst}"   # Serf 0.0018/0.0092


def test_converges_on_a_grid(viv):
    for seed in seeds_for(viv):
        _, (avg, worst) = run_network(viv, 25, grid_truth(25, 0.010), seed)
        assert avg < 0.0025 and worst < 0.05, f"seed={seed} avg={avg} max={worst}"  # Serf 0.0015/0.022


def test_converges_on_two_clusters(viv):
    for seed in seeds_for(viv):
        clients, (avg, worst) = run_network(viv, 25, split_truth(25, 0.001, 0.010), seed)
        assert avg < 0.005 and worst < 0.03, f"seed={seed} avg={avg} max={worst}"   # Serf 6e-5/4.8e-4
        a, b, far = clients[0].get_coordinate(), clients[1].get_coordinate(), clients[24]
        assert far.distance_to(a) > 5 * clients[0].distance_to(b), f"seed={seed}"


def test_height_models_the_access_link(viv):
    radius = 0.100
    for seed in seeds_for(viv):
        # two dimensions represent the circle exactly; node 0 sits above it
        clients, (avg, worst) = run_network(viv, 25, circle_truth(25, radius), seed,
                                            dimensionality=2)
        heights = [c.get_coordinate().height for c in clients]
        assert heights[0] >= 0.97 * radius, f"seed={seed} height={heights[0]}"
        assert max(heights[1:]) <= 0.06 * radius, f"seed={seed} heights={heights[1:]}"  # Serf 0.03
        assert avg < 0.005 and worst < 0.12, f"seed={seed} avg={avg} max={worst}"  # Serf 0.0025/0.064


def test_gravity_fights_drift(viv):
    """Serf's TestPerformance_Drift: a square of 500 ms sides, re-centred by gravity."""
    d = 0.5
    config = viv.CoordinateConfig(dimensionality=2)
    for seed in seeds_for(viv):
        rng = SharedRng()
        clients = make_clients(viv, 4, config, rng)
        # Serf's start positions (nodes 2 and 3 coincide: the first updates draw directions)
        for cl, vec in zip(clients, ([0.0, 0.0], [0.0, d], [d, d], [d, d])):
            cl.set_coordinate(coord(viv, vec, error=1.5, height=config.height_min))
        diagonal = int(math.sqrt(2) * d * 1e9) / 1e9
        truth = _matrix(4, lambda i, j: diagonal if i % 2 == 0 and j % 2 == 0 else d)

        def center_error():
            vecs = [c.get_coordinate().vec for c in clients]
            mid = [min(v[k] for v in vecs) + (max(v[k] for v in vecs) - min(v[k] for v in vecs)) / 2
                   for k in range(2)]
            return math.hypot(*mid)

        simulate(clients, truth, 1000, rng, seed)
        baseline = center_error()
        simulate(clients, truth, 10000, rng, seed)
        assert center_error() <= 0.8 * baseline, f"seed={seed} {baseline} -> {center_error()}"


def test_converges_on_random_rtts(viv):
    for seed in seeds_for(viv):
        gen = random.Random(seed)
        truth = _matrix(25, lambda i, j: gen.gauss(0.100, 0.010))
        _, (avg, worst) = run_network(viv, 25, truth, seed)
        assert avg < 0.075 and worst < 0.45, f"seed={seed} avg={avg} max={worst}"   # Serf 0.075/0.33

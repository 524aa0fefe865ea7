# cython: annotation_typing=False
"""Serf's network coordinates (Vivaldi), as hashicorp/serf `coordinate/` computes them.

Spec: shared/spec/memberlist-wire.md §5.11. A `CoordinateClient` holds this node's
coordinate and moves it on each RTT observation (`update`); `Coordinate.distance_to`
estimates the RTT between two nodes. Units are float seconds throughout.

Faithful to Go down to the float operations, so a run fed the same observations lands
on the same bits as Serf: distances go through Go's `time.Duration` (nanoseconds,
truncated) exactly where Serf's do, `x·(1/mag)` is not `x/mag`, and sums run in index
order. The only randomness (a direction when two coordinates coincide) comes from the
injected `random.Random`; no clock is read.

Written once and compiled by Cython in pure-Python mode: `vivaldi.pxd` adds the C types
and the compiled module shadows this file on import (shared/STYLE.md).
"""
from __future__ import annotations

import math   # libc's math when compiled (vivaldi.pxd): sqrt is IEEE-exact in both, as Go's
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "ZERO_THRESHOLD",
    "MAX_RTT",
    "CoordinateConfig",
    "Coordinate",
    "CoordinateClient",
    "CoordinateStats",
    "median_rtt",
]

# The C-typed private copies are what the code uses (vivaldi.pxd); annotations are not
# read as C types (annotation_typing=False above): the .pxd alone says what is typed.
_ZERO_THRESHOLD = 1.0e-6
_MAX_RTT = 10.0

ZERO_THRESHOLD = _ZERO_THRESHOLD
"""Serf's `zeroThreshold`: closer than this, two positions coincide (and RTTs floor here)."""

MAX_RTT = _MAX_RTT
"""Serf rejects RTT observations outside [0, 10 s] (`Client.Update`)."""

# Go's time.Duration is an int64 of nanoseconds; float64 -> int64 truncates toward zero.
_NS_PER_SECOND = 1000000000
_TWO_63 = 9.223372036854775808e18
# What Seconds() gives for the Duration math.MinInt64 (see _duration_seconds).
_INT64_MIN_SECONDS = -9223372036.0 + (-854775808) / 1e9


class RandomSource(Protocol):
    """What the client needs from its injected `random.Random`."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class CoordinateConfig:
    """Vivaldi tuning; the defaults are Serf's `coordinate.DefaultConfig()`."""

    dimensionality: int = 8            # Euclidean dimensions, plus a height
    vivaldi_error_max: float = 1.5     # error of a fresh coordinate, and its cap
    vivaldi_ce: float = 0.25           # max impact of one observation on the error
    vivaldi_cc: float = 0.25           # max impact of one observation on the position
    adjustment_window_size: int = 20   # samples in the adjustment ring; 0 disables it
    height_min: float = 1.0e-5         # floor of the height term
    latency_filter_size: int = 3       # RTT samples per peer behind the moving median
    gravity_rho: float = 150.0         # gravity = (distance from origin / rho)^2

    def problems(self) -> list[str]:
        """Every problem with this configuration (empty when usable)."""
        out = []
        if not (isinstance(self.dimensionality, int) and self.dimensionality > 0):
            out.append(f"dimensionality must be >0, got {self.dimensionality!r}")
        if not (isinstance(self.adjustment_window_size, int) and self.adjustment_window_size >= 0):
            out.append(f"adjustment_window_size must be >=0, got {self.adjustment_window_size!r}")
        if not (isinstance(self.latency_filter_size, int) and self.latency_filter_size > 0):
            # Serf indexes the median of an empty window with size 0 (a panic)
            out.append(f"latency_filter_size must be >0, got {self.latency_filter_size!r}")
        for name in ("vivaldi_error_max", "vivaldi_ce", "vivaldi_cc", "height_min", "gravity_rho"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                out.append(f"{name} must be a finite number >=0, got {value!r}")
        return out


@dataclass(slots=True)
class CoordinateStats:
    """Counters of a client (Serf's `ClientStats`, plus its `zero-rtt` metric)."""

    resets: int = 0     # our coordinate went invalid (NaN/Inf) and was reset
    zero_rtt: int = 0   # observations of exactly 0 ns (coarse clocks; still used)


def _finite(x: float) -> bool:
    # componentIsValid: neither NaN nor an infinity
    return x - x == 0.0


def _duration_seconds(seconds: float) -> float:
    """`time.Duration(seconds * 1e9).Seconds()`: truncated to whole nanoseconds, as Go does."""
    x = seconds * 1e9
    if not (-_TWO_63 < x < _TWO_63):
        # NaN, infinities and out-of-range values convert to math.MinInt64 on amd64
        # (CVTTSD2SQ); only coordinates no real network produces get here. (-2^63 itself
        # is MinInt64 too, and is kept out so that -ns in _ns_seconds cannot overflow.)
        return _INT64_MIN_SECONDS
    return _ns_seconds(int(x))


def _ns_seconds(ns: int) -> float:
    """Go's `Duration.Seconds()`: whole seconds and the nanosecond remainder converted apart."""
    # Only non-negative operands are divided: C (cdivision) and Python agree on those.
    if ns >= 0:
        sec = ns // _NS_PER_SECOND
        nsec = ns - sec * _NS_PER_SECOND
        return sec + nsec / 1e9
    sec = (-ns) // _NS_PER_SECOND
    nsec = (-ns) - sec * _NS_PER_SECOND
    return -sec + (-nsec) / 1e9


def _to_float(value: Any, what: str) -> float:
    if value is None:               # msgpack nil decodes to Go's zero value
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"coordinate {what} is {type(value).__name__}, not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"coordinate {what} out of float64 range") from None


def median_rtt(samples: list) -> float:
    """The median Serf's latency filter takes: element len//2 of the sorted samples."""
    if not samples:
        raise ValueError("no RTT samples")
    ordered = sorted(samples)
    return ordered[len(ordered) // 2]


class Coordinate:
    """A network coordinate: Euclidean `vec`, `height`, `adjustment` (seconds) and `error`."""

    def __init__(self, vec: list, error: float = 1.5, adjustment: float = 0.0,
                 height: float = 1.0e-5) -> None:
        self.vec = [float(x) for x in vec]
        self.error = error
        self.adjustment = adjustment
        self.height = height

    @classmethod
    def new(cls, config: CoordinateConfig) -> Coordinate:
        """A fresh coordinate at the origin (Serf's `NewCoordinate`)."""
        return _new_coordinate(config.dimensionality, config.vivaldi_error_max,
                               config.height_min)

    def clone(self) -> Coordinate:
        """An independent copy."""
        return _clone(self)

    def is_valid(self) -> bool:
        """False if any component is NaN or infinite."""
        return _is_valid(self)

    def is_compatible_with(self, other: Coordinate) -> bool:
        """True if both have the same dimensionality."""
        return len(self.vec) == len(other.vec)

    def raw_distance_to(self, other: Coordinate) -> float:
        """Euclidean distance plus both heights, in seconds, without adjustments."""
        _check_dimensions(self, other)
        return _raw_distance(self, other)

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds (Serf's `DistanceTo`, whole nanoseconds)."""
        _check_dimensions(self, other)
        return _distance(self, other)

    def apply_force(self, config: CoordinateConfig, force: float, other: Coordinate,
                    rng: RandomSource) -> Coordinate:
        """A copy pushed `force` seconds away from `other` (towards it if negative)."""
        _check_dimensions(self, other)
        return _apply_force(self, force, other, config.height_min, rng)

    def to_wire(self) -> dict:
        """The Go struct as a map, keys in the order Go's encoder writes them."""
        return {"Adjustment": self.adjustment, "Error": self.error,
                "Height": self.height, "Vec": list(self.vec)}

    @classmethod
    def from_wire(cls, obj: Any) -> Coordinate:
        """Decode a msgpack-decoded Coordinate map (str or bytes keys).

        As Go's decoder: unknown keys are ignored, missing ones and nil take the zero
        value, integers are accepted as floats. Wrong shapes raise ValueError; NaN and
        infinities pass (see `is_valid`).
        """
        if not isinstance(obj, dict):
            raise ValueError(f"coordinate is {type(obj).__name__}, not a map")
        vec: list = []
        error = adjustment = height = 0.0
        for key, value in obj.items():
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            if key == "Vec":
                if value is None:
                    vec = []
                elif isinstance(value, (list, tuple)):
                    vec = [_to_float(x, "Vec entry") for x in value]
                else:
                    raise ValueError(f"coordinate Vec is {type(value).__name__}, not an array")
            elif key == "Error":
                error = _to_float(value, "Error")
            elif key == "Adjustment":
                adjustment = _to_float(value, "Adjustment")
            elif key == "Height":
                height = _to_float(value, "Height")
        return Coordinate(vec, error, adjustment, height)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Coordinate):
            return NotImplemented
        return (self.vec == other.vec and self.error == other.error
                and self.adjustment == other.adjustment and self.height == other.height)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"Coordinate(vec={self.vec!r}, error={self.error!r}, "
                f"adjustment={self.adjustment!r}, height={self.height!r})")


def _new_coordinate(dimensionality: int, error: float, height: float) -> Coordinate:
    return Coordinate([0.0] * dimensionality, error, 0.0, height)


def _clone(c: Coordinate) -> Coordinate:
    out = Coordinate.__new__(Coordinate)
    out.vec = list(c.vec)
    out.error = c.error
    out.adjustment = c.adjustment
    out.height = c.height
    return out


def _is_valid(c: Coordinate) -> bool:
    vec = c.vec
    for i in range(len(vec)):
        if not _finite(vec[i]):
            return False
    return _finite(c.error) and _finite(c.adjustment) and _finite(c.height)


def _check_dimensions(a: Coordinate, b: Coordinate) -> None:
    # Serf panics with DimensionalityConflictError here
    if len(a.vec) != len(b.vec):
        raise ValueError("coordinate dimensionality does not match")


def _raw_distance(a: Coordinate, b: Coordinate) -> float:
    # magnitude(diff(a, b)) + heights; dimensions already checked
    av = a.vec
    bv = b.vec
    total = 0.0
    for i in range(len(av)):
        x = av[i]
        y = bv[i]
        d = x - y
        total += d * d
    return math.sqrt(total) + a.height + b.height


def _distance(a: Coordinate, b: Coordinate) -> float:
    # the adjustments count only while they leave the distance positive
    dist = _raw_distance(a, b)
    adjusted = dist + a.adjustment + b.adjustment
    if adjusted > 0.0:
        dist = adjusted
    return _duration_seconds(dist)


def _apply_force(c: Coordinate, force: float, other: Coordinate, height_min: float,
                 rng: RandomSource) -> Coordinate:
    """Serf's ApplyForce: a copy of `c` moved `force` along the unit vector from `other`."""
    cv = c.vec
    ov = other.vec
    n = len(cv)
    total = 0.0
    for i in range(n):
        x = cv[i]
        y = ov[i]
        d = x - y
        total += d * d
    mag = math.sqrt(total)
    vec = [0.0] * n
    if mag > _ZERO_THRESHOLD:
        scale = 1.0 / mag            # Go multiplies by 1/mag: not the same bits as d/mag
        for i in range(n):
            x = cv[i]
            y = ov[i]
            vec[i] = x + (x - y) * scale * force
    else:
        # on top of each other: a random direction (Serf: math/rand) and no height change
        direction = [rng.random() - 0.5 for _ in range(n)]
        total = 0.0
        for i in range(n):
            d = direction[i]
            total += d * d
        rmag = math.sqrt(total)
        if rmag > _ZERO_THRESHOLD:
            scale = 1.0 / rmag
        else:                        # "exceedingly rare": along the first axis
            direction = [0.0] * n
            direction[0] = 1.0
            scale = 1.0
        for i in range(n):
            x = cv[i]
            d = direction[i]
            vec[i] = x + d * scale * force
    out = Coordinate.__new__(Coordinate)
    out.vec = vec
    out.error = c.error
    out.adjustment = c.adjustment
    height = c.height
    if mag > _ZERO_THRESHOLD:
        height = (height + other.height) * force / mag + height
        if height < height_min:      # math.Max; a NaN height stays NaN (then reset)
            height = height_min
    out.height = height
    return out


class CoordinateClient:
    """This node's coordinate, moved by RTT observations (Serf's `coordinate.Client`)."""

    def __init__(self, config: CoordinateConfig, rng: RandomSource) -> None:
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.stats = CoordinateStats()
        self._rng = rng
        self._dim = config.dimensionality
        self._error_max = config.vivaldi_error_max
        self._ce = config.vivaldi_ce
        self._cc = config.vivaldi_cc
        self._height_min = config.height_min
        self._rho = config.gravity_rho
        self._window = config.adjustment_window_size
        self._filter_size = config.latency_filter_size
        self._coord = _new_coordinate(self._dim, self._error_max, self._height_min)
        self._origin = _new_coordinate(self._dim, self._error_max, self._height_min)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * self._window
        self._latency = {}

    def get_coordinate(self) -> Coordinate:
        """A copy of this node's coordinate."""
        return _clone(self._coord)

    def set_coordinate(self, coord: Coordinate) -> None:
        """Force this node's coordinate (a copy); ValueError if invalid or incompatible."""
        self._check(coord)
        self._coord = _clone(coord)

    def forget_node(self, node: str) -> None:
        """Drop the RTT samples kept for `node`."""
        self._latency.pop(node, None)

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds from this node to `other`."""
        _check_dimensions(self._coord, other)
        return _distance(self._coord, other)

    def update(self, node: str, other: Coordinate, rtt_seconds: float) -> Coordinate:
        """Observe `rtt_seconds` to `node` at `other`; returns the new coordinate (a copy).

        ValueError, and no change, if `other` is invalid or of another dimensionality,
        or the RTT is outside [0, MAX_RTT].
        """
        self._check(other)
        if not (0.0 <= rtt_seconds <= _MAX_RTT):
            raise ValueError(f"round trip time not in valid range, {rtt_seconds!r} s is not "
                             f"a positive value less than {MAX_RTT!r} s")
        # Serf is handed a time.Duration: round to the nearest nanosecond, so that
        # update(..., ns / 1e9) sees exactly what Go's Update(..., ns) does
        rtt_ns = int(rtt_seconds * 1e9 + 0.5)
        if rtt_ns == 0:
            self.stats.zero_rtt += 1
        rtt = self._latency_filter(node, _ns_seconds(rtt_ns))
        self._update_vivaldi(other, rtt)
        self._update_adjustment(other, rtt)
        self._update_gravity()
        if not _is_valid(self._coord):
            self.stats.resets += 1
            self._coord = _new_coordinate(self._dim, self._error_max, self._height_min)
        return _clone(self._coord)

    def _check(self, coord: Coordinate) -> None:
        if not isinstance(coord, Coordinate):
            raise TypeError(f"expected a Coordinate, got {type(coord).__name__}")
        if len(coord.vec) != self._dim:
            raise ValueError("dimensions aren't compatible")
        if not _is_valid(coord):
            raise ValueError("coordinate is invalid")

    def _latency_filter(self, node: str, rtt: float) -> float:
        # moving median of the last `latency_filter_size` samples for this peer
        samples = self._latency.get(node)
        if samples is None:
            samples = []
            self._latency[node] = samples
        samples.append(rtt)
        if len(samples) > self._filter_size:
            del samples[0]
        return median_rtt(samples)

    def _update_vivaldi(self, other: Coordinate, rtt: float) -> None:
        dist = _distance(self._coord, other)
        if rtt < _ZERO_THRESHOLD:
            rtt = _ZERO_THRESHOLD
        wrongness = abs(dist - rtt) / rtt
        total_error = self._coord.error + other.error
        if total_error < _ZERO_THRESHOLD:
            total_error = _ZERO_THRESHOLD
        weight = self._coord.error / total_error
        error = self._ce * weight * wrongness + self._coord.error * (1.0 - self._ce * weight)
        if error > self._error_max:
            error = self._error_max
        self._coord.error = error
        force = self._cc * weight * (rtt - dist)
        self._coord = _apply_force(self._coord, force, other, self._height_min, self._rng)

    def _update_adjustment(self, other: Coordinate, rtt: float) -> None:
        # sum/(2·window) of rtt − raw distance (the adjustments themselves excluded)
        if self._window == 0:
            return
        samples = self._adjustment_samples
        samples[self._adjustment_index] = rtt - _raw_distance(self._coord, other)
        self._adjustment_index = (self._adjustment_index + 1) % self._window
        total = 0.0
        for i in range(self._window):
            x = samples[i]
            total += x
        self._coord.adjustment = total / (2.0 * self._window)

    def _update_gravity(self) -> None:
        # pull towards the origin against drift: force = -(distance/rho)^2
        # (Go's math.Pow(x, 2) equals x*x outside the subnormal range)
        q = _distance(self._origin, self._coord) / self._rho
        force = -1.0 * (q * q)
        self._coord = _apply_force(self._coord, force, self._origin, self._height_min, self._rng)

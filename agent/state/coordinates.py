"""Network coordinates (Consul's agent/consul/state/coordinate.go): the "coordinates" table,
applied from Raft commands of MessageType CoordinateBatchUpdate (6). Pure.

Every agent sends its LAN Vivaldi coordinate to the servers now and then; the leader
batches them and commits one command per batch. A row is {Node, Segment, Coord} keyed by
lower-cased node and segment (Consul's "id" index), so reads list them in that order.
As in Consul: an update for a node the catalog does not know is dropped silently (the node
registers itself soon and sends again), a coordinate with NaN or infinite values is
skipped (on apply and on restore), and deregistering a node deletes its coordinates.

`sort_by_distance` is Consul's sortNodesByDistanceFrom (agent/consul/rtt.go), used by the
catalog and health reads for `?near=`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar

import msgpack

from _core.vivaldi import Coordinate

if TYPE_CHECKING:
    from .store import Store

COORDINATE_BATCH_UPDATE = 6         # Consul's structs.CoordinateBatchUpdateType
TABLE = "coordinates"

T = TypeVar("T")


def batch_update_command(updates: list[dict]) -> bytes:
    """The Raft command of one batch: [{Node, Segment, Coord}] (Consul's structs.Coordinates)."""
    return bytes((COORDINATE_BATCH_UPDATE,)) + msgpack.packb(
        [{"Node": u["Node"], "Segment": u.get("Segment") or "", "Coord": u["Coord"]}
         for u in updates])


def parse_coordinate(obj: Any) -> Coordinate | None:
    """A wire coordinate ({Vec, Error, Adjustment, Height}) if well formed and every
    component is finite (Consul's Coordinate.IsValid), else None."""
    if not isinstance(obj, dict):
        return None
    try:
        c = Coordinate.from_wire(obj)
    except ValueError:
        return None
    return c if c.is_valid() else None


def compute_distance(a: Coordinate | None, b: Coordinate | None) -> float:
    """Consul's lib.ComputeDistance: estimated RTT in seconds, +Inf when either is missing
    (or, which Consul's store never holds, their dimensions differ)."""
    if a is None or b is None or not a.is_compatible_with(b):
        return math.inf
    return a.distance_to(b)


def intersect(ours: dict[str, Coordinate], other: dict[str, Coordinate]
              ) -> tuple[Coordinate | None, Coordinate | None]:
    """Consul's CoordinateSet.Intersect: the coordinates of both in one segment — the
    default one, unless either side has a single segment (a client), whose segment wins
    (the other side's when both have one)."""
    segment = ""
    if len(ours) == 1:
        segment = next(iter(ours))
    if len(other) == 1:
        segment = next(iter(other))
    return ours.get(segment), other.get(segment)


class Coordinates:
    """The coordinates table; attaches itself to `store` as `store.coordinates`."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        # lower(node) -> lower(segment) -> row {"Node", "Segment", "Coord" (wire dict)}
        self.rows: dict[str, dict[str, dict]] = {}
        # the same, decoded, for distance estimates (kept in step with `rows`)
        self._parsed: dict[str, dict[str, Coordinate]] = {}
        store.coordinates = self  # type: ignore[attr-defined]
        store.attach("coordinates", self, {COORDINATE_BATCH_UPDATE: self._apply},
                     tables=(TABLE,))
        store.check_listeners.append(self._on_check)

    # ------------------------------------------------------------------ writes

    def _apply(self, index: int, body: Any) -> Any:
        """Upsert a batch (Consul's CoordinateBatchUpdate); the table index moves even when
        every update was dropped, as Consul's does."""
        if not isinstance(body, list):
            body = []
        catalog = self.store.catalog
        for u in body:
            if not isinstance(u, dict):
                continue
            node, segment = u.get("Node"), u.get("Segment") or ""
            if not isinstance(node, str) or not node or not isinstance(segment, str):
                continue
            coord = parse_coordinate(u.get("Coord"))
            if coord is None:
                continue                    # bad data from an old or broken client
            if node.lower() not in catalog.nodes:
                continue                    # not registered (yet): it will send again
            self._put(node, segment, coord)
        self.store.bump(TABLE, index)
        return True

    def _put(self, node: str, segment: str, coord: Coordinate) -> None:
        nkey, skey = node.lower(), segment.lower()
        self.rows.setdefault(nkey, {})[skey] = {"Node": node, "Segment": segment,
                                                "Coord": coord.to_wire()}
        self._parsed.setdefault(nkey, {})[skey] = coord      # keyed as `rows` is

    def _on_check(self, index: int, node: str, check_id: str, status: str) -> None:
        """(node, "", "") from the catalog: the node was deregistered; its coordinates go."""
        if check_id or status:
            return
        nkey = node.lower()
        self._parsed.pop(nkey, None)
        if self.rows.pop(nkey, None):
            self.store.bump(TABLE, index)

    # ------------------------------------------------------------------ reads
    # Results are copies the caller may keep.

    def list(self) -> tuple[int, list[dict]]:
        """(index, every row in node then segment order) — Consul's Coordinates."""
        out = []
        for nkey in sorted(self.rows):
            segs = self.rows[nkey]
            for skey in sorted(segs):
                out.append(_copy(segs[skey]))
        return self.store.max_index(TABLE), out

    def node(self, name: str) -> tuple[int, list[dict]]:
        """(index, the rows of one node, in segment order) — Consul's Coordinate."""
        segs = self.rows.get(name.lower(), {})
        return self.store.max_index(TABLE), [_copy(segs[s]) for s in sorted(segs)]

    def coordinate_set(self, name: str) -> dict[str, Coordinate]:
        """{segment: Coordinate} of a node (empty when it has none); not copies: read only."""
        return self._parsed.get(name.lower(), {})

    def sort_by_distance(self, source: str, items: Iterable[T],
                         node_of: Callable[[T], str]) -> list[T]:
        """`items` ordered by estimated RTT from node `source` (Consul's
        sortNodesByDistanceFrom): a stable sort, items whose node has no coordinate last;
        in their given order when `source` has no coordinate."""
        items = list(items)
        ours = self.coordinate_set(source) if source else {}
        if not ours:
            return items
        dist = [compute_distance(*intersect(ours, self.coordinate_set(node_of(it))))
                for it in items]
        order = sorted(range(len(items)), key=dist.__getitem__)     # sorted() is stable
        return [items[i] for i in order]

    def sort_near(self, source: Any, datacenter: str, items: Iterable[T],
                  node_of: Callable[[T], str]) -> list[T]:
        """`sort_by_distance` from a request's `Source` ({Datacenter, Node}, Consul's
        QuerySource): unchanged without a Source node or when its Datacenter is not
        `datacenter` (coordinates do not compare across datacenters)."""
        items = list(items)
        if not isinstance(source, dict) or source.get("Datacenter") != datacenter:
            return items
        node = source.get("Node")
        if not node or not isinstance(node, str):
            return items
        return self.sort_by_distance(node, items, node_of)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Any:
        return [[r["Node"], r["Segment"], r["Coord"]]
                for segs in self.rows.values() for r in segs.values()]

    def restore(self, data: Any) -> None:
        self.rows, self._parsed = {}, {}
        for node, segment, wire in data:
            coord = parse_coordinate(wire)
            if coord is not None:           # as Consul's Restore: skip bad data
                self._put(node, segment, coord)


def _copy(row: dict) -> dict:
    c = row["Coord"]
    return {"Node": row["Node"], "Segment": row["Segment"],
            "Coord": {"Adjustment": c["Adjustment"], "Error": c["Error"], "Height": c["Height"],
                      "Vec": list(c["Vec"])}}

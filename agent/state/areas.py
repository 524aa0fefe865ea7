"""Network areas (Consul Enterprise's operator areas, shared/spec/federation.md §2, §4.3):
the "areas" table, applied from Raft commands of MessageType 10. Pure.

An area is an operator-defined link between this datacenter's servers and the servers of
one peer datacenter. The definition lives only in the datacenter where it was created (the
peer holds its own, with its own UUID); every server of the DC runs a gossip pool per area
(agent/areas/), reconciled against this table.

Commands are deterministic: the proposer makes the area's UUID and puts it in the command,
together with its own datacenter, so every server applies the same create and can refuse a
peer equal to the own DC without knowing its configuration. A command that breaks a rule
(no peer, peer = own DC, a second area for the same peer, an unknown ID) is answered with a
CommandError and changes nothing, so the same checks made by the RPC layer before proposing
are repeated here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from .store import CommandError

if TYPE_CHECKING:
    from .store import Store

AREA_REQUEST = 10                   # MessageType of area writes (issue #6)
AREA_OPS = ("create", "update", "delete")


def unknown_area(area_id: str) -> str:
    """The error text for an area ID with no definition (the HTTP layer maps it to 404)."""
    return f"unknown area {_quote(area_id)}"


@dataclass(slots=True)
class Area:
    id: str
    peer_datacenter: str
    retry_join: list | None
    use_tls: bool
    create_index: int
    modify_index: int

    def as_dict(self) -> dict:
        """The shared shape (BRIEF contract #1): Consul's api.Area plus the Raft indexes."""
        return {"ID": self.id, "PeerDatacenter": self.peer_datacenter,
                "RetryJoin": list(self.retry_join) if self.retry_join is not None else None,
                "UseTLS": self.use_tls, "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index}

    def row(self) -> list:
        return [self.id, self.peer_datacenter, self.retry_join, self.use_tls, self.create_index,
                self.modify_index]


def area_command(op: str, area: dict, datacenter: str = "") -> bytes:
    """The Raft command of an area write: {"Op", "Area", "Datacenter" (the proposer's DC)}.
    `area` carries "ID" always (the proposer makes it on create) and, as the op needs them,
    "PeerDatacenter", "RetryJoin", "UseTLS"."""
    if op not in AREA_OPS:
        raise CommandError(f"Unknown area operation: {op}")
    return bytes((AREA_REQUEST,)) + msgpack.packb({"Op": op, "Area": area,
                                                   "Datacenter": datacenter})


def check_retry_join(v: Any) -> list | None:
    """RetryJoin as stored: None, or a list of non-empty strings (CommandError otherwise)."""
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise CommandError("RetryJoin must be a list of addresses (strings)")
    if any(not x.strip() for x in v):
        raise CommandError("RetryJoin must not contain empty addresses")
    return list(v)


class Areas:
    """The areas table; attaches itself to `store` as `store.areas`."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        self.areas: dict[str, Area] = {}
        store.areas = self
        store.attach("areas", self, {AREA_REQUEST: self._apply}, tables=("areas",))

    # ------------------------------------------------------------------ reads

    def list(self) -> tuple[int, list[dict]]:
        """(the table's index, every area sorted by ID) — copies, safe to keep."""
        rows = [self.areas[k].as_dict() for k in sorted(self.areas)]
        return self.store.indexes.get("areas", 0), rows

    def get(self, area_id: str) -> dict | None:
        a = self.areas.get(area_id)
        return a.as_dict() if a is not None else None

    def by_peer(self, dc: str) -> dict | None:
        """The area whose PeerDatacenter is `dc` (at most one exists)."""
        for a in self.areas.values():
            if a.peer_datacenter == dc:
                return a.as_dict()
        return None

    # ------------------------------------------------------------------ validation

    def check_create(self, area: dict, datacenter: str) -> None:
        """Every rule a create must pass (CommandError with the first one broken)."""
        area_id = area.get("ID")
        if not isinstance(area_id, str) or not area_id:
            raise CommandError("Missing area ID")
        if area_id in self.areas:
            raise CommandError(f"area {_quote(area_id)} already exists")
        peer = area.get("PeerDatacenter")
        if peer is None or peer == "":
            raise CommandError("Must provide a PeerDatacenter")
        if not isinstance(peer, str):
            raise CommandError("PeerDatacenter must be a string")
        if datacenter and peer == datacenter:
            raise CommandError(f"Cannot create an area with the local datacenter "
                               f"{_quote(peer)} as its peer")
        other = self.by_peer(peer)
        if other is not None:
            raise CommandError(f"An area for peer datacenter {_quote(peer)} already exists "
                               f"(ID {_quote(other['ID'])})")
        check_retry_join(area.get("RetryJoin"))
        if not isinstance(area.get("UseTLS", False), bool):
            raise CommandError("UseTLS must be a boolean")

    def check_update(self, area: dict) -> Area:
        """Every rule an update must pass; the area it changes."""
        area_id = area.get("ID")
        if not isinstance(area_id, str) or not area_id:
            raise CommandError("Missing area ID")
        cur = self.areas.get(area_id)
        if cur is None:
            raise CommandError(unknown_area(area_id))
        peer = area.get("PeerDatacenter")
        if peer not in (None, "") and peer != cur.peer_datacenter:
            raise CommandError(f"Cannot change the PeerDatacenter of area {_quote(area_id)} "
                               f"(it is {_quote(cur.peer_datacenter)}); delete it and create "
                               f"a new one")
        check_retry_join(area.get("RetryJoin"))
        if "UseTLS" in area and area["UseTLS"] is not None and not isinstance(area["UseTLS"], bool):
            raise CommandError("UseTLS must be a boolean")
        return cur

    def check_delete(self, area_id: Any) -> None:
        if not isinstance(area_id, str) or not area_id:
            raise CommandError("Missing area ID")
        if area_id not in self.areas:
            raise CommandError(unknown_area(area_id))

    # ------------------------------------------------------------------ writes

    def _apply(self, index: int, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("Area"), dict):
            return CommandError("malformed area request")
        op, area = body.get("Op"), body["Area"]
        dc = body.get("Datacenter") or ""
        try:
            if op == "create":
                return self.create(index, area, dc if isinstance(dc, str) else "")
            if op == "update":
                return self.update(index, area)
            if op == "delete":
                return self.delete(index, area.get("ID"))
        except CommandError as exc:
            return exc
        return CommandError(f"Unknown area operation: {op}")

    def create(self, index: int, area: dict, datacenter: str = "") -> str:
        """Insert an area at Raft index `index`; its ID, or CommandError (nothing changed)."""
        self.check_create(area, datacenter)
        a = Area(area["ID"], area["PeerDatacenter"], check_retry_join(area.get("RetryJoin")),
                 bool(area.get("UseTLS", False)), index, index)
        self.areas[a.id] = a
        self.store.bump("areas", index)
        return a.id

    def update(self, index: int, area: dict) -> str:
        """Change an area's UseTLS and/or RetryJoin (a field that is absent or null stays as
        it is: Consul's Go client sends the whole Area, unset fields as zero values/null)."""
        cur = self.check_update(area)
        if area.get("UseTLS") is not None:
            cur.use_tls = area["UseTLS"]
        if area.get("RetryJoin") is not None:
            cur.retry_join = check_retry_join(area["RetryJoin"])
        cur.modify_index = index
        self.store.bump("areas", index)
        return cur.id

    def delete(self, index: int, area_id: Any) -> str:
        self.check_delete(area_id)
        del self.areas[area_id]
        self.store.bump("areas", index)
        return area_id

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Any:
        return [a.row() for a in self.areas.values()]

    def restore(self, data: Any) -> None:
        self.areas = {row[0]: Area(*row) for row in data}


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)

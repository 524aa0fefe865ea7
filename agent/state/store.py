"""The replicated state store: Consul's FSM and its tables, applied from Raft's log. Pure.

A command is one byte of message type (Consul's `structs.MessageType`) then a msgpack body.
Every write carries the Raft index it was committed at: that index becomes the row's
ModifyIndex (and CreateIndex for new rows) and the table's index, which is what
`X-Consul-Index` reports. Deleted KV keys leave the table index at the delete's index, so a
read after a delete never reports an older index (Consul keeps tombstones for this).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Protocol

import msgpack

from ..errors import IsthmusError

# Consul's structs.MessageType values (agent/structs/structs.go)
KVS_REQUEST = 2

KV_OPS = ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock")


class CommandError(IsthmusError):
    """A command that cannot be applied (the write fails; the store is unchanged)."""


@dataclass(slots=True)
class KVEntry:
    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str = ""

    def as_api(self) -> dict:
        """Consul's api.KVPair (Value is base64 in JSON: the HTTP layer encodes it)."""
        return {"Key": self.key, "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index, "LockIndex": self.lock_index,
                "Flags": self.flags, "Value": self.value, "Session": self.session or None}


def kv_command(op: str, key: str, value: bytes = b"", flags: int = 0, cas: int = 0,
               session: str = "") -> bytes:
    """The Raft command of a KV write (Consul's KVSRequest, reduced to what it carries;
    `session` only for lock/unlock — commands written before locks existed have 5 fields)."""
    if op not in KV_OPS:
        raise CommandError(f"Unknown KVS operation: {op}")
    fields = [op, key, value, flags, cas]
    if session:
        fields.append(session)
    return bytes((KVS_REQUEST,)) + msgpack.packb(fields)


class Part(Protocol):
    """A group of tables kept by its own module (catalog, sessions, ...): it registers its
    command types with `Store.attach` and rides along in snapshots."""

    def snapshot(self) -> Any: ...            # msgpack-able
    def restore(self, data: Any) -> None: ...


class Store:
    """The tables. `apply(index, data)` is the Raft state machine's apply.

    Every write records the tables it touched in `changed` (drained by the server after each
    batch of applied entries, to wake blocking queries on those tables)."""

    def __init__(self) -> None:
        self.kv: dict[str, KVEntry] = {}
        self.indexes: dict[str, int] = {"kvs": 0}
        self.last_index = 0
        self.changed: set[str] = set()
        self._appliers: dict[int, Callable[[int, Any], Any]] = {KVS_REQUEST: self._apply_kvs}
        self._parts: dict[str, Part] = {}
        # (index, node, check_id, status) whenever a catalog health check changes or goes
        # away (status "" = deleted): sessions tied to checks are invalidated from here
        self.check_listeners: list[Callable[[int, str, str, str], None]] = []
        # KV undo log of an open transaction (key -> entry before the txn, None = absent)
        self._undo: dict[str, KVEntry | None] | None = None
        # Parts every store carries (attached here so WAL replay and snapshot restore at
        # start-up already find their command types). Imported late: they import this module.
        from .areas import Areas
        from .catalog import Catalog
        from .coordinates import Coordinates
        from .sessions import Sessions
        from .txn import Txn
        Catalog(self)
        Sessions(self)
        Txn(self)
        Areas(self)
        Coordinates(self)

    def attach(self, name: str, part: Part, appliers: dict[int, Callable[[int, Any], Any]],
               tables: tuple[str, ...]) -> None:
        """Add a part: its command types, and the index names of its tables."""
        for typ in appliers:
            if typ in self._appliers:
                raise ValueError(f"command type {typ} is taken")
        self._appliers.update(appliers)
        self._parts[name] = part
        for t in tables:
            self.indexes.setdefault(t, 0)

    def bump(self, table: str, index: int) -> None:
        """`table` changed at Raft index `index`."""
        self.indexes[table] = index
        self.changed.add(table)

    def drain_changed(self) -> set[str]:
        out, self.changed = self.changed, set()
        return out

    def max_index(self, *tables: str) -> int:
        """The index a read of these tables reports (Consul's maxIndex; at least 1)."""
        return max([1] + [self.indexes.get(t, 0) for t in tables])

    # ------------------------------------------------------------------ state machine

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command; its result (or a CommandError instance) goes back
        to the proposer. Never raises for a bad command: every server must stay in step."""
        self.last_index = index
        fn = self._appliers.get(data[0])
        if fn is None:
            return CommandError(f"unknown command type {data[0]}")
        try:
            return fn(index, msgpack.unpackb(data[1:]))
        except (ValueError, TypeError, KeyError) as exc:   # only a bug of ours gets here
            return CommandError(f"malformed command: {exc}")

    def snapshot(self) -> bytes:
        kv = [[e.key, e.value, e.flags, e.create_index, e.modify_index, e.lock_index, e.session]
              for e in self.kv.values()]
        parts = {name: part.snapshot() for name, part in self._parts.items()}
        return msgpack.packb({"v": 1, "last_index": self.last_index, "indexes": self.indexes,
                              "kv": kv, "parts": parts})

    def restore(self, data: bytes) -> None:
        snap = msgpack.unpackb(data)
        self.kv = {row[0]: KVEntry(*row) for row in snap["kv"]}
        self.indexes.update(snap["indexes"])
        self.last_index = snap["last_index"]
        for name, part in self._parts.items():
            if name in snap.get("parts", {}):
                part.restore(snap["parts"][name])
        self.changed = set(self.indexes)

    # ------------------------------------------------------------------ KV

    def _apply_kvs(self, index: int, body: list) -> Any:
        op, key, value, flags, cas = body[:5]
        session = body[5] if len(body) > 5 else ""
        try:
            return self.kv_apply(index, op, key, value, flags, cas, session)
        except CommandError as exc:
            return exc

    def kv_apply(self, index: int, op: str, key: str, value: bytes = b"", flags: int = 0,
                 cas: int = 0, session: str = "") -> bool:
        """One KV write at Raft index `index`, as Consul's kvs*Txn functions: True if it
        took effect, False when a CAS or lock condition did not hold; CommandError for a
        write that is an error (unknown op, lock without a live session)."""
        kv = self.kv
        cur = kv.get(key)
        if op == "set":
            self._kv_set(index, key, value, flags, cur)
            return True
        if op == "cas":
            # cas=0: only if the key does not exist; else only if ModifyIndex matches
            if (cas == 0 and cur is not None) or (cas != 0 and (cur is None or cur.modify_index != cas)):
                return False
            self._kv_set(index, key, value, flags, cur)
            return True
        if op == "delete":
            self.kv_delete(index, key)
            return True
        if op == "delete-cas":
            # as Consul's kvsDeleteCASTxn: a missing key counts as deleted
            if cur is None:
                return True
            if cur.modify_index != cas:
                return False
            self.kv_delete(index, key)
            return True
        if op == "delete-tree":
            for k in [k for k in kv if k.startswith(key)]:
                self._kv_touch(k)
                del kv[k]
            self.bump("kvs", index)
            return True
        if op == "lock":
            if not session:
                raise CommandError("missing session")
            sessions = self._parts.get("sessions")
            if sessions is None or sessions.get(session) is None:
                raise CommandError(f"invalid session {_go_quote(session)}")
            if cur is not None and cur.session and cur.session != session:
                return False                        # someone else holds it
            if cur is None:
                lock_index = 1
            elif cur.session == session:
                lock_index = cur.lock_index         # re-acquire: same lock
            else:
                lock_index = cur.lock_index + 1
            self._kv_set(index, key, value, flags, cur, session=session, lock_index=lock_index)
            return True
        if op == "unlock":
            if not session:
                raise CommandError("missing session")
            if cur is None or cur.session != session:
                return False                        # only the holder releases
            self._kv_set(index, key, value, flags, cur, session="")
            return True
        raise CommandError(f"Unknown KVS operation: {op}")

    def _kv_touch(self, key: str) -> None:
        """Record `key`'s state before its first change inside an open transaction."""
        undo = self._undo
        if undo is not None and key not in undo:
            cur = self.kv.get(key)
            undo[key] = replace(cur) if cur is not None else None

    def _kv_set(self, index: int, key: str, value: bytes, flags: int, cur: KVEntry | None,
                session: str | None = None, lock_index: int | None = None) -> None:
        """Write a key; its session and lock index stay unless given (Consul's kvsSetTxn)."""
        self._kv_touch(key)
        if cur is None:
            cur = self.kv[key] = KVEntry(key, value, flags, index, index)
        else:
            cur.value, cur.flags, cur.modify_index = value, flags, index
        if session is not None:
            cur.session = session
        if lock_index is not None:
            cur.lock_index = lock_index
        self.bump("kvs", index)

    def kv_delete(self, index: int, key: str) -> None:
        """Delete one key (a missing key still moves the table index)."""
        if key in self.kv:
            self._kv_touch(key)
            del self.kv[key]
        self.bump("kvs", index)

    def kv_release(self, index: int, key: str) -> None:
        """Clear a key's lock holder (session invalidation with behavior "release")."""
        cur = self.kv.get(key)
        if cur is not None:
            self._kv_touch(key)
            cur.session, cur.modify_index = "", index
            self.bump("kvs", index)

    def kv_held_by(self, session: str) -> list[str]:
        """Keys whose lock `session` holds (a scan: invalidations are rare next to KV writes)."""
        return sorted(k for k, e in self.kv.items() if e.session == session)

    def begin(self) -> None:
        """Open a transaction: later KV changes can be undone by `rollback()`."""
        if self._undo is not None:
            raise RuntimeError("transaction already open")
        self._undo = {}
        self._txn_saved = (dict(self.indexes), set(self.changed))

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        """Put every key the open transaction changed back, and the table indexes."""
        undo, self._undo = self._undo or {}, None
        for key, old in undo.items():
            if old is None:
                self.kv.pop(key, None)
            else:
                self.kv[key] = old
        indexes, self.changed = self._txn_saved
        self.indexes.clear()
        self.indexes.update(indexes)

    def kv_get(self, key: str) -> KVEntry | None:
        return self.kv.get(key)

    def kv_list(self, prefix: str) -> list[KVEntry]:
        return sorted((e for k, e in self.kv.items() if k.startswith(prefix)), key=lambda e: e.key)


def _go_quote(s: str) -> str:
    """Go's %#v / %q of a string (printable ASCII as is; JSON escapes are close enough)."""
    return json.dumps(s, ensure_ascii=False)

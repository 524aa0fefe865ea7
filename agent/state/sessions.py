"""Sessions (Consul's agent/consul/state/session.go): the "sessions" table, applied from
Raft commands of MessageType Session (3). Pure.

A session ties KV locks to a node and a set of health checks. Destroying it — by request,
by its TTL running out (the leader proposes the destroy), or by invalidation when one of
its checks turns critical or goes away, or its node is deregistered — releases every key
it holds, or deletes them when its Behavior is "delete".

The session ID is made by the proposer (a UUID) and carried in the command, so every
server applies the same create. TTL timers are the leader's business (agent/sessions_ttl.py);
this table only stores the TTL string.

Lock delay: Consul keeps lock-delay expirations in memory beside the FSM, stamped with
each server's own clock when it applies the invalidation, and only the leader enforces them,
before it proposes a lock. We do the same: the invalidation reports (key, delay seconds) to
`lock_delay_listeners`; the server's driver stamps them with its clock and refuses acquires
until they pass. Nothing in the replicated state depends on a clock, so apply stays
deterministic; lock delays are not in snapshots and do not survive a leader change longer
than the new leader's own record of the same invalidation (as in Consul).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import msgpack

from .store import CommandError

if TYPE_CHECKING:
    from .store import Store

SESSION_REQUEST = 3                 # Consul's structs.SessionRequestType
SERF_CHECK_ID = "serfHealth"        # Consul's structs.SerfCheckID
DEFAULT_LOCK_DELAY = 15_000_000_000     # ns (Consul's default: 15 s)
MAX_LOCK_DELAY = 60_000_000_000         # ns (structs.MaxLockDelay: 60 s)
BEHAVIORS = ("release", "delete")
CRITICAL = "critical"


@dataclass(slots=True)
class Session:
    id: str
    name: str
    node: str
    lock_delay: int                 # nanoseconds, as Consul's time.Duration
    behavior: str
    ttl: str
    node_checks: list | None
    service_checks: list | None     # [{"ID": ..., "Namespace": ...}]
    checks: list | None             # the deprecated Checks field
    create_index: int
    modify_index: int

    def check_ids(self) -> list[str]:
        """Every check the session depends on (Consul's Session.CheckIDs)."""
        out = list(self.checks or []) + list(self.node_checks or [])
        out += [sc.get("ID", "") for sc in (self.service_checks or []) if isinstance(sc, dict)]
        return out

    def as_api(self) -> dict:
        """Consul's structs.Session in JSON (Checks is omitempty)."""
        out = {"ID": self.id, "Name": self.name, "Node": self.node, "LockDelay": self.lock_delay,
               "Behavior": self.behavior, "TTL": self.ttl, "NodeChecks": self.node_checks,
               "ServiceChecks": self.service_checks, "CreateIndex": self.create_index,
               "ModifyIndex": self.modify_index}
        if self.checks:
            out["Checks"] = self.checks
        return out

    def row(self) -> list:
        return [self.id, self.name, self.node, self.lock_delay, self.behavior, self.ttl,
                self.node_checks, self.service_checks, self.checks, self.create_index,
                self.modify_index]


def session_command(op: str, session: dict) -> bytes:
    """The Raft command of a session write (Consul's SessionRequest: Op + Session)."""
    return bytes((SESSION_REQUEST,)) + msgpack.packb({"Op": op, "Session": session})


def _str_list(v: Any, name: str) -> list | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise CommandError(f"{name} must be a list of strings")
    return list(v)


class Sessions:
    """The sessions table; attaches itself to `store` as `store.sessions`."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        self.sessions: dict[str, Session] = {}
        # (key, delay seconds) when an invalidated session leaves a lock delay on a key
        self.lock_delay_listeners: list[Callable[[str, float], None]] = []
        # (session id) after a session is gone, whatever the reason (TTL timers forget it)
        self.destroy_listeners: list[Callable[[str], None]] = []
        store.sessions = self
        store.attach("sessions", self, {SESSION_REQUEST: self._apply}, tables=("sessions",))
        store.check_listeners.append(self._on_check)

    # ------------------------------------------------------------------ reads

    def get(self, sid: str) -> Session | None:
        return self.sessions.get(sid)

    def list(self) -> list[Session]:
        return sorted(self.sessions.values(), key=lambda s: s.id)

    def node_sessions(self, node: str) -> list[Session]:
        node = node.lower()                 # Consul's node index is case-insensitive
        return [s for s in self.list() if s.node.lower() == node]

    # ------------------------------------------------------------------ writes

    def _apply(self, index: int, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("Session"), dict):
            return CommandError("malformed session request")
        op, sess = body.get("Op"), body["Session"]
        try:
            if op == "create":
                return self.create(index, sess)
            if op == "destroy":
                self.destroy(index, str(sess.get("ID") or ""))
                return True
        except CommandError as exc:
            return exc
        return CommandError(f"Invalid session operation {_quote(str(op))}")

    def create(self, index: int, s: dict) -> str:
        """Insert a session (Consul's sessionCreateTxn); its ID, or CommandError."""
        sid = s.get("ID")
        if not sid or not isinstance(sid, str):
            raise CommandError("Missing session ID")
        behavior = s.get("Behavior") or "release"
        if behavior not in BEHAVIORS:
            raise CommandError(f"Invalid session behavior: {behavior}")
        node = s.get("Node") or ""
        lock_delay = s.get("LockDelay", DEFAULT_LOCK_DELAY)
        if type(lock_delay) is not int or not isinstance(node, str):
            raise CommandError("malformed session")
        sc = s.get("ServiceChecks")
        if sc is not None and (not isinstance(sc, list) or not all(isinstance(x, dict) for x in sc)):
            raise CommandError("ServiceChecks must be a list of objects")
        sess = Session(sid, str(s.get("Name") or ""), node, lock_delay, behavior,
                       str(s.get("TTL") or ""), _str_list(s.get("NodeChecks"), "NodeChecks"),
                       [dict(x) for x in sc] if sc is not None else None,
                       _str_list(s.get("Checks"), "Checks"), index, index)
        catalog = self.store.catalog
        if node.lower() not in catalog.nodes:
            raise CommandError("Missing node registration")
        for cid in sess.check_ids():
            row = catalog.checks.get(node.lower(), {}).get(cid.lower())
            status = row["Status"] if row else None
            if status is None:
                raise CommandError(f"Missing check '{cid}' registration")
            if status == CRITICAL:
                raise CommandError(f"Check '{cid}' is in {status} state")
        self.sessions[sid] = sess
        self.store.bump("sessions", index)
        return sid

    def destroy(self, index: int, sid: str) -> bool:
        """Delete a session and release (or delete) its keys; False if it did not exist
        (then nothing changes, as Consul's deleteSessionTxn)."""
        sess = self.sessions.pop(sid, None)
        if sess is None:
            return False
        store = self.store
        store.bump("sessions", index)
        delay = min(sess.lock_delay, MAX_LOCK_DELAY)
        for key in store.kv_held_by(sid):
            if sess.behavior == "delete":
                store.kv_delete(index, key)
            else:
                store.kv_release(index, key)
            if delay > 0:
                for fn in self.lock_delay_listeners:
                    fn(key, delay / 1e9)
        for fn in self.destroy_listeners:
            fn(sid)
        return True

    def _on_check(self, index: int, node: str, check_id: str, status: str) -> None:
        """A catalog check changed: a critical or deleted check invalidates the sessions
        that list it; (node, "", "") means the node itself was deregistered."""
        if status not in (CRITICAL, ""):
            return
        for sess in self.node_sessions(node):
            if (not check_id and not status) or check_id in sess.check_ids():
                self.destroy(index, sess.id)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Any:
        return [s.row() for s in self.sessions.values()]

    def restore(self, data: Any) -> None:
        self.sessions = {row[0]: Session(*row) for row in data}


def _quote(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)

"""Transactions (Consul's agent/consul/state/txn.go): a list of operations applied all
or nothing, from Raft commands of MessageType Txn (8). Pure.

Every operation runs in order; each failure is recorded as a TxnError {OpIndex, What} with
Consul's message and the others still run, so the caller sees every error at once. If any
failed, every change is undone and Results is None. Operations by kind (`Txn.handlers`):
KV (verbs of Consul's txnKVS) and the catalog's Node, Service and Check (get, set, cas,
delete, delete-cas; Consul's txnNode/txnService/txnCheck). Catalog operations go through
the catalog's own Register/Deregister commands and public reads, so they follow exactly
the rules of /v1/catalog/register.

Undo: KV changes through the store's undo log. A catalog write can reach further (a
deleted or critical check invalidates sessions, which release or delete their keys; a
deleted node takes its coordinates), so before the first catalog write of a transaction
the parts it may reach (catalog, sessions, coordinates) are copied, to be put back if the
transaction fails; that copy costs time in the size of those tables, paid only by
transactions that write the catalog. Session invalidations report lock delays and
destroyed sessions to drivers (agent/sessions_ttl.py): those reports are held back until
the transaction commits, and dropped if it fails.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

import msgpack

from .catalog import clone
from .store import CommandError, KVEntry

if TYPE_CHECKING:
    from .store import Store

TXN_REQUEST = 8                     # Consul's structs.TxnRequestType
KV_WRITE_VERBS = ("set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock")
KV_READ_VERBS = ("get", "get-tree", "check-index", "check-session", "check-not-exists")

CATALOG_VERBS = ("get", "set", "cas", "delete", "delete-cas")
# parts a catalog write may change: directly, or through the catalog's check listeners
_UNDO_PARTS = ("catalog", "sessions", "coordinates")

# handler(index, op_body) -> list of result dicts; raises CommandError with Consul's text
OpHandler = Callable[[int, dict], list]


def txn_command(ops: list[dict]) -> bytes:
    """The Raft command of a transaction: ops in the API shape ({"KV": {...}}), values as bytes."""
    return bytes((TXN_REQUEST,)) + msgpack.packb({"Ops": ops})


def _kv_result(e: KVEntry, with_value: bool) -> dict:
    out = e.as_api()
    if not with_value:
        out["Value"] = None
    return {"KV": out}


def _q(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)


def _str(body: dict, name: str, kind: str) -> str:
    v = body.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise CommandError(f"malformed {kind} operation")
    return v


def _uint(body: dict, name: str, kind: str) -> int:
    v = body.get(name) or 0
    if type(v) is not int or v < 0:
        raise CommandError(f"malformed {kind} operation")
    return v


def _sub(body: dict, name: str, kind: str) -> dict:
    v = body.get(name)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise CommandError(f"malformed {kind} operation")
    return v


def _cas_fails(modify_index: int, existing: dict | None) -> bool:
    """Consul's ensure*CASTxn: ModifyIndex 0 sets only if absent; otherwise only if it
    equals the existing row's ModifyIndex."""
    if modify_index == 0:
        return existing is not None
    return existing is None or existing["ModifyIndex"] != modify_index


def _catalog_verb(kind: str, verb: str, where: str, cidx: int, existing: dict | None) -> list | None:
    """What the Node, Service and Check verbs share: an unknown verb fails; "get" answers
    `existing` (or fails: it doesn't exist); "cas" and "delete-cas" fail on a stale index.
    None when the verb goes on to write."""
    if verb not in CATALOG_VERBS:
        raise CommandError(f"unknown {kind} verb {_q(verb)}")
    if verb == "get":
        if existing is None:
            raise CommandError(f"{where} doesn't exist")
        return [{kind: existing}]
    if verb == "cas" and _cas_fails(cidx, existing):
        raise CommandError(f"failed to set {where}, index is stale")
    if verb == "delete-cas" and (existing is None or existing["ModifyIndex"] != cidx):
        raise CommandError(f"failed to delete {where}, index is stale")
    return None


class Txn:
    """Applies transactions; attaches itself to `store` as `store.txn`."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        self.handlers: dict[str, OpHandler] = {"KV": self._kv, "Node": self._node,
                                               "Service": self._service, "Check": self._check}
        self._saved: list | None = None         # parts copied before a catalog write
        store.txn = self
        store.attach("txn", self, {TXN_REQUEST: self._apply}, tables=())

    def snapshot(self) -> Any:           # no state of its own
        return None

    def restore(self, data: Any) -> None:
        pass

    def _apply(self, index: int, body: Any) -> Any:
        ops = body.get("Ops") if isinstance(body, dict) else None
        if not isinstance(ops, list):
            return CommandError("malformed transaction")
        return self.run(index, ops, read_only=False)

    def run(self, index: int, ops: list, read_only: bool) -> dict:
        """{"Results": [...] | None, "Errors": [...] | None}. A read-only run (Txn.Read)
        refuses write verbs and changes nothing."""
        results: list = []
        errors: list = []
        held: list = []                         # session reports held until commit
        self.store.begin()
        self._saved = None
        ok = False
        try:
            with self._holding_session_reports(held):
                for i, op in enumerate(ops):
                    try:
                        results += self._run_op(index, op, read_only)
                    except CommandError as exc:
                        errors.append({"OpIndex": i, "What": str(exc)})
            ok = not errors and not read_only
        finally:                                # errors, read-only runs and our bugs undo
            if ok:
                self.store.commit()
            else:
                self._rollback()
            self._saved = None
        if ok:
            self._release_session_reports(held)
        if errors:
            return {"Results": None, "Errors": errors}
        return {"Results": results or None, "Errors": None}

    def _run_op(self, index: int, op: Any, read_only: bool) -> list:
        if not isinstance(op, dict) or len(op) != 1:
            raise CommandError("operation must have exactly one of KV, Node, Service, Check")
        (kind, body), = op.items()
        fn = self.handlers.get(kind)
        if fn is None:
            raise CommandError(f"{kind} operations are not supported in transactions")
        if not isinstance(body, dict):
            raise CommandError(f"malformed {kind} operation")
        verb = body.get("Verb")
        writes = verb in KV_WRITE_VERBS if kind == "KV" else verb != "get"
        if read_only and writes:
            raise CommandError(f"cannot {verb} in a read-only transaction")
        if kind != "KV" and writes and self._saved is None:
            self._save_parts()
        return fn(index, body)

    # ------------------------------------------------------------------ undo

    def _save_parts(self) -> None:
        saved = []
        for name in _UNDO_PARTS:
            part = getattr(self.store, name, None)
            if part is not None:
                saved.append((part, msgpack.packb(part.snapshot())))
        self._saved = saved

    def _rollback(self) -> None:
        self.store.rollback()
        for part, data in self._saved or ():
            part.restore(msgpack.unpackb(data))

    @contextmanager
    def _holding_session_reports(self, held: list) -> Iterator[None]:
        """While a transaction runs, the sessions part's lock-delay and destroy reports
        are collected in `held` (with the listeners they were for) instead of reaching
        the drivers."""
        sessions = getattr(self.store, "sessions", None)
        if sessions is None:
            yield
            return
        delays, destroys = sessions.lock_delay_listeners, sessions.destroy_listeners
        sessions.lock_delay_listeners = [lambda *a: held.append((delays, a))]
        sessions.destroy_listeners = [lambda *a: held.append((destroys, a))]
        try:
            yield
        finally:
            sessions.lock_delay_listeners, sessions.destroy_listeners = delays, destroys

    @staticmethod
    def _release_session_reports(held: list) -> None:
        for listeners, args in held:
            for fn in list(listeners):
                fn(*args)

    # ------------------------------------------------------------------ KV

    def _kv(self, index: int, op: dict) -> list:
        store = self.store
        verb = op.get("Verb")
        key = op.get("Key") or ""
        value = op.get("Value") or b""
        flags = op.get("Flags") or 0
        cidx = op.get("Index") or 0
        session = op.get("Session") or ""
        if (not isinstance(key, str) or not isinstance(value, bytes) or type(flags) is not int
                or type(cidx) is not int or not isinstance(session, str)):
            raise CommandError("malformed KV operation")
        if verb == "set":
            store.kv_apply(index, "set", key, value, flags)
        elif verb == "delete":
            store.kv_apply(index, "delete", key)
            return []
        elif verb == "delete-tree":
            store.kv_apply(index, "delete-tree", key)
            return []
        elif verb == "delete-cas":
            if not store.kv_apply(index, "delete-cas", key, cas=cidx):
                raise CommandError(f"failed to delete key {_q(key)}, index is stale")
            return []
        elif verb == "cas":
            if not store.kv_apply(index, "cas", key, value, flags, cidx):
                raise CommandError(f"failed to set key {_q(key)}, index is stale")
        elif verb == "lock":
            if not store.kv_apply(index, "lock", key, value, flags, session=session):
                raise CommandError(f"failed to lock key {_q(key)}, lock is already held")
        elif verb == "unlock":
            if not store.kv_apply(index, "unlock", key, value, flags, session=session):
                raise CommandError(f"failed to unlock key {_q(key)}, lock isn't held, "
                                   "or is held by another session")
        elif verb == "get":
            e = store.kv_get(key)
            if e is None:
                raise CommandError(f"key {_q(key)} doesn't exist")
            return [_kv_result(e, True)]
        elif verb == "get-tree":
            return [_kv_result(e, True) for e in store.kv_list(key)]
        elif verb == "check-index":
            e = store.kv_get(key)
            if e is None:
                raise CommandError(f"failed to check index, key {_q(key)} doesn't exist")
            if e.modify_index != cidx:
                raise CommandError(f"failed index check for key {_q(key)}, current modify "
                                   f"index {e.modify_index} != {cidx}")
        elif verb == "check-session":
            e = store.kv_get(key)
            if e is None:
                raise CommandError(f"failed to check session, key {_q(key)} doesn't exist")
            if e.session != session:
                raise CommandError(f"failed session check for key {_q(key)}, current "
                                   f"session {_q(e.session)} != {_q(session)}")
        elif verb == "check-not-exists":
            if store.kv_get(key) is not None:
                raise CommandError(f"key {_q(key)} exists")
            return []
        else:
            raise CommandError(f"unknown KV verb {_q(str(verb))}")
        e = store.kv_get(key)
        return [_kv_result(e, False)] if e is not None else []

    # ------------------------------------------------------------------ catalog

    def _catalog_write(self, index: int, command: bytes) -> None:
        """Apply a catalog Register/Deregister command inside this transaction."""
        result = self.store.apply(index, command)
        if isinstance(result, CommandError):
            raise result

    def _find_node(self, name: str, node_id: str = "") -> dict | None:
        """Consul's getNode in txnNode: by ID when one is given, else by name."""
        catalog = self.store.catalog
        if not node_id:
            return catalog.get_node(name) if name else None
        want = node_id.lower()           # scan, and copy only the node found
        return next((clone(n) for n in catalog.nodes.values()
                     if (n.get("ID") or "").lower() == want), None)

    def _find_service(self, node: str, service_id: str) -> dict | None:
        if not node:
            return None
        _, ns = self.store.catalog.node_services(node)
        if ns is None:
            return None
        want = service_id.lower()
        return next((s for sid, s in ns["Services"].items() if sid.lower() == want), None)

    def _find_check(self, node: str, check_id: str) -> dict | None:
        if not node:
            return None
        _, checks = self.store.catalog.node_checks(node)
        want = check_id.lower()
        return next((c for c in checks if c["CheckID"].lower() == want), None)

    def _require_node(self, node: str) -> None:
        if not node or self.store.catalog.get_node(node) is None:
            raise CommandError("Missing node registration")

    def _write_row(self, index: int, node: str, kind: str, fields: dict) -> None:
        """Registers one Service or Check row (as given, less its indexes) on `node`."""
        from .catalog import register_command
        row = {k: v for k, v in fields.items() if k not in ("CreateIndex", "ModifyIndex")}
        self._catalog_write(index, register_command({"Node": node, "SkipNodeUpdate": True,
                                                     kind: row}))

    def _node(self, index: int, op: dict) -> list:
        from .catalog import deregister_command, register_command
        verb = _str(op, "Verb", "Node")
        node = _sub(op, "Node", "Node")
        name, node_id = _str(node, "Node", "Node"), _str(node, "ID", "Node")
        cidx = _uint(node, "ModifyIndex", "Node")
        # "get" finds the node by name or ID; the writes by name
        existing = self._find_node(name, node_id) if verb == "get" else self._find_node(name)
        done = _catalog_verb("Node", verb, f"node {_q(name)}", cidx, existing)
        if done is not None:
            return done
        if verb in ("set", "cas"):
            self._catalog_write(index, register_command({
                "Node": name, "ID": node_id, "Address": _str(node, "Address", "Node"),
                "Datacenter": _str(node, "Datacenter", "Node"),
                "TaggedAddresses": node.get("TaggedAddresses"), "NodeMeta": node.get("Meta")}))
            entry = self._find_node(name, node_id)
            return [{"Node": entry}] if entry is not None else []
        if existing is not None:
            self._catalog_write(index, deregister_command({"Node": name, "ServiceID": "",
                                                           "CheckID": ""}))
        return []

    def _service(self, index: int, op: dict) -> list:
        from .catalog import deregister_command
        verb = _str(op, "Verb", "Service")
        node = _str(op, "Node", "Service")
        svc = _sub(op, "Service", "Service")
        sid = _str(svc, "ID", "Service")
        cidx = _uint(svc, "ModifyIndex", "Service")
        existing = self._find_service(node, sid)
        done = _catalog_verb("Service", verb, f"service {_q(sid)} on node {_q(node)}", cidx,
                             existing)
        if done is not None:
            return done
        if verb in ("set", "cas"):
            self._require_node(node)
            self._write_row(index, node, "Service", svc)
            entry = self._find_service(node, sid or _str(svc, "Service", "Service"))
            return [{"Service": entry}] if entry is not None else []
        if existing is not None:
            self._catalog_write(index, deregister_command(
                {"Node": node, "ServiceID": existing["ID"], "CheckID": ""}))
        return []

    def _check(self, index: int, op: dict) -> list:
        from .catalog import deregister_command
        verb = _str(op, "Verb", "Check")
        chk = _sub(op, "Check", "Check")
        node, cid = _str(chk, "Node", "Check"), _str(chk, "CheckID", "Check")
        cidx = _uint(chk, "ModifyIndex", "Check")
        existing = self._find_check(node, cid)
        done = _catalog_verb("Check", verb, f"check {_q(cid)} on node {_q(node)}", cidx, existing)
        if done is not None:
            return done
        if verb in ("set", "cas"):
            self._require_node(node)
            service_id = _str(chk, "ServiceID", "Check")
            if service_id and self._find_service(node, service_id) is None:
                raise CommandError("Missing service registration")
            self._write_row(index, node, "Check", chk)
            entry = self._find_check(node, cid)
            return [{"Check": entry}] if entry is not None else []
        if existing is not None:
            self._catalog_write(index, deregister_command({"Node": node, "ServiceID": "",
                                                           "CheckID": existing["CheckID"]}))
        return []

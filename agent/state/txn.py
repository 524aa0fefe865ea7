"""Transactions (Consul's agent/consul/state/txn.go): a list of operations applied all
or nothing, from Raft commands of MessageType Txn (8). Pure.

Every operation runs in order; each failure is recorded as a TxnError {OpIndex, What} with
Consul's message and the others still run, so the caller sees every error at once. If any
failed, every change is undone (the store's undo log) and Results is None. KV operations
are built in; other parts (the catalog's Node/Service/Check operations) register theirs in
`Txn.handlers` under the operation's key.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import msgpack

from .store import CommandError, KVEntry

if TYPE_CHECKING:
    from .store import Store

TXN_REQUEST = 8                     # Consul's structs.TxnRequestType
KV_WRITE_VERBS = ("set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock")
KV_READ_VERBS = ("get", "get-tree", "check-index", "check-session", "check-not-exists")

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


class Txn:
    """Applies transactions; attaches itself to `store` as `store.txn`."""

    def __init__(self, store: "Store") -> None:
        self.store = store
        self.handlers: dict[str, OpHandler] = {"KV": self._kv}
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
        store = self.store
        results: list = []
        errors: list = []
        store.begin()
        try:
            for i, op in enumerate(ops):
                try:
                    if not isinstance(op, dict) or len(op) != 1:
                        raise CommandError("operation must have exactly one of KV, Node, Service, Check")
                    (kind, body), = op.items()
                    fn = self.handlers.get(kind)
                    if fn is None:
                        raise CommandError(f"{kind} operations are not supported in transactions")
                    if not isinstance(body, dict):
                        raise CommandError(f"malformed {kind} operation")
                    if read_only and kind == "KV" and body.get("Verb") in KV_WRITE_VERBS:
                        raise CommandError(f"cannot {body.get('Verb')} in a read-only transaction")
                    results += fn(index, body)
                except CommandError as exc:
                    errors.append({"OpIndex": i, "What": str(exc)})
        except BaseException:
            store.rollback()
            raise
        if errors or read_only:
            store.rollback()
        else:
            store.commit()
        if errors:
            return {"Results": None, "Errors": errors}
        return {"Results": results or None, "Errors": None}

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

"""`Txn.Apply` and `Txn.Read` (Consul's agent/consul/txn_endpoint.go).

Ops arrive in the API shape (`{"KV": {"Verb", "Key", "Value" (bytes), "Flags", "Index",
"Session"}}`). Apply checks each op first on the leader (key present, lock delay) and
answers those errors without a write, as Consul's txnPreApply; then the whole list is one
Raft command, applied all or nothing. Read runs read verbs on the server the consistency
mode picks, without Raft."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..sessions_ttl import driver_for
from ..state.txn import txn_command
from .consistency import check_dc, read, write
from .kvs import BadRequest
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


def _ops(body: Any) -> list:
    ops = body.get("Ops") if isinstance(body, dict) else None
    if not isinstance(ops, list):
        raise BadRequest("Must provide Ops")
    return ops


def _q(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store

    def pre_apply(ops: list) -> list:
        errors = []
        driver = driver_for(consensus)
        for i, op in enumerate(ops):
            kv = op.get("KV") if isinstance(op, dict) else None
            if not isinstance(kv, dict):
                continue
            key = kv.get("Key") or ""
            if not key and kv.get("Verb") != "delete-tree":
                errors.append({"OpIndex": i, "What": "Must provide key"})
            elif kv.get("Verb") == "lock" and isinstance(key, str) and driver.lock_delayed(key):
                errors.append({"OpIndex": i, "What": f"failed to lock key {_q(key)} due to lock delay"})
        return errors

    async def apply(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        ops = _ops(body)

        async def local() -> dict:
            errors = pre_apply(ops)
            if errors:
                return {"Results": None, "Errors": errors}
            index, result = await consensus.node.apply(txn_command(ops))
            result["Index"] = index
            return result
        return await write(consensus, "Txn.Apply", body, local)

    async def read_(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        ops = _ops(body)

        def local() -> dict:
            reply = store.txn.run(store.last_index, ops, read_only=True)
            reply["Index"] = store.max_index("kvs")
            return reply
        return await read(consensus, "Txn.Read", body, local)

    registry.register("Txn.Apply", apply)
    registry.register("Txn.Read", read_)

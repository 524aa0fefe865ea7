"""`Txn.Apply` and `Txn.Read` (Consul's agent/consul/txn_endpoint.go).

Ops arrive in Consul's RPC shape: `{"KV": {"Verb", "Key", "Value" (bytes), "Flags",
"Index", "Session"}}`, `{"Node": {"Verb", "Node": structs.Node}}`, `{"Service": {"Verb",
"Node", "Service": structs.NodeService}}`, `{"Check": {"Verb", "Check": structs.HealthCheck}}`
(ModifyIndex inside the row is the CAS index). Apply checks each op first on the leader, as
Consul's Txn.preCheck — KV: key present, lock delay; Node: name given, ID a UUID; Service:
ID defaults to the name, a name with an ID, no wildcard address; Check: CheckID defaults to
the name — and answers those errors without a write; then the whole list is one Raft
command, applied all or nothing. Read runs read verbs on the server the consistency mode
picks, without Raft."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..sessions_ttl import driver_for
from ..state.catalog import TABLES as CATALOG_TABLES
from ..state.txn import txn_command
from .catalog import _ANY_ADDRESS, _uuid_error
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


def _check_kv(kv: dict, driver) -> str | None:
    key = kv.get("Key") or ""
    if not key and kv.get("Verb") != "delete-tree":
        return "Must provide key"
    if kv.get("Verb") == "lock" and isinstance(key, str) and driver.lock_delayed(key):
        return f"failed to lock key {_q(key)} due to lock delay"
    return None


def _check_node(op: dict, driver) -> str | None:
    """Consul's nodePreApply (skipped for a get)."""
    if op.get("Verb") == "get":
        return None
    node = op.get("Node")
    if not isinstance(node, dict) or not node.get("Node"):
        return "Must provide node"
    nid = node.get("ID") or ""
    if isinstance(nid, str) and nid:
        err = _uuid_error(nid)
        if err:
            return f"Bad node ID: {err}"
    return None


def _check_service(op: dict, driver) -> str | None:
    """Consul's servicePreApply (skipped for a get)."""
    if op.get("Verb") == "get":
        return None
    svc = op.get("Service")
    if not isinstance(svc, dict):
        return None                         # the state layer reports it malformed
    svc = op["Service"] = dict(svc)
    if not svc.get("ID") and svc.get("Service"):
        svc["ID"] = svc["Service"]
    if svc.get("ID") and not svc.get("Service"):
        return "Must provide service name with ID"
    if svc.get("Address") in _ANY_ADDRESS:
        return "Invalid service address"
    return None


def _check_check(op: dict, driver) -> None:
    """Consul's checkPreApply (skipped for a get): CheckID defaults to the name."""
    chk = op.get("Check")
    if op.get("Verb") != "get" and isinstance(chk, dict):
        chk = op["Check"] = dict(chk)
        if not chk.get("CheckID") and chk.get("Name"):
            chk["CheckID"] = chk["Name"]
    return None


_PRE_CHECKS = {"KV": _check_kv, "Node": _check_node, "Service": _check_service,
               "Check": _check_check}


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store

    def pre_apply(ops: list) -> tuple[list, list]:
        """(ops as they go to Raft, errors): Consul's Txn.preCheck, which also fills in
        defaults (a service's ID, a check's CheckID) in the operations it passes on."""
        errors = []
        out = []
        driver = driver_for(consensus)
        for i, op in enumerate(ops):
            if isinstance(op, dict) and len(op) == 1:
                (kind, body), = op.items()
                if isinstance(body, dict):
                    body = dict(body)
                    what = _PRE_CHECKS.get(kind, lambda b, d: None)(body, driver)
                    if what:
                        errors.append({"OpIndex": i, "What": what})
                    op = {kind: body}
            out.append(op)
        return out, errors

    async def apply(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        ops = _ops(body)

        async def local() -> dict:
            checked, errors = pre_apply(ops)
            if errors:
                return {"Results": None, "Errors": errors}
            index, result = await consensus.node.apply(txn_command(checked))
            result["Index"] = index
            return result
        return await write(consensus, "Txn.Apply", body, local)

    async def read_(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        ops = _ops(body)

        def local() -> dict:
            reply = store.txn.run(store.last_index, ops, read_only=True)
            reply["Index"] = store.max_index("kvs", *CATALOG_TABLES)
            return reply
        return await read(consensus, "Txn.Read", body, local)

    registry.register("Txn.Apply", apply)
    registry.register("Txn.Read", read_)

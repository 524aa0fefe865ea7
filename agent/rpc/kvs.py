"""`KVS.*` endpoints (Consul's agent/consul/kvs_endpoint.go): Apply, Get, List, ListKeys."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import IsthmusError
from ..state.store import KV_OPS, kv_command
from ..sessions_ttl import driver_for
from .consistency import check_dc, read, write
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


class BadRequest(IsthmusError):
    """A request whose fields are missing or of the wrong type."""


def _dirent(body: dict) -> dict:
    ent = body.get("DirEnt")
    if not isinstance(ent, dict) or not isinstance(ent.get("Key"), str):
        raise BadRequest("Must provide key")
    return ent


def _str(body: dict, name: str) -> str:
    v = body.get(name, "")
    if not isinstance(v, str):
        raise BadRequest(f"{name} must be a string")
    return v


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store

    async def apply(body: Any, ctx: CallContext) -> bool:
        check_dc(body, datacenter)
        op = body.get("Op")
        if op not in KV_OPS:
            raise BadRequest(f"Unknown KVS operation: {op}")
        ent = _dirent(body)
        value = ent.get("Value") or b""
        flags = ent.get("Flags") or 0
        cas = ent.get("ModifyIndex") or 0
        session = ent.get("Session") or ""
        if (not isinstance(value, bytes) or type(flags) is not int or type(cas) is not int
                or not isinstance(session, str)):
            raise BadRequest("bad DirEnt field types")
        command = kv_command(op, ent["Key"], value, flags, cas, session if op in ("lock", "unlock") else "")

        async def local() -> bool:
            # Lock delay is wall-clock, so the leader enforces it before proposing (Consul's
            # kvsPreApply): a lock on a key still under delay fails without a write.
            if op == "lock" and driver_for(consensus).lock_delayed(ent["Key"]):
                return False
            _, result = await consensus.node.apply(command)
            return result
        return await write(consensus, "KVS.Apply", body, local)

    async def get(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        key = _str(body, "Key")

        def local() -> dict:
            ent = store.kv_get(key)
            return {"Entries": [ent.as_api()] if ent else None, "Index": store.indexes["kvs"]}
        return await read(consensus, "KVS.Get", body, local, ("kvs",))

    async def list_(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        prefix = _str(body, "Key")

        def local() -> dict:
            ents = [e.as_api() for e in store.kv_list(prefix)]
            return {"Entries": ents or None, "Index": store.indexes["kvs"]}
        return await read(consensus, "KVS.List", body, local, ("kvs",))

    async def list_keys(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        prefix = _str(body, "Prefix")
        sep = _str(body, "Seperator")       # sic: Consul's field name

        def local() -> dict:
            keys: list[str] = []
            for e in store.kv_list(prefix):
                k = e.key
                if sep:
                    i = k.find(sep, len(prefix))
                    if i >= 0:
                        k = k[:i + len(sep)]
                if not keys or keys[-1] != k:
                    keys.append(k)
            return {"Keys": keys, "Index": store.indexes["kvs"]}
        return await read(consensus, "KVS.ListKeys", body, local, ("kvs",))

    registry.register("KVS.Apply", apply)
    registry.register("KVS.Get", get)
    registry.register("KVS.List", list_)
    registry.register("KVS.ListKeys", list_keys)

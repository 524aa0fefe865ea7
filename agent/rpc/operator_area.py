"""`Operator.Area*` endpoints: network areas (Consul Enterprise's operator area RPCs;
shared/spec/federation.md §2, §4.3). The Enterprise server code is closed, so the method
names follow the HTTP operations and the bodies are ours:

- Operator.AreaCreate       {Datacenter, Area: {PeerDatacenter, RetryJoin, UseTLS}} → ID (str)
- Operator.AreaUpdate       {Datacenter, Area: {ID, UseTLS?, RetryJoin?}} → ID (str)
- Operator.AreaDelete       {Datacenter, AreaID} → ID (str)
- Operator.AreaList         QueryOptions + {Datacenter}
                            → {Areas: [area], Index, KnownLeader, LastContact}
- Operator.AreaGet          QueryOptions + {Datacenter, AreaID} → the same, Areas = [] when
                            no such area
- Operator.AreaJoin         {Datacenter, AreaID, Addresses: [str]}
                            → [{Address, Joined, Error}], one per address, same order
- Operator.AreaListMembers  {Datacenter, AreaID} → [SerfMember] (spec §2)

An area in replies is the store's dict (agent/state/areas.py: ID, PeerDatacenter,
RetryJoin, UseTLS, CreateIndex, ModifyIndex). Create/update/delete are Raft writes on the
leader; every rule is checked before proposing (on the receiving server, then again on the
leader), so bad input changes nothing and gets a clear message, and the store checks once
more when applying. List/get are blocking reads of table "areas". Join and members are
answered by the receiving server from its own area pools (agent.areas, agent/areas/).
An ID with no area fails with `unknown area "<id>"` (HTTP answers 404 for it).
"""
from __future__ import annotations

import inspect
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import IsthmusError
from ..state.areas import area_command, unknown_area
from .consistency import check_dc, read, write
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


class AreaError(IsthmusError):
    """A network-area request that cannot be carried out (bad input, unknown area)."""


def parse_area_address(text: Any, default_port: int) -> tuple[str, int]:
    """A join / RetryJoin address (`IP`, `IP:port`, `[v6]:port`, `host`, `host:port`) →
    (host, port); AreaError saying what is wrong otherwise. Port defaults to the server RPC
    port (spec §2: the peer's servers are dialled on their RPC port)."""
    from ..areas.pool import invalid_address
    from ..gossip.pool import parse_join_address
    if not isinstance(text, str) or not text.strip():
        raise AreaError(invalid_address(text, "empty address"))
    try:
        return parse_join_address(text, default_port)
    except ValueError as exc:
        raise AreaError(invalid_address(text, str(exc))) from None


def _area_id(body: dict, key: str = "AreaID") -> str:
    area_id = body.get(key)
    if not isinstance(area_id, str) or not area_id:
        raise AreaError("Must provide an area ID")
    return area_id


def _area_body(body: Any) -> dict:
    if not isinstance(body, dict):
        raise AreaError("malformed request")
    area = body.get("Area")
    if not isinstance(area, dict):
        raise AreaError("Must provide an Area")
    return area


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store
    areas = store.areas

    def rpc_port() -> int:
        return agent.config.ports.server

    def check_retry_join(v: Any) -> list | None:
        if v is None:
            return None
        if not isinstance(v, list):
            raise AreaError("RetryJoin must be a list of addresses")
        for addr in v:
            parse_area_address(addr, rpc_port())
        return list(v)

    def new_area(area: dict) -> dict:
        """The create's area as proposed, every rule checked (ID still to be made)."""
        if area.get("ID"):
            raise AreaError("Must not provide an ID when creating an area: the server "
                            "generates it")
        peer = area.get("PeerDatacenter")
        if peer is not None and not isinstance(peer, str):
            raise AreaError("PeerDatacenter must be a string")
        use_tls = area.get("UseTLS")
        if use_tls is not None and not isinstance(use_tls, bool):
            raise AreaError("UseTLS must be a boolean")
        out = {"PeerDatacenter": peer or "", "RetryJoin": check_retry_join(area.get("RetryJoin")),
               "UseTLS": bool(use_tls)}
        # the store's own rules (peer required, not our DC, one area per peer)
        areas.check_create({**out, "ID": "-"}, datacenter)
        return out

    async def create(body: Any, ctx: CallContext) -> str:
        check_dc(body, datacenter)
        new_area(_area_body(body))              # early, on whichever server got the call

        async def local() -> str:
            area = new_area(_area_body(body))   # again on the leader, on current state
            while True:                         # the ID is made here, outside apply
                area["ID"] = str(uuid.uuid4())
                if areas.get(area["ID"]) is None:
                    break
            _, result = await consensus.node.apply(area_command("create", area, datacenter))
            return result
        return await write(consensus, "Operator.AreaCreate", body, local)

    def changed_area(area: dict) -> dict:
        area_id = _area_id(area, "ID")
        use_tls = area.get("UseTLS")
        if use_tls is not None and not isinstance(use_tls, bool):
            raise AreaError("UseTLS must be a boolean")
        peer = area.get("PeerDatacenter")
        if peer is not None and not isinstance(peer, str):
            raise AreaError("PeerDatacenter must be a string")
        out: dict = {"ID": area_id}
        if use_tls is not None:
            out["UseTLS"] = use_tls
        if area.get("RetryJoin") is not None:
            out["RetryJoin"] = check_retry_join(area["RetryJoin"])
        if peer:
            out["PeerDatacenter"] = peer
        areas.check_update(out)
        return out

    async def update(body: Any, ctx: CallContext) -> str:
        check_dc(body, datacenter)
        changed_area(_area_body(body))

        async def local() -> str:
            area = changed_area(_area_body(body))
            _, result = await consensus.node.apply(area_command("update", area, datacenter))
            return result
        return await write(consensus, "Operator.AreaUpdate", body, local)

    async def delete(body: Any, ctx: CallContext) -> str:
        check_dc(body, datacenter)
        area_id = _area_id(body)
        areas.check_delete(area_id)

        async def local() -> str:
            areas.check_delete(area_id)
            _, result = await consensus.node.apply(area_command("delete", {"ID": area_id},
                                                                datacenter))
            return result
        return await write(consensus, "Operator.AreaDelete", body, local)

    async def list_(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)

        def local() -> dict:
            index, found = areas.list()
            return {"Areas": found, "Index": index}
        return await read(consensus, "Operator.AreaList", body, local, ("areas",))

    async def get(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        area_id = _area_id(body)

        def local() -> dict:
            found = areas.get(area_id)
            return {"Areas": [found] if found else [], "Index": store.indexes.get("areas", 0)}
        return await read(consensus, "Operator.AreaGet", body, local, ("areas",))

    def manager(area_id: str):
        """This server's area pools, for an area that exists in its store."""
        if areas.get(area_id) is None:
            raise AreaError(unknown_area(area_id))
        mgr = getattr(agent, "areas", None)
        if mgr is None:
            raise AreaError("network areas are not running on this server (no area manager)")
        return mgr

    async def join(body: Any, ctx: CallContext) -> list:
        check_dc(body, datacenter)
        area_id = _area_id(body)
        addrs = body.get("Addresses")
        if addrs is None:
            addrs = []
        if not isinstance(addrs, list):
            raise AreaError("Addresses must be a list of addresses")
        # one result per address, in order; unparsable ones are refused by the pool
        return await manager(area_id).join(area_id, addrs)

    async def members(body: Any, ctx: CallContext) -> list:
        check_dc(body, datacenter)
        area_id = _area_id(body)
        found = manager(area_id).members(area_id)
        if inspect.isawaitable(found):
            found = await found
        return list(found)

    registry.register("Operator.AreaCreate", create)
    registry.register("Operator.AreaUpdate", update)
    registry.register("Operator.AreaDelete", delete)
    registry.register("Operator.AreaList", list_)
    registry.register("Operator.AreaGet", get)
    registry.register("Operator.AreaJoin", join)
    registry.register("Operator.AreaListMembers", members)

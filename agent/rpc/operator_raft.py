"""`Operator.Raft*` endpoints (Consul's agent/consul/operator_raft_endpoint.go)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import IsthmusError
from .consistency import check_dc, read, write
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter

    def node_names() -> dict[str, str]:
        lan = agent.lan
        return {m.tags.get("id", ""): m.name for m in (lan.members() if lan else [])
                if m.tags.get("role") == "consul"}

    async def get_configuration(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)

        def local() -> dict:
            node = consensus.node
            names = node_names()
            progress = node.core.status().get("progress", {}) if node.is_leader else {}
            servers = []
            for s in node.configuration():
                last = node.core.last_index if s.id == node.id else progress.get(s.id, {}).get("match", 0)
                servers.append({"ID": s.id, "Node": names.get(s.id, "(unknown)"),
                                "Address": s.address, "Leader": s.id == node.leader_id,
                                "ProtocolVersion": "3", "Voter": s.voter, "LastIndex": last})
            return {"Servers": servers, "Index": node.core.commit}
        return await read(consensus, "Operator.RaftGetConfiguration", body, local)

    async def remove_peer(body: Any, ctx: CallContext, by: str) -> dict:
        check_dc(body, datacenter)
        want = body.get(by)
        if not isinstance(want, str) or not want:
            raise IsthmusError(f"Must specify {'-id' if by == 'ID' else '-address'}")

        async def local() -> dict:
            for s in consensus.node.configuration():
                if (s.id if by == "ID" else s.address) == want:
                    await consensus.node.remove_server(s.id)
                    return {}
            raise IsthmusError(f"{by.lower()} {want!r} was not found in the Raft configuration")
        return await write(consensus, f"Operator.RaftRemovePeerBy{'ID' if by == 'ID' else 'Address'}",
                           body, local)

    async def by_id(body: Any, ctx: CallContext) -> dict:
        return await remove_peer(body, ctx, "ID")

    async def by_address(body: Any, ctx: CallContext) -> dict:
        return await remove_peer(body, ctx, "Address")

    async def transfer_leader(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        to = body.get("ID") or ""

        async def local() -> dict:
            node = consensus.node
            voters = [s for s in node.configuration() if s.voter and s.id != node.id]
            if to:
                if not any(s.id == to for s in voters):
                    raise IsthmusError(f"cannot find peer {to}")
                target = to
            else:
                if not voters:
                    raise IsthmusError("cannot transfer leadership: no other voter")
                progress = node.core.status().get("progress", {})
                target = max(voters, key=lambda s: progress.get(s.id, {}).get("match", 0)).id
            await consensus.transfer_leader(target)
            return {"Success": True}
        return await write(consensus, "Operator.RaftTransferLeader", body, local)

    registry.register("Operator.RaftGetConfiguration", get_configuration)
    registry.register("Operator.RaftRemovePeerByID", by_id)
    registry.register("Operator.RaftRemovePeerByAddress", by_address)
    registry.register("Operator.RaftTransferLeader", transfer_leader)

"""/v1/operator/raft/* (Consul's agent/operator_endpoint.go)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .errors import bad_request
from .query import query_options

if TYPE_CHECKING:
    from ..agent import Agent


async def raft_configuration(agent: "Agent", request: web.Request) -> dict:
    reply = await agent.rpc("Operator.RaftGetConfiguration", query_options(agent, request))
    return {"Servers": reply["Servers"], "Index": reply["Index"]}


async def raft_peer_delete(agent: "Agent", request: web.Request) -> web.Response:
    q = request.query
    body = {"Datacenter": q.get("dc") or agent.config.datacenter}
    if q.get("id"):
        body["ID"] = q["id"]
        await agent.rpc("Operator.RaftRemovePeerByID", body)
    elif q.get("address"):
        body["Address"] = q["address"]
        await agent.rpc("Operator.RaftRemovePeerByAddress", body)
    else:
        raise bad_request("Must specify either ?id with the server's ID or ?address with "
                          "IP:port of peer to remove")
    return web.Response(status=200)


async def raft_transfer_leader(agent: "Agent", request: web.Request) -> dict:
    body = {"Datacenter": request.query.get("dc") or agent.config.datacenter,
            "ID": request.query.get("id", "")}
    return await agent.rpc("Operator.RaftTransferLeader", body)


ROUTES = {
    "/v1/operator/raft/configuration": {"GET": raft_configuration},
    "/v1/operator/raft/peer": {"DELETE": raft_peer_delete},
    "/v1/operator/raft/transfer-leader": {"POST": raft_transfer_leader},
}

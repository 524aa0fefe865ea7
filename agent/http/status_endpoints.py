"""/v1/status/leader and /v1/status/peers (answered through the Status RPCs)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..agent import Agent


def dc_request(agent: "Agent", request: web.Request) -> dict:
    """Consul's DCSpecificRequest from `?dc=` (default: the agent's datacenter)."""
    return {"Datacenter": request.query.get("dc") or agent.config.datacenter}


async def leader(agent: "Agent", request: web.Request) -> str:
    return await agent.rpc("Status.Leader", dc_request(agent, request))


async def peers(agent: "Agent", request: web.Request) -> list[str]:
    return await agent.rpc("Status.Peers", dc_request(agent, request))


ROUTES = {
    "/v1/status/leader": {"GET": leader},
    "/v1/status/peers": {"GET": peers},
}

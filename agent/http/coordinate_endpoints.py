"""/v1/coordinate/datacenters, /nodes, /node/<node>, /update (Consul's
agent/coordinate_endpoint.go): LAN coordinates from the state store; per path and
datacenter, the servers' WAN or area coordinates from the router.

Rows are Consul's structs.Coordinate {Node, Segment, Coord} (its Partition is omitempty and
empty outside Enterprise), Coord in the field order of Serf's struct. `?segment=` keeps the
rows of that segment only. A node without coordinates is a 404 with an empty body.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .body import FLOAT, STR, ListOf, Struct, decode_body
from .catalog_endpoints import json_response
from .query import datacenter, meta_headers, query_options

if TYPE_CHECKING:
    from ..agent import Agent

COORDINATE = Struct("coordinate.Coordinate", {
    "Vec": ListOf(FLOAT), "Error": FLOAT, "Adjustment": FLOAT, "Height": FLOAT})
UPDATE_REQUEST = Struct("structs.CoordinateUpdateRequest", {
    "Datacenter": STR, "Node": STR, "Segment": STR, "Coord": COORDINATE, "Token": STR})


def coordinate_json(row: dict) -> dict:
    """structs.Coordinate as Consul's JSON encoder writes it."""
    c = row["Coord"]
    return {"Node": row["Node"], "Segment": row["Segment"],
            "Coord": {"Vec": c["Vec"], "Error": c["Error"], "Adjustment": c["Adjustment"],
                      "Height": c["Height"]}}


def _filter(request: web.Request, rows: list[dict]) -> list[dict]:
    """Consul's filterCoordinates: `?segment=` present (even empty) keeps that segment only."""
    if "segment" in request.query:
        seg = request.query.get("segment", "")
        rows = [r for r in rows if r["Segment"] == seg]
    return [coordinate_json(r) for r in rows]


async def nodes(agent: "Agent", request: web.Request):
    reply = await agent.rpc("Coordinate.ListNodes", query_options(agent, request))
    return json_response(_filter(request, reply.get("Coordinates") or []), reply, request)


async def node(agent: "Agent", request: web.Request):
    opts = query_options(agent, request)
    opts["Node"] = request.match_info.get("name", "")
    reply = await agent.rpc("Coordinate.Node", opts)
    out = _filter(request, reply.get("Coordinates") or [])
    if not out:
        return web.Response(status=404, headers=meta_headers(reply))
    return json_response(out, reply, request)


async def update(agent: "Agent", request: web.Request):
    body = decode_body(await request.read(), UPDATE_REQUEST)
    if "dc" in request.query and request.query["dc"]:
        body["Datacenter"] = request.query["dc"]
    elif not body.get("Datacenter"):
        body["Datacenter"] = datacenter(agent, request)
    await agent.rpc("Coordinate.Update", body)
    return web.Response(status=200)


async def datacenters(agent: "Agent", request: web.Request):
    return await agent.rpc("Coordinate.ListDatacenters", {})


ROUTES = {
    "/v1/coordinate/datacenters": {"GET": datacenters},
    "/v1/coordinate/nodes": {"GET": nodes},
    "/v1/coordinate/node/{name:.*}": {"GET": node},
    "/v1/coordinate/update": {"PUT": update},
}

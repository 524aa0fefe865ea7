"""/v1/operator/area[/:id[/join|/members]] — network areas (Consul Enterprise's HTTP API,
shared/spec/federation.md §2), answered through the `Operator.Area*` RPCs
(agent/rpc/operator_area.py).

Replies: create, update and delete `{"ID": "<uuid>"}`; list `[Area, …]`; get-one an array
with the one Area; join `[{"Address", "Joined", "Error"}, …]`; members `[SerfMember, …]`.
Area = `{"ID", "PeerDatacenter", "RetryJoin", "UseTLS"}`. List and get-one are blocking
reads (X-Consul-Index/KnownLeader/LastContact). Errors are plain text: a body that does not
decode → 400 "Request decode failed: …"; an area ID that does not exist (get, update,
delete, join, members) → **404** `unknown area "<id>"` (our choice: Consul does not document
it); any other refusal (no peer, peer = own DC, a second area for a peer, …) → 500 with the
message, as Consul answers RPC errors.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import IsthmusError
from ..gojson import GoJSONError, json_type, loads
from .body import BOOL, STR, ListOf, Struct, decode_body
from .errors import HTTPError, bad_request
from .query import datacenter, meta_headers, query_options

if TYPE_CHECKING:
    from ..agent import Agent

AREA = Struct("api.Area", {"ID": STR, "PeerDatacenter": STR, "RetryJoin": ListOf(STR),
                           "UseTLS": BOOL})
UNKNOWN_AREA = "unknown area "          # the RPC layer's error text for a missing area ID


def api_area(area: dict) -> dict:
    """An area in Consul's api.Area shape (no Raft indexes)."""
    return {"ID": area["ID"], "PeerDatacenter": area["PeerDatacenter"],
            "RetryJoin": area.get("RetryJoin"), "UseTLS": bool(area.get("UseTLS"))}


async def _rpc(agent: "Agent", method: str, body: dict) -> Any:
    try:
        return await agent.rpc(method, body)
    except IsthmusError as exc:
        if str(exc).startswith(UNKNOWN_AREA):
            raise HTTPError(404, str(exc)) from None
        raise


def _json(obj: Any, request: web.Request, headers: dict | None = None) -> web.Response:
    from .server import encode
    return web.Response(body=encode(obj, "pretty" in request.query), headers=headers,
                        content_type="application/json")


def _id(request: web.Request) -> str:
    area_id = request.match_info.get("id", "")
    if not area_id:
        raise bad_request("Missing area ID")
    return area_id


async def create(agent: "Agent", request: web.Request) -> dict:
    area = decode_body(await request.read(), AREA)
    area_id = await _rpc(agent, "Operator.AreaCreate",
                         {"Datacenter": datacenter(agent, request), "Area": area})
    return {"ID": area_id}


async def list_(agent: "Agent", request: web.Request) -> web.Response:
    reply = await _rpc(agent, "Operator.AreaList", query_options(agent, request))
    return _json([api_area(a) for a in reply.get("Areas") or []], request, meta_headers(reply))


async def get(agent: "Agent", request: web.Request) -> web.Response:
    area_id = _id(request)
    body = query_options(agent, request)
    body["AreaID"] = area_id
    reply = await _rpc(agent, "Operator.AreaGet", body)
    found = reply.get("Areas") or []
    if not found:
        from ..state.areas import unknown_area    # the text the servers use; loaded when needed
        raise HTTPError(404, unknown_area(area_id), meta_headers(reply))
    return _json([api_area(a) for a in found], request, meta_headers(reply))


async def update(agent: "Agent", request: web.Request) -> dict:
    area_id = _id(request)
    area = decode_body(await request.read(), AREA)
    area["ID"] = area_id                    # the path names the area (the Go client sends it too)
    got = await _rpc(agent, "Operator.AreaUpdate",
                     {"Datacenter": datacenter(agent, request), "Area": area})
    return {"ID": got or area_id}


async def delete(agent: "Agent", request: web.Request) -> dict:
    area_id = _id(request)
    await _rpc(agent, "Operator.AreaDelete",
               {"Datacenter": datacenter(agent, request), "AreaID": area_id})
    return {"ID": area_id}


def _addresses(raw: bytes) -> list[str]:
    """The join body: a JSON array of address strings (Go's []string)."""
    try:
        v = loads(raw)
    except GoJSONError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    if v is None:
        return []
    if not isinstance(v, list):
        raise bad_request(f"Request decode failed: json: cannot unmarshal {json_type(v)} into "
                          f"Go value of type []string")
    for x in v:
        if x is not None and not isinstance(x, str):
            raise bad_request(f"Request decode failed: json: cannot unmarshal {json_type(x)} "
                              f"into Go value of type string")
    return [x or "" for x in v]


async def join(agent: "Agent", request: web.Request) -> list:
    area_id = _id(request)
    addrs = _addresses(await request.read())
    return await _rpc(agent, "Operator.AreaJoin", {"Datacenter": datacenter(agent, request),
                                                   "AreaID": area_id, "Addresses": addrs})


async def members(agent: "Agent", request: web.Request) -> list:
    area_id = _id(request)
    return await _rpc(agent, "Operator.AreaListMembers",
                      {"Datacenter": datacenter(agent, request), "AreaID": area_id}) or []


ROUTES = {
    "/v1/operator/area": {"POST": create, "GET": list_},
    "/v1/operator/area/{id}": {"GET": get, "PUT": update, "DELETE": delete},
    "/v1/operator/area/{id}/join": {"PUT": join},
    "/v1/operator/area/{id}/members": {"GET": members},
}

"""/v1/catalog/* (Consul's agent/catalog_endpoint.go): register, deregister, datacenters,
nodes, services, service/<name>, node/<node>, in Consul's JSON shapes (empty lists rather
than null where Consul substitutes them) with its X-Consul-* headers.

`?near=<node>` (`_agent`: this agent's node) on nodes and service/<name> sorts by estimated
RTT from that node (the RPC's `Source`; Consul's parseSource); `?filter=` is refused with
400 (bexpr filters are not implemented).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..state.catalog import clone
from .body import ANY, BOOL, INT, STR, ListOf, MapOf, Struct, decode_body
from .errors import bad_request
from .query import meta_headers, query_options

if TYPE_CHECKING:
    from ..agent import Agent

WEIGHTS = Struct("structs.Weights", {"Passing": INT, "Warning": INT})
NODE_SERVICE = Struct("structs.NodeService", {
    "Kind": STR, "ID": STR, "Service": STR, "Tags": ListOf(STR), "Address": STR,
    "TaggedAddresses": MapOf(ANY), "Meta": MapOf(STR), "Port": INT, "SocketPath": STR,
    "Weights": WEIGHTS, "EnableTagOverride": BOOL, "Proxy": MapOf(ANY), "Connect": MapOf(ANY)})
HEALTH_CHECK = Struct("structs.HealthCheck", {
    "Node": STR, "CheckID": STR, "Name": STR, "Status": STR, "Notes": STR, "Output": STR,
    "ServiceID": STR, "ServiceName": STR, "ServiceTags": ListOf(STR), "Type": STR,
    "Interval": STR, "Timeout": STR, "ExposedPort": INT, "Definition": MapOf(ANY)})
REGISTER_REQUEST = Struct("structs.RegisterRequest", {
    "Datacenter": STR, "ID": STR, "Node": STR, "Address": STR, "TaggedAddresses": MapOf(STR),
    "NodeMeta": MapOf(STR), "Service": NODE_SERVICE, "Check": HEALTH_CHECK,
    "Checks": ListOf(HEALTH_CHECK), "SkipNodeUpdate": BOOL, "Token": STR})
DEREGISTER_REQUEST = Struct("structs.DeregisterRequest", {
    "Datacenter": STR, "Node": STR, "ServiceID": STR, "CheckID": STR, "Token": STR})

# Consul's zero ConnectProxyConfig and ServiceConnect as its JSON encoder writes them
EMPTY_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}


def json_response(obj, reply: dict | None, request: web.Request) -> web.Response:
    from .server import encode
    headers = meta_headers(reply) if reply is not None else None
    return web.Response(body=encode(obj, "pretty" in request.query),
                        content_type="application/json", headers=headers)


def read_options(agent: "Agent", request: web.Request) -> dict:
    """query_options plus ?node-meta=k:v (repeatable); refuses ?filter."""
    if "filter" in request.query:
        raise bad_request("Filter expressions (?filter=) are not supported")
    opts = query_options(agent, request)
    metas = request.query.getall("node-meta", [])
    if metas:
        filters = {}
        for m in metas:
            k, _, v = m.partition(":")
            filters[k] = v
        opts["NodeMetaFilters"] = filters
    return opts


def near_options(agent: "Agent", request: web.Request, opts: dict) -> None:
    """Consul's parseSource: `?near=` → Source {Datacenter (the request's), Node}."""
    node = request.query.get("near", "")
    if node:
        if node == "_agent":
            node = agent.config.node_name
        opts["Source"] = {"Datacenter": opts["Datacenter"], "Node": node}


def tag_options(request: web.Request, opts: dict) -> None:
    if "tag" in request.query:
        opts["ServiceTags"] = request.query.getall("tag")
        opts["TagFilter"] = True


def node_service_json(s: dict) -> dict:
    """structs.NodeService as Consul encodes it (Kind, TaggedAddresses, SocketPath omitempty)."""
    out: dict = {}
    if s.get("Kind"):
        out["Kind"] = s["Kind"]
    out.update({"ID": s["ID"], "Service": s["Service"],
                "Tags": s["Tags"] if s["Tags"] is not None else [], "Address": s["Address"]})
    if s.get("TaggedAddresses"):
        out["TaggedAddresses"] = s["TaggedAddresses"]
    out.update({"Meta": s["Meta"], "Port": s["Port"]})
    if s.get("SocketPath"):
        out["SocketPath"] = s["SocketPath"]
    out.update({"Weights": s["Weights"], "EnableTagOverride": s["EnableTagOverride"],
                "Proxy": s["Proxy"] or clone(EMPTY_PROXY), "Connect": s["Connect"] or {},
                "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]})
    return out


def check_json(c: dict) -> dict:
    out = dict(c)
    if out.get("ServiceTags") is None:
        out["ServiceTags"] = []
    if out.get("Definition") is None:
        out["Definition"] = {}
    return out


def _service_node_json(s: dict) -> dict:
    out = dict(s)
    if out["ServiceTags"] is None:
        out["ServiceTags"] = []
    if not out.get("ServiceTaggedAddresses"):
        out.pop("ServiceTaggedAddresses", None)
    if not out.get("ServiceSocketPath"):
        out.pop("ServiceSocketPath", None)
    out["ServiceProxy"] = out["ServiceProxy"] or clone(EMPTY_PROXY)
    out["ServiceConnect"] = out["ServiceConnect"] or {}
    # RaftIndex comes last in Consul's struct
    out["CreateIndex"], out["ModifyIndex"] = out.pop("CreateIndex"), out.pop("ModifyIndex")
    return out


def _segment(request: web.Request, missing: str) -> str:
    value = request.match_info.get("name", "")
    if not value:
        raise bad_request(missing)
    return value


async def register(agent: "Agent", request: web.Request):
    body = decode_body(await request.read(), REGISTER_REQUEST)
    if not body.get("Datacenter"):
        body["Datacenter"] = agent.config.datacenter
    await agent.rpc("Catalog.Register", body)
    return True


async def deregister(agent: "Agent", request: web.Request):
    body = decode_body(await request.read(), DEREGISTER_REQUEST)
    if not body.get("Datacenter"):
        body["Datacenter"] = agent.config.datacenter
    await agent.rpc("Catalog.Deregister", body)
    return True


async def datacenters(agent: "Agent", request: web.Request):
    return await agent.rpc("Catalog.ListDatacenters", {})


async def nodes(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    near_options(agent, request, opts)
    reply = await agent.rpc("Catalog.ListNodes", opts)
    return json_response(reply.get("Nodes") or [], reply, request)


async def services(agent: "Agent", request: web.Request):
    reply = await agent.rpc("Catalog.ListServices", read_options(agent, request))
    return json_response(reply.get("Services") or {}, reply, request)


async def service(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    tag_options(request, opts)
    near_options(agent, request, opts)
    opts["ServiceName"] = _segment(request, "Missing service name")
    reply = await agent.rpc("Catalog.ServiceNodes", opts)
    return json_response([_service_node_json(s) for s in reply.get("ServiceNodes") or []],
                         reply, request)


async def node(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    opts["Node"] = _segment(request, "Missing node name")
    reply = await agent.rpc("Catalog.NodeServices", opts)
    ns = reply.get("NodeServices")
    if ns is not None:
        ns = {"Node": ns["Node"],
              "Services": {k: node_service_json(v) for k, v in ns["Services"].items()}}
    return json_response(ns, reply, request)


ROUTES = {
    "/v1/catalog/register": {"PUT": register},
    "/v1/catalog/deregister": {"PUT": deregister},
    "/v1/catalog/datacenters": {"GET": datacenters},
    "/v1/catalog/nodes": {"GET": nodes},
    "/v1/catalog/services": {"GET": services},
    "/v1/catalog/service/{name:.*}": {"GET": service},
    "/v1/catalog/node/{name:.*}": {"GET": node},
}

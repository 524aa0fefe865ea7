"""/v1/catalog/* (Consul's agent/catalog_endpoint.go): register, deregister, datacenters,
nodes, services, service/<name>, node/<node>, in Consul's JSON shapes (empty lists rather
than null where Consul substitutes them) with its X-Consul-* headers.

`?near=<node>` (`_agent`: this agent's node) on nodes and service/<name> sorts by estimated
RTT from that node (the RPC's `Source`; Consul's parseSource); `?filter=` (Consul's bexpr
language) narrows nodes, service/<name> and node/<node> (agent/http/filtering.py).

Service reads (service/<name> here and /v1/health/service/<name>) go through
`service_body`: on servers the body of an identical read at the same X-Consul-Index is
sent again (`BodyCache`), and an unchanged instance is encoded once (`FragmentMemo`). A
read another server answers (another datacenter's, or any of a client agent) gets its body
rendered there, from that server's caches (agent/http/rendered.py).
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable

from aiohttp import web

from . import rendered
from .body import ANY, BOOL, INT, STR, ListOf, MapOf, Struct, decode_body
from .errors import bad_request
from .filtering import apply_filter, check_filter, filter_rows
from .query import meta_headers, query_options
from .server import encode

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

SERVICE_ROUTE = "/v1/catalog/service/{name}"


def _empty_proxy() -> dict:
    """Consul's zero ConnectProxyConfig as its JSON encoder writes it (a fresh one: callers
    may change the reply)."""
    return {"Mode": "", "MeshGateway": {}, "Expose": {}}


def json_response(obj, reply: dict | None, request: web.Request) -> web.Response:
    headers = meta_headers(reply) if reply is not None else None
    return web.Response(body=encode(obj, "pretty" in request.query),
                        content_type="application/json", headers=headers)


class BodyCache:
    """Encoded reply bodies of service reads, by request shape, with the X-Consul-Index they
    were made at. A service's index names its content (every write to its instances, their
    checks or their nodes moves it; Raft makes that the same on every server), so a read at
    an index already seen sends the same bytes without shaping and encoding 1,000 instances
    again. Least recently used bodies go first past `limit` bytes."""

    def __init__(self, limit: int = 32 << 20) -> None:
        self.limit = limit
        self.size = 0
        self._bodies: dict[tuple, tuple[int, bytes]] = {}

    def get(self, key: tuple, index: int) -> bytes | None:
        hit = self._bodies.pop(key, None)
        if hit is None:
            return None
        if hit[0] != index:
            self.size -= len(hit[1])
            return None
        self._bodies[key] = hit                 # most recently used last
        return hit[1]

    def put(self, key: tuple, index: int, body: bytes) -> None:
        old = self._bodies.pop(key, None)
        if old is not None:
            self.size -= len(old[1])
        if len(body) > self.limit:
            return
        self._bodies[key] = (index, body)
        self.size += len(body)
        while self.size > self.limit:             # dicts keep insertion order: oldest first
            self.size -= len(self._bodies.pop(next(iter(self._bodies)))[1])


class FragmentMemo:
    """Compact JSON of single reply entries, by the entry's identity. The catalog keeps an
    unchanged instance's entry (the same object) across writes to its service, and rows are
    never changed in place, so after one instance of 1,000 changed only that one is shaped
    and encoded again; `?near=`, `?passing` and `?filter=` orders and subsets reuse them too.
    Two generations of at most `size` entries: one unused for a whole generation goes."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._new: dict[int, tuple[object, Callable, bytes]] = {}
        self._old: dict[int, tuple[object, Callable, bytes]] = {}

    def encode(self, entries: Iterable[object], shape: Callable[[Any], object]) -> bytes:
        """The JSON array of `shape(e)` for each entry, as `encode(list, False)` writes it."""
        parts = []
        for e in entries:
            hit = self._new.get(id(e))
            # an entry held here keeps its id; the shape is checked, should one entry ever
            # be sent in two shapes
            if hit is None or hit[0] is not e or hit[1] is not shape:
                hit = self._old.get(id(e))
                if hit is None or hit[0] is not e or hit[1] is not shape:
                    hit = (e, shape, encode(shape(e), False))
                self._new[id(e)] = hit
                if len(self._new) >= self.size:
                    self._old, self._new = self._new, {}
            parts.append(hit[2])
        return b"[" + b",".join(parts) + b"]"


class _AgentCaches:
    __slots__ = ("bodies", "fragments")

    def __init__(self) -> None:
        self.bodies = BodyCache()
        self.fragments = FragmentMemo()


_CACHES: "weakref.WeakKeyDictionary[Agent, _AgentCaches]" = weakref.WeakKeyDictionary()


def service_body(agent: "Agent", opts: dict, reply: dict, kind: str,
                 entries: Callable[[], list], shape: Callable[[Any], object], pretty: bool,
                 *extra) -> bytes:
    """The JSON array of `shape(e)` for each of a service read's `entries()` (only called
    when no body is reused; `extra`: whatever else, beyond the RPC's options, decides the
    entries). On servers, for their own datacenter (the Raft history behind the index is
    then the one this process lives in; a client agent could outlive a cluster rebuilt from
    scratch, whose indexes start over): the body of the same read at the same index is
    reused (BodyCache; not for `?near=`: coordinates are not in the index), and when this
    server answered from its own store, entries are encoded through its FragmentMemo."""
    consensus = agent.consensus
    if consensus is None or opts.get("Datacenter") != agent.config.datacenter:
        return encode([shape(e) for e in entries()], pretty)
    caches = _CACHES.get(agent)
    if caches is None:
        caches = _CACHES[agent] = _AgentCaches()

    def body() -> bytes:
        if pretty or not (opts.get("AllowStale") or not consensus.not_leader()):
            return encode([shape(e) for e in entries()], pretty)
        return caches.fragments.encode(entries(), shape)
    if opts.get("Source"):
        return body()
    key = (kind, opts.get("Datacenter"), opts.get("ServiceName"),
           tuple(opts.get("ServiceTags") or ()) if opts.get("TagFilter") else None,
           tuple(sorted((opts.get("NodeMetaFilters") or {}).items())), pretty, *extra)
    index = reply.get("Index", 0)
    cached = caches.bodies.get(key, index)
    if cached is None:
        cached = body()
        caches.bodies.put(key, index, cached)
    return cached


def service_render(request: web.Request, **more) -> dict:
    """The view of a service read (agent/http/rendered.py) that `request` asks for."""
    return {"Pretty": "pretty" in request.query, "Filter": request.query.get("filter", ""),
            **more}


def service_view(agent: "Agent", opts: dict, reply: dict, render: dict) -> bytes:
    """Catalog.ServiceNodes' body (agent/http/rendered.py)."""
    text = render.get("Filter") or ""
    return service_body(agent, opts, reply, "catalog",
                        lambda: filter_rows(SERVICE_ROUTE, text, reply.get("ServiceNodes") or []),
                        _service_node_json, bool(render.get("Pretty")), text)


def _response(body: bytes, reply: dict) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers=meta_headers(reply))


def read_options(agent: "Agent", request: web.Request) -> dict:
    """query_options plus ?node-meta=k:v (repeatable); compiles ?filter= (fails fast)."""
    check_filter(request)
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
                "Proxy": s["Proxy"] or _empty_proxy(), "Connect": s["Connect"] or {},
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
    out["ServiceProxy"] = out["ServiceProxy"] or _empty_proxy()
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
    return json_response(apply_filter(request, reply.get("Nodes") or []), reply, request)


async def services(agent: "Agent", request: web.Request):
    reply = await agent.rpc("Catalog.ListServices", read_options(agent, request))
    return json_response(reply.get("Services") or {}, reply, request)


async def service(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    tag_options(request, opts)
    near_options(agent, request, opts)
    opts["ServiceName"] = _segment(request, "Missing service name")
    reply, body = await rendered.read(agent, "Catalog.ServiceNodes", opts, service_render(request))
    return _response(body, reply)


async def node(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    opts["Node"] = _segment(request, "Missing node name")
    reply = await agent.rpc("Catalog.NodeServices", opts)
    ns = reply.get("NodeServices")
    if ns is not None:
        ns = {"Node": ns["Node"],
              "Services": {k: node_service_json(v)
                             for k, v in apply_filter(request, ns["Services"]).items()}}
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

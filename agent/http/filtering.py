"""`?filter=` on the endpoints where Consul supports it: the record type each one filters
(Consul's structs, as go-bexpr sees them: exact field names, RaftIndex and internal fields
not selectable) and one helper for the endpoint modules.

Consul builds the filter before it reads (a bad expression fails at once, even on a
blocking query) and answers a bad one with 500 and "Failed to create boolean expression
evaluator: ..." (the RPC error string; hashicorp/consul#7338, #9441): `check_filter` runs
when the request's options are read, `apply_filter` on the rows the RPC returned. The
expression language (agent/filter.py) is imported by the first request with a filter.
"""
from __future__ import annotations

from aiohttp import web

from ..filter_types import BOOL, INT, STR, MapOf, SliceOf, Struct
from .errors import HTTPError

WEIGHTS = Struct({"Passing": INT, "Warning": INT})
SERVICE_ADDRESS = Struct({"Address": STR, "Port": INT})
UPSTREAM = Struct({
    "DestinationType": STR, "DestinationNamespace": STR, "DestinationPartition": STR,
    "DestinationPeer": STR, "DestinationName": STR, "Datacenter": STR,
    "LocalBindAddress": STR, "LocalBindPort": INT, "LocalBindSocketPath": STR,
    "LocalBindSocketMode": STR, "Config": MapOf(None), "MeshGateway": Struct({"Mode": STR}),
    "CentrallyConfigured": BOOL})
EXPOSE_PATH = Struct({"ListenerPort": INT, "Path": STR, "LocalPathPort": INT, "Protocol": STR,
                      "ParsedFromCheck": BOOL})
PROXY = Struct({            # structs.ConnectProxyConfig
    "DestinationServiceName": STR, "DestinationServiceID": STR, "LocalServiceAddress": STR,
    "LocalServicePort": INT, "LocalServiceSocketPath": STR, "Mode": STR,
    "Config": MapOf(None), "Upstreams": SliceOf(UPSTREAM),
    "MeshGateway": Struct({"Mode": STR}), "Expose": Struct({"Checks": BOOL,
                                                           "Paths": SliceOf(EXPOSE_PATH)}),
    "TransparentProxy": Struct({"OutboundListenerPort": INT, "DialedDirectly": BOOL})})
CONNECT = Struct({"Native": BOOL})      # SidecarService is bexpr:"-"

NODE = Struct({             # structs.Node
    "ID": STR, "Node": STR, "Address": STR, "Datacenter": STR,
    "TaggedAddresses": MapOf(STR), "Meta": MapOf(STR)})
NODE_SERVICE = Struct({     # structs.NodeService
    "Kind": STR, "ID": STR, "Service": STR, "Tags": SliceOf(STR), "Address": STR,
    "TaggedAddresses": MapOf(SERVICE_ADDRESS), "Meta": MapOf(STR), "Port": INT,
    "SocketPath": STR, "Weights": WEIGHTS, "EnableTagOverride": BOOL, "Proxy": PROXY,
    "Connect": CONNECT})
AGENT_SERVICE = Struct({    # api.AgentService (CreateIndex, ModifyIndex, ContentHash: bexpr:"-")
    **NODE_SERVICE.fields, "Datacenter": STR})
SERVICE_NODE = Struct({     # structs.ServiceNode
    "ID": STR, "Node": STR, "Address": STR, "Datacenter": STR,
    "TaggedAddresses": MapOf(STR), "NodeMeta": MapOf(STR), "ServiceKind": STR,
    "ServiceID": STR, "ServiceName": STR, "ServiceTags": SliceOf(STR), "ServiceAddress": STR,
    "ServiceTaggedAddresses": MapOf(SERVICE_ADDRESS), "ServiceWeights": WEIGHTS,
    "ServiceMeta": MapOf(STR), "ServicePort": INT, "ServiceSocketPath": STR,
    "ServiceEnableTagOverride": BOOL, "ServiceProxy": PROXY, "ServiceConnect": CONNECT})
CHECK_DEFINITION = Struct({  # structs.HealthCheckDefinition (its durations left out)
    "HTTP": STR, "TLSServerName": STR, "TLSSkipVerify": BOOL,
    "Header": MapOf(SliceOf(STR)), "Method": STR, "Body": STR, "TCP": STR, "GRPC": STR,
    "GRPCUseTLS": BOOL, "AliasNode": STR, "AliasService": STR})
HEALTH_CHECK = Struct({     # structs.HealthCheck
    "Node": STR, "CheckID": STR, "Name": STR, "Status": STR, "Notes": STR, "Output": STR,
    "ServiceID": STR, "ServiceName": STR, "ServiceTags": SliceOf(STR), "Type": STR,
    "Interval": STR, "Timeout": STR, "ExposedPort": INT, "Definition": CHECK_DEFINITION})
CHECK_SERVICE_NODE = Struct({"Node": NODE, "Service": NODE_SERVICE,
                             "Checks": SliceOf(HEALTH_CHECK)})

# route (aiohttp's canonical path) → the type of the records it filters
SCHEMAS = {
    "/v1/catalog/nodes": NODE,
    "/v1/catalog/service/{name}": SERVICE_NODE,
    "/v1/catalog/node/{name}": NODE_SERVICE,
    "/v1/health/node/{name}": HEALTH_CHECK,
    "/v1/health/checks/{name}": HEALTH_CHECK,
    "/v1/health/service/{name}": CHECK_SERVICE_NODE,
    "/v1/health/state/{name}": HEALTH_CHECK,
    "/v1/agent/services": AGENT_SERVICE,
    "/v1/agent/checks": HEALTH_CHECK,
}

_KEY = "isthmus.filter"


def _route(request: web.Request) -> str:
    info = request.match_info
    return info.route.resource.canonical if info.route.resource is not None else request.path


def check_filter(request: web.Request) -> None:
    """Compile `?filter=` for this request's route now (a bad one answers 500 with Consul's
    text before any read or wait); an empty or absent filter is no filter. Routes without
    a record type ignore the parameter, as Consul's endpoints that take no filter do."""
    text = request.query.get("filter", "")
    if not text:
        request[_KEY] = None
        return
    from ..filter import FilterError
    try:
        request[_KEY] = compiled(_route(request), text)
    except FilterError as exc:
        raise HTTPError(500, str(exc)) from None


def apply_filter(request: web.Request, rows):
    """`rows` (a list, or a dict of records) narrowed to what `?filter=` matches."""
    if _KEY not in request:
        check_filter(request)
    flt = request[_KEY]
    if flt is None or rows is None:
        return rows
    return flt.apply(rows)


_COMPILED: dict[tuple[str, str], object] = {}


def compiled(route: str, text: str):
    """The filter `text` compiled for `route`'s record type (None: no filter). At most 256
    are kept, the oldest going first: reads rendered for another agent
    (agent/http/rendered.py) name the same filter again and again. FilterError for a bad
    one."""
    schema = SCHEMAS.get(route)
    if not text or schema is None:
        return None
    key = (route, text)
    flt = _COMPILED.get(key)
    if flt is None:
        from ..filter import compile
        flt = compile(text, schema)
        if len(_COMPILED) >= 256:
            del _COMPILED[next(iter(_COMPILED))]
        _COMPILED[key] = flt
    return flt


def filter_rows(route: str, text: str, rows):
    """`rows` narrowed to what filter `text` (for `route`'s record type) matches."""
    flt = compiled(route, text)
    return rows if flt is None or rows is None else flt.apply(rows)

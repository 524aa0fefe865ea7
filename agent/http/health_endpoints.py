"""/v1/health/* (Consul's agent/health_endpoint.go): node/<node>, checks/<service>,
service/<service> (?passing, ?tag), state/<state> — with Consul's empty-list substitutions
and X-Consul-* headers. `?near=<node>` (`_agent`: this agent) on checks, service and state
sorts by estimated RTT from that node; `?filter=` narrows every one (agent/http/filtering.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import rendered
from .catalog_endpoints import (_response, _segment, check_json, json_response, near_options,
                                node_service_json, read_options, service_body, service_render,
                                tag_options)
from .errors import bad_request
from .filtering import apply_filter, filter_rows

if TYPE_CHECKING:
    from ..agent import Agent

SERVICE_ROUTE = "/v1/health/service/{name}"


async def node(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    opts.pop("NodeMetaFilters", None)        # Consul's node checks take no node-meta filter
    opts["Node"] = _segment(request, "Missing node name")
    reply = await agent.rpc("Health.NodeChecks", opts)
    rows = apply_filter(request, reply.get("HealthChecks") or [])
    return json_response([check_json(c) for c in rows], reply, request)


async def checks(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    near_options(agent, request, opts)
    opts["ServiceName"] = _segment(request, "Missing service name")
    reply = await agent.rpc("Health.ServiceChecks", opts)
    rows = apply_filter(request, reply.get("HealthChecks") or [])
    return json_response([check_json(c) for c in rows], reply, request)


def _passing(request: web.Request) -> bool:
    """Consul's getBoolQueryParam: present and empty = true, else strconv.ParseBool."""
    if "passing" not in request.query:
        return False
    raw = request.query.get("passing", "")
    if raw == "":
        return True
    if raw in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if raw in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise bad_request("Invalid value for ?passing")


def _filter_non_passing(nodes: list) -> list:
    """Consul's filterNonPassing, including its order: a dropped entry's place is taken by
    the last one still kept."""
    out = list(nodes)
    n = len(out)
    i = 0
    while i < n:
        if any(c["Status"] != "passing" for c in out[i]["Checks"]):
            out[i], out[n - 1] = out[n - 1], None
            n -= 1
            continue
        i += 1
    return out[:n]


async def service(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    tag_options(request, opts)
    near_options(agent, request, opts)
    opts["ServiceName"] = _segment(request, "Missing service name")
    render = service_render(request, Passing=_passing(request))
    reply, body = await rendered.read(agent, "Health.ServiceNodes", opts, render)
    return _response(body, reply)


def service_view(agent: "Agent", opts: dict, reply: dict, render: dict) -> bytes:
    """Health.ServiceNodes' body (agent/http/rendered.py)."""
    text = render.get("Filter") or ""
    passing = bool(render.get("Passing"))

    def nodes() -> list:
        out = filter_rows(SERVICE_ROUTE, text, reply.get("Nodes") or [])
        return _filter_non_passing(out) if passing else out
    return service_body(agent, opts, reply, "health", nodes, _check_service_node_json,
                        bool(render.get("Pretty")), passing, text)


def _check_service_node_json(n: dict) -> dict:
    return {"Node": n["Node"], "Service": node_service_json(n["Service"]),
            "Checks": [check_json(c) for c in n["Checks"]]}


async def state(agent: "Agent", request: web.Request):
    opts = read_options(agent, request)
    near_options(agent, request, opts)
    opts["State"] = _segment(request, "Missing check state")
    reply = await agent.rpc("Health.ChecksInState", opts)
    rows = apply_filter(request, reply.get("HealthChecks") or [])
    return json_response([check_json(c) for c in rows], reply, request)


ROUTES = {
    "/v1/health/node/{name:.*}": {"GET": node},
    "/v1/health/checks/{name:.*}": {"GET": checks},
    "/v1/health/service/{name:.*}": {"GET": service},
    "/v1/health/state/{name:.*}": {"GET": state},
}

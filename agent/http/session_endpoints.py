"""/v1/session/* (Consul's agent/session_endpoint.go): create, destroy, renew, info, node,
list."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config.load import parse_go_duration
from ..gojson import GoJSONError, json_type, loads
from .errors import HTTPError, bad_request
from .query import datacenter, meta_headers, query_options

if TYPE_CHECKING:
    from ..agent import Agent

SERF_CHECK_ID = "serfHealth"
LOCK_DELAY_MIN_THRESHOLD = 1000         # ns: smaller numbers are seconds (Consul's FixupLockDelay)

# Go field name -> JSON type of structs.Session fields a create may set
_FIELDS = {"ID": str, "Name": str, "Node": str, "Behavior": str, "TTL": str, "LockDelay": None,
           "Checks": list, "NodeChecks": list, "ServiceChecks": list}
_GO_TYPES = {str: "string", list: "array", dict: "object"}


def _json(obj: Any, request: web.Request, headers: dict | None = None) -> web.Response:
    from .server import encode
    return web.Response(body=encode(obj, "pretty" in request.query), headers=headers,
                        content_type="application/json")


def _lock_delay(v: Any) -> int:
    """LockDelay as Consul takes it: a duration string or a number of nanoseconds; values
    under 1000 ns mean seconds."""
    if isinstance(v, bool):
        raise ValueError("json: cannot unmarshal bool into Go struct field Session.LockDelay "
                         "of type time.Duration")
    if isinstance(v, str):
        ns = int(round(parse_go_duration(v) * 1e9))
    elif isinstance(v, (int, float)):
        ns = int(v)
    else:
        raise ValueError("json: cannot unmarshal value into Go struct field Session.LockDelay "
                         "of type time.Duration")
    if ns < LOCK_DELAY_MIN_THRESHOLD:
        ns *= 1_000_000_000
    return ns


async def _decode_session(request: web.Request) -> dict:
    """The create body into Consul's Session fields, keys matched case-insensitively."""
    raw = await request.read()
    if not raw:                             # Consul decodes only when ContentLength > 0
        return {}
    try:
        body = loads(raw)
    except GoJSONError as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    if body is None:                        # JSON null decodes into the zero Session
        return {}
    if not isinstance(body, dict):
        raise bad_request("Request decode failed: json: cannot unmarshal "
                          f"{json_type(body)} into Go value of type structs.Session")
    out: dict = {}
    names = {k.lower(): k for k in _FIELDS}
    for key, value in body.items():
        name = names.get(key.lower())
        if name is None or value is None:
            continue                        # unknown keys and nulls: ignored, as Go does
        if name == "LockDelay":
            try:
                out[name] = _lock_delay(value)
            except ValueError as exc:
                raise bad_request(f"Request decode failed: {exc}") from None
            continue
        want = _FIELDS[name]
        ok = isinstance(value, want)
        if ok and name in ("Checks", "NodeChecks"):
            ok = all(isinstance(x, str) for x in value)
        if ok and name == "ServiceChecks":
            ok = all(isinstance(x, dict) for x in value)
            value = [{"ID": str(next((v for k, v in x.items() if k.lower() == "id"), "")),
                      "Namespace": str(next((v for k, v in x.items() if k.lower() == "namespace"), ""))}
                     for x in value] if ok else value
        if not ok:
            raise bad_request(f"Request decode failed: json: cannot unmarshal "
                              f"{json_type(value)} into Go struct field Session.{name} of type "
                              f"{_go_type(name)}")
        out[name] = value
    return out


def _go_type(name: str) -> str:
    return {"Checks": "[]types.CheckID", "NodeChecks": "[]string",
            "ServiceChecks": "[]structs.ServiceCheck"}.get(name, "string")


async def create(agent: "Agent", request: web.Request) -> dict:
    fields = await _decode_session(request)
    sess = {"Node": agent.config.node_name, "Checks": [SERF_CHECK_ID],
            "NodeChecks": [SERF_CHECK_ID], "LockDelay": 15_000_000_000, "Behavior": "release",
            "TTL": ""}
    sess.update(fields)
    # Consul's fixupEmptySessionChecks: Checks (deprecated) and NodeChecks share a default
    if not sess["Checks"]:
        sess["NodeChecks"] = []
        sess["Checks"] = None
    elif sess["Checks"] == [SERF_CHECK_ID]:
        sess["Checks"] = None
    elif not sess["NodeChecks"]:
        sess["Checks"] = None
    body = {"Datacenter": datacenter(agent, request), "Op": "create", "Session": sess}
    sid = await agent.rpc("Session.Apply", body)
    return {"ID": sid}


def _id(request: web.Request, what: str = "Missing session") -> str:
    sid = request.match_info.get("id", "")
    if not sid:
        raise bad_request(what)
    return sid


async def destroy(agent: "Agent", request: web.Request) -> bool:
    sid = _id(request)
    await agent.rpc("Session.Apply", {"Datacenter": datacenter(agent, request), "Op": "destroy",
                                      "Session": {"ID": sid}})
    return True


async def renew(agent: "Agent", request: web.Request) -> web.Response:
    sid = _id(request)
    reply = await agent.rpc("Session.Renew", {"Datacenter": datacenter(agent, request),
                                              "SessionID": sid})
    if not reply.get("Sessions"):
        raise HTTPError(404, f"Session id '{sid}' not found")
    return _json(reply["Sessions"], request)


async def _read(agent: "Agent", request: web.Request, method: str, extra: dict) -> web.Response:
    body = query_options(agent, request)
    body.update(extra)
    reply = await agent.rpc(method, body)
    return _json(reply.get("Sessions") or [], request, meta_headers(reply))


async def info(agent: "Agent", request: web.Request) -> web.Response:
    return await _read(agent, request, "Session.Get", {"SessionID": _id(request)})


async def node(agent: "Agent", request: web.Request) -> web.Response:
    return await _read(agent, request, "Session.NodeSessions",
                       {"Node": _id(request, "Missing node name")})


async def list_(agent: "Agent", request: web.Request) -> web.Response:
    return await _read(agent, request, "Session.List", {})


ROUTES = {
    "/v1/session/create": {"PUT": create},
    "/v1/session/destroy/{id:.*}": {"PUT": destroy},
    "/v1/session/renew/{id:.*}": {"PUT": renew},
    "/v1/session/info/{id:.*}": {"GET": info},
    "/v1/session/node/{id:.*}": {"GET": node},
    "/v1/session/list": {"GET": list_},
}

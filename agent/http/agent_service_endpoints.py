"""The agent's own services and checks (Consul's agent/agent_endpoint.go): register and
deregister services and checks, TTL updates, maintenance mode, the local lists, reload."""
from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from aiohttp import web

from .. import log
from ..errors import IsthmusError
from ..local.body import DecodeFailed, Fields, parse_json
from ..local.checks import truncate
from ..local.defs import Invalid, parse_check, parse_service
from ..local.manager import NotFound
from ..local.state import CRITICAL, PASSING, WARNING
from .errors import HTTPError, bad_request
from .filtering import apply_filter

if TYPE_CHECKING:
    from ..agent import Agent

_log = log.get("http")


def _local(agent: "Agent"):
    if getattr(agent, "local", None) is None:
        raise IsthmusError("agent local state is not running")
    return agent.local


def _ok() -> web.Response:
    return web.Response(status=200)


async def _body(request: web.Request, struct: str, required: bool = False) -> Fields:
    raw = await request.read()
    try:
        if required and not raw.strip():
            raise DecodeFailed("EOF")           # Go's decoder on an empty body
        return Fields(parse_json(raw), struct)
    except DecodeFailed as exc:
        raise bad_request(f"Request decode failed: {exc}") from None


def _decode_all(f: Fields, check: bool) -> None:
    """Go decodes the whole body before Consul validates any of it: a field of the wrong
    type answers "Request decode failed" even when the name is missing as well."""
    for name in ("ID", "Name", "Notes", "ServiceID", "Status", "HTTP", "Method", "Body", "TCP",
                 "Token") if check else ("Kind", "ID", "Name", "Address", "SocketPath", "Token"):
        f.str(name)
    if check:
        f.strlist("ScriptArgs")
        f.header("Header")
        for name in ("Interval", "Timeout", "TTL", "DeregisterCriticalServiceAfter"):
            f.duration(name)
        f.bool("TLSSkipVerify")
        return
    f.strlist("Tags")
    f.strmap("Meta")
    f.int("Port")
    f.bool("EnableTagOverride")
    f.obj("TaggedAddresses", "map[string]structs.ServiceAddress")
    f.obj("Check", "CheckType")
    f.objlist("Checks", "CheckType")
    f.obj("Weights", "Weights")
    f.obj("Proxy", "structs.ConnectProxyConfig")
    f.obj("Connect", "structs.ServiceConnect")


def _not_found(exc: NotFound) -> HTTPError:
    return HTTPError(404, str(exc))


def _go_bool(text: str) -> bool | None:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


# ---------------------------------------------------------------------- JSON shapes

def agent_service(svc: dict, datacenter: str) -> dict:
    """Consul's api.AgentService: Tags and Meta never null, empty extras left out."""
    out = {}
    if svc.get("Kind"):
        out["Kind"] = svc["Kind"]
    out.update({"ID": svc["ID"], "Service": svc["Service"], "Tags": list(svc.get("Tags") or []),
                "Meta": dict(svc.get("Meta") or {}), "Port": svc.get("Port", 0),
                "Address": svc.get("Address", "")})
    if svc.get("TaggedAddresses"):
        out["TaggedAddresses"] = svc["TaggedAddresses"]
    out.update({"Weights": svc.get("Weights") or {"Passing": 1, "Warning": 1},
                "EnableTagOverride": bool(svc.get("EnableTagOverride")),
                "Datacenter": datacenter})
    return out


def agent_check(chk: dict) -> dict:
    """Consul's HealthCheck as /v1/agent/checks shows it."""
    return {"Node": chk.get("Node", ""), "CheckID": chk["CheckID"], "Name": chk.get("Name", ""),
            "Status": chk.get("Status", CRITICAL), "Notes": chk.get("Notes", ""),
            "Output": chk.get("Output", ""), "ServiceID": chk.get("ServiceID", ""),
            "ServiceName": chk.get("ServiceName", ""),
            "ServiceTags": list(chk.get("ServiceTags") or []), "Type": chk.get("Type", ""),
            "Interval": chk.get("Interval", ""), "Timeout": chk.get("Timeout", ""),
            "ExposedPort": chk.get("ExposedPort", 0), "Definition": chk.get("Definition") or {},
            "CreateIndex": 0, "ModifyIndex": 0}


def _json(obj, request: web.Request, headers: dict | None = None) -> web.Response:
    from .server import encode
    return web.Response(body=encode(obj, "pretty" in request.query),
                        content_type="application/json", headers=headers)


# ---------------------------------------------------------------------- services

async def service_register(agent: "Agent", request: web.Request) -> web.Response:
    f = await _body(request, "ServiceDefinition", required=True)
    try:
        _decode_all(f, check=False)
        service, checks = parse_service(f)
    except DecodeFailed as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    except Invalid as exc:
        raise bad_request(str(exc)) from None
    replace = "replace-existing-checks" in request.query
    _local(agent).add_service(service, checks, replace_existing_checks=replace,
                              token=f.str("Token"))
    return _ok()


async def service_deregister(agent: "Agent", request: web.Request) -> web.Response:
    try:
        _local(agent).remove_service(request.match_info["service_id"])
    except NotFound as exc:
        raise _not_found(exc) from None
    return _ok()


async def services(agent: "Agent", request: web.Request) -> web.Response:
    dc = agent.config.datacenter
    out = {sid: agent_service(s, dc) for sid, s in _local(agent).services().items()}
    return _json(apply_filter(request, out), request)


async def service_get(agent: "Agent", request: web.Request) -> web.Response:
    sid = request.match_info["service_id"]
    svc = _local(agent).state.service(sid)
    if svc is None:
        raise HTTPError(404, f"unknown service ID: {sid}")
    out = agent_service(svc, agent.config.datacenter)
    content_hash = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
    out["ContentHash"] = content_hash
    return _json(out, request, {"X-Consul-ContentHash": content_hash})


async def service_maintenance(agent: "Agent", request: web.Request) -> web.Response:
    sid = request.match_info["service_id"]
    enable = _enable_param(request)
    local = _local(agent)
    try:
        if enable:
            local.enable_service_maintenance(sid, request.query.get("reason", ""))
        else:
            local.disable_service_maintenance(sid)
    except NotFound as exc:
        raise _not_found(exc) from None
    return _ok()


def _enable_param(request: web.Request) -> bool:
    if "enable" not in request.query:
        raise bad_request("Missing value for enable")
    raw = request.query["enable"]
    value = _go_bool(raw)
    if value is None:
        raise bad_request(f'Invalid value for enable: "{raw}"')
    return value


async def node_maintenance(agent: "Agent", request: web.Request) -> web.Response:
    enable = _enable_param(request)
    if enable:
        _local(agent).enable_node_maintenance(request.query.get("reason", ""))
    else:
        _local(agent).disable_node_maintenance()
    return _ok()


# ---------------------------------------------------------------------- checks

async def check_register(agent: "Agent", request: web.Request) -> web.Response:
    f = await _body(request, "CheckDefinition", required=True)
    try:
        _decode_all(f, check=True)
        check, ct = parse_check(f)
    except DecodeFailed as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    except Invalid as exc:
        raise bad_request(str(exc)) from None
    _local(agent).add_check(check, ct, token=f.str("Token"))
    return _ok()


async def check_deregister(agent: "Agent", request: web.Request) -> web.Response:
    try:
        _local(agent).remove_check(request.match_info["check_id"])
    except NotFound as exc:
        raise _not_found(exc) from None
    return _ok()


def _ttl(status: str):
    async def handler(agent: "Agent", request: web.Request) -> web.Response:
        try:
            _local(agent).update_ttl(request.match_info["check_id"], status,
                                     request.query.get("note", ""))
        except NotFound as exc:
            raise _not_found(exc) from None
        return _ok()
    return handler


async def check_update(agent: "Agent", request: web.Request) -> web.Response:
    f = await _body(request, "checkUpdate")
    try:
        status, output = f.str("Status"), f.str("Output")
    except DecodeFailed as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    if status not in (PASSING, WARNING, CRITICAL):
        raise bad_request(f"Invalid check status: '{status}'")
    try:
        _local(agent).update_ttl(request.match_info["check_id"], status, truncate(output))
    except NotFound as exc:
        raise _not_found(exc) from None
    return _ok()


async def checks(agent: "Agent", request: web.Request) -> web.Response:
    out = {cid: agent_check(c) for cid, c in _local(agent).checks().items()}
    return _json(apply_filter(request, out), request)


# ---------------------------------------------------------------------- reload

async def reload(agent: "Agent", request: web.Request) -> web.Response:
    """Re-read the configuration as the agent was started with it (`agent.config_argv`),
    as Consul's reload: the config files' services and checks replace the ones they
    defined before (added, changed and removed; API registrations stay) and node_meta is
    applied; then a full anti-entropy sync runs. A configuration that no longer loads, or
    definitions that do not apply, answer 500 with the problems and change nothing."""
    argv = getattr(agent, "config_argv", None)
    local = _local(agent)
    if argv is None:
        local.syncer.trigger_full()
        return _ok()
    from ..local.reload import ReloadFailed, reload_config
    try:
        warnings = reload_config(local, argv)
    except ReloadFailed as exc:
        _log.error("Failed to reload configs: %s", exc)
        raise HTTPError(500, str(exc)) from None
    for w in warnings:
        _log.warning("%s", w)
    _log.info("Reloaded configuration")
    return _ok()


ROUTES = {
    "/v1/agent/service/register": {"PUT": service_register},
    "/v1/agent/service/deregister/{service_id}": {"PUT": service_deregister},
    "/v1/agent/service/maintenance/{service_id}": {"PUT": service_maintenance},
    "/v1/agent/services": {"GET": services},
    "/v1/agent/service/{service_id}": {"GET": service_get},
    "/v1/agent/maintenance": {"PUT": node_maintenance},
    "/v1/agent/check/register": {"PUT": check_register},
    "/v1/agent/check/deregister/{check_id}": {"PUT": check_deregister},
    "/v1/agent/check/pass/{check_id}": {"PUT": _ttl(PASSING)},
    "/v1/agent/check/warn/{check_id}": {"PUT": _ttl(WARNING)},
    "/v1/agent/check/fail/{check_id}": {"PUT": _ttl(CRITICAL)},
    "/v1/agent/check/update/{check_id}": {"PUT": check_update},
    "/v1/agent/checks": {"GET": checks},
    "/v1/agent/reload": {"PUT": reload},
}

"""/v1/kv/<key> (Consul's agent/kvs_endpoint.go): GET (recurse, keys, raw), PUT (flags, cas,
acquire/release with a session), DELETE (recurse, cas), with `?stale` / `?consistent` and Consul's index headers."""
from __future__ import annotations

import base64
import json
import urllib.parse
from typing import TYPE_CHECKING

from aiohttp import web

from . import rendered
from .errors import HTTPError, bad_request
from .query import flag as _flag
from .query import meta_headers, query_options
from .server import encode

if TYPE_CHECKING:
    from ..agent import Agent

MAX_VALUE_SIZE = 512 * 1024     # Consul's limits.kv_max_value_size


def _uint(request: web.Request, name: str) -> int:
    """strconv.ParseUint(?name, 10, 64) when the parameter is present (even empty); Consul
    returns its error unwrapped, so it answers 500 with strconv's text."""
    if name not in request.query:
        return 0
    raw = request.query.get(name, "")
    quoted = json.dumps(raw, ensure_ascii=False)
    if not raw or not raw.isascii() or not raw.isdigit():
        raise HTTPError(500, f"strconv.ParseUint: parsing {quoted}: invalid syntax")
    if int(raw) >= 1 << 64:
        raise HTTPError(500, f"strconv.ParseUint: parsing {quoted}: value out of range")
    return int(raw)


def _conflicting(request: web.Request, *flags: str) -> None:
    """Consul's conflictingFlags: 400 when more than one of `flags` is present."""
    if sum(f in request.query for f in flags) > 1:
        params = sorted(request.query.items(), key=lambda kv: kv[0])     # url.Values.Encode
        raise bad_request("Conflicting flags: " + urllib.parse.urlencode(params))


def _key(request: web.Request) -> str:
    return request.match_info.get("key", "")


def _json(obj, headers: dict, request: web.Request, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(obj, "pretty" in request.query),
                        content_type="application/json", headers=headers)


def _entry_json(e: dict) -> dict:
    out = dict(e)
    v = out.get("Value")
    out["Value"] = base64.b64encode(v).decode() if v else None
    if not out.get("Session"):                  # Consul's omitempty
        out.pop("Session", None)
    return out


async def get(agent: "Agent", request: web.Request) -> web.StreamResponse:
    body = query_options(agent, request)
    key = _key(request)
    if _flag(request, "keys"):
        body.update({"Prefix": key, "Seperator": request.query.get("separator", "")})
        reply = await agent.rpc("KVS.ListKeys", body)
        headers = meta_headers(reply)
        if not reply.get("Keys"):
            return web.Response(status=404, headers=headers)
        return _json(reply["Keys"], headers, request)
    body["Key"] = key
    method = "KVS.List" if _flag(request, "recurse") else "KVS.Get"
    if _flag(request, "raw"):
        reply = await agent.rpc(method, body)
        entries = reply.get("Entries")
        if not entries:
            return web.Response(status=404, headers=meta_headers(reply))
        return web.Response(body=entries[0]["Value"] or b"", headers=meta_headers(reply),
                            content_type="text/plain")
    reply, out = await rendered.read(agent, method, body, {"Pretty": "pretty" in request.query})
    if out is None:
        return web.Response(status=404, headers=meta_headers(reply))
    return web.Response(body=out, content_type="application/json", headers=meta_headers(reply))


def entries_view(agent: "Agent", opts: dict, reply: dict, render: dict) -> bytes | None:
    """KVS.Get's and KVS.List's body (agent/http/rendered.py); None when nothing matched."""
    entries = reply.get("Entries")
    if not entries:
        return None
    return encode([_entry_json(e) for e in entries], bool(render.get("Pretty")))


async def put(agent: "Agent", request: web.Request) -> web.Response:
    key = _key(request)
    if not key:
        raise bad_request("Missing key name")
    _conflicting(request, "cas", "acquire", "release")
    flags = _uint(request, "flags")
    cas = _uint(request, "cas")
    size = request.content_length
    value = await request.read()
    if len(value) > MAX_VALUE_SIZE or (size or 0) > MAX_VALUE_SIZE:
        raise HTTPError(413, f"Request body({len(value)} bytes) too large, max size: "
                             f"{MAX_VALUE_SIZE} bytes. See https://developer.hashicorp.com/"
                             "consul/docs/agent/config/config-files#kv_max_value_size.")
    ent = {"Key": key, "Value": value, "Flags": flags}
    op = "set"
    # at most one of acquire, release, cas (conflicts were refused above)
    if "acquire" in request.query:
        op = "lock"
        ent["Session"] = request.query["acquire"]
    if "release" in request.query:
        op = "unlock"
        ent["Session"] = request.query["release"]
    if "cas" in request.query:
        op = "cas"
        ent["ModifyIndex"] = cas
    body = {"Datacenter": request.query.get("dc") or agent.config.datacenter, "Op": op,
            "DirEnt": ent}
    ok = await agent.rpc("KVS.Apply", body)
    return web.Response(body=json.dumps(bool(ok)).encode(), content_type="application/json")


async def delete(agent: "Agent", request: web.Request) -> web.Response:
    key = _key(request)
    _conflicting(request, "recurse", "cas")
    op, ent = "delete", {"Key": key}
    if _flag(request, "recurse"):
        op = "delete-tree"
    elif not key:
        raise bad_request("Missing key name")
    if "cas" in request.query:              # never with recurse: refused above
        op = "delete-cas"
        ent["ModifyIndex"] = _uint(request, "cas")
    body = {"Datacenter": request.query.get("dc") or agent.config.datacenter, "Op": op,
            "DirEnt": ent}
    ok = await agent.rpc("KVS.Apply", body)
    return web.Response(body=json.dumps(bool(ok)).encode(), content_type="application/json")


ROUTES = {
    "/v1/kv/{key:.*}": {"GET": get, "PUT": put, "DELETE": delete},
}

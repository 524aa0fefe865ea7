"""Membership, joins and keyring over HTTP, in Consul's shapes (coordinates: coordinate_endpoints)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import IsthmusError
from ..gossip.keyring_file import decode_key
from ..serf import codec
from .errors import bad_request

if TYPE_CHECKING:
    from ..agent import Agent


def member_json(mem) -> dict:
    """serf.Member as Consul's /v1/agent/members reports it."""
    return {"Name": mem.name, "Addr": mem.addr, "Port": mem.port, "Tags": dict(mem.tags),
            "Status": mem.status, "ProtocolMin": mem.pmin, "ProtocolMax": mem.pmax,
            "ProtocolCur": mem.pcur, "DelegateMin": mem.dmin, "DelegateMax": mem.dmax,
            "DelegateCur": mem.dcur}


def _wan(request: web.Request) -> bool:
    return "wan" in request.query and request.query["wan"] not in ("0", "false")


async def members(agent: "Agent", request: web.Request) -> list[dict]:
    pool = agent.pool(_wan(request))
    return [member_json(mem) for mem in sorted(pool.members(), key=lambda mem: mem.name)]


async def join(agent: "Agent", request: web.Request) -> web.Response:
    address = request.match_info["address"]
    n, errors = await agent.pool(_wan(request)).join([address])
    if not n:
        raise IsthmusError(f"1 error occurred:\n\t* Failed to join {address}: "
                           f"{'; '.join(errors) or 'no response'}\n\n")
    return web.Response(status=200)


async def force_leave(agent: "Agent", request: web.Request) -> web.Response:
    node = request.match_info["node"]
    pools = [agent.lan] + ([agent.wan] if agent.wan is not None else [])
    found = False
    for pool in pools:
        if pool is not None:
            found = pool.force_leave(node) or found
            if pool.kind == "wan" and not found:
                found = pool.force_leave(f"{node}.{agent.config.datacenter}") or found
    if not found:
        raise IsthmusError(f"agent: No node found with name '{node}'")
    return web.Response(status=200)


async def _key_query(agent: "Agent", op: str, key: bytes | None) -> list[dict]:
    out = []
    pools = [("lan", agent.lan)] + ([("wan", agent.wan)] if agent.wan is not None else [])
    for kind, pool in pools:
        if pool is None:
            continue
        if pool.keyring is None:
            raise IsthmusError("Keyring operations are not available: gossip encryption is not enabled")
        payload = codec.encode_key_request(key) if key is not None else b""
        q = await pool.query(f"_serf_{op}", payload)
        keys: dict[str, int] = {}
        primary: dict[str, int] = {}
        messages: dict[str, str] = {}
        errors = 0
        for node, raw in q.responses.items():
            try:
                resp = codec.decode_key_response(raw)
            except Exception:
                errors += 1
                continue
            if not resp["Result"]:
                errors += 1
                messages[node] = resp["Message"]
            for k in resp["Keys"]:
                keys[k] = keys.get(k, 0) + 1
            if resp["PrimaryKey"]:
                primary[resp["PrimaryKey"]] = primary.get(resp["PrimaryKey"], 0) + 1
        alive = sum(1 for mem in pool.members() if mem.status_name == "alive")
        if errors:
            detail = "".join(f"\n\t{n}: {msg}" for n, msg in sorted(messages.items()))
            raise IsthmusError(f"{errors}/{alive} nodes reported failure{detail}")
        if len(q.responses) < alive:
            raise IsthmusError(f"{alive - len(q.responses)}/{alive} nodes did not answer in time")
        out.append({"WAN": kind == "wan", "Datacenter": agent.config.datacenter, "Segment": "",
                    "Partition": "", "Keys": keys, "PrimaryKeys": primary, "NumNodes": alive,
                    "Messages": messages})
    return out


async def _key_from_body(request: web.Request) -> bytes:
    try:
        body = await request.json()
    except Exception as exc:
        raise bad_request(f"Request decode failed: {exc}") from None
    text = body.get("Key") if isinstance(body, dict) else None
    if not isinstance(text, str):
        raise bad_request("Request decode failed: missing Key")
    try:
        return decode_key(text)
    except IsthmusError as exc:
        raise bad_request(str(exc)) from None


async def keyring_list(agent: "Agent", request: web.Request) -> list[dict]:
    return await _key_query(agent, "list-keys", None)


async def keyring_install(agent: "Agent", request: web.Request) -> None:
    await _key_query(agent, "install-key", await _key_from_body(request))


async def keyring_use(agent: "Agent", request: web.Request) -> None:
    await _key_query(agent, "use-key", await _key_from_body(request))


async def keyring_remove(agent: "Agent", request: web.Request) -> None:
    await _key_query(agent, "remove-key", await _key_from_body(request))


ROUTES = {
    "/v1/agent/members": {"GET": members},
    "/v1/agent/join/{address}": {"PUT": join},
    "/v1/agent/force-leave/{node}": {"PUT": force_leave},
    "/v1/operator/keyring": {"GET": keyring_list, "POST": keyring_install, "PUT": keyring_use,
                             "DELETE": keyring_remove},
}

"""`Session.*` endpoints (Consul's agent/consul/session_endpoint.go): Apply (create/destroy),
Get, List, NodeSessions, Renew. Registering them also starts the leader's session TTL
timers and lock-delay bookkeeping (agent/sessions_ttl.py) on this server."""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..config.load import parse_go_duration
from ..sessions_ttl import driver_for
from ..state.sessions import DEFAULT_LOCK_DELAY, session_command
from .consistency import check_dc, read, write
from .kvs import BadRequest, _str
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent

SESSION_TTL_MIN = 10.0              # seconds (Consul's session_ttl_min default)
SESSION_TTL_MAX = 86400.0           # seconds (structs.SessionTTLMax: 24h)


def _go_duration(secs: float) -> str:
    """Go's Duration.String() for whole seconds (10s, 24h0m0s)."""
    s = int(secs)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def _quote(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)


def validate_create(sess: dict) -> None:
    """The checks Consul's Session.Apply makes before proposing a create (raises BadRequest
    with Consul's messages; fills the default Behavior)."""
    node = sess.get("Node")
    if not node:
        raise BadRequest("Must provide Node")
    if not isinstance(node, str):
        raise BadRequest("Node must be a string")
    behavior = sess.get("Behavior") or "release"
    if behavior not in ("release", "delete"):
        raise BadRequest(f"Invalid Behavior setting '{behavior}'")
    sess["Behavior"] = behavior
    ttl = sess.get("TTL") or ""
    if not isinstance(ttl, str):
        raise BadRequest("TTL must be a string")
    if ttl:
        try:
            secs = parse_go_duration(ttl)
        except ValueError as exc:
            raise BadRequest(f"Session TTL '{ttl}' invalid: {exc}") from None
        if secs != 0 and (secs < SESSION_TTL_MIN or secs > SESSION_TTL_MAX):
            raise BadRequest(f"Invalid Session TTL '{int(round(secs * 1e9))}', must be between "
                             f"[{_go_duration(SESSION_TTL_MIN)}={_go_duration(SESSION_TTL_MAX)}]")
    lock_delay = sess.get("LockDelay", DEFAULT_LOCK_DELAY)
    if type(lock_delay) is not int or lock_delay < 0:
        raise BadRequest("LockDelay must be a non-negative duration")
    sess["LockDelay"] = lock_delay
    for name in ("Name", "TTL"):
        if not isinstance(sess.get(name) or "", str):
            raise BadRequest(f"{name} must be a string")
    for name in ("NodeChecks", "Checks"):
        v = sess.get(name)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            raise BadRequest(f"{name} must be a list of strings")
    v = sess.get("ServiceChecks")
    if v is not None and (not isinstance(v, list) or not all(
            isinstance(x, dict) and isinstance(x.get("ID", ""), str) for x in v)):
        raise BadRequest("ServiceChecks must be a list of objects with an ID")


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store
    sessions = store.sessions
    driver = driver_for(consensus)

    async def apply(body: Any, ctx: CallContext) -> str:
        check_dc(body, datacenter)
        op = body.get("Op")
        sess = body.get("Session")
        if not isinstance(sess, dict):
            raise BadRequest("Must provide Session")
        if op == "destroy":
            if not sess.get("ID") or not isinstance(sess.get("ID"), str):
                raise BadRequest("Must provide ID")
        elif op == "create":
            validate_create(dict(sess))     # early, for followers too
        else:
            raise BadRequest(f"Invalid session operation {_quote(str(op))}")

        async def local() -> str:
            s = dict(sess)
            if op == "create":
                validate_create(s)
                while True:                 # the ID is made here, outside apply
                    s["ID"] = str(uuid.uuid4())
                    if sessions.get(s["ID"]) is None:
                        break
            _, result = await consensus.node.apply(session_command(op, s))
            if op == "create":
                driver.reset(s["ID"], s.get("TTL") or "")
                return s["ID"]
            driver.clear(s["ID"])
            return ""
        return await write(consensus, "Session.Apply", body, local)

    def _reply(found: list) -> dict:
        return {"Sessions": [s.as_api() for s in found] or None,
                "Index": store.indexes.get("sessions", 0)}

    async def get(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        sid = _str(body, "SessionID")

        def local() -> dict:
            s = sessions.get(sid)
            return _reply([s] if s else [])
        return await read(consensus, "Session.Get", body, local, ("sessions",))

    async def list_(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        return await read(consensus, "Session.List", body, lambda: _reply(sessions.list()),
                          ("sessions",))

    async def node_sessions(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        node = _str(body, "Node")
        return await read(consensus, "Session.NodeSessions", body,
                          lambda: _reply(sessions.node_sessions(node)), ("sessions",))

    async def renew(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        sid = _str(body, "SessionID")

        async def local() -> dict:
            s = sessions.get(sid)
            reply = _reply([s] if s else [])
            reply["Index"] = max(1, reply["Index"])
            if s is not None:
                driver.reset(sid, s.ttl)
            return reply
        return await write(consensus, "Session.Renew", body, local)

    registry.register("Session.Apply", apply)
    registry.register("Session.Get", get)
    registry.register("Session.List", list_)
    registry.register("Session.NodeSessions", node_sessions)
    registry.register("Session.Renew", renew)


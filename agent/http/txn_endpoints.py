"""PUT /v1/txn (Consul's agent/txn_endpoint.go): KV, Node, Service and Check operations
applied all or nothing.

Bodies are Consul's api.TxnOps (`{"KV": {...}}`, `{"Node": {"Verb", "Node": api.Node}}`,
`{"Service": {"Verb", "Node", "Service": api.AgentService}}`, `{"Check": {"Verb",
"Check": api.HealthCheck}}`), decoded case-insensitively and converted field by field as
Consul's convertOps (a node's Datacenter defaults to the agent's; a check Definition keeps
HTTP/TCP/header/method/body/TLS skip-verify and the durations). Only read verbs (KV read
verbs, "get" for the others): served by Txn.Read with ?stale/?consistent
(KnownLeader/LastContact headers, no blocking). Any write verb: Txn.Apply through Raft.
Failed operations answer 409 with the response body listing every error; limits as
Consul's: 128 operations, the body at most txn_max_req_len (512 KiB), each value at most
kv_max_value_size (512 KiB). Results are `{"KV"|"Node"|"Service"|"Check": row}` in the
shapes the KV and catalog endpoints use.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from aiohttp import web

from ..config.load import parse_go_duration
from ..gojson import GoJSONError, json_type, loads
from ..local.body import go_duration
from .body import ANY, BOOL, INT, STR, DecodeFailed, ListOf, MapOf, Struct, decode_struct
from .catalog_endpoints import check_json, node_service_json
from .errors import HTTPError, bad_request
from .kv_endpoints import MAX_VALUE_SIZE, _entry_json
from .query import datacenter, query_options

if TYPE_CHECKING:
    from ..agent import Agent

MAX_TXN_OPS = 128                   # Consul's maxTxnOps
MAX_TXN_LEN = 512 * 1024            # Consul's limits.txn_max_req_len default
_TXN_LEN_DOC = "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len"
WRITE_VERBS = ("set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock")
_KV_FIELDS = {"verb": ("Verb", str), "key": ("Key", str), "value": ("Value", None),
              "flags": ("Flags", int), "index": ("Index", int), "session": ("Session", str),
              "namespace": ("Namespace", str), "partition": ("Partition", str)}
_GO = {str: "string", int: "uint64"}
_KINDS = ("KV", "Node", "Service", "Check")     # Go's switch order in convertOps

# Consul's api types, as much of them as convertOps reads
API_NODE = Struct("api.Node", {
    "ID": STR, "Node": STR, "Address": STR, "Datacenter": STR, "TaggedAddresses": MapOf(STR),
    "Meta": MapOf(STR), "CreateIndex": INT, "ModifyIndex": INT})
NODE_OP = Struct("api.NodeTxnOp", {"Verb": STR, "Node": API_NODE})
AGENT_SERVICE = Struct("api.AgentService", {
    "Kind": STR, "ID": STR, "Service": STR, "Tags": ListOf(STR), "Meta": MapOf(STR),
    "Port": INT, "Address": STR, "Weights": Struct("api.AgentWeights",
                                                   {"Passing": INT, "Warning": INT}),
    "EnableTagOverride": BOOL, "CreateIndex": INT, "ModifyIndex": INT, "Namespace": STR})
SERVICE_OP = Struct("api.ServiceTxnOp", {"Verb": STR, "Node": STR, "Service": AGENT_SERVICE})
CHECK_DEFINITION = Struct("api.HealthCheckDefinition", {
    "HTTP": STR, "Header": MapOf(ListOf(STR)), "Method": STR, "Body": STR,
    "TLSSkipVerify": BOOL, "TCP": STR, "IntervalDuration": INT, "TimeoutDuration": INT,
    "DeregisterCriticalServiceAfterDuration": INT, "Interval": ANY, "Timeout": ANY,
    "DeregisterCriticalServiceAfter": ANY})
API_CHECK = Struct("api.HealthCheck", {
    "Node": STR, "CheckID": STR, "Name": STR, "Status": STR, "Notes": STR, "Output": STR,
    "ServiceID": STR, "ServiceName": STR, "ServiceTags": ListOf(STR),
    "Definition": CHECK_DEFINITION, "CreateIndex": INT, "ModifyIndex": INT, "Namespace": STR})
CHECK_OP = Struct("api.CheckTxnOp", {"Verb": STR, "Check": API_CHECK})


def _kv_op(raw: dict) -> dict:
    out: dict = {}
    for k, v in raw.items():
        field = _KV_FIELDS.get(k.lower())
        if field is None or v is None:
            continue
        name, typ = field
        if name == "Value":
            if not isinstance(v, str):
                raise bad_request(f"Failed to parse body: unexpected value type: {json_type(v)}")
            try:
                out["Value"] = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise bad_request(f"Failed to parse body: failed to decode value: {exc}") from None
            continue
        if typ is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(v)} "
                              f"into Go struct field KVTxnOp.KV.{name} of type uint64")
        if typ is str and not isinstance(v, str):
            raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(v)} "
                              f"into Go struct field KVTxnOp.KV.{name} of type string")
        out[name] = v
    out.pop("Namespace", None)
    out.pop("Partition", None)
    return out


def _decode(raw: dict, spec: Struct) -> dict:
    try:
        return decode_struct(json.dumps(raw).encode(), spec)
    except DecodeFailed as exc:
        raise bad_request(f"Failed to parse body: {exc}") from None


def _modify_index(row: dict, where: str) -> int:
    v = row.get("ModifyIndex") or 0
    if v < 0:
        raise bad_request(f"Failed to parse body: json: cannot unmarshal number {v} into Go "
                          f"struct field {where}.ModifyIndex of type uint64")
    return v


def _readable_duration(v, name: str) -> int:
    """api.ReadableDuration from JSON: a Go duration string, or a number of nanoseconds."""
    if isinstance(v, str):
        try:
            return int(round(parse_go_duration(v) * 1e9))
        except ValueError as exc:
            raise bad_request(f"Failed to parse body: {exc}") from None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return int(v)
    raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(v)} into Go "
                      f"struct field HealthCheckDefinition.Check.Definition.{name} of type "
                      "api.ReadableDuration")


def _node_op(raw: dict, agent: "Agent") -> dict:
    op = _decode(raw, NODE_OP)
    node = op.get("Node") or {}
    return {"Verb": op.get("Verb", ""), "Node": {
        "ID": node.get("ID", ""), "Node": node.get("Node", ""),
        "Address": node.get("Address", ""),
        "Datacenter": node.get("Datacenter") or agent.config.datacenter,
        "TaggedAddresses": node.get("TaggedAddresses"), "Meta": node.get("Meta"),
        "ModifyIndex": _modify_index(node, "NodeTxnOp.Node")}}


def _service_op(raw: dict) -> dict:
    op = _decode(raw, SERVICE_OP)
    svc = op.get("Service") or {}
    out = {"ID": svc.get("ID", ""), "Service": svc.get("Service", ""), "Tags": svc.get("Tags"),
           "Address": svc.get("Address", ""), "Meta": svc.get("Meta"),
           "Port": svc.get("Port", 0), "EnableTagOverride": svc.get("EnableTagOverride", False),
           "ModifyIndex": _modify_index(svc, "ServiceTxnOp.Service")}
    if svc.get("Weights") is not None:
        w = svc["Weights"]
        out["Weights"] = {"Passing": w.get("Passing", 0), "Warning": w.get("Warning", 0)}
    return {"Verb": op.get("Verb", ""), "Node": op.get("Node", ""), "Service": out}


def _check_op(raw: dict) -> dict:
    op = _decode(raw, CHECK_OP)
    chk = op.get("Check") or {}
    d = chk.get("Definition") or {}
    definition = {k: d[k] for k in ("HTTP", "TLSSkipVerify", "Header", "Method", "Body", "TCP")
                  if d.get(k)}
    for name in ("Interval", "Timeout", "DeregisterCriticalServiceAfter"):
        # the readable field wins over the *Duration one (Consul issue 5477)
        ns = _readable_duration(d[name], name) if d.get(name) is not None else 0
        ns = ns or d.get(name + "Duration") or 0
        if ns:
            definition[name] = go_duration(ns / 1e9)
    return {"Verb": op.get("Verb", ""), "Check": {
        "Node": chk.get("Node", ""), "CheckID": chk.get("CheckID", ""),
        "Name": chk.get("Name", ""), "Status": chk.get("Status", ""),
        "Notes": chk.get("Notes", ""), "Output": chk.get("Output", ""),
        "ServiceID": chk.get("ServiceID", ""), "ServiceName": chk.get("ServiceName", ""),
        "ServiceTags": chk.get("ServiceTags"), "Definition": definition,
        "ModifyIndex": _modify_index(chk, "CheckTxnOp.Check")}}


async def _ops(request: web.Request, agent: "Agent") -> tuple[list, int]:
    size = request.content_length
    if size is not None and size > MAX_TXN_LEN:
        raise HTTPError(413, f"Request body({size} bytes) too large, max size: {MAX_TXN_LEN} "
                             f"bytes. See {_TXN_LEN_DOC}.")
    raw = await request.content.read(MAX_TXN_LEN + 1)
    if len(raw) > MAX_TXN_LEN:
        raise HTTPError(413, f"Request body too large, max size: {MAX_TXN_LEN} bytes. "
                             f"See {_TXN_LEN_DOC}.")
    try:
        body = loads(raw)                   # Go's wording; an empty body is "EOF"
    except GoJSONError as exc:
        raise bad_request(f"Failed to parse body: {exc}") from None
    if body is None:
        body = []
    if not isinstance(body, list):
        raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(body)} "
                          "into Go value of type api.TxnOps")
    if len(body) > MAX_TXN_OPS:
        raise HTTPError(413, f"Transaction contains too many operations ({len(body)} > {MAX_TXN_OPS})")
    ops, writes = [], 0
    for item in body:
        if not isinstance(item, dict):
            raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(item)} "
                              "into Go value of type api.TxnOp")
        op: dict = {}
        for k, v in item.items():
            kind = {"kv": "KV", "node": "Node", "service": "Service", "check": "Check"}.get(k.lower())
            if kind is None or v is None:
                continue
            if not isinstance(v, dict):
                raise bad_request(f"Failed to parse body: json: cannot unmarshal {json_type(v)} "
                                  f"into Go struct field TxnOp.{kind} of type api.{kind}TxnOp")
            op[kind] = v
        if not op:
            continue                        # an empty operation: Consul skips it too
        kind = next(k for k in _KINDS if k in op)   # one kind per entry, as Go's switch
        if kind == "KV":
            kv = _kv_op(op["KV"])
            value = kv.get("Value") or b""
            if len(value) > MAX_VALUE_SIZE:
                raise HTTPError(413, f"Value for key {json.dumps(kv.get('Key', ''))} is too large "
                                     f"({len(value)} > {MAX_VALUE_SIZE} bytes)")
            if kv.get("Verb") in WRITE_VERBS:
                writes += 1
            ops.append({"KV": kv})
            continue
        if kind == "Node":
            body = _node_op(op["Node"], agent)
        elif kind == "Service":
            body = _service_op(op["Service"])
        else:
            body = _check_op(op["Check"])
        if body["Verb"] != "get":
            writes += 1
        ops.append({kind: body})
    return ops, writes


_RESULT_JSON = {"KV": _entry_json, "Service": node_service_json, "Check": check_json}


def _result_json(r: dict) -> dict:
    return {k: _RESULT_JSON.get(k, lambda v: v)(v) for k, v in r.items()}


async def txn(agent: "Agent", request: web.Request) -> web.Response:
    from .server import encode
    ops, writes = await _ops(request, agent)
    headers: dict = {}
    if writes == 0:
        body = query_options(agent, request)
        body["Ops"] = ops
        reply = await agent.rpc("Txn.Read", body)
        headers = {"X-Consul-KnownLeader": "true" if reply.get("KnownLeader") else "false",
                   "X-Consul-LastContact": str(reply.get("LastContact", 0))}
    else:
        reply = await agent.rpc("Txn.Apply", {"Datacenter": datacenter(agent, request),
                                              "Ops": ops})
    results = reply.get("Results")
    out = {"Results": [_result_json(r) for r in results] if results else None,
           "Errors": reply.get("Errors") or None}
    status = 409 if out["Errors"] else 200
    return web.Response(status=status, body=encode(out, "pretty" in request.query),
                        content_type="application/json", headers=headers)


ROUTES = {
    "/v1/txn": {"PUT": txn},
}

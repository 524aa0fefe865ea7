"""PUT /v1/txn (Consul's agent/txn_endpoint.go): KV operations applied all or nothing.

Only read verbs: served by Txn.Read with ?stale/?consistent (KnownLeader/LastContact
headers, no blocking). Any write verb: Txn.Apply through Raft. Failed operations answer
409 with the response body listing every error; limits as Consul's: 128 operations, the
body at most txn_max_req_len (512 KiB), each value at most kv_max_value_size (512 KiB).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING

from aiohttp import web

from ..gojson import json_type
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


async def _ops(request: web.Request) -> tuple[list, int]:
    size = request.content_length
    if size is not None and size > MAX_TXN_LEN:
        raise HTTPError(413, f"Request body({size} bytes) too large, max size: {MAX_TXN_LEN} "
                             f"bytes. See {_TXN_LEN_DOC}.")
    raw = await request.content.read(MAX_TXN_LEN + 1)
    if len(raw) > MAX_TXN_LEN:
        raise HTTPError(413, f"Request body too large, max size: {MAX_TXN_LEN} bytes. "
                             f"See {_TXN_LEN_DOC}.")
    try:
        body = json.loads(raw) if raw.strip() else None
    except ValueError as exc:
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
                                  f"into Go struct field TxnOp.{kind}")
            op[kind] = _kv_op(v) if kind == "KV" else v
        if not op:
            continue                        # an empty operation: Consul skips it too
        if "KV" in op:
            kv = op["KV"]
            value = kv.get("Value") or b""
            if len(value) > MAX_VALUE_SIZE:
                raise HTTPError(413, f"Value for key {json.dumps(kv.get('Key', ''))} is too large "
                                     f"({len(value)} > {MAX_VALUE_SIZE} bytes)")
            if kv.get("Verb") in WRITE_VERBS:
                writes += 1
            op = {"KV": kv}                 # one operation kind per entry, as Go's switch
        else:
            writes += 1                     # Node/Service/Check: treated as writes
            kind = next(iter(op))
            op = {kind: op[kind]}
        ops.append(op)
    return ops, writes


def _result_json(r: dict) -> dict:
    return {k: (_entry_json(v) if k == "KV" else v) for k, v in r.items()}


async def txn(agent: "Agent", request: web.Request) -> web.Response:
    from .server import encode
    ops, writes = await _ops(request)
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

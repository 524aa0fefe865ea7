"""Bad input on every write path of the HTTP API, on one real -dev agent: empty bodies,
non-JSON, JSON of the wrong shape, a wrong JSON type in every top-level field, values over
Consul's limits (kv_max_value_size, txn_max_req_len, 128 txn operations, Serf's user event
size, service meta), bad query flags — each answered with Consul's status and message,
nothing written (the agent's state read back before and after is the same), and the agent
still serving afterwards."""
from __future__ import annotations

import base64
import json

import pytest

from .procs import AgentProc

pytestmark = pytest.mark.integration

KIB = 1024
UNKNOWN_SESSION = "6d7fc3a4-1111-2222-3333-444455556666"
EXACT, PREFIX = "=", "^"


def _wrong(gotype: str):
    """A JSON value of the wrong type for a field of `gotype`, and its JSON type name."""
    return (7, "number") if gotype == "string" else ("x", "string")


def _field_cases(label, method, path, struct, fields, prefix="Request decode failed: "):
    out = []
    for name, gotype in fields.items():
        value, jtype = _wrong(gotype)
        out.append(pytest.param(
            method, path, json.dumps({name: value}).encode(), 400, PREFIX,
            f"{prefix}json: cannot unmarshal {jtype} into Go struct field {struct}.{name} of type ",
            id=f"{label}-{name}-wrong-type"))
    return out


def _shape_cases(label, method, path, gotype, empty=(400, "Request decode failed: EOF"),
                 prefix="Request decode failed: ", **override):
    """Empty, non-JSON, truncated, trailing garbage, a huge non-JSON body, and JSON values
    that are not objects; `override` replaces a case by name with (status, kind, message)."""
    cases = [
        ("empty", b"", empty[0], EXACT, empty[1]),
        ("not-json", b"x", 400, EXACT,
         f"{prefix}invalid character 'x' looking for beginning of value"),
        ("bad-literal", b"tru3", 400, EXACT,
         f"{prefix}invalid character '3' in literal true (expecting 'e')"),
        ("truncated", b'{"a": ', 400, EXACT, f"{prefix}unexpected EOF"),
        ("trailing", b"{} x", 400, EXACT, f"{prefix}invalid character 'x' after top-level value"),
        ("huge-junk", b"x" * (2 * KIB * KIB), 400, EXACT,
         f"{prefix}invalid character 'x' looking for beginning of value"),
        ("array", b"[true]", 400, EXACT,
         f"{prefix}json: cannot unmarshal array into Go value of type {gotype}"),
        ("string", b'"s"', 400, EXACT,
         f"{prefix}json: cannot unmarshal string into Go value of type {gotype}"),
        ("number", b"12", 400, EXACT,
         f"{prefix}json: cannot unmarshal number into Go value of type {gotype}"),
    ]
    return [pytest.param(method, path, body,
                         *override.get(name.replace("-", "_"), (st, kind, msg)),
                         id=f"{label}-{name}")
            for name, body, st, kind, msg in cases]


def _txn(*ops) -> bytes:
    return json.dumps(list(ops)).encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


REGISTER = {"Datacenter": "string", "ID": "string", "Node": "string", "Address": "string",
            "TaggedAddresses": "map", "NodeMeta": "map", "Service": "struct",
            "Check": "struct", "Checks": "list", "SkipNodeUpdate": "bool"}
DEREGISTER = {"Datacenter": "string", "Node": "string", "ServiceID": "string",
              "CheckID": "string"}
SERVICE_DEF = {"Kind": "string", "ID": "string", "Name": "string", "Tags": "list",
               "Address": "string", "TaggedAddresses": "map", "Meta": "map", "Port": "int",
               "SocketPath": "string", "Check": "struct", "Checks": "list",
               "Weights": "struct", "EnableTagOverride": "bool", "Token": "string",
               "Proxy": "struct", "Connect": "struct"}
CHECK_DEF = {"ID": "string", "Name": "string", "Notes": "string", "ServiceID": "string",
             "Status": "string", "ScriptArgs": "list", "HTTP": "string", "Header": "map",
             "Method": "string", "Body": "string", "TCP": "string", "TLSSkipVerify": "bool",
             "Token": "string"}
SESSION = {"Name": "string", "Node": "string", "Checks": "list", "NodeChecks": "list",
           "ServiceChecks": "list", "Behavior": "string", "TTL": "string"}
COORD_UPDATE = {"Datacenter": "string", "Node": "string", "Segment": "string",
                "Coord": "struct"}
AREA = {"ID": "string", "PeerDatacenter": "string", "RetryJoin": "list", "UseTLS": "bool"}

CASES = [
    # ------------------------------------------------------------------ KV
    pytest.param("PUT", "/v1/kv/bad/big", b"v" * (512 * KIB + 1), 413, PREFIX,
                 "Request body(524289 bytes) too large, max size: 524288 bytes. See ",
                 id="kv-value-over-kv_max_value_size"),
    pytest.param("PUT", "/v1/kv/bad/f?flags=abc", b"v", 500, EXACT,
                 'strconv.ParseUint: parsing "abc": invalid syntax', id="kv-flags-not-a-number"),
    pytest.param("PUT", "/v1/kv/bad/f?flags=", b"v", 500, EXACT,
                 'strconv.ParseUint: parsing "": invalid syntax', id="kv-flags-empty"),
    pytest.param("PUT", "/v1/kv/bad/f?flags=-1", b"v", 500, EXACT,
                 'strconv.ParseUint: parsing "-1": invalid syntax', id="kv-flags-negative"),
    pytest.param("PUT", "/v1/kv/bad/f?flags=18446744073709551616", b"v", 500, EXACT,
                 'strconv.ParseUint: parsing "18446744073709551616": value out of range',
                 id="kv-flags-overflow"),
    pytest.param("PUT", "/v1/kv/bad/f?cas=x", b"v", 500, EXACT,
                 'strconv.ParseUint: parsing "x": invalid syntax', id="kv-cas-not-a-number"),
    pytest.param("PUT", "/v1/kv/seed?cas=0&acquire=abc", b"v", 400, EXACT,
                 "Conflicting flags: acquire=abc&cas=0", id="kv-cas-with-acquire"),
    pytest.param("PUT", "/v1/kv/seed?release=b&acquire=a", b"v", 400, EXACT,
                 "Conflicting flags: acquire=a&release=b", id="kv-acquire-with-release"),
    pytest.param("PUT", "/v1/kv/", b"v", 400, EXACT, "Missing key name", id="kv-missing-key"),
    pytest.param("PUT", "/v1/kv/bad/l?acquire=" + UNKNOWN_SESSION, b"v",
                 500, PREFIX, "invalid session", id="kv-acquire-unknown-session"),
    pytest.param("DELETE", "/v1/kv/seed?recurse&cas=1", None, 400, EXACT,
                 "Conflicting flags: cas=1&recurse=", id="kv-delete-recurse-with-cas"),
    pytest.param("DELETE", "/v1/kv/?cas=1", None, 400, EXACT, "Missing key name",
                 id="kv-delete-missing-key"),
    pytest.param("DELETE", "/v1/kv/seed?cas=x", None, 500, EXACT,
                 'strconv.ParseUint: parsing "x": invalid syntax', id="kv-delete-cas-bad"),
    # ------------------------------------------------------------------ txn
    *_shape_cases("txn", "PUT", "/v1/txn", "api.TxnOps",
                  empty=(400, "Failed to parse body: EOF"), prefix="Failed to parse body: ",
                  huge_junk=(413, EXACT, "Request body(2097152 bytes) too large, max size: "
                             "524288 bytes. See https://www.consul.io/docs/agent/config/"
                             "config-files#txn_max_req_len."),
                  array=(400, EXACT, "Failed to parse body: json: cannot unmarshal bool into "
                         "Go value of type api.TxnOp")),
    pytest.param("PUT", "/v1/txn", b"{}", 400, EXACT,
                 "Failed to parse body: json: cannot unmarshal object into Go value of type "
                 "api.TxnOps", id="txn-object"),
    pytest.param("PUT", "/v1/txn", b"[1]", 400, EXACT,
                 "Failed to parse body: json: cannot unmarshal number into Go value of type "
                 "api.TxnOp", id="txn-op-not-an-object"),
    *[pytest.param("PUT", "/v1/txn", _txn({kind: "x"}), 400, EXACT,
                   "Failed to parse body: json: cannot unmarshal string into Go struct field "
                   f"TxnOp.{kind} of type api.{kind}TxnOp", id=f"txn-{kind}-not-an-object")
      for kind in ("KV", "Node", "Service", "Check")],
    *[pytest.param("PUT", "/v1/txn", _txn({"KV": {"Verb": "set", "Key": "k", name: value}}),
                   400, EXACT, "Failed to parse body: json: cannot unmarshal "
                   f"{jtype} into Go struct field KVTxnOp.KV.{name} of type {gotype}",
                   id=f"txn-kv-{name}-wrong-type")
      for name, value, jtype, gotype in (("Key", 1, "number", "string"),
                                         ("Flags", "x", "string", "uint64"),
                                         ("Index", "x", "string", "uint64"),
                                         ("Session", 1, "number", "string"))],
    pytest.param("PUT", "/v1/txn", _txn({"KV": {"Verb": "bogus", "Key": "k"}}), 409, EXACT,
                 '{"Results":null,"Errors":[{"OpIndex":0,"What":"unknown KV verb \\"bogus\\""}]}',
                 id="txn-kv-unknown-verb"),
    pytest.param("PUT", "/v1/txn", _txn({"KV": {"Verb": "lock", "Key": "bad/l",
                                                "Session": UNKNOWN_SESSION}}),
                 409, PREFIX, '{"Results":null,"Errors":[{"OpIndex":0,"What":"invalid session',
                 id="txn-kv-lock-unknown-session"),
    pytest.param("PUT", "/v1/txn", _txn({"KV": {"Verb": 1, "Key": "k"}}), 400, PREFIX,
                 "Failed to parse body: json: cannot unmarshal number into Go struct field ",
                 id="txn-kv-verb-wrong-type"),
    pytest.param("PUT", "/v1/txn", _txn({"KV": {"Verb": "set", "Key": "k", "Value": "!!"}}),
                 400, PREFIX, "Failed to parse body: ", id="txn-kv-value-not-base64"),
    pytest.param("PUT", "/v1/txn", _txn(*[{"KV": {"Verb": "set", "Key": f"bad/{i}"}}
                                          for i in range(129)]),
                 413, EXACT, "Transaction contains too many operations (129 > 128)",
                 id="txn-129-operations"),
    pytest.param("PUT", "/v1/txn",
                 _txn({"KV": {"Verb": "set", "Key": "bad/t", "Value": _b64(b"v" * 600 * KIB)}}),
                 413, PREFIX, "Request body(", id="txn-over-txn_max_req_len"),
    pytest.param("PUT", "/v1/txn",
                 _txn({"KV": {"Verb": "set", "Key": "bad/first", "Value": _b64(b"1")}},
                      {"KV": {"Verb": "cas", "Key": "seed", "Index": 999999,
                              "Value": _b64(b"2")}}),
                 409, PREFIX, '{"Results":null,"Errors":[', id="txn-second-op-fails-none-applied"),
    # ------------------------------------------------------------------ catalog
    *_shape_cases("register", "PUT", "/v1/catalog/register", "structs.RegisterRequest"),
    *_field_cases("register", "PUT", "/v1/catalog/register", "RegisterRequest", REGISTER),
    pytest.param("PUT", "/v1/catalog/register",
                 b'{"Node": "bad", "Address": "a", "Service": {"Service": "s", "Port": "x"}}',
                 400, PREFIX, "Request decode failed: json: cannot unmarshal string into Go "
                 "struct field RegisterRequest.Service.Port of type ", id="register-nested-type"),
    pytest.param("PUT", "/v1/catalog/register", b"{}", 500, EXACT, "Must provide node",
                 id="register-no-node"),
    pytest.param("PUT", "/v1/catalog/register", b'{"Node": "bad"}', 500, EXACT,
                 "Must provide address if SkipNodeUpdate is not set", id="register-no-address"),
    *_shape_cases("deregister", "PUT", "/v1/catalog/deregister", "structs.DeregisterRequest"),
    *_field_cases("deregister", "PUT", "/v1/catalog/deregister", "DeregisterRequest",
                  DEREGISTER),
    pytest.param("PUT", "/v1/catalog/deregister", b"{}", 500, EXACT, "Must provide node",
                 id="deregister-no-node"),
    # ------------------------------------------------------------------ agent services/checks
    *_shape_cases("service", "PUT", "/v1/agent/service/register", "structs.ServiceDefinition"),
    *_field_cases("service", "PUT", "/v1/agent/service/register", "ServiceDefinition",
                  SERVICE_DEF),
    pytest.param("PUT", "/v1/agent/service/register", b"{}", 400, EXACT,
                 "Missing service name", id="service-no-name"),
    pytest.param("PUT", "/v1/agent/service/register",
                 json.dumps({"Name": "bad", "Meta": {"k": "v" * 513}}).encode(), 400, EXACT,
                 "Invalid Service Meta: Value is too long (limit: 512 characters)",
                 id="service-meta-value-over-512"),
    pytest.param("PUT", "/v1/agent/service/register",
                 json.dumps({"Name": "bad", "Check": {"TTL": "x"}}).encode(), 400, EXACT,
                 'Request decode failed: time: invalid duration "x"', id="service-check-bad-ttl"),
    *_shape_cases("check", "PUT", "/v1/agent/check/register", "structs.CheckDefinition"),
    *_field_cases("check", "PUT", "/v1/agent/check/register", "CheckDefinition", CHECK_DEF),
    pytest.param("PUT", "/v1/agent/check/register", b'{"TTL": "x"}', 400, EXACT,
                 'Request decode failed: time: invalid duration "x"', id="check-ttl-not-duration"),
    pytest.param("PUT", "/v1/agent/check/register", b"{}", 400, EXACT, "Missing check name",
                 id="check-no-name"),
    pytest.param("PUT", "/v1/agent/check/register", b'{"Name": "bad"}', 400, EXACT,
                 "Must provide TTL or ScriptArgs/DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/"
                 "OSService and Interval", id="check-no-kind"),
    # ------------------------------------------------------------------ sessions
    *[p for p in _shape_cases("session", "PUT", "/v1/session/create", "structs.Session")
      if p.id != "session-empty"],              # an empty body creates a default session
    *_field_cases("session", "PUT", "/v1/session/create", "Session", SESSION),
    pytest.param("PUT", "/v1/session/create", b'{"LockDelay": true}', 400, EXACT,
                 "Request decode failed: json: cannot unmarshal bool into Go struct field "
                 "Session.LockDelay of type time.Duration", id="session-lockdelay-bool"),
    pytest.param("PUT", "/v1/session/create", b'{"Behavior": "x"}', 500, EXACT,
                 "Invalid Behavior setting 'x'", id="session-bad-behavior"),
    pytest.param("PUT", "/v1/session/create", b'{"TTL": "x"}', 500, PREFIX,
                 "Session TTL 'x' invalid", id="session-bad-ttl"),
    pytest.param("PUT", "/v1/session/create", b'{"Node": "nope"}', 500, EXACT,
                 "Missing node registration", id="session-unknown-node"),
    pytest.param("PUT", "/v1/session/renew/" + UNKNOWN_SESSION, None, 404,
                 EXACT, f"Session id '{UNKNOWN_SESSION}' not found",
                 id="session-renew-unknown"),
    pytest.param("PUT", "/v1/session/renew/", None, 400, EXACT, "Missing session",
                 id="session-renew-missing-id"),
    # ------------------------------------------------------------------ events
    pytest.param("PUT", "/v1/event/fire/big", b"p" * 600, 500, EXACT,
                 "user event exceeds configured limit of 512 bytes before encoding",
                 id="event-over-serf-limit"),
    pytest.param("PUT", "/v1/event/fire/huge", b"p" * (1024 * KIB), 500, EXACT,
                 "user event exceeds configured limit of 512 bytes before encoding",
                 id="event-huge"),
    pytest.param("PUT", "/v1/event/fire/", b"", 400, EXACT, "Missing name",
                 id="event-missing-name"),
    # ------------------------------------------------------------------ coordinates
    *_shape_cases("coordinate", "PUT", "/v1/coordinate/update",
                  "structs.CoordinateUpdateRequest"),
    *_field_cases("coordinate", "PUT", "/v1/coordinate/update", "CoordinateUpdateRequest",
                  COORD_UPDATE),
    # ------------------------------------------------------------------ network areas
    *_shape_cases("area", "POST", "/v1/operator/area", "api.Area"),
    *_field_cases("area", "POST", "/v1/operator/area", "Area", AREA),
    pytest.param("POST", "/v1/operator/area", b"{}", 500, EXACT,
                 "Must provide a PeerDatacenter", id="area-no-peer"),
    *_shape_cases("area-update", "PUT", "/v1/operator/area/{area}", "api.Area"),
    *_field_cases("area-update", "PUT", "/v1/operator/area/{area}", "Area", AREA),
    pytest.param("PUT", "/v1/operator/area/{area}/join", b"[1]", 400, EXACT,
                 "Request decode failed: json: cannot unmarshal number into Go value of type "
                 "string", id="area-join-number"),
    pytest.param("PUT", "/v1/operator/area/{area}/join", b'{"a": 1}', 400, EXACT,
                 "Request decode failed: json: cannot unmarshal object into Go value of type "
                 "[]string", id="area-join-object"),
    pytest.param("PUT", "/v1/operator/area/{area}/join", b"", 400, EXACT,
                 "Request decode failed: EOF", id="area-join-empty"),
]


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "dev1")
    a.wait_ready()
    status, body, _ = a.get("/v1/kv/seed", "PUT", b"seed-value")
    assert (status, body) == (200, "true")
    status, body, _ = a.get("/v1/operator/area", "POST",
                            json.dumps({"PeerDatacenter": "dc9"}).encode())
    assert status == 200, body
    a.area = json.loads(body)["ID"]
    yield a
    a.kill()


def snapshot(a: AgentProc) -> dict:
    """What a write could have changed, read back: KV (values, flags, indexes, and the KV
    table's X-Consul-Index), nodes, services, agent services and checks, sessions, areas
    and their settings, user events."""
    status, body, headers = a.get("/v1/kv/?recurse")
    kv = json.loads(body) if status == 200 else []
    return {
        "kv": sorted((e["Key"], e["Value"], e["Flags"], e["ModifyIndex"]) for e in kv),
        "kv_index": headers.get("X-Consul-Index"),
        "nodes": sorted(n["Node"] for n in a.get_json("/v1/catalog/nodes")),
        "services": a.get_json("/v1/catalog/services"),
        "agent_services": sorted(a.get_json("/v1/agent/services")),
        "agent_checks": sorted(a.get_json("/v1/agent/checks")),
        "sessions": sorted(s["ID"] for s in a.get_json("/v1/session/list")),
        "areas": a.get_json("/v1/operator/area"),
        "events": sorted(e["ID"] for e in a.get_json("/v1/event/list")),
    }


@pytest.mark.parametrize("method,path,body,status,kind,message", CASES)
def test_bad_input(dev, method, path, body, status, kind, message):
    path = path.replace("{area}", dev.area)
    before = snapshot(dev)
    got_status, got_body, _ = dev.get(path, method, body)
    if kind == EXACT:
        assert (got_status, got_body) == (status, message)
    else:
        assert got_status == status and got_body.startswith(message), (got_status, got_body)
    assert snapshot(dev) == before                    # nothing written, nothing half applied
    assert dev.get("/v1/agent/self")[0] == 200        # and the agent keeps serving
    assert dev.get("/v1/status/leader")[1] != '""'


def test_limits_are_inclusive(dev):
    """The largest values Consul accepts still go through."""
    assert dev.get("/v1/kv/edge/max", "PUT", b"v" * (512 * KIB))[:2] == (200, "true")
    ops = [{"KV": {"Verb": "set", "Key": f"edge/{i}", "Value": _b64(b"x")}} for i in range(128)]
    status, body, _ = dev.get("/v1/txn", "PUT", json.dumps(ops).encode())
    assert status == 200, body
    assert len(json.loads(body)["Results"]) == 128
    status, body, _ = dev.get("/v1/agent/service/register", "PUT",
                              json.dumps({"Name": "edge", "Meta": {"k": "v" * 512}}).encode())
    assert status == 200, body
    assert dev.get("/v1/kv/edge?recurse", "DELETE")[:2] == (200, "true")
    assert dev.get("/v1/agent/service/deregister/edge", "PUT")[0] == 200

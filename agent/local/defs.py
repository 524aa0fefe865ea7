"""Service and check definitions as Consul's HTTP API and config files give them
(structs.ServiceDefinition, structs.CheckDefinition / CheckType), turned into the
NodeService / HealthCheck records local state keeps plus each check's runner settings.

Problems raise `Invalid(message)`: the endpoints answer 400 with the message.
"""
from __future__ import annotations

import ipaddress
import re

from ..errors import IsthmusError
from .body import Fields, go_duration
from .state import CRITICAL, STATUSES

INVALID_CHECK = ("Must provide TTL or ScriptArgs/DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/"
                 "OSService and Interval")
UNSUPPORTED_TYPES = ("DockerContainerID", "GRPC", "AliasNode", "AliasService", "H2PING", "UDP",
                     "OSService")
_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
META_MAX_PAIRS, META_MAX_KEY, META_MAX_VALUE = 64, 128, 512


class Invalid(IsthmusError):
    """A definition Consul would answer 400 for."""


def _is_any(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr.strip("[]")).is_unspecified
    except ValueError:
        return False


def validate_meta(meta: dict[str, str]) -> None:
    """Consul's structs.ValidateServiceMetadata."""
    if len(meta) > META_MAX_PAIRS:
        raise Invalid(f"Invalid Service Meta: Node metadata cannot contain more than "
                      f"{META_MAX_PAIRS} key/value pairs")
    for k, v in meta.items():
        if k == "":
            raise Invalid("Invalid Service Meta: Key cannot be blank")
        if not _META_KEY.match(k):
            raise Invalid("Invalid Service Meta: Key contains invalid characters")
        if len(k) > META_MAX_KEY:
            raise Invalid(f"Invalid Service Meta: Key is too long (limit: {META_MAX_KEY} "
                          "characters)")
        if k.startswith("consul-"):
            raise Invalid("Invalid Service Meta: Key prefix 'consul-' is reserved for "
                          "internal use")
        if len(v) > META_MAX_VALUE:
            raise Invalid(f"Invalid Service Meta: Value is too long (limit: {META_MAX_VALUE} "
                          "characters)")


def parse_check_type(f: Fields) -> dict:
    """A CheckType's runner settings (durations in seconds); Invalid if not runnable."""
    for t in UNSUPPORTED_TYPES:
        if f.has(t):
            raise Invalid(f"{t} checks are not supported by Isthmus yet")
    if f.has("Script"):
        raise Invalid("Script checks with a 'Script' string are not supported (Consul "
                      "removed them); use 'Args'")
    ct = {
        "TTL": f.duration("TTL"),
        "HTTP": f.str("HTTP"),
        "Method": f.str("Method"),
        "Header": f.header("Header"),
        "Body": f.str("Body"),
        "TLSSkipVerify": f.bool("TLSSkipVerify"),
        "TCP": f.str("TCP"),
        "Args": f.strlist("Args", "ScriptArgs"),
        "Interval": f.duration("Interval"),
        "Timeout": f.duration("Timeout"),
        "DeregisterCriticalServiceAfter": f.duration("DeregisterCriticalServiceAfter"),
    }
    if ct["Timeout"] < 0 or ct["Interval"] < 0 or ct["TTL"] < 0:
        raise Invalid("Check is not valid: durations must not be negative")
    runnable = ct["TTL"] > 0 or (ct["Interval"] > 0 and (ct["HTTP"] or ct["TCP"] or ct["Args"]))
    if not runnable:
        raise Invalid(INVALID_CHECK)
    return {k: v for k, v in ct.items() if v not in ("", [], {}, False, 0.0)}


def check_kind(ct: dict) -> str:
    for key, kind in (("TTL", "ttl"), ("HTTP", "http"), ("TCP", "tcp"), ("Args", "script")):
        if ct.get(key):
            return kind
    return ""


def health_check(check_id: str, name: str, notes: str, status: str, service_id: str,
                 ct: dict, node: str = "") -> dict:
    """The HealthCheck record of a check definition (Consul's CheckDefinition.HealthCheck)."""
    definition = {}
    for key in ("HTTP", "TLSSkipVerify", "Header", "Method", "Body", "TCP"):
        if ct.get(key):
            definition[key] = ct[key]
    if ct.get("Args"):
        definition["ScriptArgs"] = ct["Args"]
    for key in ("Interval", "Timeout", "DeregisterCriticalServiceAfter"):
        if ct.get(key):
            definition[key] = go_duration(ct[key])
    return {"Node": node, "CheckID": check_id, "Name": name, "Status": status or CRITICAL,
            "Notes": notes, "Output": "", "ServiceID": service_id, "ServiceName": "",
            "ServiceTags": [], "Type": check_kind(ct),
            "Interval": go_duration(ct["Interval"]) if ct.get("Interval") else "",
            "Timeout": go_duration(ct["Timeout"]) if ct.get("Timeout") else "",
            "ExposedPort": 0, "Definition": definition}


def _status(f: Fields, message: str) -> str:
    status = f.str("Status")
    if status and status not in STATUSES:
        raise Invalid(message)
    return status


def parse_check(f: Fields) -> tuple[dict, dict]:
    """PUT /v1/agent/check/register body → (HealthCheck, CheckType)."""
    name = f.str("Name")
    if not name:
        raise Invalid("Missing check name")
    status = _status(f, "Bad check status")
    ct = parse_check_type(f)
    check_id = f.str("ID", "CheckID") or name
    return health_check(check_id, name, f.str("Notes"), status,
                        f.str("ServiceID"), ct), ct


def parse_service(f: Fields) -> tuple[dict, list[tuple[dict, dict]]]:
    """PUT /v1/agent/service/register body → (NodeService, [(HealthCheck, CheckType)])."""
    name = f.str("Name", "Service")
    if not name:
        raise Invalid("Missing service name")
    address = f.str("Address")
    if _is_any(address):
        raise Invalid("Invalid service address")
    meta = f.strmap("Meta")
    validate_meta(meta)
    tagged = {}
    ta = f.raw("TaggedAddresses")
    if ta is not None:
        if not isinstance(ta, dict):
            raise Invalid("Request decode failed: json: cannot unmarshal "
                          "TaggedAddresses into map[string]structs.ServiceAddress")
        for k, v in ta.items():
            sa = Fields(v, "ServiceAddress")
            tagged[k] = {"Address": sa.str("Address"), "Port": sa.int("Port")}
    weights = {"Passing": 1, "Warning": 1}
    wf = f.obj("Weights", "Weights")
    if wf is not None:
        weights = {"Passing": wf.int("Passing"), "Warning": wf.int("Warning")}
        if weights["Passing"] < 1:
            raise Invalid("Passing must be greater than 0")
    port = f.int("Port")
    if not 0 <= port <= 65535:
        raise Invalid(f"Invalid service port: {port}")
    sid = f.str("ID") or name
    service = {"Kind": f.str("Kind"), "ID": sid, "Service": name, "Tags": f.strlist("Tags"),
               "Address": address, "TaggedAddresses": tagged, "Meta": meta, "Port": port,
               "Weights": weights, "EnableTagOverride": f.bool("EnableTagOverride")}
    defs: list[Fields] = []
    one = f.obj("Check", "CheckType")
    if one is not None and has_check_fields(one):
        defs.append(one)
    defs.extend(f.objlist("Checks", "CheckType"))
    checks = []
    for i, cf in enumerate(defs):
        status = _status(cf, "Status for checks must 'passing', 'warning', 'critical'")
        ct = parse_check_type(cf)
        check_id = cf.str("CheckID", "ID")
        if not check_id:
            check_id = f"service:{sid}" if len(defs) == 1 else f"service:{sid}:{i + 1}"
        cname = cf.str("Name") or f"Service '{name}' check"
        checks.append((health_check(check_id, cname, cf.str("Notes"), status, sid, ct), ct))
    return service, checks


def has_check_fields(f: Fields) -> bool:
    """Consul ignores an empty embedded Check object (`"Check": {}`)."""
    return f.has("TTL", "HTTP", "TCP", "Args", "ScriptArgs", "Interval", "Script", "Name",
                 "CheckID", "ID", *UNSUPPORTED_TYPES)


# ---------------------------------------------------------------------- config-file keys
# The fields of Consul's ServiceDefinition / CheckDefinition as a config file may spell
# them (snake_case or CamelCase: compared after removing "_" and "-" and lower-casing,
# as Fields looks them up). "implemented" fields are decoded by parse_service/parse_check;
# "accepted" ones are Consul fields Isthmus ignores (the loader warns about them); an
# unsupported check type is refused by parse_check_type; any other key is an error, as
# Consul's "invalid config key".

def norm_key(key: str) -> str:
    """A field name as Fields compares it."""
    return key.replace("_", "").replace("-", "").lower()


SERVICE_KEYS_IMPLEMENTED = frozenset(map(norm_key, (
    "kind", "id", "name", "tags", "address", "tagged_addresses", "meta", "port", "check",
    "checks", "token", "weights", "enable_tag_override")))
SERVICE_KEYS_ACCEPTED = frozenset(map(norm_key, (
    "socket_path", "proxy", "connect", "locality", "namespace", "partition")))
CHECK_KEYS_IMPLEMENTED = frozenset(map(norm_key, (
    "id", "check_id", "name", "notes", "service_id", "token", "status", "args", "script_args",
    "http", "header", "method", "body", "tcp", "interval", "timeout", "ttl",
    "tls_skip_verify", "deregister_critical_service_after", *UNSUPPORTED_TYPES, "script")))
CHECK_KEYS_ACCEPTED = frozenset(map(norm_key, (
    "shell", "grpc_use_tls", "tls_server_name", "disable_redirects", "tcp_use_tls",
    "h2ping_use_tls", "success_before_passing", "failures_before_warning",
    "failures_before_critical", "output_max_size", "namespace", "partition")))
WEIGHTS_KEYS = frozenset(("passing", "warning"))
SERVICE_ADDRESS_KEYS = frozenset(("address", "port"))

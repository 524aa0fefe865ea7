"""Load the agent configuration the way `consul agent` does: flags, JSON files, merge, checks.

Mirrors hashicorp/consul `agent/config` (flags.go, builder.go, merge.go, deprecated.go,
default.go): sources are merged in the order

    defaults → -dev defaults → list values from flags → config files (command-line order,
    a directory's files in lexical order) → every other flag value

Later scalars replace earlier ones, lists are concatenated, maps are overlaid. Like
Consul, list-valued flags (`-retry-join`, `-join`, …) are merged *before* the files, so
the files' entries are appended to them, while scalar flags win over the files.

Unlike Consul, which stops at the first error, every problem is collected and raised at
once in one `ConfigError`. Problems name the key and where it was set (a file, "command
line", "-dev defaults" or "default").
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import socket
import struct
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, IsthmusError
from . import consul_keys as ck
from .model import (AgentConfig, CheckDefinition, DNSSettings, Limits, Ports,
                    ServiceDefinition, TLSSettings)

CMDLINE = "command line"
DEV_SOURCE = "-dev defaults"
DEFAULT = "default"


@dataclass(frozen=True)
class Loaded:
    """A valid configuration and the warnings an operator should see (one line each)."""
    config: AgentConfig
    warnings: list[str]


@dataclass(frozen=True, slots=True)
class InterfaceAddr:
    """One address of one network interface, as advertise-address detection sees it."""
    name: str
    address: str            # IPv4 or IPv6 text form
    up: bool = True
    loopback: bool = False


InterfaceLister = Callable[[], Sequence[InterfaceAddr]]

# ---------------------------------------------------------------------------------------
# Keys Isthmus implements, with the type each must have in a file. Everything else in
# consul_keys.CONSUL_KEYS is accepted with one "not implemented yet" warning.

_STRINGS = "strings"        # list of strings
_STRMAP = "strmap"          # object of string values
_OBJ = "obj"                # a JSON object (service and check definitions)
_OBJLIST = "objlist"        # a list of JSON objects

_IMPLEMENTED: dict[str, str] = {
    "datacenter": ck.STRING,
    "primary_datacenter": ck.STRING,
    "domain": ck.STRING,
    "node_name": ck.STRING,
    "node_id": ck.STRING,
    "server": ck.BOOL,
    "bootstrap": ck.BOOL,
    "bootstrap_expect": ck.INT,
    "data_dir": ck.STRING,
    "bind_addr": ck.STRING,
    "advertise_addr": ck.STRING,
    "advertise_addr_wan": ck.STRING,
    "client_addr": ck.STRING,
    "start_join": _STRINGS,
    "start_join_wan": _STRINGS,
    "retry_join": _STRINGS,
    "retry_join_wan": _STRINGS,
    "retry_interval": ck.DURATION,
    "retry_interval_wan": ck.DURATION,
    "encrypt": ck.STRING,
    "encrypt_verify_incoming": ck.BOOL,
    "encrypt_verify_outgoing": ck.BOOL,
    "log_level": ck.STRING,
    "log_json": ck.BOOL,
    "node_meta": _STRMAP,
    "leave_on_terminate": ck.BOOL,
    "enable_script_checks": ck.BOOL,
    "enable_local_script_checks": ck.BOOL,
    # Service and check definitions: decoded like the agent's registration API bodies
    # (agent/local/defs.py), one source at a time (_Loader._definitions).
    "service": _OBJ,
    "services": _OBJLIST,
    "check": _OBJ,
    "checks": _OBJLIST,
    "performance.raft_multiplier": ck.INT,
    "raft_snapshot_threshold": ck.INT,
    "raft_trailing_logs": ck.INT,
    "autopilot.cleanup_dead_servers": ck.BOOL,
    "autopilot.server_stabilization_time": ck.DURATION,
    "limits.rpc_max_conns_per_client": ck.INT,
    "limits.rpc_handshake_timeout": ck.DURATION,
    "limits.rpc_client_timeout": ck.DURATION,
    "limits.http_max_conns_per_client": ck.INT,
    "limits.rpc_max_header_bytes": ck.INT,
    "limits.rpc_max_body_bytes": ck.INT,
    # Deprecated keys Isthmus maps like Consul does (deprecated.go).
    "acl_datacenter": ck.STRING,
    "ca_file": ck.STRING,
    "ca_path": ck.STRING,
    "cert_file": ck.STRING,
    "key_file": ck.STRING,
    "tls_min_version": ck.STRING,
    "tls_cipher_suites": ck.STRING,
    "tls_prefer_server_cipher_suites": ck.BOOL,   # ignored, with Consul's warning
    "verify_incoming": ck.BOOL,
    "verify_incoming_rpc": ck.BOOL,
    "verify_incoming_https": ck.BOOL,
    "verify_outgoing": ck.BOOL,
    "verify_server_hostname": ck.BOOL,
    "acl_enforce_version_8": ck.BOOL,             # only Consul's "should be removed" warning
    # DNS (agent/dns/): the domains, upstream recursors and the dns_config block.
    "alt_domain": ck.STRING,
    "recursors": _STRINGS,
    "translate_wan_addrs": ck.BOOL,
    "dns_config.allow_stale": ck.BOOL,
    "dns_config.max_stale": ck.DURATION,
    "dns_config.node_ttl": ck.DURATION,
    "dns_config.service_ttl": _STRMAP,
    "dns_config.only_passing": ck.BOOL,
    "dns_config.enable_truncate": ck.BOOL,
    "dns_config.udp_answer_limit": ck.INT,
    "dns_config.a_record_limit": ck.INT,
    "dns_config.recursor_timeout": ck.DURATION,
    "dns_config.recursor_strategy": ck.STRING,
    "dns_config.enable_additional_node_meta_txt": ck.BOOL,
    "dns_config.soa.refresh": ck.INT,
    "dns_config.soa.retry": ck.INT,
    "dns_config.soa.expire": ck.INT,
    "dns_config.soa.min_ttl": ck.INT,
}
for _port in ("dns", "http", "https", "grpc", "grpc_tls", "serf_lan", "serf_wan", "server"):
    _IMPLEMENTED[f"ports.{_port}"] = ck.INT
for _blk in ("defaults", "internal_rpc", "https"):
    for _k in ("ca_file", "ca_path", "cert_file", "key_file", "tls_min_version",
               "tls_cipher_suites"):
        _IMPLEMENTED[f"tls.{_blk}.{_k}"] = ck.STRING
    for _k in ("verify_incoming", "verify_outgoing", "verify_server_hostname"):
        # verify_server_hostname outside internal_rpc is a Consul error, reported later.
        _IMPLEMENTED[f"tls.{_blk}.{_k}"] = ck.BOOL

# Struct blocks with at least one implemented key below them: walked key by key, so the
# keys Isthmus does not implement yet are named one by one ("ports.sidecar_min_port").
_PARTIAL_BLOCKS = frozenset(
    ".".join(p.split(".")[:i]) for p in _IMPLEMENTED for i in range(1, p.count(".") + 1))

_TYPE_NAMES = {
    ck.STRING: "a string", ck.BOOL: "a boolean", ck.INT: "an integer",
    ck.DURATION: 'a duration string such as "30s"', _STRINGS: "a list of strings",
    _STRMAP: "an object of string values", "struct": "an object", _OBJ: "an object",
    _OBJLIST: "a list of objects",
}

# ---------------------------------------------------------------------------------------
# Go compatibility helpers


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3,
                   "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go `time.ParseDuration` string ("1m30s", "250ms"); ValueError if bad."""
    orig, s, sign = text, text, 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    while s:
        m = _DURATION_PART.match(s)
        assert m is not None                    # the pattern matches the empty string
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise ValueError(f'time: invalid duration "{orig}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        total += float(f"{whole or '0'}.{frac or '0'}") * _DURATION_UNITS[unit]
        s = s[m.end():]
    return sign * total


def _parse_go_bool(text: str) -> bool | None:
    """Go's strconv.ParseBool; None when `text` is not one of its spellings."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _show(value: Any) -> str:
    """A value as it appeared in JSON, shortened for a one-line message."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------
# Flags (Go `flag` package semantics, Consul's agent flag set: agent/config/flags.go)


@dataclass(frozen=True, slots=True)
class _Flag:
    name: str
    kind: str       # bool | int | string | duration | list | meta | path | format | dev | hcl
    key: str        # the Consul config key it sets ("" for flags about loading itself)
    help: str


_FLAGS: tuple[_Flag, ...] = (
    _Flag("advertise", "string", "advertise_addr", "Sets the advertise address to use."),
    _Flag("advertise-wan", "string", "advertise_addr_wan",
          "Sets address to advertise on WAN instead of -advertise address."),
    _Flag("allow-write-http-from", "list", "http_config.allow_write_http_from",
          "Only allow write endpoint calls from given network. CIDR format, can be "
          "specified multiple times."),
    _Flag("alt-domain", "string", "alt_domain", "Alternate domain to use for DNS interface."),
    _Flag("auto-reload-config", "bool", "auto_reload_config",
          "Watches config files for changes and auto reloads the files when modified."),
    _Flag("bind", "string", "bind_addr", "Sets the bind address for cluster communication."),
    _Flag("bootstrap", "bool", "bootstrap", "Sets server to bootstrap mode."),
    _Flag("bootstrap-expect", "int", "bootstrap_expect", "Sets server to expect bootstrap mode."),
    _Flag("check_output_max_size", "int", "check_output_max_size",
          "Sets the maximum output size for checks on this agent"),
    _Flag("client", "string", "client_addr",
          "Sets the address to bind for client access. This includes RPC, DNS, HTTP, HTTPS "
          "and gRPC (if configured)."),
    _Flag("config-dir", "path", "",
          "Path to a directory to read configuration files from. This will read every file "
          "ending in '.json' as configuration in this directory in alphabetical order. Can "
          "be specified multiple times."),
    _Flag("config-file", "path", "",
          "Path to a file in JSON format with a matching file extension. Can be specified "
          "multiple times."),
    _Flag("config-format", "format", "",
          "Config files are in this format irrespective of their extension. Must be 'json' "
          "(Isthmus does not read HCL yet)."),
    _Flag("data-dir", "string", "data_dir", "Path to a data directory to store agent state."),
    _Flag("datacenter", "string", "datacenter", "Datacenter of the agent."),
    _Flag("default-query-time", "duration", "default_query_time",
          "the amount of time a blocking query will wait before the agent will force a "
          "response. This value can be overridden by the 'wait' query parameter."),
    _Flag("dev", "dev", "", "Starts the agent in development mode."),
    _Flag("disable-host-node-id", "bool", "disable_host_node_id",
          "Setting this to true will prevent the agent from using information from the host "
          "to generate a node ID, and will cause it to generate a random node ID instead."),
    _Flag("disable-keyring-file", "bool", "disable_keyring_file",
          "Disables the backing up of the keyring to a file."),
    _Flag("dns-port", "int", "ports.dns", "DNS port to use."),
    _Flag("domain", "string", "domain", "Domain to use for DNS interface."),
    _Flag("enable-local-script-checks", "bool", "enable_local_script_checks",
          "Enables health check scripts from configuration file."),
    _Flag("enable-script-checks", "bool", "enable_script_checks",
          "Enables health check scripts."),
    _Flag("encrypt", "string", "encrypt", "Provides the gossip encryption key."),
    _Flag("grpc-port", "int", "ports.grpc", "Sets the gRPC API port to listen on."),
    _Flag("grpc-tls-port", "int", "ports.grpc_tls", "Sets the gRPC-TLS API port to listen on."),
    _Flag("hcl", "hcl", "", "hcl config fragment. Can be specified multiple times."),
    _Flag("http-port", "int", "ports.http", "Sets the HTTP API port to listen on."),
    _Flag("https-port", "int", "ports.https", "Sets the HTTPS API port to listen on."),
    _Flag("join", "list", "start_join",
          "Address of an agent to join at start time. Can be specified multiple times."),
    _Flag("join-wan", "list", "start_join_wan",
          "Address of an agent to join -wan at start time. Can be specified multiple times."),
    _Flag("log-file", "string", "log_file", "Path to the file the logs get written to"),
    _Flag("log-json", "bool", "log_json", "Output logs in JSON format."),
    _Flag("log-level", "string", "log_level", "Log level of the agent."),
    _Flag("log-rotate-bytes", "int", "log_rotate_bytes",
          "Maximum number of bytes that should be written to a log file"),
    _Flag("log-rotate-duration", "duration", "log_rotate_duration",
          "Time after which log rotation needs to be performed"),
    _Flag("log-rotate-max-files", "int", "log_rotate_max_files",
          "Maximum number of log file archives to keep"),
    _Flag("max-query-time", "duration", "max_query_time",
          "the maximum amount of time a blocking query can wait before the agent will force "
          "a response."),
    _Flag("node", "string", "node_name", "Name of this node. Must be unique in the cluster."),
    _Flag("node-id", "string", "node_id",
          "A unique ID for this node across space and time. Defaults to a randomly-generated "
          "ID that persists in the data-dir."),
    _Flag("node-meta", "meta", "node_meta",
          "An arbitrary metadata key/value pair for this node, of the format `key:value`. "
          "Can be specified multiple times."),
    _Flag("non-voting-server", "bool", "read_replica",
          "(Enterprise-only) DEPRECATED: -read-replica should be used instead"),
    _Flag("pid-file", "string", "pid_file", "Path to file to store agent PID."),
    _Flag("primary-datacenter", "string", "primary_datacenter",
          "(Isthmus) The datacenter that is authoritative for ACLs and intentions; the "
          "primary_datacenter config key."),
    _Flag("primary-gateway", "list", "primary_gateways",
          "Address of a mesh gateway in the primary datacenter to use to bootstrap WAN "
          "federation at start time with retries enabled. Can be specified multiple times."),
    _Flag("protocol", "int", "protocol", "Sets the protocol version. Defaults to latest."),
    _Flag("raft-protocol", "int", "raft_protocol",
          "Sets the Raft protocol version. Defaults to latest."),
    _Flag("read-replica", "bool", "read_replica",
          "(Enterprise-only) Makes the server a non-voting Raft member."),
    _Flag("recursor", "list", "recursors",
          "Address of an upstream DNS server. Can be specified multiple times."),
    _Flag("rejoin", "bool", "rejoin_after_leave",
          "Ignores a previous leave and attempts to rejoin the cluster."),
    _Flag("retry-interval", "duration", "retry_interval", "Time to wait between join attempts."),
    _Flag("retry-interval-wan", "duration", "retry_interval_wan",
          "Time to wait between join -wan attempts."),
    _Flag("retry-join", "list", "retry_join",
          "Address of an agent to join at start time with retries enabled. Can be specified "
          "multiple times."),
    _Flag("retry-join-wan", "list", "retry_join_wan",
          "Address of an agent to join -wan at start time with retries enabled. Can be "
          "specified multiple times."),
    _Flag("retry-max", "int", "retry_max",
          "Maximum number of join attempts. Defaults to 0, which will retry indefinitely."),
    _Flag("retry-max-wan", "int", "retry_max_wan",
          "Maximum number of join -wan attempts. Defaults to 0, which will retry indefinitely."),
    _Flag("segment", "string", "segment", "(Enterprise-only) Sets the network segment to join."),
    _Flag("serf-lan-allowed-cidrs", "list", "serf_lan_allowed_cidrs",
          "Networks (eg: 192.168.1.0/24) allowed for Serf LAN. Can be specified multiple times."),
    _Flag("serf-lan-bind", "string", "serf_lan", "Address to bind Serf LAN listeners to."),
    _Flag("serf-lan-port", "int", "ports.serf_lan", "Sets the Serf LAN port to listen on."),
    _Flag("serf-wan-allowed-cidrs", "list", "serf_wan_allowed_cidrs",
          "Networks (eg: 192.168.1.0/24) allowed for Serf WAN (other datacenters). Can be "
          "specified multiple times."),
    _Flag("serf-wan-bind", "string", "serf_wan", "Address to bind Serf WAN listeners to."),
    _Flag("serf-wan-port", "int", "ports.serf_wan", "Sets the Serf WAN port to listen on."),
    _Flag("server", "bool", "server", "Switches agent to server mode."),
    _Flag("server-port", "int", "ports.server", "Sets the server port to listen on."),
    _Flag("syslog", "bool", "enable_syslog", "Enables logging to syslog."),
    _Flag("ui", "bool", "ui_config.enabled", "Enables the built-in static web UI server."),
    _Flag("ui-content-path", "string", "ui_config.content_path",
          "Sets the external UI path to a string. Defaults to: /ui/ "),
    _Flag("ui-dir", "string", "ui_config.dir",
          "Path to directory containing the web UI resources."),
)
_FLAG_BY_NAME = {f.name: f for f in _FLAGS}
_BOOL_KINDS = ("bool", "dev")


def _flag_implemented(flag: _Flag) -> bool:
    return flag.kind in ("path", "format", "dev") or flag.key in _IMPLEMENTED


def flag_help() -> str:
    """Usage text for `isthmus agent -h`, in the layout of `consul agent -h`."""
    lines = [
        "Usage: isthmus agent [options]",
        "",
        "  Starts the Isthmus agent and runs until an interrupt is received. The",
        "  agent represents a single node in a cluster.",
        "",
        "Command Options",
        "",
    ]
    for flag in sorted(_FLAGS, key=lambda f: f.name):
        lines.append(f"  -{flag.name}" if flag.kind in _BOOL_KINDS else f"  -{flag.name}=<value>")
        text = flag.help
        if flag.kind == "hcl":
            text += " Not supported by Isthmus yet (JSON only)."
        elif not _flag_implemented(flag):
            text += " (Accepted; not implemented yet by Isthmus.)"
        lines.extend(textwrap.wrap(text, width=72, initial_indent="     ",
                                   subsequent_indent="     "))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class _ParsedFlags:
    dev: bool = False
    paths: list[str] = field(default_factory=list)      # -config-file/-config-dir, in order
    config_format: str = ""
    values: dict[str, Any] = field(default_factory=dict)  # config keys set by flags


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        d = d.setdefault(part, {})
    d[parts[-1]] = value


def _get_path(d: Mapping[str, Any], path: str, default: Any = None) -> Any:
    node: Any = d
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _parse_flags(argv: Sequence[str], problems: list[str]) -> _ParsedFlags:
    """Go `flag.FlagSet.Parse` semantics, but every problem is collected."""
    out = _ParsedFlags()
    i = 0
    extra: list[str] = []
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            extra = list(argv[i:])            # Go stops at the first non-flag argument
            break
        minuses = 2 if arg[1] == "-" else 1
        if arg == "--":
            extra = list(argv[i + 1:])
            break
        name = arg[minuses:]
        if not name or name[0] in "-=":
            problems.append(f"bad flag syntax: {arg}")
            i += 1
            continue
        has_value, value = False, ""
        if "=" in name:
            name, value = name.split("=", 1)
            has_value = True
        flag = _FLAG_BY_NAME.get(name)
        if flag is None:
            if name in ("h", "help"):
                problems.append("flag: help requested")
            else:
                problems.append(f"flag provided but not defined: -{name}")
            # Go would stop here; we go on to report the rest. An unknown flag's likely
            # value ("-foo bar") is skipped so it is not reported as a stray argument.
            if not has_value and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
            i += 1
            continue
        if flag.kind in _BOOL_KINDS:
            parsed = True if not has_value else _parse_go_bool(value)
            if parsed is None:
                problems.append(f"invalid boolean value {json.dumps(value)} for -{name}: "
                                "parse error")
            elif flag.kind == "dev":
                out.dev = parsed
            else:
                _set_path(out.values, flag.key, parsed)
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(argv):
                problems.append(f"flag needs an argument: -{name}")
                break
            i += 1
            value = argv[i]
        _apply_flag(flag, value, out, problems)
        i += 1
    if extra:
        problems.append("unexpected extra arguments: " + " ".join(extra) +
                        " (the agent takes flags only; did you forget a '-'?)")
    return out


def _apply_flag(flag: _Flag, value: str, out: _ParsedFlags, problems: list[str]) -> None:
    bad = f"invalid value {json.dumps(value)} for flag -{flag.name}: "
    if flag.kind == "path":
        out.paths.append(value)
    elif flag.kind == "format":
        if value == "hcl":
            problems.append("HCL configuration is not supported yet; -config-format must be "
                            "'json'")
        elif value not in ("json", ""):
            problems.append("config: -config-format must be either 'hcl' or 'json'")
        else:
            out.config_format = value
    elif flag.kind == "hcl":
        problems.append("HCL configuration is not supported yet; convert the -hcl fragment "
                        f"{json.dumps(value)} to JSON and pass it with -config-file")
    elif flag.kind == "int":
        if re.fullmatch(r"[+-]?\d+", value) is None:
            problems.append(bad + "expected an integer")
        else:
            _set_path(out.values, flag.key, int(value))
    elif flag.kind == "duration":
        try:
            parse_go_duration(value)
        except ValueError as exc:
            problems.append(bad + str(exc))
        else:
            _set_path(out.values, flag.key, value)
    elif flag.kind == "list":
        current = _get_path(out.values, flag.key, [])
        _set_path(out.values, flag.key, [*current, value])
    elif flag.kind == "meta":
        # Consul's stringMapValue: split at the first ':'; a missing value is "".
        key, _, val = value.partition(":")
        meta = dict(_get_path(out.values, flag.key, {}))
        meta[key] = val
        _set_path(out.values, flag.key, meta)
    else:
        _set_path(out.values, flag.key, value)


# ---------------------------------------------------------------------------------------
# Files (builder.go: sourcesFromPath, newSourceFromFile, shouldParseFile)


def _format_of(path: str) -> str:
    if path.endswith(".json"):
        return "json"
    if path.endswith(".hcl"):
        return "hcl"
    return ""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


class _Loader:
    """One load: collects sources, problems and warnings, then builds the AgentConfig."""

    def __init__(self, hostname: str | None, interfaces: InterfaceLister | None) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._unimplemented: dict[str, list[str]] = {}
        self._hostname = hostname
        self._interfaces = interfaces
        self.merged: dict[str, Any] = {}
        self.prov: dict[str, str] = {}     # dotted key → source that set it last
        self.files_read: list[str] = []
        self.service_defs: list[ServiceDefinition] = []   # in merge order
        self.check_defs: list[CheckDefinition] = []

    # -- reporting ----------------------------------------------------------------------

    def problem(self, text: str, *keys: str) -> None:
        if keys:
            text += " (" + ", ".join(f"{k}: {self.prov.get(k, DEFAULT)}" for k in keys) + ")"
        if text not in self.problems:
            self.problems.append(text)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    @staticmethod
    def _origin(src: str) -> str:
        return src if src in (CMDLINE, DEV_SOURCE) else f"file {src}"

    def _record_unimplemented(self, path: str, src: str) -> None:
        seen = self._unimplemented.setdefault(path, [])
        if src not in seen:
            seen.append(src)

    def unimplemented_warnings(self) -> list[str]:
        out = []
        for path, srcs in self._unimplemented.items():
            files = [s for s in srcs if s not in (CMDLINE, DEV_SOURCE)]
            where = [s for s in srcs if s in (CMDLINE, DEV_SOURCE)]
            if files:
                where.append(("file " if len(files) == 1 else "files ") + ", ".join(files))
            out.append(f'config key "{path}" is accepted but not implemented yet by Isthmus '
                       f"({'; '.join(where)})")
        return out

    # -- reading files ------------------------------------------------------------------

    def read_paths(self, paths: Sequence[str], config_format: str) -> list[tuple[str, dict]]:
        sources: list[tuple[str, dict]] = []
        for path in paths:
            try:
                is_dir = os.path.isdir(path)
                os.stat(path)
            except OSError as exc:
                self.problem(f"config: Open failed on {path}: {exc.strerror}")
                continue
            if not is_dir:
                fmt = config_format or _format_of(path)
                if not fmt:
                    self.problem(f"file {path} has unknown extension; must be .hcl or .json, "
                                 "or config format must be set")
                    continue
                self._read_file(path, fmt, sources)
                continue
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                self.problem(f"config: Readdir failed on {path}. {exc.strerror}")
                continue
            for name in names:
                fp = os.path.join(path, name)
                try:
                    if os.path.islink(fp):                 # Consul resolves symlinks
                        fp = os.path.realpath(fp, strict=True)
                    if os.path.isdir(fp):                  # and does not recurse
                        continue
                except OSError as exc:
                    self.problem(f"config: cannot follow {os.path.join(path, name)}: "
                                 f"{exc.strerror}")
                    continue
                fmt = config_format or _format_of(fp)
                if not fmt:
                    self.warn(f"skipping file {fp}, extension must be .hcl or .json, or config "
                              "format must be set")
                    continue
                self._read_file(fp, fmt, sources)
        return sources

    def _read_file(self, path: str, fmt: str, sources: list[tuple[str, dict]]) -> None:
        if fmt == "hcl":
            self.problem(f"HCL configuration is not supported yet; convert {path} to JSON")
            return
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            self.problem(f"config: failed to read {path}: {exc.strerror}")
            return
        if not raw:
            return                  # Consul skips an empty file (ErrNoData) without a word
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problem(f"failed to parse {path}: not UTF-8 text (byte {exc.start})")
            return
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            self.problem(f"failed to parse {path}: line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}")
            return
        except ValueError as exc:
            self.problem(f"failed to parse {path}: {exc}")
            return
        if not isinstance(data, dict):
            self.problem(f"failed to parse {path}: the top level must be a JSON object, got "
                         f"{type(data).__name__ if data is not None else 'null'}")
            return
        self.files_read.append(path)
        sources.append((path, data))

    # -- one source: key names, types, deprecations --------------------------------------

    def check_source(self, src: str, data: dict[str, Any]) -> dict[str, Any]:
        """Validated copy of one source: unknown keys, wrong types and nulls dropped."""
        clean = self._walk(src, data, ck.CONSUL_KEYS, "", report=True)
        self._apply_deprecated(src, clean)
        self._definitions(src, clean)
        return clean

    # -- service and check definitions (builder.go: serviceVal, checkVal) ----------------

    def _definitions(self, src: str, d: dict[str, Any]) -> None:
        """Take the source's service and check definitions out of `d` and decode them.

        As Consul does per source, a single `service` comes after that source's `services`
        list (and `check` after `checks`), and the lists of all sources are concatenated;
        decoding here, per source, lets every problem name its file and key.
        """
        services = [(f"services[{i}]", v) for i, v in enumerate(d.pop("services", []))]
        if "service" in d:
            services.append(("service", d.pop("service")))
        checks = [(f"checks[{i}]", v) for i, v in enumerate(d.pop("checks", []))]
        if "check" in d:
            checks.append(("check", d.pop("check")))
        if not services and not checks:
            return
        # Imported here: agent.local.body imports this module for parse_go_duration.
        from ..local import defs
        from ..local.body import Fields
        for key, raw in services:
            if not self._def_keys(src, key, raw, "service", defs):
                continue
            f = Fields(raw, "ServiceDefinition")
            try:
                embedded = self._embedded_checks(key, f, defs)
            except IsthmusError as exc:
                self.problem(f'"{key}" in {src}: {exc}')
                continue
            bad_check = False
            for ckey, cf in embedded:           # first, so a check's problem names its key
                try:
                    defs.parse_check_type(cf)
                except IsthmusError as exc:
                    self.problem(f'"{ckey}" in {src}: {exc}')
                    bad_check = True
            if bad_check:
                continue
            try:
                service, chks = defs.parse_service(f)
                token = f.str("Token")
            except IsthmusError as exc:         # defs.Invalid, body.DecodeFailed
                self.problem(f'"{key}" in {src}: {exc}')
                continue
            self.service_defs.append(ServiceDefinition(
                service=service, checks=tuple(chks), token=token, source=src, key=key))
        for key, raw in checks:
            if not self._def_keys(src, key, raw, "check", defs):
                continue
            f = Fields(raw, "CheckDefinition")
            try:
                check, ct = defs.parse_check(f)
                token = f.str("Token")
            except IsthmusError as exc:
                self.problem(f'"{key}" in {src}: {exc}')
                continue
            self.check_defs.append(CheckDefinition(check=check, chk_type=ct, token=token,
                                                   source=src, key=key))

    @staticmethod
    def _embedded_checks(key: str, f: Any, defs: Any) -> list[tuple[str, Any]]:
        """A service definition's check objects, with their keys (for messages)."""
        out = []
        one = f.obj("Check", "CheckType")
        if one is not None and defs.has_check_fields(one):
            out.append((f"{key}.check", one))
        out.extend((f"{key}.checks[{i}]", c) for i, c in enumerate(f.objlist("Checks",
                                                                              "CheckType")))
        return out

    def _def_keys(self, src: str, key: str, raw: Any, kind: str, defs: Any) -> bool:
        """Unknown keys of a definition are problems, Consul fields Isthmus ignores are
        "not implemented" warnings; False when the definition is not usable."""
        if not isinstance(raw, dict):
            self.problem(f'"{key}" in {src}: expected an object, got {_show(raw)}')
            return False
        before = len(self.problems)
        if kind == "service":
            known, accepted = defs.SERVICE_KEYS_IMPLEMENTED, defs.SERVICE_KEYS_ACCEPTED
        else:
            known, accepted = defs.CHECK_KEYS_IMPLEMENTED, defs.CHECK_KEYS_ACCEPTED
        for name, value in raw.items():
            path, n = f"{key}.{name}", defs.norm_key(str(name))
            if n in accepted:
                self._record_unimplemented(path, src)
            elif n not in known:
                self.problem(f'invalid config key "{path}" in {src}')
            elif kind == "service" and n in ("check", "checks") and value is not None:
                items = [(path, value)] if n == "check" else (
                    [(f"{path}[{i}]", v) for i, v in enumerate(value)]
                    if isinstance(value, list) else [])
                for ck_path, item in items:
                    if isinstance(item, dict):
                        self._def_keys(src, ck_path, item, "check", defs)
            elif kind == "service" and n == "weights" and isinstance(value, dict):
                self._sub_keys(src, path, value, defs.WEIGHTS_KEYS, defs)
            elif kind == "service" and n == "taggedaddresses" and isinstance(value, dict):
                for tag, addr in value.items():
                    if isinstance(addr, dict):
                        self._sub_keys(src, f"{path}.{tag}", addr, defs.SERVICE_ADDRESS_KEYS,
                                       defs)
        return len(self.problems) == before

    def _sub_keys(self, src: str, path: str, value: dict, known: frozenset, defs: Any) -> None:
        for name in value:
            if defs.norm_key(str(name)) not in known:
                self.problem(f'invalid config key "{path}.{name}" in {src}')

    def _walk(self, src: str, data: Mapping[str, Any], schema: Mapping[str, ck.Spec],
              prefix: str, report: bool) -> dict[str, Any]:
        clean: dict[str, Any] = {}
        for key, value in data.items():
            path = prefix + key
            spec = schema.get(key)
            if spec is None:
                self.problem(f'invalid config key "{path}" in {src}')
                continue
            if value is None:           # JSON null leaves the key unset, as in Consul
                continue
            if isinstance(spec, dict):
                if not isinstance(value, dict):
                    self.problem(f'"{path}" in {src}: expected an object, got {_show(value)}')
                    continue
                partial = report and path in _PARTIAL_BLOCKS
                if report and not partial:
                    self._record_unimplemented(path, src)
                clean[key] = self._walk(src, value, spec, path + ".", report=partial)
                continue
            want = _IMPLEMENTED.get(path)
            if want is None:
                if report:
                    self._record_unimplemented(path, src)
                clean[key] = value
                continue
            ok, value = self._typecheck(src, path, want, value)
            if ok:
                clean[key] = value
        return clean

    def _typecheck(self, src: str, path: str, want: str, value: Any) -> tuple[bool, Any]:
        good = False
        if want == ck.STRING:
            good = isinstance(value, str)
        elif want == ck.BOOL:
            good = isinstance(value, bool)
        elif want == ck.INT:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            good = isinstance(value, int) and not isinstance(value, bool)
        elif want == ck.DURATION:
            if isinstance(value, str):
                try:
                    parse_go_duration(value)
                except ValueError as exc:
                    self.problem(f'"{path}" in {src}: invalid duration {json.dumps(value)}: '
                                 f"{exc}")
                    return False, value
                good = True
        elif want == _STRINGS:
            good = isinstance(value, list) and all(isinstance(v, str) for v in value)
        elif want == _STRMAP:
            good = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        elif want == _OBJ:
            good = isinstance(value, dict)
        elif want == _OBJLIST:
            good = isinstance(value, list) and all(isinstance(v, dict) for v in value)
        if not good:
            self.problem(f'"{path}" in {src}: expected {_TYPE_NAMES[want]}, got {_show(value)}')
        return good, value

    def _apply_deprecated(self, src: str, d: dict[str, Any]) -> None:
        """Consul's applyDeprecatedConfig, per source (agent/config/deprecated.go)."""
        where = self._origin(src)

        def deprecated(old: str) -> None:
            self.warn(f"The '{old}' field is deprecated. Use the '{ck.DEPRECATED[old]}' field "
                      f"instead. ({where})")

        tls_moves = ("ca_file", "ca_path", "cert_file", "key_file", "tls_cipher_suites",
                     "tls_min_version", "verify_incoming", "verify_incoming_https",
                     "verify_incoming_rpc", "verify_outgoing", "verify_server_hostname")
        for old in tls_moves:
            if old not in d:
                continue
            value = d.pop(old)
            block, _, new_key = ck.DEPRECATED[old][len("tls."):].partition(".")
            target = d.setdefault("tls", {}).setdefault(block, {})
            if new_key not in target:       # the same source's tls block wins
                if old == "tls_min_version" and value in _OLD_TLS_VERSIONS:
                    new_value = _OLD_TLS_VERSIONS[value]
                    self.warn(f"'tls_min_version' value '{value}' is deprecated, please specify "
                              f"'{new_value}' instead ({where})")
                    value = new_value
                target[new_key] = value
            # Consul also pins tls.grpc.verify_incoming to false when mapping the top-level
            # verify_incoming; Isthmus has no gRPC listener, so that part is left out.
            deprecated(old)
        for old, new in (("start_join", "retry_join"), ("start_join_wan", "retry_join_wan")):
            if old in d:
                d[new] = [*d.get(new, []), *d.pop(old)]
                deprecated(old)
        if "acl_datacenter" in d:
            value = d.pop("acl_datacenter")
            d.setdefault("primary_datacenter", value)
            deprecated("acl_datacenter")
        if "tls_prefer_server_cipher_suites" in d:
            d.pop("tls_prefer_server_cipher_suites")
            self.warn("The 'tls_prefer_server_cipher_suites' field is deprecated and will be "
                      f"ignored. ({where})")
        if "acl_enforce_version_8" in d:
            d.pop("acl_enforce_version_8")
            self.warn(f'config key "acl_enforce_version_8" is deprecated and should be removed '
                      f"({where})")
        for old in ck.DEPRECATED:
            if old in tls_moves or old in ("start_join", "start_join_wan", "acl_datacenter"):
                continue
            if _get_path(d, old) is not None:
                deprecated(old)             # not implemented: already warned about as such

    # -- merging (merge.go) -------------------------------------------------------------

    def merge(self, src: str, data: Mapping[str, Any]) -> None:
        self._merge(self.merged, data, ck.CONSUL_KEYS, "", src)

    def _merge(self, dst: dict[str, Any], data: Mapping[str, Any], schema: Any, prefix: str,
               src: str) -> None:
        for key, value in data.items():
            path = prefix + key
            spec = schema.get(key) if isinstance(schema, dict) else None
            if isinstance(spec, dict) and isinstance(value, dict):
                self._merge(dst.setdefault(key, {}), value, spec, path + ".", src)
                continue
            if spec == ck.LIST and isinstance(value, list):
                dst[key] = [*dst.get(key, []), *value]
            elif spec == ck.MAP and isinstance(value, dict):
                dst[key] = {**dst.get(key, {}), **value}
            else:
                dst[key] = value
            self.prov[path] = src

    # -- building the AgentConfig (builder.go: build, validate) ---------------------------

    def get(self, path: str, default: Any = None) -> Any:
        return _get_path(self.merged, path, default)

    def has(self, path: str) -> bool:
        return _get_path(self.merged, path) is not None

    def build(self, dev: bool) -> AgentConfig | None:
        server = bool(self.get("server", False))
        bootstrap = bool(self.get("bootstrap", False))
        expect = int(self.get("bootstrap_expect", 0))
        if expect == 1:
            bootstrap, expect = True, 0
            self.warn("BootstrapExpect is set to 1; this is the same as Bootstrap mode.")

        datacenter = str(self.get("datacenter", "dc1")).lower()
        self._basic_name("datacenter", datacenter, allow_empty=False)
        primary_dc = str(self.get("primary_datacenter", "")).lower()
        self._basic_name("primary_datacenter", primary_dc, allow_empty=True)
        if not primary_dc:
            primary_dc = datacenter         # Consul: the primary defaults to this datacenter

        # Consul's default domain is "consul."; the model keeps it without the root dot.
        domain = str(self.get("domain", "consul"))
        domain = domain[:-1] if domain.endswith(".") and len(domain) > 1 else domain
        alt_domain = str(self.get("alt_domain", "")).rstrip(".")
        recursors = self._recursors()
        dns_config = self._dns_config()

        node_name = self._node_name()
        node_id = self._node_id()
        data_dir = self._data_dir(dev)
        ports = self._ports(server)
        bind_addr, advertise, advertise_wan, client_addrs = self._addresses(ports)
        retry_join = self._join_list("retry_join")
        retry_join_wan = self._join_list("retry_join_wan")
        retry_interval = self._duration("retry_interval", 30.0)
        retry_interval_wan = self._duration("retry_interval_wan", 30.0)
        encrypt = self._encrypt()
        log_level = self._log_level()
        node_meta = self._node_meta()
        limits = self._limits()
        raft_multiplier = int(self.get("performance.raft_multiplier", 1))
        if not 1 <= raft_multiplier <= 10:
            self.problem(f"performance.raft_multiplier cannot be {raft_multiplier}. Must be "
                         "between 1 and 10", "performance.raft_multiplier")
        snapshot_threshold = int(self.get("raft_snapshot_threshold", 16384))
        trailing_logs = int(self.get("raft_trailing_logs", 10240))
        for key, val in (("raft_snapshot_threshold", snapshot_threshold),
                         ("raft_trailing_logs", trailing_logs)):
            if val < 1:
                self.problem(f"{key} cannot be {val}. Must be greater than 0", key)
        stabilization = self._duration("autopilot.server_stabilization_time", 10.0)
        tls_rpc, tls_https = self._tls()
        self._bootstrap_rules(server, bootstrap, expect, dev)
        scripts = bool(self.get("enable_script_checks", False))
        local_scripts = bool(self.get("enable_local_script_checks", False))
        self._definition_rules(scripts or local_scripts)
        if dev and server:
            # Consul bootstraps Raft in -dev because of DevMode, not the bootstrap key;
            # Isthmus expresses the same through `bootstrap`.
            bootstrap = True

        if self.problems:
            return None
        return AgentConfig(
            datacenter=datacenter,
            primary_datacenter=primary_dc,
            domain=domain,
            alt_domain=alt_domain,
            recursors=recursors,
            translate_wan_addrs=bool(self.get("translate_wan_addrs", False)),
            dns_config=dns_config,
            node_name=node_name,
            node_id=node_id,
            server=server,
            bootstrap=bootstrap,
            bootstrap_expect=expect,
            dev_mode=dev,
            data_dir=data_dir,
            bind_addr=bind_addr,
            advertise_addr=advertise,
            advertise_addr_wan=advertise_wan,
            client_addrs=client_addrs,
            ports=ports,
            # Consul ≥1.15 folds start_join into retry_join (deprecated.go), so these stay
            # empty; the model keeps the fields for callers written against older Consul.
            start_join=(),
            start_join_wan=(),
            retry_join=retry_join,
            retry_join_wan=retry_join_wan,
            retry_interval=retry_interval,
            retry_interval_wan=retry_interval_wan,
            encrypt=encrypt,
            encrypt_verify_incoming=bool(self.get("encrypt_verify_incoming", True)),
            encrypt_verify_outgoing=bool(self.get("encrypt_verify_outgoing", True)),
            tls_internal_rpc=tls_rpc,
            tls_https=tls_https,
            log_level=log_level,
            log_json=bool(self.get("log_json", False)),
            limits=limits,
            raft_multiplier=raft_multiplier,
            raft_snapshot_threshold=snapshot_threshold,
            raft_trailing_logs=trailing_logs,
            autopilot_cleanup_dead_servers=bool(self.get("autopilot.cleanup_dead_servers", True)),
            autopilot_server_stabilization_time=stabilization,
            node_meta=node_meta,
            leave_on_terminate=bool(self.get("leave_on_terminate", not server)),
            enable_script_checks=scripts,
            enable_local_script_checks=local_scripts,
            services=tuple(self.service_defs),
            checks=tuple(self.check_defs),
            config_sources=tuple(self.files_read),
        )

    def _definition_rules(self, scripts_allowed: bool) -> None:
        """Rules over all service and check definitions once every file is read."""
        for what, items in (("service", [(d.service["ID"], d.source, d.key, [ct for _, ct in
                                                                           d.checks])
                                         for d in self.service_defs]),
                            ("check", [(d.check["CheckID"], d.source, d.key, [d.chk_type])
                                       for d in self.check_defs])):
            seen: dict[str, str] = {}
            for ident, src, key, cts in items:
                if not scripts_allowed and any(ct.get("Args") for ct in cts):
                    self.problem(f'"{key}" in {src}: Scripts are disabled on this agent; to '
                                 "enable, configure 'enable_script_checks' or "
                                 "'enable_local_script_checks' to true")
                where = f'"{key}" in {src}'
                if ident in seen:
                    # Consul registers definitions in order, so the last one stays.
                    self.warn(f"{what} ID {json.dumps(ident)} is defined more than once "
                              f"({seen[ident]}; {where}): the last definition is used")
                seen[ident] = where

    def _basic_name(self, key: str, value: str, allow_empty: bool) -> None:
        if not value:
            if not allow_empty:
                self.problem(f"{key} cannot be empty", key)
        elif re.fullmatch(r"[a-z0-9_-]+", value) is None:
            self.problem(f"{key} can only contain lowercase alphanumeric, - or _ characters. "
                         f"received: {json.dumps(value)}", key)

    def _node_name(self) -> str:
        name = str(self.get("node_name", "")) or (self._hostname or socket.gethostname())
        name = name.strip()
        # Consul's checks, in its order: the first that matches wins (builder.go validate).
        if not name:
            self.problem("node_name cannot be empty", "node_name")
        elif re.search(r"[^A-Za-z0-9\-]", name):
            self.warn(f"Node name {json.dumps(name)} will not be discoverable via DNS due to "
                      "invalid characters. Valid characters include all alpha-numerics and "
                      "dashes.")
        elif len(name) > 63:
            self.warn(f"Node name {json.dumps(name)} will not be discoverable via DNS due to "
                      "it being too long. Valid lengths are between 1 and 63 bytes.")
        return name

    def _node_id(self) -> str | None:
        value = self.get("node_id")
        if not value:
            return None
        node_id = str(value).lower()        # Consul lower-cases it before parsing
        if len(node_id) != 36:
            self.problem(f"node_id {json.dumps(value)} is not a valid UUID: uuid string is "
                         "wrong length", "node_id")
        elif re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                          node_id) is None:
            self.problem(f"node_id {json.dumps(value)} is not a valid UUID: uuid is improperly "
                         "formatted", "node_id")
        return node_id

    def _data_dir(self, dev: bool) -> str | None:
        data_dir = str(self.get("data_dir", ""))
        if not data_dir:
            if not dev:
                self.problem("data_dir cannot be empty", "data_dir")
            return None                     # -dev keeps everything in memory
        try:
            if not os.path.isdir(data_dir) and os.path.exists(data_dir):
                self.problem(f"data_dir {json.dumps(data_dir)} is not a directory", "data_dir")
            os.stat(data_dir)
        except FileNotFoundError:
            pass                            # created on start, as Consul does
        except OSError as exc:
            self.problem(f"Error getting info on data_dir: {exc}", "data_dir")
        return data_dir

    def _port(self, name: str, default: int) -> int:
        path = f"ports.{name}"
        value = int(self.get(path, default))
        if value <= 0:
            return -1                       # Consul's portVal: zero or negative disables
        if value > 65535:
            self.problem(f"{path}: invalid port: {value}", path)
        return value

    def _ports(self, server: bool) -> Ports:
        d = Ports()
        # Consul gives servers a gRPC-TLS listener on 8503 unless ports.grpc_tls is set.
        grpc_tls_default = 8503 if server and not self.has("ports.grpc_tls") else d.grpc_tls
        ports = Ports(
            dns=self._port("dns", d.dns),
            http=self._port("http", d.http),
            https=self._port("https", d.https),
            grpc=self._port("grpc", d.grpc),
            grpc_tls=self._port("grpc_tls", grpc_tls_default),
            serf_lan=self._port("serf_lan", d.serf_lan),
            serf_wan=self._port("serf_wan", d.serf_wan),
            server=self._port("server", d.server),
        )
        if ports.server <= 0:
            self.problem("server-port must be greater than zero", "ports.server")
        if ports.serf_lan <= 0:
            self.problem("serf-lan-port must be greater than zero", "ports.serf_lan")
        return ports

    def _expand_addrs(self, key: str, text: str) -> list[str] | None:
        """Consul's expandAddrs minus go-sockaddr: IPs (and unix:// paths) separated by spaces."""
        if "{{" in text:
            self.problem(f"{key}: go-sockaddr templates such as {json.dumps(text)} are not "
                         "supported by Isthmus; give an IP address", key)
            return None
        out = []
        for item in text.split():
            if item.startswith("unix://"):
                out.append(item)
                continue
            try:
                out.append(str(ipaddress.ip_address("::" if item == "[::]" else item)))
            except ValueError:
                self.problem(f"{key}: invalid ip address: {item}", key)
                return None
        return out

    def _first_ip(self, key: str) -> str | None:
        addrs = self._expand_addrs(key, str(self.get(key, "")))
        if not addrs:
            return None
        if len(addrs) > 1:
            self.problem(f"{key}: multiple addresses found: {' '.join(addrs)}", key)
            return None
        if addrs[0].startswith("unix://"):
            self.problem(f"{key} cannot be a unix socket", key)
            return None
        return addrs[0]

    def _addresses(self, ports: Ports) -> tuple[str, str, str, tuple[str, ...]]:
        before = len(self.problems)
        bind = "0.0.0.0"
        bind_addrs = self._expand_addrs("bind_addr", str(self.get("bind_addr", "0.0.0.0")))
        if bind_addrs is not None:
            if not bind_addrs:
                self.problem("bind_addr cannot be empty", "bind_addr")
            elif len(bind_addrs) > 1:
                self.problem("bind_addr cannot contain multiple addresses. Use "
                             "'addresses.{dns,http,https}' instead.", "bind_addr")
            elif bind_addrs[0].startswith("unix://"):
                self.problem("bind_addr cannot be a unix socket", "bind_addr")
            else:
                bind = bind_addrs[0]
        adv_lan = self._first_ip("advertise_addr")
        adv_wan = self._first_ip("advertise_addr_wan")
        for key, addr, what in (("advertise_addr", adv_lan, "Advertise address"),
                                ("advertise_addr_wan", adv_wan, "Advertise WAN address")):
            if addr is not None and ipaddress.ip_address(addr).is_unspecified:
                self.problem(f"{what} cannot be 0.0.0.0, :: or [::]", key)
        advertise = adv_lan or bind
        # Detect only when the addresses given are sound (Consul fails before detecting).
        if ipaddress.ip_address(advertise).is_unspecified and len(self.problems) == before:
            advertise = self._detect_advertise(advertise) or advertise
        advertise_wan = adv_wan or advertise

        client_addrs: list[str] = []
        for addr in self._expand_addrs("client_addr", str(self.get("client_addr", "127.0.0.1")))\
                or []:
            if addr.startswith("unix://"):
                self.problem("client_addr cannot be a unix socket", "client_addr")
            else:
                client_addrs.append(addr)
        if not client_addrs and self.has("client_addr") and not self.get("client_addr").strip():
            self.warn("client_addr is empty, client services (DNS, HTTP, HTTPS, GRPC) will not "
                      "be listening for connections")
        self._unique_addrs(ports, client_addrs, advertise, advertise_wan)
        return bind, advertise, advertise_wan, tuple(client_addrs)

    def _detect_advertise(self, bind: str) -> str | None:
        """Consul's advertise detection for an ANY bind address (ipaddr/detect.go)."""
        v4 = ipaddress.ip_address(bind).version == 4
        kind = "private IPv4" if v4 else "public IPv6"
        lister = self._interfaces or host_interfaces
        try:
            ifaces = list(lister())
        except OSError as exc:
            self.problem(f"Error detecting {kind} address: {exc}", "bind_addr")
            return None
        if v4:
            # Only interfaces that are up; loopback addresses only if nothing else is up.
            up = [i for i in ifaces if i.up and not i.loopback]
            pool = up or [i for i in ifaces if i.up and i.loopback]
            found = [i.address for i in pool if _is_private_v4(i.address)]
        else:
            found = [i.address for i in ifaces
                     if ipaddress.ip_address(i.address).version == 6
                     and not _is_private(ipaddress.ip_address(i.address))]
        found = list(dict.fromkeys(found))
        if not found:
            self.problem(f"No {kind} address found", "bind_addr")
            return None
        if len(found) > 1:
            self.problem(f"Multiple {kind} addresses found. Please configure one with 'bind' "
                         "and/or 'advertise'.", "bind_addr")
            return None
        return found[0]

    def _unique_addrs(self, ports: Ports, client_addrs: list[str], advertise: str,
                      advertise_wan: str) -> None:
        """Consul's addrsUnique: no two listeners on one network address."""
        def fmt(ip: str, port: int) -> str:
            return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

        wanted: list[tuple[str, str, str]] = []    # (name, network, ip:port)
        for name, port, key in (("DNS", ports.dns, "ports.dns"),
                                ("HTTP", ports.http, "ports.http"),
                                ("HTTPS", ports.https, "ports.https")):
            if port > 0:
                for ip in client_addrs:
                    wanted.append((name, "tcp", fmt(ip, port)))
                    if name == "DNS":
                        wanted.append((name, "udp", fmt(ip, port)))
        wanted.append(("RPC Advertise", "tcp", fmt(advertise, ports.server)))
        wanted.append(("Serf Advertise LAN", "tcp", fmt(advertise, ports.serf_lan)))
        if ports.serf_wan > 0:
            wanted.append(("Serf Advertise WAN", "tcp", fmt(advertise_wan, ports.serf_wan)))
        inuse: dict[str, str] = {}
        keys = {"DNS": "ports.dns", "HTTP": "ports.http", "HTTPS": "ports.https",
                "RPC Advertise": "ports.server", "Serf Advertise LAN": "ports.serf_lan",
                "Serf Advertise WAN": "ports.serf_wan"}
        for name, net, addr in wanted:
            other = inuse.get(f"{net}:{addr}")
            if other is not None and other != name:
                self.problem(f"{name} address {addr} already configured for {other}",
                             keys[name], keys[other])
            inuse.setdefault(f"{net}:{addr}", name)

    def _join_list(self, key: str) -> tuple[str, ...]:
        out = []
        for entry in self.get(key, []):
            if "{{" in entry:
                self.problem(f"{key}: go-sockaddr templates such as {json.dumps(entry)} are not "
                             "supported by Isthmus; give addresses or go-discover strings", key)
            else:
                out.append(entry)
        return tuple(out)

    def _duration(self, key: str, default: float) -> float:
        value = self.get(key)
        if value is None:
            return default
        seconds = parse_go_duration(value)      # checked per source already
        if seconds < 0:
            # Isthmus check: Consul takes negative durations and misbehaves later.
            self.problem(f"{key} cannot be negative: {json.dumps(value)}", key)
        return seconds

    def _encrypt(self) -> str | None:
        key = self.get("encrypt")
        if not key:
            return None
        try:
            raw = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError) as exc:
            self.problem(f"encrypt has invalid key: {exc}", "encrypt")
            return None
        if len(raw) not in (16, 24, 32):
            self.problem(f"encrypt has invalid key: key size must be 16, 24 or 32 bytes, got "
                         f"{len(raw)}", "encrypt")
        return key

    def _log_level(self) -> str:
        value = str(self.get("log_level", "INFO"))
        # Consul: logging.ValidateLogLevel (upper-cased match); ERR and ERROR are the same.
        level = {"TRACE": "TRACE", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN",
                 "ERR": "ERROR", "ERROR": "ERROR"}.get(value.upper())
        if level is None:
            self.problem(f"Invalid log level: {value}. Valid log levels are: "
                         "[TRACE DEBUG INFO WARN ERR ERROR]", "log_level")
            return "INFO"
        return level

    def _node_meta(self) -> tuple[tuple[str, str], ...]:
        meta: dict[str, str] = self.get("node_meta", {})
        # structs.ValidateNodeMetadata (allowConsulPrefix=false).
        if len(meta) > 64:
            self.problem("node_meta invalid: Node metadata cannot contain more than 64 "
                         "key/value pairs", "node_meta")
        for key, value in meta.items():
            why = None
            if key == "":
                why = "Key cannot be blank"
            elif re.fullmatch(r"[a-zA-Z0-9_-]+", key) is None:
                why = "Key contains invalid characters"
            elif len(key) > 128:
                why = "Key is too long (limit: 128 characters)"
            elif key.startswith("consul-"):
                why = "Key prefix 'consul-' is reserved for internal use"
            elif len(value) > 512:
                why = "Value is too long (limit: 512 characters)"
            if why:
                self.problem(f"node_meta invalid: Couldn't load metadata pair ('{key}', "
                             f"'{value}'): {why}", "node_meta")
        return tuple(sorted(meta.items()))

    def _recursors(self) -> tuple[str, ...]:
        """Consul's `recursors`: IP addresses or host names, each with an optional port
        (53 when missing); space-separated entries expand to several (expandAllOptionalAddrs)."""
        out: list[str] = []
        for entry in self.get("recursors", []):
            if "{{" in entry:
                self.problem(f"recursors: go-sockaddr templates such as {json.dumps(entry)} are "
                             "not supported by Isthmus; give addresses", "recursors")
                continue
            for item in entry.split():
                if recursor_address(item) is None:
                    self.problem(f"recursors: invalid recursor address {json.dumps(item)}: want "
                                 "an IP address or host name, with an optional :port", "recursors")
                else:
                    out.append(item)
        return tuple(out)

    def _dns_config(self) -> DNSSettings:
        """The `dns_config` block (builder.go: DNS*, with validate's limits)."""
        d = DNSSettings()
        ttls: list[tuple[str, float]] = []
        for name, text in sorted(self.get("dns_config.service_ttl", {}).items()):
            try:
                seconds = parse_go_duration(text)
            except ValueError as exc:
                self.problem(f"dns_config.service_ttl: invalid duration {json.dumps(text)} for "
                             f"{json.dumps(name)}: {exc}", "dns_config.service_ttl")
                continue
            if seconds < 0:
                self.problem(f"dns_config.service_ttl cannot be negative: {json.dumps(text)} for "
                             f"{json.dumps(name)}", "dns_config.service_ttl")
            ttls.append((name, seconds))
        ints = {}
        for key, default in (("udp_answer_limit", d.udp_answer_limit),
                             ("a_record_limit", d.a_record_limit)):
            ints[key] = int(self.get(f"dns_config.{key}", default))
            if ints[key] < 0:
                self.problem(f"dns_config.{key} cannot be {ints[key]}. Must be greater than or "
                             "equal to zero", f"dns_config.{key}")
        for key, default in (("refresh", d.soa_refresh), ("retry", d.soa_retry),
                             ("expire", d.soa_expire), ("min_ttl", d.soa_min_ttl)):
            ints[key] = int(self.get(f"dns_config.soa.{key}", default))
            if not 0 <= ints[key] <= 0xFFFFFFFF:     # 32-bit unsigned fields of the SOA record
                self.problem(f"dns_config.soa.{key} cannot be {ints[key]}. Must be between 0 "
                             "and 4294967295", f"dns_config.soa.{key}")
        strategy = str(self.get("dns_config.recursor_strategy", d.recursor_strategy))
        if strategy not in ("sequential", "random"):
            self.problem(f"dns_config.recursor_strategy: unknown strategy {json.dumps(strategy)}; "
                         'use "sequential" or "random"', "dns_config.recursor_strategy")
        return DNSSettings(
            allow_stale=bool(self.get("dns_config.allow_stale", d.allow_stale)),
            max_stale=self._duration("dns_config.max_stale", d.max_stale),
            node_ttl=self._duration("dns_config.node_ttl", d.node_ttl),
            service_ttl=tuple(ttls),
            only_passing=bool(self.get("dns_config.only_passing", d.only_passing)),
            enable_truncate=bool(self.get("dns_config.enable_truncate", d.enable_truncate)),
            udp_answer_limit=ints["udp_answer_limit"],
            a_record_limit=ints["a_record_limit"],
            recursor_timeout=self._duration("dns_config.recursor_timeout", d.recursor_timeout),
            recursor_strategy=strategy,
            enable_additional_node_meta_txt=bool(self.get(
                "dns_config.enable_additional_node_meta_txt", d.enable_additional_node_meta_txt)),
            soa_refresh=ints["refresh"], soa_retry=ints["retry"], soa_expire=ints["expire"],
            soa_min_ttl=ints["min_ttl"],
        )

    def _limits(self) -> Limits:
        d = Limits()
        limits = Limits(
            rpc_max_conns_per_client=int(self.get("limits.rpc_max_conns_per_client",
                                                  d.rpc_max_conns_per_client)),
            rpc_handshake_timeout=self._duration("limits.rpc_handshake_timeout",
                                                 d.rpc_handshake_timeout),
            rpc_client_timeout=self._duration("limits.rpc_client_timeout", d.rpc_client_timeout),
            http_max_conns_per_client=int(self.get("limits.http_max_conns_per_client",
                                                   d.http_max_conns_per_client)),
            rpc_max_header_bytes=int(self.get("limits.rpc_max_header_bytes",
                                              d.rpc_max_header_bytes)),
            rpc_max_body_bytes=int(self.get("limits.rpc_max_body_bytes", d.rpc_max_body_bytes)),
        )
        for key in ("rpc_max_conns_per_client", "http_max_conns_per_client"):
            if getattr(limits, key) < 0:    # 0 means "no limit", as in Consul
                self.problem(f"limits.{key} cannot be negative", f"limits.{key}")
        for key in ("rpc_max_header_bytes", "rpc_max_body_bytes"):
            if getattr(limits, key) <= 0:
                self.problem(f"limits.{key} must be greater than zero", f"limits.{key}")
        return limits

    # -- TLS (builder.go buildTLSConfig, tlsutil validateConfig) --------------------------

    def _tls(self) -> tuple[TLSSettings, TLSSettings]:
        t: dict[str, Any] = self.get("tls", {})
        defaults: dict[str, Any] = t.get("defaults", {})
        if "verify_outgoing" in t.get("grpc", {}):
            self.problem("verify_outgoing is not valid in the tls.grpc stanza",
                         "tls.grpc.verify_outgoing")
        for blk in ("defaults", "grpc", "https"):
            if "verify_server_hostname" in t.get(blk, {}):
                self.problem("verify_server_hostname is only valid in the tls.internal_rpc "
                             "stanza", f"tls.{blk}.verify_server_hostname")
        for blk in ("defaults", "https", "internal_rpc"):
            if "use_auto_cert" in t.get(blk, {}):
                self.problem("use_auto_cert is only valid in the tls.grpc stanza",
                             f"tls.{blk}.use_auto_cert")
        d_version = self._tls_version("tls.defaults.tls_min_version",
                                      defaults.get("tls_min_version"))
        d_ciphers = self._cipher_suites("tls.defaults.tls_cipher_suites",
                                        defaults.get("tls_cipher_suites"), d_version)
        out = []
        for name in ("internal_rpc", "https"):
            own: dict[str, Any] = t.get(name, {})

            def key_of(k: str) -> str:
                return f"tls.{name}.{k}" if k in own else f"tls.defaults.{k}"

            def pick(k: str, default: Any) -> Any:
                return own[k] if k in own else defaults.get(k, default)

            if "tls_min_version" in own:
                version = self._tls_version(f"tls.{name}.tls_min_version", own["tls_min_version"])
            else:
                version = d_version
            if "tls_cipher_suites" in own:
                ciphers = self._cipher_suites(f"tls.{name}.tls_cipher_suites",
                                              own["tls_cipher_suites"], version)
            else:                   # inherited suites are dropped silently under TLS 1.3
                ciphers = d_ciphers if version != "TLSv1_3" else ()
            vsh = bool(own.get("verify_server_hostname", False)) if name == "internal_rpc" \
                else False
            settings = TLSSettings(
                ca_file=pick("ca_file", None) or None,
                ca_path=pick("ca_path", None) or None,
                cert_file=pick("cert_file", None) or None,
                key_file=pick("key_file", None) or None,
                verify_incoming=bool(pick("verify_incoming", False)),
                # verify_server_hostname implies verify_outgoing (CVE-2018-19653, builder.go).
                verify_outgoing=bool(pick("verify_outgoing", False)) or vsh,
                verify_server_hostname=vsh,
                tls_min_version=version,
                cipher_suites=ciphers,
            )
            self._check_tls(name, settings, key_of)
            out.append(settings)
        return out[0], out[1]

    def _tls_version(self, key: str, value: str | None) -> str:
        if value is None or value in ("", "TLS_AUTO"):
            return "TLSv1_2"            # Go's server-side default minimum is TLS 1.2
        if value not in ("TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"):
            self.problem(f"{key}: invalid TLS version: no matching TLS version found for "
                         f"{value}, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, "
                         "TLSv1_2, TLSv1_3]", key)
            return "TLSv1_2"
        if value in ("TLSv1_0", "TLSv1_1"):
            # Consul's own minimum for agent TLS is TLSv1_2 (types/tls.go
            # AgentMinSupportedTLSVersion); Isthmus refuses anything older.
            self.problem(f"{key}: {value} is not supported; the minimum is TLSv1_2", key)
            return "TLSv1_2"
        return value

    def _cipher_suites(self, key: str, value: str | None, version: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if version == "TLSv1_3":
            self.problem(f"{key}: TLS 1.3 cipher suites are not configurable", key)
            return ()
        value = value.strip()
        if not value:
            return ()
        suites = tuple(s.strip() for s in value.split(","))
        unknown = [s for s in suites if s not in ck.AGENT_CIPHER_SUITES]
        if unknown:
            self.problem(f"{key}: invalid TLS cipher suites: no matching Consul Agent TLS "
                         f"cipher suite found for {','.join(unknown)}", key)
            return ()
        return suites

    def _check_tls(self, name: str, s: TLSSettings, key_of: Callable[[str], str]) -> None:
        for attr in ("ca_file", "cert_file", "key_file"):
            path = getattr(s, attr)
            if path is not None:
                self._check_readable(key_of(attr), path, directory=False)
        # Consul reads ca_path only when ca_file is not set (tlsutil LoadCAs).
        if s.ca_path is not None and s.ca_file is None:
            self._check_readable(key_of("ca_path"), s.ca_path, directory=True)
        has_ca = bool(s.ca_file or s.ca_path)
        if s.cert_file and not s.key_file:
            # Consul silently serves no certificate for half a pair; Isthmus refuses.
            self.problem(f"tls.{name}: cert_file is set but key_file is not",
                         key_of("cert_file"))
        if s.key_file and not s.cert_file:
            self.problem(f"tls.{name}: key_file is set but cert_file is not", key_of("key_file"))
        if s.verify_incoming:
            if not has_ca:
                self.problem(f"tls.{name}: VerifyIncoming set but no CA certificates were "
                             "provided (set ca_file or ca_path)", key_of("verify_incoming"))
            if not (s.cert_file and s.key_file):
                self.problem(f"tls.{name}: VerifyIncoming requires a Cert and Key pair in the "
                             "configuration (cert_file and key_file)", key_of("verify_incoming"))
        # Only internal RPC makes outgoing TLS connections that verify_outgoing governs.
        if name == "internal_rpc" and s.verify_outgoing and not has_ca:
            key = "tls.internal_rpc.verify_server_hostname" if s.verify_server_hostname \
                else key_of("verify_outgoing")
            self.problem("tls.internal_rpc: VerifyOutgoing set, and no CA certificate "
                         "provided! (set ca_file or ca_path)", key)

    def _check_readable(self, key: str, path: str, directory: bool) -> None:
        try:
            if directory:
                os.listdir(path)            # raises if missing, unreadable or not a directory
                if not any(files for _, _, files in os.walk(path)):
                    self.problem(f"{key}: Error loading from CAPath {json.dumps(path)}: no CAs "
                                 "found", key)
            else:
                with open(path, "rb") as fh:
                    fh.read(1)
        except OSError as exc:
            self.problem(f"{key}: cannot read {json.dumps(path)}: {exc.strerror}", key)

    # -- bootstrap rules (builder.go validate) --------------------------------------------

    def _bootstrap_rules(self, server: bool, bootstrap: bool, expect: int, dev: bool) -> None:
        if bootstrap and not server:
            self.problem("'bootstrap = true' requires 'server = true'", "bootstrap", "server")
        if expect < 0:
            self.problem(f"bootstrap_expect cannot be {expect}. Must be greater than or equal "
                         "to zero", "bootstrap_expect")
        if expect > 0 and not server:
            self.problem("'bootstrap_expect > 0' requires 'server = true'",
                         "bootstrap_expect", "server")
        if expect > 0 and dev:
            self.problem("'bootstrap_expect > 0' not allowed in dev mode", "bootstrap_expect")
        if expect > 0 and bootstrap:
            self.problem("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive",
                         "bootstrap_expect", "bootstrap")
        if server and not dev and not bootstrap and expect == 2:
            self.warn("bootstrap_expect = 2: A cluster with 2 servers will provide no failure "
                      "tolerance. See "
                      "https://www.consul.io/docs/internals/consensus.html#deployment-table")
        if server and not bootstrap and expect > 2 and expect % 2 == 0:
            self.warn("bootstrap_expect is even number: A cluster with an even number of servers "
                      "does not achieve optimum fault tolerance. See "
                      "https://www.consul.io/docs/internals/consensus.html#deployment-table")
        if server and bootstrap and expect == 0 and not dev:
            self.warn("bootstrap = true: do not enable unless necessary")
        if server and not dev and not bootstrap and expect > 1:
            self.warn(f"bootstrap_expect > 0: expecting {expect} servers")


_OLD_TLS_VERSIONS = {"": "TLS_AUTO", "tls10": "TLSv1_0", "tls11": "TLSv1_1",
                     "tls12": "TLSv1_2", "tls13": "TLSv1_3"}

# Consul's ipaddr privateBlocks (RFC 6890 special-purpose blocks).
_PRIVATE_BLOCKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "::1/128", "fe80::/10", "fc00::/7",
    "fec0::/10", "2001:db8::/32"))


def _is_private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return any(ip.version == net.version and ip in net for net in _PRIVATE_BLOCKS)


_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?")


def recursor_address(item: str) -> tuple[str, int] | None:
    """(host, port) of a recursor given as `ip`, `host`, `ip:port`, `[ipv6]:port` or
    `host:port` (port 53 when missing, as Consul's recursorAddr); None if malformed."""
    host, port = item, 53
    if item.startswith("["):
        inner, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        host, port_text = inner, rest[1:] if rest else "53"
        if not port_text.isdigit():
            return None
        port = int(port_text)
    elif item.count(":") == 1:
        host, port_text = item.split(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    if not 0 < port <= 65535:
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if item.startswith("[") or _HOST_NAME.fullmatch(host) is None:
            return None
    return host, port


def _is_private_v4(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.version == 4 and _is_private(ip)


# Linux ioctl numbers (<linux/sockios.h>) and interface flags (<net/if.h>).
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8


def host_interfaces() -> list[InterfaceAddr]:
    """This host's interface addresses, read locally (ioctl, /proc); nothing is sent.

    SIOCGIFADDR gives each interface's primary IPv4 address only; secondary addresses
    without a label are not seen (Consul's Go code would see them).
    """
    try:
        import fcntl
    except ImportError:                     # not a Unix: nothing to detect with
        return []
    out: list[InterfaceAddr] = []
    flags_of: dict[str, int] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            req = struct.pack("16s16x", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, req),
                                           16)[0]
            except OSError:
                continue
            flags_of[name] = flags
            try:
                res = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue                    # no IPv4 address on this interface
            out.append(InterfaceAddr(name, socket.inet_ntoa(res[20:24]),
                                     up=bool(flags & _IFF_UP),
                                     loopback=bool(flags & _IFF_LOOPBACK)))
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) != 6:
                    continue
                addr = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
                flags = flags_of.get(parts[5], _IFF_UP)
                out.append(InterfaceAddr(parts[5], addr, up=bool(flags & _IFF_UP),
                                         loopback=bool(flags & _IFF_LOOPBACK)))
    except OSError:
        pass
    return out


def _split_flag_values(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Consul's splitSlicesAndValues: top-level list values go before the files."""
    slices = {k: v for k, v in values.items() if isinstance(v, list)}
    rest = {k: v for k, v in values.items() if not isinstance(v, list)}
    return slices, rest


# -dev defaults: the part of Consul's DevSource (default.go) that Isthmus implements.
_DEV_DEFAULTS: dict[str, Any] = {
    "bind_addr": "127.0.0.1",
    "log_level": "DEBUG",
    "server": True,
    "performance": {"raft_multiplier": 1},
    "ports": {"grpc": 8502},
}


def load(argv: list[str], env: Mapping[str, str] | None = None, hostname: str | None = None,
         *, interfaces: InterfaceLister | None = None) -> Loaded:
    """Parse `isthmus agent` arguments and config files into an AgentConfig.

    Raises ConfigError listing every problem found. `env` is reserved: Consul's agent
    reads no configuration from the environment that Isthmus implements. `hostname`
    (default: this host's name) is the default node name; `interfaces` replaces the
    host's interface list for advertise-address detection (tests).
    """
    del env
    loader = _Loader(hostname, interfaces)
    flags = _parse_flags(argv, loader.problems)

    head: list[tuple[str, dict]] = []
    if flags.dev:
        head.append((DEV_SOURCE, loader.check_source(DEV_SOURCE, _DEV_DEFAULTS)))
    flag_slices, flag_rest = _split_flag_values(loader.check_source(CMDLINE, flags.values))
    head.append((CMDLINE, flag_slices))
    files = [(name, loader.check_source(name, data))
             for name, data in loader.read_paths(flags.paths, flags.config_format)]
    for name, data in [*head, *files, (CMDLINE, flag_rest)]:
        loader.merge(name, data)

    config = loader.build(flags.dev)
    if loader.problems or config is None:
        raise ConfigError(loader.problems)
    warnings = loader.unimplemented_warnings() + loader.warnings
    return Loaded(config=config, warnings=warnings)

"""agent.config.load: flags, files, merge order, TLS forms, problems and warnings."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.config import consul_keys as ck
from agent.config.load import (
    InterfaceAddr,
    Loaded,
    flag_help,
    load,
    parse_go_duration,
)
from agent.errors import ConfigError

ONE_PRIVATE = [
    InterfaceAddr("lo", "127.0.0.1", up=True, loopback=True),
    InterfaceAddr("eth0", "10.1.2.3"),
]
KEY16 = "aGVsbG8gd29ybGQgMTIzNA=="          # base64 of 16 bytes
KEY32 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    d = tmp_path / "data"
    d.mkdir()
    return str(d)


def run(argv: list[str], interfaces: list[InterfaceAddr] | None = None) -> Loaded:
    ifaces = ONE_PRIVATE if interfaces is None else interfaces
    return load(argv, hostname="node1", interfaces=lambda: ifaces)


def problems(argv: list[str], interfaces: list[InterfaceAddr] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        run(argv, interfaces)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_problem(argv: list[str], needle: str, **kw: Any) -> str:
    found = [p for p in problems(argv, **kw) if needle in p]
    assert found, f"no problem containing {needle!r}"
    return found[0]


def write(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def cfg_file(tmp_path: Path, data: Any, name: str = "c.json") -> list[str]:
    return ["-config-file", write(tmp_path / name, data)]


# ---------------------------------------------------------------------------------------
# Flags

@pytest.mark.parametrize("argv, attr, expected", [
    (["-datacenter", "east"], "datacenter", "east"),
    (["-primary-datacenter", "west"], "primary_datacenter", "west"),
    (["-node", "alpha"], "node_name", "alpha"),
    (["-node-id", "ADF4238A-882B-9DDC-4A9D-5B6758E4159E"], "node_id",
     "adf4238a-882b-9ddc-4a9d-5b6758e4159e"),
    (["-server"], "server", True),
    (["-server", "-bootstrap"], "bootstrap", True),
    (["-server", "-bootstrap-expect", "3"], "bootstrap_expect", 3),
    (["-bind", "10.0.0.7"], "bind_addr", "10.0.0.7"),
    (["-advertise", "10.9.9.9"], "advertise_addr", "10.9.9.9"),
    (["-advertise-wan", "203.0.113.5"], "advertise_addr_wan", "203.0.113.5"),
    (["-client", "0.0.0.0"], "client_addrs", ("0.0.0.0",)),
    (["-encrypt", KEY16], "encrypt", KEY16),
    (["-log-level", "warn"], "log_level", "WARN"),
    (["-log-json"], "log_json", True),
    (["-domain", "example"], "domain", "example"),
    (["-retry-join", "a", "-retry-join", "b"], "retry_join", ("a", "b")),
    (["-retry-join-wan", "w1"], "retry_join_wan", ("w1",)),
    (["-retry-interval", "1m30s"], "retry_interval", 90.0),
    (["-retry-interval-wan", "250ms"], "retry_interval_wan", 0.25),
    (["-node-meta", "rack:r1", "-node-meta", "zone:a:b"], "node_meta",
     (("rack", "r1"), ("zone", "a:b"))),
])
def test_each_flag(data_dir: str, argv: list[str], attr: str, expected: Any) -> None:
    cfg = run(["-data-dir", data_dir, *argv]).config
    assert getattr(cfg, attr) == expected


@pytest.mark.parametrize("flag, port", [
    ("-http-port", "http"), ("-https-port", "https"), ("-dns-port", "dns"),
    ("-grpc-port", "grpc"), ("-grpc-tls-port", "grpc_tls"), ("-serf-lan-port", "serf_lan"),
    ("-serf-wan-port", "serf_wan"), ("-server-port", "server"),
])
def test_port_flags(data_dir: str, flag: str, port: str) -> None:
    cfg = run(["-data-dir", data_dir, flag, "18000"]).config
    assert getattr(cfg.ports, port) == 18000


def test_data_dir_flag(data_dir: str) -> None:
    assert run([f"-data-dir={data_dir}"]).config.data_dir == data_dir


@pytest.mark.parametrize("form", [
    ["-node", "x1"], ["-node=x1"], ["--node=x1"], ["--node", "x1"],
])
def test_flag_value_forms(data_dir: str, form: list[str]) -> None:
    assert run(["-data-dir", data_dir, *form]).config.node_name == "x1"


@pytest.mark.parametrize("form, expected", [
    (["-server"], True), (["--server"], True), (["-server=true"], True),
    (["-server=false"], False), (["-server=1"], True), (["-server=F"], False),
])
def test_bool_flag_forms(data_dir: str, form: list[str], expected: bool) -> None:
    assert run(["-data-dir", data_dir, *form]).config.server is expected


def test_bool_flag_does_not_take_a_separate_value(data_dir: str) -> None:
    # Go: "-server false" is the flag plus a positional argument.
    assert one_problem(["-data-dir", data_dir, "-server", "false"], "unexpected extra arguments")


def test_bad_boolean_value_uses_go_wording(data_dir: str) -> None:
    assert 'invalid boolean value "maybe" for -server: parse error' in \
        problems(["-data-dir", data_dir, "-server=maybe"])


def test_unknown_flag_uses_go_wording(data_dir: str) -> None:
    probs = problems(["-data-dir", data_dir, "-foo", "bar"])
    assert probs == ["flag provided but not defined: -foo"]


def test_missing_flag_value(data_dir: str) -> None:
    assert "flag needs an argument: -node" in problems(["-data-dir", data_dir, "-node"])


def test_bad_int_flag(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-server", "-bootstrap-expect", "three"],
                       'invalid value "three" for flag -bootstrap-expect')


def test_bad_duration_flag(data_dir: str) -> None:
    p = one_problem(["-data-dir", data_dir, "-retry-interval", "5d"], "-retry-interval")
    assert 'unknown unit "d"' in p


def test_positional_arguments_are_a_problem(data_dir: str) -> None:
    p = one_problem(["-data-dir", data_dir, "extra", "-server"], "unexpected extra arguments")
    assert "extra -server" in p


def test_double_dash_ends_flags(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "--", "-server"], "unexpected extra arguments")


def test_bad_flag_syntax(data_dir: str) -> None:
    assert "bad flag syntax: ---x" in problems(["-data-dir", data_dir, "---x"])


def test_help_flag(data_dir: str) -> None:
    assert "flag: help requested" in problems(["-h"])


def test_flag_problems_are_all_reported(data_dir: str) -> None:
    probs = problems(["-foo", "-bar=1", "-http-port", "x", "-log-json=nope"])
    assert "flag provided but not defined: -foo" in probs
    assert "flag provided but not defined: -bar" in probs
    assert any("-http-port" in p for p in probs)
    assert any("-log-json" in p for p in probs)
    assert "data_dir cannot be empty (data_dir: default)" in probs


def test_config_format_hcl_and_unknown(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-config-format", "hcl"], "HCL")
    assert one_problem(["-data-dir", data_dir, "-config-format", "yaml"],
                       "-config-format must be either 'hcl' or 'json'")


def test_hcl_flag_is_a_problem(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-hcl", 'server = true'],
                       "HCL configuration is not supported yet")


def test_join_flag_is_folded_into_retry_join_like_consul(data_dir: str) -> None:
    r = run(["-data-dir", data_dir, "-join", "j1", "-retry-join", "r1", "-join-wan", "w1"])
    assert r.config.retry_join == ("r1", "j1")          # start_join appended after retry_join
    assert r.config.retry_join_wan == ("w1",)
    assert r.config.start_join == ()
    assert ("The 'start_join' field is deprecated. Use the 'retry_join' field instead. "
            "(command line)") in r.warnings


def test_unimplemented_consul_flag_is_accepted_with_warning(data_dir: str) -> None:
    r = run(["-data-dir", data_dir, "-ui", "-serf-lan-allowed-cidrs", "10.0.0.0/8"])
    assert ('config key "ui_config" is accepted but not implemented yet by Isthmus '
            "(command line)") in r.warnings
    assert any('"serf_lan_allowed_cidrs"' in w for w in r.warnings)


def test_flag_help_lists_flags() -> None:
    text = flag_help()
    assert text.startswith("Usage: isthmus agent [options]")
    assert "  -dev\n" in text
    assert "  -server\n" in text
    assert "  -retry-join=<value>\n" in text
    assert "  -config-dir=<value>\n" in text
    assert "not implemented yet by Isthmus" in text


# ---------------------------------------------------------------------------------------
# Files, directories, merge order

def test_file_values(tmp_path: Path, data_dir: str) -> None:
    cfg = run(cfg_file(tmp_path, {"data_dir": data_dir, "datacenter": "east",
                                  "server": True, "bootstrap_expect": 3,
                                  "ports": {"http": 18500}})).config
    assert (cfg.datacenter, cfg.server, cfg.bootstrap_expect, cfg.ports.http) == \
        ("east", True, 3, 18500)
    assert cfg.ports.dns == 8600                    # untouched port keeps its default


def test_dir_files_merge_in_lexical_order(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "conf.d"
    write(d / "b.json", {"node_name": "from-b", "retry_join": ["b"]})
    write(d / "a.json", {"node_name": "from-a", "data_dir": data_dir, "retry_join": ["a"]})
    write(d / "c.json", {"retry_join": ["c"]})
    cfg = run(["-config-dir", str(d)]).config
    assert cfg.node_name == "from-b"
    assert cfg.retry_join == ("a", "b", "c")
    assert cfg.config_sources == tuple(str(d / n) for n in ("a.json", "b.json", "c.json"))


def test_file_and_dir_follow_command_line_order(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "conf.d"
    write(d / "x.json", {"node_name": "dir"})
    f = write(tmp_path / "f.json", {"node_name": "file"})
    base = ["-data-dir", data_dir]
    assert run([*base, "-config-dir", str(d), "-config-file", f]).config.node_name == "file"
    assert run([*base, "-config-file", f, "-config-dir", str(d)]).config.node_name == "dir"


def test_flags_win_over_files(tmp_path: Path, data_dir: str) -> None:
    argv = [*cfg_file(tmp_path, {"node_name": "file", "data_dir": "/nonexistent/ignored",
                                 "ports": {"http": 1111}}),
            "-node", "flag", "-data-dir", data_dir, "-http-port", "2222"]
    cfg = run(argv).config
    assert (cfg.node_name, cfg.data_dir, cfg.ports.http) == ("flag", data_dir, 2222)


def test_flag_lists_come_before_file_lists(tmp_path: Path, data_dir: str) -> None:
    # Consul merges list-valued flags before the files (splitSlicesAndValues).
    argv = ["-retry-join", "flag1", *cfg_file(tmp_path, {"retry_join": ["file1", "file2"]}),
            "-data-dir", data_dir]
    assert run(argv).config.retry_join == ("flag1", "file1", "file2")


def test_maps_merge_and_flags_overlay_node_meta(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    write(d / "1.json", {"node_meta": {"a": "1", "b": "1"}, "data_dir": data_dir})
    write(d / "2.json", {"node_meta": {"b": "2", "c": "2"}})
    cfg = run(["-config-dir", str(d), "-node-meta", "c:flag"]).config
    assert dict(cfg.node_meta) == {"a": "1", "b": "2", "c": "flag"}


def test_struct_blocks_merge_key_by_key(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    write(d / "1.json", {"ports": {"http": 1000, "dns": 1001}, "data_dir": data_dir,
                         "limits": {"rpc_max_conns_per_client": 7}})
    write(d / "2.json", {"ports": {"http": 2000}, "limits": {"rpc_handshake_timeout": "2s"}})
    cfg = run(["-config-dir", str(d)]).config
    assert (cfg.ports.http, cfg.ports.dns) == (2000, 1001)
    assert (cfg.limits.rpc_max_conns_per_client, cfg.limits.rpc_handshake_timeout) == (7, 2.0)


def test_null_leaves_a_key_unset(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    write(d / "1.json", {"node_name": "one", "data_dir": data_dir})
    write(d / "2.json", {"node_name": None})
    assert run(["-config-dir", str(d)]).config.node_name == "one"


def test_dir_skips_other_extensions_with_warning(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    write(d / "a.json", {"data_dir": data_dir})
    write(d / "README.txt", "not config")
    (d / "sub").mkdir()
    write(d / "sub" / "nested.json", {"node_name": "nested"})
    r = run(["-config-dir", str(d)])
    assert r.config.node_name == "node1"            # subdirectories are not read
    assert (f"skipping file {d / 'README.txt'}, extension must be .hcl or .json, or config "
            "format must be set") in r.warnings


def test_dir_follows_symlinks(tmp_path: Path, data_dir: str) -> None:
    real = write(tmp_path / "real" / "x.json", {"node_name": "linked", "data_dir": data_dir})
    d = tmp_path / "d"
    d.mkdir()
    os.symlink(real, d / "link.json")
    assert run(["-config-dir", str(d)]).config.node_name == "linked"


def test_hcl_file_in_dir_is_a_problem(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    hcl = write(d / "x.hcl", 'server = true')
    assert f"HCL configuration is not supported yet; convert {hcl} to JSON" in \
        problems(["-data-dir", data_dir, "-config-dir", str(d)])


def test_config_file_with_unknown_extension(tmp_path: Path, data_dir: str) -> None:
    f = write(tmp_path / "agent.conf", {"node_name": "conf"})
    assert one_problem(["-data-dir", data_dir, "-config-file", f], "has unknown extension")
    # -config-format json reads any extension as JSON, as in Consul.
    cfg = run(["-data-dir", data_dir, "-config-format", "json", "-config-file", f]).config
    assert cfg.node_name == "conf"


def test_missing_config_path(tmp_path: Path, data_dir: str) -> None:
    missing = str(tmp_path / "nope.json")
    assert one_problem(["-data-dir", data_dir, "-config-file", missing],
                       f"config: Open failed on {missing}")


def test_malformed_json_names_file_line_and_column(tmp_path: Path, data_dir: str) -> None:
    f = write(tmp_path / "bad.json", '{\n  "server": true,\n  "node_name" "x"\n}')
    p = one_problem(["-data-dir", data_dir, "-config-file", f], "failed to parse")
    assert f in p and "line 3 column 15" in p


def test_top_level_must_be_object(tmp_path: Path, data_dir: str) -> None:
    f = write(tmp_path / "list.json", [1, 2])
    assert one_problem(["-data-dir", data_dir, "-config-file", f], "top level must be a JSON "
                       "object")


def test_empty_file_is_skipped(tmp_path: Path, data_dir: str) -> None:
    f = write(tmp_path / "empty.json", "")
    assert run(["-data-dir", data_dir, "-config-file", f]).config.config_sources == ()


# ---------------------------------------------------------------------------------------
# Keys: invalid, unimplemented, types

def test_non_consul_key_is_a_problem(tmp_path: Path, data_dir: str) -> None:
    f = cfg_file(tmp_path, {"foo": 1, "ports": {"htp": 1}, "telemetry": {"bogus": 1}})
    probs = problems(["-data-dir", data_dir, *f])
    name = f[1]
    assert f'invalid config key "foo" in {name}' in probs
    assert f'invalid config key "ports.htp" in {name}' in probs
    assert f'invalid config key "telemetry.bogus" in {name}' in probs


def test_unimplemented_keys_warn_once_each(tmp_path: Path, data_dir: str) -> None:
    d = tmp_path / "d"
    a = write(d / "a.json", {"telemetry": {"disable_hostname": True, "statsd_address": "x"},
                             "acl": {"enabled": True}, "data_dir": data_dir})
    b = write(d / "b.json", {"telemetry": {"prometheus_retention_time": "30s"},
                             "ports": {"sidecar_min_port": 21000}, "services": [{"name": "w"}]})
    r = run(["-config-dir", str(d)])
    tele = [w for w in r.warnings if '"telemetry"' in w]
    assert tele == [f'config key "telemetry" is accepted but not implemented yet by Isthmus '
                    f"(files {a}, {b})"]
    assert (f'config key "acl" is accepted but not implemented yet by Isthmus (file {a})'
            in r.warnings)
    assert any('"ports.sidecar_min_port"' in w and b in w for w in r.warnings)
    assert not any('"services"' in w for w in r.warnings)    # implemented (services)
    assert not any('"ports"' in w for w in r.warnings)


def _placeholder(spec: ck.Spec) -> Any:
    if isinstance(spec, dict):
        return {}
    return {ck.STRING: "x", ck.BOOL: False, ck.INT: 1, ck.FLOAT: 1.5, ck.DURATION: "1s",
            ck.LIST: [], ck.MAP: {}, ck.OBJECT: {}}[spec]


def test_every_unimplemented_consul_key_is_accepted(tmp_path: Path, data_dir: str) -> None:
    implemented_or_special = {
        "datacenter", "primary_datacenter", "domain", "node_name", "node_id", "server",
        "bootstrap", "bootstrap_expect", "data_dir", "bind_addr", "advertise_addr",
        "advertise_addr_wan", "client_addr", "start_join", "start_join_wan", "retry_join",
        "retry_join_wan", "retry_interval", "retry_interval_wan", "encrypt",
        "encrypt_verify_incoming", "encrypt_verify_outgoing", "log_level", "log_json",
        "node_meta", "leave_on_terminate", "acl_datacenter", "ca_file", "ca_path", "cert_file",
        "key_file", "tls_min_version", "tls_cipher_suites", "tls_prefer_server_cipher_suites",
        "verify_incoming", "verify_incoming_rpc", "verify_incoming_https", "verify_outgoing",
        "verify_server_hostname", "acl_enforce_version_8", "raft_snapshot_threshold",
        "raft_trailing_logs", "enable_script_checks", "alt_domain", "recursors",
        "translate_wan_addrs", "enable_local_script_checks", "service", "services", "check",
        "checks",
    }
    data = {k: _placeholder(v) for k, v in ck.CONSUL_KEYS.items()
            if k not in implemented_or_special}
    data["data_dir"] = data_dir
    r = run(cfg_file(tmp_path, data))
    for key in data:
        if key in ("data_dir", "ports", "limits", "performance", "tls", "autopilot",
                   "dns_config"):
            continue
        assert any(f'"{key}"' in w for w in r.warnings), key


def test_nested_keys_of_partial_blocks_are_known(tmp_path: Path, data_dir: str) -> None:
    blocks = {b: {k: _placeholder(v) for k, v in ck.CONSUL_KEYS[b].items()}  # type: ignore
              for b in ("ports", "limits", "performance", "addresses")}
    blocks["ports"] = {k: v for k, v in blocks["ports"].items()}
    blocks["ports"].update({"dns": 8600, "http": 8500, "serf_lan": 8301, "serf_wan": 8302,
                            "server": 8300, "https": -1, "grpc": -1, "grpc_tls": -1})
    blocks["limits"].update({"rpc_max_header_bytes": 100, "rpc_max_body_bytes": 100})
    blocks["addresses"] = {k: "127.0.0.1" for k in blocks["addresses"]}
    r = run(cfg_file(tmp_path, {"data_dir": data_dir, **blocks}))
    assert any('"ports.expose_max_port"' in w for w in r.warnings)
    assert any('"limits.rpc_rate"' in w for w in r.warnings)
    assert any('"performance.leave_drain_time"' in w for w in r.warnings)


@pytest.mark.parametrize("data, needle", [
    ({"bootstrap_expect": "three"}, '"bootstrap_expect" in {f}: expected an integer, got '
                                    '"three"'),
    ({"server": "yes"}, '"server" in {f}: expected a boolean, got "yes"'),
    ({"ports": {"http": "8500"}}, '"ports.http" in {f}: expected an integer, got "8500"'),
    ({"ports": 5}, '"ports" in {f}: expected an object, got 5'),
    ({"retry_join": "a,b"}, '"retry_join" in {f}: expected a list of strings, got "a,b"'),
    ({"node_meta": {"a": 1}}, '"node_meta" in {f}: expected an object of string values'),
    ({"retry_interval": "5 min"}, '"retry_interval" in {f}: invalid duration "5 min"'),
    ({"retry_interval": 30}, '"retry_interval" in {f}: expected a duration string'),
    ({"bootstrap_expect": 2.5}, '"bootstrap_expect" in {f}: expected an integer, got 2.5'),
    ({"tls": {"defaults": {"verify_incoming": "true"}}},
     '"tls.defaults.verify_incoming" in {f}: expected a boolean'),
])
def test_wrong_types(tmp_path: Path, data_dir: str, data: dict, needle: str) -> None:
    f = cfg_file(tmp_path, data)
    assert one_problem(["-data-dir", data_dir, *f], needle.format(f=f[1]))


def test_integral_float_is_an_integer(tmp_path: Path, data_dir: str) -> None:
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"ports": {"http": 8501.0}})]).config
    assert cfg.ports.http == 8501 and isinstance(cfg.ports.http, int)


def test_many_problems_reported_at_once(tmp_path: Path) -> None:
    f = cfg_file(tmp_path, {"foo": 1, "bootstrap_expect": "three", "datacenter": "dc 1",
                            "encrypt": "nope", "log_level": "loud", "node_id": "abc"})
    probs = problems([*f, "-bogus"])
    assert len(probs) >= 7
    joined = "\n".join(probs)
    for needle in ("flag provided but not defined: -bogus", 'invalid config key "foo"',
                   '"bootstrap_expect"', "datacenter can only contain", "encrypt has invalid key",
                   "Invalid log level: loud", "node_id", "data_dir cannot be empty"):
        assert needle in joined, needle


def test_semantic_problem_names_the_file(tmp_path: Path, data_dir: str) -> None:
    f = cfg_file(tmp_path, {"bootstrap_expect": 3})
    p = one_problem(["-data-dir", data_dir, *f], "'bootstrap_expect > 0' requires")
    assert p == (f"'bootstrap_expect > 0' requires 'server = true' "
                 f"(bootstrap_expect: {f[1]}, server: default)")


def test_acl_enforce_version_8_warns(tmp_path: Path, data_dir: str) -> None:
    r = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"acl_enforce_version_8": True})])
    assert any('"acl_enforce_version_8" is deprecated and should be removed' in w
               for w in r.warnings)


def test_deprecated_unimplemented_key_warns_both(tmp_path: Path, data_dir: str) -> None:
    f = cfg_file(tmp_path, {"acl_token": "t"})
    r = run(["-data-dir", data_dir, *f])
    assert (f"The 'acl_token' field is deprecated. Use the 'acl.tokens.default' field instead. "
            f"(file {f[1]})") in r.warnings
    assert any('"acl_token" is accepted but not implemented' in w for w in r.warnings)


def test_acl_datacenter_maps_to_primary_datacenter(tmp_path: Path, data_dir: str) -> None:
    r = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"acl_datacenter": "Main"})])
    assert r.config.primary_datacenter == "main"
    assert any("'acl_datacenter' field is deprecated" in w for w in r.warnings)


# ---------------------------------------------------------------------------------------
# TLS

@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "pki"
    d.mkdir()
    out = {}
    for name in ("ca.pem", "cert.pem", "key.pem", "other-ca.pem"):
        (d / name).write_text("-----BEGIN CERTIFICATE-----\n")
        out[name.split(".")[0]] = str(d / name)
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "a.pem").write_text("x")
    out["capath"] = str(capath)
    return out


def test_tls_new_form_defaults_overlaid_per_family(tmp_path: Path, data_dir: str,
                                                   pki: dict[str, str]) -> None:
    tls = {"defaults": {"ca_file": pki["ca"], "cert_file": pki["cert"],
                        "key_file": pki["key"], "verify_incoming": True,
                        "tls_min_version": "TLSv1_3"},
           "internal_rpc": {"verify_server_hostname": True, "ca_file": pki["other-ca"]},
           "https": {"verify_incoming": False}}
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls": tls})]).config
    rpc, https = cfg.tls_internal_rpc, cfg.tls_https
    assert rpc.ca_file == pki["other-ca"] and https.ca_file == pki["ca"]
    assert rpc.cert_file == https.cert_file == pki["cert"]
    assert rpc.verify_incoming is True and https.verify_incoming is False
    assert rpc.verify_server_hostname is True and rpc.verify_outgoing is True  # implied
    assert https.verify_server_hostname is False
    assert rpc.tls_min_version == https.tls_min_version == "TLSv1_3"
    assert rpc.enabled and https.enabled


def test_tls_old_form_is_mapped_with_deprecation_warnings(tmp_path: Path, data_dir: str,
                                                          pki: dict[str, str]) -> None:
    old = {"ca_file": pki["ca"], "cert_file": pki["cert"], "key_file": pki["key"],
           "verify_incoming_rpc": True, "verify_incoming_https": False,
           "verify_outgoing": True, "verify_server_hostname": True,
           "tls_min_version": "tls12",
           "tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}
    f = cfg_file(tmp_path, old)
    r = run(["-data-dir", data_dir, *f])
    rpc, https = r.config.tls_internal_rpc, r.config.tls_https
    assert rpc.verify_incoming and not https.verify_incoming
    assert rpc.verify_outgoing and https.verify_outgoing     # tls.defaults.verify_outgoing
    assert rpc.verify_server_hostname
    assert rpc.tls_min_version == "TLSv1_2"
    assert rpc.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",)
    assert (f"The 'ca_file' field is deprecated. Use the 'tls.defaults.ca_file' field instead. "
            f"(file {f[1]})") in r.warnings
    assert any("'verify_incoming_rpc' field is deprecated. Use the "
               "'tls.internal_rpc.verify_incoming'" in w for w in r.warnings)
    assert any("'tls_min_version' value 'tls12' is deprecated, please specify 'TLSv1_2'" in w
               for w in r.warnings)
    assert not any("not implemented" in w for w in r.warnings)


def test_same_source_tls_block_wins_over_old_key(tmp_path: Path, data_dir: str,
                                                 pki: dict[str, str]) -> None:
    data = {"ca_file": pki["other-ca"], "tls": {"defaults": {"ca_file": pki["ca"]}}}
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, data)]).config
    assert cfg.tls_internal_rpc.ca_file == pki["ca"]


def test_later_file_old_key_overrides_earlier_tls_block(tmp_path: Path, data_dir: str,
                                                        pki: dict[str, str]) -> None:
    d = tmp_path / "d"
    write(d / "1.json", {"tls": {"defaults": {"ca_file": pki["ca"]}}, "data_dir": data_dir})
    write(d / "2.json", {"ca_file": pki["other-ca"]})
    assert run(["-config-dir", str(d)]).config.tls_https.ca_file == pki["other-ca"]


def test_inherited_cipher_suites_dropped_under_tls13(tmp_path: Path, data_dir: str) -> None:
    tls = {"defaults": {"tls_cipher_suites": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
           "https": {"tls_min_version": "TLSv1_3"}}
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls": tls})]).config
    assert cfg.tls_https.cipher_suites == ()
    assert cfg.tls_internal_rpc.cipher_suites == ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",)


@pytest.mark.parametrize("tls, needle", [
    ({"defaults": {"tls_min_version": "TLSv1_1"}}, "tls.defaults.tls_min_version: TLSv1_1 is not "
                                                   "supported"),
    ({"https": {"tls_min_version": "TLSv9"}}, "tls.https.tls_min_version: invalid TLS version"),
    ({"defaults": {"tls_min_version": "TLSv1_3", "tls_cipher_suites":
                   "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}},
     "TLS 1.3 cipher suites are not configurable"),
    ({"defaults": {"tls_cipher_suites": "TLS_RSA_WITH_AES_128_CBC_SHA"}},
     "no matching Consul Agent TLS cipher suite found for TLS_RSA_WITH_AES_128_CBC_SHA"),
    ({"defaults": {"verify_server_hostname": True}},
     "verify_server_hostname is only valid in the tls.internal_rpc stanza"),
    ({"grpc": {"verify_outgoing": True}}, "verify_outgoing is not valid in the tls.grpc stanza"),
    ({"https": {"use_auto_cert": True}}, "use_auto_cert is only valid in the tls.grpc stanza"),
    ({"defaults": {"verify_incoming": True}},
     "tls.internal_rpc: VerifyIncoming set but no CA certificates were provided"),
    ({"https": {"verify_incoming": True}},
     "tls.https: VerifyIncoming requires a Cert and Key pair"),
    ({"internal_rpc": {"verify_outgoing": True}},
     "tls.internal_rpc: VerifyOutgoing set, and no CA certificate provided!"),
    ({"internal_rpc": {"verify_server_hostname": True}},
     "VerifyOutgoing set, and no CA certificate provided! (set ca_file or ca_path) "
     "(tls.internal_rpc.verify_server_hostname"),
])
def test_tls_problems(tmp_path: Path, data_dir: str, tls: dict, needle: str) -> None:
    assert one_problem(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls": tls})], needle)


def test_tls10_old_style_value_is_a_problem(tmp_path: Path, data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls_min_version": "tls10"})],
                       "TLSv1_0 is not supported")


def test_cert_without_key_and_key_without_cert(tmp_path: Path, data_dir: str,
                                               pki: dict[str, str]) -> None:
    probs = problems(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls": {
        "internal_rpc": {"cert_file": pki["cert"]}, "https": {"key_file": pki["key"]}}})])
    assert any("tls.internal_rpc: cert_file is set but key_file is not" in p for p in probs)
    assert any("tls.https: key_file is set but cert_file is not" in p for p in probs)


def test_missing_tls_files_are_reported_with_path(tmp_path: Path, data_dir: str) -> None:
    missing = str(tmp_path / "nope" / "ca.pem")
    f = cfg_file(tmp_path, {"ca_file": missing})
    p = one_problem(["-data-dir", data_dir, *f], "tls.defaults.ca_file: cannot read")
    assert missing in p and f[1] in p
    assert len([x for x in problems(["-data-dir", data_dir, *f]) if missing in x]) == 1


def test_ca_path(tmp_path: Path, data_dir: str, pki: dict[str, str]) -> None:
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"tls": {"defaults": {
        "ca_path": pki["capath"], "verify_outgoing": True}}})]).config
    assert cfg.tls_internal_rpc.ca_path == pki["capath"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_problem(["-data-dir", data_dir, *cfg_file(tmp_path, {"ca_path": str(empty)},
                                                         "e.json")], "no CAs found")


def test_tls_grpc_and_prefer_server_ciphers(tmp_path: Path, data_dir: str) -> None:
    r = run(["-data-dir", data_dir, *cfg_file(tmp_path, {
        "tls": {"grpc": {"use_auto_cert": True}}, "tls_prefer_server_cipher_suites": True})])
    assert any('"tls.grpc" is accepted but not implemented' in w for w in r.warnings)
    assert any("'tls_prefer_server_cipher_suites' field is deprecated and will be ignored" in w
               for w in r.warnings)


def test_tls_default_is_off() -> None:
    cfg = run(["-dev"]).config
    assert not cfg.tls_internal_rpc.enabled and cfg.tls_https.tls_min_version == "TLSv1_2"


# ---------------------------------------------------------------------------------------
# Semantics

def test_dev_defaults() -> None:
    r = run(["-dev"])
    c = r.config
    assert c.dev_mode and c.server and c.bootstrap and c.bootstrap_expect == 0
    assert (c.datacenter, c.bind_addr, c.advertise_addr, c.client_addrs) == \
        ("dc1", "127.0.0.1", "127.0.0.1", ("127.0.0.1",))
    assert c.data_dir is None and c.node_name == "node1" and c.log_level == "DEBUG"
    assert c.raft_multiplier == 1 and c.leave_on_terminate is False
    assert r.warnings == []


def test_dev_defaults_yield_to_files(tmp_path: Path) -> None:
    cfg = run(["-dev", *cfg_file(tmp_path, {"bind_addr": "127.0.0.2", "log_level": "info"})])
    assert (cfg.config.bind_addr, cfg.config.log_level) == ("127.0.0.2", "INFO")


def test_dev_rejects_bootstrap_expect() -> None:
    assert one_problem(["-dev", "-bootstrap-expect", "3"],
                       "'bootstrap_expect > 0' not allowed in dev mode")


def test_non_dev_requires_data_dir() -> None:
    assert "data_dir cannot be empty (data_dir: default)" in problems([])


def test_data_dir_must_be_a_directory(tmp_path: Path) -> None:
    f = write(tmp_path / "file", "x")
    assert one_problem(["-data-dir", f], f'data_dir "{f}" is not a directory')


def test_data_dir_may_not_exist_yet(tmp_path: Path) -> None:
    assert run(["-data-dir", str(tmp_path / "later")]).config.data_dir == str(tmp_path / "later")


@pytest.mark.parametrize("argv, needle", [
    (["-bootstrap"], "'bootstrap = true' requires 'server = true'"),
    (["-bootstrap-expect", "3"], "'bootstrap_expect > 0' requires 'server = true'"),
    (["-server", "-bootstrap", "-bootstrap-expect", "3"],
     "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive"),
    (["-server", "-bootstrap-expect", "-1"],
     "bootstrap_expect cannot be -1. Must be greater than or equal to zero"),
])
def test_bootstrap_rules(data_dir: str, argv: list[str], needle: str) -> None:
    assert one_problem(["-data-dir", data_dir, *argv], needle)


@pytest.mark.parametrize("expect, needle", [
    (2, "bootstrap_expect = 2: A cluster with 2 servers will provide no failure tolerance."),
    (4, "bootstrap_expect is even number"),
    (3, "bootstrap_expect > 0: expecting 3 servers"),
])
def test_bootstrap_expect_warnings(data_dir: str, expect: int, needle: str) -> None:
    r = run(["-data-dir", data_dir, "-server", "-bootstrap-expect", str(expect)])
    assert any(needle in w for w in r.warnings)


def test_bootstrap_expect_one_means_bootstrap(data_dir: str) -> None:
    r = run(["-data-dir", data_dir, "-server", "-bootstrap-expect", "1"])
    assert (r.config.bootstrap, r.config.bootstrap_expect) == (True, 0)
    assert "BootstrapExpect is set to 1; this is the same as Bootstrap mode." in r.warnings


def test_bootstrap_warning(data_dir: str) -> None:
    r = run(["-data-dir", data_dir, "-server", "-bootstrap"])
    assert "bootstrap = true: do not enable unless necessary" in r.warnings


def test_datacenter_rules(data_dir: str) -> None:
    assert run(["-data-dir", data_dir, "-datacenter", "EU_West-1"]).config.datacenter == \
        "eu_west-1"
    assert one_problem(["-data-dir", data_dir, "-datacenter", "dc.1"],
                       'datacenter can only contain lowercase alphanumeric, - or _ characters. '
                       'received: "dc.1"')
    assert one_problem(["-data-dir", data_dir, "-primary-datacenter", "a b"],
                       "primary_datacenter can only contain")


def test_primary_datacenter_defaults_to_datacenter(data_dir: str) -> None:
    assert run(["-data-dir", data_dir, "-datacenter", "x"]).config.primary_datacenter == "x"


def test_node_name_rules(data_dir: str) -> None:
    assert run(["-data-dir", data_dir]).config.node_name == "node1"
    r = run(["-data-dir", data_dir, "-node", "web_1"])
    assert r.config.node_name == "web_1"
    assert any('Node name "web_1" will not be discoverable via DNS' in w for w in r.warnings)
    r = run(["-data-dir", data_dir, "-node", "a" * 64])
    assert any("due to it being too long" in w for w in r.warnings)


def test_empty_hostname_and_no_node_name(data_dir: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(["-data-dir", data_dir], hostname=" ", interfaces=lambda: ONE_PRIVATE)
    assert "node_name cannot be empty (node_name: default)" in info.value.problems


@pytest.mark.parametrize("node_id, why", [
    ("abc", "wrong length"), ("zzzzzzzz-882b-9ddc-4a9d-5b6758e4159e", "improperly formatted"),
])
def test_node_id_must_be_uuid(data_dir: str, node_id: str, why: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-node-id", node_id], why)


def test_ports_rules(data_dir: str) -> None:
    cfg = run(["-data-dir", data_dir, "-dns-port", "-1", "-http-port", "0"]).config
    assert (cfg.ports.dns, cfg.ports.http) == (-1, -1)
    assert one_problem(["-data-dir", data_dir, "-http-port", "70000"],
                       "ports.http: invalid port: 70000")
    assert one_problem(["-data-dir", data_dir, "-server-port", "0"],
                       "server-port must be greater than zero")
    assert one_problem(["-data-dir", data_dir, "-serf-lan-port", "-1"],
                       "serf-lan-port must be greater than zero")


def test_grpc_tls_port_defaults_for_servers(data_dir: str) -> None:
    assert run(["-data-dir", data_dir, "-server"]).config.ports.grpc_tls == 8503
    assert run(["-data-dir", data_dir]).config.ports.grpc_tls == -1
    assert run(["-data-dir", data_dir, "-server", "-grpc-tls-port", "-1"]).config.ports.grpc_tls \
        == -1


def test_port_collision_is_a_problem(data_dir: str) -> None:
    p = one_problem(["-data-dir", data_dir, "-bind", "127.0.0.1", "-http-port", "8300"],
                    "already configured")
    assert p.startswith("RPC Advertise address 127.0.0.1:8300 already configured for HTTP")


def test_serf_wan_disabled(data_dir: str) -> None:
    assert run(["-data-dir", data_dir, "-serf-wan-port", "-1"]).config.ports.serf_wan == -1


@pytest.mark.parametrize("bind, needle", [
    ('{{ GetPrivateIP }}', "go-sockaddr templates"),
    ("10.0.0.300", "bind_addr: invalid ip address: 10.0.0.300"),
    ("10.0.0.1 10.0.0.2", "bind_addr cannot contain multiple addresses"),
    ("unix:///tmp/x", "bind_addr cannot be a unix socket"),
])
def test_bind_addr_problems(data_dir: str, bind: str, needle: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-bind", bind], needle)


def test_bind_ipv6_any_literal(data_dir: str) -> None:
    ifaces = [InterfaceAddr("eth0", "2001:4860::5"), InterfaceAddr("eth0", "fe80::1")]
    cfg = run(["-data-dir", data_dir, "-bind", "[::]"], interfaces=ifaces).config
    assert (cfg.bind_addr, cfg.advertise_addr) == ("::", "2001:4860::5")


def test_advertise_resolution_single_private(data_dir: str) -> None:
    ifaces = [InterfaceAddr("eth0", "10.1.2.3"), InterfaceAddr("eth1", "203.0.113.9"),
              InterfaceAddr("lo", "127.0.0.1", loopback=True),
              InterfaceAddr("eth2", "192.168.7.7", up=False)]
    cfg = run(["-data-dir", data_dir], interfaces=ifaces).config
    assert (cfg.bind_addr, cfg.advertise_addr, cfg.advertise_addr_wan) == \
        ("0.0.0.0", "10.1.2.3", "10.1.2.3")


def test_advertise_resolution_errors(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir], "No private IPv4 address found",
                       interfaces=[InterfaceAddr("eth0", "203.0.113.9")])
    assert one_problem(["-data-dir", data_dir],
                       "Multiple private IPv4 addresses found. Please configure one with "
                       "'bind' and/or 'advertise'.",
                       interfaces=[InterfaceAddr("eth0", "10.0.0.1"),
                                   InterfaceAddr("eth1", "172.16.0.1")])


def test_advertise_falls_back_to_loopback_when_nothing_else_is_up(data_dir: str) -> None:
    ifaces = [InterfaceAddr("lo", "127.0.0.1", loopback=True),
              InterfaceAddr("eth0", "10.0.0.1", up=False)]
    assert run(["-data-dir", data_dir], interfaces=ifaces).config.advertise_addr == "127.0.0.1"


def test_interface_detection_failure_is_a_problem(data_dir: str) -> None:
    def broken() -> list[InterfaceAddr]:
        raise OSError("no netlink")
    with pytest.raises(ConfigError) as info:
        load(["-data-dir", data_dir], hostname="n", interfaces=broken)
    assert any("Error detecting private IPv4 address: no netlink" in p
               for p in info.value.problems)


def test_advertise_explicit_and_bind_default(data_dir: str) -> None:
    cfg = run(["-data-dir", data_dir, "-advertise", "10.5.5.5"], interfaces=[]).config
    assert (cfg.bind_addr, cfg.advertise_addr, cfg.advertise_addr_wan) == \
        ("0.0.0.0", "10.5.5.5", "10.5.5.5")
    cfg = run(["-data-dir", data_dir, "-bind", "10.6.6.6"], interfaces=[]).config
    assert cfg.advertise_addr == "10.6.6.6"


def test_advertise_any_is_a_problem(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-advertise", "0.0.0.0"],
                       "Advertise address cannot be 0.0.0.0, :: or [::]")
    assert one_problem(["-data-dir", data_dir, "-advertise-wan", "::"],
                       "Advertise WAN address cannot be 0.0.0.0, :: or [::]")


def test_client_addr_forms(tmp_path: Path, data_dir: str) -> None:
    cfg = run(["-data-dir", data_dir, "-client", "127.0.0.1 10.0.0.1 ::1"]).config
    assert cfg.client_addrs == ("127.0.0.1", "10.0.0.1", "::1")
    r = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"client_addr": ""})])
    assert r.config.client_addrs == ()
    assert any("client_addr is empty" in w for w in r.warnings)
    assert one_problem(["-data-dir", data_dir, "-client", "unix:///tmp/s"],
                       "client_addr cannot be a unix socket")


def test_encrypt_rules(data_dir: str) -> None:
    assert run(["-data-dir", data_dir, "-encrypt", KEY32]).config.encrypt == KEY32
    assert one_problem(["-data-dir", data_dir, "-encrypt", "not base64!"],
                       "encrypt has invalid key")
    assert one_problem(["-data-dir", data_dir, "-encrypt", "YWJj"],
                       "key size must be 16, 24 or 32 bytes, got 3")


def test_encrypt_verify_flags(tmp_path: Path, data_dir: str) -> None:
    cfg = run(["-data-dir", data_dir, *cfg_file(tmp_path, {"encrypt_verify_incoming": False})])
    assert (cfg.config.encrypt_verify_incoming, cfg.config.encrypt_verify_outgoing) == \
        (False, True)


@pytest.mark.parametrize("given, level", [
    ("trace", "TRACE"), ("Debug", "DEBUG"), ("INFO", "INFO"), ("warn", "WARN"),
    ("err", "ERROR"), ("error", "ERROR"),
])
def test_log_levels(data_dir: str, given: str, level: str) -> None:
    assert run(["-data-dir", data_dir, "-log-level", given]).config.log_level == level


def test_bad_log_level(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-log-level", "verbose"],
                       "Invalid log level: verbose")


@pytest.mark.parametrize("meta, why", [
    ("bad key:x", "Key contains invalid characters"),
    ("consul-x:y", "Key prefix 'consul-' is reserved for internal use"),
    (":v", "Key cannot be blank"),
])
def test_node_meta_rules(data_dir: str, meta: str, why: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-node-meta", meta], why)


def test_leave_on_terminate_defaults(tmp_path: Path, data_dir: str) -> None:
    assert run(["-data-dir", data_dir]).config.leave_on_terminate is True
    assert run(["-data-dir", data_dir, "-server"]).config.leave_on_terminate is False
    f = cfg_file(tmp_path, {"leave_on_terminate": True})
    assert run(["-data-dir", data_dir, "-server", *f]).config.leave_on_terminate is True


def test_raft_multiplier(tmp_path: Path, data_dir: str) -> None:
    assert run(["-data-dir", data_dir]).config.raft_multiplier == 1
    f = cfg_file(tmp_path, {"performance": {"raft_multiplier": 5}})
    assert run(["-data-dir", data_dir, *f]).config.raft_multiplier == 5
    f = cfg_file(tmp_path, {"performance": {"raft_multiplier": 11}}, "b.json")
    assert one_problem(["-data-dir", data_dir, *f],
                       "performance.raft_multiplier cannot be 11. Must be between 1 and 10")


def test_limits(tmp_path: Path, data_dir: str) -> None:
    f = cfg_file(tmp_path, {"limits": {"rpc_client_timeout": "1m30s", "rpc_max_body_bytes": 1024,
                                       "http_max_conns_per_client": 0}})
    lim = run(["-data-dir", data_dir, *f]).config.limits
    assert (lim.rpc_client_timeout, lim.rpc_max_body_bytes, lim.http_max_conns_per_client) == \
        (90.0, 1024, 0)
    f = cfg_file(tmp_path, {"limits": {"rpc_max_header_bytes": 0,
                                       "rpc_max_conns_per_client": -1}}, "b.json")
    probs = problems(["-data-dir", data_dir, *f])
    assert any("limits.rpc_max_header_bytes must be greater than zero" in p for p in probs)
    assert any("limits.rpc_max_conns_per_client cannot be negative" in p for p in probs)


def test_negative_retry_interval(tmp_path: Path, data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-retry-interval", "-5s"],
                       "retry_interval cannot be negative")


def test_retry_join_template_is_a_problem(data_dir: str) -> None:
    assert one_problem(["-data-dir", data_dir, "-retry-join", '{{ GetPrivateIP }}'],
                       "retry_join: go-sockaddr templates")


def test_go_discover_strings_pass_through(data_dir: str) -> None:
    entry = "provider=aws tag_key=consul tag_value=server"
    assert run(["-data-dir", data_dir, "-retry-join", entry]).config.retry_join == (entry,)


def test_domain_root_dot_is_dropped(tmp_path: Path, data_dir: str) -> None:
    f = cfg_file(tmp_path, {"domain": "example."})
    assert run(["-data-dir", data_dir, *f]).config.domain == "example"


def test_env_is_ignored(data_dir: str) -> None:
    r = load(["-data-dir", data_dir], env={"CONSUL_HTTP_ADDR": "x"}, hostname="h",
             interfaces=lambda: ONE_PRIVATE)
    assert r.config.node_name == "h"


@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("30s", 30.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("250ms", 0.25),
    ("10us", 1e-5), ("-2s", -2.0), ("1h2m3s4ms", 3723.004), (".5s", 0.5),
])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, msg", [
    ("", 'time: invalid duration ""'), ("5", 'time: missing unit in duration "5"'),
    ("5d", 'time: unknown unit "d" in duration "5d"'), ("s", 'time: invalid duration "s"'),
    ("1 s", 'time: unknown unit " s" in duration "1 s"'),
])
def test_go_duration_errors(text: str, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        parse_go_duration(text)


def test_dev_client_does_not_bootstrap() -> None:
    cfg = run(["-dev", "-server=false"]).config
    assert (cfg.dev_mode, cfg.server, cfg.bootstrap) == (True, False, False)

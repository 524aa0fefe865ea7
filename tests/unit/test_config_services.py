"""Service and check definitions in agent config files (Consul's `service`/`services`,
`check`/`checks`): decoding in both key styles, per-source folding, problems naming the file
and key, and LocalAgent.apply_config (start and reload: added, changed, removed, API
registrations kept, a bad set changes nothing)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.config.load import Loaded, load
from agent.config.model import AgentConfig
from agent.errors import ConfigError, IsthmusError
from agent.local.body import Fields
from agent.local.defs import parse_service
from agent.local.manager import LocalAgent
from tests.aio import run

NODE_ID = "9d2f6f9e-2b4a-4cc4-8f51-5b3a7d4f8f10"


def write(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def loaded(*files: str, extra: tuple[str, ...] = ()) -> Loaded:
    argv = ["-dev", "-node", "n1"]
    for f in files:
        argv += ["-config-file", f]
    return load(argv + list(extra))


def problems(*files: str, extra: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        loaded(*files, extra=extra)
    return ei.value.problems


SNAKE = {"service": {"name": "web", "id": "web1", "tags": ["a", "b"], "address": "10.0.0.7",
                     "port": 8080, "meta": {"team": "x"}, "enable_tag_override": True,
                     "weights": {"passing": 3, "warning": 1}, "token": "t1",
                     "tagged_addresses": {"lan": {"address": "10.0.0.7", "port": 8080}},
                     "check": {"id": "web-http", "name": "HTTP", "http": "http://127.0.0.1:1/",
                               "method": "HEAD", "tls_skip_verify": True, "interval": "10s",
                               "timeout": "2s",
                               "deregister_critical_service_after": "1m"}}}
CAMEL = {"service": {"Name": "web", "ID": "web1", "Tags": ["a", "b"], "Address": "10.0.0.7",
                     "Port": 8080, "Meta": {"team": "x"}, "EnableTagOverride": True,
                     "Weights": {"Passing": 3, "Warning": 1}, "Token": "t1",
                     "TaggedAddresses": {"lan": {"Address": "10.0.0.7", "Port": 8080}},
                     "Check": {"CheckID": "web-http", "Name": "HTTP",
                               "HTTP": "http://127.0.0.1:1/", "Method": "HEAD",
                               "TLSSkipVerify": True, "Interval": "10s", "Timeout": "2s",
                               "DeregisterCriticalServiceAfter": "1m"}}}


def test_both_key_styles_decode_alike_and_as_the_api_does(tmp_path: Path) -> None:
    a = loaded(write(tmp_path / "snake.json", SNAKE)).config.services
    b = loaded(write(tmp_path / "camel.json", CAMEL)).config.services
    assert len(a) == len(b) == 1
    assert (a[0].service, a[0].checks, a[0].token) == (b[0].service, b[0].checks, b[0].token)
    api_service, api_checks = parse_service(Fields(CAMEL["service"], "ServiceDefinition"))
    assert a[0].service == api_service and list(a[0].checks) == api_checks
    svc = a[0].service
    assert (svc["ID"], svc["Service"], svc["Port"], svc["Weights"], svc["EnableTagOverride"]) \
        == ("web1", "web", 8080, {"Passing": 3, "Warning": 1}, True)
    chk, ct = a[0].checks[0]
    assert (chk["CheckID"], chk["ServiceID"], chk["Type"]) == ("web-http", "web1", "http")
    assert ct == {"HTTP": "http://127.0.0.1:1/", "Method": "HEAD", "TLSSkipVerify": True,
                  "Interval": 10.0, "Timeout": 2.0, "DeregisterCriticalServiceAfter": 60.0}
    assert a[0].token == "t1" and a[0].key == "service" and a[0].source.endswith("snake.json")


def test_single_and_list_fold_per_source_in_order(tmp_path: Path) -> None:
    # Consul: a source's `service` goes after its `services`; sources in command-line order.
    f1 = write(tmp_path / "1.json", {"service": {"name": "s3"},
                                     "services": [{"name": "s1"}, {"name": "s2"}],
                                     "check": {"name": "c2", "ttl": "5s"},
                                     "checks": [{"name": "c1", "ttl": "5s"}]})
    f2 = write(tmp_path / "2.json", {"services": [{"name": "s4"}],
                                     "checks": [{"id": "c3", "name": "C", "ttl": "1m",
                                                 "service_id": "s4"}]})
    cfg = loaded(f1, f2).config
    assert [d.service["ID"] for d in cfg.services] == ["s1", "s2", "s3", "s4"]
    assert [d.key for d in cfg.services] == ["services[0]", "services[1]", "service",
                                             "services[0]"]
    assert [d.check["CheckID"] for d in cfg.checks] == ["c1", "c2", "c3"]
    assert cfg.checks[2].check["ServiceID"] == "s4" and cfg.checks[2].source == f2


def test_config_dir_files_in_lexical_order(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    write(d / "b.json", {"service": {"name": "b"}})
    write(d / "a.json", {"service": {"name": "a"}})
    cfg = load(["-dev", "-config-dir", str(d)]).config
    assert [s.service["ID"] for s in cfg.services] == ["a", "b"]


def test_embedded_check_ids_default_as_consul(tmp_path: Path) -> None:
    f = write(tmp_path / "c.json", {"services": [
        {"name": "one", "check": {"ttl": "10s"}},
        {"name": "two", "id": "two-1", "checks": [{"ttl": "10s"},
                                                 {"tcp": "127.0.0.1:1", "interval": "5s"}]}]})
    s = loaded(f).config.services
    assert [c["CheckID"] for c, _ in s[0].checks] == ["service:one"]
    assert [c["CheckID"] for c, _ in s[1].checks] == ["service:two-1:1", "service:two-1:2"]
    assert s[0].checks[0][0]["Name"] == "Service 'one' check"


def test_bad_definitions_name_file_and_key(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.json", {
        "services": [{"name": "ok"}, {"port": 80}, {"name": "p", "port": "80"},
                     {"name": "x", "checks": [{"ttl": "5s"}, {"http": "http://h/"}]},
                     {"name": "y", "bogus": 1, "check": {"ttl": "1s", "nope": 2}},
                     {"name": "z", "meta": {"consul-x": "1"}}],
        "check": {"ttl": "5s"},
        "checks": [{"name": "d", "ttl": "5x"}]})
    probs = problems(f)
    assert f'"services[1]" in {f}: Missing service name' in probs
    assert any(p.startswith(f'"services[2]" in {f}: ') and "Port" in p for p in probs)
    assert f'"services[3].checks[1]" in {f}: Must provide TTL or ScriptArgs/' \
        "DockerContainerID/HTTP/TCP/UDP/GRPC/H2PING/OSService and Interval" in probs
    assert f'invalid config key "services[4].bogus" in {f}' in probs
    assert f'invalid config key "services[4].check.nope" in {f}' in probs
    assert f'"services[5]" in {f}: Invalid Service Meta: Key prefix \'consul-\' is reserved ' \
        "for internal use" in probs
    assert f'"check" in {f}: Missing check name' in probs
    assert any(p.startswith(f'"checks[0]" in {f}: ') and "5x" in p for p in probs)
    assert not any("services[0]" in p for p in probs)


def test_wrong_shapes(tmp_path: Path) -> None:
    f = write(tmp_path / "w.json", {"service": [{"name": "a"}], "services": {"name": "b"},
                                    "checks": ["c"]})
    probs = problems(f)
    assert f'"service" in {f}: expected an object, got [{{"name": "a"}}]' in probs
    assert f'"services" in {f}: expected a list of objects, got {{"name": "b"}}' in probs
    assert f'"checks" in {f}: expected a list of objects, got ["c"]' in probs


def test_unsupported_fields_warn_and_check_types_fail(tmp_path: Path) -> None:
    f = write(tmp_path / "u.json", {"service": {"name": "a", "connect": {"native": True},
                                                "check": {"ttl": "5s",
                                                          "success_before_passing": 2}}})
    r = loaded(f)
    assert any('"service.connect"' in w and f in w for w in r.warnings)
    assert any('"service.check.success_before_passing"' in w for w in r.warnings)
    g = write(tmp_path / "g.json", {"check": {"name": "g", "grpc": "x:1", "interval": "5s"}})
    assert problems(g) == [f'"check" in {g}: GRPC checks are not supported by Isthmus yet']


def test_script_checks_need_a_script_setting(tmp_path: Path) -> None:
    f = write(tmp_path / "s.json", {"service": {"name": "a", "check": {
        "args": ["/bin/true"], "interval": "10s"}}})
    assert problems(f) == [f'"service" in {f}: Scripts are disabled on this agent; to enable, '
                           "configure 'enable_script_checks' or 'enable_local_script_checks' "
                           "to true"]
    for flag in ("-enable-local-script-checks", "-enable-script-checks"):
        cfg = loaded(f, extra=(flag,)).config
        assert cfg.services[0].checks[0][1]["Args"] == ["/bin/true"]
    on = write(tmp_path / "on.json", {"enable_local_script_checks": True})
    assert loaded(f, on).config.enable_local_script_checks


def test_duplicate_ids_last_wins_with_a_warning(tmp_path: Path) -> None:
    f1 = write(tmp_path / "1.json", {"service": {"name": "a", "port": 1}})
    f2 = write(tmp_path / "2.json", {"service": {"name": "a", "port": 2}})
    r = loaded(f1, f2)
    assert any('service ID "a" is defined more than once' in w for w in r.warnings)
    assert [d.service["Port"] for d in r.config.services] == [1, 2]


# ----------------------------------------------------------------- LocalAgent.apply_config

class NoCatalog:
    async def rpc(self, method: str, body: dict):
        if method == "Catalog.NodeServices":
            return {"NodeServices": None, "Index": 1}
        if method == "Health.NodeChecks":
            return {"HealthChecks": [], "Index": 1}
        return True


def defs_of(tmp_path: Path, data: dict, name: str = "svc.json") -> AgentConfig:
    return loaded(write(tmp_path / name, data)).config


def agent_config(tmp_path: Path, base: AgentConfig, data_dir: bool = True) -> AgentConfig:
    return AgentConfig(node_name="n1", data_dir=str(tmp_path / "data") if data_dir else None,
                       advertise_addr="10.0.0.1", services=base.services, checks=base.checks)


V1 = {"services": [{"name": "web", "port": 80, "check": {"ttl": "1m"}},
                   {"name": "db", "port": 5432, "checks": [{"id": "db-a", "ttl": "1m"},
                                                           {"id": "db-b", "ttl": "2m"}]},
                   {"name": "gone", "port": 1}],
      "checks": [{"name": "top", "ttl": "1m", "service_id": "web"},
                 {"name": "node-check", "ttl": "1m"}]}
V2 = {"services": [{"name": "web", "port": 81, "check": {"ttl": "1m"}},
                   {"name": "db", "port": 5432, "checks": [{"id": "db-a", "ttl": "1m"}]},
                   {"name": "new", "port": 2}],
      "checks": [{"name": "top", "ttl": "1m", "service_id": "web"}]}


def test_apply_config_adds_changes_removes_and_keeps_api_services(tmp_path: Path) -> None:
    async def main() -> None:
        v1, v2 = defs_of(tmp_path, V1), defs_of(tmp_path, V2, "v2.json")
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            assert set(la.services()) == {"web", "db", "gone"}
            assert set(la.checks()) == {"service:web", "db-a", "db-b", "top",
                                        "node-check"}
            api, api_checks = parse_service(Fields({"Name": "api", "Check": {"TTL": "1m"}},
                                                   "ServiceDefinition"))
            la.add_service(api, api_checks)
            la.update_ttl("service:web", "passing", "ok")
            la.update_ttl("db-a", "passing", "db ok")

            la.apply_config(v2.services, v2.checks)
            assert set(la.services()) == {"web", "db", "new", "api"}
            assert la.services()["web"]["Port"] == 81
            assert set(la.checks()) == {"service:web", "db-a", "top", "service:api"}
            # Checks of a changed service keep their status (Consul's check snapshot).
            assert la.checks()["service:web"]["Status"] == "passing"
            assert la.checks()["db-a"]["Output"] == "db ok"
            # Nothing config-sourced was persisted; the API service was.
            files = la.files.load()
            assert [p["Service"]["ID"] for p in files[0]] == ["api"]
            assert [p["Check"]["CheckID"] for p in files[1]] == ["service:api"]
        finally:
            await la.stop()
    run(main)


def test_unchanged_definitions_are_left_running(tmp_path: Path) -> None:
    async def main() -> None:
        v1 = defs_of(tmp_path, V1)
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            runner = la.runners["service:web"]
            rev = la.state.services["web"].rev
            again = defs_of(tmp_path, V1, "again.json")
            la.apply_config(again.services, again.checks)
            assert la.runners["service:web"] is runner and la.state.services["web"].rev == rev
        finally:
            await la.stop()
    run(main)


def test_bad_reload_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        v1 = defs_of(tmp_path, V1)
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            before = (la.services(), la.checks())
            bad = defs_of(tmp_path, {"services": [{"name": "web"}],
                                     "checks": [{"name": "orphan", "ttl": "1m",
                                                 "service_id": "gone"}]}, "bad.json")
            with pytest.raises(IsthmusError, match=r'^"checks\[0\]" in .*bad\.json: .*'
                                                   r'ServiceID "gone" does not exist'):
                la.apply_config(bad.services, bad.checks)
            assert (la.services(), la.checks()) == before
        finally:
            await la.stop()
    run(main)


def test_api_takeover_and_deregistration_are_undone_by_reload(tmp_path: Path) -> None:
    async def main() -> None:
        v1 = defs_of(tmp_path, V1)
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            svc, chks = parse_service(Fields({"Name": "web", "Port": 9999}, "ServiceDefinition"))
            la.add_service(svc, chks)           # the API re-registers a config service
            la.remove_service("gone")           # and deregisters another
            assert la.services()["web"]["Port"] == 9999
            la.apply_config(v1.services, v1.checks)
            assert la.services()["web"]["Port"] == 80 and "gone" in la.services()
            assert la.files.load()[0] == []     # the API's copy of "web" was purged
        finally:
            await la.stop()
    run(main)


def test_restart_prefers_config_over_persisted_copy(tmp_path: Path) -> None:
    async def main() -> None:
        empty = AgentConfig()
        la = LocalAgent(agent_config(tmp_path, empty), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        svc, chks = parse_service(Fields({"Name": "web", "Port": 1, "Check": {"TTL": "1m"}},
                                         "ServiceDefinition"))
        la.add_service(svc, chks)
        keep, keep_checks = parse_service(Fields({"Name": "kept"}, "ServiceDefinition"))
        la.add_service(keep, keep_checks)
        await la.stop()

        v1 = defs_of(tmp_path, V1)
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            assert la.services()["web"]["Port"] == 80 and "kept" in la.services()
            assert [p["Service"]["ID"] for p in la.files.load()[0]] == ["kept"]
            assert la.files.load()[1] == []
        finally:
            await la.stop()
    run(main)


def test_start_fails_on_a_check_for_an_unknown_service(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = defs_of(tmp_path, {"check": {"name": "c", "ttl": "1m", "service_id": "nope"}})
        la = LocalAgent(agent_config(tmp_path, cfg, data_dir=False), NODE_ID,
                        NoCatalog().rpc, lambda: 1)
        with pytest.raises(IsthmusError, match='ServiceID "nope" does not exist'):
            await la.start()
        await la.stop()
    run(main)


def test_restart_restores_config_ttl_status(tmp_path: Path) -> None:
    async def main() -> None:
        v1 = defs_of(tmp_path, V1)
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        la.update_ttl("service:web", "passing", "still fine")
        la.update_ttl("node-check", "warning", "meh")
        await la.stop()
        la = LocalAgent(agent_config(tmp_path, v1), NODE_ID, NoCatalog().rpc, lambda: 1)
        await la.start()
        try:
            c = la.checks()
            assert (c["service:web"]["Status"], c["service:web"]["Output"]) == \
                ("passing", "still fine")
            assert c["node-check"]["Status"] == "warning"
            assert c["db-a"]["Status"] == "critical"
        finally:
            await la.stop()
    run(main)

"""Services and checks defined in config files on a real -dev agent: registered at start,
seen through py-consul in /v1/agent/* and the catalog with their checks; `isthmus reload`
(and PUT /v1/agent/reload) applies edited files as Consul does (changed, added, removed;
API registrations stay); a bad file fails the reload and changes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import consul
import pytest

from .procs import AgentProc, free_port, isthmus, wait_until

pytestmark = pytest.mark.integration


def wait_for(fn, within: float = 30.0, what: str = "condition"):
    return wait_until(fn, within, what, ignore=(consul.ConsulException, OSError, KeyError))


def write(path: Path, data) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def catalog_ids(c: consul.Consul) -> set[str]:
    _, node = c.catalog.node("devnode")
    return set((node or {}).get("Services", {})) - {"consul"}     # the server's own


def test_config_file_services_reload_and_bad_reload(tmp_path: Path) -> None:
    http_port = free_port()
    main = write(tmp_path / "main.json", {
        "service": {"name": "web", "id": "web1", "port": 8080, "tags": ["v1"],
                    "meta": {"team": "edge"},
                    "checks": [{"id": "web-http", "name": "agent api",
                                "http": f"http://127.0.0.1:{http_port}/v1/agent/self",
                                "interval": "1s", "timeout": "2s"},
                               {"id": "web-ttl", "ttl": "10m"}]},
        "check": {"name": "disk", "ttl": "10m", "status": "passing"}})
    conf_d = tmp_path / "conf.d"
    write(conf_d / "db.json", {"services": [{"Name": "db", "Port": 5432,
                                             "Check": {"TTL": "10m", "Status": "warning"}}]})
    agent = AgentProc("-dev", "-node", "devnode", "-http-port", str(http_port),
                      "-config-file", main, "-config-dir", str(conf_d))
    try:
        agent.wait_ready()
        c = consul.Consul(host=agent.host, port=agent.http_port)
        http = f"-http-addr={agent.http}"

        # At start: both files' services with their checks, locally and in the catalog.
        svcs = c.agent.services()
        assert set(svcs) == {"web1", "db"}
        assert (svcs["web1"]["Port"], svcs["web1"]["Tags"], svcs["web1"]["Meta"]) == \
            (8080, ["v1"], {"team": "edge"})
        checks = c.agent.checks()
        assert set(checks) == {"web-http", "web-ttl", "disk", "service:db"}
        assert checks["service:db"]["Status"] == "warning"
        assert checks["disk"]["Status"] == "passing" and checks["disk"]["ServiceID"] == ""
        wait_for(lambda: c.agent.checks()["web-http"]["Status"] == "passing",
                 what="HTTP check from the config file passing")
        wait_for(lambda: catalog_ids(c) >= {"web1", "db"}, what="catalog has config services")
        _, nodes = wait_for(lambda: (lambda r: r if r[1] and any(
            ch["CheckID"] == "web-http" and ch["Status"] == "passing"
            for ch in r[1][0]["Checks"]) else None)(c.health.service("web")),
            what="health of web shows its passing HTTP check")
        assert {ch["CheckID"] for ch in nodes[0]["Checks"]} >= {"web-http", "web-ttl"}

        # An API registration, and a TTL status that a reload must not reset.
        assert c.agent.service.register("api", service_id="api1", port=9000,
                                         check=consul.Check.ttl("10m"))
        assert c.agent.check.ttl_pass("web-ttl", "fine")

        # Edit: web changes, db's file goes, a new file adds cache; then `isthmus reload`.
        main_v2 = json.loads(Path(main).read_text())
        main_v2["service"]["port"] = 8081
        main_v2["service"]["tags"] = ["v2"]
        write(Path(main), main_v2)
        (conf_d / "db.json").unlink()
        write(conf_d / "cache.json", {"service": {"name": "cache", "port": 6379}})
        r = isthmus("reload", http)
        assert r.returncode == 0 and r.stdout.strip() == "Configuration reload triggered", \
            r.stderr
        svcs = c.agent.services()
        assert set(svcs) == {"web1", "cache", "api1"}
        assert (svcs["web1"]["Port"], svcs["web1"]["Tags"]) == (8081, ["v2"])
        checks = c.agent.checks()
        assert set(checks) == {"web-http", "web-ttl", "disk", "service:api1"}
        assert (checks["web-ttl"]["Status"], checks["web-ttl"]["Output"]) == ("passing", "fine")
        wait_for(lambda: catalog_ids(c) == {"web1", "cache", "api1"},
                 what="catalog follows the reload (db deregistered)")
        _, web = c.catalog.service("web")
        assert web[0]["ServicePort"] == 8081 and web[0]["ServiceTags"] == ["v2"]

        # A bad definition at reload: the command fails naming file and key; nothing changes.
        before = (c.agent.services(), set(c.agent.checks()))
        bad = write(conf_d / "zz-bad.json", {"services": [{"name": "worse", "port": 70000}]})
        r = isthmus("reload", http)
        assert r.returncode == 1
        assert r.stderr.startswith("Error reloading: Unexpected response code: 500")
        assert f'"services[0]" in {bad}: Invalid service port: 70000' in r.stderr
        status, body, _ = agent.get("/v1/agent/reload", "PUT")
        assert status == 500 and "Invalid service port: 70000" in body
        with pytest.raises(consul.ConsulException, match="Invalid service port: 70000"):
            c.agent.reload()                    # py-consul sees the failure too
        assert (c.agent.services(), set(c.agent.checks())) == before

        # A check for a service that does not exist: the reload is refused as a whole.
        write(conf_d / "zz-bad.json", {"service": {"name": "newsvc"},
                                       "check": {"name": "orphan", "ttl": "1m",
                                                 "service_id": "db"}})
        r = isthmus("reload", http)
        assert r.returncode == 1 and 'ServiceID "db" does not exist' in r.stderr, r.stderr
        assert "zz-bad.json" in r.stderr
        assert (c.agent.services(), set(c.agent.checks())) == before

        # Broken JSON: also refused.
        Path(bad).write_text("{")
        r = isthmus("reload", http)
        assert r.returncode == 1 and f"failed to parse {bad}" in r.stderr
        assert (c.agent.services(), set(c.agent.checks())) == before

        # Fixed: the next reload applies; the API service is still there.
        Path(bad).unlink()
        assert c.agent.reload() is True
        assert set(c.agent.services()) == {"web1", "cache", "api1"}
        assert agent.proc.poll() is None
    finally:
        agent.kill()


def test_bad_definition_at_start_fails_with_file_and_key(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.json", {"services": [{"name": "ok"},
                                                     {"name": "x", "check": {"http": "h"}}]})
    agent = AgentProc("-dev", "-config-file", bad)
    try:
        assert agent.wait_exit() == 1
        assert "Config validation failed" in agent.output
        assert f'"services[1].check" in {bad}: Must provide TTL' in agent.output
    finally:
        agent.kill()


def test_restart_with_data_dir_keeps_api_services_not_removed_config_ones(tmp_path: Path):
    data = tmp_path / "data"
    f = write(tmp_path / "svc.json", {"services": [{"name": "cfg-a", "check": {"ttl": "10m"}},
                                                   {"name": "cfg-b"}]})
    args = ("-dev", "-node", "devnode", "-data-dir", str(data), "-config-file", f)
    agent = AgentProc(*args)
    try:
        agent.wait_ready()
        c = consul.Consul(host=agent.host, port=agent.http_port)
        assert c.agent.service.register("api", service_id="api1")
        assert c.agent.check.ttl_pass("service:cfg-a", "up")
        assert set(c.agent.services()) == {"cfg-a", "cfg-b", "api1"}
    finally:
        agent.kill()
    write(Path(f), {"services": [{"name": "cfg-a", "check": {"ttl": "10m"}}]})
    agent = AgentProc(*args)
    try:
        agent.wait_ready()
        c = consul.Consul(host=agent.host, port=agent.http_port)
        assert set(c.agent.services()) == {"cfg-a", "api1"}
        chk = c.agent.checks()["service:cfg-a"]
        assert (chk["Status"], chk["Output"]) == ("passing", "up")     # TTL state restored
    finally:
        agent.kill()


def test_sighup_reloads_the_config_files(tmp_path: Path) -> None:
    import signal
    main = write(tmp_path / "main.json", {"service": {"name": "web", "port": 80}})
    agent = AgentProc("-dev", "-node", "devnode", "-config-file", main)
    try:
        agent.wait_ready()
        c = consul.Consul(host=agent.host, port=agent.http_port)
        assert set(c.agent.services()) == {"web"}
        write(tmp_path / "main.json", {"services": [{"name": "web", "port": 81},
                                                    {"name": "api", "port": 9000}]})
        agent.signal(signal.SIGHUP)
        wait_for(lambda: set(c.agent.services()) == {"web", "api"}, what="SIGHUP reload")
        assert c.agent.services()["web"]["Port"] == 81
        write(tmp_path / "main.json", {"services": [{"name": "web", "port": "bad"}]})
        agent.signal(signal.SIGHUP)                      # a bad file: logged, nothing changes
        wait_for(lambda: "Failed to reload configs" in agent.output, what="error logged")
        assert set(c.agent.services()) == {"web", "api"} and agent.proc.poll() is None
    finally:
        agent.kill()

"""Agent services and checks through py-consul against real agents: a -dev server, and a
client agent whose services reach the catalog through its server and survive its restart."""
from __future__ import annotations

import json
import signal
import time

import consul
import pytest

from .procs import AgentProc, isthmus

pytestmark = pytest.mark.integration


def wait_for(fn, within: float = 30.0, what: str = "condition"):
    """Poll `fn()` until it returns a truthy value; returns it (fails after `within`)."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < within:
        try:
            last = fn()
        except (consul.ConsulException, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {within}s; last: {last!r}")


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "devnode")
    try:
        a.wait_ready()
        yield a
    finally:
        a.kill()


def client_of(a: AgentProc) -> consul.Consul:
    return consul.Consul(host=a.host, port=a.http_port)


def test_service_with_ttl_check_and_maintenance(dev):
    c = client_of(dev)
    assert c.agent.service.register("web", service_id="web1", port=8080, tags=["v1"],
                                    meta={"team": "a"}, check=consul.Check.ttl("30s"))
    services = c.agent.services()
    assert services["web1"]["Service"] == "web"
    assert services["web1"]["Tags"] == ["v1"] and services["web1"]["Port"] == 8080
    checks = c.agent.checks()
    assert checks["service:web1"]["Status"] == "critical"
    assert checks["service:web1"]["ServiceName"] == "web"

    assert c.agent.check.ttl_pass("service:web1", "all good")
    chk = c.agent.checks()["service:web1"]
    assert (chk["Status"], chk["Output"]) == ("passing", "all good")
    assert c.agent.check.ttl_warn("service:web1", "meh")
    assert c.agent.checks()["service:web1"]["Status"] == "warning"

    # The catalog and health endpoints see it once anti-entropy pushed it.
    wait_for(lambda: c.catalog.service("web")[1], what="web in the catalog")
    wait_for(lambda: [x for x in c.health.service("web")[1]
                      if any(k["CheckID"] == "service:web1" and k["Status"] == "warning"
                             for k in x["Checks"])], what="warning in health")

    assert c.agent.service.maintenance("web1", True, "upgrading")
    maint = c.agent.checks()["_service_maintenance:web1"]
    assert maint["Status"] == "critical" and maint["Notes"] == "upgrading"
    wait_for(lambda: not c.health.service("web", passing=True)[1], what="web hidden in maint")
    assert c.agent.service.maintenance("web1", False)
    assert "_service_maintenance:web1" not in c.agent.checks()

    assert c.agent.maintenance(True, "node work")
    assert c.agent.checks()["_node_maintenance"]["Notes"] == "node work"
    assert c.agent.maintenance(False)
    assert "_node_maintenance" not in c.agent.checks()

    assert c.agent.service.deregister("web1")
    assert "web1" not in c.agent.services()
    assert "service:web1" not in c.agent.checks()
    wait_for(lambda: not c.catalog.service("web")[1], what="web gone from the catalog")


def test_check_register_update_and_errors(dev):
    c = client_of(dev)
    assert c.agent.check.register("mem", check=consul.Check.ttl("1m"), notes="memory")
    status, _, _ = dev.get("/v1/agent/check/update/mem", "PUT",
                           json.dumps({"status": "passing", "output": "42%"}).encode())
    assert status == 200
    assert c.agent.checks()["mem"]["Output"] == "42%"
    status, body, _ = dev.get("/v1/agent/check/update/mem", "PUT", b'{"Status": "bogus"}')
    assert (status, body) == (400, "Invalid check status: 'bogus'")
    status, body, _ = dev.get("/v1/agent/check/pass/nope", "PUT")
    assert status == 404 and 'Unknown check ID "nope"' in body
    # Script checks are refused unless enable_script_checks is set.
    status, body, _ = dev.get("/v1/agent/check/register", "PUT", json.dumps(
        {"Name": "s", "Args": ["/bin/true"], "Interval": "10s"}).encode())
    assert status == 500 and body.startswith("Scripts are disabled on this agent")
    status, body, _ = dev.get("/v1/agent/service/register", "PUT", b'{"Port": 1}')
    assert (status, body) == (400, "Missing service name")
    status, body, _ = dev.get("/v1/agent/service/register", "PUT", b'{"Name": "x", "Port": "1"}')
    assert status == 400 and body.startswith("Request decode failed:")
    status, body, _ = dev.get("/v1/agent/service/register", "PUT", b'{"Name": ')
    assert status == 400 and body.startswith("Request decode failed:")
    status, body, _ = dev.get("/v1/agent/service/deregister/nope", "PUT")
    assert status == 404
    status, body, _ = dev.get("/v1/agent/maintenance", "PUT")
    assert (status, body) == (400, "Missing value for enable")
    # Case-insensitive bodies, as Consul decodes them.
    status, _, _ = dev.get("/v1/agent/service/register", "PUT", json.dumps(
        {"name": "lower", "PORT": 7, "check": {"ttl": "10s", "status": "passing"}}).encode())
    assert status == 200
    assert c.agent.services()["lower"]["Port"] == 7
    assert c.agent.checks()["service:lower"]["Status"] == "passing"
    svc = dev.get_json("/v1/agent/service/lower")
    assert svc["ID"] == "lower" and svc["ContentHash"]
    assert dev.get("/v1/agent/reload", "PUT")[0] == 200
    assert c.agent.check.deregister("mem")
    assert c.agent.service.deregister("lower")


def test_tcp_check_against_agent_port(dev):
    c = client_of(dev)
    assert c.agent.service.register(
        "httpapi", port=dev.http_port,
        check=consul.Check.tcp("127.0.0.1", dev.http_port, "1s", timeout="1s"))
    wait_for(lambda: c.agent.checks()["service:httpapi"]["Status"] == "passing",
             what="tcp check passing")
    assert c.agent.checks()["service:httpapi"]["Output"] == \
        f"TCP connect 127.0.0.1:{dev.http_port}: Success"
    assert c.agent.service.deregister("httpapi")


def test_services_cli_register_and_deregister(dev, tmp_path):
    c = client_of(dev)
    http = f"-http-addr={dev.http}"
    r = isthmus("services", "register", http, "-name=cache", "-id=cache1", "-port=6379",
                "-tag=primary", "-tag=v7", "-meta=team=db", "-address=127.0.0.5")
    assert r.returncode == 0 and r.stdout.strip() == "Registered service: cache", r.stderr
    svc = c.agent.services()["cache1"]
    assert (svc["Port"], svc["Tags"], svc["Meta"], svc["Address"]) == \
        (6379, ["primary", "v7"], {"team": "db"}, "127.0.0.5")
    f = tmp_path / "svc.json"
    f.write_text(json.dumps({"service": {"name": "queue", "port": 5672,
                                         "check": {"ttl": "30s"}}}))
    r = isthmus("services", "register", http, str(f))
    assert r.returncode == 0 and "Registered service: queue" in r.stdout, r.stderr
    assert "service:queue" in c.agent.checks()
    r = isthmus("services", "deregister", http, str(f))
    assert r.returncode == 0 and r.stdout.strip() == "Deregistered service: queue"
    r = isthmus("services", "deregister", http, "-id=cache1")
    assert r.returncode == 0 and r.stdout.strip() == "Deregistered service: cache1"
    assert c.agent.services() == {}
    r = isthmus("services", "deregister", http, "-id=cache1")
    assert r.returncode == 1 and "404" in r.stderr
    r = isthmus("services", "register", http)
    assert r.returncode == 1


def test_client_agent_services_reach_catalog_and_survive_restart(tmp_path):
    server = AgentProc("-dev", "-node", "srv")
    client = None
    try:
        server.wait_ready()
        args = ("-node", "cli1", "-bind", "127.0.0.1", "-data-dir", str(tmp_path / "client"),
                "-retry-join", f"127.0.0.1:{server.serf_lan_port}", "-retry-interval", "1s")
        client = AgentProc(*args)
        client.wait_ready()
        cc, sc = client_of(client), client_of(server)
        assert cc.agent.service.register("api", service_id="api1", port=9000,
                                         check=consul.Check.ttl("5m"))
        assert cc.agent.check.ttl_pass("service:api1", "up")
        # Through the client: its RPCs go to the server.
        t0 = time.monotonic()
        nodes = wait_for(lambda: cc.catalog.service("api")[1], what="api via client")
        assert nodes[0]["Node"] == "cli1" and nodes[0]["ServicePort"] == 9000
        wait_for(lambda: [k for k in sc.health.node("cli1")[1]
                          if k["CheckID"] == "service:api1" and k["Status"] == "passing"],
                 what="api check on the server")
        print(f"client service visible on the server after {time.monotonic() - t0:.2f}s")

        client.signal(signal.SIGTERM)
        assert client.wait_exit() == 0
        # While the client is down its service leaves the catalog; after the restart the
        # client re-reads it from its data dir and anti-entropy registers it again.
        assert sc.catalog.deregister("cli1", service_id="api1")
        wait_for(lambda: not sc.catalog.service("api")[1], what="api gone from the catalog")
        client = AgentProc(*args, "-http-port", str(client.http_port))
        client.wait_ready()
        cc = client_of(client)
        assert "api1" in cc.agent.services()
        assert cc.agent.checks()["service:api1"]["Status"] == "passing"   # TTL state kept
        nodes = wait_for(lambda: sc.catalog.service("api")[1], what="api back after restart")
        assert nodes[0]["Node"] == "cli1"
    finally:
        if client is not None:
            client.kill()
        server.kill()


def test_client_without_servers_says_so(tmp_path):
    a = AgentProc("-node", "lonely", "-bind", "127.0.0.1", "-data-dir", str(tmp_path))
    try:
        a.wait_ready()
        status, body, _ = a.get("/v1/catalog/services")
        assert (status, body) == (500, "No known Consul servers")
        # Local registration still works; anti-entropy pushes it once a server shows up.
        assert client_of(a).agent.service.register("solo")
        assert "solo" in client_of(a).agent.services()
    finally:
        a.kill()

"""Catalog and health over HTTP on real agents, driven by py-consul (unchanged) plus raw
HTTP for bad input and headers, and the `isthmus catalog` CLI. A three-server cluster
shows a registration replicated to every server and surviving kill -9 of the leader."""
from __future__ import annotations

import json
import logging
import threading
import time

import consul
import pytest

from .procs import isthmus
from .test_raft_cluster import Server, agreed_leader, wait

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)


def test_register_read_back_everywhere(c):
    # py-consul sends register(node_meta=) as ?node-meta= query parameters, which Consul's
    # CatalogRegister ignores (it reads NodeMeta from the body only): so do we
    assert c.catalog.register(
        "web1", "10.1.0.1", node_meta={"rack": "r1"},
        service={"Service": "web", "ID": "web-a", "Tags": ["v1", "primary"], "Port": 8080},
        check={"Name": "web alive", "ServiceID": "web-a", "Status": "passing"}) is True
    assert c.catalog.register("web2", "10.1.0.2",
                              service={"Service": "web", "Tags": ["v2"], "Port": 8081},
                              check={"CheckID": "web2-down", "ServiceID": "web"}) is True

    _, nodes = c.catalog.nodes()
    assert {"web1", "web2"} <= {n["Node"] for n in nodes}
    _, services = c.catalog.services()
    assert sorted(services["web"]) == ["primary", "v1", "v2"]
    _, sn = c.catalog.service("web")
    assert [(s["Node"], s["ServiceID"], s["ServicePort"]) for s in sn] == \
        [("web1", "web-a", 8080), ("web2", "web", 8081)]
    assert sn[0]["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    _, sn = c.catalog.service("web", tag="primary")
    assert [s["Node"] for s in sn] == ["web1"]
    _, node = c.catalog.node("web1")
    assert node["Node"]["Meta"] is None and list(node["Services"]) == ["web-a"]

    _, health = c.health.service("web")
    assert len(health) == 2
    _, health = c.health.service("web", passing=True)
    assert [h["Node"]["Node"] for h in health] == ["web1"]
    _, checks = c.health.checks("web")
    by_id = {x["CheckID"]: x for x in checks}
    assert by_id["web2-down"]["Status"] == "critical"          # Consul's default status
    assert by_id["web alive"]["ServiceName"] == "web" and by_id["web alive"]["ServiceTags"]
    _, crit = c.health.state("critical")
    assert "web2-down" in {x["CheckID"] for x in crit}
    _, node_checks = c.health.node("web2")
    assert [x["CheckID"] for x in node_checks] == ["web2-down"]

    assert c.catalog.deregister("web2", service_id="web") is True
    _, node_checks = c.health.node("web2")
    assert node_checks == []                                     # its checks went with it
    assert c.catalog.deregister("web1") is True
    assert c.catalog.node("web1")[1] is None
    assert c.catalog.datacenters() == ["dc1"]


def test_server_registers_itself_with_serf_health(c):
    def found():
        _, checks = c.health.node("dev1")
        return any(x["CheckID"] == "serfHealth" and x["Status"] == "passing" for x in checks)
    wait(found, 15, "serfHealth of the dev server")
    _, svc = c.health.service("consul")
    assert [s["Node"]["Node"] for s in svc] == ["dev1"]
    chk = next(x for x in svc[0]["Checks"] if x["CheckID"] == "serfHealth")
    assert (chk["Name"], chk["Output"]) == ("Serf Health Status", "Agent alive and reachable")


def test_blocking_query_wakes_on_registration(c):
    index, _ = c.catalog.services()
    got: dict = {}

    def block():
        t0 = time.monotonic()
        got["index"], got["services"] = c.catalog.services(index=index, wait="30s")
        got["took"] = time.monotonic() - t0
    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.3)
    assert t.is_alive()
    c.catalog.register("blk", "10.9.9.9", service={"Service": "blocky"})
    t.join(20)
    assert not t.is_alive() and "blocky" in got["services"] and int(got["index"]) > int(index)
    log.info("blocking query woke after %.2fs", got["took"])
    c.catalog.deregister("blk")


def test_bodies_decode_case_insensitively_and_bad_input(dev, c):
    body = {"node": "ci", "ADDRESS": "10.2.0.1", "service": {"service": "low", "port": 9},
            "nodemeta": {"Key": "V"}}
    status, text, _ = dev.get("/v1/catalog/register", "PUT", json.dumps(body).encode())
    assert (status, text) == (200, "true")
    _, node = c.catalog.node("ci")
    assert node["Node"]["Meta"] == {"Key": "V"} and node["Services"]["low"]["Port"] == 9

    bad = [
        (b'{"Node": 5, "Address": "x"}', 400,
         "Request decode failed: json: cannot unmarshal number into Go struct field "
         "RegisterRequest.Node of type string"),
        (b'{"Node": "n", "Address": "a", "Service": {"Port": "80"}}', 400,
         "Request decode failed: json: cannot unmarshal string into Go struct field "
         "RegisterRequest.Service.Port of type int"),
        (b'{"Node": ', 400, "Request decode failed: unexpected EOF"),
        (b"", 400, "Request decode failed: EOF"),
        (b'{"Node": "n"}', 500, "Must provide address if SkipNodeUpdate is not set"),
        (b'{"Address": "a"}', 500, "Must provide node"),
        (b'{"Node": "n", "Address": "a", "Service": {"ID": "x"}}', 500,
         "Must provide service name (Service.Service) with ID (Service.ID)"),
    ]
    for raw, code, msg in bad:
        status, text, _ = dev.get("/v1/catalog/register", "PUT", raw)
        assert (status, text) == (code, msg), raw
    assert dev.get("/v1/catalog/deregister", "PUT", b"{}")[:2] == (500, "Must provide node")
    assert dev.get("/v1/catalog/register")[0] == 405
    assert dev.get("/v1/health/service/web?passing=maybe")[:2] == (400, "Invalid value for ?passing")
    assert dev.get("/v1/catalog/service/")[:2] == (400, "Missing service name")
    assert dev.get("/v1/health/state/")[:2] == (400, "Missing check state")
    assert dev.get("/v1/catalog/nodes?index=abc")[:2] == (400, "Invalid index")
    assert dev.get("/v1/catalog/nodes?dc=nowhere")[:2] == (500, "No path to datacenter")
    status, text, headers = dev.get("/v1/health/state/bogus")
    assert (status, text) == (200, "[]")                        # Consul filters, no error
    status, text, headers = dev.get("/v1/catalog/node/ghost")
    assert (status, text) == (200, "null")
    assert int(headers["X-Consul-Index"]) >= 1 and headers["X-Consul-KnownLeader"] == "true"
    assert "X-Consul-LastContact" in headers
    status, text, _ = dev.get("/v1/catalog/service/nothing-here")
    assert (status, text) == (200, "[]")
    assert dev.get("/v1/catalog/nodes")[0] == 200               # still serving
    c.catalog.deregister("ci")


def test_cli_catalog(dev, c):
    body = {"Node": "cli1", "Address": "10.3.0.1", "NodeMeta": {"zone": "z1"},
            "Service": {"Service": "api", "Tags": ["b", "a"]}}
    assert dev.get("/v1/catalog/register", "PUT", json.dumps(body).encode())[0] == 200
    addr = ["-http-addr", f"{dev.host}:{dev.http_port}"]
    r = isthmus("catalog", "datacenters", *addr)
    assert (r.returncode, r.stdout) == (0, "dc1\n")
    r = isthmus("catalog", "nodes", *addr)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].split() == ["Node", "ID", "Address", "DC"]
    assert any(line.split()[0] == "cli1" and "10.3.0.1" in line for line in lines[1:])
    r = isthmus("catalog", "nodes", "-service", "api", "-detailed", *addr)
    assert r.stdout.splitlines()[0].split() == ["Node", "ID", "Address", "DC", "TaggedAddresses",
                                                "Meta"]
    assert "zone=z1" in r.stdout
    r = isthmus("catalog", "nodes", "-node-meta", "zone=z1", *addr)
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ["cli1"]
    r = isthmus("catalog", "services", "-tags", *addr)
    assert any(line.split() == ["api", "a,b"] for line in r.stdout.splitlines())
    r = isthmus("catalog", "services", "-node", "cli1", *addr)
    assert r.stdout == "api\n"
    r = isthmus("catalog", "services", "-node", "nobody", *addr)
    assert r.returncode == 0 and "No services match" in r.stderr
    c.catalog.deregister("cli1")


@pytest.fixture
def cluster(tmp_path):
    first = Server(0, str(tmp_path), None)
    join = f"{first.host}:{first.ports['serf-lan']}"
    servers = [first] + [Server(i, str(tmp_path), join) for i in (1, 2)]
    yield servers
    for s in servers:
        if s.proc is not None:
            s.proc.kill()


def test_three_servers_replicate_and_survive_leader_kill(cluster):
    for s in cluster:
        s.start()
    wait(lambda: agreed_leader(cluster), 30, "one agreed leader")
    leader = agreed_leader(cluster)
    clients = {s.name: consul.Consul(host=s.host, port=s.ports["http"]) for s in cluster}
    follower = next(s for s in cluster if s.rpc != leader)
    assert clients[follower.name].catalog.register(      # a follower forwards the write
        "ext1", "10.5.0.1", service={"Service": "replicated", "Port": 1})

    def everywhere(servers) -> bool:
        try:
            return all([x["Node"] for x in clients[s.name].catalog.service(
                "replicated", consistency="stale")[1]] == ["ext1"] for s in servers)
        except Exception:
            return False
    wait(lambda: everywhere(cluster), 15, "registration on every server")
    # the leader registered every server with the consul service
    wait(lambda: len(clients[cluster[0].name].health.service("consul", passing=True)[1]) == 3,
         30, "three passing consul instances")

    victim = next(s for s in cluster if s.rpc == leader)
    survivors = [s for s in cluster if s is not victim]
    victim.proc.kill()
    took = wait(lambda: agreed_leader(survivors) not in ("", leader), 15, "a new leader")
    log.info("new leader after %.2fs", took)
    assert everywhere(survivors)
    # the new leader marks the killed server's serfHealth critical once gossip declares it failed
    def victim_critical() -> bool:
        try:
            _, checks = clients[survivors[0].name].health.node(victim.name)
        except Exception:
            return False
        return any(x["CheckID"] == "serfHealth" and x["Status"] == "critical" for x in checks)
    took = wait(victim_critical, 60, "serfHealth critical for the killed leader")
    log.info("killed server marked critical after %.2fs", took)

"""`?filter=` over HTTP on a real -dev agent, driven by py-consul (its filter_expr argument
where it has one, raw HTTP elsewhere): every endpoint Consul filters, and Consul's answer
to a bad expression (500, "Failed to create boolean expression evaluator: ...")."""
from __future__ import annotations

import json
import urllib.parse

import consul
import pytest

from .procs import AgentProc

pytestmark = pytest.mark.integration
PREFIX = "Failed to create boolean expression evaluator: "


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "dev1")
    a.wait_ready()
    c = consul.Consul(host=a.host, port=a.http_port)
    assert c.catalog.register("n1", "10.0.0.1", service={
        "Service": "web", "ID": "web-1", "Tags": ["v1", "primary"], "Port": 80,
        "Meta": {"env": "prod"}}, check={"CheckID": "c1", "Name": "web1 alive",
                                         "ServiceID": "web-1", "Status": "passing"})
    assert c.catalog.register("n2", "10.0.0.2", service={
        "Service": "web", "ID": "web-2", "Tags": ["v2"], "Port": 81,
        "Meta": {"env": "dev"}}, check={"CheckID": "c2", "Name": "web2 alive",
                                        "ServiceID": "web-2", "Status": "critical"})
    status, body, _ = a.get("/v1/catalog/register", "PUT", json.dumps({
        "Node": "n3", "Address": "10.0.1.3", "NodeMeta": {"rack": "r3"}}).encode())
    assert status == 200, body
    c.agent.service.register("api", service_id="api-1", port=9000, tags=["blue"],
                             meta={"team": "a"})
    c.agent.service.register("db", service_id="db-1", port=5432, tags=["green"])
    c.agent.check.register("db ttl", check_id="db-ttl", service_id="db-1",
                           check=consul.Check.ttl("30s"))
    yield a
    a.kill()


@pytest.fixture
def c(dev):
    return consul.Consul(host=dev.host, port=dev.http_port)


def q(expr: str) -> str:
    return "filter=" + urllib.parse.quote(expr)


def test_catalog_nodes(c):
    _, nodes = c.catalog.nodes(filter_expr='Address matches "^10\\\\.0\\\\.0\\\\."')
    assert sorted(n["Node"] for n in nodes) == ["n1", "n2"]
    _, nodes = c.catalog.nodes(filter_expr='Meta["rack"] == r3')
    assert [n["Node"] for n in nodes] == ["n3"]
    _, nodes = c.catalog.nodes(filter_expr="rack in Meta or Node == n1")
    assert sorted(n["Node"] for n in nodes) == ["n1", "n3"]


def test_catalog_service_and_node(dev, c):
    got = json.loads(dev.get("/v1/catalog/service/web?" + q("ServiceMeta.env == prod"))[1])
    assert [r["ServiceID"] for r in got] == ["web-1"]
    got = json.loads(dev.get("/v1/catalog/service/web?" + q("v2 in ServiceTags"))[1])
    assert [r["ServiceID"] for r in got] == ["web-2"]
    got = json.loads(dev.get("/v1/catalog/service/web?" + q("ServicePort != 80"))[1])
    assert [r["ServiceID"] for r in got] == ["web-2"]
    # the same read without the filter is not served from the filtered body
    got = json.loads(dev.get("/v1/catalog/service/web")[1])
    assert [r["ServiceID"] for r in got] == ["web-1", "web-2"]
    got = json.loads(dev.get("/v1/catalog/node/n1?" + q("Port == 81"))[1])
    assert got["Services"] == {} and got["Node"]["Node"] == "n1"
    got = json.loads(dev.get("/v1/catalog/node/n1?" + q("primary in Tags"))[1])
    assert list(got["Services"]) == ["web-1"]


def test_health_endpoints(dev, c):
    got = json.loads(dev.get("/v1/health/service/web?" + q("Checks.Status == critical"))[1])
    assert [r["Service"]["ID"] for r in got] == ["web-2"]
    got = json.loads(dev.get("/v1/health/service/web?" + q('Service.Meta.env == "prod"'))[1])
    assert [r["Service"]["ID"] for r in got] == ["web-1"]
    got = json.loads(dev.get("/v1/health/service/web?passing&" + q("Node.Node == n2"))[1])
    assert got == []
    got = json.loads(dev.get("/v1/health/service/web")[1])
    assert len(got) == 2
    got = json.loads(dev.get("/v1/health/checks/web?" + q("Status == passing"))[1])
    assert [r["CheckID"] for r in got] == ["c1"]
    got = json.loads(dev.get("/v1/health/node/n2?" + q('Name contains "web2"'))[1])
    assert [r["CheckID"] for r in got] == ["c2"]
    got = json.loads(dev.get("/v1/health/state/any?" + q("ServiceName == web and Node == n1"))[1])
    assert [r["CheckID"] for r in got] == ["c1"]


def test_agent_services_and_checks(c):
    assert list(c.agent.services(filter_expr="Port == 9000")) == ["api-1"]
    assert list(c.agent.services(filter_expr="green in Tags")) == ["db-1"]
    assert list(c.agent.services(filter_expr="Meta.team == a")) == ["api-1"]
    assert sorted(c.agent.services(filter_expr="Meta is empty")) == ["db-1"]
    assert list(c.agent.checks(filter_expr='ServiceID == "db-1"')) == ["db-ttl"]
    assert c.agent.checks(filter_expr="ServiceID == nope") == {}


def test_empty_filter_is_no_filter(dev):
    assert len(json.loads(dev.get("/v1/catalog/nodes?filter=")[1])) >= 4


@pytest.mark.parametrize("path", [
    "/v1/catalog/nodes", "/v1/catalog/service/web", "/v1/catalog/node/n1",
    "/v1/health/node/n1", "/v1/health/checks/web", "/v1/health/service/web",
    "/v1/health/state/any", "/v1/agent/services", "/v1/agent/checks"])
def test_bad_expressions_answer_500_with_consuls_text(dev, path):
    status, body, _ = dev.get(path + "?" + q("foo"))
    assert status == 500
    assert body == (PREFIX + '1:4 (3): no match found, expected: "!=", ".", "==", "[", '
                             "[ \\t\\r\\n] or [a-zA-Z0-9_]")
    status, body, _ = dev.get(path + "?" + q("NoSuchField == x"))
    assert (status, body) == (500, PREFIX + 'Selector "NoSuchField" is not valid')


def test_bad_filter_fails_before_a_blocking_wait(dev):
    _, _, headers = dev.get("/v1/catalog/nodes")
    index = headers["X-Consul-Index"]
    status, body, _ = dev.get(f"/v1/catalog/nodes?index={index}&wait=60s&" + q("Nope == 1"))
    assert (status, body) == (500, PREFIX + 'Selector "Nope" is not valid')


def test_py_consul_surfaces_the_error(c):
    with pytest.raises(consul.ConsulException) as e:
        c.agent.services(filter_expr="foo")
    assert PREFIX in str(e.value)


def test_hostile_expressions_fail_cleanly(dev):
    for expr in ("(" * 300 + "Node == a" + ")" * 300, "(" * 80 + "Node == a",
                 "not " * 600 + "Node == a", " or ".join(["Node == a"] * 150)):
        status, body, _ = dev.get("/v1/catalog/nodes?" + q(expr))
        assert status in (200, 500), (status, body)
        assert status == 200 or body.startswith(PREFIX)
    assert dev.get("/v1/agent/self")[0] == 200

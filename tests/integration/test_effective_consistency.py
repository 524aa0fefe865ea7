"""X-Consul-Effective-Consistency on reads: the consistency mode that served the request
(Consul's QueryOptions.ConsistencyLevel → setConsistency): `leader` by default, `stale` with
?stale, `consistent` with ?consistent."""
from __future__ import annotations

import consul
import pytest

from agent.http.query import meta_headers
from agent.rpc.consistency import consistency_level

from .procs import AgentProc

pytestmark = pytest.mark.integration

MODES = (("", "leader"), ("stale", "stale"), ("consistent", "consistent"))

# every read endpoint whose headers come from meta_headers
READS = ["/v1/kv/ec/a", "/v1/kv/ec?recurse", "/v1/kv/ec?keys",
         "/v1/catalog/nodes", "/v1/catalog/services", "/v1/catalog/service/ecsvc",
         "/v1/catalog/node/dev1", "/v1/health/service/ecsvc", "/v1/health/checks/ecsvc",
         "/v1/health/state/any", "/v1/health/node/dev1", "/v1/session/list",
         "/v1/coordinate/nodes"]


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "dev1")
    a.wait_ready()
    c = consul.Consul(host=a.host, port=a.http_port)
    assert c.kv.put("ec/a", "1")
    assert c.catalog.register("dev1", "127.0.0.1", service={"Service": "ecsvc", "Port": 80})
    yield a
    a.kill()


def _with(path: str, mode: str) -> str:
    if not mode:
        return path
    return path + ("&" if "?" in path else "?") + mode


@pytest.mark.parametrize("mode,level", MODES)
def test_kv_and_catalog_report_the_mode_that_served_them(dev, mode, level):
    for path in ("/v1/kv/ec/a", "/v1/catalog/nodes", "/v1/catalog/service/ecsvc"):
        status, body, headers = dev.get(_with(path, mode))
        assert status == 200, (path, status, body)
        assert headers.get("X-Consul-Effective-Consistency") == level, (path, headers)
        assert headers["X-Consul-KnownLeader"] == "true"


@pytest.mark.parametrize("mode,level", MODES)
def test_every_meta_read_carries_it(dev, mode, level):
    for path in READS:
        status, body, headers = dev.get(_with(path, mode))
        assert status == 200, (path, status, body)
        assert headers.get("X-Consul-Effective-Consistency") == level, (path, headers)


def test_a_missing_key_still_carries_it_and_conflicting_modes_are_refused(dev):
    status, _, headers = dev.get("/v1/kv/ec/nope?stale")
    assert status == 404 and headers.get("X-Consul-Effective-Consistency") == "stale"
    status, body, headers = dev.get("/v1/kv/ec/a?stale&consistent")
    assert status == 400 and "conflicting semantics" in body
    assert "X-Consul-Effective-Consistency" not in headers


def test_py_consul_reads_see_the_header(dev):
    c = consul.Consul(host=dev.host, port=dev.http_port, consistency="consistent")
    index, entry = c.kv.get("ec/a")
    assert entry["Value"] == b"1"
    assert dev.get("/v1/kv/ec/a?consistent")[2]["X-Consul-Effective-Consistency"] == "consistent"


def test_level_and_headers_unit():
    assert consistency_level({}) == "leader"
    assert consistency_level({"AllowStale": True}) == "stale"
    assert consistency_level({"RequireConsistent": True}) == "consistent"
    # a reply without a level (Txn.Read, writes) gets no header, as Consul's setConsistency
    assert "X-Consul-Effective-Consistency" not in meta_headers({"Index": 3})
    assert meta_headers({"Index": 3, "ConsistencyLevel": "stale"})[
        "X-Consul-Effective-Consistency"] == "stale"

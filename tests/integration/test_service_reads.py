"""/v1/catalog/service/<name> and /v1/health/service/<name> on a dev agent: X-Consul-Index is
the service's own index (a write to another service leaves it, and the reply, as they were),
a blocking read on one service returns when that service changes, and bodies reused from the
encoded-body cache always show the current state (checks, ?passing, ?tag, ?pretty, ?near)."""
from __future__ import annotations

import json
import threading
import time

import consul
import pytest

from .procs import AgentProc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "dev1")
    a.wait_ready()
    c = consul.Consul(host=a.host, port=a.http_port)
    for i in range(3):
        assert c.catalog.register(
            f"sr{i}", f"10.9.0.{i}",
            service={"Service": "srweb", "ID": "srweb", "Tags": ["v1", f"t{i}"], "Port": 80 + i},
            check={"CheckID": f"srweb-{i}", "Name": "up", "ServiceID": "srweb",
                   "Status": "passing"})
    yield a
    a.kill()


def _read(dev, path):
    status, body, headers = dev.get(path)
    assert status == 200, (path, status, body)
    return body, int(headers["X-Consul-Index"])


def _register_other(dev, port):
    c = consul.Consul(host=dev.host, port=dev.http_port)
    assert c.catalog.register("sr0", "10.9.0.0", service={"Service": "srother", "Port": port})


def test_index_and_body_stay_put_when_another_service_changes(dev):
    for path in ("/v1/catalog/service/srweb", "/v1/health/service/srweb",
                 "/v1/health/service/srweb?passing", "/v1/catalog/service/srweb?tag=t1"):
        body, index = _read(dev, path)
        _register_other(dev, 1000 + index)
        assert _read(dev, path) == (body, index), path
        # sr0's node is shared with srweb: a node-level write moves srweb too
        c = consul.Consul(host=dev.host, port=dev.http_port)
        assert c.catalog.register("sr0", "10.9.0.0", check={"CheckID": f"node-{index}",
                                                           "Name": "node", "Status": "passing"})
        assert _read(dev, path)[1] > index


def test_blocking_read_returns_when_its_service_changes(dev):
    _, index = _read(dev, "/v1/health/service/srweb")
    got: dict = {}

    def block():
        got["reply"] = dev.get(f"/v1/health/service/srweb?index={index}&wait=60s")
    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.3)                      # give the read time to block (not an assertion)
    _register_other(dev, 2000)
    c = consul.Consul(host=dev.host, port=dev.http_port)
    assert c.catalog.register("sr1", "10.9.0.1", check={
        "CheckID": "srweb-1", "Name": "up", "ServiceID": "srweb", "Status": "warning"})
    t.join(30)
    assert not t.is_alive()
    status, body, headers = got["reply"]
    assert status == 200 and int(headers["X-Consul-Index"]) > index
    statuses = {n["Node"]["Node"]: [c["Status"] for c in n["Checks"]] for n in json.loads(body)}
    assert statuses["sr1"] == ["warning"]


def test_reused_bodies_follow_the_state(dev):
    c = consul.Consul(host=dev.host, port=dev.http_port)

    def nodes(path):
        return sorted(n["Node"]["Node"] for n in json.loads(_read(dev, path)[0]))
    for status in ("critical", "passing", "warning", "passing"):
        assert c.catalog.register("sr2", "10.9.0.2", check={
            "CheckID": "srweb-2", "Name": "up", "ServiceID": "srweb", "Status": status})
        for _ in range(2):               # the second read comes from the cache
            all_ = json.loads(_read(dev, "/v1/health/service/srweb")[0])
            sr2 = next(n for n in all_ if n["Node"]["Node"] == "sr2")
            assert [ch["Status"] for ch in sr2["Checks"]] == [status]
            passing = nodes("/v1/health/service/srweb?passing")
            assert ("sr2" in passing) == (status == "passing")
            pretty, _ = _read(dev, "/v1/health/service/srweb?pretty")
            assert pretty.endswith("\n") and json.loads(pretty) == all_
            near = json.loads(_read(dev, "/v1/health/service/srweb?near=_agent")[0])
            assert sorted(near, key=lambda n: n["Node"]["Node"]) == \
                sorted(all_, key=lambda n: n["Node"]["Node"])
            tagged = json.loads(_read(dev, "/v1/catalog/service/srweb?tag=t2")[0])
            assert [s["Node"] for s in tagged] == ["sr2"]

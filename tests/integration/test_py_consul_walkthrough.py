"""Issue #5's "Done when", as a user would do it: with `isthmus agent -dev` running, one
py-consul script registers services with checks, reads them back from the catalog and
health, does KV with CAS and a session lock, and watches a key with a blocking query."""
from __future__ import annotations

import threading
import time

import consul
import pytest

from .procs import wait_until

pytestmark = pytest.mark.integration

DEV_NODE = "walk"         # the `dev` agent (conftest.py)


def test_a_py_consul_script_works_as_against_consul(dev):
    c = consul.Consul(host="127.0.0.1", port=dev.http_port)

    # services with checks, through the local agent
    assert c.agent.service.register("web", service_id="web-1", port=8080, tags=["v1", "blue"],
                                    check=consul.Check.ttl("30s"))
    assert c.agent.service.register("db", service_id="db-1", port=5432)
    assert c.agent.check.ttl_pass("service:web-1", notes="ready")
    assert set(c.agent.services()) >= {"web-1", "db-1"}

    # ... which anti-entropy brings to the catalog, and health reflects
    _, nodes = wait_until(lambda: (lambda r: r if r[1] else None)(c.catalog.service("web")))
    assert nodes[0]["ServicePort"] == 8080 and nodes[0]["ServiceTags"] == ["v1", "blue"]
    _, services = c.catalog.services()
    assert {"web", "db", "consul"} <= set(services)
    _, healthy = wait_until(lambda: (lambda r: r if r[1] else None)(c.health.service("web", passing=True)))
    assert healthy[0]["Service"]["ID"] == "web-1"
    assert any(ch["CheckID"] == "service:web-1" and ch["Status"] == "passing"
               for ch in healthy[0]["Checks"])

    # KV with CAS
    assert c.kv.put("app/config", "v1")
    _, item = c.kv.get("app/config")
    assert item["Value"] == b"v1"
    assert not c.kv.put("app/config", "v2", cas=item["ModifyIndex"] + 1000)
    assert c.kv.put("app/config", "v2", cas=item["ModifyIndex"])
    assert c.kv.get("app/config")[1]["Value"] == b"v2"

    # a session lock: one holder at a time, released on destroy
    s1 = c.session.create(name="one", ttl=30)
    s2 = c.session.create(name="two", ttl=30)
    assert c.kv.put("app/leader", "me", acquire=s1)
    assert not c.kv.put("app/leader", "you", acquire=s2)
    assert c.kv.get("app/leader")[1]["Session"] == s1
    c.session.destroy(s1)
    assert "Session" not in c.kv.get("app/leader")[1] or not c.kv.get("app/leader")[1].get("Session")

    # a blocking query on a key returns when the key changes
    index, _ = c.kv.get("app/config")
    got = {}

    def watch():
        got["index"], got["item"] = c.kv.get("app/config", index=index, wait="30s")
    t = threading.Thread(target=watch)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the blocking query returned before any change"
    c.kv.put("app/config", "v3")
    t.join(10)
    assert not t.is_alive() and got["item"]["Value"] == b"v3" and int(got["index"]) > int(index)
    assert time.monotonic() - t0 < 10

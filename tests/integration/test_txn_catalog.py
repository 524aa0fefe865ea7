"""/v1/txn with catalog operations (Node, Service, Check) beside KV, through py-consul and
raw HTTP against a real dev agent: Consul's result and error shapes, all or nothing."""
from __future__ import annotations

import base64
import json

import consul
import pytest

pytestmark = pytest.mark.integration


def put(dev, ops, query: str = "") -> tuple[int, object, dict]:
    status, body, headers = dev.get("/v1/txn" + query, method="PUT", body=json.dumps(ops).encode())
    try:
        return status, json.loads(body), headers
    except ValueError:
        return status, body, headers


def test_register_node_service_check_and_kv_in_one_transaction(dev, c):
    out = c.txn.put([
        {"Node": {"Verb": "set", "Node": {"Node": "tx1", "Address": "10.1.0.1",
                                          "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": "tx1",
                     "Service": {"Service": "web", "Port": 8080, "Tags": ["a"]}}},
        {"Check": {"Verb": "set", "Check": {
            "Node": "tx1", "Name": "web-http", "ServiceID": "web", "Status": "passing",
            "Definition": {"HTTP": "http://10.1.0.1:8080/health", "Interval": "10s",
                           "TimeoutDuration": 2_000_000_000}}}},
        {"KV": {"Verb": "set", "Key": "tx/web", "Value": base64.b64encode(b"on").decode()}},
    ])
    assert out["Errors"] is None
    node, svc, chk, kv = out["Results"]
    assert set(node) == {"Node"} and node["Node"]["Node"] == "tx1"
    assert node["Node"]["Datacenter"] == "dc1"             # the agent's, as convertOps
    assert node["Node"]["Meta"] == {"rack": "r1"}
    index = node["Node"]["ModifyIndex"]
    assert node["Node"]["CreateIndex"] == index
    assert svc["Service"]["ID"] == "web" and svc["Service"]["Port"] == 8080   # ID = name
    assert svc["Service"]["Tags"] == ["a"] and svc["Service"]["ModifyIndex"] == index
    assert chk["Check"]["CheckID"] == "web-http" and chk["Check"]["ServiceName"] == "web"
    assert chk["Check"]["Definition"] == {"HTTP": "http://10.1.0.1:8080/health",
                                          "Interval": "10s", "Timeout": "2s"}
    assert kv["KV"]["Key"] == "tx/web" and kv["KV"]["Value"] is None
    # ... and the catalog, health and KV endpoints see all of it
    _, nodes = c.catalog.nodes()
    assert "tx1" in [n["Node"] for n in nodes]
    _, svcs = c.catalog.service("web")
    assert [(s["Node"], s["ServicePort"]) for s in svcs] == [("tx1", 8080)]
    _, checks = c.health.node("tx1")
    assert [(x["CheckID"], x["Status"]) for x in checks] == [("web-http", "passing")]
    assert c.kv.get("tx/web")[1]["Value"] == b"on"


def test_a_failing_operation_leaves_nothing_applied(dev, c):
    status, out, _ = put(dev, [
        {"Node": {"Verb": "set", "Node": {"Node": "tx-half", "Address": "10.1.0.9"}}},
        {"Service": {"Verb": "set", "Node": "tx-half", "Service": {"Service": "half"}}},
        {"KV": {"Verb": "set", "Key": "tx/half", "Value": ""}},
        {"KV": {"Verb": "cas", "Key": "tx/half", "Index": 999999, "Value": ""}},
        {"Check": {"Verb": "set", "Check": {"Node": "nosuch", "CheckID": "c"}}},
        {"Node": {"Verb": "get", "Node": {"Node": "nosuch"}}},
    ])
    assert status == 409
    assert out["Results"] is None
    assert out["Errors"] == [
        {"OpIndex": 3, "What": 'failed to set key "tx/half", index is stale'},
        {"OpIndex": 4, "What": "Missing node registration"},
        {"OpIndex": 5, "What": 'node "nosuch" doesn\'t exist'}]
    assert "tx-half" not in [n["Node"] for n in c.catalog.nodes()[1]]
    assert c.catalog.service("half")[1] == [] and c.kv.get("tx/half")[1] is None
    # py-consul raises on the 409 and hands over the body
    with pytest.raises(consul.ConsulException) as exc:
        c.txn.put([{"Node": {"Verb": "delete-cas", "Node": {"Node": "tx1", "ModifyIndex": 1}}}])
    assert 'failed to delete node \\"tx1\\", index is stale' in str(exc.value) or \
        'failed to delete node "tx1", index is stale' in str(exc.value)


def test_pre_checks_answer_without_a_write(dev):
    status, out, _ = put(dev, [
        {"Node": {"Verb": "set", "Node": {"Address": "10.0.0.1"}}},
        {"Node": {"Verb": "set", "Node": {"Node": "n", "ID": "not-a-uuid"}}},
        {"Service": {"Verb": "set", "Node": "tx1", "Service": {"ID": "x"}}},
        {"Service": {"Verb": "set", "Node": "tx1", "Service": {"Service": "y", "Address": "0.0.0.0"}}},
        {"Node": {"Verb": "bogus", "Node": {"Node": "tx1"}}},
    ])
    assert status == 409
    assert out["Errors"] == [
        {"OpIndex": 0, "What": "Must provide node"},
        {"OpIndex": 1, "What": "Bad node ID: uuid string is wrong length"},
        {"OpIndex": 2, "What": "Must provide service name with ID"},
        {"OpIndex": 3, "What": "Invalid service address"}]
    # a bad verb passes the pre-checks and fails in the state store, as Consul's
    status, out, _ = put(dev, [{"Node": {"Verb": "bogus", "Node": {"Node": "tx1"}}}])
    assert (status, out["Errors"]) == (409, [{"OpIndex": 0, "What": 'unknown Node verb "bogus"'}])


def test_cas_through_http(dev, c):
    out = c.txn.put([{"Node": {"Verb": "cas", "Node": {"Node": "tx-cas", "Address": "10.2.0.1"}}}])
    idx = out["Results"][0]["Node"]["ModifyIndex"]
    status, out, _ = put(dev, [{"Node": {"Verb": "cas", "Node": {
        "Node": "tx-cas", "Address": "10.2.0.2", "ModifyIndex": idx + 1000}}}])
    assert status == 409 and out["Errors"][0]["What"] == 'failed to set node "tx-cas", index is stale'
    out = c.txn.put([{"Node": {"Verb": "cas", "Node": {"Node": "tx-cas", "Address": "10.2.0.2",
                                                       "ModifyIndex": idx}}},
                     {"Service": {"Verb": "cas", "Node": "tx-cas", "Service": {"Service": "s"}}}])
    assert out["Results"][0]["Node"]["Address"] == "10.2.0.2"
    sidx = out["Results"][1]["Service"]["ModifyIndex"]
    # as Consul's servicePreApply, a delete names the service too
    status, out, _ = put(dev, [{"Service": {"Verb": "delete", "Node": "tx-cas",
                                            "Service": {"ID": "s"}}}])
    assert out["Errors"] == [{"OpIndex": 0, "What": "Must provide service name with ID"}]
    out = c.txn.put([{"Service": {"Verb": "delete-cas", "Node": "tx-cas",
                                  "Service": {"ID": "s", "Service": "s", "ModifyIndex": sidx}}},
                     {"Node": {"Verb": "delete", "Node": {"Node": "tx-cas"}}}])
    assert out == {"Results": None, "Errors": None}
    assert c.catalog.node("tx-cas")[1] is None


def test_read_only_catalog_gets_use_txn_read(dev, c):
    c.txn.put([{"Node": {"Verb": "set", "Node": {"Node": "tx-ro", "Address": "10.3.0.1"}}},
               {"Service": {"Verb": "set", "Node": "tx-ro", "Service": {"Service": "ro", "ID": "ro1"}}},
               {"Check": {"Verb": "set", "Check": {"Node": "tx-ro", "CheckID": "ro-c"}}}])
    ops = [{"Node": {"Verb": "get", "Node": {"Node": "tx-ro"}}},
           {"Service": {"Verb": "get", "Node": "tx-ro", "Service": {"ID": "ro1"}}},
           {"Check": {"Verb": "get", "Check": {"Node": "tx-ro", "CheckID": "ro-c"}}}]
    for query in ("", "?stale", "?consistent"):
        status, out, headers = put(dev, ops, query)
        assert status == 200, out
        assert headers["X-Consul-KnownLeader"] == "true"     # Txn.Read's headers
        n, s, ch = out["Results"]
        assert n["Node"]["Address"] == "10.3.0.1"
        assert (s["Service"]["ID"], s["Service"]["Service"]) == ("ro1", "ro")
        assert s["Service"]["Proxy"] == {"Mode": "", "MeshGateway": {}, "Expose": {}}
        assert (ch["Check"]["Status"], ch["Check"]["ServiceTags"]) == ("critical", [])
    status, out, _ = put(dev, ops, "?stale&consistent")
    assert status == 400


def test_bad_bodies_are_400_and_the_agent_keeps_serving(dev, c):
    for ops, text in (
            ([{"Node": {"Verb": "set", "Node": {"Node": 5}}}], "cannot unmarshal number"),
            ([{"Service": {"Verb": "set", "Node": "n", "Service": {"Port": "80"}}}],
             "cannot unmarshal string"),
            ([{"Check": {"Verb": "set", "Check": {"Definition": {"Interval": "soon"}}}}],
             'time: invalid duration "soon"'),
            ([{"Node": "x"}], "cannot unmarshal string"),
            ([{"Node": {"Verb": "cas", "Node": {"Node": "n", "ModifyIndex": -1}}}],
             "of type uint64")):
        status, body, _ = put(dev, ops)
        assert status == 400 and "Failed to parse body" in body and text in body, (ops, body)
    assert c.kv.put("tx/alive", "yes")

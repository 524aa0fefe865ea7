"""WAN federation with real processes: flood join, the router, and `?dc=` forwarding.

dc1 = one server on 127.0.0.1; dc2 = two servers on 127.0.0.2/.3 that only join each
other's LAN pool — flood join must put both into the WAN pool after one `join -wan`.
"""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from .procs import AgentProc, isthmus, wait_until


def server(tmp, name: str, host: str, dc: str, expect: int, *extra: str) -> AgentProc:
    p = AgentProc("-server", "-bootstrap-expect", str(expect), "-node", name, "-datacenter", dc,
                  "-bind", host, "-client", host, "-data-dir", os.path.join(tmp, name),
                  *extra, host=host)
    p.wait_ready(60)
    return p


def leader_ok(p: AgentProc) -> bool:
    status, body, _ = p.get("/v1/status/leader")
    return status == 200 and json.loads(body) != ""


@pytest.fixture
def two_dcs(tmp_path):
    procs: list[AgentProc] = []
    try:
        a = server(str(tmp_path), "a1", "127.0.0.1", "dc1", 1)
        procs.append(a)
        b1 = server(str(tmp_path), "b1", "127.0.0.2", "dc2", 2)
        procs.append(b1)
        b2 = server(str(tmp_path), "b2", "127.0.0.3", "dc2", 2,
                    "-retry-join", f"127.0.0.2:{b1.serf_lan_port}", "-retry-interval", "1s")
        procs.append(b2)
        for p in procs:
            wait_until(lambda p=p: leader_ok(p), 60, f"leader seen by {p.host}")
        r = isthmus("join", "-http-addr", a.http, "-wan", f"127.0.0.2:{b1.serf_wan_port}")
        assert r.returncode == 0, r.stdout + r.stderr
        yield a, b1, b2
    finally:
        for p in procs:
            p.kill()


def wan_names(p: AgentProc) -> set[str]:
    return {m["Name"] for m in p.get_json("/v1/agent/members?wan=1") if m["Status"] == 1}


def test_flood_join_routing_and_forwarding(two_dcs, tmp_path):
    a, b1, b2 = two_dcs
    t0 = time.monotonic()
    wait_until(lambda: wan_names(a) == {"a1.dc1", "b1.dc2", "b2.dc2"}, 45,
               "every server in the WAN pool (b2 only by flood join)")
    print(f"WAN pool complete {time.monotonic() - t0:.2f}s after join -wan")
    wait_until(lambda: a.get_json("/v1/catalog/datacenters") == ["dc1", "dc2"], 30, "dc list")
    assert b1.get_json("/v1/catalog/datacenters") == ["dc2", "dc1"]

    # WAN coordinates per datacenter, and `rtt -wan` from them
    def wan_coords() -> bool:
        maps = a.get_json("/v1/coordinate/datacenters")
        nodes = {(e["Datacenter"], e["AreaID"]): {c["Node"] for c in e["Coordinates"]}
                 for e in maps}
        return nodes == {("dc1", "wan"): {"a1"}, ("dc2", "wan"): {"b1", "b2"}}
    # coordinates come with probes (WAN: one every 5 s, round robin): 3x a full round
    wait_until(wan_coords, 90, "WAN coordinates of both datacenters")
    r = isthmus("rtt", "-http-addr", a.http, "-wan", "b1.dc2")
    assert r.returncode == 0 and "Estimated b1.dc2 <-> a1.dc1 rtt:" in r.stdout, r.stderr
    assert "(using WAN coordinates)" in r.stdout

    # a write in dc2 through dc1, read back both ways
    status, body, _ = a.get("/v1/kv/hello?dc=dc2", "PUT", b"world")
    assert (status, body.strip()) == (200, "true"), body
    assert json.loads(b1.get("/v1/kv/hello")[1])[0]["Key"] == "hello"
    status, body, headers = a.get("/v1/kv/hello?dc=dc2&raw")
    assert (status, body) == (200, "world")
    assert int(headers["X-Consul-Index"]) > 0
    assert a.get("/v1/kv/hello")[0] == 404                    # dc1 has no such key
    nodes = {n["Node"] for n in a.get_json("/v1/catalog/nodes?dc=dc2")}
    assert nodes == {"b1", "b2"}
    # CLI through -datacenter
    r = isthmus("kv", "get", "-http-addr", a.http, "-datacenter", "dc2", "hello")
    assert (r.returncode, r.stdout.strip()) == (0, "world"), r.stderr

    # a blocking query across datacenters: held in dc2, woken by a write there
    index = int(headers["X-Consul-Index"])
    got = {}

    def block() -> None:
        got["reply"] = a.get(f"/v1/kv/hello?dc=dc2&index={index}&wait=20s")
    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.5)
    assert b2.get("/v1/kv/hello", "PUT", b"again")[0] == 200
    t.join(30)
    status, body, headers2 = got["reply"]
    assert status == 200 and int(headers2["X-Consul-Index"]) > index
    assert json.loads(body)[0]["Value"] == "YWdhaW4="          # base64 "again"

    # a client agent of dc1 forwards through its LAN server
    c = AgentProc("-node", "c1", "-datacenter", "dc1", "-data-dir", str(tmp_path / "c1"),
                  "-bind", "127.0.0.4", "-client",
                  "127.0.0.4", "-retry-join", f"127.0.0.1:{a.serf_lan_port}",
                  "-retry-interval", "1s", host="127.0.0.4")
    try:
        c.wait_ready(60)
        wait_until(lambda: c.get("/v1/kv/hello?dc=dc2&raw")[1] == "again", 30,
             "dc2's key read through a dc1 client agent")
        # rendered in dc2 (agent/http/rendered.py), passed on by the server and the client
        assert c.get("/v1/kv/hello?dc=dc2")[:2] == b1.get("/v1/kv/hello")[:2]
        assert c.get_json("/v1/catalog/datacenters") == ["dc1", "dc2"]
    finally:
        c.kill()

    # unknown datacenter: Consul's error
    status, body, _ = a.get("/v1/kv/hello?dc=nowhere")
    assert status == 500 and "No path to datacenter" in body

    # kill -9 every dc2 server in turn: the other still answers (failover at once)
    b1.kill()
    t0 = time.monotonic()
    status, body, _ = a.get("/v1/catalog/nodes?dc=dc2&stale")
    print(f"first request after kill -9 of b1: {status} in {time.monotonic() - t0:.3f}s")
    assert status == 200, body
    b2.kill()
    status, body, _ = a.get("/v1/kv/hello?dc=dc2&stale")
    assert status == 500 and "Remote DC has no server currently reachable" in body, body


def test_reads_of_another_dc_are_rendered_there_as_it_answers_them(two_dcs):
    """A forwarded service or KV read has its body rendered by the dc2 server that answers
    it (agent/http/rendered.py): byte for byte what dc2 answers itself, in every view."""
    a, b1, _ = two_dcs
    wait_until(lambda: a.get_json("/v1/catalog/datacenters") == ["dc1", "dc2"], 45, "dc list")
    for i in range(3):
        reg = {"Node": f"fw{i}", "Address": f"10.8.0.{i}",
               "Service": {"Service": "fw", "ID": "fw", "Tags": ["v1", f"t{i}"], "Port": 80 + i},
               "Check": {"CheckID": f"fw-{i}", "Name": "up", "ServiceID": "fw",
                         "Status": "warning" if i == 2 else "passing"}}
        assert b1.get("/v1/catalog/register", "PUT", json.dumps(reg).encode())[0] == 200
    assert b1.get("/v1/kv/fw/a", "PUT", b"1")[0] == 200
    paths = ["/v1/health/service/fw", "/v1/health/service/fw?passing",
             "/v1/health/service/fw?tag=t1", "/v1/health/service/fw?pretty",
             "/v1/health/service/fw?filter=Service.Port%20%3D%3D%2081",
             "/v1/health/service/none", "/v1/catalog/service/fw",
             "/v1/catalog/service/fw?filter=%22t2%22%20in%20ServiceTags",
             "/v1/catalog/service/fw?tag=v1&pretty", "/v1/kv/fw/a", "/v1/kv/fw/a?pretty",
             "/v1/kv/fw?recurse", "/v1/kv/nope"]
    for path in paths:                 # default consistency: both answered by dc2's leader
        local = b1.get(path)
        forwarded = a.get(path + ("&" if "?" in path else "?") + "dc=dc2")
        assert forwarded[:2] == local[:2] and local[0] in (200, 404), (path, local)
        assert forwarded[2]["X-Consul-Index"] == local[2]["X-Consul-Index"], path
        if "filter" in path:
            assert len(json.loads(local[1])) == 1, path
    assert a.get("/v1/kv/fw/a?dc=dc2")[0] == 200 and a.get("/v1/kv/fw/a")[0] == 404
    # a bad filter fails in dc1, before anything is sent (Consul's 500 and text)
    status, body, _ = a.get("/v1/health/service/fw?dc=dc2&filter=Nope%20%3D%3D%201")
    assert status == 500 and "Failed to create boolean expression evaluator" in body, body

"""Issue #6's walkthrough: `isthmus demo areas` (dc1 hub, dc2 and dc3 spokes) on real
processes, then the hub/spoke behaviour: adjacency-only routing, failover after `kill -9` of
the remote server in use, WAN + area paths to one DC, deleting an area removes its route."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest

from agent.demo import ROOT, Demo

from .procs import wait_until


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = io.StringIO()
    d = Demo(servers_per_dc=2, base_dir=str(tmp_path_factory.mktemp("demo")),
             default_ports=False, out=out)
    try:
        d.start()
        d.steps()
        d.transcript = out.getvalue()
        print(d.transcript)
        yield d
    finally:
        d.stop()


def test_walkthrough_output_matches_the_guide(demo):
    t = demo.transcript
    assert t.count('Created area "') == 4
    assert 'with peer datacenter "dc2"!' in t and 'with peer datacenter "dc1"!' in t
    assert "Address" in t and "Joined" in t and "(none)" in t
    header = "Area                                  Node"
    assert header in t
    assert "PeerDC" in t and "RetryJoin" in t
    assert "Success! Data written to: hello" in t
    assert "world" in t
    assert "No path to datacenter" in t                 # dc2 -> dc3
    assert "NOERROR" in t or "ANSWER" in t               # dig answered


def http(demo, dc: str, path: str, method: str = "GET", body: bytes | None = None, i: int = 0):
    return demo.servers[dc][i].get(path, method, body)


def test_hub_and_spoke_routes(demo):
    assert json.loads(http(demo, "dc1", "/v1/catalog/datacenters")[1])[0] == "dc1"
    assert sorted(json.loads(http(demo, "dc1", "/v1/catalog/datacenters")[1])) == \
        ["dc1", "dc2", "dc3"]
    assert sorted(json.loads(http(demo, "dc2", "/v1/catalog/datacenters")[1])) == ["dc1", "dc2"]
    # dc2 -> dc1 and dc1 -> dc3
    assert http(demo, "dc1", "/v1/kv/hub-key?dc=dc3", "PUT", b"v3") == (200, "true")
    assert http(demo, "dc3", "/v1/kv/hub-key?raw")[1] == "v3"
    assert http(demo, "dc2", "/v1/kv/from-spoke?dc=dc1&raw") == (200, "hi hub")
    status, body = http(demo, "dc2", "/v1/kv/hub-key?dc=dc3")
    assert status == 500 and body.strip() == "No path to datacenter"
    # the hub sees every server of the spokes in its areas, with RTTs
    members = demo.area_members("dc1")
    assert {m["Datacenter"] for m in members} == {"dc1", "dc2", "dc3"}
    assert all(m["Status"] == "alive" for m in members)


def test_kill_of_the_remote_server_in_use_fails_over(demo):
    assert http(demo, "dc1", "/v1/kv/failover?dc=dc3", "PUT", b"x") == (200, "true")
    # which dc3 server answers dc1 now? kill -9 every dc3 server but one, the one in use first
    victims = list(demo.servers["dc3"])
    victims[0].kill()
    t0 = time.monotonic()
    status, body = http(demo, "dc1", "/v1/kv/failover?dc=dc3&stale&raw")
    print(f"read after kill -9 of {victims[0].name}: {status} in {time.monotonic() - t0:.3f}s")
    assert (status, body) == (200, "x")


def test_wan_and_area_paths_and_deleting_the_area(demo):
    hub, spoke = demo.servers["dc1"][0], demo.servers["dc2"][0]
    r = subprocess.run([sys.executable, "-m", "agent", "join", f"-http-addr={hub.http}", "-wan",
                        f"{spoke.host}:{spoke.ports['serf-wan']}"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: any(m["Name"].endswith(".dc2") and m["Status"] == 1 for m in
                     json.loads(hub.get("/v1/agent/members?wan=1")[1])), 30, "dc2 in the WAN")
    areas = json.loads(hub.get("/v1/operator/area")[1])
    area_id = next(a["ID"] for a in areas if a["PeerDatacenter"] == "dc2")
    assert hub.get(f"/v1/operator/area/{area_id}", "DELETE")[0] == 200
    # the area's route is gone, the WAN still reaches dc2
    assert http(demo, "dc1", "/v1/kv/hello?dc=dc2&raw") == (200, "world")
    status, dcs = hub.get("/v1/coordinate/datacenters")
    assert status == 200
    paths = {(e["Datacenter"], e["AreaID"]) for e in json.loads(dcs)}
    assert ("dc2", "wan") in paths and ("dc2", area_id) not in paths
    # dc3 has no WAN path: deleting its area leaves no route at all
    area3 = next(a["ID"] for a in areas if a["PeerDatacenter"] == "dc3")
    assert hub.get(f"/v1/operator/area/{area3}", "DELETE")[0] == 200
    wait_until(lambda: http(demo, "dc1", "/v1/kv/failover?dc=dc3&stale")[1].strip()
         == "No path to datacenter", 30, "dc3 unroutable after its area is deleted")
    assert "dc3" not in json.loads(hub.get("/v1/catalog/datacenters")[1])

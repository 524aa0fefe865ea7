"""Network coordinates in the state store and `?near=` sorting, on real agents through
py-consul (unchanged) and raw HTTP.

A -dev agent commits coordinate updates every 100 ms (Consul's dev update period); the
tests PUT chosen coordinates for registered nodes so the expected order is known. Agents
send their own coordinate every 15–30 s (Consul's sync interval and stagger): the slow
tests wait for those, on the dev agent and on three servers plus a client agent.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time

import consul
import pytest

from .procs import AgentProc, isthmus
from .test_raft_cluster import Server, agreed_leader, wait

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)

SEND_BOUND = 30.0 + 5.0         # an agent's first send (15 s + stagger) and a commit period


def coord(x: float, height: float = 1e-5) -> dict:
    return {"Vec": [x] + [0.0] * 7, "Error": 0.2, "Adjustment": 0.0, "Height": height}


def put_coord(agent: AgentProc, node: str, c: dict, segment: str = "") -> tuple[int, str]:
    status, body, _ = agent.get("/v1/coordinate/update", "PUT",
                                json.dumps({"Node": node, "Segment": segment, "Coord": c}).encode())
    return status, body


def coords_of(c, names) -> dict:
    _, rows = c.coordinate.nodes()
    return {r["Node"]: r["Coord"] for r in rows if r["Node"] in names}


def register(c, node: str, addr: str, service: str | None = None, status: str = "passing"):
    svc = {"Service": service, "Port": 80} if service else None
    chk = {"Name": f"{node} ok", "ServiceID": service, "Status": status} if service else None
    assert c.catalog.register(node, addr, service=svc, check=chk) is True


def test_update_list_node_and_segment_filter(c, dev):
    for i, n in enumerate(("cn1", "cn2", "CN3"), 1):
        register(c, n, f"10.9.0.{i}")
    for i, n in enumerate(("cn1", "cn2", "CN3"), 1):
        assert put_coord(dev, n, coord(i / 1000)) == (200, "")
    wait(lambda: len(coords_of(c, {"cn1", "cn2", "CN3"})) == 3, 10, "three coordinates committed")
    idx, rows = c.coordinate.nodes()
    mine = [r for r in rows if r["Node"].lower().startswith("cn")]
    assert [r["Node"] for r in mine] == ["cn1", "cn2", "CN3"]        # Consul's id-index order
    assert set(mine[0]) == {"Node", "Segment", "Coord"} and mine[0]["Segment"] == ""
    assert mine[1]["Coord"] == coord(0.002)
    assert int(idx) > 0
    status, body, headers = dev.get("/v1/coordinate/node/cn2")
    assert status == 200 and json.loads(body) == [{"Node": "cn2", "Segment": "",
                                                   "Coord": coord(0.002)}]
    assert int(headers["X-Consul-Index"]) > 0
    status, body, _ = dev.get("/v1/coordinate/node/nobody")
    assert (status, body) == (404, "")
    assert json.loads(dev.get("/v1/coordinate/nodes?segment=alpha")[1]) == []
    assert len(json.loads(dev.get("/v1/coordinate/node/cn1?segment=")[1])) == 1
    # the latest update of a node wins
    assert put_coord(dev, "cn1", coord(0.009)) == (200, "")
    wait(lambda: coords_of(c, {"cn1"}).get("cn1") == coord(0.009), 10, "cn1's update")


def test_blocking_query_wakes_on_a_coordinate_commit(c, dev):
    register(c, "blk1", "10.9.1.1")
    idx, _ = c.coordinate.nodes()
    got: dict = {}

    def block():
        t0 = time.monotonic()
        got["index"], got["rows"] = c.coordinate.nodes(index=idx, wait="30s")
        got["took"] = time.monotonic() - t0
    t = threading.Thread(target=block)
    t.start()
    time.sleep(0.3)
    assert put_coord(dev, "blk1", coord(0.004)) == (200, "")
    t.join(20)
    assert not t.is_alive() and int(got["index"]) > int(idx)
    assert "blk1" in {r["Node"] for r in got["rows"]}
    log.info("coordinate blocking query woke after %.2fs", got["took"])


def test_bad_updates_are_refused_as_consul_and_nothing_is_stored(c, dev):
    register(c, "bad1", "10.9.2.1")
    assert put_coord(dev, "bad1", {"Vec": [0.1, 0.2], "Error": 1.5}) == (500, "incompatible coordinate")
    assert dev.get("/v1/coordinate/update", "PUT", b'{"Node": "bad1"}')[:2] == \
        (500, "invalid coordinate")
    status, body, _ = dev.get("/v1/coordinate/update", "PUT", b'{"Node": "bad1", "Coord": {"Vec": "x"}}')
    assert status == 400 and body.startswith("Request decode failed: json: cannot unmarshal string")
    status, body, _ = dev.get("/v1/coordinate/update", "PUT", b"{nope")
    assert status == 400 and body.startswith("Request decode failed: ")
    assert dev.get("/v1/coordinate/update")[0] == 405
    # an update for a node the catalog does not know is accepted and dropped at commit
    assert put_coord(dev, "ghost-node", coord(0.001)) == (200, "")
    register(c, "marker1", "10.9.2.2")
    assert put_coord(dev, "marker1", coord(0.001)) == (200, "")
    wait(lambda: "marker1" in coords_of(c, {"marker1"}), 10, "the marker's update")
    assert not coords_of(c, {"bad1", "ghost-node"})
    assert dev.get("/v1/coordinate/nodes?dc=nowhere")[0] == 500


def test_deregistered_node_loses_its_coordinate(c, dev):
    register(c, "gone1", "10.9.3.1")
    assert put_coord(dev, "gone1", coord(0.003)) == (200, "")
    wait(lambda: "gone1" in coords_of(c, {"gone1"}), 10, "gone1's coordinate")
    assert c.catalog.deregister("gone1") is True
    wait(lambda: not coords_of(c, {"gone1"}), 10, "gone1's coordinate deleted")


def test_near_sorts_catalog_and_health_reads(c, dev):
    # web on four nodes: w-far, w-mid, w-near at chosen distances from src; w-none has none
    register(c, "src", "10.9.4.1")
    for i, (n, status) in enumerate((("w-far", "passing"), ("w-mid", "critical"),
                                     ("w-near", "passing"), ("w-none", "passing")), 2):
        register(c, n, f"10.9.4.{i}", service="web-near", status=status)
    for n, x in (("src", 0.0), ("w-far", 0.050), ("w-mid", 0.010), ("w-near", 0.001)):
        assert put_coord(dev, n, coord(x)) == (200, "")
    wait(lambda: len(coords_of(c, {"src", "w-far", "w-mid", "w-near"})) == 4, 10, "coordinates")

    _, sn = c.catalog.service("web-near", near="src")
    assert [s["Node"] for s in sn] == ["w-near", "w-mid", "w-far", "w-none"]
    _, sn = c.catalog.service("web-near")                       # no near: name order
    assert [s["Node"] for s in sn] == ["w-far", "w-mid", "w-near", "w-none"]
    _, sn = c.catalog.service("web-near", near="no-such-node")  # unknown source: no sorting
    assert [s["Node"] for s in sn] == ["w-far", "w-mid", "w-near", "w-none"]
    _, nodes = c.catalog.nodes(near="src")
    names = [n["Node"] for n in nodes]
    mine = ["src", "w-near", "w-mid", "w-far", "w-none"]
    assert [n for n in names if n in mine] == mine
    with_coords = set(coords_of(c, set(names)))
    has = [n in with_coords for n in names]
    assert has == sorted(has, reverse=True)                      # nodes without one come last
    _, hs = c.health.service("web-near", near="src")
    assert [h["Node"]["Node"] for h in hs] == ["w-near", "w-mid", "w-far", "w-none"]
    _, hs = c.health.service("web-near", near="src", passing=True)
    assert [h["Node"]["Node"] for h in hs] == ["w-near", "w-none", "w-far"]   # Consul's filter
    _, checks = c.health.checks("web-near", near="src")
    assert [x["Node"] for x in checks] == ["w-near", "w-mid", "w-far", "w-none"]
    _, checks = c.health.state("critical", near="src")
    assert [x["Node"] for x in checks if x["Node"].startswith("w-")] == ["w-mid"]
    # ?dc= naming this datacenter: the source is still in it
    status, body, _ = dev.get("/v1/catalog/service/web-near?near=src&dc=dc1")
    assert [s["Node"] for s in json.loads(body)] == ["w-near", "w-mid", "w-far", "w-none"]

    # _agent is this agent's node: put dev1 where w-far is (dev1's own sender may move it
    # back between our update and the read: then try again)
    def agent_sorted() -> bool:
        assert put_coord(dev, "dev1", coord(0.050)) == (200, "")
        time.sleep(0.3)                                        # two commit periods
        _, sn = c.catalog.service("web-near", near="_agent")
        return [s["Node"] for s in sn] == ["w-far", "w-mid", "w-near", "w-none"]
    wait(agent_sorted, 20, "service nodes sorted from _agent")


@pytest.mark.slow
def test_agent_sends_its_own_coordinate(dev):
    fresh = AgentProc("-dev", "-node", "self-sender")
    try:
        fresh.wait_ready()
        fc = consul.Consul(host=fresh.host, port=fresh.http_port)
        took = wait(lambda: "self-sender" in coords_of(fc, {"self-sender"}), 3 * SEND_BOUND,
                    "the agent's own coordinate in the store")
        log.info("dev agent's own coordinate committed %.1fs after start", took)
        row = coords_of(fc, {"self-sender"})["self-sender"]
        assert len(row["Vec"]) == 8 and row["Error"] > 0
    finally:
        fresh.kill()


# ---------------------------------------------------------------------- three servers

def _distance(a: dict, b: dict) -> float:
    d = math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"]))) + a["Height"] + b["Height"]
    adjusted = d + a["Adjustment"] + b["Adjustment"]
    return adjusted if adjusted > 0 else d


@pytest.fixture
def cluster(tmp_path):
    servers = [Server(0, str(tmp_path), None)]
    join = f"{servers[0].host}:{servers[0].ports['serf-lan']}"
    servers += [Server(i, str(tmp_path), join) for i in (1, 2)]
    procs: list[AgentProc] = []
    yield servers, procs
    for p in procs:
        p.kill()
    for s in servers:
        if s.proc is not None:
            s.proc.kill()


@pytest.mark.slow
def test_three_servers_and_a_client_store_every_coordinate(cluster, tmp_path):
    servers, procs = cluster
    for s in servers:
        s.start()
    wait(lambda: agreed_leader(servers), 30, "one agreed leader")
    client = AgentProc("-node", "cl1", "-bind", "127.0.0.4", "-client", "127.0.0.4",
                       "-data-dir", str(tmp_path / "cl1"), "-retry-join",
                       f"{servers[0].host}:{servers[0].ports['serf-lan']}", "-retry-interval", "1s",
                       host="127.0.0.4")
    procs.append(client)
    client.wait_ready(60)
    names = {"s1", "s2", "s3", "cl1"}
    clients = [consul.Consul(host=s.host, port=s.ports["http"]) for s in servers]
    cc = consul.Consul(host=client.host, port=client.http_port)
    took = wait(lambda: all(set(coords_of(x, names)) == names for x in clients + [cc]),
                3 * SEND_BOUND, "every agent's coordinate on every server")
    log.info("4 agents' coordinates committed and replicated after %.1fs", took)
    # stale reads from each server agree with the leader once replicated
    for x in clients:
        _, rows = x.coordinate.nodes(consistency="stale")
        assert names <= {r["Node"] for r in rows}

    # ?near=_agent through the client agent: the order the coordinates imply
    def near_matches() -> bool:
        i1, rows = cc.coordinate.nodes()
        _, nodes = cc.catalog.nodes(near="_agent")
        i2, _ = cc.coordinate.nodes()
        if i1 != i2:
            return False                    # an update landed in between: try again
        cs = {r["Node"]: r["Coord"] for r in rows}
        want = sorted((n["Node"] for n in nodes), key=lambda n: _distance(cs["cl1"], cs[n]))
        return [n["Node"] for n in nodes] == want
    wait(near_matches, 60, "catalog nodes sorted by RTT from the client")

    out = isthmus("rtt", f"-http-addr={client.host}:{client.http_port}", "s2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Estimated s2 <-> cl1 rtt: ") and \
        out.stdout.rstrip().endswith("ms (using LAN coordinates)")

    # a client that leaves is deregistered, and its coordinate goes with it
    client.signal()
    client.wait_exit(30)
    wait(lambda: "cl1" not in coords_of(clients[0], names), 60, "cl1's coordinate deleted")

"""LAN/WAN gossip between real `isthmus agent` processes on loopback, driven by the CLI and
the HTTP API: join, members, failure, restart and rejoin from the snapshot, force-leave,
keyring rotation, garbage packets."""
from __future__ import annotations

import base64
import json
import os
import socket
import time

import pytest

from tests.integration.procs import AgentProc, isthmus

pytestmark = pytest.mark.integration

# memberlist LAN defaults, 3 nodes: probe 1 s + timeout 0.5 s + suspicion 4 s + gossip; ×3
FAIL_DEADLINE = 3 * 7.0
KEY1 = base64.b64encode(b"k" * 32).decode()
KEY2 = base64.b64encode(b"q" * 16).decode()


def start(name: str, host: str, tmp_path, *extra: str) -> AgentProc:
    a = AgentProc("-node", name, "-bind", host, "-client", host, "-data-dir",
                  str(tmp_path / name), *extra, host=host)
    a.wait_ready()
    return a


def statuses(a: AgentProc, wan: bool = False) -> dict[str, int]:
    return {m["Name"]: m["Status"] for m in a.get_json("/v1/agent/members" + ("?wan=1" if wan else ""))}


def wait_for(what: str, pred, within: float) -> float:
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < within:
        try:
            if pred():
                took = time.monotonic() - t0
                print(f"{what}: {took:.2f}s")
                return took
        except (AssertionError, OSError, KeyError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within}s (last: {last})")


def cli(a: AgentProc, command: str, *args: str):
    """`isthmus COMMAND -http-addr A ARGS...` (Go flags come before positional arguments)."""
    return isthmus(command, "-http-addr", f"{a.host}:{a.http_port}", *args)


@pytest.fixture
def procs():
    started: list[AgentProc] = []
    yield started
    for p in started:
        p.kill()


def test_join_members_failure_restart_rejoin_and_force_leave(tmp_path, procs):
    a = start("alpha", "127.0.0.2", tmp_path, "-server", "-bootstrap")
    b = start("beta", "127.0.0.3", tmp_path)
    c = start("gamma", "127.0.0.4", tmp_path)
    procs += [a, b, c]
    r = isthmus("join", "-http-addr", f"127.0.0.3:{b.http_port}", f"127.0.0.2:{a.serf_lan_port}")
    assert r.returncode == 0 and "Successfully joined cluster by contacting 1 nodes." in r.stdout
    r = isthmus("join", "-http-addr", f"127.0.0.4:{c.http_port}", f"127.0.0.3:{b.serf_lan_port}")
    assert r.returncode == 0, r.stderr
    every = {"alpha": 1, "beta": 1, "gamma": 1}
    for x in (a, b, c):
        wait_for(f"{x.host} sees all alive", lambda x=x: statuses(x) == every, 10)

    out = cli(a, "members").stdout.splitlines()
    assert out[0].split() == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC",
                              "Partition", "Segment"]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["alpha"][1:8] == [f"127.0.0.2:{a.serf_lan_port}", "alive", "server", "1.22.0",
                                  "2", "dc1", "default"]
    assert rows["beta"][3] == "client" and rows["beta"][8] == "<default>"
    detailed = cli(a, "members", "-detailed").stdout
    assert "role=consul" in detailed and "role=node" in detailed
    assert cli(a, "members", "-status", "failed").returncode == 2

    # the server is alone in its WAN pool, named node.dc
    assert statuses(a, wan=True) == {"alpha.dc1": 1}
    status, body, _ = b.get("/v1/agent/members?wan=1")
    assert status == 500 and "only available on servers" in body

    # kill -9 gamma: failed everywhere
    t0 = time.monotonic()
    c.kill()
    for x in (a, b):
        wait_for(f"{x.host} marks gamma failed", lambda x=x: statuses(x)["gamma"] == 4,
                 FAIL_DEADLINE)
    print(f"kill -9 -> failed everywhere after {time.monotonic() - t0:.2f}s")

    # restart gamma on the same data dir and ports, no join flags: it rejoins from its snapshot
    c2 = start("gamma", "127.0.0.4", tmp_path, "-serf-lan-port", str(c.serf_lan_port),
               "-http-port", str(c.http_port))
    procs.append(c2)
    for x in (a, b, c2):
        wait_for(f"{x.host} sees gamma back", lambda x=x: statuses(x) == every, 15)

    # force-leave of a failed node makes it left
    c2.kill()
    wait_for("gamma failed again", lambda: statuses(a)["gamma"] == 4, FAIL_DEADLINE)
    r = cli(a, "force-leave", "gamma")
    assert r.returncode == 0, r.stderr
    for x in (a, b):
        wait_for(f"{x.host} marks gamma left", lambda x=x: statuses(x)["gamma"] == 3, 10)
    assert cli(a, "force-leave", "nobody").returncode == 1


def test_keyring_rotation_across_agents(tmp_path, procs):
    agents = [start(f"k{i}", f"127.0.0.{10 + i}", tmp_path, "-encrypt", KEY1) for i in range(3)]
    procs += agents
    for x in agents[1:]:
        assert isthmus("join", "-http-addr", f"{x.host}:{x.http_port}",
                       f"127.0.0.10:{agents[0].serf_lan_port}").returncode == 0
    for x in agents:
        wait_for(f"{x.host} sees 3", lambda x=x: list(statuses(x).values()) == [1, 1, 1], 10)
    a = agents[0]
    r = cli(a, "keyring", "-list")
    assert r.returncode == 0, r.stderr
    assert f"{KEY1} [3/3]" in r.stdout
    assert cli(a, "keyring", "-install", KEY2).returncode == 0
    assert f"{KEY2} [3/3]" in cli(a, "keyring", "-list").stdout
    assert cli(a, "keyring", "-use", KEY2).returncode == 0
    assert f"{KEY2} [3/3]" in cli(a, "keyring", "-list-primary").stdout
    assert cli(a, "keyring", "-remove", KEY1).returncode == 0
    listed = cli(a, "keyring", "-list").stdout
    assert KEY1 not in listed and f"{KEY2} [3/3]" in listed
    # removing the primary is refused, with the nodes' message
    r = cli(a, "keyring", "-remove", KEY2)
    assert r.returncode == 1 and "nodes reported failure" in r.stderr
    # the new keyring is on disk, primary first, and the pool still gossips with it
    with open(os.path.join(str(tmp_path), "k1", "serf", "local.keyring")) as f:
        assert json.load(f) == [KEY2]
    for x in agents:
        assert list(statuses(x).values()) == [1, 1, 1]


def test_garbage_packets_are_dropped_and_the_pool_survives(tmp_path, procs):
    a = start("solo", "127.0.0.20", tmp_path)
    b = start("peer", "127.0.0.21", tmp_path)
    procs += [a, b]
    assert isthmus("join", "-http-addr", f"127.0.0.21:{b.http_port}",
                   f"127.0.0.20:{a.serf_lan_port}").returncode == 0
    wait_for("joined", lambda: statuses(a) == {"solo": 1, "peer": 1}, 10)
    rng = __import__("random").Random(5)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(5000):
        udp.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))),
                   ("127.0.0.20", a.serf_lan_port))
    udp.close()
    for _ in range(50):
        with socket.create_connection(("127.0.0.20", a.serf_lan_port), timeout=5) as s:
            s.sendall(bytes(rng.getrandbits(8) for _ in range(200)))
    time.sleep(2)
    assert statuses(a) == {"solo": 1, "peer": 1}
    assert statuses(b) == {"solo": 1, "peer": 1}
    assert "malformed gossip" in a.output


def test_servers_of_two_datacenters_join_the_wan_pool(tmp_path, procs):
    a = start("s1", "127.0.0.30", tmp_path, "-server", "-bootstrap", "-datacenter", "dc1")
    b = start("s2", "127.0.0.31", tmp_path, "-server", "-bootstrap", "-datacenter", "dc2")
    procs += [a, b]
    r = cli(b, "join", "-wan", f"127.0.0.30:{a.serf_wan_port}")
    assert r.returncode == 0, r.stderr
    both = {"s1.dc1": 1, "s2.dc2": 1}
    for x in (a, b):
        wait_for(f"{x.host} sees both WAN members", lambda x=x: statuses(x, wan=True) == both, 15)
    out = cli(a, "members", "-wan").stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert rows["s2.dc2"][1:7] == [f"127.0.0.31:{b.serf_wan_port}", "alive", "server", "1.22.0",
                                   "2", "dc2"]
    # the LAN pools stay apart
    assert statuses(a) == {"s1": 1} and statuses(b) == {"s2": 1}


@pytest.mark.slow
def test_coordinates_and_rtt(tmp_path, procs):
    # coordinates live in the servers' state store (agents send theirs every 15-30 s)
    a = start("c1", "127.0.0.40", tmp_path, "-server", "-bootstrap")
    b = start("c2", "127.0.0.41", tmp_path)
    procs += [a, b]
    assert cli(b, "join", f"127.0.0.40:{a.serf_lan_port}").returncode == 0
    wait_for("both coordinates in the catalog",
             lambda: {c["Node"] for c in a.get_json("/v1/coordinate/nodes")} == {"c1", "c2"}, 120)
    coords = {c["Node"]: c["Coord"] for c in a.get_json("/v1/coordinate/nodes")}
    assert len(coords["c2"]["Vec"]) == 8 and set(coords["c2"]) == {"Adjustment", "Error", "Height", "Vec"}
    r = cli(b, "rtt", "C1")             # the second node is the agent's (Consul's order)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Estimated C1 <-> c2 rtt: ")
    r = cli(a, "rtt", "c2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Estimated c2 <-> c1 rtt: ") and r.stdout.rstrip().endswith(
        "ms (using LAN coordinates)")
    r = cli(a, "rtt", "nobody")
    assert r.returncode == 1 and 'Could not find a coordinate for node "nobody"' in r.stderr
    key = isthmus("keygen").stdout.strip()
    assert len(base64.b64decode(key)) == 32

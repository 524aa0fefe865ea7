"""`isthmus agent` as a user runs it: real processes on loopback, HTTP API, CLI, signals."""
from __future__ import annotations

import json
import os
import signal
import socket

import pytest

from tests.integration.procs import AgentProc, free_port, isthmus

pytestmark = pytest.mark.integration


@pytest.fixture
def dev_agent():
    a = AgentProc("-dev", "-node", "dev1")
    took = a.wait_ready()
    print(f"dev agent ready after {took:.2f}s")
    yield a
    a.kill()


def test_dev_agent_answers_leader_peers_and_self(dev_agent):
    a = dev_agent
    leader = a.get_json("/v1/status/leader")
    assert leader == f"127.0.0.1:{a.server_port}"
    assert a.get_json("/v1/status/peers") == [leader]
    me = a.get_json("/v1/agent/self")
    assert me["Config"]["Datacenter"] == "dc1"
    assert me["Config"]["NodeName"] == "dev1"
    assert me["Config"]["Server"] is True
    assert me["Config"]["Version"] == "1.22.0"
    assert me["Config"]["IsthmusVersion"]
    assert me["Member"]["Tags"]["role"] == "consul"
    assert me["Member"]["Tags"]["port"] == str(a.server_port)
    assert me["DebugConfig"]["DevMode"] is True
    out = a.output
    for text in ("==> Starting Isthmus agent...", "Node name: 'dev1'", "Datacenter: 'dc1'",
                 "Server: true", f"HTTP: {a.http_port}", f"127.0.0.1:{a.server_port}"):
        assert text in out, text


def test_http_error_conventions(dev_agent):
    a = dev_agent
    status, body, headers = a.get("/v1/status/leader?pretty")
    assert status == 200 and body == json.dumps(f"127.0.0.1:{a.server_port}") + "\n"
    status, body, headers = a.get("/v1/agent/self?pretty")
    assert body.startswith("{\n    \"Config\": {\n")
    assert headers["Content-Type"].startswith("application/json")
    status, body, headers = a.get("/v1/no/such/thing")
    assert (status, body) == (404, "404 page not found\n")
    assert headers["Content-Type"].startswith("text/plain")
    status, body, headers = a.get("/v1/status/leader", method="PUT", body=b"")
    assert (status, body) == (405, "method PUT not allowed")
    assert headers["Allow"] == "GET"
    status, body, _ = a.get("/v1/status/leader?dc=dc9")
    assert (status, body) == (500, "No path to datacenter")


def test_cli_reaches_the_agent_by_flag_and_environment(dev_agent):
    a = dev_agent
    r = isthmus("info", "-http-addr", f"127.0.0.1:{a.http_port}")
    assert r.returncode == 0, r.stderr
    assert "build:" in r.stdout and "version = 1.22.0" in r.stdout
    for var in ("ISTHMUS_HTTP_ADDR", "CONSUL_HTTP_ADDR"):
        r = isthmus("info", env={var: f"http://127.0.0.1:{a.http_port}"})
        assert r.returncode == 0, (var, r.stderr)
    r = isthmus("info", "-http-addr", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "Error querying agent" in r.stderr
    r = isthmus("leave", "-http-addr", f"127.0.0.1:{a.http_port}")
    assert r.returncode == 0 and "Graceful leave complete" in r.stdout
    assert a.wait_exit() == 0


@pytest.mark.parametrize("sig,name", [(signal.SIGTERM, "terminated"), (signal.SIGINT, "interrupt")])
def test_signal_stops_gracefully(sig, name):
    a = AgentProc("-dev")
    a.wait_ready()
    a.signal(sig)
    assert a.wait_exit() == 0
    assert f"==> Caught signal: {name}" in a.output
    assert "==> Graceful leave complete" in a.output
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", a.http_port), timeout=1).close()


def test_version_command():
    r = isthmus("version")
    assert r.returncode == 0
    assert r.stdout.startswith("Isthmus v") and "Consul API v1.22.0" in r.stdout


def test_bad_configuration_reports_every_problem_and_starts_nothing(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"bootstrap_expect": "three", "no_such_key": 1,
                               "ports": {"dns": 70000}}))
    port = free_port()
    r = isthmus("agent", "-config-file", str(cfg), "-data-dir", str(tmp_path / "d"),
                "-http-port", str(port), "-bogus-flag")
    assert r.returncode == 1
    err = r.stderr
    assert "bootstrap_expect" in err and "no_such_key" in err and "70000" in err, err
    assert "-bogus-flag" in err, err
    assert "Starting Isthmus agent" not in r.stdout
    s = socket.socket()
    s.bind(("127.0.0.1", port))      # nothing was left listening
    s.close()


def test_two_agents_on_one_data_dir(tmp_path):
    data = str(tmp_path / "data")
    first = AgentProc("-server", "-bootstrap", "-data-dir", data, "-bind", "127.0.0.1",
                      "-client", "127.0.0.1", "-node", "one")
    try:
        first.wait_ready()
        node_id = first.get_json("/v1/agent/self")["Config"]["NodeID"]
        second = AgentProc("-server", "-bootstrap", "-data-dir", data, "-bind", "127.0.0.1",
                           "-client", "127.0.0.1", "-node", "two")
        assert second.wait_exit() == 1
        assert "is in use by another agent" in second.output, second.output
        # the first agent is unharmed, and its node ID is what the data dir holds
        assert first.get_json("/v1/agent/self")["Config"]["NodeID"] == node_id
        with open(os.path.join(data, "node-id")) as f:
            assert f.read().strip() == node_id
    finally:
        first.kill()
    # after the first is gone (even by kill -9), the data dir can be used again, same node ID
    third = AgentProc("-server", "-bootstrap", "-data-dir", data, "-bind", "127.0.0.1",
                      "-client", "127.0.0.1", "-node", "three")
    try:
        third.wait_ready()
        assert third.get_json("/v1/agent/self")["Config"]["NodeID"] == node_id
    finally:
        third.kill()


def test_json_logs():
    a = AgentProc("-dev", "-log-json")
    try:
        a.wait_ready()
    finally:
        a.signal(signal.SIGTERM)
        a.wait_exit()
    records = [json.loads(line) for line in a.lines if line.startswith("{")]
    assert records, a.output
    assert {"@level", "@message", "@module", "@timestamp"} <= set(records[0])
    assert {"agent", "http"} <= {r["@module"] for r in records}


def test_client_agent_without_servers_says_so(tmp_path):
    a = AgentProc("-data-dir", str(tmp_path / "c"), "-bind", "127.0.0.1", "-client", "127.0.0.1",
                  "-node", "client1", "-retry-join", "127.0.0.9")
    try:
        a.wait_ready()
        status, body, _ = a.get("/v1/status/leader")
        assert (status, body) == (500, "No known Consul servers")
        me = a.get_json("/v1/agent/self")
        assert me["Config"]["Server"] is False and me["Member"]["Tags"]["role"] == "node"
        assert "Server RPC: (client agent: none)" in a.output
        assert "Join LAN failed (attempt 1)" in a.output
        # a client agent does not listen on the server port
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", a.server_port), timeout=1).close()
    finally:
        a.kill()

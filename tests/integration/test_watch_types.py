"""`isthmus watch` for every type Consul's command has besides the connect ones (key,
keyprefix, services, nodes, service, checks, event), against a real -dev agent; the data
is what py-consul reads, printed as Consul's watch prints it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import consul
import pytest

from .procs import ROOT, AgentProc, isthmus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "wdev")
    a.wait_ready()
    c = consul.Consul(host=a.host, port=a.http_port)
    c.catalog.register("wn1", "10.8.0.1", service={"Service": "web", "Tags": ["v1"], "Port": 80},
                       check={"Name": "web1 ok", "ServiceID": "web", "Status": "passing"})
    c.catalog.register("wn2", "10.8.0.2", service={"Service": "web", "Tags": ["v2"], "Port": 80},
                       check={"Name": "web2 bad", "ServiceID": "web", "Status": "critical"})
    yield a
    a.kill()


@pytest.fixture
def c(dev):
    return consul.Consul(host=dev.host, port=dev.http_port)


def watch(dev, *args: str):
    return isthmus("watch", f"-http-addr={dev.host}:{dev.http_port}", *args)


def watch_json(dev, *args: str):
    out = watch(dev, *args)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(("[\n    ", "{\n    ", "[]", "{}", "null"))  # MarshalIndent
    return json.loads(out.stdout)


def until(pred, within: float, what: str) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within}s")


def test_services_nodes_service_checks(dev, c):
    assert watch_json(dev, "-type=services") == c.catalog.services()[1]
    nodes = watch_json(dev, "-type=nodes")
    assert [n["Node"] for n in nodes] == [n["Node"] for n in c.catalog.nodes()[1]]
    svc = watch_json(dev, "-type=service", "-service=web")
    assert [e["Node"]["Node"] for e in svc] == ["wn1", "wn2"]
    assert {"Node", "Service", "Checks"} <= set(svc[0])
    assert [e["Node"]["Node"] for e in watch_json(dev, "-type=service", "-service=web",
                                                  "-passingonly=true")] == ["wn1"]
    assert [e["Node"]["Node"] for e in watch_json(dev, "-type=service", "-service=web",
                                                  "-tag=v2")] == ["wn2"]
    checks = watch_json(dev, "-type=checks", "-service=web")
    assert sorted(x["Name"] for x in checks) == ["web1 ok", "web2 bad"]
    crit = watch_json(dev, "-type=checks", "-state=critical")
    assert [x["Name"] for x in crit if x["Node"].startswith("wn")] == ["web2 bad"]
    every = watch_json(dev, "-type=checks")                     # state "any"
    assert {"web1 ok", "web2 bad"} <= {x["Name"] for x in every}
    tagged = watch_json(dev, "-type=checks", "-tag=v1")
    assert [x["Name"] for x in tagged] == ["web1 ok"]
    assert watch_json(dev, "-type=keyprefix", "-prefix=nothing/here/") is None
    assert watch_json(dev, "-type=key", "-key=nothing/here") is None


def test_event_watch_prints_the_events(dev, c):
    assert watch_json(dev, "-type=event", "-name=never-fired") == []
    c.event.fire("wdeploy", "v1")
    until(lambda: any(e["Name"] == "wdeploy" for e in c.event.list(name="wdeploy")[1]), 10,
          "the event in the agent's list")
    evs = watch_json(dev, "-type=event", "-name=wdeploy")
    assert [e["Name"] for e in evs] == ["wdeploy"]


def test_handler_runs_on_changes_with_the_index(dev, c, tmp_path):
    log = tmp_path / "runs.txt"
    handler = (f"{sys.executable} -c \"import os, sys; open('{log}', 'a').write("
               f"os.environ['CONSUL_INDEX'] + ' ' + sys.stdin.read())\"")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "agent", "watch", f"-http-addr={dev.host}:{dev.http_port}",
             "-type=services", handler], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        until(lambda: log.exists() and '"web"' in log.read_text(), 20, "first handler run")
        c.catalog.register("wn3", "10.8.0.3", service={"Service": "api", "Port": 81})
        until(lambda: '"api"' in log.read_text(), 20, "the handler saw the new service")
        runs = log.read_text().splitlines()
        index, data = runs[-1].split(" ", 1)
        assert int(index) > 0 and "api" in json.loads(data)     # compact JSON: one line
        # an unrelated write (KV) wakes nothing: the services view did not change
        c.kv.put("unrelated", "x")
        time.sleep(1.0)
        assert len(log.read_text().splitlines()) == len(runs)
    finally:
        for p in procs:
            p.kill()
            p.wait(10)


def test_event_handler_gets_only_new_events(dev, c, tmp_path):
    log = tmp_path / "events.txt"
    handler = f"{sys.executable} -c \"import sys; open('{log}', 'a').write(sys.stdin.read())\""
    c.event.fire("wnew", "first")
    until(lambda: c.event.list(name="wnew")[1], 10, "first event")
    p = subprocess.Popen([sys.executable, "-m", "agent", "watch",
                          f"-http-addr={dev.host}:{dev.http_port}", "-type=event", "-name=wnew",
                          handler], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        until(lambda: log.exists() and log.read_text().count("\n") >= 1, 20, "first run")
        c.event.fire("wnew", "second")
        until(lambda: log.read_text().count("\n") >= 2, 20, "second run")
        first, second = (json.loads(line) for line in log.read_text().splitlines()[:2])
        assert [e["Name"] for e in first] == ["wnew"]
        assert len(second) == 1 and second[0]["ID"] != first[-1]["ID"]   # only the new one
    finally:
        p.kill()
        p.wait(10)


def test_failing_handler_stops_the_watch(dev):
    out = watch(dev, "-type=nodes", f"{sys.executable} -c 'import sys; sys.exit(3)'")
    assert out.returncode == 1 and "Error executing handler: exit status 3" in out.stderr


def test_cli_errors_are_consuls(dev):
    out = watch(dev)
    assert out.returncode == 1 and out.stderr.startswith("Watch type must be specified\n\n")
    for args, msg in ((["-type=bogus"], "Unsupported watch type: bogus"),
                      (["-type=key"], "Must specify a single key to watch"),
                      (["-type=service"], "Must specify a single service to watch"),
                      (["-type=checks", "-service=web", "-state=passing"],
                       "Cannot specify service and state"),
                      (["-type=nodes", "-key=x"], "Invalid parameters: [key]"),
                      (["-type=service", "-service=web", "-passingonly=maybe"],
                       'Failed to parse passingonly flag: strconv.ParseBool: parsing "maybe": '
                       'invalid syntax')):
        out = watch(dev, *args)
        assert (out.returncode, out.stderr.strip()) == (1, msg), args
    out = isthmus("watch", "-http-addr=127.0.0.1:1", "-type=nodes")
    assert out.returncode == 1 and out.stderr.startswith("Error querying Isthmus agent: ")


def test_unsupported_state_is_retried_as_consuls_watch_does(dev):
    p = subprocess.Popen([sys.executable, "-m", "agent", "watch",
                          f"-http-addr={dev.host}:{dev.http_port}", "-type=checks",
                          "-state=bogus"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        time.sleep(2.0)
        assert p.poll() is None                             # still running: it retries
    finally:
        p.kill()
        _, err = p.communicate(10)
    assert "[ERROR] watch: Watch errored: type=checks error=\"Unsupported state: bogus\" " \
           "retry=5s" in err

"""Sessions, KV locks, Txn and user events through py-consul and the CLI, against a real
`isthmus agent -dev` process."""
from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import consul
import pytest

from .procs import ROOT, AgentProc, isthmus, wait_until

pytestmark = pytest.mark.integration

NODE = "sess1"


@pytest.fixture(scope="module")
def agent():
    a = AgentProc("-dev", "-node", NODE)
    a.wait_ready()
    c = consul.Consul(host="127.0.0.1", port=a.http_port)

    def serf_health():
        try:
            _, checks = c.health.node(NODE)
        except consul.ConsulException:
            return False
        return any(ch["CheckID"] == "serfHealth" for ch in checks or [])
    # The leader registers its LAN members with a serfHealth check (the default session
    # check); register it ourselves if that has not happened within a few seconds.
    try:
        wait_until(serf_health, 5.0, "serfHealth registered by the leader")
    except AssertionError:
        c.catalog.register(NODE, "127.0.0.1", check={
            "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing"})
    yield a
    a.kill()


@pytest.fixture
def c(agent):
    return consul.Consul(host="127.0.0.1", port=agent.http_port)


def test_session_lifecycle(c, agent):
    sid = c.session.create(name="web-lock", ttl=30)
    _, info = c.session.info(sid)
    assert (info["ID"], info["Name"], info["Node"], info["TTL"], info["Behavior"]) == \
        (sid, "web-lock", NODE, "30s", "release")
    assert info["LockDelay"] == 15_000_000_000 and info["NodeChecks"] == ["serfHealth"]
    index, listed = c.session.list()
    assert sid in [s["ID"] for s in listed] and int(index) >= info["CreateIndex"]
    _, mine = c.session.node(NODE)
    assert sid in [s["ID"] for s in mine]
    assert c.session.renew(sid)["ID"] == sid
    assert c.session.destroy(sid) is True
    assert c.session.info(sid)[1] is None
    with pytest.raises(consul.NotFound):
        c.session.renew(sid)
    status, body, _ = agent.get(f"/v1/session/renew/{sid}", "PUT")
    assert (status, body) == (404, f"Session id '{sid}' not found")
    assert c.session.destroy("00000000-0000-0000-0000-000000000000") is True


def test_bad_session_input(c, agent):
    with pytest.raises(consul.ConsulException, match='invalid session "nope"'):
        c.kv.put("bad/acquire", "x", acquire="nope")
    assert c.kv.get("bad/acquire")[1] is None            # nothing half applied
    status, body, _ = agent.get("/v1/session/create", "PUT", b'{"TTL": "5s"}')
    assert (status, body) == (500, "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]")
    status, body, _ = agent.get("/v1/session/create", "PUT", b'{"Behavior": "explode"}')
    assert (status, body) == (500, "Invalid Behavior setting 'explode'")
    status, body, _ = agent.get("/v1/session/create", "PUT", b'{"Name": ')
    assert status == 400 and body.startswith("Request decode failed:")
    status, body, _ = agent.get("/v1/session/create", "PUT", b'{"Checks": ["no-such-check"]}')
    assert (status, body) == (500, "Missing check 'no-such-check' registration")
    status, _, _ = agent.get("/v1/session/info/x", "PUT")
    assert status == 405
    assert agent.get_json("/v1/session/info/nope") == []


def test_locks_compete_and_release(c):
    a = c.session.create(lock_delay=0)
    b = c.session.create(lock_delay=0)
    assert c.kv.put("locks/job", "a-holds", acquire=a) is True
    assert c.kv.put("locks/job", "b-wants", acquire=b) is False
    _, e = c.kv.get("locks/job")
    assert (e["Session"], e["LockIndex"], e["Value"]) == (a, 1, b"a-holds")
    assert c.kv.put("locks/job", "x", release=b) is False       # only the holder releases
    assert c.kv.put("locks/job", "free", release=a) is True
    _, e = c.kv.get("locks/job")
    assert "Session" not in e and e["LockIndex"] == 1
    assert c.kv.put("locks/job", "b-holds", acquire=b) is True
    assert c.kv.get("locks/job")[1]["LockIndex"] == 2
    c.session.destroy(b)                                         # release on destroy
    assert "Session" not in c.kv.get("locks/job")[1]
    c.session.destroy(a)


def test_lock_delay_blocks_acquire_after_invalidation(c):
    holder = c.session.create(lock_delay=3)
    other = c.session.create(lock_delay=0)
    assert c.kv.put("locks/delayed", "h", acquire=holder)
    c.session.destroy(holder)
    assert c.kv.put("locks/delayed", "o", acquire=other) is False    # within the 3 s delay
    wait_until(lambda: c.kv.put("locks/delayed", "o", acquire=other), 15.0, "acquire after lock delay")
    c.session.destroy(other)


def test_behavior_delete_removes_held_keys(c):
    sid = c.session.create(behavior="delete", lock_delay=0)
    assert c.kv.put("ephemeral/me", "here", acquire=sid)
    c.session.destroy(sid)
    assert c.kv.get("ephemeral/me")[1] is None


def test_ttl_expiry(c):
    sid = c.session.create(ttl=10, lock_delay=0)
    assert c.kv.put("locks/ttl", "v", acquire=sid)
    t0 = time.monotonic()
    assert c.session.info(sid)[1] is not None
    # Consul's contract: not before the TTL, at most about 2 × TTL after the last renewal
    wait_until(lambda: c.session.info(sid)[1] is None, 40.0, "session expired")
    took = time.monotonic() - t0
    print(f"TTL 10s session expired after {took:.1f}s")
    assert took >= 9.0
    assert "Session" not in c.kv.get("locks/ttl")[1]


def test_txn(c, agent):
    ok = c.txn.put([
        {"KV": {"Verb": "set", "Key": "txn/a", "Value": base64.b64encode(b"1").decode()}},
        {"KV": {"Verb": "set", "Key": "txn/b", "Value": base64.b64encode(b"2").decode(), "Flags": 9}},
        {"KV": {"Verb": "get", "Key": "txn/a"}},
    ])
    assert ok["Errors"] is None
    assert [r["KV"]["Key"] for r in ok["Results"]] == ["txn/a", "txn/b", "txn/a"]
    assert ok["Results"][0]["KV"]["Value"] is None and ok["Results"][2]["KV"]["Value"] == "MQ=="
    idx = ok["Results"][0]["KV"]["ModifyIndex"]
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put([{"KV": {"Verb": "set", "Key": "txn/c", "Value": "Mw=="}},
                   {"KV": {"Verb": "check-index", "Key": "txn/a", "Index": idx + 1000}}])
    assert c.kv.get("txn/c")[1] is None                          # rolled back
    status, body, headers = agent.get("/v1/txn", "PUT", json.dumps(
        [{"KV": {"Verb": "get-tree", "Key": "txn/"}}]).encode())
    assert status == 200 and headers.get("X-Consul-KnownLeader") == "true"
    assert [r["KV"]["Key"] for r in json.loads(body)["Results"]] == ["txn/a", "txn/b"]
    status, body, _ = agent.get("/v1/txn", "PUT", json.dumps(
        [{"KV": {"Verb": "get", "Key": "x"}}] * 129).encode())
    assert (status, body) == (413, "Transaction contains too many operations (129 > 128)")
    status, body, _ = agent.get("/v1/txn", "PUT", b"{nope")
    assert status == 400 and body.startswith("Failed to parse body:")


def test_events_fire_and_list(c, agent):
    fired = c.event.fire("deploy", "v42")
    assert fired["Name"] == "deploy" and fired["Version"] == 1
    index, events = wait_until(lambda: (lambda r: r if any(e["ID"] == fired["ID"] for e in r[1]) else None)(
        c.event.list(name="deploy")), 10.0, "event listed")
    ev = [e for e in events if e["ID"] == fired["ID"]][0]
    assert ev["Payload"] == b"v42" and ev["LTime"] >= 1
    c.event.fire("other")
    wait_until(lambda: any(e["Name"] == "other" for e in c.event.list()[1]), 10.0, "second event")
    assert all(e["Name"] == "deploy" for e in c.event.list(name="deploy")[1])
    # a node filter that does not match this agent: fired, but not kept here
    hidden = c.event.fire("filtered", node="^not-this-node$")
    c.event.fire("marker")
    wait_until(lambda: any(e["Name"] == "marker" for e in c.event.list()[1]), 10.0, "marker event")
    assert hidden["ID"] not in [e["ID"] for e in c.event.list()[1]]
    status, body, _ = agent.get("/v1/event/fire/x?tag=a", "PUT")
    assert (status, body) == (500, "Cannot provide tag filter without service filter")


def _cli(agent, *args, **kw):
    return isthmus(*args[:2], f"-http-addr={agent.http}", *args[2:], **kw) if args[0] == "kv" \
        else isthmus(args[0], f"-http-addr={agent.http}", *args[1:], **kw)


def test_cli_kv_export_import_round_trip(c, agent, tmp_path):
    c.kv.put("exp/a", "one")
    c.kv.put("exp/b/c", b"\x00\xff", flags=5)
    out = _cli(agent, "kv", "export", "exp/")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data == [{"key": "exp/a", "flags": 0, "value": base64.b64encode(b"one").decode()},
                    {"key": "exp/b/c", "flags": 5, "value": base64.b64encode(b"\x00\xff").decode()}]
    f = tmp_path / "export.json"
    f.write_text(out.stdout)
    out = _cli(agent, "kv", "import", "-prefix=copy/", f"@{f}")
    assert out.returncode == 0, out.stderr
    assert "Imported: copy/exp/a" in out.stdout
    _, e = c.kv.get("copy/exp/b/c")
    assert (e["Value"], e["Flags"]) == (b"\x00\xff", 5)
    p = subprocess.run([sys.executable, "-m", "agent", "kv", "import", f"-http-addr={agent.http}",
                        "-prefix=stdin/", "-"], input=f.read_text(), capture_output=True,
                       text=True, cwd=ROOT, timeout=30)
    assert p.returncode == 0, p.stderr
    assert c.kv.get("stdin/exp/a")[1]["Value"] == b"one"
    assert _cli(agent, "kv", "get", "exp/a").stdout == "one\n"     # moved commands still work


def test_cli_lock_runs_child_holding_the_lock(c, agent):
    code = ("import json,urllib.request;"
            f"r=urllib.request.urlopen('{agent.http}/v1/kv/jobs/nightly/.lock');"
            "print('HOLDER', json.loads(r.read())[0].get('Session'))")
    out = _cli(agent, "lock", "-shell=false", "jobs/nightly", sys.executable, "-c", code)
    assert out.returncode == 0, out.stderr + out.stdout
    holder = out.stdout.split("HOLDER ", 1)[1].split()[0]
    assert holder and holder != "None"
    assert c.kv.get("jobs/nightly/.lock")[1] is None             # released and removed
    assert c.session.info(holder)[1] is None                     # and its session destroyed


def test_cli_watch_sees_a_change(c, agent, tmp_path):
    c.kv.put("watched/key", "before")
    out = _cli(agent, "watch", "-type=key", "-key=watched/key")
    assert out.returncode == 0, out.stderr
    assert base64.b64decode(json.loads(out.stdout)["Value"]) == b"before"
    log = tmp_path / "seen.txt"
    handler = f"{sys.executable} -c \"import sys; open('{log}', 'a').write(sys.stdin.read())\""
    proc = subprocess.Popen([sys.executable, "-m", "agent", "watch", f"-http-addr={agent.http}",
                             "-type=keyprefix", "-prefix=watched/", handler], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: log.exists() and "watched/key" in log.read_text(), 20.0, "first handler run")
        c.kv.put("watched/key", "after")
        after = base64.b64encode(b"after").decode()
        wait_until(lambda: after in log.read_text(), 20.0, "handler saw the change")
    finally:
        proc.kill()
        proc.wait(10)


def test_cli_event(c, agent):
    out = _cli(agent, "event", "-name=cli-deploy", "payload-1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Event ID: ")
    eid = out.stdout.split("Event ID: ", 1)[1].strip()
    wait_until(lambda: any(e["ID"] == eid for e in c.event.list(name="cli-deploy")[1]), 10.0,
           "CLI event listed")
    out = _cli(agent, "event", "payload")
    assert out.returncode == 1 and "Event name must be specified" in out.stderr


def test_agent_still_serves(agent):
    assert agent.get("/v1/agent/self")[0] == 200

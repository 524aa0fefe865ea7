"""Isthmus agents and real `serf agent` processes in one LAN pool, on loopback.

The serf binary comes from ISTHMUS_SERF (CI builds it with shared/tools/build-serf.sh);
without it these tests skip, unless ISTHMUS_REQUIRE_SERF=1 (CI) makes that a failure.
Deadlines are generous (about 3x the bound); the times measured are printed.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time

import pytest

from tests.integration.procs import AgentProc, free_ports, isthmus

pytestmark = pytest.mark.interop

SERF = os.environ.get("ISTHMUS_SERF") or shutil.which("serf") or os.path.expanduser(
    "~/.cache/isthmus-serf/bin/serf")
if not os.path.exists(SERF):
    if os.environ.get("ISTHMUS_REQUIRE_SERF") == "1":
        raise RuntimeError(f"ISTHMUS_REQUIRE_SERF=1 but no serf binary at {SERF}")
    pytestmark = [pytest.mark.interop, pytest.mark.skip(reason="no serf binary (set ISTHMUS_SERF)")]

# memberlist LAN: failure known within probe (1 s) + timeout + suspicion (4 s at n ≤ 10) +
# gossip (~1–3 s); real Serf shows 6.8 s for N = 5. Three times that:
FAIL_DEADLINE = 3 * 7.0
KEY = base64.b64encode(bytes(range(32))).decode()


class SerfProc:
    def __init__(self, name: str, host: str, *extra: str) -> None:
        self.name = name
        self.host = host
        self.port, rpc_port = free_ports(2, host)
        self.rpc = f"{host}:{rpc_port}"
        self.proc = subprocess.Popen(
            [SERF, "agent", f"-node={name}", f"-bind={host}:{self.port}", f"-rpc-addr={self.rpc}",
             "-log-level=debug", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:
            r = subprocess.run([SERF, "members", f"-rpc-addr={self.rpc}"], capture_output=True,
                               text=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError("serf agent did not start")

    def members(self) -> dict[str, dict]:
        r = subprocess.run([SERF, "members", f"-rpc-addr={self.rpc}", "-format=json"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        return {m["name"]: m for m in json.loads(r.stdout)["members"]}

    def join(self, addr: str) -> subprocess.CompletedProcess:
        return subprocess.run([SERF, "join", f"-rpc-addr={self.rpc}", addr], capture_output=True,
                              text=True, timeout=30)

    def leave(self) -> None:
        subprocess.run([SERF, "leave", f"-rpc-addr={self.rpc}"], capture_output=True, timeout=30)
        self.proc.wait(30)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def isthmus_agent(name: str, host: str, tmp_path, *extra: str) -> AgentProc:
    a = AgentProc("-node", name, "-bind", host, "-client", host, "-data-dir",
                  str(tmp_path / name), *extra, host=host)
    a.wait_ready()
    return a


def lan_port(a: AgentProc) -> int:
    return a.serf_lan_port


def isthmus_members(a: AgentProc) -> dict[str, dict]:
    return {m["Name"]: m for m in a.get_json("/v1/agent/members")}


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
    raise AssertionError(f"{what}: not within {within}s (last error: {last})")


@pytest.fixture
def cleanup():
    procs = []
    yield procs
    for p in procs:
        p.kill()


@pytest.mark.parametrize("mode", ["plain", "compressed", "encrypted"])
def test_serf_and_isthmus_join_both_ways_and_see_each_other(mode, tmp_path, cleanup):
    serf_extra = {"plain": ["-disable-compression"], "compressed": [],
                  "encrypted": [f"-encrypt={KEY}"]}[mode]
    ist_extra = ["-encrypt", KEY] if mode == "encrypted" else []
    a = isthmus_agent("ist1", "127.0.0.2", tmp_path, *ist_extra)
    cleanup.append(a)
    s = SerfProc("serf1", "127.0.0.3", *serf_extra)
    cleanup.append(s)
    # serf joins isthmus
    r = s.join(f"127.0.0.2:{lan_port(a)}")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for("serf sees ist1 alive",
             lambda: s.members()["ist1"]["status"] == "alive", 10)
    wait_for("ist1 sees serf1 alive",
             lambda: isthmus_members(a)["serf1"]["Status"] == 1, 10)
    tags = s.members()["ist1"]["tags"]
    assert tags["role"] == "node" and tags["dc"] == "dc1"
    # a second isthmus agent joins through the serf agent (isthmus → serf direction)
    b = isthmus_agent("ist2", "127.0.0.4", tmp_path, *ist_extra)
    cleanup.append(b)
    r = isthmus("join", "-http-addr", f"127.0.0.4:{b.http_port}", f"127.0.0.3:{s.port}")
    assert r.returncode == 0, r.stderr
    for who, get in (("serf1", lambda: {k: v["status"] for k, v in s.members().items()}),
                     ("ist1", lambda: {k: ("alive" if v["Status"] == 1 else v["Status"])
                                       for k, v in isthmus_members(a).items()}),
                     ("ist2", lambda: {k: ("alive" if v["Status"] == 1 else v["Status"])
                                       for k, v in isthmus_members(b).items()})):
        wait_for(f"{who} sees all three alive",
                 lambda: get() == {"ist1": "alive", "ist2": "alive", "serf1": "alive"}, 15)
    out = isthmus("members", "-http-addr", f"127.0.0.2:{a.http_port}").stdout
    assert "serf1" in out and "ist2" in out and "alive" in out


def test_kill_and_leave_are_seen_as_failed_and_left(tmp_path, cleanup):
    a = isthmus_agent("ist1", "127.0.0.2", tmp_path)
    cleanup.append(a)
    s = SerfProc("serf1", "127.0.0.3")
    cleanup.append(s)
    s2 = SerfProc("serf2", "127.0.0.5")
    cleanup.append(s2)
    assert s.join(f"127.0.0.2:{lan_port(a)}").returncode == 0
    assert s2.join(f"127.0.0.2:{lan_port(a)}").returncode == 0
    wait_for("ist1 sees both serfs", lambda: all(
        isthmus_members(a)[n]["Status"] == 1 for n in ("serf1", "serf2")), 15)
    # kill -9 of a serf agent: isthmus marks it failed
    t0 = time.monotonic()
    s2.kill()
    wait_for("ist1 marks serf2 failed", lambda: isthmus_members(a)["serf2"]["Status"] == 4,
             FAIL_DEADLINE)
    print(f"kill -9 serf2 -> failed at ist1 after {time.monotonic() - t0:.2f}s")
    # graceful serf leave: left
    s.leave()
    wait_for("ist1 marks serf1 left", lambda: isthmus_members(a)["serf1"]["Status"] == 3, 15)
    # and the other way: an isthmus agent killed with -9 is failed at serf
    s3 = SerfProc("serf3", "127.0.0.6")
    cleanup.append(s3)
    b = isthmus_agent("ist2", "127.0.0.4", tmp_path)
    cleanup.append(b)
    assert s3.join(f"127.0.0.2:{lan_port(a)}").returncode == 0
    assert s3.join(f"127.0.0.4:{lan_port(b)}").returncode == 0
    wait_for("serf3 sees ist2 alive", lambda: s3.members()["ist2"]["status"] == "alive", 15)
    t0 = time.monotonic()
    b.kill()
    wait_for("serf3 marks ist2 failed", lambda: s3.members()["ist2"]["status"] == "failed",
             FAIL_DEADLINE)
    print(f"kill -9 ist2 -> failed at serf3 after {time.monotonic() - t0:.2f}s")
    # graceful isthmus leave: left at serf
    r = isthmus("leave", "-http-addr", f"127.0.0.2:{a.http_port}")
    assert r.returncode == 0, r.stderr
    wait_for("serf3 marks ist1 left", lambda: s3.members()["ist1"]["status"] == "left", 15)


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypt"])
def test_done_when_two_isthmus_and_one_serf(encrypted, tmp_path, cleanup):
    """Issue #3's acceptance: both sides list the same three alive members; a kill -9 is
    seen as failed by both within Serf's own bound (6.8 s at N=5, serf-peer.md)."""
    extra = ["-encrypt", KEY] if encrypted else []
    a = isthmus_agent("ist1", "127.0.0.2", tmp_path, *extra)
    b = isthmus_agent("ist2", "127.0.0.4", tmp_path, *extra)
    cleanup += [a, b]
    s = SerfProc("serf1", "127.0.0.3", *([f"-encrypt={KEY}"] if encrypted else []))
    cleanup.append(s)
    assert s.join(f"127.0.0.2:{lan_port(a)}").returncode == 0
    r = isthmus("join", "-http-addr", f"127.0.0.4:{b.http_port}", f"127.0.0.3:{s.port}")
    assert r.returncode == 0, r.stderr

    def cli_members() -> dict[str, str]:
        out = isthmus("members", "-http-addr", f"127.0.0.2:{a.http_port}").stdout.splitlines()
        return {line.split()[0]: line.split()[2] for line in out[1:]}

    three = {"ist1": "alive", "ist2": "alive", "serf1": "alive"}
    wait_for("isthmus members lists three alive", lambda: cli_members() == three, 15)
    wait_for("serf members lists three alive",
             lambda: {k: v["status"] for k, v in s.members().items()} == three, 15)
    t0 = time.monotonic()
    b.kill()
    wait_for("isthmus and serf agree ist2 failed",
             lambda: cli_members()["ist2"] == "failed" and s.members()["ist2"]["status"] == "failed",
             FAIL_DEADLINE)
    took = time.monotonic() - t0
    print(f"kill -9 ist2 -> failed on both sides after {took:.2f}s (real Serf: 6.8 s)")

"""Jepsen-lite on real processes: 3 (and, marked slow, 5) servers on 127.0.0.x, clients
through the HTTP API, nemeses `kill -9` + restart and SIGSTOP/SIGCONT of the leader or a
random server. The history of puts and `?consistent` reads is checked for linearizability
(agent/sim/linearizability.py); an operation that errs or times out has an unknown outcome.
Then every acknowledged write must still be readable after all servers restart.

Default and `?stale` reads are checked for what Consul documents: a stale read returns a
value that was written (or the key's absence) and says how long ago its server last heard
from the leader (X-Consul-LastContact); `?stale` and `?consistent` together are refused.
"""
from __future__ import annotations

import base64
import json
import logging
import random
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from agent.sim.linearizability import Op, check

from .test_raft_cluster import Server, agreed_leader, wait

pytestmark = pytest.mark.integration
log = logging.getLogger(__name__)
KEYS = ("a", "b", "c")


def http(s: Server, method: str, path: str, body: bytes | None = None, timeout: float = 3.0):
    req = urllib.request.Request(s.proc.http + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


class Clients:
    """N client threads, each doing put / consistent get on random keys at random servers."""

    def __init__(self, servers: list[Server], n: int, seed: int) -> None:
        self.servers = servers
        self.history: list[Op] = []
        self.acked: dict[str, str] = {}          # the last acknowledged put per key (per client order)
        self.written: set[tuple[str, str]] = set()
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i, random.Random(seed * 100 + i)),
                                         daemon=True) for i in range(n)]

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self, cid: int, rng: random.Random) -> None:
        seq = 0
        while not self.stop.is_set():
            s = rng.choice(self.servers)
            key = rng.choice(KEYS)
            if s.proc is None or s.proc.proc.poll() is not None:
                time.sleep(0.01)
                continue
            if rng.random() < 0.5:
                seq += 1
                value = f"{cid}-{seq}"
                op = Op(cid, "put", key, value=value, call=self._now())
                with self._lock:
                    self.written.add((key, value))
                try:
                    status, body, _ = http(s, "PUT", f"/v1/kv/{key}", value.encode())
                    if status == 200 and body.strip() == b"true":
                        op.ret = self._now()
                except OSError:
                    pass
            else:
                op = Op(cid, "get", key, call=self._now())
                try:
                    status, body, _ = http(s, "GET", f"/v1/kv/{key}?consistent")
                    if status == 200:
                        op.output = base64.b64decode(json.loads(body)[0]["Value"] or "").decode()
                        op.ret = self._now()
                    elif status == 404:
                        op.ret = self._now()
                except OSError:
                    pass
            with self._lock:
                self.history.append(op)
            if op.ret is None:
                time.sleep(0.05)            # back off from a server that is down or paused

    def __enter__(self) -> "Clients":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def start_cluster(tmp: str, n: int) -> list[Server]:
    first = Server(0, tmp, None, expect=n)
    join = f"{first.host}:{first.ports['serf-lan']}"
    servers = [first] + [Server(i, tmp, join, expect=n) for i in range(1, n)]
    for s in servers:
        s.start()
    wait(lambda: agreed_leader(servers), 30, "one agreed leader")
    return servers


def leader_of(servers: list[Server]) -> Server | None:
    addr = agreed_leader([s for s in servers if s.proc and s.proc.proc.poll() is None])
    return next((s for s in servers if s.rpc == addr), None)


def nemesis(servers: list[Server], rng: random.Random, rounds: int) -> list[str]:
    done = []
    for _ in range(rounds):
        time.sleep(1.0)
        target = (leader_of(servers) if rng.random() < 0.6 else None) or rng.choice(servers)
        if rng.random() < 0.5:
            target.proc.kill()
            done.append(f"kill -9 {target.name}")
            time.sleep(2.5)
            target.start()
        else:
            target.proc.signal(signal.SIGSTOP)
            done.append(f"SIGSTOP {target.name}")
            time.sleep(2.5)
            target.proc.signal(signal.SIGCONT)
        wait(lambda: agreed_leader(servers), 30, "a leader after " + done[-1])
    return done


def run_jepsen(tmp: str, n: int, seed: int, rounds: int) -> None:
    servers = start_cluster(tmp, n)
    try:
        rng = random.Random(seed)
        with Clients(servers, 6, seed) as clients:
            time.sleep(1.0)
            faults = nemesis(servers, rng, rounds)
            time.sleep(1.0)
        history = list(clients.history)
        ok = [o for o in history if o.ret is not None]
        log.info("%d servers, seed %d, faults %s: %d ops (%d with known outcome)", n, seed,
                 faults, len(history), len(ok))
        assert sum(1 for o in ok if o.kind == "put") > 20, "too few acknowledged writes to judge"
        result = check(history)
        assert result.ok is True, f"not linearizable (seed {seed}): {result.detail}"
        # every acknowledged write survives a kill -9 of every server and a restart: reads
        # after the restart, appended to the history, must keep it linearizable (a write
        # with an unknown outcome may still land after the last acknowledged one)
        for s in servers:
            s.proc.kill()
        for s in servers:
            s.start()
        wait(lambda: agreed_leader(servers), 30, "a leader after restarting all")
        end = clients._now() + 1000
        for key in KEYS:
            status, body, _ = http(servers[0], "GET", f"/v1/kv/{key}?consistent", timeout=10)
            assert status in (200, 404)
            got = (base64.b64decode(json.loads(body)[0]["Value"] or "").decode()
                   if status == 200 else None)
            history.append(Op(99, "get", key, call=end, ret=end + 1, output=got))
        result = check(history)
        assert result.ok is True, f"a write was lost across the restart: {result.detail}"
    finally:
        for s in servers:
            if s.proc is not None:
                s.proc.kill()


def test_jepsen_lite_3_servers(tmp_path):
    run_jepsen(str(tmp_path), 3, seed=1, rounds=4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_jepsen_lite_5_servers(tmp_path, seed):
    run_jepsen(str(tmp_path), 5, seed=seed, rounds=8)


def test_stale_and_default_reads_as_consul_documents(tmp_path):
    servers = start_cluster(str(tmp_path), 3)
    try:
        leader = leader_of(servers)
        follower = next(s for s in servers if s is not leader)
        assert http(leader, "PUT", "/v1/kv/x", b"1")[0] == 200
        # default on a follower: forwarded to the leader, so it sees the write
        status, body, headers = http(follower, "GET", "/v1/kv/x")
        assert status == 200 and headers["X-Consul-KnownLeader"] == "true"
        # stale on a paused-then-resumed follower: a value that was written, with LastContact
        follower.proc.signal(signal.SIGSTOP)
        try:
            assert http(leader, "PUT", "/v1/kv/x", b"2")[0] == 200
        finally:
            follower.proc.signal(signal.SIGCONT)
        status, body, headers = http(follower, "GET", "/v1/kv/x?stale")
        assert status == 200
        assert base64.b64decode(json.loads(body)[0]["Value"]) in (b"1", b"2")
        assert int(headers["X-Consul-LastContact"]) >= 0
        status, body, _ = http(follower, "GET", "/v1/kv/x?stale&consistent")
        assert status == 400 and b"conflicting semantics" in body
        status, body, _ = http(follower, "GET", "/v1/kv/x?consistent")
        assert status == 200 and base64.b64decode(json.loads(body)[0]["Value"]) == b"2"
    finally:
        for s in servers:
            s.proc.kill()

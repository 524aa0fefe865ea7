"""`isthmus lock -n N` (N > 1): Consul's semaphore protocol with real processes against a
dev agent — <prefix>/.lock holds {"Limit", "Holders"} (changed by check-and-set), each
contender holds <prefix>/<session> with its session; N holders at once, the next waits
until one lets go; a holder whose slot is lost has its child stopped."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agent.cli.kv_cmds import SEMAPHORE_FLAG_VALUE

from .procs import ROOT, isthmus, wait_until

pytestmark = pytest.mark.integration

WITHIN = 60.0          # generous: each step is a few blocking-query round trips

CHILD = """
import os, sys, time
name, d = sys.argv[1], sys.argv[2]
with open(os.path.join(d, 'started_' + name), 'w') as f:
    f.write(f"{os.getpid()} {os.environ.get('CONSUL_LOCK_HELD')}")
while not os.path.exists(os.path.join(d, 'release_' + name)):
    time.sleep(0.05)
"""

DEV_NODE = "lock1"         # the `dev` agent (conftest.py)


def until(fn, what: str, within: float = WITHIN):
    return wait_until(fn, within, what)


class Holder:
    """One `isthmus lock` process whose child waits for its release file."""

    def __init__(self, dev, tmp, name: str, prefix: str, *flags: str) -> None:
        self.name, self.tmp = name, tmp
        self.out = open(tmp / f"{name}.out", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "lock", f"-http-addr={dev.http}", *flags,
             "-shell=false", prefix, sys.executable, "-c", CHILD, name, str(tmp)],
            cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT)

    def started(self) -> bool:
        return (self.tmp / f"started_{self.name}").exists()

    def child_info(self) -> tuple[int, str]:
        pid, held = (self.tmp / f"started_{self.name}").read_text().split()
        return int(pid), held

    def release(self) -> int:
        (self.tmp / f"release_{self.name}").write_text("")
        return self.wait()

    def wait(self) -> int:
        rc = self.proc.wait(WITHIN)
        self.out.close()
        return rc

    def output(self) -> str:
        return (self.tmp / f"{self.name}.out").read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def semaphore(c, prefix: str) -> tuple[dict | None, list[str]]:
    """(.lock's decoded value with its flags, the contender keys' sessions)."""
    _, pairs = c.kv.get(prefix, recurse=True)
    lock, contenders = None, []
    for p in pairs or []:
        if p["Key"] == prefix + "/.lock":
            lock = dict(json.loads(p["Value"]), Flags=p["Flags"])
        else:
            assert p["Key"] == prefix + "/" + p["Session"], p
            contenders.append(p["Session"])
    return lock, contenders


def test_two_holders_at_once_and_a_third_waits(dev, c, tmp_path):
    prefix = "sem/jobs"
    holders = [Holder(dev, tmp_path, n, prefix, "-n", "2") for n in ("a", "b")]
    try:
        until(lambda: all(h.started() for h in holders), "two holders at once")
        assert [h.child_info()[1] for h in holders] == ["true", "true"]    # CONSUL_LOCK_HELD
        lock, contenders = semaphore(c, prefix)
        assert lock["Flags"] == SEMAPHORE_FLAG_VALUE and lock["Limit"] == 2
        assert set(lock["Holders"]) == set(contenders) and len(contenders) == 2
        assert all(v is True for v in lock["Holders"].values())

        third = Holder(dev, tmp_path, "c", prefix, "-n", "2")
        holders.append(third)
        until(lambda: len(semaphore(c, prefix)[1]) == 3, "the third contends")
        # it holds its contender key but no slot: both are taken, so its child waits
        lock, _ = semaphore(c, prefix)
        assert len(lock["Holders"]) == 2 and not third.started() and third.proc.poll() is None

        # other limits and a lock at the same prefix are refused
        out = isthmus("lock", f"-http-addr={dev.http}", "-n", "3", prefix, "true")
        assert out.returncode == 1
        assert "Lock acquisition failed: semaphore limit conflict (lock: 2, local: 3)" in out.stderr
        out = isthmus("lock", f"-http-addr={dev.http}", prefix, "true")
        assert out.returncode == 1
        assert "Lock acquisition failed: Existing key does not match lock use" in out.stderr
        # a fourth with -timeout gives up, and its contender key goes with its session
        out = isthmus("lock", f"-http-addr={dev.http}", "-n", "2", "-timeout=1s", prefix, "true")
        assert out.returncode == 1
        assert "Shutdown triggered or timeout during lock acquisition" in out.stderr
        until(lambda: len(semaphore(c, prefix)[1]) == 3, "the timed-out contender is gone")

        # one holder exits: the third gets its slot
        assert holders[0].release() == 0
        until(third.started, "the third acquires after a holder exits")
        lock, contenders = semaphore(c, prefix)
        assert len(lock["Holders"]) == 2 and set(lock["Holders"]) == set(contenders)
        assert holders[1].proc.poll() is None

        assert holders[1].release() == 0 and third.release() == 0
        # the last one out deletes the lock entry (Consul's Semaphore.Destroy)
        until(lambda: c.kv.get(prefix, recurse=True)[1] is None, "the prefix is empty again")
    finally:
        for h in holders:
            h.kill()


def test_a_lost_slot_stops_the_child(dev, c, tmp_path):
    prefix = "sem/lost"
    h = Holder(dev, tmp_path, "lost", prefix, "-n", "3", "-verbose")
    try:
        until(h.started, "holder started")
        pid, _ = h.child_info()
        lock, contenders = semaphore(c, prefix)
        assert list(lock["Holders"]) == contenders
        c.session.destroy(contenders[0])            # its contender key goes: pruned
        assert h.wait() == 0
        out = h.output()
        assert "Lock lost, killing child" in out and f"Terminating child pid {pid}" in out

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False
        until(gone, "the child is gone")
        assert not (tmp_path / "release_lost").exists()
    finally:
        h.kill()


def test_child_exit_code_and_bad_flags(dev):
    base = ("lock", f"-http-addr={dev.http}", "-n", "2")
    out = isthmus(*base, "sem/code", "exit 3")
    assert out.returncode == 0, out.stderr                      # not propagated by default
    out = isthmus(*base, "-child-exit-code", "sem/code", "exit 3")
    assert out.returncode == 2 and "Error running handler: exit status 3" in out.stderr
    out = isthmus(*base, "-child-exit-code", "sem/code", "true")
    assert out.returncode == 0
    out = isthmus("lock", f"-http-addr={dev.http}", "-n", "0", "sem/x", "true")
    assert (out.returncode, out.stderr.strip()) == (1, "Lock holder limit must be positive")
    out = isthmus("lock", f"-http-addr={dev.http}", "-n", "2", "sem/x")
    assert out.returncode == 1
    assert "Key prefix and child command must be specified" in out.stderr


def test_sigterm_stops_the_child_and_lets_go(dev, c, tmp_path):
    import signal
    prefix = "sem/term"
    h = Holder(dev, tmp_path, "term", prefix, "-n", "2")
    try:
        until(h.started, "holder started")
        h.proc.send_signal(signal.SIGTERM)
        assert h.wait() == 0
        until(lambda: c.kv.get(prefix, recurse=True)[1] is None, "slot and lock entry gone")
    finally:
        h.kill()


def test_value_is_json_consul_can_read(c, dev, tmp_path):
    """The .lock value as Go's json.Marshal writes semaphoreLock (compact, sorted keys)."""
    prefix = "sem/json"
    h = Holder(dev, tmp_path, "j", prefix, "-n", "2")
    try:
        until(h.started, "holder started")
        _, raw = c.kv.get(prefix + "/.lock")
        sid = semaphore(c, prefix)[1][0]
        assert raw["Value"] == json.dumps({"Limit": 2, "Holders": {sid: True}},
                                          separators=(",", ":")).encode()
        assert h.release() == 0
    finally:
        h.kill()


def test_plain_lock_excludes_others_and_semaphores(dev, c, tmp_path):
    """-n=1 (api.Lock at <prefix>/.lock): one holder; a semaphore at the same prefix is a
    conflict, as Consul reports it."""
    prefix = "sem/plain"
    h = Holder(dev, tmp_path, "p", prefix, "-verbose")
    try:
        until(h.started, "lock holder started")
        _, e = c.kv.get(prefix + "/.lock")
        assert e["Session"] and e["Flags"] == 0x2ddccbc058a50c18
        out = isthmus("lock", f"-http-addr={dev.http}", "-timeout=1s", prefix, "true")
        assert out.returncode == 1
        assert "Shutdown triggered or timeout during lock acquisition" in out.stderr
        out = isthmus("lock", f"-http-addr={dev.http}", "-n", "2", prefix, "true")
        assert out.returncode == 1
        assert "Lock acquisition failed: Existing key does not match semaphore use" in out.stderr
        assert h.release() == 0
        assert "Setting up lock at path: sem/plain/.lock" in h.output()
        assert "Cleanup succeeded" in h.output()
        assert c.kv.get(prefix + "/.lock")[1] is None        # released and removed (Destroy)
    finally:
        h.kill()

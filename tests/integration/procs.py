"""Real `isthmus` processes on loopback for integration tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from agent.ports import free_ports  # noqa: F401  (re-exported for the tests)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def wait_until(pred, within: float = 30.0, what: str = "condition",
               ignore: tuple = (OSError, AssertionError, ValueError, KeyError)):
    """Poll `pred()` until it returns something truthy, and return that; `ignore`d errors
    count as "not yet". AssertionError (naming `what` and the last result) after `within` s."""
    t0 = time.monotonic()
    last = None
    while time.monotonic() - t0 < within:
        try:
            last = pred()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.1)
    raise AssertionError(f"{what} not within {within}s (last: {last!r})")


def isthmus(*args: str, env: dict | None = None, timeout: float = 30,
            cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run one `isthmus` command to completion."""
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)


class AgentProc:
    """`isthmus agent ARGS` in the background; its output is collected as it comes."""

    def __init__(self, *args: str, host: str = "127.0.0.1") -> None:
        self.host = host
        self.http_port, self.server_port, self.serf_lan_port, self.serf_wan_port, \
            self.dns_port = free_ports(5, host)
        self.args = [*args]
        for flag, port in (("-http-port", self.http_port), ("-server-port", self.server_port),
                           ("-serf-lan-port", self.serf_lan_port),
                           ("-serf-wan-port", self.serf_wan_port), ("-dns-port", self.dns_port)):
            if flag in args:
                setattr(self, flag[1:].replace("-", "_"), int(args[args.index(flag) + 1]))
            else:
                self.args += [flag, str(port)]
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "agent", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def get(self, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, str, dict]:
        req = urllib.request.Request(self.http + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def get_json(self, path: str):
        status, body, _ = self.get(path)
        assert status == 200, (status, body)
        return json.loads(body)

    def wait_ready(self, within: float = 30.0) -> float:
        """Wait until /v1/agent/self answers; returns the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < within:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}:\n{self.output}")
            try:
                if self.get("/v1/agent/self")[0] == 200:
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"agent not ready within {within}s:\n{self.output}")

    def wait_exit(self, within: float = 30.0) -> int:
        rc = self.proc.wait(within)
        self._reader.join(5)
        return rc

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)

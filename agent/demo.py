"""`isthmus demo areas`: the network-areas guide, performed step by step on real agents.

Three datacenters on loopback — dc1 the hub, dc2 and dc3 spokes — each of `servers`
servers. The first server of dc<k> listens on 127.0.0.<k> (the second on 127.0.1.<k>, …),
on Consul's default ports where they are free (so `dig @127.0.0.1 -p 8600 …` works as the
guide writes it), else on free ports. Every step prints the command it runs and its output.
The same `Demo` drives the tests (tests/integration/test_areas_demo.py).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from agent.ports import free_ports

DEFAULT_PORTS = {"http": 8500, "server": 8300, "serf-lan": 8301, "serf-wan": 8302, "dns": 8600}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _port_free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as the agent binds
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


@dataclass
class DemoServer:
    dc: str
    name: str
    host: str
    ports: dict[str, int]
    data_dir: str
    proc: subprocess.Popen | None = None
    log_path: str = ""

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.ports['http']}"

    @property
    def rpc(self) -> str:
        return f"{self.host}:{self.ports['server']}"

    def argv(self, expect: int, join: list[str]) -> list[str]:
        args = ["agent", "-server", "-bootstrap-expect", str(expect), "-datacenter", self.dc,
                "-node", self.name, "-bind", self.host, "-client", self.host,
                "-data-dir", self.data_dir]
        for p, port in self.ports.items():
            if port != DEFAULT_PORTS[p]:
                args += [f"-{p}-port", str(port)]
        for addr in join:
            args += ["-retry-join", addr, "-retry-interval", "1s"]
        return args

    def get(self, path: str, method: str = "GET", body: bytes | None = None,
            timeout: float = 10) -> tuple[int, str]:
        req = urllib.request.Request(self.http + path, data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """`kill -9`."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Demo:
    """The hub-and-spoke deployment: `start()`, the guide's `steps()`, `stop()`."""
    servers_per_dc: int = 1
    base_dir: str | None = None
    default_ports: bool = True
    out: object = sys.stdout
    dcs: tuple[str, ...] = ("dc1", "dc2", "dc3")
    servers: dict[str, list[DemoServer]] = field(default_factory=dict)
    _own_dir: bool = False

    # ------------------------------------------------------------------ processes

    def plan(self) -> None:
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="isthmus-demo-")
            self._own_dir = True
        for k, dc in enumerate(self.dcs, start=1):
            self.servers[dc] = []
            for j in range(self.servers_per_dc):
                host = f"127.0.{j}.{k}"
                ports = dict(DEFAULT_PORTS)
                if not (self.default_ports and all(_port_free(host, p) for p in ports.values())):
                    ports = dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS), host)))
                name = f"{dc}-s{j + 1}"
                self.servers[dc].append(DemoServer(dc, name, host, ports,
                                                   os.path.join(self.base_dir, name)))

    def start(self, within: float = 90.0) -> None:
        self.plan()
        self.say("# Start three datacenters: dc1 (hub), dc2 and dc3 (spokes)")
        for dc, servers in self.servers.items():
            first = servers[0]
            for s in servers:
                join = [] if s is first else [f"{first.host}:{first.ports['serf-lan']}"]
                argv = s.argv(len(servers), join)
                s.log_path = os.path.join(self.base_dir, f"{s.name}.log")
                self.say(f"({dc}) $ isthmus {shlex.join(argv)} > {s.log_path} &")
                log = open(s.log_path, "ab")
                s.proc = subprocess.Popen([sys.executable, "-m", "agent", *argv], stdout=log,
                                          stderr=subprocess.STDOUT, cwd=ROOT,
                                          start_new_session=True)
                log.close()
        deadline = time.monotonic() + within
        for dc, servers in self.servers.items():
            for s in servers:
                while True:
                    if not s.alive():
                        raise RuntimeError(f"{s.name} exited; see {s.log_path}")
                    try:
                        status, body = s.get("/v1/status/leader", timeout=2)
                        if status == 200 and json.loads(body):
                            break
                    except (OSError, ValueError):
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{s.name} has no leader after {within:.0f}s; "
                                           f"see {s.log_path}")
                    time.sleep(0.2)
        self.say("# Every datacenter has elected a leader.\n")

    def stop(self) -> None:
        for servers in self.servers.values():
            for s in servers:
                if s.alive():
                    s.proc.send_signal(signal.SIGTERM)
        for servers in self.servers.values():
            for s in servers:
                if s.proc is not None:
                    try:
                        s.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        s.kill()
        if self._own_dir and self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # ------------------------------------------------------------------ commands

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def cli(self, dc: str, command: str, *args: str, show: bool = True, server: int = 0
            ) -> subprocess.CompletedProcess:
        """Run `isthmus COMMAND -http-addr=<dc's server> ARGS` (flags before positional
        arguments, as Go's flag package wants)."""
        s = self.servers[dc][server]
        argv = [*command.split(), f"-http-addr={s.http}", *args]
        r = subprocess.run([sys.executable, "-m", "agent", *argv], capture_output=True,
                           text=True, cwd=ROOT, timeout=60)
        if show:
            self.say(f"({dc}) $ isthmus {shlex.join(argv)}")
            text = (r.stdout + r.stderr).rstrip("\n")
            if text:
                self.say(text)
            if r.returncode:
                self.say(f"(exit code {r.returncode})")
            self.say("")
        return r

    def wait_for(self, what: str, pred, within: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < within:
            try:
                if pred():
                    return time.monotonic() - t0
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what}: not within {within:.0f}s")

    def area_members(self, dc: str) -> list[dict]:
        status, body = self.servers[dc][0].get("/v1/operator/area")
        if status != 200:
            return []
        out = []
        for area in json.loads(body):
            st, b = self.servers[dc][0].get(f"/v1/operator/area/{area['ID']}/members")
            if st == 200:
                out += json.loads(b)
        return out

    def dig(self, dc: str, name: str, rtype: str = "A") -> str:
        """`dig @<dc's server> -p <dns port> NAME` — the real dig when installed."""
        s = self.servers[dc][0]
        port = s.ports["dns"]
        cmd = f"dig @{s.host} -p {port} {name} {rtype}"
        self.say(f"({dc}) $ {cmd}")
        if shutil.which("dig"):
            r = subprocess.run(cmd.split() + ["+noall", "+comments", "+answer"],
                               capture_output=True, text=True, timeout=30)
            text = (r.stdout + r.stderr).strip()
        else:
            import dns.message
            import dns.query
            q = dns.message.make_query(name, rtype)
            try:
                text = str(dns.query.udp(q, s.host, port=port, timeout=5))
            except Exception as exc:
                text = f";; connection timed out; no servers could be reached ({exc})"
        self.say(text + "\n")
        return text

    # ------------------------------------------------------------------ the guide

    def steps(self) -> None:
        hub, spokes = self.dcs[0], self.dcs[1:]
        self.say("# 1. Create the reciprocal areas: in the hub for each spoke, in each spoke "
                 "for the hub")
        for spoke in spokes:
            self.cli(hub, "operator area create", f"-peer-datacenter={spoke}")
            self.cli(spoke, "operator area create", f"-peer-datacenter={hub}")
        self.say("# 2. Right after create, the areas hold only the local servers")
        self.cli(hub, "operator area members")
        self.say("# 3. Join one server of each spoke; gossip spreads the rest")
        for spoke in spokes:
            self.cli(hub, "operator area join", f"-peer-datacenter={spoke}",
                     self.servers[spoke][0].rpc)
        n = len(self.dcs) - 1
        want = self.servers_per_dc * (n + 1) + self.servers_per_dc * (n - 1)
        self.wait_for("the hub's areas list every server alive, with an RTT estimate",
                      lambda: sum(m["Status"] == "alive" and m["RTT"] >= 0
                                  for m in self.area_members(hub)) >= want,
                      # an RTT needs a probe of that member: WAN probes every 5 s, so a
                      # 6-member pool reaches everyone in ~30 s; 3x that
                      120)
        self.say("# 4. The hub's areas now include the spokes, with RTT estimates")
        self.cli(hub, "operator area list")
        self.cli(hub, "operator area members")
        self.say("# 5. Each datacenter sees itself and the datacenters it is adjacent to")
        for dc in self.dcs:
            self.cli(dc, "catalog datacenters")
        self.say("# 6. Requests route both ways through the areas")
        self.cli(hub, "kv put", f"-datacenter={spokes[0]}", "hello", "world")
        self.cli(spokes[0], "kv get", "hello")
        self.cli(spokes[0], "kv put", f"-datacenter={hub}", "from-spoke", "hi hub")
        self.cli(hub, "kv get", "from-spoke")
        self.cli(hub, "catalog nodes", f"-datacenter={spokes[1]}")
        self.say("# 7. Spokes are not adjacent to each other: no multi-hop routing")
        self.cli(spokes[0], "kv get", f"-datacenter={spokes[1]}", "hello")
        self.say("# 8. DNS federation: the hub's DNS answers for a spoke's servers")
        self.dig(hub, f"consul.service.{spokes[0]}.consul")

    def summary(self) -> None:
        self.say("# The agents keep running:")
        for servers in self.servers.values():
            for s in servers:
                self.say(f"#   {s.name}: HTTP {s.http}  RPC {s.rpc}  DNS {s.host}:{s.ports['dns']}"
                         f"  log {s.log_path}")
        self.say("# Try: isthmus operator area members -http-addr="
                 f"{self.servers[self.dcs[0]][0].http}")

"""Federation as whole processes on loopback (issue #6): a read forwarded dc1→dc2 against the
same read served locally by dc2, over a network area in plaintext and in TLS, in one run; and
how fast the area pools of 3 datacenters × 3 servers converge.

Forwarded read. Per round and variant (plain, tls — order alternating by round) start dc1 on
127.0.0.1 and dc2 on 127.0.0.2 (one server each: `-server -bootstrap-expect 1 -datacenter dcN`,
free ports, -log-level warn), put `bench/k` (100 bytes) in dc2 (plain: also `instances`
instances of service `web`, each on its own node with a passing check), create the reciprocal areas
(POST /v1/operator/area {"PeerDatacenter", "UseTLS"} in each DC), join dc2's server from dc1
(PUT /v1/operator/area/<id>/join ["127.0.0.2:<rpc>"]) and wait until
GET /v1/kv/bench/k?dc=dc2 on dc1 answers 200. Then, kinds alternating by round, drive with
benchmarks/federation_load.py (http_load.py's rate mode in its own process, reading both
agents' CPU over the counted window):
  local       GET /v1/kv/bench/k?stale on dc2
  forwarded   GET /v1/kv/bench/k?stale&dc=dc2 on dc1 (dc1's HTTP → Registry → federation.forward
              → one pooled, multiplexed RPC connection to dc2 → KVS.Get served from dc2's store,
              its body rendered there: agent/http/rendered.py)
each with `conc` keep-alive connections for `duration` s after `warmup` s (replies/s, p50/p99,
µs of CPU per reply of each agent and of the client) and with 1 connection for `seq_duration`
s (sequential p50/p99). `?stale` keeps it a pure forwarding measurement; the plain variant also
measures the default consistency once ("plain default": no ?stale) and a service read
("plain service": GET /v1/health/service/web?stale, `instances` instances, ~650 bytes each:
dc2 sends its cached body, which dc1 passes on).
In the tls variant each DC has a CA-signed server certificate (`isthmus tls ca create`, `tls
cert create -server -dc dcN`; tls.defaults.{ca,cert,key}_file) and
tls.internal_rpc.verify_incoming, the areas have UseTLS=true, and before measuring the harness
checks that dc2's RPC port closes a plaintext connection: every forwarded reply came over TLS
(area gossip too). The plain variant has no TLS material at all.

CPU placement (2 cores, 3 processes): by default (ISTHMUS_FED_PIN=split) both agents share
CPU 0 and the load client has CPU 1, so local and forwarded reads get the same server-side
budget, one core: the raw throughput ratio is "forwarded vs local on the same hardware", where
the forwarded read pays for both agents. ISTHMUS_FED_PIN=0 leaves every process free.
Scheduling: each stale test runs twice, under Linux's default policy and with both agents'
threads SCHED_BATCH (test names ending ", batch"). Under the default, dc1's write of an RPC
batch wakes dc2, which preempts dc1 at once on their shared core (and back for the reply):
two switches per RPC message, and per message is where most of the forwarding hop's cost
went (dc1 µs per reply rise as the load's concurrency, and so the requests per RPC write,
falls). SCHED_BATCH only stops a wakeup from preempting: each agent runs until it waits, as
each would on a machine of its own, and both still share one core.
The hardware-independent comparison is the CPU cost: forwarded capacity = 1 / max(dc1 µs,
dc2 µs) per forwarded reply vs local capacity = 1 / (dc2 µs per local reply) — the ratio one
would see with each DC on its own machine and the client not limiting. Issue #6's target:
forwarded throughput >= 70 % of local, with connection reuse.

Area convergence. Per round: agent/demo.py's Demo starts hub dc1 and spokes dc2, dc3 with
`servers` servers each (free ports, 127.0.<j>.<k>); areas are created (hub: one per spoke;
each spoke: one for the hub) and the harness waits until every server's area lists its own
DC's servers alive (flood join). Then it times, from just before the two join calls on dc1's
first server (PUT …/join [first server of the spoke]):
  converge   until every server's GET /v1/operator/area/<id>/members lists exactly the
             area's members (hub areas: both DCs' servers), all alive
  read dcN   until GET /v1/catalog/nodes?dc=dcN on dc1's first server answers 200 (and "all
             reads": on every dc1 server, both spokes)
Medians over the rounds; the forwarded-vs-local figures (throughput and CPU-capacity ratios,
added latency) are medians of the per-round values, local and forwarded having been measured
back to back.

  python -m benchmarks.bench_federation [ROUNDS]        # default 5
Under pytest with --benchmark-disable (as CI runs it): one round with small loads. Overrides
from the environment: ISTHMUS_FED_DURATION, _CONC, _SERVERS; ISTHMUS_FED_PIN=0 (no pinning);
ISTHMUS_FED_PATH=wan links the forwarded-read pairs by a WAN join instead of areas (the
forwarding path is the same; the tls variant needs areas and is then skipped).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchmarks.common import (ROOT, free_ports, load_from_env, main_rounds, medians, pinned,
                               record, run_benchmark)
from benchmarks.common import load_client as run_load_client
from benchmarks.summary import RESULTS

PREFIX = "federation "
KINDS = ("local", "forwarded")
VARIANTS = ("plain", "tls")
PIN_MODE = os.environ.get("ISTHMUS_FED_PIN", "split")
PIN = (os.cpu_count() or 1) >= 2 and PIN_MODE not in ("0", "free", "")
AGENT_CPU, CLIENT_CPU = ({0}, {1}) if PIN else (None, None)
PATH = os.environ.get("ISTHMUS_FED_PATH", "area")
START_WITHIN = 60.0
LINK_WITHIN = 60.0
VALUE = "v" * 100
TARGET = 0.70
SLOW_CONVERGE = 5.0     # a convergence slower than this prints what the last server saw
POLICIES = {  # scheduling of the two agents' threads while measuring (both share CPU 0)
    # Linux's default: a reply written to the other agent wakes it and it preempts the
    # writer at once, so every RPC message costs both a switch between them
    "": os.SCHED_OTHER,
    # neither agent preempts the other on waking it: each runs until it waits, as each would
    # on a machine of its own (still one core for both: the raw ratio still pays for both)
    "batch": os.SCHED_BATCH,
}
SHAPES = {   # test -> {kind: (dc, path)}
    "stale": {"local": ("dc2", "/v1/kv/bench/k?stale"),
              "forwarded": ("dc1", "/v1/kv/bench/k?stale&dc=dc2")},
    "default": {"local": ("dc2", "/v1/kv/bench/k"),
                "forwarded": ("dc1", "/v1/kv/bench/k?dc=dc2")},
    "service": {"local": ("dc2", "/v1/health/service/web?stale"),
                "forwarded": ("dc1", "/v1/health/service/web?stale&dc=dc2")},
}


@dataclasses.dataclass(frozen=True)
class Load:
    duration: float = 3.0
    warmup: float = 0.5
    seq_duration: float = 1.5
    conc: int = 32
    servers: int = 3
    instances: int = 1000           # of service `web` in dc2, for the "service" test
    converge_within: float = 120.0

    def from_env(self) -> Load:
        env = {"duration": "ISTHMUS_FED_DURATION", "conc": "ISTHMUS_FED_CONC",
               "servers": "ISTHMUS_FED_SERVERS"}
        return load_from_env(self, env)


FULL = Load()
SMOKE = Load(duration=0.3, warmup=0.1, seq_duration=0.3, conc=8, instances=20)


def request(base: str, method: str, path: str, body=None, timeout: float = 30) -> tuple[int, bytes]:
    """(status, body); status 0 when the connection itself failed."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def must(base: str, method: str, path: str, body=None):
    status, reply = request(base, method, path, body)
    if status != 200:
        raise RuntimeError(f"{method} {base}{path}: {status} {reply[:300]!r}")
    return json.loads(reply) if reply else None


def isthmus(*args: str, cwd: str) -> None:
    r = subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        raise RuntimeError(f"isthmus {' '.join(args)}: {r.returncode}\n{r.stdout}{r.stderr}")


def make_pki(directory: str) -> dict[str, dict]:
    """A CA and one server certificate per DC; {dc: the agent's `tls` config block}."""
    os.makedirs(directory, exist_ok=True)
    isthmus("tls", "ca", "create", cwd=directory)
    out = {}
    for dc in ("dc1", "dc2"):
        isthmus("tls", "cert", "create", "-server", "-dc", dc, cwd=directory)
        base = os.path.join(directory, f"{dc}-server-consul-0")
        out[dc] = {"defaults": {"ca_file": os.path.join(directory, "consul-agent-ca.pem"),
                                "cert_file": base + ".pem", "key_file": base + "-key.pem"},
                   "internal_rpc": {"verify_incoming": True}}
    return out


# ---------------------------------------------------------------------- forwarded reads


class DC:
    """One single-server datacenter on `host`."""

    def __init__(self, name: str, host: str, root: str) -> None:
        self.name, self.host = name, host
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.http, self.rpc, self.lan, self.wan, self.dns = free_ports(5, host)
        self.base = f"http://{host}:{self.http}"
        self.log = os.path.join(root, f"{name}.log")
        self.proc: subprocess.Popen | None = None

    def start(self, tls: dict | None) -> None:
        args = ["agent", "-server", "-bootstrap-expect", "1", "-datacenter", self.name,
                "-node", f"{self.name}-s1", "-bind", self.host, "-client", self.host,
                "-data-dir", os.path.join(self.dir, "data"), "-log-level", "warn",
                "-http-port", str(self.http), "-server-port", str(self.rpc),
                "-serf-lan-port", str(self.lan), "-serf-wan-port", str(self.wan),
                "-dns-port", str(self.dns)]
        if tls is not None:
            cfg = os.path.join(self.dir, "tls.json")
            with open(cfg, "w") as f:
                json.dump({"tls": tls}, f)
            args += ["-config-file", cfg]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agent", *args], cwd=ROOT,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=pinned(AGENT_CPU))

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            with open(self.log, errors="replace") as f:
                tail = f.read()[-3000:]
            code = self.proc and self.proc.returncode
            raise RuntimeError(f"{self.name} exited ({code}):\n{tail}")

    def wait_leader(self, deadline: float) -> None:
        while True:
            self.check_alive()
            status, body = request(self.base, "GET", "/v1/status/leader", timeout=2)
            if status == 200 and json.loads(body):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no leader within {START_WITHIN}s")
            time.sleep(0.05)

    def refuses_plaintext_rpc(self) -> bool:
        """True when our RPC port closes a connection that starts in plaintext (byte 0)."""
        with socket.create_connection((self.host, self.rpc), timeout=5) as s:
            s.sendall(b"\x00")
            try:
                return s.recv(1) == b""
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


class Pair:
    """dc1 and dc2, linked (areas, or the WAN), dc2 holding bench/k."""

    def __init__(self, variant: str, pki: dict | None, instances: int = 0) -> None:
        self.variant = variant
        self.instances = instances
        self.tls = variant == "tls"
        self.pki = pki
        self.dir = tempfile.mkdtemp(prefix=f"isthmus-fed-{variant}-")
        self.dcs = {name: DC(name, host, self.dir)
                    for name, host in (("dc1", "127.0.0.1"), ("dc2", "127.0.0.2"))}
        self.link_s = math.nan

    def start(self) -> None:
        for dc in self.dcs.values():
            dc.start(self.pki[dc.name] if self.tls else None)
        deadline = time.monotonic() + START_WITHIN
        for dc in self.dcs.values():
            dc.wait_leader(deadline)
        dc1, dc2 = self.dcs["dc1"], self.dcs["dc2"]
        if must(dc2.base, "PUT", "/v1/kv/bench/k", VALUE.encode()) is not True:
            raise RuntimeError("PUT bench/k in dc2 failed")
        self.register_instances()
        t0 = time.monotonic()
        if PATH == "wan":
            must(dc1.base, "PUT", f"/v1/agent/join/{dc2.host}:{dc2.wan}?wan=1")
        else:
            ids = {}
            for dc, peer in ((dc1, "dc2"), (dc2, "dc1")):
                ids[dc.name] = must(dc.base, "POST", "/v1/operator/area",
                                    {"PeerDatacenter": peer, "UseTLS": self.tls})["ID"]
            got = must(dc1.base, "PUT", f"/v1/operator/area/{ids['dc1']}/join",
                       [f"{dc2.host}:{dc2.rpc}"])
            if not (len(got) == 1 and got[0]["Joined"]):
                raise RuntimeError(f"area join dc1 -> dc2 failed: {got}")
        while True:
            status, body = request(dc1.base, "GET", "/v1/kv/bench/k?dc=dc2", timeout=10)
            if status == 200:
                break
            if time.monotonic() - t0 > LINK_WITHIN:
                raise TimeoutError(f"dc1 -> dc2 read not answering within {LINK_WITHIN}s: "
                                   f"{status} {body[:200]!r}")
            time.sleep(0.05)
        self.link_s = time.monotonic() - t0
        if self.tls and not dc2.refuses_plaintext_rpc():
            raise RuntimeError("dc2 accepts plaintext RPC: the tls variant would not prove TLS")

    def register_instances(self) -> None:
        """`instances` instances of service `web` in dc2, each on a node of its own with a
        passing check (16 registrations in flight: Raft commits them in groups)."""
        base = self.dcs["dc2"].base

        def register(i: int) -> None:
            must(base, "PUT", "/v1/catalog/register", {
                "Node": f"web-{i}", "Address": f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}",
                "Service": {"Service": "web", "ID": "web", "Port": 8080, "Tags": ["v1"]},
                "Check": {"CheckID": "web", "Name": "web", "ServiceID": "web",
                          "Status": "passing"}})
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(register, range(self.instances)))

    def rpc_conns(self) -> int:
        """Established TCP connections dc1's process holds to dc2's RPC port (forwarded RPCs
        share one; area gossip streams ride the same port)."""
        dc1, dc2 = self.dcs["dc1"], self.dcs["dc2"]
        inodes = set()
        for fd in os.listdir(f"/proc/{dc1.proc.pid}/fd"):
            try:
                link = os.readlink(f"/proc/{dc1.proc.pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        ip = "".join(f"{int(b):02X}" for b in reversed(dc2.host.split(".")))
        want = f"{ip}:{dc2.rpc:04X}"
        n = 0
        with open(f"/proc/{dc1.proc.pid}/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[2] == want and fields[3] == "01" and fields[9] in inodes:
                    n += 1
        return n

    def pids(self) -> dict[str, int]:
        return {name: dc.proc.pid for name, dc in self.dcs.items()}

    def close(self) -> None:
        for dc in self.dcs.values():
            dc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def load_client(spec: dict) -> dict:
    return run_load_client(["benchmarks.federation_load"], spec, CLIENT_CPU)


def set_policy(pids, policy: int) -> None:
    """Every thread of each process in `pids` to scheduling `policy` (threads made later
    inherit it from the main thread)."""
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setscheduler(int(tid), policy, os.sched_param(0))
            except ProcessLookupError:
                pass


def measure(pair: Pair, shape: str, kind: str, load: Load, policy: str = "") -> dict:
    dc, path = SHAPES[shape][kind]
    pids = pair.pids()
    set_policy(pids.values(), POLICIES[policy])
    spec = {"mode": "rate", "base": pair.dcs[dc].base, "pid": pids[dc], "also": pids,
            "conc": load.conc, "warmup": load.warmup, "duration": load.duration,
            "requests": [["GET", path, None]]}
    r = load_client(spec)
    seq = load_client({**spec, "conc": 1, "duration": load.seq_duration})
    for dc_ in pids:
        if not r[f"{dc_}_us"] > 0:
            raise RuntimeError(f"no CPU read for {dc_}: {r}")
    out = {m: r[m] for m in ("rate", "p50_ms", "p99_ms", "errors", "client_cpu_pct",
                             "dc1_us", "dc2_us", "dc1_cpu_pct", "dc2_cpu_pct")}
    out.update(seq_rate=seq["rate"], seq_p50_ms=seq["p50_ms"], seq_p99_ms=seq["p99_ms"],
               errors=r["errors"] + seq["errors"])
    return out


def forward_round(load: Load, n: int, pki: dict | None) -> dict[str, dict[str, dict]]:
    """{test: {kind: metrics}} for one round of the forwarded-read variants."""
    variants = [v for v in VARIANTS if v == "plain" or (pki is not None and PATH == "area")]
    if n % 2:
        variants.reverse()
    kinds = KINDS if n % 2 == 0 else KINDS[::-1]
    out: dict[str, dict[str, dict]] = {}
    for variant in variants:
        pair = Pair(variant, pki, load.instances if variant == "plain" else 0)
        try:
            pair.start()
            shapes = [("stale", ""), ("stale", "batch")]
            if variant == "plain":
                shapes[1:1] = [("default", ""), ("service", "")]
            for shape, policy in shapes:
                test = f"{variant} {shape}" + (f", {policy}" if policy else "")
                out[test] = {k: measure(pair, shape, k, load, policy) for k in kinds}
                out[test]["compare"] = compare(out[test]["local"], out[test]["forwarded"])
                out[test]["forwarded"]["link_s"] = pair.link_s
                out[test]["forwarded"]["rpc_conns"] = pair.rpc_conns()
        finally:
            pair.close()
    return out


# ---------------------------------------------------------------------- area convergence


def converge_round(load: Load) -> dict:
    from agent.demo import Demo
    with open(os.devnull, "w") as devnull:
        demo = Demo(servers_per_dc=load.servers, default_ports=False, out=devnull)
        try:
            demo.start(within=START_WITHIN + 10 * load.servers)
            return _converge(demo, load)
        finally:
            demo.stop()


def _converge(demo, load: Load) -> dict:
    hub, spokes = demo.dcs[0], demo.dcs[1:]
    servers = demo.servers
    names = {dc: {f"{s.name}.{dc}" for s in servers[dc]} for dc in demo.dcs}
    ids: dict[tuple[str, str], str] = {}          # (dc, peer) -> area ID
    for spoke in spokes:
        for dc, peer in ((hub, spoke), (spoke, hub)):
            ids[dc, peer] = must(servers[dc][0].http, "POST", "/v1/operator/area",
                                 {"PeerDatacenter": peer, "UseTLS": False})["ID"]
    # every server, every area it holds: (server, area ID, the members it must list)
    checks = [(s, ids[dc, peer], names[dc] | names[peer])
              for (dc, peer) in ids for s in servers[dc]]

    def members(check) -> dict[str, str]:
        s, area, _ = check
        status, body = request(s.http, "GET", f"/v1/operator/area/{area}/members", timeout=5)
        return {m["Name"]: m["Status"] for m in json.loads(body)} if status == 200 else {}

    pool = concurrent.futures.ThreadPoolExecutor(len(checks) + 2 * len(servers[hub]))
    try:
        deadline = time.monotonic() + load.converge_within
        while True:     # the areas' pools run and hold their own DC's servers (flood join)
            own = list(pool.map(members, checks))
            if all({n for n, st in got.items() if st == "alive"} >= names[c[0].dc]
                   for c, got in zip(checks, own)):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"areas not holding their local servers: {own}")
            time.sleep(0.1)
        first = servers[hub][0]
        t0 = time.monotonic()
        for spoke in spokes:
            got = must(first.http, "PUT", f"/v1/operator/area/{ids[hub, spoke]}/join",
                       [servers[spoke][0].rpc])
            if not (len(got) == 1 and got[0]["Joined"]):
                raise RuntimeError(f"area join {hub} -> {spoke} failed: {got}")
        join_s = time.monotonic() - t0
        converged: dict[int, float] = {}
        seen: dict[int, tuple[float, dict]] = {}     # the last incomplete view of each check
        reads: dict[tuple[int, str], float] = {}
        read_checks = [(j, s, spoke) for j, s in enumerate(servers[hub]) for spoke in spokes]

        def read(rc) -> bool:
            _, s, spoke = rc
            return request(s.http, "GET", f"/v1/catalog/nodes?dc={spoke}", timeout=5)[0] == 200

        deadline = time.monotonic() + load.converge_within
        while len(converged) < len(checks) or len(reads) < len(read_checks):
            todo = [i for i in range(len(checks)) if i not in converged]
            rtodo = [rc for rc in read_checks if rc[0::2] not in reads]
            views = pool.map(members, [checks[i] for i in todo])
            oks = pool.map(read, rtodo)
            now = time.monotonic() - t0
            for i, got in zip(todo, views):
                if set(got) == checks[i][2] and all(st == "alive" for st in got.values()):
                    converged[i] = now
                else:
                    seen[i] = (now, got)
            for rc, ok in zip(rtodo, oks):
                if ok:
                    reads[rc[0::2]] = now
            if time.monotonic() > deadline:
                missing = [(checks[i][0].name, checks[i][1]) for i in todo]
                raise TimeoutError(f"not converged within {load.converge_within}s: {missing}; "
                                   f"reads done {sorted(reads)}")
            time.sleep(0.05)
    finally:
        pool.shutdown()
    last = max(converged, key=converged.get)
    if converged[last] > SLOW_CONVERGE:
        s, area, want = checks[last]
        at, got = seen[last]
        print(f"slow convergence: {s.name}'s area {area} complete after {converged[last]:.2f} s; "
              f"at {at:.2f} s it listed {got} (wanted {sorted(want)})", file=sys.stderr)
    out = {"join_calls_s": join_s, "converge_s": max(converged.values()),
           "first_server_s": min(converged.values()), "all_reads_s": max(reads.values())}
    for spoke in spokes:
        out[f"read_{spoke}_s"] = reads[0, spoke]
    return out


# ---------------------------------------------------------------------- results


def compare(loc: dict, fwd: dict) -> dict[str, float]:
    """Forwarded vs local: throughput ratio, CPU capacity ratios, added latency (ms)."""
    return {
        "rate_ratio": fwd["rate"] / loc["rate"],
        # each DC on its own machine: the busier agent bounds the forwarded rate
        "capacity_ratio": loc["dc2_us"] / max(fwd["dc1_us"], fwd["dc2_us"]),
        # both agents on one core: it pays for both
        "cpu_total_ratio": loc["dc2_us"] / (fwd["dc1_us"] + fwd["dc2_us"]),
        "added_seq_p50_ms": fwd["seq_p50_ms"] - loc["seq_p50_ms"],
        "added_seq_p99_ms": fwd["seq_p99_ms"] - loc["seq_p99_ms"],
        "added_p50_ms": fwd["p50_ms"] - loc["p50_ms"],
        "added_p99_ms": fwd["p99_ms"] - loc["p99_ms"],
    }


def derived(results: dict) -> dict[str, dict[str, float]]:
    """Per forwarded-read test, compare()'s figures: the medians of the per-round values
    (local and forwarded were measured back to back, so a burst of load from elsewhere on
    the machine moves both) where the rounds recorded them, else from the medians."""
    out = {}
    for test, r in results.items():
        if not {"local", "forwarded"} <= set(r):
            continue
        got = compare(r["local"], r["forwarded"])
        per_round = r.get("compare", {})
        out[test] = {m: round(per_round.get(m, v), 3) for m, v in got.items()}
        out[test].update({m: round(v, 3) for m, v in per_round.items()
                          if m.endswith(("_min", "_max"))})
    return out


def federation_lines() -> list[str]:
    """The results table (markdown), from RESULTS."""
    r = {t[len(PREFIX):]: v for t, v in RESULTS.items() if t.startswith(PREFIX)}
    d = derived(r)
    lines = []
    if d:
        lines += ["| forwarded read dc1→dc2 (medians) | local on dc2 | forwarded from dc1 | "
                  "forwarded vs local |", "|---|---|---|---|"]

    def verdict(x: float) -> str:
        return f"{'meets' if x >= TARGET else 'misses'} {TARGET:.0%}"

    def spread(q: dict, m: str) -> str:
        if f"{m}_min" not in q or q[f"{m}_min"] == q[f"{m}_max"]:
            return ""
        return f", rounds {q[f'{m}_min']:.2f}–{q[f'{m}_max']:.2f}"

    for test, q in d.items():
        loc, fwd = r[test]["local"], r[test]["forwarded"]
        lines += [
            f"| {test}: replies/s, {loc['rounds']:.0f} rounds | {loc['rate']:,.0f} | "
            f"{fwd['rate']:,.0f} | **{q['rate_ratio']:.2f}×** raw ({verdict(q['rate_ratio'])})"
            f"{spread(q, 'rate_ratio')} |",
            f"| {test}: p50 / p99 under load | {loc['p50_ms']:.2f} / {loc['p99_ms']:.2f} ms | "
            f"{fwd['p50_ms']:.2f} / {fwd['p99_ms']:.2f} ms | {q['added_p50_ms']:+.2f} / "
            f"{q['added_p99_ms']:+.2f} ms |",
            f"| {test}: sequential p50 / p99 | {loc['seq_p50_ms']:.3f} / {loc['seq_p99_ms']:.3f} ms"
            f" | {fwd['seq_p50_ms']:.3f} / {fwd['seq_p99_ms']:.3f} ms | added "
            f"**{q['added_seq_p50_ms']:+.3f} / {q['added_seq_p99_ms']:+.3f} ms** |",
            f"| {test}: CPU µs per reply dc1 / dc2 (client, % of a core) | "
            f"{loc['dc1_us']:.1f} / {loc['dc2_us']:.1f} ({loc['client_cpu_pct']:.0f} %) | "
            f"{fwd['dc1_us']:.1f} / {fwd['dc2_us']:.1f} ({fwd['client_cpu_pct']:.0f} %) | "
            f"capacity **{q['capacity_ratio']:.2f}×** ({verdict(q['capacity_ratio'])})"
            f"{spread(q, 'capacity_ratio')}; "
            f"both on one core {q['cpu_total_ratio']:.2f}× |",
        ]
        if "rpc_conns" in fwd:
            lines.append(f"| {test}: link (join → first forwarded 200); dc1→dc2 RPC-port "
                         f"connections after | – | {fwd['link_s'] * 1e3:.0f} ms; "
                         f"{fwd['rpc_conns']:.0f} | |")
    conv = r.get("areas", {}).get("isthmus")
    if conv:
        lines += ["", f"| area pools, 3 DCs × {conv['servers']:.0f} servers, from the join calls "
                  f"(medians of {conv['rounds']:.0f} rounds) | s |", "|---|---|",
                  f"| the two join calls return | {conv['join_calls_s']:.3f} |",
                  f"| every server lists every member of its areas alive | "
                  f"**{conv['converge_s']:.2f}** (first server {conv['first_server_s']:.2f}) |"]
        lines += [f"| dc1 → {k[5:-2]} read answers (on dc1's first server) | {v:.2f} |"
                  for k, v in conv.items() if k.startswith("read_")]
        lines += [f"| every dc1 server reads both spokes | {conv['all_reads_s']:.2f} |"]
    return lines


PLACEMENT = ("dc1 and dc2 pinned to CPU 0, the load client to CPU 1" if PIN
             else "no pinning: every process free on any CPU")
LOADAVG: list[float] = []
"""the 1-minute load average at the start and end of every round of the last run()"""


def run(rounds: int, load: Load, converge: bool = True) -> dict:
    got, conv = [], []
    LOADAVG.clear()
    pki_dir = tempfile.mkdtemp(prefix="isthmus-fed-pki-")
    try:
        pki = make_pki(pki_dir) if PATH == "area" else None
        for n in range(rounds):
            LOADAVG.append(os.getloadavg()[0])
            got.append(forward_round(load, n, pki))
            if converge and PATH == "area":
                conv.append({"areas": {"isthmus": {**converge_round(load),
                                                   "servers": load.servers}}})
            LOADAVG.append(os.getloadavg()[0])
            print(f"round {n + 1}/{rounds} (load average {LOADAVG[-2]:.2f} → {LOADAVG[-1]:.2f}): "
                  f"{json.dumps([got[-1], conv[-1:]])}", file=sys.stderr)
    finally:
        shutil.rmtree(pki_dir, ignore_errors=True)
    out = medians(got, spread=("compare",))    # per-round figures: their spread too
    if conv:
        out.update(medians(conv))
    return out


def header(rounds: int, load: Load) -> str:
    return (f"{rounds} round(s), {load.conc} connections × {load.duration:g} s "
            f"(+{load.warmup:g} s warm-up), sequential {load.seq_duration:g} s; linked by {PATH}; "
            f"{PLACEMENT}; "
            f"load average (1 min) over the rounds {min(LOADAVG, default=math.nan):.2f}–"
            f"{max(LOADAVG, default=math.nan):.2f}")


def test_federation(benchmark):
    result, rounds, load = run_benchmark(
        benchmark, "federation forwarded reads and area convergence", run, FULL, SMOKE)
    record(PREFIX, result)
    print(json.dumps({"medians": result, "derived": derived(result)}, indent=1))
    print(header(rounds, load))
    print("\n".join(federation_lines()))


def main(argv: list[str]) -> None:
    # LOADAVG is filled in by run(), before main_rounds() prints it
    info = {"path": PATH, "placement": PLACEMENT, "loadavg_1m": LOADAVG}
    _, rounds, load = main_rounds(argv, FULL, run, PREFIX, info, lambda r: {"derived": derived(r)})
    print(header(rounds, load))
    for line in federation_lines():
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])

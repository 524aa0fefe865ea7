"""Network areas on the simulator: datacenters in a tree, one gossip pool per tree edge, and a
router per server fed from those pools exactly as `agent.federation` feeds it.

Issue #6's study: "100 DCs in a tree of areas: time until a dead DC is known to its
neighbours". Each tree edge (a, b) is one network area: ONE gossip pool (memberlist's WAN
profile, `GossipConfig.wan()`) whose members are the servers of a and b, named `<node>.<dc>`
and tagged as the agent tags a server (`agent.tags.lan_tags`), so `server_from_tags` takes
them. Every server keeps one pure `Router` with a path per area it is in, changed only by
`agent.router.core.apply_member_event` (the function `Federation` calls for every member
event) and by rebalance rounds that mirror `Federation._rebalance_loop` (every 5 s the due
managers ping their servers in shuffled order; a ping answers when the target server runs
and the network joins the two; pings take no virtual time). No requests are forwarded, so
nothing else rotates or offlines a manager.

The tree: `AreaTree.balanced(n, fanout)` (heap order: dc1 is the root, dc_i's parent is
dc_{(i-2)//fanout+1}) or `AreaTree.random(n, rng)` (a random recursive tree: dc_i's parent
is drawn uniformly from dc1..dc_{i-1}).

The pools run side by side on one virtual clock and one network (`AreaNetwork`: latency by
whether two servers share a datacenter, one loss rate). A server's pool members all have
its one address (ip, 8300) — areas gossip over the RPC port, and the real agent routes a
gossip stream to its pool by area ID; here a packet or stream from a pool's node goes to the
node at that address *in the same pool*. Real bytes go through `_core.wire` as in
`SimCluster`, whose scheduler this reuses.

Pools form as on real servers: each server flood-joins the first server of its own DC in
the pool, and the first server of the lower DC joins the first of the other (the operator's
`area join`); a join that fails is retried after 30 s (RetryJoin). Serf reaps a failed
member after `reconnect_timeout` (a parameter: the real WAN value is 72 h — see
`reap_prediction`).
"""
from __future__ import annotations

import math
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from _core.gossip_config import GossipConfig
from _core.swim import (JoinResult, SuspectTimeout, SwimNode, remaining_suspicion_time,
                        suspicion_timeout)

from ..config.model import AgentConfig
from ..federation import REBALANCE_CHECK_INTERVAL
from ..router.core import DCUnreachable, NoPath, Router, apply_member_event
from ..serf.core import STATUS_ALIVE, STATUS_FAILED, MemberEvent, SerfConfig, SerfCore
from ..tags import lan_tags
from .cluster import _STREAM_IN, _TICK, SimCluster, SimNode, sim_address
from .network import Network

RPC_PORT = 8300
RETRY_JOIN_INTERVAL = 30.0      # the area's RetryJoin
WAN_RECONNECT_TIMEOUT = 72 * 3600.0     # Consul's reconnect_timeout_wan

ROUTE, UNREACHABLE, NO_PATH = "route", "unreachable", "no-path"


# ---------------------------------------------------------------------------- the tree

@dataclass(frozen=True)
class AreaTree:
    """Datacenters dc1..dcN and the tree edges between them (each edge = one area)."""
    dcs: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    shape: str

    @classmethod
    def balanced(cls, n: int, fanout: int = 3) -> "AreaTree":
        dcs = tuple(f"dc{i}" for i in range(1, n + 1))
        edges = tuple((f"dc{(i - 2) // fanout + 1}", f"dc{i}") for i in range(2, n + 1))
        return cls(dcs, edges, f"balanced fan-out {fanout}")

    @classmethod
    def random(cls, n: int, rng: random.Random) -> "AreaTree":
        dcs = tuple(f"dc{i}" for i in range(1, n + 1))
        edges = tuple((f"dc{rng.randint(1, i - 1)}", f"dc{i}") for i in range(2, n + 1))
        return cls(dcs, edges, "random recursive")

    def neighbours(self, dc: str) -> list[str]:
        out = [b for a, b in self.edges if a == dc] + [a for a, b in self.edges if b == dc]
        return sorted(out, key=_dc_index)

    def interior(self) -> str:
        """The datacenter with the most neighbours (the lowest-numbered among equals)."""
        return max(self.dcs, key=lambda dc: (len(self.neighbours(dc)), -_dc_index(dc)))

    def leaf(self) -> str:
        """The highest-numbered datacenter with one neighbour."""
        return [dc for dc in self.dcs if len(self.neighbours(dc)) == 1][-1]


def _dc_index(dc: str) -> int:
    return int(dc[2:])


# ---------------------------------------------------------------------------- the network

class AreaNetwork(Network):
    """Latency by datacenter: `latency` between two servers of one DC, `wan_latency` +
    U(0, `wan_jitter`) across DCs; one `loss` rate for datagrams and stream legs.
    Partitions and isolation work as in `Network`; link/node overrides are not used."""

    def __init__(self, rng: random.Random, dc_of: dict[str, str], *, latency: float,
                 wan_latency: float, wan_jitter: float, loss: float) -> None:
        super().__init__(rng, latency, 0.0, loss)
        self.dc_of = dc_of
        self.wan_latency = wan_latency
        self.wan_jitter = wan_jitter

    def _params(self, src, dst, loss: float) -> tuple[float, float, float]:
        dc_of = self.dc_of
        if dc_of[src[0]] == dc_of[dst[0]]:
            return self.latency, 0.0, loss
        return self.wan_latency, self.wan_jitter, loss

    def packet_delay(self, src, dst) -> float | None:
        self.sent += 1
        if (self._partitions or self._isolated) and not self.reachable(src, dst):
            self.dropped += 1
            return None
        lat, jit, loss = self._params(src, dst, self.loss)
        rng = self.rng
        if loss > 0.0 and rng.random() < loss:
            self.dropped += 1
            return None
        return lat + rng.random() * jit if jit > 0.0 else lat


# ---------------------------------------------------------------------------- servers, pools

@dataclass(eq=False)
class SimServer:
    """One server: its address, tags, router and one pool node per area it is in."""
    node: str
    dc: str
    ip: str
    raw: bytes
    tags: dict[str, str]
    router: Router
    pools: dict[str, "PoolNode"] = field(default_factory=dict)      # area ID -> its node
    alive: bool = True

    @property
    def name(self) -> str:
        return f"{self.node}.{self.dc}"


class PoolNode(SimNode):
    """A server's SWIM+Serf node in one area pool."""
    __slots__ = ("area", "server")

    def __init__(self, index: int, name: str, addr: tuple, raw: bytes, swim: SwimNode,
                 serf: SerfCore, area: "Area", server: SimServer) -> None:
        super().__init__(index, name, addr, raw, swim, serf)
        self.area = area
        self.server = server


@dataclass(eq=False)
class Area:
    """One network area (a tree edge) and its pool's nodes by address."""
    id: str
    dcs: tuple[str, str]
    nodes: list[PoolNode] = field(default_factory=list)
    by_addr: dict[tuple, PoolNode] = field(default_factory=dict)


# ---------------------------------------------------------------------------- the simulation

class AreaSim(SimCluster):
    """`servers` servers in each datacenter of `tree`, one WAN-profile pool per tree edge,
    a router per server. Deterministic for a seed."""

    def __init__(self, tree: AreaTree, seed: int, *, servers: int = 3,
                 config: GossipConfig | None = None, reconnect_timeout: float = 300.0,
                 latency: float = 0.0005, wan_latency: float = 0.03, wan_jitter: float = 0.01,
                 loss: float = 0.0, join_spread: float = 2.0, check_every: float = 1.0) -> None:
        config = config or GossipConfig.wan()
        super().__init__(0, seed, config, record=False, tick_delegates=True)
        self.tree = tree
        self.servers_per_dc = servers
        self.serf_config = replace(SerfConfig(), reconnect_timeout=reconnect_timeout)
        # measurements (see `watch`)
        self.violations: list[str] = []
        self.failures: list[tuple[float, str, str]] = []        # (t, observer, member) failed
        self.watched: str | None = None
        self.detected_at: dict[str, float] = {}
        self.reaped_at: dict[str, float] = {}
        self.route_log: dict[str, list[tuple[float, str]]] = {}
        self.suspected_at: dict[tuple[str, str], float] = {}    # (observer, victim) -> start
        self.declared: list[tuple[float, str, str, int, float]] = []
        self._watch_nodes: set = set()
        self.adjacent = {dc: set(tree.neighbours(dc)) | {dc} for dc in tree.dcs}
        self._joins: dict[tuple[int, int], list] = {}
        rng = self.rng
        self.servers: dict[str, list[SimServer]] = {}
        dc_of: dict[str, str] = {}
        index = 0
        for dc in tree.dcs:
            agent_cfg = AgentConfig(datacenter=dc, server=True)
            group = []
            for j in range(1, servers + 1):
                ip, raw = sim_address(index)
                index += 1
                node_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                router = Router(dc, random.Random(rng.getrandbits(64)))
                group.append(SimServer(f"s{j}", dc, ip, raw, lan_tags(agent_cfg, node_id), router))
                dc_of[ip] = dc
            self.servers[dc] = group
        self.network = AreaNetwork(random.Random(rng.getrandbits(64)), dc_of, latency=latency,
                                   wan_latency=wan_latency, wan_jitter=wan_jitter, loss=loss)
        self.areas: dict[str, Area] = {}
        self.area_of_edge: dict[frozenset, Area] = {}
        for a, b in tree.edges:
            area = Area(str(uuid.UUID(int=rng.getrandbits(128), version=4)), (a, b))
            self.areas[area.id] = area
            self.area_of_edge[frozenset((a, b))] = area
            for server in self.servers[a] + self.servers[b]:
                self._add_node(area, server)
        for area in self.areas.values():
            self._plan_joins(area, join_spread)
        for server in self.all_servers():
            phase = rng.random() * REBALANCE_CHECK_INTERVAL
            self.call_at(phase, lambda now, s=server: self._rebalance(s, now))
        self.call_at(0.0, lambda now: self._check_adjacency(now, check_every))

    # ------------------------------------------------------------------ building

    def _add_node(self, area: Area, server: SimServer) -> None:
        cfg = self.config
        rng = random.Random(self.rng.getrandbits(64))
        serf = SerfCore(self.serf_config, server.name, server.ip, RPC_PORT, server.tags, rng, 0.0,
                        retransmit_mult=cfg.retransmit_mult, gossip_interval=cfg.gossip_interval)
        swim = SwimNode(cfg, server.name, server.raw, RPC_PORT, rng, 0.0, serf)
        serf.attach(swim)
        node = PoolNode(len(self.nodes), server.name, (server.ip, RPC_PORT), server.raw, swim,
                        serf, area, server)
        self.nodes.append(node)
        area.nodes.append(node)
        area.by_addr[node.addr] = node
        server.pools[area.id] = node
        server.router.add_area(area.id)
        for mem in serf.member_list():          # Federation.add_pool seeds from members()
            apply_member_event(server.router, area.id, "member-join", mem.name, mem.addr,
                               mem.tags, mem.status == STATUS_FAILED, 0.0)
        self._flush(node)

    def _plan_joins(self, area: Area, spread: float) -> None:
        """Flood join (each server joins its DC's first server in the pool), and the
        operator's join of the lower DC's first server to the other DC's first."""
        a, b = area.dcs
        first = {dc: self.servers[dc][0].pools[area.id] for dc in area.dcs}
        plan = [(first[a], first[b])]
        plan += [(s.pools[area.id], first[s.dc]) for dc in area.dcs for s in self.servers[dc][1:]]
        for node, target in plan:
            at = self.rng.random() * spread
            self.call_at(at, lambda now, n=node, t=target.addr: self._pool_join(n, [t], now))

    def _pool_join(self, node: PoolNode, addrs: list, now: float) -> None:
        if not node.alive:
            return
        join_id = node.swim.join(addrs, now)
        self._joins[(node.index, join_id)] = addrs
        self._flush(node)

    # ------------------------------------------------------------------ accessors

    def all_servers(self) -> list[SimServer]:
        return [s for dc in self.tree.dcs for s in self.servers[dc]]

    def live_servers(self) -> list[SimServer]:
        return [s for s in self.all_servers() if s.alive]

    def area_between(self, a: str, b: str) -> Area:
        return self.area_of_edge[frozenset((a, b))]

    def converged(self) -> bool:
        """Every live server sees every member of each of its pools alive."""
        size = 2 * self.servers_per_dc
        for node in self.nodes:
            if not node.alive:
                continue
            members = node.delegate.members
            if len(members) != size or any(mm.status != STATUS_ALIVE for mm in members.values()):
                return False
        return True

    @staticmethod
    def route_state(server: SimServer, dc: str) -> str:
        try:
            server.router.find_route(dc)
        except NoPath:
            return NO_PATH
        except DCUnreachable:
            return UNREACHABLE
        return ROUTE

    def route_problems(self) -> list[str]:
        """Every live server must route to every live neighbour DC, to a running server of
        that DC (the gossip-driven order puts live servers in front)."""
        out = []
        for s in self.live_servers():
            for dc in self.tree.neighbours(s.dc):
                if not any(x.alive for x in self.servers[dc]):
                    continue
                try:
                    _, target = s.router.find_route(dc)
                except (NoPath, DCUnreachable) as exc:
                    out.append(f"{s.name} -> {dc}: {exc}")
                    continue
                peer = next((x for x in self.servers[dc] if x.name == target.name), None)
                if target.dc != dc or peer is None or not peer.alive:
                    out.append(f"{s.name} -> {dc}: routes to {target.name} (not running)")
        return out

    # ------------------------------------------------------------------ actions

    def kill_dc(self, dc: str) -> None:
        """Every server of `dc` stops at once (no leave)."""
        for s in self.servers[dc]:
            s.alive = False
            for node in s.pools.values():
                node.alive = False

    def watch(self, dc: str) -> None:
        """Record, from now on, when each server of each neighbour DC sees all of `dc`'s
        servers failed (`detected_at`) and reaped (`reaped_at`), and how its route to `dc`
        changes (`route_log`: (t, route|unreachable|no-path))."""
        self.watched = dc
        self.detected_at.clear()
        self.reaped_at.clear()
        self.suspected_at.clear()
        self.declared.clear()
        area_of = lambda nb: self.area_between(nb, dc).id      # noqa: E731
        self._watch_nodes = {s.pools[area_of(nb)] for nb in self.tree.neighbours(dc)
                             for s in self.servers[nb]}
        self.route_log = {s.name: [(self.now, self.route_state(s, dc))]
                          for nb in self.tree.neighbours(dc) for s in self.servers[nb]}

    # ------------------------------------------------------------------ the scheduler's hooks

    def _flush(self, node: PoolNode) -> None:
        """As `SimCluster._flush`, but packets stay inside the node's pool, and Serf's member
        events go into the server's router."""
        ready = node.swim.drain()
        now = self.now
        if ready.packets:
            self._send_packets(node.addr, ready.packets, node.area.by_addr, now)
        for req in ready.streams:
            self._start_stream(node, req, now)
        serf = node.delegate
        for ev in ready.events:
            if isinstance(ev, JoinResult):
                addrs = self._joins.pop((node.index, ev.join_id), None)
                if ev.successes:
                    serf.join_intent(now)             # as GossipPool.join does
                elif addrs is not None:               # RetryJoin
                    self.call_at(now + RETRY_JOIN_INTERVAL,
                                 lambda t, n=node, a=addrs: self._pool_join(n, a, t))
        if node in self._watch_nodes:
            self._watch_suspicions(node, ready.events, now)
        events = serf.drain_events()
        if events:
            self._member_events(node, events, now)
        nd = min(ready.next_deadline, serf.next_deadline())
        if nd < node.tick_at:
            node.tick_at = nd
            self._push(nd if nd > now else now, _TICK, node, None, None)

    def _member_events(self, node: PoolNode, events: list, now: float) -> None:
        server = node.server
        area = node.area.id
        for ev in events:
            if not isinstance(ev, MemberEvent):
                continue
            mem = ev.member
            apply_member_event(server.router, area, ev.kind, mem.name, mem.addr, mem.tags,
                               mem.status == STATUS_FAILED, now)
            if ev.kind == "member-failed":
                self.failures.append((now, server.name, mem.name))
        if self.watched is not None and server.name in self.route_log:
            self._observe(server, now)

    def _start_stream(self, node: PoolNode, req, now: float) -> None:
        """As `SimCluster._start_stream`, with the destination looked up in node's pool."""
        dst = node.area.by_addr.get(req.addr)
        deadline = now + req.timeout
        if dst is None or not self.network.reachable(node.addr, req.addr):
            self._fail_stream(node, req, deadline)
            return
        if not dst.alive:        # connection refused after one round trip
            rtt = 2 * self.network._params(node.addr, req.addr, 0.0)[0]
            self._fail_stream(node, req, min(deadline, now + rtt))
            return
        d = self.network.stream_leg_delay(node.addr, req.addr)
        if d is None or now + d > deadline:
            self._fail_stream(node, req, deadline)
            return
        self._push(now + d, _STREAM_IN, dst, (node, req, deadline), None)

    # ------------------------------------------------------------------ router drivers

    def _rebalance(self, server: SimServer, now: float) -> None:
        """Federation._rebalance_loop's body: ping the due managers' servers in shuffled
        order; the first that answers goes in front, none → the manager is offline."""
        if not server.alive:
            return
        router = server.router
        for m in router.due(now):
            if m.dc == server.dc:
                router.rebalanced(m, list(m.servers), m.front(), now)
                continue
            order = router.shuffled(m)
            answered = next((s for s in order if self._ping(server, s)), None)
            router.rebalanced(m, order, answered, now)
        if self.watched is not None and server.name in self.route_log:
            self._observe(server, now)
        self.call_at(now + REBALANCE_CHECK_INTERVAL, lambda t: self._rebalance(server, t))

    def _ping(self, src: SimServer, target) -> bool:
        peer = next((s for s in self.servers.get(target.dc, ()) if s.name == target.name), None)
        return (peer is not None and peer.alive
                and self.network.reachable((src.ip, RPC_PORT), (peer.ip, RPC_PORT)))

    # ------------------------------------------------------------------ measurements

    def _observe(self, server: SimServer, now: float) -> None:
        dc = self.watched
        log = self.route_log[server.name]
        state = self.route_state(server, dc)
        if state != log[-1][1]:
            log.append((now, state))
        node = server.pools[self.area_between(server.dc, dc).id]
        members = node.delegate.members
        victims = [s.name for s in self.servers[dc]]
        if server.name not in self.detected_at and all(
                v in members and members[v].status == STATUS_FAILED for v in victims):
            self.detected_at[server.name] = now
        if server.name not in self.reaped_at and not any(v in members for v in victims):
            self.reaped_at[server.name] = now

    def _watch_suspicions(self, node: PoolNode, events: list, now: float) -> None:
        """When each neighbour server's SWIM node started suspecting each victim, and each
        suspicion timer that ran out there: (t, observer, victim, confirmations, length)."""
        observer = node.server.name
        suspicions = node.swim._suspicions
        for victim in self.servers[self.watched]:
            key = (observer, victim.name)
            if key not in self.suspected_at:
                susp = suspicions.get(victim.name)
                if susp is not None:
                    self.suspected_at[key] = susp.start
        for ev in events:
            if isinstance(ev, SuspectTimeout):
                start = self.suspected_at.get((observer, ev.name))
                if start is not None:
                    self.declared.append((now, observer, ev.name, ev.confirmations, now - start))

    def _check_adjacency(self, now: float, every: float) -> None:
        """No live server may know a route to a datacenter that is not its neighbour."""
        adjacent = self.adjacent
        for s in self.all_servers():
            if not s.alive:
                continue
            extra = set(s.router.datacenters()) - adjacent[s.dc]
            if extra and len(self.violations) < 100:
                self.violations.append(f"t={now:.1f} {s.name} knows {sorted(extra)}")
        self.call_at(now + every, lambda t: self._check_adjacency(t, every))

    def first_time(self, server: str, state: str) -> float:
        """When `server`'s route to the watched DC first reached `state` (nan: never)."""
        return next((t for t, st in self.route_log[server] if st == state), math.nan)


# ---------------------------------------------------------------------------- predictions

def suspicion_prediction(cfg: GossipConfig, n: int, confirmations: int) -> dict[str, float]:
    """memberlist-wire.md §4.5 for a pool of `n` members: k, the min and max timers, the
    timer after `confirmations` independent suspicions (the accuser pre-seeds the set), and
    `declare_s`: that timer plus the last-chance ping Isthmus sends before declaring a
    suspect dead (one probe_timeout; `_core/swim.py` `_on_suspicion_timeout`)."""
    k = cfg.suspicion_mult - 2
    if n - 2 < k:
        k = 0
    lo = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
    hi = cfg.suspicion_max_timeout_mult * lo
    if k < 1:
        timer = lo
    else:
        timer = remaining_suspicion_time(min(confirmations, k), k, 0.0, lo, hi)
    return {"n": n, "k": k, "min_s": lo, "max_s": hi, "confirmations": min(confirmations, k),
            "timer_s": timer, "declare_s": timer + (cfg.probe_timeout if k >= 1 else 0.0)}


# ---------------------------------------------------------------------------- one scenario

@dataclass
class Outcome:
    """One run: convergence, then every server of `victim` killed at once."""
    dcs: int
    servers: int
    seed: int
    shape: str
    victim: str
    kind: str                                   # "interior" | "leaf"
    neighbours: list[str]
    converge_s: float
    detect_s: dict[str, float]                  # per neighbour server: kill → all failed
    unreachable_s: dict[str, float]             # kill → find_route raises DCUnreachable
    nopath_s: dict[str, float]                  # kill → NoPath
    reap_s: dict[str, float]                    # kill → the pool reaped every victim server
    suspect_s: dict[str, float]                 # per neighbour DC: kill → the last victim
                                                # server's first suspicion in that DC's pool
    timers: list[tuple[int, float]]             # (confirmations, length) of each timer that
                                                # declared a victim dead
    timer_error_s: float                        # max |length − §4.5 formula + last ping|
    spread_s: dict[str, float]                  # per neighbour server: detect − when its pool
                                                # first declared the last victim dead
    violations: list[str]
    route_problems: list[str]
    false_failures: int                         # member-failed events about running servers
    predicted: dict[str, float]
    wide_pool: dict[str, float]                 # the same formula for one WAN pool of everyone
    reconnect_timeout: float
    virtual_s: float
    wall_s: float
    packets: int

    def stats(self, which: str) -> tuple[float, float]:
        """(p50, max) over the neighbour servers of detect_s / unreachable_s / nopath_s /
        reap_s (nan for a server that never got there)."""
        vals = list(getattr(self, which).values())
        if not vals:
            return math.nan, math.nan
        return statistics.median(vals), max(vals)

    def ok(self) -> bool:
        everyone = len(self.neighbours) * self.servers
        return (not self.violations and not self.route_problems
                and len(self.detect_s) == everyone and len(self.nopath_s) == everyone)


def run_scenario(dcs: int = 100, seed: int = 1, *, servers: int = 3, kind: str = "interior",
                 shape: str = "balanced", fanout: int = 3, reconnect_timeout: float = 300.0,
                 loss: float = 0.0, settle: float = 30.0, converge_within: float = 600.0,
                 **sim_kwargs: Any) -> Outcome:
    """Build, converge, settle, kill every server of one DC (`kind`: the interior DC with
    the most neighbours, or the last leaf), run until each neighbour server's route to it
    is NoPath (after the pool reaps it), then check the routes between the live DCs."""
    t0 = time.perf_counter()
    tree = (AreaTree.balanced(dcs, fanout) if shape == "balanced"
            else AreaTree.random(dcs, random.Random(seed)))
    sim = AreaSim(tree, seed, servers=servers, reconnect_timeout=reconnect_timeout, loss=loss,
                  **sim_kwargs)
    converge_s = sim.run_until(sim.converged, within=converge_within, check_every=0.5)
    sim.run_for(settle)
    problems = sim.route_problems()
    victim = tree.interior() if kind == "interior" else tree.leaf()
    neighbours = tree.neighbours(victim)
    sim.watch(victim)
    killed_at = sim.now
    sim.kill_dc(victim)
    watched = list(sim.route_log)
    bound = sim.serf_config.reconnect_timeout + 1200.0
    try:
        sim.run_until(lambda: all(sim.route_log[s][-1][1] == NO_PATH for s in watched),
                      within=bound, check_every=1.0)
    except AssertionError:
        pass                                    # reported: missing entries in nopath_s
    sim.run_for(sim.config.probe_interval * 2)
    problems += sim.route_problems()
    victims = {s.name for s in sim.servers[victim]}
    false_failures = sum(1 for _, _, mem in sim.failures if mem not in victims)

    def since(d: dict[str, float]) -> dict[str, float]:
        return {k: v - killed_at for k, v in d.items()}

    def reached(state: str) -> dict[str, float]:
        out = {}
        for s in watched:
            t = sim.first_time(s, state)
            if not math.isnan(t):
                out[s] = t - killed_at
        return out

    # per pool (= neighbour DC): each victim's first suspicion there; the last of those
    # is when that pool's last suspicion timer started
    first_suspected: dict[tuple[str, str], float] = {}
    for (observer, victim_name), at in sim.suspected_at.items():
        key = (observer.rsplit(".", 1)[1], victim_name)
        first_suspected[key] = min(first_suspected.get(key, at), at)
    pool_suspect: dict[str, float] = {}
    for (dc, _), at in first_suspected.items():
        pool_suspect[dc] = max(pool_suspect.get(dc, -math.inf), at - killed_at)
    cfg = sim.config
    n = 2 * servers
    timer_error = max((abs(length - suspicion_prediction(cfg, n, c)["declare_s"])
                       for _, _, _, c, length in sim.declared), default=math.nan)
    declared_first: dict[tuple[str, str], float] = {}   # (neighbour DC, victim) -> first dead
    for at, observer, victim_name, _, _ in sim.declared:
        key = (observer.rsplit(".", 1)[1], victim_name)
        declared_first[key] = min(declared_first.get(key, at), at)
    pool_declared: dict[str, float] = {}
    for (dc, _), at in declared_first.items():
        pool_declared[dc] = max(pool_declared.get(dc, -math.inf), at)
    spread = {name: at - pool_declared[name.rsplit(".", 1)[1]]
              for name, at in sim.detected_at.items() if name.rsplit(".", 1)[1] in pool_declared}
    return Outcome(
        dcs=dcs, servers=servers, seed=seed, shape=tree.shape, victim=victim, kind=kind,
        neighbours=neighbours, converge_s=converge_s, detect_s=since(sim.detected_at),
        unreachable_s=reached(UNREACHABLE), nopath_s=reached(NO_PATH), reap_s=since(sim.reaped_at),
        suspect_s=pool_suspect, timers=[(d[3], d[4]) for d in sim.declared],
        timer_error_s=timer_error, spread_s=spread,
        violations=list(sim.violations), route_problems=problems,
        false_failures=false_failures,
        predicted=suspicion_prediction(cfg, 2 * servers, servers - 1),
        wide_pool=suspicion_prediction(cfg, dcs * servers, dcs * servers - 1),
        reconnect_timeout=sim.serf_config.reconnect_timeout, virtual_s=sim.now,
        wall_s=time.perf_counter() - t0, packets=sim.network.sent)


def reap_prediction(detect_s: float, reconnect_timeout: float = WAN_RECONNECT_TIMEOUT,
                    reap_interval: float = SerfConfig().reap_interval) -> tuple[float, float]:
    """When Serf reaps a member declared failed `detect_s` after the crash: the first reaper
    run (every `reap_interval`) at which it has been failed for more than `reconnect_timeout`
    — the window (earliest, latest)."""
    return detect_s + reconnect_timeout, detect_s + reconnect_timeout + reap_interval

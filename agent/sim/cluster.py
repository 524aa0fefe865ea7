"""Many SwimNodes on one virtual clock and an in-memory network (`agent.sim.network`).

An event-driven scheduler (a heap of (time, seq, action)) runs each node's `tick` at its
`next_deadline`, delivers datagrams after the network's delay, and carries stream
exchanges (push/pull, TCP ping) by calling `handle_stream` / `stream_result` with the
delay of each leg. Real bytes go through `_core.wire` both ways, so the codec, compression
and CRC are exercised as in production. Deterministic for a seed: nothing reads a clock
and all randomness comes from `random.Random`s derived from the seed.
"""
from __future__ import annotations

import gc
import importlib.util
import math
import os
import random
import sys
from dataclasses import dataclass
from types import ModuleType
from heapq import heappop, heappush
from typing import Any, Callable

from _core import messages as m
from _core.errors import DecodeError
from _core.gossip_config import GossipConfig
from _core.swim import NullDelegate, SwimNode, push_pull_scale, suspicion_timeout

from .network import Network

SIM_PORT = 7946

_TICK = 0
_PACKET = 1
_STREAM_IN = 2
_STREAM_RESULT = 3
_CALL = 4


def pure_python_swim() -> ModuleType:
    """`_core/swim.py` (and `_core/broadcast.py`) run from source even when the compiled
    modules exist, for twin runs and benchmarks: SimCluster(..., swim_module=this)."""
    import _core

    mods = {}
    for name in ("broadcast", "swim"):
        full = f"_core._{name}_source"
        mod = sys.modules.get(full)
        if mod is None:
            path = os.path.join(os.path.dirname(_core.__file__), f"{name}.py")
            spec = importlib.util.spec_from_file_location(full, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[full] = mod
            spec.loader.exec_module(mod)
        mods[name] = mod
    mods["swim"].TransmitLimitedQueue = mods["broadcast"].TransmitLimitedQueue
    return mods["swim"]


class SimTimeout(AssertionError):
    """`run_until` did not see its predicate come true in time."""


def sim_address(i: int) -> tuple[str, bytes]:
    """("10.a.b.c", raw bytes) of simulated node number i (0-based)."""
    j = i + 1
    raw = bytes((10, (j >> 16) & 0xFF, (j >> 8) & 0xFF, j & 0xFF))
    return "%d.%d.%d.%d" % tuple(raw), raw


@dataclass(frozen=True, slots=True)
class Bounds:
    """Time bounds a correct cluster of `n` nodes with `cfg` meets (virtual seconds)."""
    cfg: GossipConfig
    n: int

    def suspicion_max(self) -> float:
        """The longest suspicion timer: SuspicionMaxTimeoutMult × min(n) (Lifeguard's start)."""
        return self.cfg.suspicion_max_timeout_mult * suspicion_timeout(
            self.cfg.suspicion_mult, self.n, self.cfg.probe_interval)

    def dissemination(self) -> float:
        """retransmit_mult × ceil(log10(n + 1)) gossip rounds of gossip_interval each."""
        return (self.cfg.retransmit_mult * math.ceil(math.log10(self.n + 1))
                * self.cfg.gossip_interval)

    def detect_and_spread(self) -> float:
        """probe_interval + probe_timeout + the longest suspicion timer + dissemination:
        a failed node is probed within a probe interval, the probe gives up within it, the
        suspicion runs out at the latest after the max timeout, then the dead message
        needs the broadcast's retransmissions to reach everyone."""
        cfg = self.cfg
        return cfg.probe_interval + cfg.probe_timeout + self.suspicion_max() + self.dissemination()

    def push_pull_period(self) -> float:
        """How often each node runs a push/pull at this size (pushPullScale)."""
        return push_pull_scale(self.cfg.push_pull_interval, self.n)


class Recorder(NullDelegate):
    """A delegate that records membership notifications into the cluster's counters."""

    __slots__ = ("owner", "log")

    def __init__(self, owner: str, log: "EventLog") -> None:
        self.owner = owner
        self.log = log

    def notify_join(self, node, now: float) -> None:
        self.log.joins += 1

    def notify_leave(self, node, now: float) -> None:
        if node.state == m.STATE_DEAD:
            self.log.deaths.append((now, self.owner, node.name))
        else:
            self.log.lefts += 1

    def notify_update(self, node, now: float) -> None:
        self.log.updates += 1


class EventLog:
    """What happened in a run: deaths seen (time, observer, victim) and event counts."""

    def __init__(self) -> None:
        self.joins = 0
        self.lefts = 0
        self.updates = 0
        self.deaths: list = []
        self.counts: dict[str, int] = {}
        self.join_results: dict = {}

    def dead_victims(self) -> set:
        return {victim for _, _, victim in self.deaths}


class SimNode:
    """One simulated process: a SwimNode plus its address and liveness."""

    __slots__ = ("index", "name", "addr", "raw", "swim", "delegate", "alive", "tick_at")

    def __init__(self, index: int, name: str, addr: tuple, raw: bytes, swim: SwimNode,
                 delegate: Any = None) -> None:
        self.index = index
        self.name = name
        self.addr = addr
        self.raw = raw
        self.swim = swim
        self.delegate = delegate
        self.alive = True
        self.tick_at = math.inf

    def __repr__(self) -> str:
        return f"SimNode({self.name}, {self.addr[0]}, {'up' if self.alive else 'down'})"


class SimCluster:
    """`n` SWIM nodes on a virtual clock.

    `converged=True` starts with every node knowing every other as alive (incarnation 1,
    nothing queued), as after a long-settled join; otherwise node 0 starts alone and every
    other node joins it at a random time in [0, join_spread) by push/pull.

    Delegates: `delegate_factory(name)` gives each node its delegate (default: a Recorder
    feeding `self.log`, or none with record=False). With `tick_delegates=True` the
    delegates are driven like the SwimNodes: `delegate.tick(now)` at
    `delegate.next_deadline()` (a Serf layer's reaper, reconnector, query deadlines).
    """

    def __init__(self, n: int, seed: int, config: GossipConfig | None = None, *,
                 latency: float = 0.001, jitter: float = 0.0, loss: float = 0.0,
                 stream_loss: float | None = None, converged: bool = False,
                 join_spread: float = 1.0, wire_module: Any = None, swim_module: Any = None,
                 keyring: Any = None, record: bool = True,
                 delegate_factory: Callable[[str], Any] | None = None,
                 tick_delegates: bool = False) -> None:
        if wire_module is None:
            from _core import wire as wire_module
        node_class = SwimNode if swim_module is None else swim_module.SwimNode
        self.wire = wire_module
        self.seed = seed
        self.config = config = config or GossipConfig()
        self.rng = random.Random(seed)
        self.network = Network(random.Random(self.rng.getrandbits(64)), latency, jitter, loss,
                               stream_loss)
        self.now = 0.0
        self.log = EventLog()
        self.keyring = keyring
        self.tick_delegates = tick_delegates
        self._heap: list = []
        self._seq = 0
        self._nonce_rng = random.Random(self.rng.getrandbits(64))
        self.nodes: list[SimNode] = []
        self._by_addr: dict[tuple, SimNode] = {}
        self._by_name: dict[str, SimNode] = {}
        self.bounds = Bounds(config, n)
        nonce = (lambda k: self._nonce_rng.randbytes(k)) if keyring is not None else None
        for i in range(n):
            name = "node-%04d" % i
            ip, raw = sim_address(i)
            if delegate_factory is not None:
                delegate = delegate_factory(name)
            elif record:
                delegate = Recorder(name, self.log)
            else:
                delegate = None
            swim = node_class(config, name, raw, SIM_PORT, random.Random(self.rng.getrandbits(64)),
                              0.0, delegate, keyring, nonce, wire_module=wire_module)
            node = SimNode(i, name, (ip, SIM_PORT), raw, swim, delegate)
            self.nodes.append(node)
            self._by_addr[node.addr] = node
            self._by_name[name] = node
        if converged:
            states = [m.PushNodeState(nd.name, nd.raw, SIM_PORT, b"", 1, m.STATE_ALIVE,
                                      config.vsn) for nd in self.nodes]
            for node in self.nodes:
                node.swim.seed_members(states, 0.0)
                node.swim._broadcasts.reset()       # the bootstrap alive of each node
        elif n > 1:
            seed_addr = self.nodes[0].addr
            for node in self.nodes[1:]:
                at = self.rng.random() * join_spread
                self.call_at(at, lambda now, node=node: self._join(node, [seed_addr], now))
        for node in self.nodes:
            self._flush(node)

    # ------------------------------------------------------------------ accessors

    def node(self, name: str) -> SimNode:
        return self._by_name[name]

    def swim(self, name: str) -> SwimNode:
        return self._by_name[name].swim

    @property
    def live_nodes(self) -> list[SimNode]:
        return [nd for nd in self.nodes if nd.alive]

    # ------------------------------------------------------------------ actions

    def kill(self, name: str) -> None:
        """Stop the node: it processes nothing and answers nothing from now on."""
        self._by_name[name].alive = False

    def call_at(self, at: float, fn: Callable[[float], None]) -> None:
        """Run fn(now) at virtual time `at` (inside the event loop)."""
        self._push(at, _CALL, fn, None, None)

    def join(self, name: str, addrs: list, now: float | None = None) -> int:
        node = self._by_name[name]
        return self._join(node, addrs, self.now if now is None else now)

    def _join(self, node: SimNode, addrs: list, now: float) -> int:
        join_id = node.swim.join(addrs, now)
        self._flush(node)
        return join_id

    def leave(self, name: str) -> None:
        node = self._by_name[name]
        node.swim.leave(self.now)
        self._flush(node)

    # ------------------------------------------------------------------ running

    def run_for(self, seconds: float) -> None:
        """Advance the virtual clock by `seconds`, processing everything due."""
        self._run(self.now + seconds)

    def run_until(self, predicate: Callable[[], bool], within: float,
                  check_every: float = 0.25) -> float:
        """Run until predicate() holds (checked every `check_every` virtual seconds);
        the virtual time it took. SimTimeout (naming the seed) after `within` seconds."""
        start = self.now
        end = start + within
        while True:
            if predicate():
                return self.now - start
            if self.now >= end:
                raise SimTimeout(f"condition not met within {within:.3f} virtual s "
                                 f"(seed={self.seed}, n={len(self.nodes)}, t={self.now:.3f})")
            self._run(min(end, self.now + check_every))

    def all_see(self, name: str, state: int) -> bool:
        """Every live node other than `name` has `name` in `state` (for dead/left: or reaped)."""
        gone = state >= m.STATE_DEAD
        for node in self.nodes:
            if not node.alive or node.name == name:
                continue
            mem = node.swim._node_map.get(name)
            if mem is None:
                if not gone:
                    return False
            elif mem.state != state:
                return False
        return True

    def all_alive_everywhere(self, names: list | None = None) -> bool:
        """Every live node sees every live node (or those `names`) as alive."""
        live = self.live_nodes
        want = [nd.name for nd in live] if names is None else names
        for node in live:
            nmap = node.swim._node_map
            for name in want:
                mem = nmap.get(name)
                if mem is None or mem.state != m.STATE_ALIVE:
                    return False
        return True

    def _push(self, at: float, kind: int, a: Any, b: Any, c: Any) -> None:
        self._seq += 1
        heappush(self._heap, (at, self._seq, kind, a, b, c))

    def _run(self, until: float) -> None:
        # thousands of nodes keep millions of objects alive: collect young garbage less
        # often (the cores make no reference cycles in steady state)
        old = gc.get_threshold()
        gc.set_threshold(max(old[0], 50000), old[1], old[2])
        try:
            self._loop(until)
        finally:
            gc.set_threshold(*old)

    def _loop(self, until: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            at, _, kind, a, b, c = heappop(heap)
            self.now = at
            if kind == _PACKET:
                if a.alive:
                    a.swim.step_packet(b, c, at)
                    self._flush(a)
            elif kind == _TICK:
                if a.alive and a.tick_at == at:
                    a.tick_at = math.inf
                    a.swim.tick(at)
                    if self.tick_delegates:
                        a.delegate.tick(at)
                    self._flush(a)
            elif kind == _STREAM_IN:
                self._stream_in(a, b, c, at)
            elif kind == _STREAM_RESULT:
                if a.alive:
                    a.swim.stream_result(b, c, at)
                    self._flush(a)
            else:
                a(at)
        if until > self.now:
            self.now = until

    def _send_packets(self, src, packets: list, by_addr: dict, now: float) -> None:
        """Each (dest, data) of `packets` to the node at dest in `by_addr` after the network's
        delay (None: lost); packets to an address not in `by_addr` are dropped."""
        delay = self.network.packet_delay
        for dest, data in packets:
            dst = by_addr.get(dest)
            if dst is None:
                continue
            d = delay(src, dest)
            if d is not None:
                self._push(now + d, _PACKET, dst, data, src)

    def _flush(self, node: SimNode) -> None:
        ready = node.swim.drain()
        now = self.now
        if ready.packets:
            self._send_packets(node.addr, ready.packets, self._by_addr, now)
        for req in ready.streams:
            self._start_stream(node, req, now)
        if ready.events:
            counts = self.log.counts
            for ev in ready.events:
                name = type(ev).__name__
                counts[name] = counts.get(name, 0) + 1
                if name == "JoinResult":
                    self.log.join_results[(node.name, ev.join_id)] = ev
        nd = ready.next_deadline
        if self.tick_delegates:
            nd = min(nd, node.delegate.next_deadline())
        if nd < node.tick_at:
            node.tick_at = nd
            self._push(nd if nd > now else now, _TICK, node, None, None)

    # ------------------------------------------------------------------ streams

    def _stream_decoder(self, accepting: bool):
        return self.wire.StreamDecoder(keyring=self.keyring,
                                       verify_incoming=self.config.gossip_verify_incoming,
                                       label=self.config.label,
                                       require_label_header=accepting and bool(self.config.label))

    def _fail_stream(self, node: SimNode, req, at: float) -> None:
        self._push(at, _STREAM_RESULT, node, req.req_id, None)

    def _start_stream(self, node: SimNode, req, now: float) -> None:
        dst = self._by_addr.get(req.addr)
        deadline = now + req.timeout
        if dst is None or not self.network.reachable(node.addr, req.addr):
            self._fail_stream(node, req, deadline)        # no route: the dial times out
            return
        if not dst.alive:
            # a stopped process on a reachable host: connection refused after one round trip
            self._fail_stream(node, req, min(deadline, now + 2 * self.network.latency))
            return
        d = self.network.stream_leg_delay(node.addr, req.addr)
        if d is None or now + d > deadline:
            self._fail_stream(node, req, deadline)
            return
        self._push(now + d, _STREAM_IN, dst, (node, req, deadline), None)

    def _stream_in(self, dst: SimNode, ctx: tuple, _unused: Any, at: float) -> None:
        node, req, deadline = ctx
        if not dst.alive:
            self._fail_stream(node, req, min(deadline, at + self.network.latency))
            return
        try:
            msgs = self._stream_decoder(True).feed(req.payload)
        except DecodeError:
            msgs = []
        reply = dst.swim.handle_stream(msgs, node.addr, at) if msgs else None
        self._flush(dst)
        if reply is None:
            self._fail_stream(node, req, min(deadline, at + self.network.latency))
            return
        d = self.network.stream_leg_delay(req.addr, node.addr)
        if d is None or at + d > deadline:
            self._fail_stream(node, req, deadline)
            return
        try:
            got = self._stream_decoder(False).feed(reply)
        except DecodeError:
            got = []
        self._push(at + d, _STREAM_RESULT, node, req.req_id, got[0] if got else None)

    # ------------------------------------------------------------------ reporting

    def stats_total(self) -> dict:
        """Every node's SwimStats summed."""
        total: dict = {}
        for node in self.nodes:
            for k, v in node.swim.stats.as_dict().items():
                total[k] = total.get(k, 0) + v
        return total

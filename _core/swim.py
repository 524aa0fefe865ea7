# cython: annotation_typing=False
"""SWIM + Lifeguard membership as memberlist runs it, as a pure core (no I/O, no clock).

shared/spec/memberlist-wire.md §3.3–3.5 (streams, join, merge) and §4 (algorithms) are the
reference; memberlist file/function names are cited where a rule comes from. The node
takes input (`step_packet`, `handle_stream`, `stream_result`, `join`, `leave`, `tick`)
with the caller's `now` and hands back what to do through `drain()`:

* `Ready.packets`: (("ip", port), bytes) datagrams to send;
* `Ready.streams`: `StreamRequest`s — open TCP to `addr`, write `payload`, read ONE stream
  message, close, call `stream_result(req_id, msg or None, now)`;
* `Ready.events`: the event objects below, for the driver to log or act on;
* `Ready.next_deadline`: when `tick()` must be called next.

Everything random (probe order, insertion position, helper/gossip/push-pull targets,
timer phases) comes from the `rng` passed in.

Events (small frozen dataclasses): Malformed, JoinResult, LeaveDone, UpdateDone,
PushPullFailed, PushPullRejected, ProbeFailed, TcpFallbackOnly, SuspectTimeout, Refuted,
AddressConflict. Membership changes go to the delegate (notify_join/leave/update/conflict).

Differences from memberlist that are not about the wire:
* memberlist queues alive/suspect/dead/user messages for a handler goroutine (HandoffQueue,
  drained LIFO); here every packet is handled at once, in order.
* `join()` runs its push/pulls in parallel, not one address after the other.
* dead *and* left nodes are reaped on probe-index wrap (memberlist ≥ 0.3.1; 0.2.2 kept left
  nodes forever).
* tickers (probe, gossip) start at a random phase in [0, interval): memberlist's tickers
  start with the process, which in a simulator would put every node in lock step.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Any, Callable, Protocol

from . import messages as m
from .broadcast import TransmitLimitedQueue
from .errors import DecodeError
from .gossip_config import META_MAX_SIZE, GossipConfig

_Ping = m.Ping
_IndirectPing = m.IndirectPing
_Ack = m.Ack
_Nack = m.Nack
_Suspect = m.Suspect
_Alive = m.Alive
_Dead = m.Dead
_User = m.User

STATE_ALIVE = m.STATE_ALIVE
STATE_SUSPECT = m.STATE_SUSPECT
STATE_DEAD = m.STATE_DEAD
STATE_LEFT = m.STATE_LEFT
STATE_NAMES = {STATE_ALIVE: "alive", STATE_SUSPECT: "suspect", STATE_DEAD: "dead",
               STATE_LEFT: "left"}

# hashicorp/memberlist net.go
COMPOUND_HEADER_OVERHEAD = 2      # compoundHeaderOverhead
COMPOUND_OVERHEAD = 2             # compoundOverhead (per part)
USER_MSG_OVERHEAD = 1             # userMsgOverhead
MAX_COMPOUND_PARTS = 255          # the part count is one byte (makeCompoundMessages)
PUSH_PULL_SCALE_THRESHOLD = 32    # util.go pushPullScaleThreshold
_NEVER = -math.inf                # a Go zero time.Time: "long ago"
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"

Addr = tuple  # ("ip", port)


# ------------------------------------------------------------ formulas (util.go, suspicion.go)

_INV_LN10 = 0.43429448190325182765112891891660508229439700580366656611  # Go: 1 / Ln10


def go_log10(x: float) -> float:
    """Go's math.Log10: Log(x) × (1/Ln10), the constant rounded once (src/math/log10.go)."""
    return math.log(x) * _INV_LN10


def suspicion_timeout(suspicion_mult: int, n: int, interval: float) -> float:
    """Minimum suspicion timeout: mult × floor(max(1, log10(max(1, n))) × 1000) × interval / 1000
    (util.go suspicionTimeout, with Go's log10)."""
    node_scale = max(1.0, go_log10(max(1.0, float(n))))
    return suspicion_mult * math.floor(node_scale * 1000.0) * interval / 1000.0


def remaining_suspicion_time(n: int, k: int, elapsed: float, min_: float, max_: float) -> float:
    """Time left after `n` of `k` confirmations: max − ln(n+1)/ln(k+1) × (max − min), floored
    to the millisecond and at `min`, minus `elapsed` (may be ≤ 0: fire now)."""
    frac = math.log(n + 1.0) / math.log(k + 1.0)
    raw = max_ - frac * (max_ - min_)
    timeout = math.floor(1000.0 * raw) / 1000.0
    if timeout < min_:
        timeout = min_
    return timeout - elapsed


def push_pull_scale(interval: float, n: int) -> float:
    """Push/pull period: interval up to 32 nodes, then × (ceil(log2(n) − log2(32)) + 1)."""
    if n <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(n) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1.0
    return multiplier * interval


def encrypt_overhead(protocol_version: int) -> int:
    """encryptOverhead: 29 bytes for encryption version 1 (protocol ≥ 2), 45 for version 0."""
    return 45 if protocol_version < 2 else 29


def label_overhead(label: bytes) -> int:
    """labelOverhead: type byte + length byte + label, or nothing without a label."""
    return 2 + len(label) if label else 0


def _next_tick(due: float, interval: float, now: float) -> float:
    """A ticker's next tick; a late caller loses the missed ticks, as with Go's time.Ticker."""
    nxt = due + interval
    if nxt <= now:
        nxt = due + interval * (math.floor((now - due) / interval) + 1.0)
    return nxt


_IP_CACHE: dict = {}


def ip_str(raw: bytes) -> str | None:
    """Go's net.IP(raw).String() for a 4- or 16-byte address; None for any other length."""
    s = _IP_CACHE.get(raw)
    if s is not None:
        return s
    n = len(raw)
    if n == 4:
        s = "%d.%d.%d.%d" % (raw[0], raw[1], raw[2], raw[3])
    elif n == 16:
        if raw[:12] == _V4_MAPPED:
            s = "%d.%d.%d.%d" % (raw[12], raw[13], raw[14], raw[15])
        else:
            s = str(ipaddress.IPv6Address(bytes(raw)))
    else:
        return None
    if len(_IP_CACHE) >= 65536:       # hostile input must not grow it without bound
        _IP_CACHE.clear()
    _IP_CACHE[bytes(raw)] = s
    return s


# ------------------------------------------------------------------ members

class Member:
    """One known node as this core sees it. Owned by the core: read, do not modify
    (`copy()` gives a detached snapshot)."""

    __slots__ = ("name", "addr", "port", "meta", "incarnation", "state", "state_change",
                 "vsn", "udp")

    def __init__(self, name: str, addr: bytes, port: int, meta: bytes, incarnation: int,
                 state: int, state_change: float, vsn: bytes) -> None:
        self.name = name
        self.addr = addr                # raw 4/16 bytes, as advertised
        self.port = port
        self.meta = meta
        self.incarnation = incarnation
        self.state = state              # STATE_* from _core.messages
        self.state_change = state_change
        self.vsn = vsn                  # [PMin, PMax, PCur, DMin, DMax, DCur]
        self.udp = (ip_str(addr) or "", port)

    @property
    def pmin(self) -> int:
        return self.vsn[0] if len(self.vsn) >= 6 else 0

    @property
    def pmax(self) -> int:
        return self.vsn[1] if len(self.vsn) >= 6 else 0

    @property
    def pcur(self) -> int:
        return self.vsn[2] if len(self.vsn) >= 6 else 0

    @property
    def dmin(self) -> int:
        return self.vsn[3] if len(self.vsn) >= 6 else 0

    @property
    def dmax(self) -> int:
        return self.vsn[4] if len(self.vsn) >= 6 else 0

    @property
    def dcur(self) -> int:
        return self.vsn[5] if len(self.vsn) >= 6 else 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))

    def copy(self) -> "Member":
        """A detached snapshot."""
        return Member(self.name, self.addr, self.port, self.meta, self.incarnation, self.state,
                      self.state_change, self.vsn)

    def __repr__(self) -> str:
        return (f"Member({self.name!r}, {self.udp[0]}:{self.port}, inc={self.incarnation}, "
                f"{self.state_name})")


# ------------------------------------------------------------------ delegate

class GossipDelegate(Protocol):
    """What the layer above (Serf) provides; all calls are synchronous and must not block."""

    def node_meta(self, limit: int) -> bytes: ...
    def notify_msg(self, payload: bytes, now: float) -> None: ...
    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]: ...
    def local_state(self, join: bool) -> bytes: ...
    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None: ...
    def ack_payload(self) -> bytes: ...
    def notify_ping_complete(self, node: Member, rtt: float, payload: bytes,
                             now: float) -> None: ...
    def notify_join(self, node: Member, now: float) -> None: ...
    def notify_leave(self, node: Member, now: float) -> None: ...
    def notify_update(self, node: Member, now: float) -> None: ...
    def notify_conflict(self, existing: Member, other: Member, now: float) -> None: ...


class NullDelegate:
    """A delegate that has nothing to say (plain memberlist without Serf)."""

    def node_meta(self, limit: int) -> bytes:
        return b""

    def notify_msg(self, payload: bytes, now: float) -> None:
        pass

    def get_broadcasts(self, overhead: int, limit: int) -> list:
        return []

    def local_state(self, join: bool) -> bytes:
        return b""

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        pass

    def ack_payload(self) -> bytes:
        return b""

    def notify_ping_complete(self, node: Member, rtt: float, payload: bytes, now: float) -> None:
        pass

    def notify_join(self, node: Member, now: float) -> None:
        pass

    def notify_leave(self, node: Member, now: float) -> None:
        pass

    def notify_update(self, node: Member, now: float) -> None:
        pass

    def notify_conflict(self, existing: Member, other: Member, now: float) -> None:
        pass


# ------------------------------------------------------------------ outputs and events

@dataclass(frozen=True, slots=True)
class StreamRequest:
    """Open TCP to `addr`, write `payload`, read one stream message, close, then call
    `stream_result(req_id, message or None, now)`. `kind`: "push_pull" or "ping"."""
    req_id: int
    addr: tuple
    payload: bytes
    timeout: float
    kind: str


@dataclass(slots=True)
class Ready:
    """What the core wants done since the last `drain()`."""
    packets: list = field(default_factory=list)     # [(("ip", port), bytes)]
    streams: list = field(default_factory=list)     # [StreamRequest]
    events: list = field(default_factory=list)
    next_deadline: float = math.inf


@dataclass(frozen=True, slots=True)
class Malformed:
    """A packet that did not decode (dropped)."""
    src: tuple
    reason: str


@dataclass(frozen=True, slots=True)
class JoinResult:
    """Outcome of `join()`: how many push/pulls succeeded, and the errors of the others."""
    join_id: int
    successes: int
    errors: tuple = ()


@dataclass(frozen=True, slots=True)
class LeaveDone:
    """Our dead(From=self) broadcast has left the queue (or nobody else is alive)."""


@dataclass(frozen=True, slots=True)
class UpdateDone:
    """The alive broadcast of `update_meta()` has left the queue (or nobody else is alive)."""


@dataclass(frozen=True, slots=True)
class PushPullFailed:
    """A periodic push/pull did not complete or its state was refused."""
    addr: tuple
    reason: str


@dataclass(frozen=True, slots=True)
class PushPullRejected:
    """An inbound push/pull was answered but its state was not merged (verifyProtocol)."""
    src: tuple
    reason: str


@dataclass(frozen=True, slots=True)
class ProbeFailed:
    """No ack from `name` through any path: we suspect it."""
    name: str


@dataclass(frozen=True, slots=True)
class TcpFallbackOnly:
    """`name` answered the TCP ping but no UDP probe: the network may block UDP."""
    name: str


@dataclass(frozen=True, slots=True)
class SuspectTimeout:
    """Our suspicion timer for `name` fired: we declare it dead."""
    name: str
    confirmations: int


@dataclass(frozen=True, slots=True)
class Refuted:
    """Someone said we are suspect/dead (or announced a different us): we refuted."""
    kind: str          # "suspect", "dead" or "alive"
    from_: str
    incarnation: int   # our new incarnation


@dataclass(frozen=True, slots=True)
class AddressConflict:
    """An alive for a known name with another address (not reclaimable): ignored."""
    name: str
    existing: tuple
    other: tuple


_STAT_NAMES = ("packets_in", "packets_out", "malformed", "malformed_parts", "unknown_msgs",
               "probes", "probe_failures", "acks", "nacks", "nacks_sent", "indirect_pings",
               "indirect_relayed", "tcp_pings", "suspects_raised", "dead_declared", "refutes",
               "push_pulls", "push_pull_failures", "push_pulls_served", "gossip_packets",
               "conflicts", "wrong_node_pings", "bad_alive", "last_pings", "last_ping_saves")


class SwimStats:
    """Counters; `as_dict()` for reporting. `malformed`: packets dropped whole;
    `malformed_parts`: compound parts skipped; `bad_alive`: alives ignored for a bad Vsn or
    address; `suspects_raised`: our own failed probes; `dead_declared`: our suspicion timers
    that ran out; `refutes`: accusations against us we answered; `last_pings` /
    `last_ping_saves`: suspicions that ran out and got a last direct ping / whose suspect
    answered it."""

    __slots__ = _STAT_NAMES

    def __init__(self) -> None:
        for name in _STAT_NAMES:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in _STAT_NAMES}

    def __getitem__(self, name: str) -> int:
        return getattr(self, name)

    def __repr__(self) -> str:
        return f"SwimStats({self.as_dict()})"


# ------------------------------------------------------------------ internal state objects

# timer kinds
_T_PROBE_TICK = 0
_T_GOSSIP_TICK = 1
_T_PUSH_PULL = 2
_T_PROBE_TIMEOUT = 3       # end of the direct phase of a probe (ProbeTimeout)
_T_PROBE_DEADLINE = 4      # the probe's ack handler expires (probe interval × awareness)
_T_TCP_GRACE = 5           # probe deadline passed while the TCP ping is still out
_T_RELAY_EXPIRE = 6        # indirect ping we serve: ack handler expires / nack is due
_T_SUSPICION = 7


class _Timer:
    __slots__ = ("kind", "obj", "cancelled")

    def __init__(self, kind: int, obj: Any) -> None:
        self.kind = kind
        self.obj = obj
        self.cancelled = False


class _Probe:
    """The probe in progress (memberlist probeNode; one at a time)."""

    __slots__ = ("seq", "node", "name", "incarnation", "state", "sent", "deadline", "phase",
                 "expected_nacks", "nacks", "tcp_req", "tcp_ok", "timers", "done")

    def __init__(self, seq: int, node: Member, sent: float, deadline: float) -> None:
        self.seq = seq
        self.node = node
        self.name = node.name                  # snapshot, as Go copies the node state
        self.incarnation = node.incarnation
        self.state = node.state
        self.sent = sent
        self.deadline = deadline
        self.phase = 1                         # 1: waiting for the direct ack; 2: indirect
        self.expected_nacks = 0
        self.nacks = 0
        self.tcp_req = 0                       # outstanding TCP ping request id, 0 = none
        self.tcp_ok = False
        self.timers: list = []
        self.done = False


class _Relay:
    """An indirect ping we run for a requester (handleIndirectPing)."""

    __slots__ = ("seq", "req_seq", "requester", "source_node", "nack", "done")

    def __init__(self, seq: int, req_seq: int, requester: tuple, source_node: str,
                 nack: bool) -> None:
        self.seq = seq
        self.req_seq = req_seq
        self.requester = requester
        self.source_node = source_node
        self.nack = nack
        self.done = False


class _Suspicion:
    """suspicion.go: a timer started at max that drives towards min with confirmations."""

    __slots__ = ("node", "k", "n", "min", "max", "start", "change_time", "confirmations",
                 "timer", "last_seq")

    def __init__(self, node: str, from_: str, k: int, min_: float, max_: float,
                 start: float) -> None:
        self.node = node
        self.k = k
        self.n = 0
        self.min = min_
        self.max = max_
        self.start = start
        self.change_time = start
        self.confirmations = {from_}       # the accuser is pre-seeded: our own suspicion
        self.timer = None                  # gossiped back to us must not count
        self.last_seq = 0                  # seq of the last-chance ping, once sent


class _Join:
    __slots__ = ("pending", "successes", "errors")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.successes = 0
        self.errors: list = []


# ------------------------------------------------------------------ the node

class SwimNode:
    """One memberlist node: failure detection, dissemination and anti-entropy."""

    def __init__(self, cfg: GossipConfig, name: str, addr: bytes, port: int, rng: Any,
                 now: float, delegate: GossipDelegate | None = None, keyring: Any = None,
                 nonce_source: Callable[[int], bytes] | None = None, *,
                 wire_module: Any = None) -> None:
        problems = cfg.problems()
        if problems:
            raise ValueError("invalid gossip config: " + "; ".join(problems))
        if keyring is not None and nonce_source is None:
            raise ValueError("a keyring needs a nonce_source")
        if ip_str(addr) is None:
            raise ValueError("addr must be 4 or 16 raw bytes")
        if wire_module is None:
            from . import wire as wire_module
        self.cfg = cfg
        self.name = name
        self._addr = bytes(addr)
        self._port = port
        self._rng = rng
        self._null_delegate = delegate is None
        self._delegate = NullDelegate() if delegate is None else delegate
        self._delegate_broadcasts = delegate is not None
        self._keyring = keyring
        self._nonce_source = nonce_source
        self._encode_message = wire_module.encode_message
        self._encode_packet = wire_module.encode_packet
        self._decode_packet = wire_module.decode_packet
        self._encode_stream = wire_module.encode_stream
        self._stream_label = wire_module.label_header(cfg.label) if cfg.label else b""
        self._encrypt_out = keyring is not None and cfg.gossip_verify_outgoing
        self._lifeguard = cfg.lifeguard
        self._vsn = cfg.vsn
        # bytes a packet may carry besides the message (sendMsg/gossip in net.go, state.go)
        extra = label_overhead(cfg.label)
        self._packet_room = cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - extra - (
            encrypt_overhead(cfg.protocol_version) if self._encrypt_out else 0)
        self._gossip_room = cfg.udp_buffer_size - COMPOUND_HEADER_OVERHEAD - extra - (
            encrypt_overhead(cfg.protocol_version) if keyring is not None else 0)

        self._nodes: list = []              # probe order (memberlist m.nodes)
        self._node_map: dict = {}           # name -> Member
        self._probe_index = 0
        self._seq = 0
        self._incarnation = 0
        self._awareness = 0
        self._leaving = False
        self._gossip_dead = True         # gossip reaches nodes dead < GossipToTheDeadTime
        self._leave_notified = False
        # the queue sizes its retransmit limit from len(self._nodes): keep that list's identity
        self._broadcasts = TransmitLimitedQueue(cfg.retransmit_mult, self._nodes.__len__)
        self._acks: dict = {}               # seq -> _Probe | _Relay | _Suspicion (last ping)
        self._suspicions: dict = {}         # name -> _Suspicion
        self._timers: list = []             # heap of (due, seq, _Timer)
        self._timer_seq = 0
        self._probe = None
        self._probe_pending = False
        self._push_pull_inflight = False
        self._streams: dict = {}            # req_id -> (kind, context)
        self._next_req = 0
        self._joins: dict = {}
        self._next_join = 0
        self._packets: list = []
        self._stream_out: list = []
        self._events: list = []
        self.stats = SwimStats()

        # setAlive: ourselves, incarnation 1, via aliveNode(bootstrap)
        meta = self._delegate.node_meta(META_MAX_SIZE) or b""
        if len(meta) > META_MAX_SIZE:
            raise ValueError("node meta data provided is longer than the limit")
        self._incarnation += 1
        self._alive_node(m.Alive(self._incarnation, name, self._addr, port, meta, self._vsn),
                         now, True, None)
        self.local: Member = self._node_map[name]

        # schedule(): probe and gossip tickers, the push/pull loop (random phase/stagger)
        if cfg.probe_interval > 0:
            self._at(now + rng.random() * cfg.probe_interval, _T_PROBE_TICK, None)
        if cfg.gossip_interval > 0 and cfg.gossip_nodes > 0:
            self._at(now + rng.random() * cfg.gossip_interval, _T_GOSSIP_TICK, None)
        if cfg.push_pull_interval > 0:
            self._at(now + rng.random() * cfg.push_pull_interval, _T_PUSH_PULL, None)

    # ================================================================ public API

    def members(self) -> list:
        """Every known member, in any state (dead and left ones until reaped)."""
        return list(self._nodes)

    def member(self, name: str) -> Member | None:
        """The member called `name`, or None."""
        return self._node_map.get(name)

    @property
    def num_members(self) -> int:
        """Known members, dead and left included until reaped (memberlist estNumNodes)."""
        return len(self._nodes)

    @property
    def health_score(self) -> int:
        """Lifeguard awareness score: 0 is healthy, awareness_max_multiplier − 1 the worst."""
        return self._awareness

    @property
    def incarnation(self) -> int:
        return self._incarnation

    def num_queued(self) -> int:
        """memberlist broadcasts waiting to be sent."""
        return len(self._broadcasts)

    def step_packet(self, data: bytes, src: tuple, now: float) -> None:
        """A UDP datagram from `src`."""
        try:
            msgs = self._decode_packet(data, keyring=self._keyring,
                                       verify_incoming=self.cfg.gossip_verify_incoming,
                                       label=self.cfg.label)
        except DecodeError as exc:
            self.stats.malformed += 1
            self._events.append(Malformed(src, str(exc)))
            return
        self.stats.packets_in += 1
        dropped = msgs.dropped
        if dropped or msgs.truncated:
            # memberlist logs such compound parts and handles the rest of the packet
            self.stats.malformed_parts += len(dropped) + msgs.truncated
            self._events.append(Malformed(src, str(dropped[0]) if dropped else
                                          f"{msgs.truncated} truncated compound parts"))
        for msg in msgs:
            t = type(msg)
            if t is _Alive:
                self._handle_alive(msg, src, now)
            elif t is _Ping:
                self._handle_ping(msg, src, now)
            elif t is _Ack:
                self._handle_ack(msg, src, now)
            elif t is _Suspect:
                self._suspect_node(msg, now)
            elif t is _Dead:
                self._dead_node(msg, now)
            elif t is _IndirectPing:
                self._handle_indirect_ping(msg, src, now)
            elif t is _Nack:
                self._handle_nack(msg, src, now)
            elif t is _User:
                self._delegate.notify_msg(msg.payload, now)
            else:
                self.stats.unknown_msgs += 1

    def handle_stream(self, data_msgs: list, src: tuple, now: float) -> bytes | None:
        """An inbound stream message (decoded by the driver): the reply bytes, or None to close."""
        if not data_msgs:
            return None
        msg = data_msgs[0]
        if isinstance(msg, m.PushPull):
            # handleConn: send our state with the same Join flag, then merge theirs
            self.stats.push_pulls_served += 1
            reply = self._stream_bytes(self._local_push_pull(msg.join), False)
            err = self._merge_remote_state(msg.join, msg.states, msg.user_state, now)
            if err is not None:
                self._events.append(PushPullRejected(src, err))
            return reply
        if isinstance(msg, m.Ping):
            if msg.node and msg.node != self.name:
                self.stats.wrong_node_pings += 1
                return None
            return self._stream_bytes(m.Ack(msg.seq_no, None), False)
        if isinstance(msg, m.User):
            self._delegate.notify_msg(msg.payload, now)
            return None
        self.stats.unknown_msgs += 1
        return None

    def stream_result(self, req_id: int, reply: object | None, now: float) -> None:
        """The reply to a `StreamRequest` we asked for (None: failed or timed out)."""
        entry = self._streams.pop(req_id, None)
        if entry is None:
            return
        kind, ctx, addr = entry
        if kind == "ping":
            self._on_tcp_ping_result(ctx, reply, now)
            return
        join = kind == "join"
        if reply is None:
            err = "connection failed or timed out"
        elif isinstance(reply, m.Err):
            err = f"remote error: {reply.error}"
        elif not isinstance(reply, m.PushPull):
            err = f"received invalid message {type(reply).__name__}, expected push/pull"
        else:
            err = self._merge_remote_state(join, reply.states, reply.user_state, now)
        if join:
            j = self._joins.get(ctx)
            if j is not None:
                j.pending -= 1
                if err is None:
                    j.successes += 1
                else:
                    j.errors.append(f"{addr[0]}:{addr[1]}: {err}")
                if j.pending <= 0:
                    del self._joins[ctx]
                    self._events.append(JoinResult(ctx, j.successes, tuple(j.errors)))
        else:
            self._push_pull_inflight = False
            if err is not None:
                self.stats.push_pull_failures += 1
                self._events.append(PushPullFailed(addr, err))
            self._at(now + push_pull_scale(self.cfg.push_pull_interval, len(self._nodes)),
                     _T_PUSH_PULL, None)

    def join(self, addrs: list, now: float) -> int:
        """Push/pull (Join=true) with each address; a JoinResult event reports the outcome."""
        self._next_join += 1
        join_id = self._next_join
        if not addrs:
            self._events.append(JoinResult(join_id, 0, ()))
            return join_id
        self._joins[join_id] = _Join(len(addrs))
        payload = self._stream_bytes(self._local_push_pull(True), True)
        for addr in addrs:
            self._request_stream(tuple(addr), payload, self.cfg.tcp_timeout, "push_pull",
                                 "join", join_id)
        return join_id

    def begin_leave(self) -> None:
        """From now on gossip only to live and suspect nodes. memberlist also gossips to nodes
        dead for less than GossipToTheDeadTime, which lets a leaving node spend its few
        transmissions of the leave on them: with one member alive and others just dead, that
        member could miss the leave and see the node fail instead. A node that is leaving
        has no later gossip in which to make up for it."""
        self._gossip_dead = False

    def leave(self, now: float) -> None:
        """Broadcast dead(From=self); LeaveDone once it is out (or nobody else is alive)."""
        if self._leaving:
            return
        self._leaving = True
        self._gossip_dead = False
        me = self._node_map.get(self.name)
        if me is None:
            self._leave_done()
            return
        self._dead_node(m.Dead(me.incarnation, me.name, me.name), now)
        if not self._any_alive():
            self._leave_done()

    def update_meta(self, now: float) -> None:
        """Re-read delegate.node_meta and broadcast our alive with incarnation + 1."""
        meta = self._delegate.node_meta(META_MAX_SIZE) or b""
        if len(meta) > META_MAX_SIZE:
            raise ValueError("node meta data provided is longer than the limit")
        me = self._node_map[self.name]
        self._incarnation += 1
        self._alive_node(m.Alive(self._incarnation, self.name, me.addr, me.port, meta, self._vsn),
                         now, True, self._update_done)
        if not self._any_alive():
            self._update_done()

    def send_user(self, addr: tuple, payload: bytes, now: float) -> None:
        """A bare user-message packet (8 | payload), no piggyback (SendToAddress)."""
        self._raw_send(tuple(addr), [b"\x08" + payload], self._node_map.get(addr[0]))

    def queue_broadcast(self, name: str | None, msg_bytes: bytes) -> None:
        """Queue an encoded memberlist message; a named one replaces the queued one of that name."""
        self._broadcasts.queue_broadcast(msg_bytes, name)

    def seed_members(self, states: list, now: float) -> None:
        """Insert members known out of band (simulator set-up, restored state): each alive
        state becomes a member as an alive message would make it, but nothing is broadcast.
        The next push/pull moves to a random point of the period for the new size, as in a
        cluster that has been running for a while."""
        added = 0
        for s in states:
            if s.name in self._node_map or s.state != STATE_ALIVE:
                continue
            node = Member(s.name, s.addr, s.port, s.meta or b"", s.incarnation, STATE_ALIVE, now,
                          s.vsn)
            self._insert_node(node)
            self._delegate.notify_join(node, now)
            added += 1
        if added and self.cfg.push_pull_interval > 0 and not self._push_pull_inflight:
            for _, _, t in self._timers:
                if t.kind == _T_PUSH_PULL:
                    t.cancelled = True
            period = push_pull_scale(self.cfg.push_pull_interval, len(self._nodes))
            self._at(now + self._rng.random() * period, _T_PUSH_PULL, None)

    def tick(self, now: float) -> None:
        """Fire every timer due at `now`: probes, probe phases, suspicions, gossip, push/pull."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, t = heappop(timers)
            self._fire(t, due, now)

    def _fire(self, t: _Timer, due: float, now: float) -> None:
        if t.cancelled:
            return
        kind = t.kind
        if kind == _T_GOSSIP_TICK:
            self._at(_next_tick(due, self.cfg.gossip_interval, now), _T_GOSSIP_TICK, None)
            self._gossip(now)
        elif kind == _T_PROBE_TICK:
            self._at(_next_tick(due, self.cfg.probe_interval, now), _T_PROBE_TICK, None)
            if self._probe is not None:
                self._probe_pending = True     # Go's ticker channel buffers one tick
            else:
                self._probe_round(now)
        elif kind == _T_PROBE_TIMEOUT:
            self._on_probe_timeout(t.obj, now)
        elif kind == _T_PROBE_DEADLINE:
            self._on_probe_deadline(t.obj, now)
        elif kind == _T_TCP_GRACE:
            probe = t.obj
            if not probe.done:
                self._finish_probe(probe, now, False)
        elif kind == _T_RELAY_EXPIRE:
            self._on_relay_expired(t.obj, now)
        elif kind == _T_SUSPICION:
            self._on_suspicion_timeout(t.obj, now)
        elif kind == _T_PUSH_PULL:
            self._push_pull(now)

    def drain(self) -> Ready:
        """Packets, stream requests and events since the last call, and the next deadline."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heappop(timers)
        ready = Ready(self._packets, self._stream_out, self._events,
                      timers[0][0] if timers else math.inf)
        self._packets = []
        self._stream_out = []
        self._events = []
        return ready

    # ================================================================ timers

    def _at(self, due: float, kind: int, obj: Any) -> _Timer:
        t = _Timer(kind, obj)
        self._timer_seq += 1
        heappush(self._timers, (due, self._timer_seq, t))
        return t

    # ================================================================ sending

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _nonce(self) -> bytes | None:
        return self._nonce_source(12) if self._encrypt_out else None

    def _raw_send(self, dest: tuple, parts: list, node: Member | None) -> None:
        """rawSendMsgPacket: compress (if smaller), CRC (known node, PMax ≥ 5), encrypt, label."""
        crc = node is not None and len(node.vsn) >= 6 and node.vsn[1] >= 5
        kr = self._keyring if self._encrypt_out else None
        cfg = self.cfg
        if len(parts) > MAX_COMPOUND_PARTS:     # makeCompoundMessages: ≤ 255 parts each
            for i in range(0, len(parts), MAX_COMPOUND_PARTS):
                self._raw_send(dest, parts[i:i + MAX_COMPOUND_PARTS], node)
            return
        data = self._encode_packet(parts, compress=cfg.enable_compression, crc=crc, keyring=kr,
                                   nonce=self._nonce(), label=cfg.label)
        self.stats.packets_out += 1
        self._packets.append((dest, data))

    def _send_msg(self, dest: tuple, msg: bytes) -> None:
        """sendMsg: piggyback broadcasts onto `msg`. The destination is looked up by IP
        string as a node name, as memberlist does, so CRCs are rare on this path."""
        extra = self._get_broadcasts(COMPOUND_OVERHEAD, self._packet_room - len(msg))
        if extra:
            extra.insert(0, msg)
            self._raw_send(dest, extra, self._node_map.get(dest[0]))
        else:
            self._raw_send(dest, [msg], self._node_map.get(dest[0]))

    def _get_broadcasts(self, overhead: int, limit: int) -> list:
        """memberlist's own broadcasts first, then the delegate's, framed as user messages."""
        to_send = self._broadcasts.get_broadcasts(overhead, limit)
        if not self._delegate_broadcasts:
            return to_send
        used = 0
        for msg in to_send:
            used += len(msg) + overhead
        avail = limit - used
        if avail > overhead + USER_MSG_OVERHEAD:
            for msg in self._delegate.get_broadcasts(overhead + USER_MSG_OVERHEAD, avail):
                to_send.append(b"\x08" + msg)
        return to_send

    def _broadcast(self, name: str, msg: Any, finished: Callable[[], None] | None = None) -> None:
        """encodeAndBroadcast: queue a named broadcast (invalidates the previous one of `name`)."""
        self._broadcasts.queue_broadcast(self._encode_message(msg), name, finished=finished)

    def _stream_bytes(self, msg: Any, outbound: bool) -> bytes:
        """One stream message; a connection we dial starts with the label header (≥ 0.3.0)."""
        kr = self._keyring if self._encrypt_out else None
        data = self._encode_stream(msg, compress=self.cfg.enable_compression, keyring=kr,
                                   nonce=self._nonce(), label=self.cfg.label)
        return self._stream_label + data if outbound else data

    def _request_stream(self, addr: tuple, payload: bytes, timeout: float, kind: str,
                        ctx_kind: str, ctx: Any) -> int:
        self._next_req += 1
        req_id = self._next_req
        self._streams[req_id] = (ctx_kind, ctx, addr)
        self._stream_out.append(StreamRequest(req_id, addr, payload, timeout, kind))
        return req_id

    # ================================================================ node list

    def _insert_node(self, node: Member) -> None:
        """New nodes go to a random position of the probe list (aliveNode)."""
        nodes = self._nodes
        n = len(nodes)
        nodes.append(node)
        if n > 0:
            offset = self._rng.randrange(n)
            nodes[offset], nodes[n] = nodes[n], nodes[offset]
        self._node_map[node.name] = node

    def _reset_nodes(self, now: float) -> None:
        """resetNodes: reap dead/left nodes older than GossipToTheDeadTime, shuffle the rest."""
        limit = self.cfg.gossip_to_the_dead_time
        nodes = self._nodes
        keep = []
        for node in nodes:
            if (node.state >= STATE_DEAD and now - node.state_change > limit
                    and node.name != self.name):
                if self._node_map.get(node.name) is node:
                    del self._node_map[node.name]
            else:
                keep.append(node)
        nodes[:] = keep                 # same list object: the queue's num_nodes reads it
        self._rng.shuffle(nodes)

    def _any_alive(self) -> bool:
        for node in self._nodes:
            if node.state < STATE_DEAD and node.name != self.name:
                return True
        return False

    def _k_random_alive(self, k: int, exclude: str) -> list:
        """kRandomNodes over alive nodes other than us and `exclude` (probe helpers, push/pull)."""
        nodes = self._nodes
        n = len(nodes)
        out: list = []
        if k <= 0 or n == 0:
            return out
        rand = self._rng.random         # randomOffset: uniform in [0, n)
        me = self.name
        for _ in range(3 * n):
            node = nodes[int(rand() * n)]
            if node.state != STATE_ALIVE or node.name == me or node.name == exclude:
                continue
            if node in out:
                continue
            out.append(node)
            if len(out) >= k:
                break
        return out

    def _k_random_gossip(self, k: int, now: float) -> list:
        """kRandomNodes for gossip: alive, suspect, or dead within GossipToTheDeadTime (not
        once we are leaving: begin_leave)."""
        nodes = self._nodes
        n = len(nodes)
        out: list = []
        if k <= 0 or n == 0:
            return out
        rand = self._rng.random
        me = self.name
        dead_time = self.cfg.gossip_to_the_dead_time
        for _ in range(3 * n):
            node = nodes[int(rand() * n)]
            st = node.state
            if node.name == me:
                continue
            if st == STATE_DEAD:
                if not self._gossip_dead or now - node.state_change > dead_time:
                    continue
            elif st != STATE_ALIVE and st != STATE_SUSPECT:
                continue
            if node in out:
                continue
            out.append(node)
            if len(out) >= k:
                break
        return out

    # ================================================================ periodic work

    def _gossip(self, now: float) -> None:
        """gossip(): broadcasts to a few random live, suspect or recently dead nodes."""
        if not self._delegate_broadcasts and not self._broadcasts:
            return                      # no delegate and nothing queued: skip choosing targets
        for node in self._k_random_gossip(self.cfg.gossip_nodes, now):
            msgs = self._get_broadcasts(COMPOUND_OVERHEAD, self._gossip_room)
            if not msgs:
                return
            self.stats.gossip_packets += 1
            self._raw_send(node.udp, msgs, node)

    def _push_pull(self, now: float) -> None:
        """pushPull(): full state exchange with one random alive node (Join=false)."""
        if self._push_pull_inflight:
            return
        nodes = self._k_random_alive(1, self.name)
        if not nodes:
            self._at(now + push_pull_scale(self.cfg.push_pull_interval, len(self._nodes)),
                     _T_PUSH_PULL, None)
            return
        self._push_pull_inflight = True
        self.stats.push_pulls += 1
        payload = self._stream_bytes(self._local_push_pull(False), True)
        self._request_stream(nodes[0].udp, payload, self.cfg.tcp_timeout, "push_pull",
                             "push_pull", None)

    def _local_push_pull(self, join: bool) -> m.PushPull:
        states = [m.PushNodeState(n.name, n.addr, n.port, n.meta, n.incarnation, n.state, n.vsn)
                  for n in self._nodes]
        user = b"" if self._null_delegate else (self._delegate.local_state(join) or b"")
        return m.PushPull(join, states, user)

    # ================================================================ probing (state.go)

    def _probe_round(self, now: float) -> None:
        """probe(): the next node of the list that is not us and not dead/left."""
        num_check = 0
        nodes = self._nodes
        while True:
            if num_check >= len(nodes):
                return
            if self._probe_index >= len(nodes):
                self._reset_nodes(now)
                self._probe_index = 0
                num_check += 1
                continue
            node = nodes[self._probe_index]
            self._probe_index += 1
            if node.name == self.name or node.state >= STATE_DEAD:
                num_check += 1
                continue
            self._probe_node(node, now)
            return

    def _probe_node(self, node: Member, now: float) -> None:
        """probeNode: ping (+ suspect to a suspect), then indirect + TCP, then suspect it."""
        cfg = self.cfg
        interval = cfg.probe_interval * (self._awareness + 1)
        seq = self._next_seq()
        probe = _Probe(seq, node, now, now + interval)
        self._probe = probe
        self._acks[seq] = probe
        self.stats.probes += 1
        ping = m.Ping(seq, node.name, self._addr, self._port, self.name)
        if node.state == STATE_ALIVE or not self._lifeguard:
            self._send_msg(node.udp, self._encode_message(ping))
        else:
            # Lifeguard buddy system: tell the suspect it is accused so it can refute
            sus = m.Suspect(node.incarnation, node.name, self.name)
            self._raw_send(node.udp, [self._encode_message(ping), self._encode_message(sus)], node)
        probe.timers.append(self._at(now + interval, _T_PROBE_DEADLINE, probe))
        probe.timers.append(self._at(now + cfg.probe_timeout, _T_PROBE_TIMEOUT, probe))

    def _on_probe_timeout(self, probe: _Probe, now: float) -> None:
        if probe.done or probe.phase != 1:
            return
        self._start_indirect(probe, now)

    def _start_indirect(self, probe: _Probe, now: float) -> None:
        """No direct ack in ProbeTimeout: ask helpers, and try TCP if the target speaks it."""
        probe.phase = 2
        cfg = self.cfg
        node = probe.node
        for peer in self._k_random_alive(cfg.indirect_checks, probe.name):
            nack = self._lifeguard and peer.pmax >= 4
            if nack:
                probe.expected_nacks += 1
            ind = m.IndirectPing(probe.seq, node.addr, node.port, probe.name, nack,
                                 self._addr, self._port, self.name)
            self.stats.indirect_pings += 1
            self._send_msg(peer.udp, self._encode_message(ind))
        remaining = probe.deadline - now
        if not cfg.disable_tcp_pings and node.pmax >= 3 and remaining > 0:
            self.stats.tcp_pings += 1
            ping = m.Ping(probe.seq, probe.name, self._addr, self._port, self.name)
            probe.tcp_req = self._request_stream(node.udp, self._stream_bytes(ping, True),
                                                 remaining, "ping", "ping", probe)

    def _on_probe_deadline(self, probe: _Probe, now: float) -> None:
        """The probe's ack handler expired (start + probe interval × awareness)."""
        if probe.done:
            return
        if self._acks.get(probe.seq) is probe:
            del self._acks[probe.seq]
        if probe.phase == 1:            # interval ≤ ProbeTimeout: Go still sends the indirects
            self._start_indirect(probe, now)
        if probe.tcp_ok:
            self._finish_probe(probe, now, True, tcp_only=True)
        elif probe.tcp_req:
            # the TCP ping shares this deadline; wait for its answer (bounded)
            probe.timers.append(self._at(now + self.cfg.probe_timeout, _T_TCP_GRACE, probe))
        else:
            self._finish_probe(probe, now, False)

    def _on_tcp_ping_result(self, probe: _Probe, reply: Any, now: float) -> None:
        probe.tcp_req = 0
        probe.tcp_ok = isinstance(reply, m.Ack) and reply.seq_no == probe.seq
        if probe.done:
            return
        if self._acks.get(probe.seq) is not probe:      # the deadline has passed already
            self._finish_probe(probe, now, probe.tcp_ok, tcp_only=probe.tcp_ok)

    def _finish_probe(self, probe: _Probe, now: float, ok: bool, tcp_only: bool = False) -> None:
        probe.done = True
        for t in probe.timers:
            t.cancelled = True
        probe.timers = []
        if self._acks.get(probe.seq) is probe:
            del self._acks[probe.seq]
        if probe.tcp_req:
            self._streams.pop(probe.tcp_req, None)
        if self._probe is probe:
            self._probe = None
        if ok:
            delta = -1
            if tcp_only:
                self._events.append(TcpFallbackOnly(probe.name))
        else:
            # awareness: missed nacks if helpers could nack, else a flat +1
            if probe.expected_nacks > 0:
                delta = max(0, probe.expected_nacks - probe.nacks)
            else:
                delta = 1
            self.stats.probe_failures += 1
            self._events.append(ProbeFailed(probe.name))
            self.stats.suspects_raised += 1
            self._suspect_node(m.Suspect(probe.incarnation, probe.name, self.name), now)
        self._apply_awareness(delta)
        if self._probe_pending and self._probe is None:
            self._probe_pending = False
            self._probe_round(now)

    def _apply_awareness(self, delta: int) -> None:
        """awareness.go ApplyDelta: clamp to [0, AwarenessMaxMultiplier − 1] (Lifeguard only)."""
        if not self._lifeguard or delta == 0:
            return
        score = self._awareness + delta
        hi = self.cfg.awareness_max_multiplier - 1
        self._awareness = 0 if score < 0 else (hi if score > hi else score)

    # ================================================================ packet handlers (net.go)

    def _handle_ping(self, p: m.Ping, src: tuple, now: float) -> None:
        if p.node and p.node != self.name:
            self.stats.wrong_node_pings += 1
            return
        dest = src
        if p.source_addr and p.source_port:
            ip = ip_str(p.source_addr)
            if ip is None:
                return
            dest = (ip, p.source_port)
        payload = self._delegate.ack_payload() if not self._null_delegate else None
        self._send_msg(dest, self._encode_message(m.Ack(p.seq_no, payload)))

    def _handle_indirect_ping(self, ind: m.IndirectPing, src: tuple, now: float) -> None:
        port = ind.port
        if self.cfg.protocol_version < 2 or port == 0:
            port = self._port
        target = ip_str(ind.target)
        requester = src
        if ind.source_addr and ind.source_port:
            ip = ip_str(ind.source_addr)
            if ip is None:
                return
            requester = (ip, ind.source_port)
        if target is None:
            return
        seq = self._next_seq()
        relay = _Relay(seq, ind.seq_no, requester, ind.source_node, bool(ind.nack))
        self._acks[seq] = relay
        # one timer: the ack handler expires and, if asked for, the nack goes out (ProbeTimeout)
        self._at(now + self.cfg.probe_timeout, _T_RELAY_EXPIRE, relay)
        self.stats.indirect_relayed += 1
        ping = m.Ping(seq, ind.node, self._addr, self._port, self.name)
        self._send_msg((target, port), self._encode_message(ping))

    def _on_relay_expired(self, relay: _Relay, now: float) -> None:
        if self._acks.get(relay.seq) is relay:
            del self._acks[relay.seq]
        if relay.done:
            return
        relay.done = True
        if relay.nack:
            self.stats.nacks_sent += 1
            self._send_msg(relay.requester, self._encode_message(m.Nack(relay.req_seq)))

    def _handle_ack(self, ack: m.Ack, src: tuple, now: float) -> None:
        h = self._acks.pop(ack.seq_no, None)
        if h is None:
            return
        self.stats.acks += 1
        if type(h) is _Relay:
            relay = h
            if not relay.done:
                relay.done = True
                self._send_msg(relay.requester, self._encode_message(m.Ack(relay.req_seq, None)))
            return
        if type(h) is _Suspicion:
            self._on_last_ping_ack(h, now)
            return
        probe = h
        if probe.done:
            return
        if probe.phase == 1 and not self._null_delegate:
            node = self._node_map.get(probe.name) or probe.node
            self._delegate.notify_ping_complete(node, now - probe.sent, ack.payload or b"", now)
        self._finish_probe(probe, now, True)

    def _handle_nack(self, nack: m.Nack, src: tuple, now: float) -> None:
        h = self._acks.get(nack.seq_no)
        if h is None or type(h) is not _Probe:
            return
        probe = h
        self.stats.nacks += 1
        if probe.nacks < self.cfg.indirect_checks + 1:   # Go's nack channel capacity
            probe.nacks += 1

    def _handle_alive(self, a: m.Alive, src: tuple, now: float) -> None:
        if a.port == 0 or self.cfg.protocol_version < 2:
            a.port = self._port
        self._alive_node(a, now, False, None)

    # ================================================================ state machine (state.go)

    def _alive_node(self, a: m.Alive, now: float, bootstrap: bool,
                    finished: Callable[[], None] | None) -> None:
        """aliveNode: new nodes, address changes (reclaim), incarnations, refutation."""
        state = self._node_map.get(a.node)
        if (state is not None and a.incarnation <= state.incarnation and state.port == a.port
                and state.addr == a.addr and a.node != self.name):
            return                      # the common case: old news about a known node
        if self._leaving and a.node == self.name:
            return
        vsn = a.vsn or b""
        if len(vsn) >= 3 and (vsn[0] == 0 or vsn[1] == 0 or vsn[0] > vsn[1]):
            self.stats.bad_alive += 1
            return
        if 0 < len(vsn) < 6:            # would crash a Go 0.2.2 peer; never accept it
            self.stats.bad_alive += 1
            return
        meta = a.meta or b""
        updates_node = False
        if ip_str(a.addr) is None:      # not a 4- or 16-byte address: nowhere to reach it
            self.stats.bad_alive += 1
            return
        if state is None:
            state = Member(a.node, a.addr, a.port, meta, 0, STATE_DEAD, _NEVER,
                           vsn if vsn else b"\x00" * 6)
            self._insert_node(state)
        elif state.addr != a.addr or state.port != a.port:
            reclaim = self.cfg.dead_node_reclaim_time
            can_reclaim = reclaim > 0 and now - state.state_change > reclaim
            if state.state == STATE_LEFT or (state.state == STATE_DEAD and can_reclaim):
                updates_node = True
            else:
                self.stats.conflicts += 1
                other = Member(a.node, a.addr, a.port, meta, a.incarnation, STATE_ALIVE, now,
                               vsn)
                self._events.append(AddressConflict(a.node, state.udp, other.udp))
                self._delegate.notify_conflict(state, other, now)
                return
        is_local = state.name == self.name
        if a.incarnation <= state.incarnation and not is_local and not updates_node:
            return
        if a.incarnation < state.incarnation and is_local:
            return
        susp = self._suspicions.pop(a.node, None)
        if susp is not None and susp.timer is not None:
            susp.timer.cancelled = True
            susp.timer = None           # no susp <-> timer cycle left for the GC
        old_state = state.state
        old_meta = state.meta
        if not bootstrap and is_local:
            # same incarnation and same facts: nothing to refute (a restart may differ)
            if a.incarnation == state.incarnation and meta == state.meta and vsn == state.vsn:
                return
            self._refute(state, a.incarnation)
            self._events.append(Refuted("alive", "", state.incarnation))
        else:
            self._broadcast(a.node, a, finished)
            if vsn:
                state.vsn = bytes(vsn)
            state.incarnation = a.incarnation
            state.meta = meta
            if state.addr != a.addr or state.port != a.port:
                state.addr = a.addr
                state.port = a.port
                state.udp = (ip_str(a.addr) or "", a.port)
            if state.state != STATE_ALIVE:
                state.state = STATE_ALIVE
                state.state_change = now
        if old_state >= STATE_DEAD:
            self._delegate.notify_join(state, now)
        elif old_meta != state.meta:
            self._delegate.notify_update(state, now)

    def _suspect_node(self, s: m.Suspect, now: float) -> None:
        """suspectNode: start (or confirm) a suspicion; refute if it is about us."""
        state = self._node_map.get(s.node)
        if state is None or s.incarnation < state.incarnation:
            return
        susp = self._suspicions.get(s.node)
        if susp is not None:
            if self._confirm(susp, s.from_, now):
                self._broadcast(s.node, s)
            return
        if state.state != STATE_ALIVE:
            return
        if state.name == self.name:
            self._refute(state, s.incarnation)
            self._events.append(Refuted("suspect", s.from_, state.incarnation))
            return
        self._broadcast(s.node, s)
        state.incarnation = s.incarnation
        state.state = STATE_SUSPECT
        state.state_change = now
        cfg = self.cfg
        # k: confirmations that drive the timer to min ("two probe intervals short" of
        # SuspicionMult); none expected when fewer than k other nodes can confirm
        k = cfg.suspicion_mult - 2
        n = len(self._nodes)
        if n - 2 < k:
            k = 0
        min_ = suspicion_timeout(cfg.suspicion_mult, n, cfg.probe_interval)
        if self._lifeguard:
            max_ = cfg.suspicion_max_timeout_mult * min_
        else:                           # plain SWIM: a fixed timeout, no confirmations
            k = 0
            max_ = min_
        susp = _Suspicion(s.node, s.from_, k, min_, max_, now)
        susp.timer = self._at(now + (max_ if k >= 1 else min_), _T_SUSPICION, susp)
        self._suspicions[s.node] = susp

    def _confirm(self, susp: _Suspicion, from_: str, now: float) -> bool:
        """suspicion.Confirm: a new independent accuser shortens the timer (log scale)."""
        if susp.n >= susp.k or from_ in susp.confirmations:
            return False
        susp.confirmations.add(from_)
        susp.n += 1
        remaining = remaining_suspicion_time(susp.n, susp.k, now - susp.start, susp.min,
                                             susp.max)
        if susp.timer is not None and not susp.timer.cancelled:
            susp.timer.cancelled = True
            susp.timer = self._at(now + remaining if remaining > 0 else now, _T_SUSPICION, susp)
        return True

    def _on_suspicion_timeout(self, susp: _Suspicion, now: float) -> None:
        susp.timer = None
        if self._suspicions.get(susp.node) is not susp:
            return
        state = self._node_map.get(susp.node)
        if state is None or state.state != STATE_SUSPECT or state.state_change != susp.change_time:
            return
        if self._lifeguard and susp.last_seq == 0:
            # Isthmus addition (wire-compatible; memberlist declares death here at once): one
            # last direct ping, sent twice against loss. A node that missed the suspect's
            # refutation burst (gossip is random; memberlist relies on the next push/pull)
            # would otherwise declare a live node dead. Costs a dead node probe_timeout more.
            seq = self._next_seq()
            susp.last_seq = seq
            self._acks[seq] = susp
            ping = self._encode_message(m.Ping(seq, state.name, self._addr, self._port, self.name))
            self._send_msg(state.udp, ping)
            self._send_msg(state.udp, ping)
            self.stats.last_pings += 1
            susp.timer = self._at(now + self.cfg.probe_timeout, _T_SUSPICION, susp)
            return
        if susp.last_seq:
            self._acks.pop(susp.last_seq, None)
        self.stats.dead_declared += 1
        self._events.append(SuspectTimeout(susp.node, susp.n))
        self._dead_node(m.Dead(state.incarnation, state.name, self.name), now)

    def _on_last_ping_ack(self, susp: _Suspicion, now: float) -> None:
        """The suspect answered our last-chance ping: it lives; drop our suspicion (the
        cluster has its refutation; we will hear the new incarnation by gossip or push/pull)."""
        if self._suspicions.get(susp.node) is not susp:
            return
        state = self._node_map.get(susp.node)
        if state is None or state.state != STATE_SUSPECT or state.state_change != susp.change_time:
            return
        del self._suspicions[susp.node]
        if susp.timer is not None:
            susp.timer.cancelled = True
            susp.timer = None
        state.state = STATE_ALIVE
        state.state_change = now
        self.stats.last_ping_saves += 1

    def _dead_node(self, d: m.Dead, now: float) -> None:
        """deadNode: dead (or left, when From == Node); refute if it is about us."""
        state = self._node_map.get(d.node)
        if state is None or d.incarnation < state.incarnation:
            return
        susp = self._suspicions.pop(d.node, None)
        if susp is not None and susp.timer is not None:
            susp.timer.cancelled = True
            susp.timer = None           # no susp <-> timer cycle left for the GC
        if state.state >= STATE_DEAD:
            return
        if state.name == self.name:
            if not self._leaving:
                self._refute(state, d.incarnation)
                self._events.append(Refuted("dead", d.from_, state.incarnation))
                return
            self._broadcast(d.node, d, self._leave_done)
        else:
            self._broadcast(d.node, d)
        state.incarnation = d.incarnation
        state.state = STATE_LEFT if d.node == d.from_ else STATE_DEAD
        state.state_change = now
        self._delegate.notify_leave(state, now)

    def _refute(self, me: Member, accused_inc: int) -> None:
        """refute: beat the accusation's incarnation, lose health, broadcast our alive."""
        self._incarnation += 1
        inc = self._incarnation
        if accused_inc >= inc:
            self._incarnation = inc = accused_inc + 1
        me.incarnation = inc
        self.stats.refutes += 1
        self._apply_awareness(1)
        a = m.Alive(inc, me.name, me.addr, me.port, me.meta, me.vsn)
        # quirk kept from memberlist: queued under our address string, not our name, so it
        # does not invalidate a queued alive about us
        self._broadcast(me.udp[0], a)

    def _leave_done(self) -> None:
        if not self._leave_notified:
            self._leave_notified = True
            self._events.append(LeaveDone())

    def _update_done(self) -> None:
        self._events.append(UpdateDone())

    # ================================================================ push/pull merge (net.go)

    def _merge_remote_state(self, join: bool, states: list, user_state: bytes,
                            now: float) -> str | None:
        """mergeRemoteState: verifyProtocol, mergeState, then the delegate's user state."""
        err = self._verify_protocol(states)
        if err is not None:
            return err
        me = self.name
        for r in states:
            st = r.state
            if st == STATE_ALIVE:
                self._alive_node(m.Alive(r.incarnation, r.name, r.addr, r.port, r.meta, r.vsn),
                                 now, False, None)
            elif st == STATE_LEFT:
                self._dead_node(m.Dead(r.incarnation, r.name, r.name), now)
            elif st == STATE_DEAD or st == STATE_SUSPECT:
                # a remote "dead" is only a suspicion here
                self._suspect_node(m.Suspect(r.incarnation, r.name, me), now)
        if user_state and not self._null_delegate:
            self._delegate.merge_remote_state(user_state, join, now)
        return None

    def _verify_protocol(self, remote: list) -> str | None:
        """verifyProtocol: every node's PCur/DCur within the cluster's common version range."""
        maxpmin = maxdmin = 0
        minpmax = mindmax = 255
        for rn in remote:
            v = rn.vsn
            if rn.state != STATE_ALIVE or not v or len(v) < 6:
                continue
            if v[0] > maxpmin:
                maxpmin = v[0]
            if v[1] < minpmax:
                minpmax = v[1]
            if v[3] > maxdmin:
                maxdmin = v[3]
            if v[4] < mindmax:
                mindmax = v[4]
        for n in self._nodes:
            if n.state != STATE_ALIVE:
                continue
            v = n.vsn
            if v[0] > maxpmin:
                maxpmin = v[0]
            if v[1] < minpmax:
                minpmax = v[1]
            if v[3] > maxdmin:
                maxdmin = v[3]
            if v[4] < mindmax:
                mindmax = v[4]
        for group in (remote, self._nodes):
            for n in group:
                v = n.vsn
                if v and len(v) >= 6:
                    pcur = v[2]
                    dcur = v[5]
                else:
                    pcur = dcur = 0
                if pcur < maxpmin or pcur > minpmax:
                    return (f"Node '{n.name}' protocol version ({pcur}) is incompatible: "
                            f"[{maxpmin}, {minpmax}]")
                if dcur < maxdmin or dcur > mindmax:
                    return (f"Node '{n.name}' delegate protocol version ({dcur}) is "
                            f"incompatible: [{maxdmin}, {mindmax}]")
        return None

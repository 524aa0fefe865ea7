"""The Serf layer over the SWIM core (hashicorp/serf 0.9.4; spec memberlist-wire.md §5).

Pure: it takes `now`, a seeded `random.Random`, and reports what happened as events that
the driver drains; it never touches sockets, clocks or logs. It is the SWIM node's
delegate: node meta (tags), user messages (intents, user events, queries, relays),
piggybacked broadcasts, push/pull user state, ack payloads (Vivaldi coordinates), and the
membership notifications that turn memberlist states into Serf statuses
(alive / leaving / left / failed).
"""
from __future__ import annotations

import ipaddress
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from _core import messages as m
from _core import wire
from _core.broadcast import TransmitLimitedQueue
from _core.errors import DecodeError
from _core.vivaldi import Coordinate, CoordinateClient, CoordinateConfig

from . import codec
from .lamport import LamportClock

STATUS_NONE, STATUS_ALIVE, STATUS_LEAVING, STATUS_LEFT, STATUS_FAILED = range(5)
STATUS_NAMES = {STATUS_NONE: "none", STATUS_ALIVE: "alive", STATUS_LEAVING: "leaving",
                STATUS_LEFT: "left", STATUS_FAILED: "failed"}

INTERNAL_PREFIX = "_serf_"
USER_EVENT_HARD_LIMIT = 9 * 1024
MIN_ENCODED_KEY_LENGTH = 25


@dataclass(frozen=True, slots=True)
class SerfConfig:
    """Serf's defaults (serf config.go; the agent speaks protocol 5)."""
    protocol_version: int = 5
    event_buffer: int = 512
    query_buffer: int = 512
    reap_interval: float = 15.0
    reconnect_interval: float = 30.0
    reconnect_timeout: float = 24 * 3600.0
    tombstone_timeout: float = 24 * 3600.0
    recent_intent_timeout: float = 300.0
    broadcast_timeout: float = 5.0
    leave_propagate_delay: float = 1.0
    user_event_size_limit: int = 512
    query_timeout_mult: int = 16
    query_response_size_limit: int = 1024
    query_size_limit: int = 1024
    max_queue_depth: int = 4096
    queue_check_interval: float = 30.0
    disable_coordinates: bool = False
    user_coalesce_period: float = 3.0      # the serf agent's user-event coalescing (CC events)
    user_quiescent_period: float = 1.0


@dataclass(slots=True)
class SerfMember:
    """A member as Serf reports it (`members`), with its Serf status."""
    name: str
    addr: str
    port: int
    tags: dict[str, str]
    status: int
    pmin: int = 0
    pmax: int = 0
    pcur: int = 0
    dmin: int = 0
    dmax: int = 0
    dcur: int = 0
    status_ltime: int = 0
    leave_time: float = 0.0        # when it became failed/left (reaping)

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """kind: member-join | member-leave | member-failed | member-update | member-reap."""
    kind: str
    member: SerfMember


@dataclass(frozen=True, slots=True)
class UserEvent:
    ltime: int
    name: str
    payload: bytes
    coalesce: bool


@dataclass(slots=True)
class QueryResult:
    """An outstanding query we originated: acks and responses arrive until `deadline`."""
    id: int
    ltime: int
    name: str
    deadline: float
    acks: set[str] = field(default_factory=set)
    responses: dict[str, bytes] = field(default_factory=dict)
    done: bool = False


@dataclass(frozen=True, slots=True)
class QueryDone:
    query: QueryResult


@dataclass(frozen=True, slots=True)
class KeyringChanged:
    """A key query changed this node's keyring (the driver persists it)."""
    op: str


@dataclass(frozen=True, slots=True)
class NameConflict:
    """memberlist saw another node alive under our name."""
    existing: str
    other: str


@dataclass(frozen=True, slots=True)
class ConflictResolved:
    """Serf's resolveNodeConflict: of the members that answered the `_serf_conflict` query,
    how many hold our address under our name. Without a majority we are the impostor and
    must leave the pool (Serf shuts down)."""
    matching: int
    responses: int

    @property
    def majority(self) -> bool:
        return self.matching >= self.responses // 2 + 1


def _ip(raw: bytes) -> str:
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def _raw_ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


class _EventRing:
    """Serf's dedupe ring: slot LTime % size holds the (name, payload) pairs seen at LTime."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slots: list[tuple[int, list] | None] = [None] * size

    def seen(self, ltime: int, key) -> bool:
        """Record key at ltime; True if it was already there."""
        idx = ltime % self.size
        slot = self.slots[idx]
        if slot is None or slot[0] != ltime:
            self.slots[idx] = (ltime, [key])
            return False
        if key in slot[1]:
            return True
        slot[1].append(key)
        return False


class SerfCore:
    """One Serf instance (LAN or WAN pool); attach a SwimNode with `attach()` before use."""

    def __init__(self, cfg: SerfConfig, name: str, addr: str, port: int, tags: dict[str, str],
                 rng: random.Random, now: float, *, retransmit_mult: int = 4,
                 gossip_interval: float = 0.2, keyring: Any = None) -> None:
        self.cfg = cfg
        self.name = name
        self.addr = addr
        self.port = port
        self.tags = dict(tags)
        self.rng = rng
        self.keyring = keyring
        self.gossip_interval = gossip_interval
        self.clock = LamportClock()
        self.event_clock = LamportClock()
        self.query_clock = LamportClock()
        # Serf starts each clock at 1 (incremented once) before witnessing a snapshot.
        self.clock.increment()
        self.event_clock.increment()
        self.query_clock.increment()
        self.event_min_time = 0
        self.query_min_time = 0
        self.members: dict[str, SerfMember] = {}
        self.recent_intents: dict[str, tuple[int, int, float]] = {}   # name -> (type, ltime, at)
        self.leaving = False
        self._events_ring = _EventRing(cfg.event_buffer)
        self._queries_ring = _EventRing(cfg.query_buffer)
        self._queries: dict[tuple[int, int], QueryResult] = {}
        self._conflict_query: QueryResult | None = None
        self._out_events: list[Any] = []
        self._coalescing: dict[str, list] = {}     # name -> [latest UserEvent, first_at, last_at]
        num = lambda: max(1, len(self.members))  # noqa: E731
        self._intents = TransmitLimitedQueue(retransmit_mult, num)
        self._query_queue = TransmitLimitedQueue(retransmit_mult, num)
        self._event_queue = TransmitLimitedQueue(retransmit_mult, num)
        self.coords = None if cfg.disable_coordinates else CoordinateClient(CoordinateConfig(), rng)
        self.coord_cache: dict[str, Coordinate] = {}
        self._next_reap_at = now + cfg.reap_interval
        self._next_reconnect_at = now + cfg.reconnect_interval
        self._next_queue_check_at = now + cfg.queue_check_interval
        self.swim = None
        self.stats = {"malformed": 0, "unknown_type": 0, "user_events": 0, "queries": 0}
        self.query_handlers: dict[str, Callable[[m.SerfQuery, float], bytes | None]] = {
            INTERNAL_PREFIX + "ping": lambda q, now: None,
            INTERNAL_PREFIX + "conflict": self._answer_conflict,
            INTERNAL_PREFIX + "install-key": lambda q, now: self._key_op(q, "install"),
            INTERNAL_PREFIX + "use-key": lambda q, now: self._key_op(q, "use"),
            INTERNAL_PREFIX + "remove-key": lambda q, now: self._key_op(q, "remove"),
            INTERNAL_PREFIX + "list-keys": lambda q, now: self._key_op(q, "list"),
        }

    def attach(self, swim) -> None:
        """The SWIM node this Serf sits on (created with `delegate=self`)."""
        self.swim = swim
        local = swim.local
        self.members[self.name] = self._from_swim(local, STATUS_ALIVE)
        self.members[self.name].status_ltime = self.clock.time()

    # ------------------------------------------------------------------ queries for callers

    def drain_events(self) -> list:
        out, self._out_events = self._out_events, []
        return out

    def member_list(self) -> list[SerfMember]:
        return list(self.members.values())

    def next_deadline(self) -> float:
        deadlines = [self._next_reap_at, self._next_reconnect_at, self._next_queue_check_at]
        deadlines += [q.deadline for q in self._queries.values() if not q.done]
        deadlines += [min(first + self.cfg.user_coalesce_period, last + self.cfg.user_quiescent_period)
                      for _, first, last in self._coalescing.values()]
        return min(deadlines)

    # ------------------------------------------------------------------ actions

    def join_intent(self, now: float) -> None:
        """After a successful join: tell everyone we are alive at the current Lamport time."""
        ltime = self.clock.time()
        self.clock.witness(ltime)
        me = self.members[self.name]
        me.status_ltime = ltime
        self._broadcast(self._intents, wire.encode_serf(m.SerfJoin(ltime, self.name)))

    def leave(self, now: float) -> None:
        """Graceful leave, step 1: status leaving + leave intent (then SWIM leave, by the driver)."""
        self.leaving = True
        me = self.members[self.name]
        me.status = STATUS_LEAVING
        ltime = self.clock.time()
        self.clock.increment()
        me.status_ltime = ltime
        self._broadcast(self._intents, wire.encode_serf(m.SerfLeave(ltime, self.name)))

    def intents_pending(self) -> int:
        return self._intents.num_queued()

    def force_leave(self, node: str, prune: bool, now: float) -> bool:
        """Mark a failed member left everywhere (`force-leave`); False if unknown."""
        if node not in self.members:
            return False
        ltime = self.clock.time()
        self.clock.increment()
        msg = m.SerfLeave(ltime, node, prune)
        self._handle_leave(msg, now)
        self._broadcast(self._intents, wire.encode_serf(msg))
        return True

    def user_event(self, name: str, payload: bytes, coalesce: bool, now: float) -> None:
        """Broadcast a user event (ValueError when over the size limits)."""
        if len(name) + len(payload) > self.cfg.user_event_size_limit:
            raise ValueError(f"user event exceeds configured limit of {self.cfg.user_event_size_limit} "
                             "bytes before encoding")
        ltime = self.event_clock.time()
        self.event_clock.increment()
        msg = m.SerfUserEvent(ltime, name, payload, coalesce)
        raw = wire.encode_serf(msg)
        if len(raw) > USER_EVENT_HARD_LIMIT:
            raise ValueError(f"encoded user event exceeds sane limit of {USER_EVENT_HARD_LIMIT} "
                             "bytes after encoding")
        self._handle_user_event(msg, now)
        self._broadcast(self._event_queue, raw)

    def query(self, name: str, payload: bytes, now: float, *, timeout: float | None = None,
              ack: bool = False, filters: list[bytes] | None = None) -> QueryResult:
        """Start a query; responses collect in the returned QueryResult until its deadline."""
        if timeout is None:
            n = max(1, len(self.members))
            timeout = self.gossip_interval * self.cfg.query_timeout_mult * math.ceil(math.log10(n + 1))
        ltime = self.query_clock.time()
        self.query_clock.increment()
        qid = self.rng.getrandbits(32)
        q = m.SerfQuery(ltime=ltime, id=qid, addr=_raw_ip(self.addr), port=self.port,
                        source_node=self.name, name=name, payload=payload,
                        filters=list(filters or []), flags=m.QUERY_FLAG_ACK if ack else 0,
                        timeout=int(timeout * 1e9))
        raw = wire.encode_serf(q)
        if len(raw) > self.cfg.query_size_limit:
            raise ValueError(f"query exceeds limit of {self.cfg.query_size_limit} bytes")
        result = QueryResult(qid, ltime, name, now + timeout)
        self._queries[(ltime, qid)] = result
        self._handle_query(q, now)
        self._broadcast(self._query_queue, raw)
        return result

    def set_tags(self, tags: dict[str, str], now: float) -> None:
        """New tags: memberlist re-broadcasts our alive with the new meta."""
        meta = wire.encode_tags(tags)
        if len(meta) > 512:
            raise ValueError("encoded length of tags exceeds limit of 512 bytes")
        self.tags = dict(tags)
        self.members[self.name].tags = dict(tags)
        self.swim.update_meta(now)

    def tick(self, now: float) -> None:
        """Reaper, reconnector, recent-intent expiry and query deadlines."""
        for name, (ev, first, last) in list(self._coalescing.items()):
            if (now >= first + self.cfg.user_coalesce_period
                    or now >= last + self.cfg.user_quiescent_period):
                del self._coalescing[name]
                self._out_events.append(ev)
        for key, q in list(self._queries.items()):
            if not q.done and now >= q.deadline:
                q.done = True
                del self._queries[key]
                if q is self._conflict_query:
                    self._resolve_conflict(q)
                else:
                    self._out_events.append(QueryDone(q))
        if now >= self._next_reap_at:
            self._next_reap_at = now + self.cfg.reap_interval
            self._reap(now)
        if now >= self._next_reconnect_at:
            self._next_reconnect_at = now + self.cfg.reconnect_interval
            self._reconnect(now)
        if now >= self._next_queue_check_at:
            # Serf's checkQueueDepth: a queue that outgrew MaxQueueDepth loses its oldest,
            # most-sent broadcasts first.
            self._next_queue_check_at = now + self.cfg.queue_check_interval
            for q in (self._intents, self._query_queue, self._event_queue):
                if q.num_queued() > self.cfg.max_queue_depth:
                    self.stats["pruned"] = self.stats.get("pruned", 0) + q.num_queued() - self.cfg.max_queue_depth
                    q.prune(self.cfg.max_queue_depth)

    # ------------------------------------------------------------------ GossipDelegate

    def node_meta(self, limit: int) -> bytes:
        meta = wire.encode_tags(self.tags)
        if len(meta) > limit:
            raise ValueError("encoded length of tags exceeds limit of %d bytes" % limit)
        return meta

    def notify_msg(self, payload: bytes, now: float) -> None:
        if not payload:
            return
        try:
            msg = wire.decode_serf(payload)
        except DecodeError:
            self.stats["malformed"] += 1
            return
        if isinstance(msg, m.SerfLeave):
            if self._handle_leave(msg, now):
                self._broadcast(self._intents, payload)
        elif isinstance(msg, m.SerfJoin):
            if self._handle_join(msg, now):
                self._broadcast(self._intents, payload)
        elif isinstance(msg, m.SerfUserEvent):
            if self._handle_user_event(msg, now):
                self._broadcast(self._event_queue, payload)
        elif isinstance(msg, m.SerfQuery):
            if self._handle_query(msg, now) and not msg.flags & m.QUERY_FLAG_NO_BROADCAST:
                self._broadcast(self._query_queue, payload)
        elif isinstance(msg, m.SerfQueryResponse):
            self._handle_query_response(msg)
        elif isinstance(msg, m.SerfRelay):
            self.swim.send_user((_ip(msg.dest_addr), msg.dest_port), msg.inner, now)
        else:
            self.stats["unknown_type"] += 1

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        out = self._intents.get_broadcasts(overhead, limit)
        used = sum(len(b) + overhead for b in out)
        for q in (self._query_queue, self._event_queue):
            if limit - used <= overhead:
                break
            more = q.get_broadcasts(overhead, limit - used)
            used += sum(len(b) + overhead for b in more)
            out.extend(more)
        return out

    def local_state(self, join: bool) -> bytes:
        left = [n for n, mem in self.members.items() if mem.status == STATUS_LEFT]
        events: list[m.SerfUserEvents | None] = []
        for slot in self._events_ring.slots:
            if slot is None:
                events.append(None)
            else:
                events.append(m.SerfUserEvents(slot[0], [(n, p) for n, p in slot[1]]))
        state = m.SerfPushPull(ltime=self.clock.time(),
                               status_ltimes={n: mem.status_ltime for n, mem in self.members.items()},
                               left_members=left, event_ltime=self.event_clock.time(),
                               events=events, query_ltime=self.query_clock.time())
        return wire.encode_serf(state)

    def merge_remote_state(self, buf: bytes, join: bool, now: float) -> None:
        try:
            pp = wire.decode_serf(buf)
        except DecodeError:
            self.stats["malformed"] += 1
            return
        if not isinstance(pp, m.SerfPushPull):
            self.stats["malformed"] += 1
            return
        if pp.ltime > 0:
            self.clock.witness(pp.ltime - 1)
        if pp.event_ltime > 0:
            self.event_clock.witness(pp.event_ltime - 1)
        if pp.query_ltime > 0:
            self.query_clock.witness(pp.query_ltime - 1)
        left = set(pp.left_members)
        for name in left:
            self._handle_leave(m.SerfLeave(pp.status_ltimes.get(name, 0) + 1, name), now)
        for name, ltime in pp.status_ltimes.items():
            if name not in left:
                self._handle_join(m.SerfJoin(ltime, name), now)
        for slot in pp.events:
            if slot is None:
                continue
            for name, payload in slot.events:
                self._handle_user_event(m.SerfUserEvent(slot.ltime, name, payload), now)

    def ack_payload(self) -> bytes:
        if self.coords is None:
            return b""
        return wire.encode_ack_payload(self.coords.get_coordinate().to_wire())

    def notify_ping_complete(self, node, rtt: float, payload: bytes, now: float) -> None:
        if self.coords is None or not payload:
            return
        try:
            other = Coordinate.from_wire(wire.decode_ack_payload(payload))
            self.coords.update(node.name, other, rtt)
        except (DecodeError, ValueError):
            self.stats["malformed"] += 1
            return
        self.coord_cache[node.name] = other

    def notify_join(self, node, now: float) -> None:
        mem = self.members.get(node.name)
        if mem is None:
            mem = self._from_swim(node, STATUS_ALIVE)
            self.members[node.name] = mem
        else:
            self._refresh(mem, node)
            mem.status = STATUS_ALIVE
            mem.leave_time = 0.0
        intent = self.recent_intents.pop(node.name, None)
        if intent is not None:
            kind, ltime, _ = intent
            mem.status_ltime = max(mem.status_ltime, ltime)
            if kind == m.SERF_LEAVE:
                mem.status = STATUS_LEAVING
        self._emit("member-join", mem)

    def notify_leave(self, node, now: float) -> None:
        mem = self.members.get(node.name)
        if mem is None:
            return
        self._refresh(mem, node)
        if mem.status == STATUS_LEAVING:
            mem.status = STATUS_LEFT
            mem.leave_time = now
            self._emit("member-leave", mem)
        elif mem.status == STATUS_ALIVE:
            mem.status = STATUS_FAILED
            mem.leave_time = now
            self._emit("member-failed", mem)

    def notify_update(self, node, now: float) -> None:
        mem = self.members.get(node.name)
        if mem is None:
            return
        self._refresh(mem, node)
        self._emit("member-update", mem)

    def notify_conflict(self, existing, other, now: float) -> None:
        if existing.name != self.name:
            return
        self._out_events.append(NameConflict(existing.name, _ip(other.addr)))
        if self._conflict_query is None:        # one resolution at a time
            self._conflict_query = self.query(INTERNAL_PREFIX + "conflict", self.name.encode(), now)

    def _resolve_conflict(self, q: QueryResult) -> None:
        self._conflict_query = None
        me = _raw_ip(self.addr)
        responses = matching = 0
        for raw in q.responses.values():
            try:
                member = codec.decode_conflict_response(raw)
            except DecodeError:
                continue
            responses += 1                      # as Serf: "don't know" (nil) counts too
            if member is not None and member.get("Addr") == me and member.get("Port") == self.port:
                matching += 1
        self._out_events.append(ConflictResolved(matching, responses))

    # ------------------------------------------------------------------ intents

    def _handle_join(self, msg: m.SerfJoin, now: float) -> bool:
        self.clock.witness(msg.ltime)
        mem = self.members.get(msg.node)
        if mem is None:
            return self._buffer_intent(m.SERF_JOIN, msg.node, msg.ltime, now)
        if msg.ltime <= mem.status_ltime:
            return False
        mem.status_ltime = msg.ltime
        if mem.status == STATUS_LEAVING:
            mem.status = STATUS_ALIVE
        return True

    def _handle_leave(self, msg: m.SerfLeave, now: float) -> bool:
        self.clock.witness(msg.ltime)
        mem = self.members.get(msg.node)
        if mem is None:
            return self._buffer_intent(m.SERF_LEAVE, msg.node, msg.ltime, now)
        if msg.ltime <= mem.status_ltime:
            return False
        if msg.node == self.name and not self.leaving:
            # Someone says we left while we are alive: refute with a fresh join intent.
            self.join_intent(now)
            return False
        mem.status_ltime = msg.ltime
        if mem.status == STATUS_ALIVE:
            mem.status = STATUS_LEAVING
        elif mem.status == STATUS_FAILED:
            mem.status = STATUS_LEFT
            mem.leave_time = now
            self._emit("member-leave", mem)
        if msg.prune and mem.status in (STATUS_LEFT, STATUS_FAILED):
            self._erase(mem)
        return True

    def _buffer_intent(self, kind: int, node: str, ltime: int, now: float) -> bool:
        old = self.recent_intents.get(node)
        if old is not None and old[1] >= ltime:
            return False
        self.recent_intents[node] = (kind, ltime, now)
        return True

    # ------------------------------------------------------------------ user events

    def _handle_user_event(self, msg: m.SerfUserEvent, now: float) -> bool:
        self.event_clock.witness(msg.ltime)
        if msg.ltime < self.event_min_time:
            return False
        cur = self.event_clock.time()
        if cur > self.cfg.event_buffer and msg.ltime < cur - self.cfg.event_buffer:
            return False
        if self._events_ring.seen(msg.ltime, (msg.name, bytes(msg.payload))):
            return False
        self.stats["user_events"] += 1
        ev = UserEvent(msg.ltime, msg.name, bytes(msg.payload), msg.cc)
        if not msg.cc:
            self._out_events.append(ev)
            return True
        # Coalesced events (CC): deliver only the newest of a burst with the same name, after
        # a quiet second or at most three seconds after the first (the serf agent's periods).
        held = self._coalescing.get(msg.name)
        if held is None:
            self._coalescing[msg.name] = [ev, now, now]
        else:
            if ev.ltime >= held[0].ltime:
                held[0] = ev
            held[2] = now
        return True

    # ------------------------------------------------------------------ queries

    def _handle_query(self, q: m.SerfQuery, now: float) -> bool:
        """Process a query; True if it was new (and so should be re-broadcast)."""
        self.query_clock.witness(q.ltime)
        if q.ltime < self.query_min_time:
            return False
        cur = self.query_clock.time()
        if cur > self.cfg.query_buffer and q.ltime < cur - self.cfg.query_buffer:
            return False
        if self._queries_ring.seen(q.ltime, q.id):
            return False
        self.stats["queries"] += 1
        if not self._filters_match(q.filters):
            return True
        dest = (_ip(q.addr), q.port)
        if q.flags & m.QUERY_FLAG_ACK:
            ack = m.SerfQueryResponse(q.ltime, q.id, self.name, b"", m.QUERY_FLAG_ACK)
            self.swim.send_user(dest, wire.encode_serf(ack), now)
        handler = self.query_handlers.get(q.name)
        if handler is not None:
            payload = handler(q, now)
            if payload is not None or q.name == INTERNAL_PREFIX + "ping":
                resp = m.SerfQueryResponse(q.ltime, q.id, self.name, payload or b"")
                raw = wire.encode_serf(resp)
                if len(raw) <= self.cfg.query_response_size_limit:
                    self.swim.send_user(dest, raw, now)
        elif not q.name.startswith(INTERNAL_PREFIX):
            self._out_events.append(q)
        return True

    def _handle_query_response(self, r: m.SerfQueryResponse) -> None:
        q = self._queries.get((r.ltime, r.id))
        if q is None or q.done:
            return
        if r.flags & m.QUERY_FLAG_ACK:
            q.acks.add(r.from_)
        elif r.from_ not in q.responses:
            q.responses[r.from_] = bytes(r.payload)

    def _filters_match(self, filters: list[bytes]) -> bool:
        for raw in filters:
            try:
                kind, value = codec.decode_filter(raw)
            except DecodeError:
                return False
            if kind == codec.FILTER_NODE:
                if self.name not in value:
                    return False
            elif kind == codec.FILTER_TAG:
                tag, expr = value
                try:
                    if tag not in self.tags or not re.search(expr, self.tags[tag]):
                        return False
                except re.error:
                    return False
            else:
                return False
        return True

    def _answer_conflict(self, q: m.SerfQuery, now: float) -> bytes | None:
        name = bytes(q.payload).decode(errors="replace")
        if name == self.name:
            return None
        mem = self.members.get(name)
        return codec.encode_conflict_response(None if mem is None else self._member_wire(mem))

    def _key_op(self, q: m.SerfQuery, op: str) -> bytes:
        import base64
        resp = {"Result": False, "Message": "", "Keys": [], "PrimaryKey": ""}
        kr = self.keyring
        if kr is None:
            resp["Message"] = "No keyring to modify (encryption not enabled)"
            return codec.encode_key_response(resp)
        try:
            if op == "list":
                keys = [base64.b64encode(k).decode() for k in kr.keys]
                budget = self.cfg.query_response_size_limit - MIN_ENCODED_KEY_LENGTH * 2
                kept, used = [], 0
                for k in keys:
                    if used + len(k) + 3 > budget:
                        resp["Message"] = f"truncated key list response, showing first {len(kept)} of {len(keys)} keys"
                        break
                    kept.append(k)
                    used += len(k) + 3
                resp["Keys"] = kept
                resp["PrimaryKey"] = base64.b64encode(kr.primary).decode()
            else:
                key = codec.decode_key_request(bytes(q.payload))
                if op == "install":
                    kr.add(key)
                elif op == "use":
                    kr.use(key)
                else:
                    kr.remove(key)
                self._out_events.append(KeyringChanged(op))
            resp["Result"] = True
        except (ValueError, KeyError, DecodeError) as exc:
            resp["Message"] = str(exc)
        return codec.encode_key_response(resp)

    # ------------------------------------------------------------------ reap / reconnect

    def _reap(self, now: float) -> None:
        for name, (_, _, at) in list(self.recent_intents.items()):
            if now - at > self.cfg.recent_intent_timeout:
                del self.recent_intents[name]
        for mem in list(self.members.values()):
            if mem.status == STATUS_FAILED and now - mem.leave_time > self.cfg.reconnect_timeout:
                self._erase(mem)
            elif mem.status == STATUS_LEFT and now - mem.leave_time > self.cfg.tombstone_timeout:
                self._erase(mem)

    def _reconnect(self, now: float) -> None:
        failed = [mem for mem in self.members.values() if mem.status == STATUS_FAILED]
        if not failed:
            return
        live = sum(1 for mem in self.members.values()
                   if mem.status not in (STATUS_FAILED, STATUS_LEFT))
        prob = len(failed) / max(1, live)
        if self.rng.random() > prob:
            return
        mem = self.rng.choice(failed)
        self.swim.join([(mem.addr, mem.port)], now)

    def _erase(self, mem: SerfMember) -> None:
        self.members.pop(mem.name, None)
        self.coord_cache.pop(mem.name, None)
        if self.coords is not None:
            self.coords.forget_node(mem.name)
        self._emit("member-reap", mem)

    # ------------------------------------------------------------------ helpers

    def _broadcast(self, queue: TransmitLimitedQueue, raw: bytes) -> None:
        queue.queue_broadcast(raw)

    def _emit(self, kind: str, mem: SerfMember) -> None:
        self._out_events.append(MemberEvent(kind, mem))

    def _from_swim(self, node, status: int) -> SerfMember:
        mem = SerfMember(node.name, _ip(node.addr), node.port, {}, status)
        self._refresh(mem, node)
        return mem

    @staticmethod
    def _refresh(mem: SerfMember, node) -> None:
        mem.addr = _ip(node.addr)
        mem.port = node.port
        try:
            mem.tags = wire.decode_tags(node.meta)
        except DecodeError:
            mem.tags = {}
        mem.pmin, mem.pmax, mem.pcur, mem.dmin, mem.dmax, mem.dcur = (
            node.pmin, node.pmax, node.pcur, node.dmin, node.dmax, node.dcur)

    def _member_wire(self, mem: SerfMember) -> dict:
        return {"Name": mem.name, "Addr": _raw_ip(mem.addr) if mem.addr else b"", "Port": mem.port,
                "Tags": mem.tags, "Status": mem.status, "ProtocolMin": mem.pmin,
                "ProtocolMax": mem.pmax, "ProtocolCur": mem.pcur, "DelegateMin": mem.dmin,
                "DelegateMax": mem.dmax, "DelegateCur": mem.dcur}

"""Many RaftCores on a virtual tick clock, an in-memory lossy network and in-memory storage
with a crash model; Raft's safety properties are checked after every step.

Each simulated server runs the driver loop of the Ready contract (`/tmp/raftspec/API.md`,
`agent/raft/node.py`): ready() → persist (snapshot, entries, hard state, in the WAL's
order) → send the messages → install a received snapshot, apply committed entries to a
key-value state machine, serve reads → advance(). Everything is deterministic for a seed:
no clock, no threads, and every random draw comes from a `random.Random` derived from it.

Faults: message loss, duplication, reordering (extra delay), symmetric and one-way
partitions, isolation, crashes (the core and the state machine are lost; what the
storage holds survives; a crash can land in the middle of a Ready: after a torn write,
before the messages go out), restarts from storage, full disks (a Ready that must write
waits, and the server with it, until the disk frees), and periodic snapshots with log
compaction so that lagging servers get InstallSnapshot.

Checked after every Ready and every tick (a violation raises `InvariantViolation` naming
the seed and the tick):
* election safety: at most one leader per term, ever (Raft §5.2);
* one vote per term, persisted before the vote is sent;
* log matching: an (index, term) names one entry, with one predecessor (§5.3);
* leader completeness: a new leader's log holds every entry applied anywhere (§5.4);
* state machine safety: every server applies the same entry at each index (§5.4.3),
  and each client command at most once;
* commit and applied never go backwards within one incarnation; the persisted term never
  goes backwards at all;
* acknowledgements only for durable state (a MsgAppResp for entries on disk);
* no acknowledged write lost: it stays applied at its index everywhere.
After faults heal: a leader within a bound, and every server converges to the same
applied index and state. Client histories (put / get / cas through propose and
ReadIndex) go to the linearizability checker at the end.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from heapq import heappop, heappush
from typing import Callable

import msgpack

from agent.raft.core import NotLeader, ProposalDropped, RaftConfig, RaftCore, Restored
from agent.raft.messages import (CANDIDATE, ENTRY_CONFIG, ENTRY_NORMAL, LEADER, MSG_APP_RESP,
                                 MSG_PRE_VOTE, MSG_PRE_VOTE_RESP, MSG_SNAP, MSG_VOTE_RESP,
                                 PRE_CANDIDATE, Entry, HardState, Message, Server, SnapshotMeta,
                                 decode_configuration)

from .linearizability import CheckResult, Op, check

__all__ = ["InvariantViolation", "KVStateMachine", "MemStorage", "NemesisSummary", "RaftSim",
           "SimNode", "SimTimeout", "random_nemesis_run"]


class InvariantViolation(AssertionError):
    """A Raft safety property (or the Ready contract) does not hold; names seed and tick."""


class SimTimeout(AssertionError):
    """`run_until` did not see its predicate come true in time."""


# ------------------------------------------------------------------ storage

class DiskFull(Exception):
    pass


class MemStorage:
    """What survives a crash: the hard state, the latest snapshot (meta and data) and the
    entries after it, exactly as the WAL would hand them back."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: SnapshotMeta | None = None
        self.snapshot_data: bytes = b""
        self.entries: list[Entry] = []          # contiguous, after snapshot.index
        self.full = False

    @property
    def snap_index(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def snap_term(self) -> int:
        return self.snapshot.term if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snap_index

    def term(self, index: int) -> int | None:
        """Term of the entry at `index`, None if not held (compacted or beyond the end)."""
        si = self.snap_index
        if index == si:
            return self.snap_term
        if index < si or index > self.last_index:
            return None
        return self.entries[index - si - 1].term

    def entry(self, index: int) -> Entry | None:
        si = self.snap_index
        if index <= si or index > self.last_index:
            return None
        return self.entries[index - si - 1]

    def append(self, ents: list[Entry]) -> None:
        """Ready.entries: from entries[0].index on, everything is replaced."""
        if not ents:
            return
        first = ents[0].index
        si = self.snap_index
        if first <= si:
            raise InvariantViolation(f"entries from {first} overwrite the snapshot at {si}")
        if first > self.last_index + 1:
            raise InvariantViolation(f"entries from {first} leave a gap after {self.last_index}")
        del self.entries[first - si - 1:]
        self.entries.extend(Entry(e.term, e.index, e.type, e.data) for e in ents)

    def install(self, meta: SnapshotMeta, data: bytes) -> None:
        """A snapshot received from the leader replaces the log."""
        self.snapshot = meta
        self.snapshot_data = data
        self.entries = []

    def compact(self, meta: SnapshotMeta, data: bytes) -> None:
        """The state machine saved a snapshot at meta.index: drop the entries it covers."""
        drop = meta.index - self.snap_index
        self.snapshot = meta
        self.snapshot_data = data
        del self.entries[:max(0, drop)]

    def configuration_at(self, index: int) -> tuple[Server, ...]:
        conf = self.snapshot.configuration if self.snapshot else ()
        for e in self.entries:
            if e.index > index:
                break
            if e.type == ENTRY_CONFIG:
                conf = decode_configuration(e.data)
        return conf

    def restored(self) -> Restored:
        hs = self.hard_state
        return Restored(HardState(hs.term, hs.vote, hs.commit), self.snapshot,
                        [Entry(e.term, e.index, e.type, e.data) for e in self.entries])


# ------------------------------------------------------------------ state machine

def encode_command(client: int, seq: int, kind: str, key: str, value, expected) -> bytes:
    return msgpack.packb([client, seq, kind, key, value, expected])


class KVStateMachine:
    """The replicated map. Commands: msgpack [client, seq, kind, key, value, expected]."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}
        self.applied = 0

    def apply(self, e: Entry):
        """Apply one committed entry; the command's result (cas: bool; else None)."""
        self.applied = e.index
        if e.type != ENTRY_NORMAL or not e.data:
            return None
        _client, _seq, kind, key, value, expected = msgpack.unpackb(e.data)
        if kind == "put":
            self.data[key] = value
        elif kind == "delete":
            self.data.pop(key, None)
        elif kind == "cas":
            if self.data.get(key) == expected:
                self.data[key] = value
                return True
            return False
        return None

    def snapshot(self) -> bytes:
        return msgpack.packb([self.applied, sorted(self.data.items())])

    def restore(self, data: bytes, index: int) -> None:
        applied, items = msgpack.unpackb(data) if data else (0, [])
        if applied != index:
            raise InvariantViolation(f"snapshot data at {applied} installed as index {index}")
        self.data = {k: v for k, v in items}
        self.applied = applied


# ------------------------------------------------------------------ nodes and clients

@dataclass(slots=True)
class Pending:
    """A client operation in flight at a server."""
    op: Op
    client: int
    deadline: int
    kind: str                   # "write" | "read"
    index: int = 0              # write: proposed (index, term); read: read index (0 = not yet)
    term: int = 0
    incarnation: int = 0


@dataclass
class SimNode:
    """One simulated server: its storage survives crashes, the rest does not."""
    id: str
    voter: bool
    storage: MemStorage = field(default_factory=MemStorage)
    core: RaftCore | None = None
    sm: KVStateMachine | None = None
    incarnation: int = 0
    stalled: object = None          # the Ready waiting for the disk
    crash_mid_ready: bool = False   # crash inside the next Ready that writes
    last_commit: int = 0
    last_applied: int = 0
    snap_data_in: dict = field(default_factory=dict)   # (index, term) → data of a received MsgSnap
    writes: dict = field(default_factory=dict)         # (index, term) → Pending
    reads: dict = field(default_factory=dict)          # ctx → Pending
    read_waits: list = field(default_factory=list)     # Pendings with a read index

    @property
    def up(self) -> bool:
        return self.core is not None


@dataclass(slots=True)
class Client:
    id: int
    seq: int = 0
    leader_hint: str = ""
    busy: Pending | None = None
    last_seen: dict = field(default_factory=dict)      # key → value last read


@dataclass
class NemesisSummary:
    seed: int
    ticks: int
    ops: int
    acked_writes: int
    unknown: int
    leaders: int                    # distinct (term, leader) seen
    elections: int                  # highest term reached
    snapshots_installed: int
    crashes: int
    history: CheckResult | None

    def __str__(self) -> str:
        h = self.history
        verdict = "-" if h is None else {True: "ok", False: "FAIL", None: "inconclusive"}[h.ok]
        return (f"seed {self.seed}: {self.ticks} ticks, {self.ops} ops ({self.acked_writes}"
                f" acked writes, {self.unknown} unknown), {self.leaders} leaders, term"
                f" {self.elections}, {self.snapshots_installed} snapshot installs,"
                f" {self.crashes} crashes, history {verdict}")


def _copy_hs(hs: HardState) -> HardState:
    return HardState(hs.term, hs.vote, hs.commit)


def node_id(i: int) -> str:
    return f"n{i}"


# ------------------------------------------------------------------ the simulator

class RaftSim:
    """N RaftCores (plus `learners` non-voters) on one tick clock. Node i is `nodes[i]`,
    id "n<i>"; learners come after the voters."""

    def __init__(self, n: int, seed: int, cfg: RaftConfig | None = None, *, learners: int = 0,
                 drop: float = 0.0, dup: float = 0.0, reorder: float = 0.0, max_delay: int = 3,
                 snapshot_every: int = 40, clients: int = 0, client_rate: float = 0.3,
                 client_timeout: int = 60, keys: tuple[str, ...] = ("a", "b", "c"),
                 torn_writes: bool = True) -> None:
        self.seed = seed
        self.cfg = cfg or RaftConfig()
        root = random.Random(seed)
        self._net_rng = random.Random(root.getrandbits(64))
        self._client_rng = random.Random(root.getrandbits(64))
        self._fault_rng = random.Random(root.getrandbits(64))
        self._core_seed = root.getrandbits(64)
        self.drop, self.dup, self.reorder, self.max_delay = drop, dup, reorder, max_delay
        self.snapshot_every = snapshot_every
        self.torn_writes = torn_writes
        self.now = 0
        self._tick_events = 0
        self._seq = 0
        self._queue: list[tuple[int, int, Message]] = []
        self._blocked: set[tuple[str, str]] = set()     # directed (from, to) pairs cut
        self.servers = tuple(Server(node_id(i), f"10.0.0.{i + 1}:8300", i < n)
                             for i in range(n + learners))
        self.nodes = [SimNode(s.id, s.voter) for s in self.servers]
        self._by_id = {nd.id: nd for nd in self.nodes}
        # invariant bookkeeping
        self.leaders: dict[int, str] = {}               # term → leader
        self._entries: dict[tuple[int, int], tuple] = {}  # (index, term) → (type, data, prev term)
        self.applied_log: dict[int, tuple[int, int, bytes]] = {}  # index → (term, type, data)
        self.max_applied = 0
        self._applied_cmds: dict[tuple[int, int], int] = {}     # (client, seq) → index
        self.acked: dict[int, tuple[int, int, bytes]] = {}      # acked writes: index → entry
        self.stats = {"sent": 0, "dropped": 0, "duplicated": 0, "snapshots_installed": 0,
                      "snapshots_taken": 0, "crashes": 0, "torn": 0, "stalls": 0}
        # clients
        self.keys = keys
        self.client_rate = client_rate
        self.client_timeout = client_timeout
        self.clients = [Client(c) for c in range(clients)]
        self.clients_active = clients > 0
        self.history: list[Op] = []
        self._value_seq = 0
        for nd in self.nodes:
            self._start(nd, None)
            nd.core.bootstrap(list(self.servers))
        self._drain_all()

    # ------------------------------------------------------------------ helpers

    def fail(self, what: str) -> None:
        raise InvariantViolation(f"seed {self.seed}, tick {self.now}: {what}")

    def node(self, i: int | str) -> SimNode:
        return self._by_id[i] if isinstance(i, str) else self.nodes[i]

    def _start(self, nd: SimNode, restored: Restored | None) -> None:
        nd.incarnation += 1
        rng = random.Random(self._core_seed * 1_000_003 + hash_id(nd.id) * 1009 + nd.incarnation)
        nd.core = RaftCore(self.cfg, nd.id, rng, restored)
        nd.sm = KVStateMachine()
        if nd.storage.snapshot is not None:
            nd.sm.restore(nd.storage.snapshot_data, nd.storage.snapshot.index)
        nd.last_commit = nd.storage.hard_state.commit if restored else 0
        nd.last_applied = nd.storage.snap_index
        nd.stalled = None
        nd.crash_mid_ready = False
        nd.snap_data_in = {}

    def leader(self) -> SimNode | None:
        """The live leader with the highest term (None if no live node is leader)."""
        best = None
        for nd in self.nodes:
            if nd.up and nd.core.role == LEADER and (best is None or nd.core.term > best.core.term):
                best = nd
        return best

    def live(self) -> list[SimNode]:
        return [nd for nd in self.nodes if nd.up]

    # ------------------------------------------------------------------ faults

    def partition(self, *groups) -> None:
        """Cut every link between different groups (lists of node indices or ids), both
        ways. Nodes in no group keep their links."""
        if len(groups) == 1 and all(isinstance(g, (list, tuple)) for g in groups[0]):
            groups = tuple(groups[0])           # partition([[0, 1], [2, 3, 4]]) works too
        groups = [[self.node(x).id for x in g] for g in groups]
        for a, g in enumerate(groups):
            for b, h in enumerate(groups):
                if a != b:
                    for x in g:
                        for y in h:
                            self._blocked.add((x, y))

    def cut(self, frm, to) -> None:
        """One-way: messages from `frm` to `to` are lost."""
        self._blocked.add((self.node(frm).id, self.node(to).id))

    def isolate(self, i) -> None:
        me = self.node(i).id
        for nd in self.nodes:
            if nd.id != me:
                self._blocked.add((me, nd.id))
                self._blocked.add((nd.id, me))

    def heal(self) -> None:
        """Restore every link (crashed nodes stay down, full disks stay full)."""
        self._blocked.clear()

    def crash(self, i, *, mid_ready: bool = False) -> None:
        """Stop node i now, or (mid_ready) inside its next Ready that writes: after a
        possibly torn write, before its messages are sent."""
        nd = self.node(i)
        if not nd.up:
            return
        if mid_ready:
            nd.crash_mid_ready = True
            return
        self._crash_now(nd)

    def _crash_now(self, nd: SimNode) -> None:
        self.stats["crashes"] += 1
        nd.core = None
        nd.sm = None
        nd.stalled = None
        for p in list(nd.writes.values()) + list(nd.reads.values()) + nd.read_waits:
            self._client_done(p, unknown=True)
        nd.writes.clear()
        nd.reads.clear()
        nd.read_waits.clear()

    def restart(self, i) -> None:
        nd = self.node(i)
        if nd.up:
            return
        self._start(nd, nd.storage.restored())
        self._check_node(nd)
        self._drain(nd)

    def disk_full(self, i, on: bool = True) -> None:
        """While full, a Ready that has anything to write waits (and its server with it)."""
        nd = self.node(i)
        nd.storage.full = on
        if not on and nd.up and nd.stalled is not None:
            self._drain(nd)

    # ------------------------------------------------------------------ network

    def _send(self, nd: SimNode, msg: Message) -> None:
        if msg.type == MSG_SNAP:
            st = nd.storage
            if msg.snapshot is None or st.snapshot is None or st.snapshot.index != msg.snapshot.index:
                # the driver no longer holds that snapshot: tell the core it failed
                nd.core.report_snapshot(msg.to, False)
                return
            msg.snapshot_data = st.snapshot_data
        self.stats["sent"] += 1
        rng = self._net_rng
        if self.drop and rng.random() < self.drop:
            self.stats["dropped"] += 1
            if msg.type == MSG_SNAP:
                nd.core.report_snapshot(msg.to, False)
            return
        copies = 2 if self.dup and rng.random() < self.dup else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for _ in range(copies):
            delay = 1
            if self.reorder and rng.random() < self.reorder:
                delay += rng.randint(1, self.max_delay)
            self._seq += 1
            heappush(self._queue, (self.now + delay, self._seq, msg))
        if msg.type == MSG_SNAP:
            nd.core.report_snapshot(msg.to, True)   # handed to the transport

    def _deliver_due(self) -> None:
        q = self._queue
        while q and q[0][0] <= self.now:
            _, _, msg = heappop(q)
            to = self._by_id.get(msg.to)
            if to is None or not to.up or to.stalled is not None:
                continue
            if (msg.frm, msg.to) in self._blocked:
                self.stats["dropped"] += 1
                sender = self._by_id.get(msg.frm)
                if sender is not None and sender.up and sender.stalled is None:
                    # the transport notices the broken connection now and then
                    if self._net_rng.random() < 0.2:
                        sender.core.report_unreachable(msg.to)
                        self._drain(sender)
                continue
            if msg.type == MSG_SNAP and msg.snapshot is not None:
                to.snap_data_in[(msg.snapshot.index, msg.snapshot.term)] = msg.snapshot_data
            to.core.step(_clone(msg))
            self._drain(to)

    # ------------------------------------------------------------------ the Ready loop

    def _drain_all(self) -> None:
        for nd in self.nodes:
            if nd.up:
                self._drain(nd)

    def _drain(self, nd: SimNode) -> None:
        while nd.up:
            if nd.stalled is not None:
                rd = nd.stalled
                if nd.storage.full:
                    return
                nd.stalled = None
            else:
                if not nd.core.has_ready():
                    return
                rd = nd.core.ready()
            writes = rd.hard_state is not None or bool(rd.entries) or rd.snapshot is not None
            if writes and nd.storage.full:
                nd.stalled = rd
                self.stats["stalls"] += 1
                return
            if writes and nd.crash_mid_ready:
                self._persist(nd, rd, torn=self.torn_writes)
                self._crash_now(nd)
                return
            self._persist(nd, rd)
            self._observe_leader(nd, rd)
            for msg in rd.messages:
                self._check_outgoing(nd, msg)
                self._send(nd, msg)
            if rd.snapshot is not None:
                self._install(nd, rd.snapshot)
            for e in rd.committed:
                self._apply(nd, e)
            for rs in rd.read_states:
                p = nd.reads.pop(rs.context, None)
                if p is not None:
                    p.index = rs.index
                    nd.read_waits.append(p)
            for ctx in rd.failed_reads:
                p = nd.reads.pop(ctx, None)
                if p is not None:
                    self._client_done(p, failed=True)
            nd.core.advance(rd)
            self._serve_reads(nd)
            self._check_node(nd)
            self._maybe_snapshot(nd)

    def _persist(self, nd: SimNode, rd, torn: bool = False) -> None:
        """Write in the WAL's order: snapshot, entries, hard state. Torn: only a prefix of
        those records reaches the disk."""
        st = nd.storage
        records: list = []
        if rd.snapshot is not None:
            records.append(("snap", rd.snapshot))
        records.extend(("ent", e) for e in rd.entries)
        if rd.hard_state is not None:
            records.append(("hs", rd.hard_state))
        if torn:
            self.stats["torn"] += 1
            records = records[:self._fault_rng.randint(0, len(records))]
        ents: list[Entry] = []
        for kind, rec in records:
            if kind == "snap":
                data = nd.snap_data_in.get((rec.index, rec.term))
                if data is None:
                    self.fail(f"{nd.id}: Ready.snapshot {rec.index}/{rec.term} was never received")
                st.install(rec, data)
            elif kind == "ent":
                ents.append(rec)
            else:
                if ents:
                    st.append(ents)
                    self._check_appended(nd, ents)
                    ents = []
                self._check_hard_state(nd, rec)
                st.hard_state = _copy_hs(rec)
        if ents:
            st.append(ents)
            self._check_appended(nd, ents)

    def _install(self, nd: SimNode, meta: SnapshotMeta) -> None:
        self.stats["snapshots_installed"] += 1
        nd.sm.restore(nd.storage.snapshot_data, meta.index)
        # the snapshot covers entries applied elsewhere: they must agree with it
        t = self.applied_log.get(meta.index)
        if t is not None and t[0] != meta.term:
            self.fail(f"{nd.id} installed snapshot {meta.index}/{meta.term} but term {t[0]}"
                      f" was applied at {meta.index}")
        nd.last_applied = max(nd.last_applied, meta.index)
        # writes waiting here for an index the snapshot covers: outcome unknown to us
        for key in [k for k in nd.writes if k[0] <= meta.index]:
            self._client_done(nd.writes.pop(key), unknown=True)

    def _apply(self, nd: SimNode, e: Entry) -> None:
        sm = nd.sm
        if e.index <= sm.applied:
            # e.g. after a restart: already in the restored snapshot; must still agree
            self._check_applied_entry(nd, e)
            return
        if e.index != sm.applied + 1:
            self.fail(f"{nd.id} applies {e.index} after {sm.applied}")
        if nd.storage.term(e.index) != e.term and e.index > nd.storage.snap_index:
            self.fail(f"{nd.id} applies {e.index}/{e.term} which is not on its disk"
                      f" (disk term {nd.storage.term(e.index)})")
        self._check_applied_entry(nd, e)
        result = sm.apply(e)
        if e.type == ENTRY_NORMAL and e.data:
            cmd = msgpack.unpackb(e.data)
            ck = (cmd[0], cmd[1])
            prev = self._applied_cmds.setdefault(ck, e.index)
            if prev != e.index:
                self.fail(f"command {ck} applied at {prev} and again at {e.index}")
        p = nd.writes.pop((e.index, e.term), None)
        if p is not None:
            if self.clients[p.client].busy is p:
                self.acked[e.index] = (e.term, e.type, e.data)
            self._client_done(p, output=result if p.op.kind == "cas" else None)
        # proposals at this index with another term lost their slot: they never happen
        for key in [k for k in nd.writes if k[0] == e.index]:
            self._client_done(nd.writes.pop(key), failed=True)

    def _serve_reads(self, nd: SimNode) -> None:
        if not nd.read_waits:
            return
        keep = []
        for p in nd.read_waits:
            if nd.sm.applied >= p.index:
                value = nd.sm.data.get(p.op.key)
                self.clients[p.client].last_seen[p.op.key] = value
                self._client_done(p, output=value)
            else:
                keep.append(p)
        nd.read_waits = keep

    def _maybe_snapshot(self, nd: SimNode) -> None:
        if not self.snapshot_every or nd.stalled is not None or not nd.up:
            return
        sm, st = nd.sm, nd.storage
        if sm.applied - st.snap_index < self.snapshot_every or nd.core.applied < sm.applied:
            return
        index = sm.applied
        term = st.term(index)
        if term is None:
            return
        meta = SnapshotMeta(index, term, st.configuration_at(index))
        st.compact(meta, sm.snapshot())
        nd.core.compact(index)
        if hasattr(nd.core, "snapshot_meta"):
            theirs = nd.core.snapshot_meta()
            if theirs != meta:
                self.fail(f"{nd.id}: after compact({index}) the core's snapshot point is {theirs},"
                          f" the disk's {meta}")
        self.stats["snapshots_taken"] += 1

    # ------------------------------------------------------------------ invariants

    def _check_hard_state(self, nd: SimNode, hs: HardState) -> None:
        old = nd.storage.hard_state
        if hs.term < old.term:
            self.fail(f"{nd.id}: persisted term goes back {old.term} → {hs.term}")
        if hs.term == old.term and old.vote and hs.vote != old.vote:
            self.fail(f"{nd.id}: second vote in term {hs.term}: {old.vote} then {hs.vote!r}")
        if hs.commit < old.commit:
            self.fail(f"{nd.id}: persisted commit goes back {old.commit} → {hs.commit}")

    def _check_appended(self, nd: SimNode, ents: list[Entry]) -> None:
        st = nd.storage
        for e in ents:
            prev = st.term(e.index - 1)
            rec = (e.type, e.data, prev)
            have = self._entries.setdefault((e.index, e.term), rec)
            if have != rec:
                what = "predecessor term" if have[:2] == rec[:2] else "contents"
                self.fail(f"log matching: {nd.id} holds entry {e.index}/{e.term} with other"
                          f" {what} than seen before ({have[2]} vs {prev})")
            if e.term > st.hard_state.term and e.term > (nd.core.term if nd.up else 0):
                self.fail(f"{nd.id}: entry {e.index} of term {e.term} beyond its term")

    def _check_applied_entry(self, nd: SimNode, e: Entry) -> None:
        rec = (e.term, e.type, e.data)
        have = self.applied_log.setdefault(e.index, rec)
        if e.index > self.max_applied:
            if e.index != self.max_applied + 1:
                self.fail(f"{nd.id} applies {e.index} with nothing applied at {self.max_applied + 1}")
            self.max_applied = e.index
        if have != rec:
            self.fail(f"state machine safety: {nd.id} applies {e.index}/{e.term}, another"
                      f" server applied {e.index}/{have[0]}")

    def _observe_leader(self, nd: SimNode, rd) -> None:
        if nd.core.role == LEADER or (rd.soft_state is not None and rd.soft_state.role == LEADER):
            self._record_leader(nd)

    def _record_leader(self, nd: SimNode) -> None:
        term = nd.core.term
        had = self.leaders.get(term)
        if had == nd.id:
            return
        if had is not None:
            self.fail(f"election safety: {had} and {nd.id} both leaders of term {term}")
        if not nd.voter:
            self.fail(f"learner {nd.id} became leader of term {term}")
        self.leaders[term] = nd.id
        # leader completeness: everything applied anywhere is in the new leader's log
        st = nd.storage
        for index in range(st.snap_index + 1, self.max_applied + 1):
            t = self.applied_log[index][0]
            mine = st.entry(index)
            if mine is None or mine.term != t:
                self.fail(f"leader completeness: {nd.id}, leader of term {term}, lacks applied"
                          f" entry {index}/{t} (has {None if mine is None else mine.term};"
                          f" disk last index {st.last_index})")

    def _check_outgoing(self, nd: SimNode, msg: Message) -> None:
        st = nd.storage
        if msg.frm != nd.id:
            self.fail(f"{nd.id} sends a message from {msg.frm!r}")
        if msg.type == MSG_VOTE_RESP and not msg.reject:
            hs = st.hard_state
            if hs.term != msg.term or hs.vote != msg.to:
                self.fail(f"{nd.id} grants a vote to {msg.to} in term {msg.term} before persisting"
                          f" it (disk: term {hs.term}, vote {hs.vote!r})")
        elif msg.type == MSG_APP_RESP and not msg.reject and msg.index > st.snap_index:
            if msg.index > st.last_index:
                self.fail(f"{nd.id} acks index {msg.index} with only {st.last_index} on disk")
        if msg.term > st.hard_state.term and msg.type not in _PRE_VOTE_TYPES:
            self.fail(f"{nd.id} sends term {msg.term} with term {st.hard_state.term} on disk"
                      f" ({msg})")

    def _check_node(self, nd: SimNode) -> None:
        core = nd.core
        if core is None:
            return
        if core.commit < nd.last_commit:
            self.fail(f"{nd.id}: commit goes back {nd.last_commit} → {core.commit}")
        if core.applied < nd.last_applied:
            self.fail(f"{nd.id}: applied goes back {nd.last_applied} → {core.applied}")
        nd.last_commit, nd.last_applied = core.commit, core.applied
        if core.role == LEADER:
            self._record_leader(nd)
        elif not nd.voter and core.role in (CANDIDATE, PRE_CANDIDATE):
            self.fail(f"learner {nd.id} campaigns")

    def check_acked(self) -> None:
        """No acknowledged write lost: each is applied at its index on every server that got
        that far (an entry applied elsewhere is in the applied log; disagreement fails)."""
        for index, rec in self.acked.items():
            if self.applied_log.get(index) != rec:
                self.fail(f"acknowledged write at {index} lost")

    # ------------------------------------------------------------------ clients

    def _client_done(self, p: Pending, *, unknown: bool = False, failed: bool = False,
                     output=None) -> None:
        c = self.clients[p.client]
        if c.busy is not p:
            return          # already given up (timed out) or finished
        c.busy = None
        p.op.output = output
        if failed:
            return          # it did not happen: not part of the history
        if unknown:
            if p.op.kind == "get":
                return      # an unanswered read constrains nothing
            p.op.ret = None
        else:
            p.op.ret = self._time()
        self.history.append(p.op)

    def _time(self) -> float:
        """Client-visible time: the tick plus the order of events within it."""
        self._tick_events += 1
        return self.now + self._tick_events * 1e-6

    def _clients_step(self) -> None:
        rng = self._client_rng
        for c in self.clients:
            p = c.busy
            if p is not None:
                if self.now >= p.deadline:
                    c.busy = None
                    if p.op.kind != "get":
                        p.op.ret = None
                        p.op.output = None
                        self.history.append(p.op)
                continue
            if not self.clients_active or rng.random() >= self.client_rate:
                continue
            ups = [nd for nd in self.nodes if nd.up and nd.stalled is None]
            if not ups:
                continue
            nd = self._by_id.get(c.leader_hint)
            if nd is None or not nd.up or nd.stalled is not None or rng.random() < 0.1:
                nd = rng.choice(ups)
            key = rng.choice(self.keys)
            kind = rng.choices(("put", "get", "cas", "delete"), (4, 4, 2, 1))[0]
            c.seq += 1
            op = Op(c.id, kind, key, call=self._time())
            if kind == "put" or kind == "cas":
                self._value_seq += 1
                op.value = f"{c.id}.{self._value_seq}"
            if kind == "cas":
                seen = c.last_seen.get(key)
                op.expected = seen if rng.random() < 0.8 else None
            p = Pending(op, c.id, self.now + self.client_timeout,
                        "read" if kind == "get" else "write", incarnation=nd.incarnation)
            c.busy = p
            core = nd.core
            try:
                if kind == "get":
                    ctx = f"{c.id}:{c.seq}".encode()   # unique per read
                    nd.reads[ctx] = p
                    core.read_index(ctx)
                else:
                    data = encode_command(c.id, c.seq, kind, key, op.value, op.expected)
                    p.index, p.term = core.propose(data)
                    nd.writes[(p.index, p.term)] = p
            except NotLeader as exc:
                c.leader_hint = exc.leader
                nd.reads.pop(f"{c.id}:{c.seq}".encode(), None)
                self._client_done(p, failed=True)
                continue
            except ProposalDropped:
                self._client_done(p, failed=True)
                continue
            c.leader_hint = nd.id if core.role == LEADER else core.leader
            self._drain(nd)

    # ------------------------------------------------------------------ running

    def step(self) -> None:
        """One tick: deliver due messages, tick every live server, let clients act."""
        self.now += 1
        self._tick_events = 0
        self._deliver_due()
        for nd in self.nodes:
            if nd.up and nd.stalled is None:
                nd.core.tick()
                self._drain(nd)
        self._clients_step()

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.step()

    def run_until(self, pred: Callable[[], bool], within: int) -> int:
        """Step until pred() holds; the ticks it took. SimTimeout (with the seed) if not
        within `within` ticks."""
        start = self.now
        while not pred():
            if self.now - start >= within:
                raise SimTimeout(f"seed {self.seed}: condition not met within {within} ticks"
                                 f" (tick {self.now})\n{self.describe()}")
            self.step()
        return self.now - start

    def describe(self) -> str:
        """One line per server: role, term, leader, commit/applied, disk, faults."""
        lines = []
        for nd in self.nodes:
            st = nd.storage
            disk = (f"disk term {st.hard_state.term} vote {st.hard_state.vote!r} commit"
                    f" {st.hard_state.commit} snap {st.snap_index} last {st.last_index}"
                    f"{' FULL' if st.full else ''}")
            if not nd.up:
                lines.append(f"  {nd.id}: DOWN; {disk}")
                continue
            c = nd.core
            lines.append(f"  {nd.id}: {c.role} term {c.term} leader {c.leader!r} commit {c.commit}"
                         f" applied {c.applied} sm {nd.sm.applied} last {c.last_index}; {disk};"
                         f" writes {len(nd.writes)} reads {len(nd.reads)}+{len(nd.read_waits)}"
                         f"{' STALLED' if nd.stalled is not None else ''}")
        busy = [c.id for c in self.clients if c.busy is not None]
        blocked = sorted(self._blocked)
        lines.append(f"  clients busy {busy}; links cut {blocked[:12]}")
        return "\n".join(lines)

    def election_bound(self) -> int:
        """Ticks within which a healed cluster has a leader: a follower waits less than
        2·election_tick, then PreVote and vote take a few round trips; leave room for split
        votes and for check_quorum stickiness to expire."""
        return 10 * self.cfg.election_tick + 8 * (self.max_delay + 1)

    def has_stable_leader(self) -> bool:
        """A leader that every live voter follows, at its term."""
        ld = self.leader()
        if ld is None:
            return False
        return all(nd.core.leader == ld.id and nd.core.term == ld.core.term
                   for nd in self.nodes if nd.up)

    def converged(self) -> bool:
        """Every live server applied the same index, equal to the leader's commit.
        (A proposal of a deposed leader beyond that index resolves when the index is
        filled; its client has given up by then: settle() waits for the clients.)"""
        ld = self.leader()
        if ld is None:
            return False
        target = ld.core.commit
        for nd in self.nodes:
            if not nd.up or nd.stalled is not None:
                return False
            if nd.sm.applied != target or nd.core.commit != target:
                return False
        return True

    def check_converged_state(self) -> None:
        ups = [nd for nd in self.nodes if nd.up]
        ref = ups[0].sm.data
        for nd in ups[1:]:
            if nd.sm.data != ref:
                self.fail(f"state of {nd.id} differs from {ups[0].id} at applied {nd.sm.applied}")
        self.check_acked()

    def settle(self) -> int:
        """Stop new client ops, heal the network, free disks, restart crashed nodes; then a
        leader within election_bound() and convergence. Ticks taken."""
        self.clients_active = False
        self.heal()
        for nd in self.nodes:
            if nd.storage.full:
                self.disk_full(nd.id, False)
        for nd in self.nodes:
            nd.crash_mid_ready = False
            if not nd.up:
                self.restart(nd.id)
        took = self.run_until(self.has_stable_leader, self.election_bound())
        # clients in flight time out at the latest after client_timeout
        took += self.run_until(lambda: self.converged() and not any(c.busy for c in self.clients),
                               self.client_timeout + self.election_bound())
        self.check_converged_state()
        return took

    def check_history(self, budget: int = 2_000_000) -> CheckResult:
        return check(self.history, budget=budget)


_PRE_VOTE_TYPES = (MSG_PRE_VOTE, MSG_PRE_VOTE_RESP)


def hash_id(s: str) -> int:
    """A stable (not PYTHONHASHSEED-dependent) number for a node id."""
    h = 0
    for ch in s.encode():
        h = (h * 131 + ch) & 0xFFFFFFFF
    return h


def _clone(msg: Message) -> Message:
    """The receiver gets its own copy (as after a trip through the codec): a core that
    mutates what it received must not change what a duplicate delivers."""
    return Message(msg.type, msg.to, msg.frm, msg.term, msg.log_term, msg.index, msg.commit,
                   msg.reject, msg.reject_hint, msg.context,
                   [Entry(e.term, e.index, e.type, e.data) for e in msg.entries],
                   msg.snapshot, msg.snapshot_data)


# ------------------------------------------------------------------ nemesis

def random_nemesis_run(seed: int, ticks: int = 2000, *, n: int = 3, learners: int = 0,
                       cfg: RaftConfig | None = None, clients: int = 6,
                       drop: float = 0.02, dup: float = 0.02, reorder: float = 0.1,
                       fault_every: int = 60, check_budget: int = 2_000_000) -> NemesisSummary:
    """Random faults and clients for `ticks` ticks, then heal and settle; returns what
    happened. Raises InvariantViolation / SimTimeout (naming the seed) on failure, and
    AssertionError if the client history is not linearizable."""
    sim = RaftSim(n, seed, cfg, learners=learners, drop=drop, dup=dup, reorder=reorder,
                  clients=clients)
    rng = random.Random(seed ^ 0x5EED)
    total = n + learners
    faults = ("partition", "isolate", "oneway", "crash", "crash_mid", "restart_all",
              "disk_full", "heal", "heal", "heal", "heal_check")
    end = sim.now + ticks
    while sim.now < end:
        sim.run(min(rng.randint(fault_every // 2, fault_every * 3 // 2), end - sim.now))
        f = rng.choice(faults)
        if f == "partition":
            ids = list(range(total))
            rng.shuffle(ids)
            k = rng.randint(1, total - 1)
            sim.heal()
            sim.partition(ids[:k], ids[k:])
        elif f == "isolate":
            ld = sim.leader()
            sim.isolate(ld.id if ld is not None and rng.random() < 0.6 else rng.randrange(total))
        elif f == "oneway":
            a, b = rng.sample(range(total), 2)
            ld = sim.leader()
            if ld is not None and rng.random() < 0.5:
                a = ld.id
            sim.cut(a, b)
        elif f in ("crash", "crash_mid"):
            ld = sim.leader()
            victim = ld.id if ld is not None and rng.random() < 0.5 else rng.randrange(total)
            sim.crash(victim, mid_ready=(f == "crash_mid"))
        elif f == "restart_all":
            for nd in sim.nodes:
                sim.crash(nd.id)
            for nd in sim.nodes:
                sim.restart(nd.id)
        elif f == "disk_full":
            sim.disk_full(rng.randrange(total), True)
        elif f == "heal_check":
            # everything repaired mid-run: a leader must follow within the bound
            sim.heal()
            for nd in sim.nodes:
                nd.crash_mid_ready = False
                if nd.storage.full:
                    sim.disk_full(nd.id, False)
                if not nd.up:
                    sim.restart(nd.id)
            sim.run_until(sim.has_stable_leader, sim.election_bound())
        else:
            sim.heal()
            for nd in sim.nodes:
                if not nd.up and rng.random() < 0.8:
                    sim.restart(nd.id)
                if nd.storage.full and rng.random() < 0.8:
                    sim.disk_full(nd.id, False)
        # keep a quorum able to come back: at most a minority down at once
        down = [nd for nd in sim.nodes[:n] if not nd.up]
        while len(down) > (n - 1) // 2:
            sim.restart(down.pop(0).id)
    sim.settle()
    result = sim.check_history(check_budget)
    if result.ok is False:
        raise AssertionError(f"seed {seed}: history not linearizable: {result.detail}")
    return NemesisSummary(
        seed=seed, ticks=sim.now, ops=len(sim.history), acked_writes=len(sim.acked),
        unknown=sum(1 for op in sim.history if op.ret is None),
        leaders=len(sim.leaders), elections=max(sim.leaders, default=0),
        snapshots_installed=sim.stats["snapshots_installed"], crashes=sim.stats["crashes"],
        history=result)

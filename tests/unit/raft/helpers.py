"""A tiny deterministic network of RaftCores for unit tests (the full simulator with
invariants and faults lives in agent/sim/raft.py). "Persisting" a Ready = keeping its hard
state and entries in a dict, then advance()."""
from __future__ import annotations

import random
from collections import deque

from agent.raft.core import RaftConfig, RaftCore, Ready, Restored
from agent.raft.messages import (
    ENTRY_NORMAL, LEADER, MSG_APP, MSG_SNAP, Entry, HardState, Message, Server, SnapshotMeta,
)

CFG = RaftConfig(election_tick=10, heartbeat_tick=1)


def servers(ids, learners=()):
    return [Server(i, f"{i}:8300", i not in learners) for i in ids]


class Disk:
    """What a node persisted: hard state, snapshot, entries after it."""

    def __init__(self) -> None:
        self.hs = HardState()
        self.snapshot: SnapshotMeta | None = None
        self.entries = []

    def save(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = [e for e in self.entries if e.index > rd.snapshot.index]
        if rd.entries:
            first = rd.entries[0].index
            self.entries = [e for e in self.entries if e.index < first] + list(rd.entries)
        if rd.hard_state is not None:
            self.hs = HardState(rd.hard_state.term, rd.hard_state.vote, rd.hard_state.commit)

    def restored(self) -> Restored:
        hs = HardState(self.hs.term, self.hs.vote, self.hs.commit)
        return Restored(hs, self.snapshot, list(self.entries))


class Net:
    def __init__(self, ids=("a", "b", "c"), cfg: RaftConfig = CFG, learners=(), seed=1,
                 bootstrap=True) -> None:
        self.cfg = cfg
        self.seed = seed
        self.nodes: dict[str, RaftCore] = {}
        self.disks: dict[str, Disk] = {}
        self.applied: dict[str, list] = {}      # (index, term, data) applied per node
        self.reads: dict[str, list] = {}
        self.failed: dict[str, list] = {}
        self.queue: deque[Message] = deque()
        self.sent: list[Message] = []           # every message handed to the network
        self.cut: set[tuple[str, str]] = set()  # (frm, to) pairs that lose messages
        self.drop_if = None                     # optional predicate(msg) -> bool
        self.report_snapshots = True            # report_snapshot(to, True) after a MsgSnap
        self.servers = servers(ids, learners)
        for i in ids:
            self.add(i)
            if bootstrap:
                self.nodes[i].bootstrap(self.servers)

    def add(self, nid: str, restored: Restored | None = None) -> RaftCore:
        rng = random.Random(f"{self.seed}/{nid}")
        self.nodes[nid] = RaftCore(self.cfg, nid, rng, restored)
        self.disks.setdefault(nid, Disk())
        self.applied.setdefault(nid, [])
        self.reads.setdefault(nid, [])
        self.failed.setdefault(nid, [])
        return self.nodes[nid]

    def restart(self, nid: str) -> RaftCore:
        """Crash and restart from what was persisted (the state machine restarts from the
        snapshot, so `applied` is truncated to it)."""
        disk = self.disks[nid]
        snap = disk.snapshot.index if disk.snapshot else 0
        self.applied[nid] = [a for a in self.applied[nid] if a[0] <= snap]
        self.queue = deque(m for m in self.queue if m.to != nid)
        return self.add(nid, disk.restored())

    # ------------------------------------------------------------------ driver
    def persist(self, nid: str) -> Ready:
        n = self.nodes[nid]
        rd = n.ready()
        committed_before_stable = [e.index for e in rd.committed if e.index > n._log.stable]
        assert not committed_before_stable, "committed entries must already be persisted"
        self.disks[nid].save(rd)
        if rd.snapshot is not None:
            self.applied[nid] = [a for a in self.applied[nid] if a[0] <= rd.snapshot.index]
            self.applied[nid].append((rd.snapshot.index, rd.snapshot.term, "snapshot"))
        for e in rd.committed:
            data = e.data if e.type == ENTRY_NORMAL else ("config", e.data)
            self.applied[nid].append((e.index, e.term, data))
        self.reads[nid].extend(rd.read_states)
        self.failed[nid].extend(rd.failed_reads)
        for m in rd.messages:
            self.sent.append(m)
            self.queue.append(m)
        n.advance(rd)
        if self.report_snapshots:       # as a driver does once it has sent the snapshot
            for m in rd.messages:
                if m.type == MSG_SNAP:
                    n.report_snapshot(m.to, True)
        return rd

    def deliver(self, m: Message) -> None:
        if (m.frm, m.to) in self.cut or m.to not in self.nodes:
            return
        if self.drop_if is not None and self.drop_if(m):
            return
        self.nodes[m.to].step(m)

    def stabilize(self, limit: int = 10000, strict: bool = True) -> None:
        """Persist and deliver until nothing moves (strict: or fail after `limit` rounds)."""
        for _ in range(limit):
            moved = False
            for nid, n in self.nodes.items():
                if n.has_ready():
                    self.persist(nid)
                    moved = True
            while self.queue:
                self.deliver(self.queue.popleft())
                moved = True
            if not moved:
                return
        if strict:
            raise AssertionError("network did not stabilize")

    def tick(self, nid: str, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[nid].tick()

    def tick_all(self, n: int = 1, stabilize: bool = True) -> None:
        for _ in range(n):
            for node in self.nodes.values():
                node.tick()
            if stabilize:
                self.stabilize()

    def elect(self, nid: str) -> RaftCore:
        self.nodes[nid].campaign()
        self.stabilize()
        assert self.nodes[nid].role == LEADER, self.nodes[nid].status()
        return self.nodes[nid]

    def isolate(self, nid: str) -> None:
        for other in self.nodes:
            if other != nid:
                self.cut.add((nid, other))
                self.cut.add((other, nid))

    def heal(self) -> None:
        self.cut.clear()
        self.drop_if = None

    def leaders(self) -> list[str]:
        return [i for i, n in self.nodes.items() if n.role == LEADER]

    def data(self, nid: str) -> list[bytes]:
        """The normal, non-empty commands applied on nid."""
        return [d for _, _, d in self.applied[nid] if isinstance(d, bytes) and d]


def drain(node: RaftCore) -> list[Message]:
    """Take a node's pending messages (persisting nothing but the contract's order)."""
    rd = node.ready()
    node.advance(rd)
    return rd.messages


def entries(*terms, start=1):
    """Entries with the given terms at consecutive indexes from `start`."""
    return [Entry(t, start + k, ENTRY_NORMAL, b"") for k, t in enumerate(terms)]


def make(nid, ids=("a", "b", "c"), terms=(), term=0, vote="", commit=0, cfg=CFG, learners=(),
         seed=7) -> RaftCore:
    """A node restarted with a log of the given entry terms and a configuration held in a
    snapshot at index 0 (so the log holds only the entries under test)."""
    term = max(term, terms[-1] if terms else 0)
    restored = Restored(HardState(term, vote, commit),
                        SnapshotMeta(0, 0, tuple(servers(ids, learners))), entries(*terms))
    return RaftCore(cfg, nid, random.Random(seed), restored)


def app(frm, to, term, index, log_term, ents=(), commit=0):
    return Message(MSG_APP, to, frm, term, log_term, index, commit, entries=list(ents))

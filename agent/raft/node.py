"""The Raft driver: runs a `RaftCore` on the agent's loop.

It ticks the core every `tick_interval` (100 ms × raft_multiplier), and after every input
handles one `Ready` at a time in etcd's order: persist the hard state and new entries to the
write-ahead log and fdatasync them (one sync for everything that arrived in the same loop
turn: group commit), then send the messages, apply committed entries to the state machine,
serve reads, and `advance()`. Proposals resolve when their (index, term) is applied; an
entry of another term applied at that index means the write was lost with its leader.

This is the replicated-state interface the state store sits on: `apply(data)`,
`consistent_read()`, `barrier()`, leadership and configuration views, and membership
changes (`add_server`, `remove_server`, `transfer_leader`).
"""
from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .. import log
from ..errors import IsthmusError
from .core import (ConfChangeRejected, NotLeader, ProposalDropped, RaftConfig, RaftCore,
                   Restored)
from .messages import (ENTRY_NORMAL, LEADER, MSG_APP, MSG_HEARTBEAT, MSG_SNAP, Entry, Message,
                       Server, SnapshotMeta)
from .transport import RaftTransport
from .wal import WAL, WALError

_log = log.get("raft")
STORAGE_RETRY = 1.0             # seconds before retrying a write the disk refused
_PARALLEL = frozenset((MSG_APP, MSG_HEARTBEAT, MSG_SNAP))   # a leader's: sent before its sync


class StateMachine(Protocol):
    """What Raft replicates into (Consul's FSM)."""

    def apply(self, index: int, data: bytes) -> Any: ...   # deterministic; its result goes to the proposer
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class RaftError(IsthmusError):
    """A replicated operation that did not happen (or may not have)."""


class NoLeader(RaftError):
    def __init__(self) -> None:
        super().__init__("No cluster leader")


class NotLeaderError(RaftError):
    """This server is not the leader; `leader` is the leader's RPC address ("" unknown)."""

    def __init__(self, leader: str) -> None:
        super().__init__("node is not the leader")
        self.leader = leader


class LeadershipLost(RaftError):
    def __init__(self) -> None:
        super().__init__("leadership lost while committing log")


class RaftTimeout(RaftError):
    def __init__(self, what: str) -> None:
        super().__init__(f"timed out enqueuing operation: {what}")


@dataclass(frozen=True, slots=True)
class RaftOptions:
    tick_interval: float = 0.1          # seconds per tick: 100 ms × raft_multiplier
    fsync: bool = True
    snapshot_threshold: int = 16384     # Consul's raft_snapshot_threshold: entries between snapshots
    trailing_logs: int = 10240          # Consul's raft_trailing_logs: entries kept after a snapshot
    apply_timeout: float = 30.0         # a proposal not applied by then fails (outcome unknown)


class RaftNode:
    """One server's Raft: core + WAL + transport + state machine."""

    def __init__(self, *, id: str, address: str, fsm: StateMachine, transport: RaftTransport,
                 data_dir: str | None, options: RaftOptions | None = None,
                 config: RaftConfig | None = None, rng: random.Random | None = None) -> None:
        self.id = id
        self.address = address
        self.fsm = fsm
        self.transport = transport
        self.options = options or RaftOptions()
        self.config = config or RaftConfig()
        self._rng = rng or random.Random()
        self._dir = data_dir
        self.wal = None
        self.core: RaftCore | None = None
        self.applied = 0
        self._addresses: dict[str, tuple[str, int]] = {}
        self._config_seen: tuple[Server, ...] | None = None
        self._proposals: dict[int, tuple[int, asyncio.Future]] = {}   # index -> (term, future)
        self._reads: dict[bytes, asyncio.Future] = {}                  # ctx -> future (read index)
        self._read_waits: list[tuple[int, asyncio.Future]] = []        # (index, future) until applied
        self._read_seq = 0
        self._snapshot: tuple[SnapshotMeta, bytes] | None = None
        self._incoming_snapshots: dict[int, bytes] = {}
        self._scheduled = False
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leader_id = ""
        self.last_contact = 0.0             # loop time a message from the leader last arrived
        self.listeners: list[Callable[[str, str], None]] = []   # (leader_id, role) on change
        self.applied_listeners: list[Callable[[], None]] = []   # after each applied batch
        self._retry: asyncio.TimerHandle | None = None
        self._durable_vote: tuple[int, str] = (0, "")   # (term, vote) known to be on disk
        self.stats = {"readies": 0, "syncs": 0, "applied": 0, "snapshots": 0, "storage_errors": 0}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover from the data dir (or start empty in memory) and start ticking."""
        self._loop = asyncio.get_running_loop()
        restored = None
        if self._dir is not None:
            self.wal, rec = WAL.open(os.path.join(self._dir, "raft"), fsync=self.options.fsync)
            if rec.torn_bytes:
                _log.warning("WAL had a torn tail of %d bytes, truncated", rec.torn_bytes)
            if rec.snapshot is not None:
                self.fsm.restore(rec.snapshot_data)
                self.applied = rec.snapshot.index
                self._snapshot = (rec.snapshot, rec.snapshot_data)
            restored = Restored(rec.hard_state, rec.snapshot, rec.entries)
            self._durable_vote = (rec.hard_state.term, rec.hard_state.vote)
        self.core = RaftCore(self.config, self.id, self._rng, restored)
        self._learn_configuration()
        self.transport.identify(self.id, self.address)
        self.transport.on_message = self.receive
        self.transport.on_unreachable = self._unreachable
        self._ticker = self._loop.call_later(self.options.tick_interval, self._tick)
        self._schedule()

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        await self.transport.close()
        err = RaftError("raft is shutting down")
        for _, fut in self._proposals.values():
            if not fut.done():
                fut.set_exception(err)
        for fut in list(self._reads.values()) + [f for _, f in self._read_waits]:
            if not fut.done():
                fut.set_exception(err)
        self._proposals.clear()
        self._reads.clear()
        self._read_waits.clear()
        if self.wal is not None:
            self.wal.close()
            self.wal = None

    # ------------------------------------------------------------------ views

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role == LEADER

    @property
    def leader_address(self) -> str:
        """The leader's RPC address ("" if none is known)."""
        if not self.leader_id:
            return ""
        for s in self.core.configuration():
            if s.id == self.leader_id:
                return s.address
        return ""

    def last_contact_ms(self) -> int:
        """Milliseconds since the leader was last heard from (0 on the leader)."""
        if self.is_leader:
            return 0
        return int(max(0.0, self._loop.time() - self.last_contact) * 1000)

    def configuration(self) -> tuple[Server, ...]:
        return self.core.configuration()

    def info(self) -> dict[str, str]:
        """Consul's `raft` stats block (`isthmus info`, /v1/agent/self): strings."""
        core = self.core
        snap = self._snapshot[0] if self._snapshot else None
        conf = core.configuration()
        return {
            "applied_index": str(self.applied), "commit_index": str(core.commit),
            "fsm_pending": "0", "last_contact": "0" if self.is_leader else
            (f"{self.last_contact_ms()}ms" if self.leader_id else "never"),
            "last_log_index": str(core.last_index),
            "last_log_term": str(core.status().get("last_log_term", 0)),
            "last_snapshot_index": str(snap.index if snap else 0),
            "last_snapshot_term": str(snap.term if snap else 0),
            "latest_configuration": "[" + ", ".join(
                "{Suffrage:%s ID:%s Address:%s}" % ("Voter" if s.voter else "Nonvoter", s.id,
                                                    s.address) for s in conf) + "]",
            "num_peers": str(max(0, sum(1 for s in conf if s.voter) - 1)),
            "protocol_version": "3", "state": core.role.capitalize().replace("-", ""),
            "term": str(core.term)}

    def voters(self) -> list[str]:
        """RPC addresses of the voters (Status.Peers)."""
        return [s.address for s in self.core.configuration() if s.voter]

    @property
    def bootstrapped(self) -> bool:
        return bool(self.core.configuration()) or self.core.last_index > 0

    # ------------------------------------------------------------------ inputs

    def bootstrap(self, servers: list[Server]) -> None:
        self.core.bootstrap(servers)
        self._learn_configuration()
        self._schedule()

    def receive(self, msg: Message) -> None:
        if msg.type == MSG_SNAP and msg.snapshot is not None:
            self._incoming_snapshots[msg.snapshot.index] = msg.snapshot_data
            msg.snapshot_data = b""
        if msg.frm == self.leader_id:
            self.last_contact = self._loop.time()
        self.core.step(msg)
        self._schedule()

    def _unreachable(self, id: str) -> None:
        if self.core is not None:
            self.core.report_unreachable(id)
            self._schedule()

    def _tick(self) -> None:
        self._ticker = self._loop.call_later(self.options.tick_interval, self._tick)
        self.core.tick()
        self._schedule()

    async def apply(self, data: bytes, timeout: float | None = None) -> tuple[int, Any]:
        """Replicate `data`; (index, the state machine's result) once applied here. A result
        that is an exception (the state machine refused the command) is raised."""
        try:
            index, term = self.core.propose(data)
        except NotLeader:
            raise self._not_leader() from None
        except ProposalDropped as exc:          # leadership transfer under way, size limit
            raise RaftError(f"proposal dropped: {exc}") from None
        fut = self._loop.create_future()
        self._proposals[index] = (term, fut)
        self._schedule()
        result = await self._wait(fut, timeout or self.options.apply_timeout, "apply")
        if isinstance(result, Exception):       # the state machine refused the command
            raise result
        return index, result

    async def barrier(self, timeout: float | None = None) -> int:
        """Wait until everything committed before the call is applied here (leader only)."""
        index, _ = await self.apply(b"", timeout)
        return index

    async def consistent_read(self, timeout: float | None = None) -> int:
        """ReadIndex: returns once this server's state reflects every write acknowledged
        before the call (any server; a follower asks the leader). The read index."""
        self._read_seq += 1
        ctx = self._read_seq.to_bytes(8, "big")
        fut = self._loop.create_future()
        self._reads[ctx] = fut
        self.core.read_index(ctx)
        self._schedule()
        try:
            return await self._wait(fut, timeout or self.options.apply_timeout, "read")
        finally:
            self._reads.pop(ctx, None)

    async def change_configuration(self, servers: list[Server], timeout: float | None = None) -> int:
        try:
            index, term = self.core.propose_conf_change(tuple(servers))
        except NotLeader:
            raise self._not_leader() from None
        except (ConfChangeRejected, ProposalDropped) as exc:
            raise RaftError(str(exc)) from None
        fut = self._loop.create_future()
        self._proposals[index] = (term, fut)
        self._schedule()
        await self._wait(fut, timeout or self.options.apply_timeout, "configuration change")
        return index

    async def add_server(self, id: str, address: str, voter: bool = True) -> int:
        servers = [s for s in self.core.configuration() if s.id != id]
        return await self.change_configuration(servers + [Server(id, address, voter)])

    async def remove_server(self, id: str) -> int:
        servers = [s for s in self.core.configuration() if s.id != id]
        return await self.change_configuration(servers)

    def transfer_leader(self, to: str) -> None:
        try:
            self.core.transfer_leader(to)
        except NotLeader:
            raise self._not_leader() from None
        self._schedule()

    def _not_leader(self) -> RaftError:
        return NotLeaderError(self.leader_address) if self.leader_id else NoLeader()

    async def _wait(self, fut: asyncio.Future, timeout: float, what: str):
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise RaftTimeout(what) from None

    # ------------------------------------------------------------------ the Ready loop

    def _schedule(self) -> None:
        if not self._scheduled and self.core is not None:
            self._scheduled = True
            self._loop.call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        core = self.core
        if core is None or self._ticker is None:
            return
        while core.has_ready():
            rd = core.ready()
            self.stats["readies"] += 1
            hs = rd.hard_state
            vote_changed = hs is not None and (hs.term, hs.vote) != self._durable_vote
            late = rd.messages
            if not vote_changed and self.wal is not None:
                # Raft thesis §10.2.1: the leader appends to its own disk in parallel with
                # replicating; its own entries count toward commit only after advance().
                late = [m for m in rd.messages if m.type not in _PARALLEL]
                if len(late) != len(rd.messages):
                    for msg in rd.messages:
                        if msg.type in _PARALLEL:
                            self._send(msg)
            try:
                if rd.snapshot is not None:
                    self._install_snapshot(rd.snapshot)
                if self.wal is not None and (hs is not None or rd.entries):
                    self.wal.append(hs, rd.entries)
                    # a commit index alone needs no sync: it is recovered from the quorum
                    if rd.entries or vote_changed or rd.snapshot is not None:
                        self.wal.sync()
                        self.stats["syncs"] += 1
                        if hs is not None:
                            self._durable_vote = (hs.term, hs.vote)
            except WALError as exc:
                # Nothing of this Ready is sent or applied: the core hands it out again
                # (it was not advanced) and we retry; a disk that filled may free up.
                self.stats["storage_errors"] += 1
                _log.error("cannot persist (%s); retrying in %.0fs", exc, STORAGE_RETRY)
                self._retry = self._loop.call_later(STORAGE_RETRY, self._schedule)
                return
            if rd.entries or rd.snapshot is not None:
                self._learn_configuration()
            for msg in late:
                self._send(msg)
            if rd.committed:
                self._apply_committed(rd.committed)
                for fn in self.applied_listeners:
                    fn()
            for rs in rd.read_states:
                fut = self._reads.pop(rs.context, None)
                if fut is not None and not fut.done():
                    self._read_waits.append((rs.index, fut))
            for ctx in rd.failed_reads:
                fut = self._reads.pop(ctx, None)
                if fut is not None and not fut.done():
                    fut.set_exception(self._not_leader())
            if rd.soft_state is not None:
                self._leader_changed(rd.soft_state.leader, rd.soft_state.role)
            core.advance(rd)
            self._serve_reads()
        self._maybe_snapshot()

    def _send(self, msg: Message) -> None:
        addr = self._addresses.get(msg.to)
        if addr is None:
            # outside our configuration (we are new, or it is): where its hello said it is
            other = self.transport.learned.get(msg.to)
            if not other:
                return
            addr = _split(other)
        if msg.type == MSG_SNAP:
            if self._snapshot is None or self._snapshot[0].index != msg.snapshot.index:
                self.core.report_snapshot(msg.to, False)
                return
            msg.snapshot_data = self._snapshot[1]
            self.core.report_snapshot(msg.to, True)     # sent (the follower acks by MsgAppResp)
        self.transport.send(addr, msg)

    def _apply_committed(self, entries: list[Entry]) -> None:
        fsm = self.fsm
        proposals = self._proposals
        for e in entries:
            result = None
            if e.type == ENTRY_NORMAL and e.data:
                try:
                    result = fsm.apply(e.index, e.data)
                except Exception as exc:        # our bug: never apply an entry twice
                    _log.exception("state machine failed to apply entry %d", e.index)
                    result = RaftError(f"apply failed: {exc}")
            self.applied = e.index
            waiting = proposals.pop(e.index, None)
            if waiting is not None:
                term, fut = waiting
                if not fut.done():
                    if term == e.term:
                        fut.set_result(result)
                    else:
                        fut.set_exception(LeadershipLost())
        self.stats["applied"] += len(entries)

    def _serve_reads(self) -> None:
        if not self._read_waits:
            return
        keep = []
        for index, fut in self._read_waits:
            if index <= self.applied:
                if not fut.done():
                    fut.set_result(index)
            else:
                keep.append((index, fut))
        self._read_waits = keep

    def _leader_changed(self, leader: str, role: str) -> None:
        if leader != self.leader_id:
            self.leader_id = leader
            self.last_contact = self._loop.time()
            _log.info("leader is now %s (this server: %s, term %d)", leader or "unknown",
                      role, self.core.term)
        # Writes proposed here stay pending when leadership is lost: they may still commit
        # under the next leader, and resolve when their index is applied (with any term).
        for fn in self.listeners:
            fn(leader, role)

    def _learn_configuration(self) -> None:
        conf = self.core.configuration()
        if conf == self._config_seen:
            return
        self._config_seen = conf
        old = self._addresses
        new = {}
        for s in conf:
            if s.id != self.id:
                new[s.id] = _split(s.address)
        for id_, addr in old.items():
            if new.get(id_) != addr:
                self.transport.forget(addr)
        self._addresses = new

    # ------------------------------------------------------------------ snapshots

    def _install_snapshot(self, meta: SnapshotMeta) -> None:
        data = self._incoming_snapshots.get(meta.index)
        if data is None:
            raise RaftError(f"core installs snapshot {meta.index} whose data never arrived")
        if self.wal is not None:
            self.wal.save_snapshot(meta, data)      # kept for a retry until this succeeds
        self._incoming_snapshots.clear()
        self.fsm.restore(data)
        self.applied = meta.index
        self._snapshot = (meta, data)
        self.stats["snapshots"] += 1
        for fn in self.applied_listeners:
            fn()

    def _maybe_snapshot(self) -> None:
        opts = self.options
        last = self._snapshot[0].index if self._snapshot else 0
        if self.applied - last < opts.snapshot_threshold:
            return
        self.snapshot_now()

    def snapshot_now(self) -> SnapshotMeta:
        """Snapshot the state machine at the applied index, persist it, compact the log."""
        core = self.core
        index = self.applied
        meta = core.snapshot_meta(index)
        data = self.fsm.snapshot()
        if self.wal is not None:
            self.wal.save_snapshot(meta, data)
        self._snapshot = (meta, data)
        # keep `trailing_logs` entries so a follower slightly behind needs no snapshot
        core.compact(max(0, index - self.options.trailing_logs), meta)
        self.stats["snapshots"] += 1
        return meta


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)

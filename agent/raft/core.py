"""The pure Raft core: etcd-io/raft's RawNode as plain Python (see /tmp/raftspec/API.md).

Inputs are method calls (tick, step, propose, ...); outputs are collected in a Ready that the
driver persists, sends and applies before calling advance(). No I/O, no clocks (time is
ticks), no global randomness (the caller's random.Random), no logging (counters in `stats`).

Behaviour follows etcd-io/raft's raft.go: PreVote, CheckQuorum with leader stickiness,
probe/replicate/snapshot flow control with reject hints, ReadIndex (quorum heartbeat round or
lease), leadership transfer (MsgTimeoutNow), learners, single-server configuration changes
that take effect when appended (thesis §4.1), snapshots and compaction.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from _core.errors import DecodeError

from .log import RaftLog
from .messages import (
    CANDIDATE, ENTRY_CONFIG, ENTRY_NORMAL, FOLLOWER, LEADER, MSG_APP, MSG_APP_RESP,
    MSG_HEARTBEAT, MSG_HEARTBEAT_RESP, MSG_MAX, MSG_PRE_VOTE, MSG_PRE_VOTE_RESP,
    MSG_READ_INDEX, MSG_READ_INDEX_RESP, MSG_SNAP, MSG_TIMEOUT_NOW, MSG_TRANSFER_LEADER,
    MSG_VOTE, MSG_VOTE_RESP, PRE_CANDIDATE, Entry, HardState, Message, Server, SnapshotMeta,
    decode_configuration, encode_configuration,
)
from .progress import PROBE, REPLICATE, SNAPSHOT, Progress

if TYPE_CHECKING:
    from random import Random

__all__ = ["RaftConfig", "Restored", "ReadState", "SoftState", "Ready", "NotLeader",
           "ProposalDropped", "ConfChangeRejected", "RaftCore"]

# Vote requests of a leadership transfer carry this context: they override leader stickiness.
TRANSFER_CTX = b"transfer"

_WON, _LOST, _PENDING = 1, 2, 0


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_tick: int = 10        # followers campaign after a random [election_tick, 2*election_tick) ticks without a leader
    heartbeat_tick: int = 1        # leader heartbeats every heartbeat_tick ticks
    pre_vote: bool = True
    check_quorum: bool = True      # leader steps down without a quorum heard from within election_tick; followers that heard from a leader within election_tick ignore (pre)votes
    max_inflight: int = 256        # max un-acked MsgApp per follower in replicate state
    max_msg_entries: int = 512     # max entries per MsgApp
    max_msg_bytes: int = 1 << 20   # max bytes of entry data per MsgApp (at least one entry always)
    read_only_lease: bool = False  # False: ReadIndex by a heartbeat quorum round; True: lease-based
    max_uncommitted_bytes: int = 0  # 0 = unlimited; else propose() raises ProposalDropped beyond it

    def problems(self) -> list[str]:
        """Every problem of this configuration (empty = usable)."""
        out = []
        for name in ("election_tick", "heartbeat_tick", "max_inflight", "max_msg_entries",
                     "max_msg_bytes"):
            v = getattr(self, name)
            if type(v) is not int or v < 1:
                out.append(f"{name} must be a positive integer, not {v!r}")
        if (type(self.election_tick) is int and type(self.heartbeat_tick) is int
                and self.election_tick <= self.heartbeat_tick):
            out.append("election_tick must be greater than heartbeat_tick")
        if type(self.max_uncommitted_bytes) is not int or self.max_uncommitted_bytes < 0:
            out.append("max_uncommitted_bytes must be an integer >= 0")
        if self.read_only_lease and not self.check_quorum:
            out.append("read_only_lease needs check_quorum (the lease is CheckQuorum's)")
        return out


@dataclass(slots=True)
class Restored:
    """What the WAL hands back after a restart (all empty on a fresh node)."""
    hard_state: HardState
    snapshot: SnapshotMeta | None
    entries: list[Entry]


@dataclass(slots=True)
class ReadState:
    """Serve the read with `context` once applied >= index."""
    index: int
    context: bytes


@dataclass(slots=True)
class SoftState:
    leader: str
    role: str


@dataclass(slots=True)
class Ready:
    """What the driver must persist, send and apply (in that order), then advance()."""
    hard_state: HardState | None
    entries: list[Entry]
    snapshot: SnapshotMeta | None
    messages: list[Message]
    committed: list[Entry]
    read_states: list[ReadState]
    soft_state: SoftState | None
    failed_reads: list[bytes]


class NotLeader(Exception):
    """This node is not the leader; `leader` is the one it knows of ("" = unknown)."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(Exception):
    """The leader refused the proposal (leadership transfer, or the uncommitted-size limit)."""


class ConfChangeRejected(Exception):
    """The configuration change cannot be proposed now or at all; the message says why."""


def _quorum(n: int) -> int:
    return n // 2 + 1


class RaftCore:
    """One Raft node. See the module docstring and API.md for the contract."""

    def __init__(self, cfg: RaftConfig, id: str, rng: Random,
                 restored: Restored | None = None) -> None:
        problems = cfg.problems()
        if problems:
            raise ValueError("bad RaftConfig: " + "; ".join(problems))
        if not isinstance(id, str) or not id:
            raise ValueError("a raft node needs a non-empty string id")
        self.cfg = cfg
        self.id = id
        self._rng = rng
        self.stats: Counter[str] = Counter()
        hs = restored.hard_state if restored is not None else HardState()
        snap = restored.snapshot if restored is not None else None
        entries = restored.entries if restored is not None else []
        base = snap.index if snap is not None else 0
        if entries and entries[0].index <= base:          # tolerate a WAL that keeps a few
            entries = [e for e in entries if e.index > base]
        for k, e in enumerate(entries):
            if e.index != base + 1 + k:
                raise ValueError(f"restored entries must follow the snapshot ({base}) "
                                 f"contiguously; entry {k} has index {e.index}")
        self._log = RaftLog(snap, entries, hs.commit)
        # The snapshot the driver holds (sent to followers that need entries we dropped);
        # with trailing logs kept after compaction it may be newer than the log's start.
        self._snapshot: SnapshotMeta | None = snap
        self.term = hs.term
        self.vote = hs.vote
        self._lead = ""
        self.role = FOLLOWER
        # Configurations: the snapshot's, then one per ENTRY_CONFIG entry still in the log.
        self._base_conf: tuple[Server, ...] = snap.configuration if snap is not None else ()
        self._conf_idx: list[int] = []
        self._conf_val: list[tuple[Server, ...]] = []
        for e in entries:
            if e.type == ENTRY_CONFIG:
                self._conf_idx.append(e.index)
                self._conf_val.append(decode_configuration(e.data))
        self._voter_ids: tuple[str, ...] = ()
        self._voters: frozenset[str] = frozenset()
        self._members: dict[str, Server] = {}
        self._prs: dict[str, Progress] = {}
        self._votes: dict[str, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = cfg.election_tick
        self._lead_transferee = ""
        self._uncommitted = 0
        self._msgs: list[Message] = []
        self._read_states: list[ReadState] = []
        self._failed_reads: list[bytes] = []
        self._prev_hs = (hs.term, hs.vote, hs.commit)
        self._prev_ss = ("", FOLLOWER)
        self._need_bcast = False        # leader: send MsgApps at the next ready() (batches proposals)
        # ReadIndex (safe mode): reads wait for a heartbeat round whose number is the context.
        self._read_round = 0            # last round broadcast
        self._read_flush = False        # a read waits for round _read_round + 1 to go out
        self._read_queue: deque[tuple[int, int, str, bytes]] = deque()  # (round, index, from, ctx)
        self._read_acked: dict[str, int] = {}    # highest round each member acknowledged
        self._pending_reads: list[tuple[str, bytes]] = []  # until this term's first entry commits
        self._fwd_reads: list[bytes] = []        # follower: forwarded to the leader
        self._set_config(self.configuration())
        self._become_follower(self.term, "")

    # ================================================================== read-only views
    @property
    def leader(self) -> str:
        return self._lead

    @property
    def commit(self) -> int:
        return self._log.committed

    @property
    def applied(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    @property
    def lead_transferee(self) -> str:
        return self._lead_transferee

    def configuration(self) -> tuple[Server, ...]:
        """The latest configuration in the log (possibly uncommitted)."""
        return self._conf_val[-1] if self._conf_val else self._base_conf

    def committed_configuration(self) -> tuple[Server, ...]:
        return self._conf_at(self._log.committed)

    def _conf_at(self, index: int) -> tuple[Server, ...]:
        k = bisect_right(self._conf_idx, index)
        return self._conf_val[k - 1] if k else self._base_conf

    def snapshot_meta(self, index: int | None = None) -> SnapshotMeta:
        """The (index, term, configuration) of a snapshot taken at `index` (an entry still
        in the log, or the log's start); without `index`, the snapshot this node sends to
        followers that lag behind its log."""
        log = self._log
        if index is None:
            s = self._snapshot
            if s is not None and s.index >= log.snap_index:
                return s
            return SnapshotMeta(log.snap_index, log.snap_term, self._base_conf)
        term = log.term(index)
        if term is None or index < log.snap_index:
            raise ValueError(f"no entry {index} in the log ({log.snap_index}..{log.last_index()})")
        return SnapshotMeta(index, term, self._conf_at(index))

    def status(self) -> dict:
        st = {"id": self.id, "term": self.term, "vote": self.vote, "commit": self._log.committed,
              "applied": self._log.applied, "role": self.role, "leader": self._lead,
              "lead_transferee": self._lead_transferee, "first_index": self.first_index,
              "last_index": self.last_index, "stable": self._log.stable,
              "last_log_term": self._log.term(self.last_index) or 0}
        if self.role == LEADER:
            st["progress"] = {pid: pr.as_dict() for pid, pr in self._prs.items()}
        return st

    # ================================================================== role changes
    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = ""
        self._lead = ""
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self.cfg.election_tick + self._rng.randrange(self.cfg.election_tick)
        self._lead_transferee = ""
        self._votes = {}
        self._prs = {}
        self._uncommitted = 0
        self._need_bcast = False
        self._fail_reads()

    def _become_follower(self, term: int, lead: str) -> None:
        self._reset(term)
        self._lead = lead
        self.role = FOLLOWER

    def _become_pre_candidate(self) -> None:
        # etcd: neither the term nor the vote changes; only the leader is forgotten.
        self._votes = {}
        self._lead = ""
        self._fail_reads()
        self.role = PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = CANDIDATE

    def _become_leader(self) -> None:
        self._reset(self.term)
        self._lead = self.id
        self.role = LEADER
        log = self._log
        nxt = log.last_index() + 1
        mi = self.cfg.max_inflight
        for s in self.configuration():
            self._prs[s.id] = Progress(nxt, mi, not s.voter)
        me = self._prs.get(self.id)
        if me is not None:
            me.match = log.stable        # our own log counts once persisted (advance())
            me.recent_active = True
            me.become_replicate()
        # §5.4.2 / thesis §6.4: a no-op of our term lets us commit what earlier terms left.
        log.ents.append(Entry(self.term, nxt, ENTRY_NORMAL, b""))
        self._need_bcast = True

    # ================================================================== configuration
    def _set_config(self, servers: tuple[Server, ...]) -> None:
        self._members = {s.id: s for s in servers}
        self._voter_ids = tuple(s.id for s in servers if s.voter)
        self._voters = frozenset(self._voter_ids)
        if self.role != LEADER:
            return
        prs = self._prs
        nxt = self._log.last_index() + 1
        new = {}
        for s in servers:
            pr = prs.get(s.id)
            if pr is None:
                # etcd: a new member counts as recently active, so CheckQuorum gives it time.
                pr = Progress(nxt, self.cfg.max_inflight, not s.voter, recent_active=True)
                if s.id == self.id:
                    pr.match = self._log.stable
                    pr.become_replicate()
            pr.learner = not s.voter
            new[s.id] = pr
        self._prs = new
        if self._lead_transferee and self._lead_transferee not in self._voters:
            self._lead_transferee = ""

    def _on_appended(self, ents: list[Entry], cut: int) -> None:
        """Keep the configuration in step with the log: appended config entries take
        effect at once; a truncated one rolls back (thesis §4.1)."""
        changed = False
        if cut and self._conf_idx and self._conf_idx[-1] >= cut:
            k = bisect_left(self._conf_idx, cut)
            del self._conf_idx[k:]
            del self._conf_val[k:]
            changed = True
        for e in ents:
            if e.type == ENTRY_CONFIG:
                self._conf_idx.append(e.index)
                self._conf_val.append(decode_configuration(e.data))
                changed = True
        if changed:
            self._set_config(self.configuration())

    # ================================================================== inputs
    def tick(self) -> None:
        """One unit of logical time."""
        if self.role == LEADER:
            self._tick_heartbeat()
        else:
            self._election_elapsed += 1
            if self._election_elapsed >= self._randomized_timeout and self._promotable():
                self._election_elapsed = 0
                self._hup(False)

    def _tick_heartbeat(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.cfg.election_tick:
            self._election_elapsed = 0
            if self.cfg.check_quorum:
                self._check_quorum()
                if self.role != LEADER:
                    return
            if self._lead_transferee:       # the transfer did not finish in one election timeout
                self.stats["transfer_aborted"] += 1
                self._lead_transferee = ""
        if self._heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat(self._read_ctx())

    def campaign(self) -> None:
        """Start a (pre-)election now if this node is a voter (MsgHup)."""
        self._hup(False)

    def bootstrap(self, servers: list[Server]) -> None:
        """First configuration of a new cluster (every initial server calls it alike)."""
        log = self._log
        if log.last_index() != 0 or self.term != 0:
            raise ValueError("bootstrap needs an empty log and term 0")
        servers = tuple(servers)
        self._check_servers(servers, ValueError)
        e = Entry(1, 1, ENTRY_CONFIG, encode_configuration(servers))
        log.ents.append(e)
        self.term = 1
        log.committed = 1
        self._on_appended([e], 0)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Leader only: append `data`; the write is done when (index, term) is applied."""
        if self.role != LEADER:
            raise NotLeader(self._lead)
        if type(data) is not bytes:
            raise TypeError(f"a proposal is bytes, not {type(data).__name__}")
        if self._lead_transferee:
            raise ProposalDropped("leadership transfer in progress")
        if self.id not in self._prs:
            raise ProposalDropped("this leader is leaving the configuration")
        limit = self.cfg.max_uncommitted_bytes
        n = len(data)
        if limit and self._uncommitted and self._uncommitted + n > limit:
            raise ProposalDropped("uncommitted entries exceed max_uncommitted_bytes")
        self._uncommitted += n
        log = self._log
        index = log.snap_index + len(log.ents) + 1
        log.ents.append(Entry(self.term, index, ENTRY_NORMAL, data))
        self._need_bcast = True
        return index, self.term

    def propose_conf_change(self, servers: tuple[Server, ...] | list[Server]) -> tuple[int, int]:
        """Leader only: propose the whole next configuration (one server differs)."""
        if self.role != LEADER:
            raise NotLeader(self._lead)
        if self._lead_transferee:
            raise ProposalDropped("leadership transfer in progress")
        servers = tuple(servers)
        self._check_servers(servers, ConfChangeRejected)
        log = self._log
        if log.term(log.committed) != self.term:
            raise ConfChangeRejected("this leader's first entry (its no-op) is not committed yet")
        if self._conf_idx and self._conf_idx[-1] > log.committed:
            raise ConfChangeRejected("another configuration change is not committed yet")
        old = self._members
        new = {s.id: s for s in servers}
        changes = [i for i in new if i not in old or old[i] != new[i]]
        changes += [i for i in old if i not in new]
        if not changes:
            raise ConfChangeRejected("the configuration would not change")
        if len(changes) > 1:
            raise ConfChangeRejected(
                f"only one server may change at a time, not {len(changes)}: {sorted(changes)}")
        index = log.last_index() + 1
        e = Entry(self.term, index, ENTRY_CONFIG, encode_configuration(servers))
        log.ents.append(e)
        self._on_appended([e], 0)
        self._need_bcast = True
        return index, self.term

    @staticmethod
    def _check_servers(servers: tuple, exc: type) -> None:
        ids = set()
        for s in servers:
            if not isinstance(s, Server) or not isinstance(s.id, str) or not s.id:
                raise exc(f"not a valid server: {s!r}")
            if s.id in ids:
                raise exc(f"server {s.id!r} appears twice")
            ids.add(s.id)
        if not any(s.voter for s in servers):
            raise exc("a configuration needs at least one voter")

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer comes in ready().read_states
        (or ready().failed_reads)."""
        if self.role == LEADER:
            self._leader_read(self.id, ctx)
        elif self._lead:
            self._fwd_reads.append(ctx)
            self._send(MSG_READ_INDEX, self._lead, context=ctx)
        else:
            self._failed_reads.append(ctx)

    def transfer_leader(self, to: str) -> None:
        """Hand leadership to `to` (a voter). On a follower, ask the leader to."""
        if self.role == LEADER:
            self._start_transfer(to)
        elif not self._lead:
            raise NotLeader("")
        elif to and to != self._lead:
            # MsgTransferLeader names the transferee in `frm` (etcd's convention).
            self._msgs.append(Message(MSG_TRANSFER_LEADER, self._lead, to, self.term))

    def report_unreachable(self, id: str) -> None:
        """The driver could not deliver to `id`: stop streaming to it, probe instead."""
        if self.role == LEADER:
            pr = self._prs.get(id)
            if pr is not None and id != self.id and pr.state == REPLICATE:
                pr.become_probe()

    def report_snapshot(self, id: str, ok: bool) -> None:
        """The driver finished (ok) or failed sending the snapshot to `id`."""
        if self.role != LEADER:
            return
        pr = self._prs.get(id)
        if pr is None or pr.state != SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.paused = True          # wait for the next heartbeat response before probing

    def compact(self, index: int, snapshot: SnapshotMeta | None = None) -> None:
        """Drop entries <= index (<= applied): the driver saved a snapshot of the state
        machine at `index`, or at `snapshot.index` >= index when it keeps trailing entries
        (then `snapshot`, from snapshot_meta(), is what lagging followers are sent)."""
        log = self._log
        if index > log.applied:
            raise ValueError(f"cannot compact to {index}: only {log.applied} is applied")
        if snapshot is not None:
            if not index <= snapshot.index <= log.applied:
                raise ValueError(f"snapshot at {snapshot.index} does not cover {index} "
                                 f"or is not applied ({log.applied})")
            if self._snapshot is None or snapshot.index >= self._snapshot.index:
                self._snapshot = snapshot
        if index <= log.snap_index:
            return
        self._base_conf = self._conf_at(index)
        k = bisect_right(self._conf_idx, index)
        del self._conf_idx[:k]
        del self._conf_val[:k]
        log.compact(index)

    # ================================================================== step
    def step(self, m: Message) -> None:
        """Feed one wire message. Malformed ones, or ones for another node, are counted
        in `stats` and dropped; nothing a peer sends makes this raise."""
        if not self._valid(m):
            self.stats["dropped_invalid"] += 1
            return
        t = m.type
        if m.term > self.term:
            if t == MSG_VOTE or t == MSG_PRE_VOTE:
                in_lease = (self.cfg.check_quorum and self._lead != ""
                            and self._election_elapsed < self.cfg.election_tick)
                if in_lease and m.context != TRANSFER_CTX:
                    # Leader stickiness (thesis §4.2.3): we heard from a leader recently.
                    self.stats["vote_ignored_in_lease"] += 1
                    return
            if t == MSG_PRE_VOTE:
                pass                    # a pre-vote never changes our term
            elif t == MSG_PRE_VOTE_RESP and not m.reject:
                pass                    # our own future term, granted; counted below
            elif t == MSG_APP or t == MSG_HEARTBEAT or t == MSG_SNAP:
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, "")
        elif m.term < self.term:
            if (t == MSG_APP or t == MSG_HEARTBEAT) and (self.cfg.check_quorum or self.cfg.pre_vote):
                # A stale leader cut off by a partition: our higher term makes it step down
                # (otherwise it could never learn it: its peers ignore it and pre-vote never
                # raises their terms).
                self._send(MSG_APP_RESP, m.frm)
            elif t == MSG_PRE_VOTE:
                self._send(MSG_PRE_VOTE_RESP, m.frm, reject=True)
            else:
                self.stats["stale_term"] += 1
            return

        if t == MSG_VOTE or t == MSG_PRE_VOTE:
            self._handle_vote(m)
        elif self.role == LEADER:
            self._step_leader(m)
        elif self.role == FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _valid(self, m: Message) -> bool:
        if type(m) is not Message:
            return False
        t = m.type
        if type(t) is not int or t < MSG_APP or t > MSG_MAX:
            return False
        if m.to != self.id:
            self.stats["dropped_not_for_me"] += 1
            return False
        if type(m.frm) is not str or not m.frm or m.frm == self.id:
            return False
        for v in (m.term, m.log_term, m.index, m.commit, m.reject_hint):
            if type(v) is not int or v < 0:
                return False
        if m.term == 0 or type(m.reject) is not bool or type(m.context) is not bytes:
            return False
        if t == MSG_APP:
            if type(m.entries) is not list or m.log_term > m.term:
                return False
            pi, pt = m.index, m.log_term
            for e in m.entries:
                if (type(e) is not Entry or type(e.index) is not int or e.index != pi + 1
                        or type(e.term) is not int or e.term < pt or e.term > m.term
                        or type(e.data) is not bytes):
                    return False
                if e.type == ENTRY_CONFIG:
                    try:
                        decode_configuration(e.data)
                    except DecodeError:
                        return False
                elif e.type != ENTRY_NORMAL:
                    return False
                pi, pt = e.index, e.term
        elif t == MSG_SNAP:
            s = m.snapshot
            if (type(s) is not SnapshotMeta or type(s.index) is not int or type(s.term) is not int
                    or s.index < 1 or s.term < 1 or s.term > m.term
                    or type(s.configuration) is not tuple
                    or not all(type(x) is Server for x in s.configuration)):
                return False
        elif t == MSG_VOTE or t == MSG_PRE_VOTE:
            if m.log_term > m.term:
                return False
        return True

    def _send(self, typ: int, to: str, *, reject: bool = False, index: int = 0,
              log_term: int = 0, reject_hint: int = 0, commit: int = 0,
              context: bytes = b"", term: int = -1) -> None:
        self._msgs.append(Message(typ, to, self.id, self.term if term < 0 else term, log_term,
                                  index, commit, reject, reject_hint, context))

    # ------------------------------------------------------------------ elections
    def _promotable(self) -> bool:
        if self._log.pending_snapshot is not None:
            return False
        if self.id in self._voters:
            return True
        # A voter of the committed configuration that a later, uncommitted one removes may
        # still campaign: it may hold the only copy of that entry (a leader that removed
        # itself and lost leadership), and without it no one else could win. Its votes are
        # counted in the latest configuration (its own does not count), so this is safe;
        # once elected it commits the entry and steps down (thesis §4.2.2).
        return (bool(self._conf_idx) and self._conf_idx[-1] > self._log.committed
                and any(s.id == self.id and s.voter for s in self.committed_configuration()))

    def _hup(self, transfer: bool) -> None:
        if self.role == LEADER:
            return
        if not self._promotable():
            self.stats["campaign_refused_not_voter"] += 1
            return
        self._campaign(self.cfg.pre_vote and not transfer, transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            vtype, term = MSG_PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            vtype, term = MSG_VOTE, self.term
        if self._poll(self.id, True) == _WON:      # a lone voter wins at once
            if pre:
                self._campaign(False, transfer)
            else:
                self._become_leader()
            return
        log = self._log
        li, lt = log.last_index(), log.last_term()
        ctx = TRANSFER_CTX if transfer else b""
        for vid in self._voter_ids:
            if vid != self.id:
                self._msgs.append(Message(vtype, vid, self.id, term, lt, li, context=ctx))

    def _poll(self, frm: str, granted: bool) -> int:
        if frm not in self._votes:
            self._votes[frm] = granted
        yes = no = 0
        for vid in self._voter_ids:
            v = self._votes.get(vid)
            if v is True:
                yes += 1
            elif v is False:
                no += 1
        q = _quorum(len(self._voter_ids))
        if yes >= q:
            return _WON
        if len(self._voter_ids) - no < q:
            return _LOST
        return _PENDING

    def _handle_vote(self, m: Message) -> None:
        pre = m.type == MSG_PRE_VOTE
        resp = MSG_PRE_VOTE_RESP if pre else MSG_VOTE_RESP
        # §5.2 one vote per term; a pre-vote for a future term binds nothing.
        can_vote = (self.vote == m.frm or (self.vote == "" and self._lead == "")
                    or (pre and m.term > self.term))
        # §5.4.1 election restriction.
        if can_vote and self._log.is_up_to_date(m.index, m.log_term):
            self._send(resp, m.frm, term=m.term)
            if not pre:
                self._election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, reject=True)

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t == MSG_APP:
            self._become_follower(m.term, m.frm)
            self._handle_append(m)
        elif t == MSG_HEARTBEAT:
            self._become_follower(m.term, m.frm)
            self._handle_heartbeat(m)
        elif t == MSG_SNAP:
            self._become_follower(m.term, m.frm)
            self._handle_snapshot(m)
        elif t == (MSG_PRE_VOTE_RESP if self.role == PRE_CANDIDATE else MSG_VOTE_RESP):
            res = self._poll(m.frm, not m.reject)
            if res == _WON:
                if self.role == PRE_CANDIDATE:
                    self._campaign(False, False)
                else:
                    self._become_leader()
            elif res == _LOST:
                self._become_follower(self.term, "")
        elif t == MSG_READ_INDEX:
            self._send(MSG_READ_INDEX_RESP, m.frm, reject=True, context=m.context)
        else:
            self.stats["ignored"] += 1

    # ------------------------------------------------------------------ follower
    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MSG_APP:
            self._election_elapsed = 0
            self._lead = m.frm
            self._handle_append(m)
        elif t == MSG_HEARTBEAT:
            self._election_elapsed = 0
            self._lead = m.frm
            self._handle_heartbeat(m)
        elif t == MSG_SNAP:
            self._election_elapsed = 0
            self._lead = m.frm
            self._handle_snapshot(m)
        elif t == MSG_TIMEOUT_NOW:
            self._hup(True)              # the leader chose us: skip PreVote, override stickiness
        elif t == MSG_TRANSFER_LEADER:
            if self._lead:
                self._msgs.append(Message(MSG_TRANSFER_LEADER, self._lead, m.frm, self.term))
        elif t == MSG_READ_INDEX:
            self._send(MSG_READ_INDEX_RESP, m.frm, reject=True, context=m.context)
        elif t == MSG_READ_INDEX_RESP:
            try:
                self._fwd_reads.remove(m.context)
            except ValueError:
                self.stats["ignored"] += 1
                return
            if m.reject:
                self._failed_reads.append(m.context)
            else:
                self._read_states.append(ReadState(m.index, m.context))
        else:
            self.stats["ignored"] += 1

    def _handle_append(self, m: Message) -> None:
        log = self._log
        if m.index < log.committed:
            self._send(MSG_APP_RESP, m.frm, index=log.committed)
            return
        if not log.match_term(m.index, m.log_term):
            # §5.3 with the fast backtracking hint: the largest index whose term is <= the
            # leader's prev term, so the leader can skip a whole term at a time.
            hint, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
            self._send(MSG_APP_RESP, m.frm, index=m.index, reject=True, reject_hint=hint,
                       log_term=hint_term)
            return
        ents = m.entries
        last_new = m.index + len(ents)
        if ents:
            ci = log.find_conflict(ents)
            if ci:
                if ci <= log.committed:        # a correct leader never sends this
                    self.stats["dropped_conflict_below_commit"] += 1
                    return
                if ci != ents[0].index:
                    ents = ents[ci - ents[0].index:]
                cut = log.append(ents)
                self._on_appended(ents, cut)
        # Commit only what we know matches the leader (up to the last entry it sent).
        log.commit_to(min(m.commit, last_new))
        self._send(MSG_APP_RESP, m.frm, index=last_new)

    def _handle_heartbeat(self, m: Message) -> None:
        # The leader sends min(our match, its commit): known to match, so safe to commit.
        self._log.commit_to(m.commit)
        self._send(MSG_HEARTBEAT_RESP, m.frm, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        s = m.snapshot
        log = self._log
        if s.index <= log.committed:
            self.stats["snapshot_ignored"] += 1
            self._send(MSG_APP_RESP, m.frm, index=log.committed)
            return
        if log.match_term(s.index, s.term):
            # We already hold the snapshot's last entry: keep our suffix, just commit.
            log.commit_to(s.index)
            self._send(MSG_APP_RESP, m.frm, index=log.committed)
            return
        log.restore(s)
        self._snapshot = s
        self._base_conf = s.configuration
        self._conf_idx.clear()
        self._conf_val.clear()
        self._set_config(s.configuration)
        self.stats["snapshot_installed"] += 1
        self._send(MSG_APP_RESP, m.frm, index=log.last_index())

    # ------------------------------------------------------------------ leader
    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MSG_APP_RESP:
            self._handle_app_resp(m)
        elif t == MSG_HEARTBEAT_RESP:
            self._handle_heartbeat_resp(m)
        elif t == MSG_READ_INDEX:
            self._leader_read(m.frm, m.context)
        elif t == MSG_TRANSFER_LEADER:
            self._start_transfer(m.frm)
        else:
            self.stats["ignored"] += 1

    def _handle_app_resp(self, m: Message) -> None:
        pr = self._prs.get(m.frm)
        if pr is None:
            self.stats["ignored"] += 1
            return
        pr.recent_active = True
        log = self._log
        if m.reject:
            nxt = m.reject_hint
            if m.log_term > 0:
                nxt = log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
            if pr.maybe_decr_to(m.index, nxt):
                if pr.state == REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.frm, True)
            return
        if m.index > log.last_index():
            self.stats["dropped_invalid"] += 1     # acknowledges what we never sent
            return
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == PROBE):
            if pr.state == PROBE:
                pr.become_replicate()
            elif pr.state == SNAPSHOT and pr.match + 1 >= log.first_index():
                pr.become_probe()               # the log can catch it up from here
                pr.become_replicate()
            elif pr.state == REPLICATE:
                pr.free_le(m.index)
            if self._maybe_commit() and self.role != LEADER:
                return
            while self._maybe_send_append(m.frm, False):
                pass
            if m.frm == self._lead_transferee and pr.match == log.last_index():
                self._send(MSG_TIMEOUT_NOW, m.frm)

    def _handle_heartbeat_resp(self, m: Message) -> None:
        pr = self._prs.get(m.frm)
        if pr is None:
            self.stats["ignored"] += 1
            return
        pr.recent_active = True
        pr.paused = False
        if pr.match < self._log.last_index() or pr.state == PROBE:
            self._maybe_send_append(m.frm, True)
        ctx = m.context
        if ctx and not self.cfg.read_only_lease and self._read_queue:
            if not ctx.isdigit() or len(ctx) > 19:
                return
            rnd = int(ctx)
            if rnd > self._read_round:
                return
            if self._read_acked.get(m.frm, 0) < rnd:
                self._read_acked[m.frm] = rnd
                self._serve_reads()

    def _maybe_send_append(self, to: str, send_if_empty: bool) -> bool:
        pr = self._prs[to]
        if pr.state == SNAPSHOT or pr.paused:
            return False
        log = self._log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            return self._maybe_send_snapshot(to, pr)
        ents: list[Entry] = []
        if pr.next <= log.last_index() and not (pr.state == REPLICATE and pr.inflight_full()):
            ents = log.entries_from(pr.next, self.cfg.max_msg_entries, self.cfg.max_msg_bytes)
        if not ents and not send_if_empty:
            return False
        self._msgs.append(Message(MSG_APP, to, self.id, self.term, prev_term, prev,
                                  log.committed, entries=ents))
        pr.sent_entries(len(ents), ents[-1].index if ents else 0)
        return True

    def _maybe_send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            self.stats["snapshot_deferred_inactive"] += 1
            return False
        meta = self.snapshot_meta()
        pr.become_snapshot(meta.index)
        self._msgs.append(Message(MSG_SNAP, to, self.id, self.term, snapshot=meta))
        self.stats["snapshot_sent"] += 1
        return True

    def _bcast_append(self) -> None:
        """Send each follower what it lacks (an empty MsgApp carries the commit index), as
        many MsgApps as its window allows."""
        for pid in self._prs:
            if pid != self.id and self._maybe_send_append(pid, True):
                while self._maybe_send_append(pid, False):
                    pass

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        commit = self._log.committed
        for pid, pr in self._prs.items():
            if pid != self.id:
                self._send(MSG_HEARTBEAT, pid, commit=min(pr.match, commit), context=ctx)

    def _maybe_commit(self) -> bool:
        voters = self._voter_ids
        if not voters:
            return False
        prs = self._prs
        if len(voters) == 1:
            mci = prs[voters[0]].match
        else:
            matches = sorted([prs[v].match for v in voters], reverse=True)
            mci = matches[_quorum(len(matches)) - 1]
        log = self._log
        if not log.maybe_commit(mci, self.term):
            return False
        if self._pending_reads:
            pending, self._pending_reads = self._pending_reads, []
            for frm, ctx in pending:
                self._leader_read(frm, ctx)
        self._need_bcast = True
        if self.id not in self._voters and (not self._conf_idx or self._conf_idx[-1] <= log.committed):
            # Thesis §4.2.2: a leader removed from (or demoted in) the configuration leads
            # until that entry commits, then steps down. Tell the others the commit first.
            self._bcast_append()
            self._become_follower(self.term, "")
            self.stats["stepped_down_removed"] += 1
        return True

    def _check_quorum(self) -> None:
        active = 0
        for vid in self._voter_ids:
            if vid == self.id:
                active += 1
            else:
                pr = self._prs.get(vid)
                if pr is not None and pr.recent_active:
                    active += 1
        if active < _quorum(len(self._voter_ids)):
            self.stats["check_quorum_step_down"] += 1
            self._become_follower(self.term, "")
            return
        for pid, pr in self._prs.items():
            if pid != self.id:
                pr.recent_active = False

    def _start_transfer(self, to: str) -> None:
        pr = self._prs.get(to)
        if to == self.id or pr is None or pr.learner:
            self.stats["transfer_ignored"] += 1
            return
        if self._lead_transferee == to:
            return
        self._election_elapsed = 0     # the transfer must finish within one election timeout
        self._lead_transferee = to
        if pr.match == self._log.last_index():
            self._send(MSG_TIMEOUT_NOW, to)
        else:
            self._maybe_send_append(to, True)

    # ------------------------------------------------------------------ reads
    def _committed_this_term(self) -> bool:
        log = self._log
        return log.term(log.committed) == self.term

    def _leader_read(self, frm: str, ctx: bytes) -> None:
        if not self._committed_this_term():
            # Thesis §6.4: until our no-op commits, our commit index may be behind.
            self._pending_reads.append((frm, ctx))
            return
        if self.cfg.read_only_lease or self._voter_ids == (self.id,):
            self._read_done(frm, self._log.committed, ctx)
            return
        self._read_queue.append((self._read_round + 1, self._log.committed, frm, ctx))
        self._read_flush = True

    def _read_ctx(self) -> bytes:
        q = self._read_queue
        if q and q[0][0] <= self._read_round:
            return str(self._read_round).encode()
        return b""

    def _serve_reads(self) -> None:
        """Serve every queued read whose heartbeat round a quorum acknowledged (a later
        round's ack confirms leadership after every earlier read arrived)."""
        acked = self._read_acked
        rounds = sorted([self._read_round if v == self.id else acked.get(v, 0)
                         for v in self._voter_ids], reverse=True)
        if not rounds:
            return
        confirmed = rounds[_quorum(len(rounds)) - 1]
        q = self._read_queue
        while q and q[0][0] <= confirmed:
            _, index, frm, ctx = q.popleft()
            self._read_done(frm, index, ctx)

    def _read_done(self, frm: str, index: int, ctx: bytes) -> None:
        if frm == self.id:
            self._read_states.append(ReadState(index, ctx))
        else:
            self._send(MSG_READ_INDEX_RESP, frm, index=index, context=ctx)

    def _fail_reads(self) -> None:
        """Leadership (or the leader we forwarded to) is gone: fail every waiting read."""
        if self._read_queue or self._pending_reads:
            waiting = [(frm, ctx) for _, _, frm, ctx in self._read_queue] + self._pending_reads
            self._read_queue.clear()
            self._pending_reads = []
            for frm, ctx in waiting:
                if frm == self.id:
                    self._failed_reads.append(ctx)
                else:
                    self._send(MSG_READ_INDEX_RESP, frm, reject=True, context=ctx)
        if self._fwd_reads:
            self._failed_reads.extend(self._fwd_reads)
            self._fwd_reads = []
        self._read_acked = {}
        self._read_flush = False

    # ================================================================== outputs
    def _flush(self) -> None:
        """Batched leader output: one MsgApp round for all proposals since the last ready(),
        one heartbeat round for all reads."""
        if self.role != LEADER:
            self._need_bcast = self._read_flush = False
            return
        if self._need_bcast:
            self._need_bcast = False
            self._bcast_append()
        if self._read_flush:
            self._read_flush = False
            self._read_round += 1
            self._bcast_heartbeat(str(self._read_round).encode())

    def has_ready(self) -> bool:
        if self._msgs or self._read_states or self._failed_reads:
            return True
        if self._need_bcast or self._read_flush:
            return True
        log = self._log
        if log.snap_index + len(log.ents) > log.stable or log.pending_snapshot is not None:
            return True
        if log.has_next_committed():
            return True
        if (self.term, self.vote, log.committed) != self._prev_hs:
            return True
        return (self._lead, self.role) != self._prev_ss

    def ready(self) -> Ready:
        self._flush()
        log = self._log
        hs = None
        cur = (self.term, self.vote, log.committed)
        if cur != self._prev_hs:
            hs = HardState(*cur)
        ss = None
        cur_ss = (self._lead, self.role)
        if cur_ss != self._prev_ss:
            ss = SoftState(*cur_ss)
            self._prev_ss = cur_ss
        k = log.stable - log.snap_index
        entries = log.ents[k:] if k < len(log.ents) else []
        return Ready(hs, entries, log.pending_snapshot, list(self._msgs), log.next_committed(),
                     list(self._read_states), ss, list(self._failed_reads))

    def advance(self, rd: Ready) -> None:
        log = self._log
        if rd.snapshot is not None:
            if log.pending_snapshot is rd.snapshot:
                log.pending_snapshot = None
            if rd.snapshot.index > log.applied:
                log.applied = rd.snapshot.index
        if rd.hard_state is not None:
            h = rd.hard_state
            self._prev_hs = (h.term, h.vote, h.commit)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed:
            if rd.committed[-1].index > log.applied:
                log.applied = rd.committed[-1].index
            if self._uncommitted and self.role == LEADER:
                self._uncommitted = max(0, self._uncommitted - sum(len(e.data) for e in rd.committed))
        if rd.messages:
            del self._msgs[:len(rd.messages)]
        if rd.read_states:
            del self._read_states[:len(rd.read_states)]
        if rd.failed_reads:
            del self._failed_reads[:len(rd.failed_reads)]
        if self.role == LEADER:
            me = self._prs.get(self.id)
            if me is not None and me.match < log.stable:
                me.match = log.stable
                me.next = log.stable + 1
                self._maybe_commit()

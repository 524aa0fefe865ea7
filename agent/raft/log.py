"""The in-memory Raft log of one node (etcd-io/raft's raftLog + unstable, in one list).

`ents[k]` holds index `snap_index + 1 + k`; everything at or below `snap_index` was compacted
into a snapshot (only its index and term are kept). `stable` is the last index the driver has
persisted (advance()); entries above it are handed out by ready(). Pure: no I/O.
"""
from __future__ import annotations

from bisect import bisect_right

from .messages import Entry, SnapshotMeta


def _entry_term(e: Entry) -> int:
    return e.term


class RaftLog:
    """Entries after the snapshot point, with the stable / committed / applied marks."""

    __slots__ = ("snap_index", "snap_term", "ents", "stable", "committed", "applied",
                 "pending_snapshot")

    def __init__(self, snap: SnapshotMeta | None, entries: list[Entry], commit: int) -> None:
        self.snap_index = snap.index if snap is not None else 0
        self.snap_term = snap.term if snap is not None else 0
        self.ents: list[Entry] = list(entries)
        self.stable = self.last_index()          # a restored log is all on disk
        self.committed = min(max(commit, self.snap_index), self.last_index())
        self.applied = self.snap_index           # the state machine starts from the snapshot
        self.pending_snapshot: SnapshotMeta | None = None   # received, not yet persisted

    # ------------------------------------------------------------------ lookups
    def last_index(self) -> int:
        return self.snap_index + len(self.ents)

    def last_term(self) -> int:
        return self.ents[-1].term if self.ents else self.snap_term

    def first_index(self) -> int:
        return self.snap_index + 1

    def term(self, i: int) -> int | None:
        """The term of entry `i`; None if it was compacted away or does not exist yet."""
        k = i - self.snap_index
        if k == 0:
            return self.snap_term
        if k < 0 or k > len(self.ents):
            return None
        return self.ents[k - 1].term

    def match_term(self, i: int, term: int) -> bool:
        t = self.term(i)
        return t is not None and t == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up to date as ours."""
        lt = self.last_term()
        return last_term > lt or (last_term == lt and last_index >= self.last_index())

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries [lo, hi); lo must be > snap_index."""
        off = self.snap_index + 1
        return self.ents[lo - off:hi - off]

    def entries_from(self, lo: int, max_n: int, max_bytes: int) -> list[Entry]:
        """Up to max_n entries from `lo` and at most max_bytes of data (at least one entry)."""
        off = lo - self.snap_index - 1
        ents = self.ents[off:off + max_n]
        if len(ents) > 1:
            size = 0
            for n, e in enumerate(ents):
                size += len(e.data)
                if size > max_bytes and n > 0:
                    return ents[:n]
        return ents

    def find_conflict(self, ents: list[Entry]) -> int:
        """Index of the first entry of `ents` that is new or disagrees with ours, else 0."""
        last = self.last_index()
        for e in ents:
            if e.index > last:
                return e.index
            if self.term(e.index) != e.term:
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, and that term (etcd's
        findConflictByTerm: terms never decrease along a log, so bisect). A compacted
        position returns (index, 0): we cannot tell, so it may match."""
        if index > self.last_index():
            index = self.last_index()
        if index <= self.snap_index:
            if index == self.snap_index and self.snap_term <= term:
                return index, self.snap_term
            return index, 0
        hi = index - self.snap_index                      # ents[:hi] are indexes <= index
        k = bisect_right(self.ents, term, 0, hi, key=_entry_term)
        if k == 0:                                        # every kept entry is newer
            if self.snap_term <= term:
                return self.snap_index, self.snap_term
            return self.snap_index, 0
        return self.snap_index + k, self.ents[k - 1].term

    # ------------------------------------------------------------------ changes
    def append(self, ents: list[Entry]) -> int:
        """Append ents (ents[0].index <= last + 1); a suffix from ents[0].index is replaced.
        Returns the index the log was truncated at (0 = nothing removed)."""
        first = ents[0].index
        cut = 0
        if first <= self.last_index():
            cut = first
            del self.ents[first - self.snap_index - 1:]
            if self.stable >= first:
                self.stable = first - 1
        self.ents.extend(ents)
        return cut

    def commit_to(self, i: int) -> bool:
        """Commit never moves backwards, and never past our last entry."""
        if i > self.committed:
            self.committed = min(i, self.last_index())
            return True
        return False

    def maybe_commit(self, i: int, term: int) -> bool:
        """§5.4.2: the quorum index commits only if its entry is of the current term."""
        if i > self.committed and self.term(i) == term:
            self.committed = i
            return True
        return False

    def stable_to(self, i: int, term: int) -> None:
        if i > self.stable and self.term(i) == term:
            self.stable = i

    def restore(self, snap: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snap_index = snap.index
        self.snap_term = snap.term
        self.ents = []
        self.stable = snap.index
        self.committed = snap.index
        self.pending_snapshot = snap

    def compact(self, i: int) -> None:
        """Drop entries <= i (a local snapshot covers them)."""
        if i <= self.snap_index:
            return
        t = self.term(i)
        assert t is not None
        del self.ents[:i - self.snap_index]
        self.snap_index = i
        self.snap_term = t

    def has_next_committed(self) -> bool:
        return (self.pending_snapshot is None
                and min(self.committed, self.stable) > self.applied)

    def next_committed(self) -> list[Entry]:
        """Committed entries not yet applied and already persisted (commit <= stable)."""
        if self.pending_snapshot is not None:
            return []
        hi = min(self.committed, self.stable)
        lo = max(self.applied, self.snap_index)
        if hi <= lo:
            return []
        off = self.snap_index + 1
        return self.ents[lo + 1 - off:hi + 1 - off]

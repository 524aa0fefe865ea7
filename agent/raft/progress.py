"""The leader's view of one follower (etcd-io/raft's tracker.Progress and Inflights).

probe:     one MsgApp at a time until the follower's match is found (then replicate);
replicate: stream MsgApps optimistically, at most `max_inflight` un-acked ones;
snapshot:  a snapshot is on its way; send nothing until report_snapshot() or an ack.
"""
from __future__ import annotations

from collections import deque

PROBE = "probe"
REPLICATE = "replicate"
SNAPSHOT = "snapshot"


class Progress:
    """match/next of one member, its flow-control state and its in-flight window."""

    __slots__ = ("match", "next", "state", "paused", "pending_snapshot", "recent_active",
                 "learner", "inflight", "max_inflight")

    def __init__(self, next_index: int, max_inflight: int, learner: bool,
                 recent_active: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.paused = False              # probe: a MsgApp is out; replicate: window full
        self.pending_snapshot = 0
        self.recent_active = recent_active
        self.learner = learner
        self.inflight: deque[int] = deque()   # last index of each un-acked MsgApp
        self.max_inflight = max_inflight

    def _reset(self, state: str) -> None:
        self.paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflight.clear()

    def become_probe(self) -> None:
        if self.state == SNAPSHOT:
            pending = self.pending_snapshot
            self._reset(PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset(PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset(REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, index: int) -> None:
        self._reset(SNAPSHOT)
        self.pending_snapshot = index

    def is_paused(self) -> bool:
        return self.state == SNAPSHOT or self.paused

    def inflight_full(self) -> bool:
        return len(self.inflight) >= self.max_inflight

    def sent_entries(self, n: int, last: int) -> None:
        """A MsgApp with n entries ending at `last` went out."""
        if self.state == REPLICATE:
            if n:
                self.next = last + 1
                self.inflight.append(last)
            self.paused = len(self.inflight) >= self.max_inflight
        elif n:
            self.paused = True

    def maybe_update(self, n: int) -> bool:
        """The follower acknowledged index n; False if it told us nothing new."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.paused = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def free_le(self, n: int) -> None:
        q = self.inflight
        while q and q[0] <= n:
            q.popleft()
        if self.state == REPLICATE:
            self.paused = len(q) >= self.max_inflight

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """A MsgApp with prev index `rejected` was refused; False if the refusal is stale."""
        if self.state == REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.paused = False
        return True

    def as_dict(self) -> dict:
        return {"match": self.match, "next": self.next, "state": self.state,
                "inflight": len(self.inflight), "recent_active": self.recent_active,
                "learner": self.learner}

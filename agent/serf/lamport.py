"""Serf's Lamport clocks (hashicorp/serf lamport.go; spec memberlist-wire.md §5.3)."""
from __future__ import annotations


class LamportClock:
    """A 64-bit Lamport clock: `increment()` for a new event, `witness()` for a remote one."""

    __slots__ = ("_t",)

    def __init__(self, start: int = 0) -> None:
        self._t = start

    def time(self) -> int:
        return self._t

    def increment(self) -> int:
        self._t += 1
        return self._t

    def witness(self, v: int) -> None:
        """Move past `v`: if v ≥ now, now = v + 1 (Serf's Witness)."""
        if v >= self._t:
            self._t = v + 1

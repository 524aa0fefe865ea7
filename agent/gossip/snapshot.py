"""Serf's peer snapshot: an append-only text file in the data dir, replayed at start so a
restarted agent rejoins the peers it knew (hashicorp/serf snapshot.go; spec §5.10).

Records: `alive: <name> <ip:port>`, `not-alive: <name>`, `clock: <n>`, `event-clock: <n>`,
`query-clock: <n>`, `leave`, `# comment`. Compacted (rewritten, then renamed over) when it
grows past max(128 KiB, 2 × 128 bytes × alive peers).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

MIN_COMPACT_SIZE = 128 * 1024
SNAPSHOT_BYTES_PER_NODE = 128


@dataclass
class Replayed:
    alive: dict[str, str] = field(default_factory=dict)     # name -> "ip:port"
    clock: int = 0
    event_clock: int = 0
    query_clock: int = 0
    left: bool = False


class Snapshot:
    """The snapshot file of one pool. Not thread-safe; called from the event loop only."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = None
        self._size = 0
        self._alive: dict[str, str] = {}
        self._clocks = [0, 0, 0]

    def replay(self) -> Replayed:
        """Read the file (a missing one is empty); broken lines are skipped."""
        out = Replayed()
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    kind, _, rest = line.partition(": ")
                    if kind == "alive":
                        name, _, addr = rest.rpartition(" ")
                        if name and addr:
                            out.alive[name] = addr
                    elif kind == "not-alive":
                        out.alive.pop(rest, None)
                    elif kind in ("clock", "event-clock", "query-clock") and rest.isdigit():
                        setattr(out, kind.replace("-", "_"), int(rest))
                    elif line == "leave":
                        out.alive.clear()
                        out.left = True
        except FileNotFoundError:
            pass
        self._alive = dict(out.alive)
        self._clocks = [out.clock, out.event_clock, out.query_clock]
        return out

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._size = self._f.tell()

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            self._f.close()
            self._f = None

    def alive(self, name: str, addr: str, port: int) -> None:
        where = f"{addr}:{port}"
        if self._alive.get(name) != where:
            self._alive[name] = where
            self._append(f"alive: {name} {where}\n")

    def not_alive(self, name: str) -> None:
        if self._alive.pop(name, None) is not None:
            self._append(f"not-alive: {name}\n")

    def clocks(self, clock: int, event_clock: int, query_clock: int) -> None:
        """Record the Lamport clocks when they moved (Serf writes `clock - 1`)."""
        new = [clock - 1, event_clock - 1, query_clock - 1]
        for name, old, value in zip(("clock", "event-clock", "query-clock"), self._clocks, new):
            if value > old:
                self._append(f"{name}: {value}\n")
        self._clocks = [max(a, b) for a, b in zip(self._clocks, new)]

    def leave(self) -> None:
        self._alive.clear()
        self._append("leave\n")
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())

    def _append(self, line: str) -> None:
        if self._f is None:
            return
        self._f.write(line)
        self._f.flush()
        self._size += len(line)
        if self._size > max(MIN_COMPACT_SIZE, 2 * SNAPSHOT_BYTES_PER_NODE * len(self._alive)):
            self._compact()

    def _compact(self) -> None:
        tmp = self.path + ".compact"
        with open(tmp, "w", encoding="utf-8") as f:
            for name, where in self._alive.items():
                f.write(f"alive: {name} {where}\n")
            c, e, q = self._clocks
            f.write(f"clock: {c}\nevent-clock: {e}\nquery-clock: {q}\n")
            f.flush()
            os.fsync(f.fileno())
        self._f.close()
        os.replace(tmp, self.path)
        self._f = open(self.path, "a", encoding="utf-8")
        self._size = self._f.tell()

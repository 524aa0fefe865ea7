"""The Raft write-ahead log (agent/raft/wal.py) against the bare syscalls it is built on.

Group "wal append+sync": one Ready's worth of work, `WAL.append(hard_state, 100 entries of
100 bytes)` + `WAL.sync()`, against a bare `os.write` of the same number of bytes + one
`os.fdatasync` on a plain O_APPEND file in the same directory (the limit: what the disk
costs without any framing, CRC or msgpack).
Group "wal append": the same without the sync (the CPU cost of framing: msgpack + CRC-32
per record), against the bare `os.write` alone.
Quote the ratio of the medians:
    pytest benchmarks/bench_wal.py --benchmark-only --benchmark-columns=median,iqr
"""
from __future__ import annotations

import os

import pytest

from agent.raft.messages import Entry, HardState
from agent.raft.wal import WAL

N_ENTRIES = 100
ENTRY_BYTES = 100
ROUNDS = 200


class Batches:
    """The next batch of N_ENTRIES contiguous entries on every call (built untimed)."""

    def __init__(self) -> None:
        self.next = 1

    def __call__(self):
        first = self.next
        self.next += N_ENTRIES
        entries = [Entry(3, i, 0, (b"%d" % i).ljust(ENTRY_BYTES, b".")) for i in
                   range(first, first + N_ENTRIES)]
        return (HardState(3, "node-1", first - 1), entries), {}


def batch_bytes(d: str) -> int:
    """How many bytes one batch costs in the WAL (what the bare baseline writes)."""
    wal, _ = WAL.open(os.path.join(d, "probe"), fsync=False)
    wal.append(*Batches()()[0])
    n = wal.stats["bytes_written"]
    wal.close()
    return n


@pytest.fixture
def wal_dir(tmp_path):
    return str(tmp_path)


@pytest.mark.parametrize("sync", [True, False], ids=["append+sync", "append"])
def test_wal(benchmark, wal_dir, sync):
    benchmark.group = "wal append+sync" if sync else "wal append"
    wal, _ = WAL.open(os.path.join(wal_dir, "raft"), fsync=sync)

    def run(hs, entries):
        wal.append(hs, entries)
        if sync:
            wal.sync()

    benchmark.pedantic(run, setup=Batches(), rounds=ROUNDS, iterations=1, warmup_rounds=5)
    benchmark.extra_info.update(entries=N_ENTRIES, entry_bytes=ENTRY_BYTES,
                                bytes=wal.stats["bytes_written"] // wal.stats["appends"])
    assert wal.stats["syncs"] == (wal.stats["appends"] if sync else 0)
    wal.close()


@pytest.mark.parametrize("sync", [True, False], ids=["write+fdatasync", "write"])
def test_bare_syscalls(benchmark, wal_dir, sync):
    benchmark.group = "wal append+sync" if sync else "wal append"
    buf = os.urandom(batch_bytes(wal_dir))
    fd = os.open(os.path.join(wal_dir, "bare.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def run():
        os.write(fd, buf)
        if sync:
            os.fdatasync(fd)

    try:
        benchmark.pedantic(run, rounds=ROUNDS, iterations=1, warmup_rounds=5)
    finally:
        os.close(fd)
    benchmark.extra_info.update(bytes=len(buf))

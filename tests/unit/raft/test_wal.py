"""The Raft write-ahead log (agent/raft/wal.py): round trips, truncation, torn tails cut at
every offset, corruption, segments and snapshot compaction, disk full, fsync counting."""
from __future__ import annotations

import errno
import os
import shutil
import struct

import pytest

from agent.raft.messages import ENTRY_CONFIG, Entry, HardState, Server, SnapshotMeta
from agent.raft.wal import WAL, DiskFull, Recovered, WALCorrupt, WALError

HDR = struct.Struct("<IIB")
CONF = (Server("a", "10.0.0.1:8300"), Server("b", "10.0.0.2:8300", voter=False))


def ents(first: int, last: int, term: int = 1, size: int = 8) -> list[Entry]:
    return [Entry(term, i, 0, (b"%d:" % i).ljust(size, b"x")) for i in range(first, last + 1)]


def segments(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith("wal-"))


def snaps(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith("snap-") and n.endswith(".snap"))


def first_index(segment_name: str) -> int:
    return int(segment_name.split("-")[2].split(".")[0], 16)


def records(path) -> list[tuple[int, int]]:
    """(offset, size) of each record of a segment file (assumed valid)."""
    buf = open(path, "rb").read()
    out, off = [], 0
    while off < len(buf):
        length, _, _ = HDR.unpack_from(buf, off)
        out.append((off, HDR.size + length))
        off += HDR.size + length
    return out


def reopen(d, **kw) -> tuple[WAL, Recovered]:
    return WAL.open(str(d), **kw)


def crash(wal: WAL) -> None:
    """Drop the WAL without close(): what a kill -9 leaves (the page cache keeps writes)."""
    os.close(wal._fd)
    wal._fd = -1


def flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def cut(path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


# ------------------------------------------------------------------ round trips
def test_fresh_directory_recovers_nothing(tmp_path):
    wal, rec = reopen(tmp_path / "raft")
    assert rec == Recovered(HardState(), None, None, [], 0)
    assert wal.last_index == 0
    assert len(segments(tmp_path / "raft")) == 1
    wal.close()


def test_round_trip_and_restart(tmp_path):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 0), ents(1, 3))
    wal.append(None, [Entry(1, 4, ENTRY_CONFIG, b"\x91\x93\xa1a")])
    wal.append(HardState(2, "b", 3), ents(5, 5, term=2))
    wal.sync()
    assert wal.last_index == 5
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.hard_state == HardState(2, "b", 3)
    assert rec.entries == ents(1, 3) + [Entry(1, 4, ENTRY_CONFIG, b"\x91\x93\xa1a")] + ents(5, 5, 2)
    assert rec.snapshot is None and rec.snapshot_data is None and rec.torn_bytes == 0
    assert wal.last_index == 5
    # ... and it goes on where it stopped, across a crash without close().
    wal.append(HardState(2, "b", 5), ents(6, 7, term=2))
    crash(wal)
    wal, rec = reopen(tmp_path)
    assert [e.index for e in rec.entries] == list(range(1, 8))
    assert rec.hard_state == HardState(2, "b", 5)
    wal.close()


def test_hard_state_alone_and_empty_append(tmp_path):
    wal, _ = reopen(tmp_path)
    size = os.path.getsize(tmp_path / segments(tmp_path)[0])
    wal.append(None, [])                              # nothing to write: no record
    assert os.path.getsize(tmp_path / segments(tmp_path)[0]) == size
    wal.append(HardState(7, "x", 0), [])
    wal.close()
    _, rec = reopen(tmp_path)
    assert rec.hard_state == HardState(7, "x", 0) and rec.entries == []


def test_truncation_records_are_replayed(tmp_path):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 0), ents(1, 10))
    wal.append(HardState(2, "b", 0), ents(6, 8, term=2))     # a new leader overwrote 6..10
    assert wal.last_index == 8
    wal.append(None, ents(9, 9, term=2))
    wal.append(HardState(3, "c", 0), ents(8, 8, term=3))     # and again, from 8
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.entries == ents(1, 5) + ents(6, 7, term=2) + ents(8, 8, term=3)
    assert wal.last_index == 8 and rec.hard_state == HardState(3, "c", 0)
    wal.append(None, ents(9, 12, term=3))
    wal.close()
    _, rec = reopen(tmp_path)
    assert [(e.index, e.term) for e in rec.entries][-5:] == [(i, 3) for i in range(8, 13)]


def test_append_rejects_gaps_and_bad_batches(tmp_path):
    wal, _ = reopen(tmp_path)
    wal.append(None, ents(1, 5, term=2))
    seg = tmp_path / segments(tmp_path)[0]
    size = os.path.getsize(seg)
    with pytest.raises(ValueError):
        wal.append(None, ents(7, 8))                         # gap after 5
    with pytest.raises(ValueError):
        wal.append(None, ents(6, 6) + ents(8, 8))            # not contiguous
    with pytest.raises(ValueError):
        wal.append(None, ents(6, 6, term=1))                 # term goes backwards
    assert os.path.getsize(seg) == size and wal.last_index == 5
    wal.save_snapshot(SnapshotMeta(3, 2, CONF), b"s")
    with pytest.raises(ValueError):
        wal.append(None, ents(3, 3, term=2))                 # covered by the snapshot
    with pytest.raises(ValueError):
        wal.save_snapshot(SnapshotMeta(2, 2, CONF), b"old")  # older than the latest
    wal.close()


# ------------------------------------------------------------------ torn tails
def _build(d, **kw) -> tuple[str, int]:
    """A WAL whose last append is one batch; returns (segment path, size before it)."""
    wal, _ = reopen(d, **kw)
    wal.append(HardState(1, "a", 2), ents(1, 3))
    wal.sync()
    seg = os.path.join(d, segments(d)[-1])
    before = os.path.getsize(seg)
    wal.append(HardState(1, "a", 3), ents(4, 6, size=40))   # 3 entry records + 1 state record
    wal.close()
    return seg, before


def test_torn_tail_at_every_offset_of_the_last_batch(tmp_path):
    src = tmp_path / "src"
    seg, before = _build(str(src))
    full = os.path.getsize(seg)
    ends = [off + size for off, size in records(seg) if off >= before]
    assert len(ends) == 4
    for size in range(before, full):
        d = tmp_path / f"cut{size}"
        shutil.copytree(src, d)
        path = d / os.path.basename(seg)
        cut(path, size)
        wal, rec = reopen(d)
        whole = [e for e in ends if e <= size]                 # records that made it entirely
        good = whole[-1] if whole else before
        assert rec.torn_bytes == size - good, size
        assert os.path.getsize(path) == good
        assert [e.index for e in rec.entries] == list(range(1, 4 + len(whole))), size
        assert rec.hard_state == HardState(1, "a", 2)          # the new state was last: torn
        # Writable after the cut, and clean on the next open.
        wal.append(HardState(1, "a", 9), ents(len(rec.entries) + 1, 7))
        wal.close()
        _, rec2 = reopen(d)
        assert rec2.torn_bytes == 0 and [e.index for e in rec2.entries] == list(range(1, 8))
        assert rec2.hard_state == HardState(1, "a", 9)
        shutil.rmtree(d)


def test_zero_filled_tail_is_torn(tmp_path):
    seg, _ = _build(str(tmp_path))
    full = os.path.getsize(seg)
    with open(seg, "ab") as f:
        f.write(b"\0" * 4096)                  # a size update that beat its data to disk
    _, rec = reopen(tmp_path)
    assert rec.torn_bytes == 4096 and os.path.getsize(seg) == full
    assert len(rec.entries) == 6


def test_flipped_byte_in_the_final_record_is_a_torn_write(tmp_path):
    src = tmp_path / "src"
    seg, _ = _build(str(src))
    last_off, last_size = records(seg)[-1]
    for k in range(last_size):
        d = tmp_path / f"flip{k}"
        shutil.copytree(src, d)
        flip(d / os.path.basename(seg), last_off + k)
        _, rec = reopen(d)
        assert rec.torn_bytes == last_size, k
        assert len(rec.entries) == 6 and rec.hard_state == HardState(1, "a", 2)
        shutil.rmtree(d)


def test_flipped_byte_before_the_final_record_is_corruption(tmp_path):
    src = tmp_path / "src"
    seg, _ = _build(str(src))
    recs = records(seg)
    for off, size in (recs[1], recs[-2]):             # a middle one and the one before last
        for k in range(size):
            d = tmp_path / f"flip{off}-{k}"
            shutil.copytree(src, d)
            flip(d / os.path.basename(seg), off + k)
            with pytest.raises(WALCorrupt):
                reopen(d)
            shutil.rmtree(d)


def test_damage_in_a_closed_segment_is_corruption(tmp_path):
    wal, _ = reopen(tmp_path, segment_bytes=300)
    for i in range(1, 41):
        wal.append(HardState(1, "a", i - 1), ents(i, i))
    wal.close()
    segs = segments(tmp_path)
    assert len(segs) >= 3
    first = tmp_path / segs[0]
    last_off, _ = records(first)[-1]
    flip(first, last_off + HDR.size)                  # its final record: still not a torn tail
    with pytest.raises(WALCorrupt, match="not the last segment"):
        reopen(tmp_path)


def test_damage_in_the_middle_of_many_records_is_corruption(tmp_path):
    wal, _ = reopen(tmp_path)
    for i in range(1, 101):
        wal.append(None, ents(i, i))
    wal.close()
    seg = tmp_path / segments(tmp_path)[0]
    off, _ = records(seg)[50]
    with open(seg, "r+b") as f:                       # a length field that now runs past the end
        f.seek(off)
        f.write(struct.pack("<I", 1 << 30))
    with pytest.raises(WALCorrupt, match="followed by a valid record"):
        reopen(tmp_path)


def test_missing_segment_is_corruption(tmp_path):
    wal, _ = reopen(tmp_path, segment_bytes=200)
    for i in range(1, 31):
        wal.append(None, ents(i, i))
    wal.close()
    segs = segments(tmp_path)
    os.unlink(tmp_path / segs[1])
    with pytest.raises(WALCorrupt, match="missing"):
        reopen(tmp_path)


# ------------------------------------------------------------------ segments and snapshots
def test_segments_roll_and_name_their_first_index(tmp_path):
    wal, _ = reopen(tmp_path, segment_bytes=1000)
    for i in range(1, 201, 4):
        wal.append(HardState(1, "a", i), ents(i, i + 3))
    assert wal.stats["segments"] == len(segments(tmp_path)) > 5
    wal.close()
    firsts = [first_index(n) for n in segments(tmp_path)]
    seqs = [int(n.split("-")[1], 16) for n in segments(tmp_path)]
    assert seqs == list(range(1, len(seqs) + 1)) and firsts[0] == 1 and firsts == sorted(firsts)
    for n in segments(tmp_path)[:-1]:                 # rolled past segment_bytes, not far past
        assert os.path.getsize(tmp_path / n) <= 1000
    wal, rec = reopen(tmp_path, segment_bytes=1000)
    assert rec.entries == ents(1, 200) and rec.hard_state == HardState(1, "a", 197)
    wal.close()


def test_snapshot_compaction_keeps_hard_state_and_later_entries(tmp_path):
    wal, _ = reopen(tmp_path, segment_bytes=1000)
    wal.append(HardState(4, "me", 0), [])             # the only hard state record, in segment 1
    for i in range(1, 301, 10):
        wal.append(None, ents(i, i + 9, term=4))
    n_before = len(segments(tmp_path))
    assert n_before > 5
    wal.save_snapshot(SnapshotMeta(120, 4, CONF), b"state@120")
    after_first = segments(tmp_path)
    assert len(after_first) < n_before
    wal.save_snapshot(SnapshotMeta(250, 4, CONF), b"state@250")
    assert len(snaps(tmp_path)) == 2
    # Segments go only once both kept snapshots cover them (the older one is the fallback).
    assert segments(tmp_path) == after_first
    assert first_index(after_first[0]) <= 121 < first_index(after_first[1])
    wal.save_snapshot(SnapshotMeta(280, 4, CONF), b"state@280")
    assert snaps(tmp_path) == ["snap-%016x-%016x.snap" % (4, i) for i in (250, 280)]
    remaining = segments(tmp_path)
    assert len(remaining) < len(after_first)
    assert first_index(remaining[0]) <= 251
    assert len(remaining) == 1 or first_index(remaining[1]) > 251
    assert wal.last_index == 300
    wal.close()
    wal, rec = reopen(tmp_path, segment_bytes=1000)
    assert rec.snapshot == SnapshotMeta(280, 4, CONF) and rec.snapshot_data == b"state@280"
    assert rec.entries == ents(281, 300, term=4)
    assert rec.hard_state == HardState(4, "me", 0)
    wal.append(HardState(4, "me", 300), ents(301, 301, term=4))
    wal.close()
    _, rec = reopen(tmp_path, segment_bytes=1000)
    assert rec.entries[-1].index == 301 and rec.hard_state.commit == 300


def test_corrupt_newest_snapshot_falls_back_to_the_previous_one(tmp_path):
    wal, _ = reopen(tmp_path, segment_bytes=1000)
    wal.append(HardState(2, "a", 0), [])
    for i in range(1, 301, 10):
        wal.append(None, ents(i, i + 9, term=2))
    wal.save_snapshot(SnapshotMeta(100, 2, CONF), b"old")
    wal.save_snapshot(SnapshotMeta(250, 2, CONF), b"new")
    wal.close()
    newest = tmp_path / snaps(tmp_path)[-1]
    flip(newest, os.path.getsize(newest) - 1)        # bit rot in its data
    wal, rec = reopen(tmp_path)
    assert rec.snapshot == SnapshotMeta(100, 2, CONF) and rec.snapshot_data == b"old"
    assert rec.entries == ents(101, 300, term=2) and rec.hard_state == HardState(2, "a", 0)
    assert os.path.exists(str(newest) + ".corrupt") and len(snaps(tmp_path)) == 1
    wal.close()


def test_snapshot_from_the_leader_replaces_a_log_it_does_not_match(tmp_path):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "", 0), ents(1, 10, term=1))
    wal.save_snapshot(SnapshotMeta(5, 1, CONF), b"five")      # matches: the log goes on
    assert wal.last_index == 10
    wal.save_snapshot(SnapshotMeta(20, 3, CONF), b"twenty")   # beyond the log: discard it
    assert wal.last_index == 20
    wal.append(HardState(3, "", 20), ents(21, 22, term=3))
    wal.close()
    wal, rec = reopen(tmp_path)
    assert rec.snapshot.index == 20 and rec.entries == ents(21, 22, term=3)
    # A conflicting entry at the snapshot's index: the log is discarded too.
    wal.append(None, ents(23, 25, term=3))
    wal.save_snapshot(SnapshotMeta(24, 4, CONF), b"conflict")
    assert wal.last_index == 24
    wal.close()
    _, rec = reopen(tmp_path)
    assert rec.snapshot.index == 24 and rec.entries == []


def test_snapshot_file_without_its_log_record(tmp_path):
    """A crash after the snapshot file was renamed but before its log record: the snapshot
    wins over a log that does not hold its last entry, and the log stays consistent."""
    from agent.raft.wal import _encode_snapshot
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "", 0), ents(1, 10, term=1))
    wal.close()
    head, body = _encode_snapshot(SnapshotMeta(8, 2, CONF), b"eight")
    with open(tmp_path / ("snap-%016x-%016x.snap" % (2, 8)), "wb") as f:
        f.write(head + body)
    wal, rec = reopen(tmp_path)
    assert rec.snapshot.index == 8 and rec.entries == [] and wal.last_index == 8
    wal.append(None, ents(9, 9, term=2))
    wal.close()
    _, rec = reopen(tmp_path)
    assert rec.entries == ents(9, 9, term=2)


def test_leftover_snapshot_tmp_is_removed(tmp_path):
    wal, _ = reopen(tmp_path)
    wal.close()
    (tmp_path / ("snap-%016x-%016x.snap.tmp" % (1, 1))).write_bytes(b"half")
    wal, rec = reopen(tmp_path)
    assert rec.snapshot is None and not any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    wal.close()


# ------------------------------------------------------------------ disk full
def _enospc_after(monkeypatch, fn_name: str, budget: int):
    """os.<fn_name> writes `budget` bytes (os.write) or succeeds `budget` times, then ENOSPC."""
    real = getattr(os, fn_name)
    state = {"left": budget}

    if fn_name == "write":
        def fake(fd, data):
            if state["left"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = real(fd, bytes(data)[:state["left"]])
            state["left"] -= n
            return n
    else:
        def fake(fd):
            if state["left"] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            state["left"] -= 1
            return real(fd)
    monkeypatch.setattr(os, fn_name, fake)
    return state


def test_disk_full_while_writing_cuts_the_partial_batch(tmp_path, monkeypatch):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 0), ents(1, 5))
    wal.sync()
    seg = tmp_path / segments(tmp_path)[0]
    size = os.path.getsize(seg)
    _enospc_after(monkeypatch, "write", 50)            # half a batch lands, then ENOSPC
    with pytest.raises(DiskFull) as info:
        wal.append(HardState(1, "a", 5), ents(6, 10, size=30))
    assert info.value.errno == errno.ENOSPC
    assert os.path.getsize(seg) == size and wal.last_index == 5
    monkeypatch.undo()                                # space freed
    wal.append(HardState(1, "a", 5), ents(6, 10, size=30))
    wal.sync()
    wal.close()
    _, rec = reopen(tmp_path)
    assert [e.index for e in rec.entries] == list(range(1, 11)) and rec.torn_bytes == 0
    assert rec.hard_state == HardState(1, "a", 5)


def test_disk_full_while_syncing_rolls_back_to_the_last_sync(tmp_path, monkeypatch):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 0), ents(1, 5))
    wal.sync()
    seg = tmp_path / segments(tmp_path)[0]
    size = os.path.getsize(seg)
    wal.append(HardState(2, "b", 5), ents(4, 8, term=2))   # truncates 4..5, then not durable
    _enospc_after(monkeypatch, "fdatasync", 0)
    with pytest.raises(DiskFull):
        wal.sync()
    assert wal.last_index == 5 and wal.hard_state == HardState(1, "a", 0)
    assert os.path.getsize(seg) == size
    monkeypatch.undo()
    wal.append(HardState(2, "b", 5), ents(4, 8, term=2))   # the driver retries the same Ready
    wal.sync()
    wal.close()
    _, rec = reopen(tmp_path)
    assert rec.entries == ents(1, 3) + ents(4, 8, term=2)
    assert rec.hard_state == HardState(2, "b", 5)


def test_disk_full_while_saving_a_snapshot(tmp_path, monkeypatch):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 5), ents(1, 5))
    wal.sync()
    _enospc_after(monkeypatch, "write", 10)
    with pytest.raises(DiskFull):
        wal.save_snapshot(SnapshotMeta(5, 1, CONF), b"x" * 1000)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == segments(tmp_path)    # no snapshot, no tmp file
    wal.save_snapshot(SnapshotMeta(5, 1, CONF), b"x" * 1000)
    wal.close()
    _, rec = reopen(tmp_path)
    assert rec.snapshot.index == 5 and rec.snapshot_data == b"x" * 1000 and rec.entries == []


def test_other_io_errors_make_the_wal_unusable(tmp_path, monkeypatch):
    wal, _ = reopen(tmp_path)
    wal.append(None, ents(1, 1))

    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, "fdatasync", eio)
    with pytest.raises(WALError) as info:
        wal.sync()
    assert not isinstance(info.value, DiskFull)
    monkeypatch.undo()
    with pytest.raises(WALError):
        wal.append(None, ents(2, 2))
    wal.close()


# ------------------------------------------------------------------ syscalls
def _count(monkeypatch, *names):
    counts = dict.fromkeys(names, 0)
    for name in names:
        real = getattr(os, name)

        def wrapper(*a, _real=real, _name=name):
            counts[_name] += 1
            return _real(*a)
        monkeypatch.setattr(os, name, wrapper)
    return counts


def test_fsync_false_never_syncs(tmp_path, monkeypatch):
    counts = _count(monkeypatch, "fdatasync", "fsync")
    wal, _ = reopen(tmp_path / "raft", fsync=False, segment_bytes=500)
    for i in range(1, 101, 5):
        wal.append(HardState(1, "a", i), ents(i, i + 4))
        wal.sync()
    wal.save_snapshot(SnapshotMeta(50, 1, CONF), b"s")
    wal.close()
    assert counts == {"fdatasync": 0, "fsync": 0}
    assert len(segments(tmp_path / "raft")) > 1


def test_append_and_sync_is_one_write_and_one_fdatasync(tmp_path, monkeypatch):
    wal, _ = reopen(tmp_path)
    wal.append(HardState(1, "a", 0), ents(1, 1))
    wal.sync()                                        # the new segment's directory fsync
    counts = _count(monkeypatch, "write", "fdatasync", "fsync")
    wal.append(HardState(1, "a", 1), ents(2, 101, size=100))
    wal.sync()
    wal.sync()                                        # nothing new: no syscall
    assert counts == {"write": 1, "fdatasync": 1, "fsync": 0}
    assert wal.stats["appends"] == 2 and wal.stats["syncs"] == 2
    wal.close()


def test_terms_known_to_the_writer_follow_truncations_and_snapshots(tmp_path):
    """The WAL decides whether a snapshot continues the log from the terms it remembers:
    check them against the log after every step, and after a reopen."""
    wal, _ = reopen(tmp_path)
    log: dict[int, int] = {}

    def check():
        for i in range(wal._snap_index + 1, wal.last_index + 1):
            assert wal._term_at(i) == log[i], i
        assert wal._term_at(wal._snap_index) == wal._snap_term

    def add(batch):
        wal.append(None, batch)
        for i in [i for i in log if i >= batch[0].index]:
            del log[i]
        log.update((e.index, e.term) for e in batch)
        check()

    add(ents(1, 5, term=1))
    add(ents(6, 6, term=1) + ents(7, 9, term=2))
    add(ents(8, 8, term=3))                            # truncate inside a run
    add(ents(7, 7, term=3))                            # truncate at a run's start
    add(ents(8, 10, term=3) + ents(11, 12, term=5))
    wal.save_snapshot(SnapshotMeta(9, 3, CONF), b"")   # keeps 10..12
    check()
    add(ents(10, 10, term=3) + ents(11, 11, term=6))  # right after the snapshot, same term
    wal.save_snapshot(SnapshotMeta(11, 6, CONF), b"")  # the whole log
    check()
    add(ents(12, 13, term=6))
    wal.close()
    wal, rec = reopen(tmp_path)
    assert [(e.index, e.term) for e in rec.entries] == [(12, 6), (13, 6)]
    check()
    add(ents(12, 12, term=7))
    wal.close()

"""Raft's write-ahead log: entries, hard state and snapshots on disk (blocking I/O, used by
the driver from an executor; one caller at a time, no locking of its own).

Layout of the directory (shared/spec/raft-notes.md §6, WAL bullet):

    wal-<seq:016x>-<first index:016x>.log    segments, written in order, rolled past segment_bytes
    snap-<term:016x>-<index:016x>.snap       snapshots (newest two kept), each with its own CRC

A segment is a sequence of records:

    u32 length (of the payload) | u32 CRC-32 (zlib) over type + payload | u8 type | payload

where the payload is one msgpack array:

    REC_ENTRY    [term, index, type, data]   the next entry of the log
    REC_STATE    [term, vote, commit]        the hard state (the latest one wins)
    REC_TRUNCATE [index]                     drop the entries from `index` on (the entries
                                             that follow replace them)
    REC_SNAP     [index, term, keep]         a snapshot was saved; keep = the log held
                                             (index, term) and goes on, else it restarts
                                             after `index` (Raft §7: a snapshot from the
                                             leader that the log does not match discards it)

Each segment starts with the hard state as of its creation, so deleting older segments
never loses it. Recovery reads every segment in order; a bad record is a torn write only in
the last segment and only if no valid record follows it (the file is cut there), anything
else is WALCorrupt: data that may have been acknowledged is never dropped silently.
"""
from __future__ import annotations

import errno
import os
import re
import struct
import zlib
from bisect import bisect_right
from dataclasses import dataclass

import msgpack

from agent.errors import IsthmusError

from .messages import (ENTRY_CONFIG, ENTRY_NORMAL, Entry, HardState, SnapshotMeta,
                       decode_snapshot_meta, encode_snapshot_meta)

REC_ENTRY = 1
REC_STATE = 2
REC_TRUNCATE = 3
REC_SNAP = 4
_REC_TYPES = frozenset((REC_ENTRY, REC_STATE, REC_TRUNCATE, REC_SNAP))

_HDR = struct.Struct("<IIB")          # length, crc, type
_HDR_SIZE = _HDR.size                 # 9
# CRC-32 over type + payload == crc32(payload, crc32(type byte)): seed per type.
_CRC_SEED = {t: zlib.crc32(bytes([t])) for t in range(256)}

_SNAP_MAGIC = b"ISNAP\x00\x00\x01"     # format version 1
_SNAP_HDR = struct.Struct("<IQI")     # meta length, data length, CRC-32 over meta + data
_SNAP_HDR_SIZE = len(_SNAP_MAGIC) + _SNAP_HDR.size

_SEG_RE = re.compile(r"^wal-([0-9a-f]{16})-([0-9a-f]{16})\.log$")
_SNAP_RE = re.compile(r"^snap-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_KEEP_SNAPSHOTS = 2
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

_packb = msgpack.packb
_unpackb = msgpack.unpackb
_crc32 = zlib.crc32


class WALError(IsthmusError):
    """The write-ahead log cannot be read or written."""


class WALCorrupt(WALError):
    """Corruption that is not the torn tail of the last segment (never repaired silently)."""

    def __init__(self, path: str, reason: str, offset: int = -1) -> None:
        where = f"{path}" if offset < 0 else f"{path} at offset {offset}"
        super().__init__(f"corrupt write-ahead log: {where}: {reason}")
        self.path = path
        self.reason = reason
        self.offset = offset


class DiskFull(WALError):
    """ENOSPC / EDQUOT while writing or syncing; the WAL was rolled back and stays usable."""

    def __init__(self, path: str, exc: OSError, rolled_back_to: int) -> None:
        super().__init__(f"disk full writing {path}: {exc.strerror or exc}")
        self.path = path
        self.errno = exc.errno
        self.rolled_back_to = rolled_back_to   # last_index after the roll-back


@dataclass(slots=True)
class Recovered:
    """What WAL.open found on disk."""
    hard_state: HardState             # latest persisted (HardState() if none)
    snapshot: SnapshotMeta | None     # latest valid snapshot file's meta
    snapshot_data: bytes | None       # its data
    entries: list[Entry]              # every entry after snapshot.index (or from 1), contiguous
    torn_bytes: int                   # bytes cut from the tail of the last segment (0 = clean)


@dataclass(slots=True)
class _Segment:
    seq: int
    first: int            # index the log continues at when the segment was created
    max_index: int        # highest entry index written in it (first - 1 if none)
    name: str


@dataclass(slots=True)
class _Checkpoint:
    """In-memory state as of the last successful sync(): what a failed sync rolls back to."""
    offset: int
    last_index: int
    run_starts: list
    run_terms: list
    hard_state: HardState
    max_index: int
    need_state: bool
    snap_index: int
    snap_term: int


def _seg_name(seq: int, first: int) -> str:
    return f"wal-{seq:016x}-{first:016x}.log"


def _snap_name(term: int, index: int) -> str:
    return f"snap-{term:016x}-{index:016x}.snap"


def _record(typ: int, payload: bytes) -> bytes:
    return _HDR.pack(len(payload), _crc32(payload, _CRC_SEED[typ]), typ) + payload


def _state_record(hs: HardState) -> bytes:
    return _record(REC_STATE, _packb([hs.term, hs.vote, hs.commit]))


def _read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        chunks = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_all(fd: int, buf) -> None:
    """os.write until everything is written (a regular file writes short only when full)."""
    n = os.write(fd, buf)
    if n < len(buf):
        mv = memoryview(buf)
        while n < len(buf):
            n += os.write(fd, mv[n:])


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _valid_record_at(buf: bytes, mv: memoryview, p: int) -> bool:
    n = len(buf)
    if n - p < _HDR_SIZE or buf[p + 8] not in _REC_TYPES:
        return False
    length, crc, typ = _HDR.unpack_from(buf, p)
    end = p + _HDR_SIZE + length
    return end <= n and _crc32(mv[p + _HDR_SIZE:end], _CRC_SEED[typ]) == crc


def _scan(buf: bytes, path: str, last: bool) -> tuple[list, int]:
    """The records of one segment and the offset where the valid ones end.

    In the last segment a bad record with no valid record anywhere after it is a torn write
    (the caller cuts the file there); everything else bad raises WALCorrupt."""
    records = []
    n = len(buf)
    mv = memoryview(buf)
    off = 0
    while off < n:
        bad = ""
        if n - off < _HDR_SIZE:
            bad = "short record header"
        else:
            length, crc, typ = _HDR.unpack_from(buf, off)
            end = off + _HDR_SIZE + length
            if end > n:
                bad = f"record length {length} runs past the end of the file"
            elif _crc32(mv[off + _HDR_SIZE:end], _CRC_SEED[typ]) != crc:
                bad = "CRC mismatch"
        if bad:
            if not last:
                raise WALCorrupt(path, bad + " (not the last segment)", off)
            # A torn append leaves a prefix of our own bytes: nothing valid can follow it.
            # A valid record further on means the damage is in the middle (bit rot, a
            # corrupted length field): those later records may have been acknowledged.
            for p in range(off + 1, n - _HDR_SIZE + 1):
                if _valid_record_at(buf, mv, p):
                    raise WALCorrupt(path, f"{bad}, followed by a valid record at offset {p}", off)
            return records, off
        if typ not in _REC_TYPES:
            raise WALCorrupt(path, f"unknown record type {typ}", off)
        try:
            obj = _unpackb(mv[off + _HDR_SIZE:end])
        except Exception as exc:  # msgpack raises several types; the CRC matched, so it's ours
            raise WALCorrupt(path, f"undecodable record: {exc}", off) from None
        records.append((typ, obj, off))
        off = end
    return records, off


def _is_uint(v) -> bool:
    return type(v) is int and v >= 0


def _encode_snapshot(meta: SnapshotMeta, data: bytes) -> tuple[bytes, bytes]:
    meta_raw = _packb(encode_snapshot_meta(meta))
    crc = _crc32(data, _crc32(meta_raw))
    return _SNAP_MAGIC + _SNAP_HDR.pack(len(meta_raw), len(data), crc) + meta_raw, data


def _decode_snapshot(raw: bytes, name: str) -> tuple[SnapshotMeta, bytes] | None:
    """(meta, data) of a snapshot file, or None if it is not a valid one."""
    if len(raw) < _SNAP_HDR_SIZE or raw[:len(_SNAP_MAGIC)] != _SNAP_MAGIC:
        return None
    meta_len, data_len, crc = _SNAP_HDR.unpack_from(raw, len(_SNAP_MAGIC))
    if len(raw) != _SNAP_HDR_SIZE + meta_len + data_len:
        return None
    mv = memoryview(raw)
    meta_raw = mv[_SNAP_HDR_SIZE:_SNAP_HDR_SIZE + meta_len]
    data = mv[_SNAP_HDR_SIZE + meta_len:]
    if _crc32(data, _crc32(meta_raw)) != crc:
        return None
    try:
        meta = decode_snapshot_meta(_unpackb(meta_raw))
    except Exception:  # DecodeError, or one of msgpack's several types for garbage
        return None
    m = _SNAP_RE.match(name)
    if m is None or (int(m.group(1), 16), int(m.group(2), 16)) != (meta.term, meta.index):
        return None
    return meta, bytes(data)


class WAL:
    """Segmented write-ahead log of one Raft node (see the module docstring for the format)."""

    def __init__(self, directory: str, fsync: bool, segment_bytes: int) -> None:
        self._dir = directory
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self._fd = -1
        self._closed_segs: list[_Segment] = []
        self._cur: _Segment | None = None
        self._offset = 0                  # bytes in the current segment
        self._dir_dirty = False           # a segment was created: fsync the directory
        self._need_state = False          # the current segment lacks the latest hard state
        self._hard_state = HardState()
        self._last_index = 0
        self._snap_index = 0
        self._snap_term = 0
        # Terms of the entries (snap_index, last_index] as runs: entry i has the term of the
        # last run starting at or before i. Terms change rarely, so this stays tiny.
        self._run_starts: list[int] = []
        self._run_terms: list[int] = []
        self._snap_names: list[str] = []  # valid snapshot files, oldest first
        self._failed: str = ""
        self._ckpt: _Checkpoint | None = None
        self._packer = msgpack.Packer()
        self.stats = {"appends": 0, "syncs": 0, "bytes_written": 0, "segments": 0,
                      "snapshots_saved": 0, "segments_deleted": 0, "disk_full": 0}

    # ------------------------------------------------------------------ open / recovery
    @classmethod
    def open(cls, directory: str, *, fsync: bool = True,
             segment_bytes: int = 64 << 20) -> tuple["WAL", Recovered]:
        """Open (or create) the WAL in `directory` and recover what it holds."""
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        wal = cls(directory, fsync, segment_bytes)
        try:
            rec = wal._recover()
        except BaseException:
            if wal._fd >= 0:
                os.close(wal._fd)
            raise
        return wal, rec

    def _recover(self) -> Recovered:
        d = self._dir
        if not os.path.isdir(d):
            os.makedirs(d, exist_ok=True)
            if self._fsync:
                _fsync_dir(os.path.dirname(os.path.abspath(d)))
        names = sorted(os.listdir(d))
        for name in names:
            if name.startswith("snap-") and name.endswith(".snap.tmp"):
                os.unlink(os.path.join(d, name))   # a save_snapshot that never got renamed

        # Snapshots: newest valid one wins; invalid ones are set aside (renamed), not used.
        snaps = []
        for name in names:
            m = _SNAP_RE.match(name)
            if m:
                snaps.append((int(m.group(2), 16), int(m.group(1), 16), name))
        snaps.sort()
        snapshot: SnapshotMeta | None = None
        snapshot_data: bytes | None = None
        valid: list[str] = []
        for _, _, name in reversed(snaps):
            path = os.path.join(d, name)
            got = _decode_snapshot(_read_file(path), name)
            if got is None:
                os.replace(path, path + ".corrupt")
                continue
            valid.append(name)
            if snapshot is None:
                snapshot, snapshot_data = got
        self._snap_names = list(reversed(valid))
        s_index = snapshot.index if snapshot else 0
        s_term = snapshot.term if snapshot else 0

        # Segments: replay in order.
        segs = []
        for name in names:
            m = _SEG_RE.match(name)
            if m:
                segs.append(_Segment(int(m.group(1), 16), int(m.group(2), 16), 0, name))
        segs.sort(key=lambda s: s.seq)
        for a, b in zip(segs, segs[1:]):
            if b.seq != a.seq + 1:
                raise WALCorrupt(os.path.join(d, b.name), f"segment {a.seq + 1:016x} is missing")
        base = segs[0].first if segs else 1   # index of log[0]
        log: list[Entry] = []
        hard_state = HardState()
        torn = 0
        last_has_state = False
        for i, seg in enumerate(segs):
            path = os.path.join(d, seg.name)
            is_last = i == len(segs) - 1
            if seg.first != base + len(log):
                raise WALCorrupt(path, f"segment starts at index {seg.first} but the log "
                                       f"ends at {base + len(log) - 1}")
            buf = _read_file(path)
            records, good = _scan(buf, path, is_last)
            seg.max_index = seg.first - 1
            has_state = False
            for typ, obj, off in records:
                if typ == REC_ENTRY:
                    if (type(obj) is not list or len(obj) != 4 or not _is_uint(obj[0])
                            or not _is_uint(obj[1]) or obj[2] not in (ENTRY_NORMAL, ENTRY_CONFIG)
                            or type(obj[3]) is not bytes):
                        raise WALCorrupt(path, "bad entry record", off)
                    if obj[1] != base + len(log):
                        raise WALCorrupt(path, f"entry {obj[1]} does not follow "
                                               f"{base + len(log) - 1}", off)
                    log.append(Entry(obj[0], obj[1], obj[2], obj[3]))
                    seg.max_index = max(seg.max_index, obj[1])
                elif typ == REC_STATE:
                    if (type(obj) is not list or len(obj) != 3 or not _is_uint(obj[0])
                            or type(obj[1]) is not str or not _is_uint(obj[2])):
                        raise WALCorrupt(path, "bad hard state record", off)
                    hard_state = HardState(obj[0], obj[1], obj[2])
                    has_state = True
                elif typ == REC_TRUNCATE:
                    if type(obj) is not list or len(obj) != 1 or not _is_uint(obj[0]):
                        raise WALCorrupt(path, "bad truncate record", off)
                    at = obj[0]
                    if at > base + len(log):
                        raise WALCorrupt(path, f"truncation at {at} past the log's end", off)
                    if at < base:       # cannot happen (truncations stay above the snapshot);
                        log.clear()     # the gap check below catches it if it matters
                        base = at
                    else:
                        del log[at - base:]
                else:  # REC_SNAP
                    if (type(obj) is not list or len(obj) != 3 or not _is_uint(obj[0])
                            or not _is_uint(obj[1]) or type(obj[2]) is not bool):
                        raise WALCorrupt(path, "bad snapshot record", off)
                    # The writer decided (it knew the terms of entries since deleted).
                    if not obj[2]:
                        log.clear()
                        base = obj[0] + 1
            if is_last:
                last_has_state = has_state
                if good < len(buf):
                    torn = len(buf) - good
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.ftruncate(fd, good)
                        if self._fsync:
                            os.fsync(fd)
                    finally:
                        os.close(fd)

        # The view the core gets: entries after the snapshot, if the log continues it.
        disk_last = base + len(log) - 1
        if base - 1 > s_index:
            what = (f"snapshot {s_index}" if snapshot else "no snapshot")
            raise WALCorrupt(d, f"entries {s_index + 1}..{base - 1} are missing ({what}, "
                                f"the log starts at {base})")
        if base - 1 == s_index:
            entries, consistent = log, True
        elif s_index <= disk_last and log[s_index - base].term == s_term:
            entries, consistent = log[s_index - base + 1:], True
        else:
            # The log is shorter than the snapshot or conflicts with it (a crash between
            # writing a snapshot from the leader and its REC_SNAP record): the snapshot wins.
            entries, consistent = [], False

        self._hard_state = hard_state
        self._snap_index, self._snap_term = s_index, s_term
        self._last_index = entries[-1].index if entries else s_index
        for e in entries:
            if not self._run_terms or self._run_terms[-1] != e.term:
                self._run_starts.append(e.index)
                self._run_terms.append(e.term)

        # Continue in the last segment, or start the first one.
        if segs:
            self._closed_segs = segs[:-1]
            self._cur = segs[-1]
            self._fd = os.open(os.path.join(d, self._cur.name), os.O_WRONLY | os.O_APPEND)
            self._offset = os.fstat(self._fd).st_size
            self._need_state = not last_has_state and hard_state != HardState()
        else:
            first = self._last_index + 1
            self._cur = _Segment(1, first, first - 1, _seg_name(1, first))
            self._fd = self._create(self._cur.name)
            self._offset = 0
            self._need_state = hard_state != HardState()
        self.stats["segments"] = len(self._closed_segs) + 1
        self._checkpoint()
        if not consistent:
            self._write(self._with_state(_record(REC_SNAP, _packb([s_index, s_term, False]))))
            self._need_state = False
            self.sync()
        return Recovered(HardState(hard_state.term, hard_state.vote, hard_state.commit),
                         snapshot, snapshot_data, entries, torn)

    # ------------------------------------------------------------------ public API
    @property
    def last_index(self) -> int:
        """Index of the last entry written (the snapshot's index if none after it)."""
        return self._last_index

    @property
    def hard_state(self) -> HardState:
        """The latest hard state written."""
        hs = self._hard_state
        return HardState(hs.term, hs.vote, hs.commit)

    def append(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        """Write `entries` (replacing the log from entries[0].index on) and then `hard_state`,
        in one os.write; durable after sync()."""
        self._check_usable()
        parts = []
        new_starts: list[int] = []
        new_terms: list[int] = []
        if entries:
            first = entries[0].index
            if first > self._last_index + 1:
                raise ValueError(f"entry {first} leaves a gap after {self._last_index}")
            if first <= self._snap_index:
                raise ValueError(f"entry {first} is covered by the snapshot at {self._snap_index}")
            prev_term = self._term_at(first - 1)
            if first <= self._last_index:
                parts.append(_record(REC_TRUNCATE, _packb([first])))
            # One pass: check, encode, and note where the term changes. A reused Packer is
            # ~40% cheaper than msgpack.packb (which builds one per call).
            hdr = _HDR.pack
            pack = self._packer.pack
            seed = _CRC_SEED[REC_ENTRY]
            append = parts.append
            want = first
            # the run that entry first-1 belongs to goes on (none if it is the snapshot's)
            run_term = prev_term if first - 1 > self._snap_index else -1
            for e in entries:
                term = e.term
                if e.index != want:
                    raise ValueError(f"entries are not contiguous: {e.index} after {want - 1}")
                if term != run_term:
                    if term < prev_term:
                        raise ValueError(f"entry {e.index} has term {term} < {prev_term}")
                    new_starts.append(want)
                    new_terms.append(term)
                    run_term = prev_term = term
                p = pack([term, want, e.type, e.data])
                append(hdr(len(p), _crc32(p, seed), REC_ENTRY))
                append(p)
                want += 1
        if hard_state is not None:
            parts.append(_state_record(hard_state))
        if not parts:
            return
        buf = b"".join(parts)
        if self._offset > 0 and self._offset + len(buf) > self._segment_bytes:
            self._roll()
        if self._need_state and hard_state is None:
            buf = _state_record(self._hard_state) + buf
        self._write(buf)
        # Written: now the in-memory view follows.
        self._need_state = False
        self.stats["appends"] += 1
        if hard_state is not None:
            self._hard_state = HardState(hard_state.term, hard_state.vote, hard_state.commit)
        if entries:
            self._truncate_runs(entries[0].index)
            self._run_starts += new_starts
            self._run_terms += new_terms
            self._last_index = want - 1
            if self._last_index > self._cur.max_index:
                self._cur.max_index = self._last_index

    def sync(self) -> None:
        """Make everything written so far durable (fdatasync; directory fsync after a new
        segment). With fsync=False, nothing. On DiskFull everything written since the last
        successful sync is rolled back (last_index and hard state included): append again."""
        self._check_usable()
        if not self._fsync:
            self._checkpoint()
            return
        ck = self._ckpt
        if self._offset != ck.offset:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                self._sync_failed(exc)
            self.stats["syncs"] += 1
        if self._dir_dirty:
            try:
                _fsync_dir(self._dir)
            except OSError as exc:
                if exc.errno in _DISK_FULL:   # segment data is durable; retried next sync
                    self.stats["disk_full"] += 1
                    raise DiskFull(self._dir, exc, self._last_index) from exc
                self._fail(exc)
            self._dir_dirty = False
        self._checkpoint()

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> None:
        """Persist a snapshot atomically, record it in the log, keep the newest two snapshot
        files and delete the segments that only hold entries both of them cover."""
        self._check_usable()
        if (meta.index, meta.term) < (self._snap_index, self._snap_term):
            raise ValueError(f"snapshot {meta.index} is older than the one at {self._snap_index}")
        name = _snap_name(meta.term, meta.index)
        path = os.path.join(self._dir, name)
        tmp = path + ".tmp"
        head, body = _encode_snapshot(meta, data)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, head)
                if body:
                    _write_all(fd, body)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            if self._fsync:
                _fsync_dir(self._dir)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if exc.errno in _DISK_FULL:
                self.stats["disk_full"] += 1
                raise DiskFull(tmp, exc, self._last_index) from exc
            raise WALError(f"cannot write snapshot {path}: {exc}") from exc
        if name in self._snap_names:
            self._snap_names.remove(name)
        self._snap_names.append(name)

        # Raft §7: a log that holds the snapshot's last entry goes on after it; any other
        # log (shorter, or conflicting: a snapshot from the leader) is discarded.
        keep = meta.index <= self._last_index and self._term_at(meta.index) == meta.term
        self._write(self._with_state(_record(REC_SNAP, _packb([meta.index, meta.term, keep]))))
        self._need_state = False
        if not keep or meta.index == self._last_index:
            self._last_index = meta.index
            self._run_starts.clear()
            self._run_terms.clear()
        else:
            self._truncate_runs_below(meta.index + 1)
        self._snap_index, self._snap_term = meta.index, meta.term
        self.sync()
        self.stats["snapshots_saved"] += 1

        # Keep two snapshots; drop segments only the older of them still needs, so a
        # corrupt newest snapshot can fall back to the previous one with its log intact.
        while len(self._snap_names) > _KEEP_SNAPSHOTS:
            os.unlink(os.path.join(self._dir, self._snap_names.pop(0)))
        point = min(int(_SNAP_RE.match(n).group(2), 16) for n in self._snap_names)
        deleted = 0
        while self._closed_segs and self._closed_segs[0].max_index <= point:
            os.unlink(os.path.join(self._dir, self._closed_segs.pop(0).name))
            deleted += 1
        self.stats["segments_deleted"] += deleted
        self.stats["segments"] = len(self._closed_segs) + 1
        if deleted and self._fsync:
            _fsync_dir(self._dir)

    def close(self) -> None:
        """Sync (unless fsync=False) and close; further calls raise WALError."""
        if self._fd < 0:
            return
        try:
            if not self._failed:
                self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1
            self._failed = self._failed or "closed"

    # ------------------------------------------------------------------ internals
    def _check_usable(self) -> None:
        if self._failed:
            raise WALError(f"WAL {self._dir} is unusable: {self._failed}")

    def _fail(self, exc: OSError) -> None:
        """An I/O error we cannot reason about (EIO after fsync: the page cache is no longer
        trustworthy): refuse every further call; the driver must restart from disk."""
        self._failed = f"{exc.strerror or exc}"
        raise WALError(f"WAL {self._dir} failed: {exc}") from exc

    def _term_at(self, index: int) -> int:
        if index == self._snap_index:
            return self._snap_term
        if index < self._snap_index or index > self._last_index or not self._run_starts:
            return 0
        return self._run_terms[bisect_right(self._run_starts, index) - 1]

    def _truncate_runs(self, first: int) -> None:
        """Forget the terms of entries >= first."""
        k = bisect_right(self._run_starts, first - 1)
        del self._run_starts[k:]
        del self._run_terms[k:]

    def _truncate_runs_below(self, first: int) -> None:
        """Forget the terms of entries < first (covered by a snapshot)."""
        starts, terms = self._run_starts, self._run_terms
        k = bisect_right(starts, first) - 1
        if k > 0:
            del starts[:k]
            del terms[:k]
        if starts and starts[0] < first:
            starts[0] = first

    def _with_state(self, rec: bytes) -> bytes:
        return _state_record(self._hard_state) + rec if self._need_state else rec

    def _create(self, name: str) -> int:
        path = os.path.join(self._dir, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                self.stats["disk_full"] += 1
                raise DiskFull(path, exc, self._last_index) from exc
            raise WALError(f"cannot create segment {path}: {exc}") from exc
        self._dir_dirty = True
        return fd

    def _roll(self) -> None:
        # The closed segment must be durable first: recovery treats a bad record in any
        # segment but the last as corruption.
        self.sync()
        first = self._last_index + 1
        seg = _Segment(self._cur.seq + 1, first, first - 1, _seg_name(self._cur.seq + 1, first))
        fd = self._create(seg.name)
        os.close(self._fd)
        self._closed_segs.append(self._cur)
        self._cur, self._fd, self._offset = seg, fd, 0
        self._need_state = self._hard_state != HardState()
        self.stats["segments"] = len(self._closed_segs) + 1
        self._checkpoint()

    def _write(self, buf: bytes) -> None:
        """Append buf to the current segment; on failure cut it back to where it was."""
        try:
            _write_all(self._fd, buf)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, self._offset)   # O_APPEND: the next write lands there
            except OSError as exc2:
                self._fail(exc2)
            if exc.errno in _DISK_FULL:
                self.stats["disk_full"] += 1
                raise DiskFull(os.path.join(self._dir, self._cur.name), exc,
                               self._last_index) from exc
            self._fail(exc)
        self._offset += len(buf)
        self.stats["bytes_written"] += len(buf)

    def _checkpoint(self) -> None:
        hs = self._hard_state
        self._ckpt = _Checkpoint(self._offset, self._last_index, list(self._run_starts),
                                 list(self._run_terms), HardState(hs.term, hs.vote, hs.commit),
                                 self._cur.max_index, self._need_state, self._snap_index,
                                 self._snap_term)

    def _sync_failed(self, exc: OSError) -> None:
        if exc.errno not in _DISK_FULL:
            self._fail(exc)
        # What fdatasync could not write is in an unknown state (the kernel may have dropped
        # the dirty pages): cut the segment back to the last synced offset and forget it all.
        ck = self._ckpt
        try:
            os.ftruncate(self._fd, ck.offset)
        except OSError as exc2:
            self._fail(exc2)
        self._offset = ck.offset
        self._last_index = ck.last_index
        self._run_starts, self._run_terms = list(ck.run_starts), list(ck.run_terms)
        self._hard_state = HardState(ck.hard_state.term, ck.hard_state.vote, ck.hard_state.commit)
        self._cur.max_index = ck.max_index
        self._need_state = ck.need_state
        self._snap_index, self._snap_term = ck.snap_index, ck.snap_term
        self.stats["disk_full"] += 1
        raise DiskFull(os.path.join(self._dir, self._cur.name), exc, self._last_index) from exc

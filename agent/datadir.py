"""The agent's data directory: an exclusive lock, and the persisted node ID."""
from __future__ import annotations

import fcntl
import os
import uuid

from .errors import DataDirInUse, IsthmusError

LOCK_NAME = "isthmus.lock"
NODE_ID_NAME = "node-id"


class DataDir:
    """Holds `<path>/isthmus.lock` with flock for as long as the agent runs."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def lock(self) -> None:
        """Take the lock or raise DataDirInUse naming the holder's pid."""
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise IsthmusError(f"data_dir {self.path!r} cannot be used: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(f"data_dir {self.path!r} is in use by another agent "
                               f"(pid {holder}); each agent needs its own data_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def unlock(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing releases the flock
            self._fd = None

    def node_id(self, configured: str | None) -> str:
        """The configured node ID, else the persisted one, else a new one (persisted)."""
        path = os.path.join(self.path, NODE_ID_NAME)
        if configured:
            stored = _read(path)
            if stored and stored != configured.lower():
                raise IsthmusError(f"node_id {configured} does not match the node ID {stored} "
                                   f"stored in {path}")
            if not stored:
                _write_atomic(path, configured.lower())
            return configured.lower()
        stored = _read(path)
        if stored:
            try:
                return str(uuid.UUID(stored))
            except ValueError:
                raise IsthmusError(f"{path} holds an invalid node ID {stored!r}") from None
        new = str(uuid.uuid4())
        _write_atomic(path, new)
        return new


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def _write_atomic(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

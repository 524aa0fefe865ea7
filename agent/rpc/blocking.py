"""Blocking queries (Consul's `?index=&wait=`): waiters on state-store tables, woken when a
batch of applied Raft entries changed one of their tables."""
from __future__ import annotations

import asyncio

DEFAULT_WAIT = 300.0        # Consul's default blocking wait: 5 minutes
MAX_WAIT = 600.0            # and its ceiling: 10 minutes


def wait_time(requested: float) -> float:
    """The wait a blocking query gets: default 5 min, at most 10 min, plus Consul's jitter
    (up to wait/16) is added by the caller with its own randomness."""
    if requested <= 0:
        return DEFAULT_WAIT
    return min(requested, MAX_WAIT)


class Notifier:
    """Futures per table name; `notify(tables)` resolves every waiter on any of them."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future]] = {}

    async def wait(self, tables: tuple[str, ...], timeout: float) -> bool:
        """Until one of `tables` changes (True) or `timeout` passes (False)."""
        if timeout <= 0:
            return False
        fut = asyncio.get_running_loop().create_future()
        for t in tables:
            self._waiters.setdefault(t, set()).add(fut)
        try:
            await asyncio.wait([fut], timeout=timeout)
            return fut.done()
        finally:
            for t in tables:
                ws = self._waiters.get(t)
                if ws is not None:
                    ws.discard(fut)
                    if not ws:
                        del self._waiters[t]
            if not fut.done():
                fut.cancel()

    def notify(self, tables) -> None:
        for t in tables:
            for fut in self._waiters.pop(t, ()):
                if not fut.done():
                    fut.set_result(None)

    def waiting(self) -> int:
        return len({f for ws in self._waiters.values() for f in ws})

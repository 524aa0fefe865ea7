"""Anti-entropy (Consul's agent/ae/ae.go + local.State.SyncFull/SyncChanges).

A full sync reads the catalog's view of this node (Catalog.NodeServices, Health.NodeChecks),
marks what differs and pushes it; it runs at start, every `interval` plus a random stagger
of up to interval × scale_factor(cluster size), after a failure every `retry_interval` plus
stagger, and at once when a server shows up. Local changes between full syncs are pushed
by partial syncs (debounced), which only send what is marked out of sync.
"""
from __future__ import annotations

import asyncio
import math
import random
from typing import Any, Awaitable, Callable

from .. import log
from ..errors import IsthmusError
from .state import LocalState

_log = log.get("agent.sync")

SYNC_INTERVAL = 60.0         # Consul's ae_interval
RETRY_INTERVAL = 15.0        # Consul's retryFailIntv
SCALE_THRESHOLD = 128        # Consul's scaleThreshold


def scale_factor(nodes: int) -> int:
    """Consul's aeScale: 1 up to 128 nodes, then ceil(log2(n) - log2(128)) + 1 (so 256
    nodes → 2, 512 → 3, 1024 → 4): bigger clusters sync each node less often."""
    if nodes <= SCALE_THRESHOLD:
        return 1
    return int(math.ceil(math.log2(nodes) - math.log2(SCALE_THRESHOLD)) + 1)


RPC = Callable[[str, Any], Awaitable[Any]]


class StateSyncer:
    """Runs full and partial syncs of a LocalState through `rpc(method, body)`."""

    def __init__(self, state: LocalState, rpc: RPC, cluster_size: Callable[[], int], *,
                 interval: float = SYNC_INTERVAL, retry_interval: float = RETRY_INTERVAL,
                 debounce: float = 0.02, rng: random.Random | None = None) -> None:
        self.state = state
        self._rpc = rpc
        self._cluster_size = cluster_size
        self.interval = interval
        self.retry_interval = retry_interval
        self.debounce = debounce
        self._rng = rng or random.Random()
        self._full = asyncio.Event()
        self._changes = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.full_syncs = 0                 # successful full syncs (tests, stats)
        self.last_error: str = ""
        state.on_change = self.trigger_changes

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def trigger_full(self) -> None:
        self._full.set()

    def trigger_changes(self) -> None:
        self._changes.set()

    def stagger(self, d: float) -> float:
        return self._rng.random() * d * scale_factor(self._cluster_size())

    # ------------------------------------------------------------------ syncs
    async def sync_full(self) -> None:
        """Compare with the catalog and push every difference (raises on RPC errors)."""
        st = self.state
        req = {"Datacenter": st.datacenter, "Node": st.node_name}
        services = await self._rpc("Catalog.NodeServices", dict(req))
        checks = await self._rpc("Health.NodeChecks", dict(req))
        ns = (services or {}).get("NodeServices") or {}
        st.update_sync_state(ns.get("Node"), ns.get("Services") or {},
                             (checks or {}).get("HealthChecks") or [])
        await self.sync_changes()
        self.full_syncs += 1

    async def sync_changes(self) -> None:
        """Push what is out of sync; a "Permission denied" item is skipped as Consul does."""
        for op in self.state.plan():
            try:
                await self._rpc(op.method, op.body)
            except IsthmusError as exc:
                if str(exc).startswith("Permission denied"):
                    _log.warning("%s refused: %s", op.method, exc)
                    continue
                raise
            self.state.done(op)

    async def _wait(self, timeout: float, *events: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._full.clear()
            self._changes.clear()
            try:
                await self.sync_full()
                self.last_error = ""
                _log.debug("full sync done")
                next_full = loop.time() + self.interval + self.stagger(self.interval)
            except IsthmusError as exc:
                if str(exc) != self.last_error:
                    _log.warning("failed to sync remote state: %s", exc)
                self.last_error = str(exc)
                next_full = loop.time() + self.retry_interval + self.stagger(self.retry_interval)
            # Partial syncs until the next full sync is due (or asked for).
            while not self._full.is_set() and loop.time() < next_full:
                await self._wait(next_full - loop.time(), self._full, self._changes)
                if self._changes.is_set() and not self._full.is_set():
                    await asyncio.sleep(self.debounce)     # gather a burst of changes
                    self._changes.clear()
                    if self.last_error:
                        break                  # the last full sync failed: redo it instead
                    try:
                        await self.sync_changes()
                    except IsthmusError as exc:
                        _log.warning("failed to sync changes: %s", exc)
                        self.last_error = str(exc)
                        next_full = min(next_full, loop.time() + self.retry_interval
                                        + self.stagger(self.retry_interval))

"""Network coordinates into the state store: the agent's sender and the server's batcher.

* Every agent (client or server) sends its own LAN Vivaldi coordinate to the servers with
  `Coordinate.Update` (Consul's Agent.sendCoordinate): every `rate_scaled_interval(64/s,
  15 s, LAN members)` plus a random stagger of up to as much again, so a cluster of any
  size sends about 64 updates a second at most. Nothing is sent while the agent has no
  coordinate (LAN gossip off, or coordinates disabled).
* The `Coordinate.Update` endpoint (agent/rpc/coordinate.py) runs on the leader and only
  records the update in its `CoordinateBatcher`: the latest one per node and segment. Every
  `update_period` (Consul's consul.coordinate.update_period: 5 s, 100 ms in -dev) the
  batcher commits what it holds, at most `update_batch_size` (128) per Raft command and
  `update_max_batches` (5) commands per period; the rest is discarded with a warning (the
  nodes send again), as Consul's batchApplyUpdates.
"""
from __future__ import annotations

import asyncio
import random
import weakref
from typing import TYPE_CHECKING, Any

from . import log
from .errors import IsthmusError
from .state.coordinates import batch_update_command

if TYPE_CHECKING:
    from .agent import Agent
    from .consensus import Consensus

_log = log.get("coordinate")

SYNC_COORDINATE_RATE_TARGET = 64.0      # Consul's sync_coordinate_rate_target (updates/s)
SYNC_COORDINATE_INTERVAL_MIN = 15.0     # Consul's sync_coordinate_interval_min (s)
UPDATE_PERIOD = 5.0                     # Consul's consul.coordinate.update_period
UPDATE_PERIOD_DEV = 0.1                 # ... in -dev (Consul's DevConsulSource)
UPDATE_BATCH_SIZE = 128                 # consul.coordinate.update_batch_size
UPDATE_MAX_BATCHES = 5                  # consul.coordinate.update_max_batches


def rate_scaled_interval(rate: float, min_interval: float, n: int) -> float:
    """Consul's lib.RateScaledInterval: `n / rate` seconds, at least `min_interval`, so
    that `n` nodes each sending once per interval make about `rate` sends a second."""
    if rate <= 0:
        return min_interval
    return max(min_interval, n / rate)


class PendingUpdates:
    """The leader's latest update per node and segment, until the next flush. Pure."""

    def __init__(self) -> None:
        self._updates: dict[str, dict] = {}

    def __len__(self) -> int:
        return len(self._updates)

    def add(self, update: dict) -> None:
        """Record `update` ({Node, Segment, Coord}), replacing an older one of the node."""
        self._updates[f"{update['Node']}:{update.get('Segment') or ''}"] = update

    def take(self, batch_size: int, max_batches: int) -> tuple[list[list[dict]], int]:
        """Empty the pending set: (batches to commit, how many updates were discarded)."""
        pending, self._updates = list(self._updates.values()), {}
        limit = batch_size * max_batches
        discarded = max(0, len(pending) - limit)
        pending = pending[:limit]
        return [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)], discarded


class CoordinateBatcher:
    """A server's pending coordinate updates and the loop that commits them."""

    def __init__(self, consensus: "Consensus", update_period: float = UPDATE_PERIOD,
                 batch_size: int = UPDATE_BATCH_SIZE,
                 max_batches: int = UPDATE_MAX_BATCHES) -> None:
        self.consensus = consensus
        self.update_period = update_period
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.pending = PendingUpdates()
        self._task: asyncio.Task | None = None

    def add(self, update: dict) -> None:
        self.pending.add(update)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.update_period)
            try:
                await self.flush()
            except IsthmusError as exc:
                _log.warning("Batch update failed: %s", exc)

    async def flush(self) -> int:
        """Commit what is pending now; the number of updates sent to Raft."""
        batches, discarded = self.pending.take(self.batch_size, self.max_batches)
        if discarded:
            _log.warning("Discarded %d coordinate updates", discarded)
        sent = 0
        node = self.consensus.node
        for batch in batches:
            if node is None:
                break
            await node.apply(batch_update_command(batch))   # raises RaftError on failure
            sent += len(batch)
        return sent


_batchers: "weakref.WeakKeyDictionary[Consensus, CoordinateBatcher]" = weakref.WeakKeyDictionary()


def batcher_for(consensus: "Consensus") -> CoordinateBatcher:
    """The one CoordinateBatcher of this server (made on first use: the RPC endpoint may
    record updates before the agent starts the flush loop)."""
    b = _batchers.get(consensus)
    if b is None:
        period = UPDATE_PERIOD_DEV if consensus.agent.config.dev_mode else UPDATE_PERIOD
        b = _batchers[consensus] = CoordinateBatcher(consensus, period)
    return b


class CoordinateSender:
    """Sends this agent's LAN coordinate to the servers; on a server also runs the batcher."""

    def __init__(self, agent: "Agent", rng: random.Random | None = None,
                 rate: float = SYNC_COORDINATE_RATE_TARGET,
                 min_interval: float = SYNC_COORDINATE_INTERVAL_MIN) -> None:
        self.agent = agent
        self.rate = rate
        self.min_interval = min_interval
        self._rng = rng or random.Random()
        self._task: asyncio.Task | None = None
        self._batcher: CoordinateBatcher | None = None
        self.sent = 0                       # updates the servers accepted

    @classmethod
    def start_for(cls, agent: "Agent") -> "CoordinateSender":
        """A started sender for `agent` (what Agent.start calls)."""
        sender = cls(agent)
        sender.start()
        return sender

    def start(self) -> None:
        if self.agent.consensus is not None:
            self._batcher = batcher_for(self.agent.consensus)
            self._batcher.start()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._batcher is not None:
            await self._batcher.stop()
            self._batcher = None

    def interval(self) -> float:
        """The wait before the next send, stagger included."""
        lan = self.agent.lan
        n = len(lan.members()) if lan is not None else 1
        intv = rate_scaled_interval(self.rate, self.min_interval, n)
        return intv + self._rng.random() * intv

    def update_request(self) -> dict[str, Any] | None:
        """The Coordinate.Update body for this agent now, or None without a coordinate."""
        lan = self.agent.lan
        coords = lan.serf.coords if lan is not None else None
        if coords is None:
            return None
        cfg = self.agent.config
        return {"Datacenter": cfg.datacenter, "Node": cfg.node_name, "Segment": "",
                "Coord": coords.get_coordinate().to_wire()}

    async def send_once(self) -> bool:
        """Send one update; False when there was nothing to send or the send failed."""
        body = self.update_request()
        if body is None:
            return False
        try:
            await self.agent.rpc("Coordinate.Update", body)
        except (IsthmusError, OSError, asyncio.TimeoutError) as exc:
            _log.warning("Coordinate update error: %s", exc)
            return False
        self.sent += 1
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval())
            await self.send_once()

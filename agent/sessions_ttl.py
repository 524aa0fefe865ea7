"""The leader's session duties (Consul's agent/consul/session_ttl.go), and lock delays.

* TTL timers run on the leader only. A session with a TTL gets a timer of TTL × 2 (Consul's
  SessionTTLMultiplier: a grace period for clients and network delays — a session never
  expires before its TTL, and at most 2 × TTL after its last renewal); create and renew
  reset it; when it fires the leader proposes a destroy (retried up to 6 times, 10 s × attempt
  apart). A new leader (after a barrier, so it has applied everything its predecessor
  committed) starts a fresh timer for every session with a TTL; a server losing leadership
  drops its timers.
* Lock delays: the store reports (key, delay) when an invalidated session leaves one; every
  server stamps it with its own clock, and the leader refuses `lock` proposals on that key
  until it passes (Consul's KVS.Apply / Txn.Apply check before raftApply).
"""
from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from . import log
from .config.load import parse_go_duration
from .errors import IsthmusError
from .state.sessions import session_command

if TYPE_CHECKING:
    from .consensus import Consensus

_log = log.get("session")

TTL_MULTIPLIER = 2                  # Consul's structs.SessionTTLMultiplier
MAX_INVALIDATE_ATTEMPTS = 6         # Consul's maxInvalidateAttempts
INVALIDATE_RETRY_BASE = 10.0        # seconds (Consul's invalidateRetryBase)

_drivers: "weakref.WeakKeyDictionary[Consensus, SessionDriver]" = weakref.WeakKeyDictionary()


def driver_for(consensus: "Consensus") -> "SessionDriver":
    """The one SessionDriver of this server's consensus (made on first use)."""
    d = _drivers.get(consensus)
    if d is None:
        d = _drivers[consensus] = SessionDriver(consensus)
    return d


def ttl_seconds(ttl: str) -> float:
    """A session's TTL in seconds; 0 for none (Consul's fast path for "", "0", "0s", ...)."""
    if ttl in ("", "0", "0s", "0m", "0h"):
        return 0.0
    try:
        return parse_go_duration(ttl)
    except ValueError:
        return 0.0


class SessionDriver:
    """TTL timers (leader only) and lock-delay expirations (every server)."""

    def __init__(self, consensus: "Consensus") -> None:
        self.consensus = consensus
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.lock_delays: dict[str, float] = {}          # key -> loop time the delay ends
        self._tasks: set[asyncio.Task] = set()
        self._leading = False
        sessions = consensus.store.sessions
        sessions.lock_delay_listeners.append(self._on_lock_delay)
        sessions.destroy_listeners.append(self.clear)
        consensus.node.listeners.append(self._on_role)
        self._on_role("", "")

    # ------------------------------------------------------------------ lock delay

    def _on_lock_delay(self, key: str, delay: float) -> None:
        now = asyncio.get_running_loop().time()
        self.lock_delays[key] = max(self.lock_delays.get(key, 0.0), now + delay)

    def lock_delayed(self, key: str) -> bool:
        """True while a lock delay blocks acquiring `key`."""
        until = self.lock_delays.get(key)
        if until is None:
            return False
        if until <= asyncio.get_running_loop().time():
            del self.lock_delays[key]
            return False
        return True

    # ------------------------------------------------------------------ TTL timers

    def _on_role(self, leader: str, role: str) -> None:
        node = self.consensus.node
        leading = node is not None and node.is_leader
        if leading == self._leading:
            return
        self._leading = leading
        if leading:
            self._spawn(self._initialize())
        else:
            self.clear_all()

    async def _initialize(self) -> None:
        """Consul's initializeSessionTimers, after a barrier (establishLeadership)."""
        try:
            await self.consensus.node.barrier()
        except IsthmusError as exc:
            _log.warning("session timers not started: %s", exc)
            return
        if not self._leading:
            return
        for sess in self.consensus.store.sessions.list():
            self.reset(sess.id, sess.ttl)

    def reset(self, sid: str, ttl: str) -> None:
        """(Re)start `sid`'s timer: TTL × 2 from now (no-op for sessions without a TTL or
        on a server that does not lead)."""
        secs = ttl_seconds(ttl)
        if secs <= 0 or not self._leading:
            return
        self.clear(sid)
        loop = asyncio.get_running_loop()
        self.timers[sid] = loop.call_later(secs * TTL_MULTIPLIER,
                                           lambda: self._spawn(self._invalidate(sid)))

    def clear(self, sid: str) -> None:
        h = self.timers.pop(sid, None)
        if h is not None:
            h.cancel()

    def clear_all(self) -> None:
        for h in self.timers.values():
            h.cancel()
        self.timers.clear()

    async def _invalidate(self, sid: str) -> None:
        self.timers.pop(sid, None)
        for attempt in range(1, MAX_INVALIDATE_ATTEMPTS + 1):
            node = self.consensus.node
            if node is None or not self._leading:
                return
            if self.consensus.store.sessions.get(sid) is None:
                return
            try:
                _, result = await node.apply(session_command("destroy", {"ID": sid}))
                if isinstance(result, Exception):
                    raise result
                _log.debug("session %s expired (TTL)", sid)
                return
            except IsthmusError as exc:
                _log.error("invalidate session %s failed (attempt %d): %s", sid, attempt, exc)
                await asyncio.sleep(INVALIDATE_RETRY_BASE * attempt)
        _log.error("maximum revoke attempts reached for session: %s", sid)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        self.clear_all()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

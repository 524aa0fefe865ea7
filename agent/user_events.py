"""User events (Consul's agent/user_event.go) over the LAN gossip pool.

An event is a Serf user event named "consul:event:<name>" whose payload is the msgpack of
Consul's UserEvent struct (ID, n, p, nf, sf, tf, v — Go's field order and codec tags), sent
without coalescing, so Consul agents in the same pool read ours and we read theirs. Every
agent keeps the last 256 events that pass its filters (node name, service, tag regular
expressions) in a ring, which /v1/event/list serves; the list's index is the last event's
ID folded to 64 bits (Consul's uuidToUint64).
"""
from __future__ import annotations

import asyncio
import re
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from . import log
from .errors import IsthmusError
from .serf.core import UserEvent as SerfUserEvent

if TYPE_CHECKING:
    from .agent import Agent

_log = log.get("agent")

USER_EVENT_PREFIX = "consul:event:"     # Consul's userEventPrefix
USER_EVENT_MAX_VERSION = 1              # Consul's userEventMaxVersion
EVENT_BUFFER = 256                      # Consul's eventBuf size
REMOTE_EXEC_NAME = "_rexec"             # Consul's remote exec event: never buffered


class EventError(IsthmusError):
    """A user event that cannot be fired (Consul's validateUserEventParams messages)."""


@dataclass(slots=True)
class Event:
    id: str
    name: str
    payload: bytes
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = USER_EVENT_MAX_VERSION
    ltime: int = 0

    def encode(self) -> bytes:
        """Consul's msgpack of UserEvent (omitempty fields left out when empty)."""
        body: dict[str, Any] = {"ID": self.id, "n": self.name}
        if self.payload:
            body["p"] = self.payload
        if self.node_filter:
            body["nf"] = self.node_filter
        if self.service_filter:
            body["sf"] = self.service_filter
        if self.tag_filter:
            body["tf"] = self.tag_filter
        body["v"] = self.version
        return msgpack.packb(body, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes, ltime: int) -> "Event":
        """From a Serf payload; ValueError when it is not a UserEvent."""
        try:
            raw = msgpack.unpackb(data, raw=True)
        except Exception as exc:            # msgpack raises several types on garbage
            raise ValueError(f"not msgpack: {exc}") from None
        if not isinstance(raw, dict):
            raise ValueError("not a map")

        def text(k: bytes) -> str:
            v = raw.get(k, b"")
            if isinstance(v, bytes):
                return v.decode("utf-8", "replace")
            if v is None:
                return ""
            raise ValueError(f"field {k!r} is not a string")
        p = raw.get(b"p") or b""
        v = raw.get(b"v") or 0
        if not isinstance(p, bytes) or type(v) is not int:
            raise ValueError("bad payload or version")
        return cls(text(b"ID"), text(b"n"), p, text(b"nf"), text(b"sf"), text(b"tf"), v, ltime)

    def as_api(self) -> dict:
        import base64
        return {"ID": self.id, "Name": self.name,
                "Payload": base64.b64encode(self.payload).decode() if self.payload else None,
                "NodeFilter": self.node_filter, "ServiceFilter": self.service_filter,
                "TagFilter": self.tag_filter, "Version": self.version, "LTime": self.ltime}


def uuid_to_uint64(ident: str) -> int:
    """Consul's uuidToUint64: the two 64-bit halves of the UUID XORed."""
    try:
        low = int(ident[0:8] + ident[9:13] + ident[14:18], 16)
        high = int(ident[19:23] + ident[24:36], 16)
    except ValueError:
        return 1
    return low ^ high


def _compile(pattern: str, what: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise EventError(f"Invalid {what} filter: {exc}") from None


def validate(ev: Event) -> None:
    if not ev.name:
        raise EventError("User event missing name")
    if ev.tag_filter and not ev.service_filter:
        raise EventError("Cannot provide tag filter without service filter")
    for pat, what in ((ev.node_filter, "node"), (ev.service_filter, "service"),
                      (ev.tag_filter, "tag")):
        if pat:
            _compile(pat, what)


class UserEvents:
    """The agent's ring of received user events and the waiters of blocking lists."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.events: deque[Event] = deque(maxlen=EVENT_BUFFER)
        self._changed = asyncio.Event()

    def _on_event(self, ev: Any) -> None:
        if not isinstance(ev, SerfUserEvent) or not ev.name.startswith(USER_EVENT_PREFIX):
            return
        try:
            msg = Event.decode(ev.payload, ev.ltime)
        except ValueError as exc:
            _log.error("Failed to decode event: %s", exc)
            return
        if not self._should_process(msg):
            return
        if msg.name == REMOTE_EXEC_NAME:
            _log.info("ignoring remote exec event (%s), disabled.", msg.id)
            return
        _log.debug("new event: %s (%s)", msg.name, msg.id)
        self.events.append(msg)
        self._changed.set()
        self._changed = asyncio.Event()

    def _should_process(self, msg: Event) -> bool:
        """Consul's shouldProcessUserEvent: filters against this agent."""
        if msg.version > USER_EVENT_MAX_VERSION:
            _log.warning("Event version %d may have unsupported features (%s)", msg.version, msg.name)
        try:
            if msg.node_filter and not re.search(msg.node_filter, self.agent.config.node_name):
                return False
            if msg.service_filter:
                svc_re = re.compile(msg.service_filter)
                tag_re = re.compile(msg.tag_filter) if msg.tag_filter else None
                for svc in _local_services(self.agent):
                    if not svc_re.search(svc.get("Service") or ""):
                        continue
                    if tag_re is None or any(tag_re.search(t) for t in svc.get("Tags") or ()):
                        return True
                return False
        except re.error as exc:
            _log.error("Failed to parse filter for event '%s': %s", msg.name, exc)
            return False
        return True

    def fire(self, ev: Event) -> Event:
        """Validate, give the event its ID and version, and gossip it on the LAN pool."""
        validate(ev)
        ev.id = str(uuid.uuid4())
        ev.version = USER_EVENT_MAX_VERSION
        try:
            self.agent.pool(False).user_event(USER_EVENT_PREFIX + ev.name, ev.encode(),
                                              coalesce=False)
        except ValueError as exc:           # over Serf's size limits
            raise EventError(str(exc)) from None
        return ev

    def list(self, name: str = "") -> list[Event]:
        return [e for e in self.events if not name or e.name == name]

    async def wait(self, timeout: float) -> None:
        """Until a new event arrives or `timeout` passes."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass


def _local_services(agent: "Agent") -> list[dict]:
    """This agent's registered services, from its local state when it has one."""
    for attr in ("local", "local_state", "state"):
        st = getattr(agent, attr, None)
        fn = getattr(st, "active_services", None)
        if callable(fn):
            return list(fn().values())
    return []


_attached: "weakref.WeakKeyDictionary[Agent, UserEvents]" = weakref.WeakKeyDictionary()


def attach(agent: "Agent") -> UserEvents:
    """The agent's UserEvents, listening to its LAN pool from the first call on (call it
    once the pool has started so that no event is missed; later calls are cheap)."""
    ue = _attached.get(agent)
    if ue is None:
        ue = _attached[agent] = UserEvents(agent)
    pool = agent.lan
    if pool is not None and ue._on_event not in pool.listeners:
        pool.listeners.append(ue._on_event)
    return ue

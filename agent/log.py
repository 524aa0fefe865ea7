"""Logging set-up: hclog-like text lines or JSON, one named logger per subsystem.

Loggers are named `isthmus.<subsystem>` (`isthmus.rpc`, `isthmus.http`, ...); the
`isthmus.` prefix is dropped in the output, as Consul prints `agent.server: ...`.
"""
from __future__ import annotations

import json
import logging
import sys
import time

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
logging.addLevelName(logging.WARNING, "WARN")

LEVELS = {"TRACE": TRACE, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
          "WARN": logging.WARNING, "ERROR": logging.ERROR}
ROOT = "isthmus"


def _subsystem(record: logging.LogRecord) -> str:
    name = record.name
    return name[len(ROOT) + 1:] if name.startswith(ROOT + ".") else name


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + ".%03dZ" % (created % 1 * 1000)


class TextFormatter(logging.Formatter):
    """`2026-11-26T09:18:24.123Z [INFO]  rpc: message` like hclog."""

    def format(self, record: logging.LogRecord) -> str:
        level = "[" + record.levelname + "]"
        line = f"{_timestamp(record.created)} {level:<7} {_subsystem(record)}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line with hclog's keys (`@level`, `@message`, `@module`, `@timestamp`)."""

    def format(self, record: logging.LogRecord) -> str:
        obj = {"@level": record.levelname.lower(), "@message": record.getMessage(),
               "@module": _subsystem(record), "@timestamp": _timestamp(record.created)}
        if record.exc_info:
            obj["error"] = self.formatException(record.exc_info)
        return json.dumps(obj)


class _Gate(logging.Handler):
    """Holds records until `open()` (Consul's GatedWriter: start-up logs follow the banner)."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self._target = target
        self._held: list[logging.LogRecord] | None = []

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            self._target.handle(record)
        else:
            self._held.append(record)

    def open(self) -> None:
        held, self._held = self._held or [], None
        for record in held:
            self._target.handle(record)


def setup(level: str = "INFO", as_json: bool = False, stream=None, gated: bool = False):
    """Send every `isthmus.*` logger to `stream` (stderr) at `level`, text or JSON.

    With `gated`, records are held until the returned function is called."""
    root = logging.getLogger(ROOT)
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if as_json else TextFormatter())
    gate = _Gate(handler) if gated else None
    root.addHandler(gate or handler)
    root.setLevel(LEVELS.get(level.upper(), logging.INFO))
    root.propagate = False
    return gate.open if gate else (lambda: None)


class RateLimited:
    """Logs at most `burst` lines per `interval` seconds per key, then one summary line.

    For messages a peer can provoke at will (garbage frames, connection floods)."""

    def __init__(self, logger: logging.Logger, burst: int = 10, interval: float = 10.0) -> None:
        self._log = logger
        self._burst = burst
        self._interval = interval
        self._window: dict[str, list] = {}      # key -> [window start, count, suppressed]

    def warning(self, key: str, msg: str, *args) -> None:
        now = time.monotonic()
        w = self._window.get(key)
        if w is None or now - w[0] >= self._interval:
            if w is not None and w[2]:
                self._log.warning("%d more %r messages suppressed in the last %.0fs", w[2], key, self._interval)
            w = self._window[key] = [now, 0, 0]
        if w[1] < self._burst:
            w[1] += 1
            self._log.warning(msg, *args)
        else:
            w[2] += 1


def get(subsystem: str) -> logging.Logger:
    """The logger of one subsystem, e.g. get("rpc")."""
    return logging.getLogger(f"{ROOT}.{subsystem}")

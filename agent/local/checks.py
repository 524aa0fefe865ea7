"""Health check runners (Consul's agent/checks/check.go): TTL, HTTP, TCP and script (Args).

Each runner reports `notify(check_id, status, output)`; statuses and outputs are worded as
Consul's. Interval checks wait a random part of their interval before the first run (so
that many checks do not fire together), then run every interval.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import ssl
from typing import Callable

from .. import log
from .body import go_duration
from .state import CRITICAL, PASSING, WARNING

_log = log.get("checks")

Notify = Callable[[str, str, str], None]
MIN_INTERVAL = 1.0              # Consul's checks.MinInterval: no fork bombs
BUF_SIZE = 4 * 1024             # Consul's DefaultBufSize: output kept per run
USER_AGENT = "Consul Health Check"


def truncate(output: str, limit: int = BUF_SIZE) -> str:
    """Consul's TTL output cap: the first `limit` bytes and a note."""
    raw = output.encode()
    if len(raw) <= limit:
        return output
    return (f"{raw[:limit].decode(errors='ignore')} ... (captured {limit} of {len(raw)} bytes)")


class Runner:
    """Base: `start()` schedules the runner on the running loop, `stop()` ends it."""

    def __init__(self, check_id: str, notify: Notify) -> None:
        self.check_id = check_id
        self.notify = notify

    def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class TTLCheck(Runner):
    """Critical with "TTL expired" unless set_status() is called within every `ttl`."""

    def __init__(self, check_id: str, notify: Notify, ttl: float) -> None:
        super().__init__(check_id, notify)
        self.ttl = ttl
        self.last_output = ""
        self._timer: asyncio.TimerHandle | None = None
        self.expires_at = 0.0                      # loop time

    def start(self, remaining: float | None = None) -> None:
        """Arm the timer for `ttl` (or `remaining` seconds, after a restart)."""
        self._arm(self.ttl if remaining is None else remaining)

    def _arm(self, after: float) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
        self.expires_at = loop.time() + after
        self._timer = loop.call_later(after, self._expired)

    def _expired(self) -> None:
        self._timer = None
        _log.warning("Check %r missed TTL, is now critical", self.check_id)
        self.notify(self.check_id, CRITICAL, self.expired_output())

    def expired_output(self) -> str:
        if not self.last_output:
            return "TTL expired"
        return f"TTL expired (last output before timeout follows): {self.last_output}"

    def set_status(self, status: str, output: str) -> str:
        """Record a status from the API and restart the TTL; returns the (capped) output."""
        output = truncate(output)
        self.notify(self.check_id, status, output)
        self.last_output = output
        self._arm(self.ttl)
        return output

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class IntervalCheck(Runner):
    """Runs `run_once()` every `interval` after a random initial stagger."""

    def __init__(self, check_id: str, notify: Notify, interval: float, timeout: float,
                 rng: random.Random | None = None) -> None:
        super().__init__(check_id, notify)
        self.interval = interval
        self.timeout = timeout
        self._rng = rng or random.Random()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await asyncio.sleep(self._rng.random() * self.interval)
        while True:
            try:
                status, output = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:              # a runner bug must not end the loop
                _log.exception("check %r failed to run", self.check_id)
                status, output = CRITICAL, f"check failed to run: {exc}"
            self.notify(self.check_id, status, output)
            await asyncio.sleep(self.interval)

    async def run_once(self) -> tuple[str, str]:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _dial_error(host: str, port: int | str, exc: BaseException) -> str:
    """Go's net.Dial error text for a failed TCP connect."""
    where = f"{host}:{port}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"dial tcp {where}: i/o timeout"
    errno = getattr(exc, "errno", None)
    reason = (os.strerror(errno) if errno else str(exc)).lower()
    return f"dial tcp {where}: connect: {reason}"


def _split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"address {target}: missing port in address")
    return host.strip("[]"), int(port)


class TCPCheck(IntervalCheck):
    """Passing when a TCP connection to `target` (host:port) opens within the timeout."""

    def __init__(self, check_id: str, notify: Notify, target: str, interval: float,
                 timeout: float = 10.0, rng: random.Random | None = None) -> None:
        super().__init__(check_id, notify, interval, timeout or 10.0, rng)
        self.target = target

    async def run_once(self) -> tuple[str, str]:
        try:
            host, port = _split_host_port(self.target)
        except ValueError as exc:
            return CRITICAL, f"dial tcp: {exc}"
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            return CRITICAL, _dial_error(host, port, exc)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return PASSING, f"TCP connect {self.target}: Success"


class HTTPCheck(IntervalCheck):
    """2xx passing, 429 warning, anything else (or no answer) critical."""

    def __init__(self, check_id: str, notify: Notify, url: str, interval: float,
                 timeout: float = 10.0, method: str = "", header: dict | None = None,
                 body: str = "", tls_skip_verify: bool = False,
                 rng: random.Random | None = None) -> None:
        super().__init__(check_id, notify, interval, timeout or 10.0, rng)
        self.url = url
        self.method = method or "GET"
        self.header = header or {}
        self.body = body
        self.tls_skip_verify = tls_skip_verify

    async def run_once(self) -> tuple[str, str]:
        import aiohttp
        from multidict import CIMultiDict
        headers: CIMultiDict = CIMultiDict()
        for k, vals in self.header.items():
            for v in vals:
                headers.add(k, v)
        headers.setdefault("User-Agent", USER_AGENT)
        headers.setdefault("Accept", "text/plain, text/*, */*")
        ssl_ctx: ssl.SSLContext | bool | None = None
        if self.tls_skip_verify:
            ssl_ctx = False
        verb = self.method.capitalize()
        try:
            # Keep-alive off, as Consul: a fresh connection per run.
            conn = aiohttp.TCPConnector(force_close=True, ssl=ssl_ctx)
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
                async with session.request(self.method, self.url, headers=headers,
                                           data=self.body.encode() if self.body else None,
                                           allow_redirects=True) as resp:
                    data = await resp.content.read(BUF_SIZE)
                    code, reason = resp.status, resp.reason or ""
        except asyncio.TimeoutError:
            return CRITICAL, (f'{verb} "{self.url}": context deadline exceeded '
                              "(Client.Timeout exceeded while awaiting headers)")
        except aiohttp.ClientConnectorError as exc:
            return CRITICAL, f'{verb} "{self.url}": ' + _dial_error(
                exc.host, exc.port, exc.os_error)
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            return CRITICAL, f'{verb} "{self.url}": {exc}'
        output = data.decode(errors="replace")
        result = f"HTTP {self.method} {self.url}: {code} {reason} Output: {output}"
        if 200 <= code <= 299:
            return PASSING, result
        if code == 429:
            return WARNING, result
        return CRITICAL, result


class ScriptCheck(IntervalCheck):
    """Runs `args`: exit 0 passing, 1 warning, anything else critical (Nagios plugins)."""

    def __init__(self, check_id: str, notify: Notify, args: list[str], interval: float,
                 timeout: float = 30.0, rng: random.Random | None = None) -> None:
        super().__init__(check_id, notify, interval, timeout or 30.0, rng)
        self.args = list(args)

    async def run_once(self) -> tuple[str, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            return CRITICAL, f"exec: {self.args[0]!r}: {exc.strerror or exc}"
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the script and what it started
            except (ProcessLookupError, PermissionError):
                pass
            await proc.wait()
            return CRITICAL, f"Timed out ({go_duration(self.timeout)}) running check"
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        text = out[-BUF_SIZE:].decode(errors="replace")
        if len(out) > BUF_SIZE:
            text = f"Captured {BUF_SIZE} of {len(out)} bytes\n...\n{text}"
        if proc.returncode == 0:
            return PASSING, text
        if proc.returncode == 1:
            return WARNING, text
        return CRITICAL, text


def make_runner(check_id: str, chk_type: dict, notify: Notify,
                min_interval: float = MIN_INTERVAL) -> Runner | None:
    """The runner a check definition asks for (None: a check with no runner)."""
    t = chk_type or {}
    interval = max(float(t.get("Interval") or 0), min_interval)
    timeout = float(t.get("Timeout") or 0)
    if t.get("TTL"):
        return TTLCheck(check_id, notify, float(t["TTL"]))
    if t.get("HTTP"):
        return HTTPCheck(check_id, notify, t["HTTP"], interval, timeout, t.get("Method", ""),
                         t.get("Header") or {}, t.get("Body", ""),
                         bool(t.get("TLSSkipVerify")))
    if t.get("TCP"):
        return TCPCheck(check_id, notify, t["TCP"], interval, timeout)
    if t.get("Args"):
        return ScriptCheck(check_id, notify, t["Args"], interval, timeout)
    return None

"""`isthmus agent`: load the configuration, print the banner, run the agent on uvloop.

SIGINT/SIGTERM stop the agent gracefully; a second signal during shutdown forces exit.
SIGHUP reloads the configuration (services and checks from the files), as Consul's does.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import resource
import signal
import sys

from .. import log
from ..config.load import flag_help, load
from ..config.model import AgentConfig
from ..errors import ConfigError, IsthmusError
from ..version import CONSUL_API_VERSION, ISTHMUS_VERSION

_log = log.get("agent")
SIGNAL_NAMES = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminated"}


def raise_open_file_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (connection floods need fds)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return hard
        except (ValueError, OSError):
            pass
    return soft


def banner(cfg: AgentConfig, node_id: str, rpc_port: int, http: list[tuple[str, int]]) -> str:
    """The start-up block Consul prints: node, datacenter, mode, addresses, ports, TLS."""
    t = cfg.tls_internal_rpc
    http_ports = ", ".join(str(p) for _, p in http) or str(cfg.ports.http)
    rows = [
        ("Version", f"'{CONSUL_API_VERSION}' (Isthmus {ISTHMUS_VERSION})"),
        ("Node ID", f"'{node_id}'"),
        ("Node name", f"'{cfg.node_name}'"),
        ("Datacenter", f"'{cfg.datacenter}' (Segment: '<all>')"),
        ("Server", f"{str(cfg.server).lower()} (Bootstrap: {str(cfg.bootstrap).lower()}, "
                   f"Dev: {str(cfg.dev_mode).lower()})"),
        ("Client Addr", f"[{' '.join(cfg.client_addrs)}] (HTTP: {http_ports}, "
                        f"HTTPS: {cfg.ports.https}, gRPC: {cfg.ports.grpc}, DNS: {cfg.ports.dns})"),
        ("Cluster Addr", f"{cfg.advertise_addr} (LAN: {cfg.ports.serf_lan}, "
                         f"WAN: {cfg.ports.serf_wan})"),
        ("Server RPC", f"{cfg.bind_addr}:{rpc_port}" if cfg.server else "(client agent: none)"),
        ("Data Dir", cfg.data_dir or "(in memory)"),
        ("Gossip Encryption", str(bool(cfg.encrypt)).lower()),
        ("Internal RPC TLS", f"Verify Incoming: {str(t.verify_incoming).lower()}, "
                             f"Verify Outgoing: {str(t.verify_outgoing).lower()}, "
                             f"Verify Server Hostname: {str(t.verify_server_hostname).lower()}, "
                             f"Min Version: {t.tls_min_version}"),
    ]
    width = max(len(k) for k, _ in rows) + 4
    lines = [*(f"{k.rjust(width)}: {v}" for k, v in rows),
             "", "==> Log data will now stream in as it occurs:", ""]
    return "\n".join(lines)


def release_startup_memory() -> None:
    """Hand the heap that start-up used and freed (config parsing, imports) back to the OS:
    glibc keeps it otherwise, and a long-running agent's RSS would carry it forever."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):        # not glibc: nothing to do
        pass


def run(argv: list[str]) -> int:
    if any(a in ("-h", "-help", "--help") for a in argv):
        print("Usage: isthmus agent [options]\n\n  Starts the Isthmus agent and runs until an "
              "interrupt is received.\n\n" + flag_help())
        return 0
    try:
        loaded = load(argv)
    except ConfigError as exc:
        print("==> Config validation failed:", file=sys.stderr)
        for p in exc.problems:
            print(f"    * {p}", file=sys.stderr)
        return 1
    cfg = loaded.config
    open_log = log.setup(cfg.log_level, cfg.log_json, stream=sys.stdout, gated=True)
    raise_open_file_limit()
    import uvloop
    return uvloop.run(_serve(cfg, loaded.warnings, open_log, argv))


async def _serve(cfg: AgentConfig, warnings: list[str], open_log, argv: list[str]) -> int:
    from ..agent import Agent
    loop = asyncio.get_running_loop()
    agent = Agent(cfg)
    agent.config_argv = list(argv)              # what /v1/agent/reload re-reads
    print("==> Starting Isthmus agent...", flush=True)
    try:
        await agent.start()
    except (IsthmusError, OSError) as exc:
        open_log()
        print(f"==> Error starting agent: {exc}", file=sys.stderr, flush=True)
        return 1
    rpc_port = agent.rpc_server.port if agent.rpc_server else 0
    print(banner(cfg, agent.node_id, rpc_port, agent.http.addresses if agent.http else []),
          flush=True)
    open_log()
    for w in warnings:
        _log.warning("%s", w)
    _log.info("Isthmus agent running! node=%s dc=%s", cfg.node_name, cfg.datacenter)
    release_startup_memory()

    stop = asyncio.Event()
    caught: list[int] = []

    def on_signal(sig: int) -> None:
        caught.append(sig)
        if len(caught) == 1:
            print(f"==> Caught signal: {SIGNAL_NAMES.get(sig, sig)}", flush=True)
            stop.set()
        else:
            print("==> Second signal received, forcing shutdown", flush=True)
            os._exit(1)

    def on_hup() -> None:                       # Consul: SIGHUP reloads the configuration
        from ..local.reload import ReloadFailed, reload_config
        print("==> Caught signal: hangup", flush=True)
        if agent.local is None:
            return
        try:
            for w in reload_config(agent.local, agent.config_argv or []):
                _log.warning("%s", w)
            _log.info("Reloaded configuration")
        except ReloadFailed as exc:
            _log.error("Failed to reload configs: %s", exc)

    for sig in SIGNAL_NAMES:
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    leave = loop.create_task(agent.leave_requested.wait())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({leave, stopping}, return_when=asyncio.FIRST_COMPLETED)
    leave.cancel()
    stopping.cancel()
    # Consul: `leave` always leaves the cluster; SIGTERM only with leave_on_terminate (clients'
    # default); SIGINT unless skip_leave_on_interrupt (servers' default).
    sig = caught[0] if caught else None
    graceful = (sig is None or (sig == signal.SIGTERM and cfg.leave_on_terminate)
                or (sig == signal.SIGINT and not cfg.server))
    if graceful:
        print("==> Gracefully leaving the cluster...", flush=True)
        try:
            await agent.leave()
        except Exception:                       # a failed leave must not block the shutdown
            _log.exception("leave failed")
    print("==> Gracefully shutting down agent...", flush=True)
    await agent.stop()
    print("==> Graceful leave complete", flush=True)
    return 0

"""The agent: wiring of its subsystems and their start/stop order."""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from . import log
from .config.model import AgentConfig
from .datadir import DataDir
from .errors import IsthmusError, NoServersError
from .rpc.client import RPCPool
from .rpc.registry import CallContext, Registry
from .rpc.server import RPCServer
from .rpc.status import Leadership, NoConsensus, SingleServer, register_status
from .tlsutil.context import client_context, outgoing_server_hostname, server_context

_log = log.get("agent")
LOCAL_CALL = CallContext(("local", 0), False)


class Agent:
    """One Isthmus agent (server or client) as configured; `start()` then `stop()`."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = ""
        self.started_at = 0.0
        self.registry = Registry()
        self.leadership: Leadership = NoConsensus()
        self.rpc_server: RPCServer | None = None
        self.rpc_pool: RPCPool | None = None
        self.http = None
        self.leave_requested = asyncio.Event()
        self._data_dir: DataDir | None = None

    @property
    def rpc_advertise(self) -> str:
        """This server's RPC address as peers see it (`ip:port`)."""
        port = self.rpc_server.port if self.rpc_server else self.config.ports.server
        return f"{self.config.advertise_addr}:{port}"

    async def start(self) -> None:
        """Start every subsystem; on failure stop what already started and re-raise."""
        cfg = self.config
        try:
            if cfg.data_dir:
                self._data_dir = DataDir(cfg.data_dir)
                self._data_dir.lock()
                self.node_id = self._data_dir.node_id(cfg.node_id)
            else:
                self.node_id = (cfg.node_id or str(uuid.uuid4())).lower()
            tls = cfg.tls_internal_rpc
            self.rpc_pool = RPCPool(
                cfg.limits, tls_context=client_context(tls),
                server_name=lambda dc: outgoing_server_hostname(tls, dc or cfg.datacenter,
                                                                cfg.domain))
            if cfg.server:
                await self._start_server()
            from .http.server import HTTPServer     # aiohttp loads only where HTTP runs
            self.http = HTTPServer(self)
            await self.http.start()
        except BaseException:
            await self.stop()
            raise
        self.started_at = time.time()
        inert = [name for name, value in (
            ("retry_join", cfg.retry_join), ("retry_join_wan", cfg.retry_join_wan),
            ("encrypt", cfg.encrypt)) if value]
        if inert:
            # Honest about what is configured but not acted on yet (gossip: issue #3).
            _log.warning("LAN/WAN gossip is not implemented yet: %s configured but not used",
                         ", ".join(inert))

    async def _start_server(self) -> None:
        cfg = self.config
        tls = cfg.tls_internal_rpc
        self.rpc_server = RPCServer(self.registry, host=cfg.bind_addr, port=cfg.ports.server,
                                    limits=cfg.limits, tls_context=server_context(tls),
                                    verify_incoming=tls.verify_incoming)
        await self.rpc_server.start()
        if cfg.dev_mode or cfg.bootstrap:
            # One in-memory server that leads itself; replicated consensus is issue #4.
            self.leadership = SingleServer(self.rpc_advertise)
        register_status(self.registry, cfg.datacenter, self.leadership)
        _log.info("RPC server listening on %s:%d (TLS %s)", cfg.bind_addr, self.rpc_server.port,
                  "on" if tls.enabled else "off")

    async def stop(self) -> None:
        """Stop in reverse order: HTTP, RPC server, RPC pool, data-dir lock."""
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.rpc_server is not None:
            await self.rpc_server.stop()
            self.rpc_server = None
        if self.rpc_pool is not None:
            await self.rpc_pool.close()
            self.rpc_pool = None
        if self._data_dir is not None:
            self._data_dir.unlock()
            self._data_dir = None

    async def rpc(self, method: str, body: Any) -> Any:
        """An RPC as Consul's agent.RPC: served in-process on a server, else sent to a server."""
        if self.config.server:
            entry = self.registry.methods.get(method)
            if entry is None:
                raise IsthmusError(self.registry.missing(method))
            fn, is_async = entry
            result = fn(body, LOCAL_CALL)
            return await result if is_async else result
        # Client agents learn their servers from LAN gossip (issue #3); none is known yet.
        raise NoServersError()

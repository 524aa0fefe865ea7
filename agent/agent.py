"""The agent: wiring of its subsystems and their start/stop order."""
from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from . import log
from .config.model import AgentConfig
from .datadir import DataDir
from .errors import IsthmusError, NoServersError
from .rpc.client import RPCPool
from .rpc.registry import CallContext, Registry
from .rpc.server import RPCServer
from .rpc.status import Leadership, NoConsensus, register_status
from .tags import lan_tags
from .tlsutil.context import (area_client_context, client_context, outgoing_server_hostname,
                              server_context)

_log = log.get("agent")
# Server RPC endpoint modules (agent/rpc/<name>.py), each with register(registry, agent).
SERVER_RPC_MODULES = ["kvs", "operator_raft", "operator_area", "session", "txn", "catalog", "health", "coordinate"]
LOCAL_CALL = CallContext(("local", 0), False)


class Agent:
    """One Isthmus agent (server or client) as configured; `start()` then `stop()`."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.node_id = ""
        self.registry = Registry()
        self.leadership: Leadership = NoConsensus()
        self.consensus = None            # Consensus: servers only
        self.rpc_server: RPCServer | None = None
        self.rpc_pool: RPCPool | None = None
        self.http = None
        self.dns = None                  # DNSServer (agent/dns/): ports.dns, UDP and TCP
        self.lan = None                  # GossipPool: every agent
        self.wan = None                  # GossipPool: servers only
        self.federation = None           # Federation (router, forwarding): servers only
        self.areas = None                # AreaManager (network areas' pools): servers only
        self.leave_requested = asyncio.Event()
        self._data_dir: DataDir | None = None
        self._join_tasks: set[asyncio.Task] = set()
        self.servers = None              # ServerManager: client agents only
        self.local = None                # LocalAgent: services and checks of this agent
        self.coordinate_sender = None    # CoordinateSender: LAN coordinate → servers
        self.config_argv: list[str] | None = None   # what /v1/agent/reload re-reads

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
                tls_if_possible=area_client_context(tls) if cfg.server else None,
                server_name=lambda dc: outgoing_server_hostname(tls, dc or cfg.datacenter,
                                                                cfg.domain))
            if cfg.server:
                await self._start_server()
            await self._start_gossip()
            if self.consensus is not None and self.lan is not None:
                self.consensus.attach_gossip(self.lan)
            if cfg.server:
                await self._start_federation()
            from .user_events import attach as attach_user_events
            attach_user_events(self)              # /v1/event/list: events from now on
            if not cfg.server:
                from .servers import ServerManager
                self.servers = ServerManager(cfg.datacenter, self._call_server,
                                             on_server_up=self._on_server_up)
                if self.lan is not None:
                    self.servers.attach(self.lan)
            await self._start_local()
            from .coordinate_sender import CoordinateSender
            self.coordinate_sender = CoordinateSender.start_for(self)
            # DNS before HTTP: an answering HTTP API means the agent has fully started
            if cfg.ports.dns > 0:                   # dnspython loads with the first query
                from .dns.server import DNSServer
                self.dns = DNSServer(self)
                await self.dns.start()
            from .http.server import HTTPServer     # aiohttp loads only where HTTP runs
            self.http = HTTPServer(self)
            await self.http.start()
        except BaseException:
            await self.stop()
            raise
        for pool, addrs, interval in ((self.lan, cfg.retry_join, cfg.retry_interval),
                                      (self.wan, cfg.retry_join_wan, cfg.retry_interval_wan)):
            if pool is not None and addrs:
                task = asyncio.get_running_loop().create_task(self._retry_join(pool, addrs, interval))
                self._join_tasks.add(task)
                task.add_done_callback(self._join_tasks.discard)

    async def _start_gossip(self) -> None:
        from dataclasses import replace

        from _core.gossip_config import GossipConfig

        from .gossip import keyring_file
        from .gossip.pool import GossipPool
        from .serf.core import KeyringChanged
        cfg = self.config
        tags = lan_tags(cfg, self.node_id)
        pools = [("lan", cfg.ports.serf_lan, GossipConfig.lan(), cfg.node_name)]
        if cfg.server:
            pools.append(("wan", cfg.ports.serf_wan, GossipConfig.wan(),
                          f"{cfg.node_name}.{cfg.datacenter}"))
        for kind, port, gcfg, name in pools:
            if port <= 0:
                continue
            advertise = cfg.advertise_addr
            if kind == "wan" and cfg.advertise_addr_wan:
                advertise = cfg.advertise_addr_wan
            ring, warnings = keyring_file.load(cfg.data_dir, kind, cfg.encrypt)
            for w in warnings:
                _log.warning("%s", w)
            gcfg = replace(gcfg, gossip_verify_incoming=cfg.encrypt_verify_incoming,
                           gossip_verify_outgoing=cfg.encrypt_verify_outgoing)
            snapshot = (os.path.join(cfg.data_dir, "serf",
                                     "local.snapshot" if kind == "lan" else "remote.snapshot")
                        if cfg.data_dir else None)
            pool = GossipPool(kind, gcfg, node_name=name, bind=cfg.bind_addr, port=port,
                              advertise=advertise, tags=tags, keyring=ring,
                              snapshot_path=snapshot)
            await pool.start()
            if ring is not None and cfg.data_dir:
                path = keyring_file.keyring_path(cfg.data_dir, kind)

                def persist(ev, ring=ring, path=path) -> None:
                    if isinstance(ev, KeyringChanged):      # a key query changed our keys
                        keyring_file.save(ring, path)
                pool.listeners.append(persist)
            setattr(self, kind, pool)

    async def _start_federation(self) -> None:
        """The router over the WAN pool and the network areas' pools (servers only)."""
        from .federation import Federation
        self.federation = Federation(self)
        self.federation.start()
        self.registry.datacenter = self.config.datacenter
        self.registry.forward = self.federation.forward
        from .areas.manager import AreaManager
        self.areas = AreaManager(self)
        await self.areas.start()

    async def _start_local(self) -> None:
        from .local.manager import LocalAgent
        from .serf.core import STATUS_ALIVE

        def cluster_size() -> int:
            members = self.lan.members() if self.lan is not None else []
            return max(1, sum(1 for m in members if m.status == STATUS_ALIVE))
        self.local = LocalAgent(self.config, self.node_id, self.rpc, cluster_size)
        await self.local.start()

    def _on_server_up(self) -> None:
        if self.local is not None:
            self.local.syncer.trigger_full()

    async def _call_server(self, addr: tuple[str, int], method: str, body: Any) -> Any:
        if self.rpc_pool is None:
            raise NoServersError()
        return await self.rpc_pool.call(addr, method, body, dc=self.config.datacenter)

    async def _retry_join(self, pool, addrs: tuple[str, ...], interval: float) -> None:
        """Consul's retry_join: try every address until one join succeeds, every `interval`."""
        attempt = 0
        while True:
            attempt += 1
            n, errors = await pool.join(list(addrs))
            if n:
                _log.info("Join %s completed. Synced with %d initial agents", pool.kind.upper(), n)
                return
            _log.warning("Join %s failed (attempt %d): %s; retrying in %.0fs", pool.kind.upper(),
                         attempt, "; ".join(errors) or "no agent reachable", interval)
            await asyncio.sleep(interval)

    async def _start_server(self) -> None:
        cfg = self.config
        tls = cfg.tls_internal_rpc
        self.rpc_server = RPCServer(self.registry, host=cfg.bind_addr, port=cfg.ports.server,
                                    limits=cfg.limits, tls_context=server_context(tls),
                                    verify_incoming=tls.verify_incoming)
        await self.rpc_server.start()
        from .consensus import Consensus
        self.consensus = Consensus(self)
        self.consensus.start()
        self.leadership = self.consensus
        register_status(self.registry, cfg.datacenter, self.leadership)
        import importlib
        for name in SERVER_RPC_MODULES:
            importlib.import_module(f"{__package__}.rpc.{name}").register(self.registry, self)
        from .http.rendered import serve
        serve(self.registry, self)              # reads rendered for the agent that asks
        _log.info("RPC server listening on %s:%d (TLS %s)", cfg.bind_addr, self.rpc_server.port,
                  "on" if tls.enabled else "off")

    async def stop(self) -> None:
        """Stop in reverse order: HTTP, joins, gossip, RPC server, RPC pool, data-dir lock."""
        if self.http is not None:
            await self.http.stop()
            self.http = None
        if self.dns is not None:
            await self.dns.stop()
            self.dns = None
        if self.coordinate_sender is not None:
            await self.coordinate_sender.stop()
            self.coordinate_sender = None
        if self.local is not None:
            await self.local.stop()
            self.local = None
        for t in list(self._join_tasks):
            t.cancel()
        await asyncio.gather(*self._join_tasks, return_exceptions=True)
        if self.areas is not None:
            await self.areas.stop()
            self.areas = None
        if self.federation is not None:
            self.registry.forward = None
            await self.federation.stop()
            self.federation = None
        for kind in ("wan", "lan"):
            pool = getattr(self, kind)
            if pool is not None:
                await pool.stop()
                setattr(self, kind, None)
        if self.consensus is not None:
            await self.consensus.stop()
            self.consensus = None
        if self.rpc_server is not None:
            await self.rpc_server.stop()
            self.rpc_server = None
        if self.rpc_pool is not None:
            await self.rpc_pool.close()
            self.rpc_pool = None
        if self._data_dir is not None:
            self._data_dir.unlock()
            self._data_dir = None

    async def leave(self) -> None:
        """Graceful leave of every gossip pool (peers then see us `left`, not `failed`)."""
        if self.areas is not None:
            await self.areas.leave()
        for pool in (self.wan, self.lan):
            if pool is not None:
                await pool.leave()

    def pool(self, wan: bool):
        """The LAN pool, or the WAN pool (IsthmusError on a client agent)."""
        if wan:
            if self.wan is None:
                raise IsthmusError("WAN pool is only available on servers")
            return self.wan
        if self.lan is None:
            raise IsthmusError("LAN gossip is disabled (ports.serf_lan = -1)")
        return self.lan

    async def rpc(self, method: str, body: Any) -> Any:
        """An RPC as Consul's agent.RPC: served in-process on a server, else sent to a server."""
        if self.config.server:
            entry = self.registry.methods.get(method)
            if entry is None:
                raise IsthmusError(self.registry.missing(method))
            if self.registry.remote(body):
                return await self.registry.forward(method, body)
            fn, is_async = entry
            result = fn(body, LOCAL_CALL)
            return await result if is_async else result
        # Client agents send it to one of their LAN servers (agent/servers.py).
        if self.servers is None:
            raise NoServersError()
        return await self.servers.call(method, body)

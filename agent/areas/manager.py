"""AreaManager: keeps this server's area gossip pools in step with the Raft-replicated
areas table (shared/spec/federation.md §4.3), and serves join/members for the RPC layer.

- Reconciles `consensus.store.areas` with the running pools whenever the "areas" table
  changes (consensus.notifier) and every RECONCILE_INTERVAL (30 s): starts a pool per new
  area, leaves and stops the pools of deleted areas, flips TLS live when UseTLS changes,
  (re)starts RetryJoin when it changes.
- RetryJoin: a background task per area joins the listed addresses every
  RETRY_JOIN_INTERVAL (30 s) until one join succeeds, then stops; restarted with the pool
  (so after a server restart too).
- Router hooks: `agent.federation.add_pool / remove_pool / set_tls` when the agent has a
  federation (it also flood-joins the DC's servers into every added pool).
- Servers only: the pools run over the RPC server (byte 6). A client agent has no
  AreaManager (`start()` refuses to run without an RPC server and a store), so a client
  agent can never be a member of an area.

TLS ("use TLS if possible", §4.5): an area with UseTLS dials with TLS when this server has
TLS material (a CA: `ca_file`/`ca_path`); the peer's chain is verified against the CA and our
certificate presented when configured. With `verify_server_hostname` the peer's certificate
must name `server.<dc>.<domain>` for one of the area's two datacenters. Without a CA an area
with UseTLS runs in plaintext, with a warning.
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from typing import Any

from _core.gossip_config import GossipConfig

from .. import log
from ..errors import IsthmusError
from ..tags import lan_tags
from ..tlsutil.context import TLSConfigError, client_context, server_name
from .pool import AreaPool, invalid_address
from .transport import AreaGossipHandler

RECONCILE_INTERVAL = 30.0
RETRY_JOIN_INTERVAL = 30.0
DIAL_TIMEOUT = 10.0       # Consul's area dial timeout (1.8.11+, spec §4.4)

_log = log.get("area")


class UnknownArea(IsthmusError):
    """No pool runs for this area ID on this server: `unknown area "<id>"` (the text of
    agent/state/areas.py's `unknown_area()`), or, for an area the store already holds whose
    pool is not running yet, `area "<id>" is not running on this server yet ...`."""

    def __init__(self, area_id: str, starting: bool = False) -> None:
        quoted = json.dumps(area_id, ensure_ascii=False)
        if starting:
            super().__init__(f"area {quoted} is not running on this server yet (its gossip pool "
                             f"is starting); try again")
        else:
            super().__init__(f"unknown area {quoted}")
        self.area_id = area_id
        self.starting = starting


def area_tags(cfg: Any, node_id: str, rpc_port: int) -> dict[str, str]:
    """A server's tags in an area pool: its WAN-style server tags (role=consul, dc, id, port =
    RPC port, vsn, build, ...) without the LAN-only `wan_join_port`."""
    tags = lan_tags(cfg, node_id)
    tags.pop("wan_join_port", None)
    tags["port"] = str(rpc_port)
    return tags


class AreaManager:
    """This server's network-area pools (agent.areas)."""

    def __init__(self, agent: Any, *, gossip_config: GossipConfig | None = None,
                 reconcile_interval: float = RECONCILE_INTERVAL,
                 retry_join_interval: float = RETRY_JOIN_INTERVAL,
                 dial_timeout: float = DIAL_TIMEOUT) -> None:
        self.agent = agent
        self.gossip_config = gossip_config or GossipConfig.wan()
        self.reconcile_interval = reconcile_interval
        self.retry_join_interval = retry_join_interval
        self.dial_timeout = dial_timeout
        self.handler: AreaGossipHandler | None = None
        self.pools: dict[str, AreaPool] = {}             # area ID -> running pool
        self._areas: dict[str, dict] = {}                # area ID -> definition it runs with
        self._retry: dict[str, asyncio.Task] = {}
        self._tasks: set[asyncio.Task] = set()
        self._lock = asyncio.Lock()
        self._seen_index = -1
        self._tls_context = None
        self._tls_names_base: tuple[str, str] | None = None   # (domain, own dc): check names
        self._warned_no_tls: set[str] = set()
        self._started = False

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Serve byte 6 on the RPC server, start the pools the table lists, keep them in step."""
        agent = self.agent
        if getattr(agent, "rpc_server", None) is None or getattr(agent, "consensus", None) is None:
            raise IsthmusError("network areas run on servers only (this agent has no RPC server "
                               "and no state store)")
        cfg = agent.config
        self.handler = AreaGossipHandler(cfg.datacenter)
        self.handler.attach(agent.rpc_server)
        self._tls_context = self._make_tls_context()
        self._started = True
        await self.reconcile()
        self._spawn(self._reconcile_loop())

    async def stop(self) -> None:
        """Stop every pool without leaving (peers see this server fail, as at a crash or a
        shutdown without leave; `leave()` first for a graceful exit)."""
        self._started = False
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            for area_id in list(self.pools):
                await self._remove(area_id, leave=False)
        if self.handler is not None:
            self.handler.close()

    async def leave(self) -> None:
        """Gracefully leave every area pool (peers see this server `left`)."""
        await asyncio.gather(*(p.leave() for p in list(self.pools.values())),
                             return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ reconciling

    def _store(self) -> Any:
        return self.agent.consensus.store

    def _table_index(self) -> int:
        return self._store().max_index("areas")

    async def _reconcile_loop(self) -> None:
        notifier = self.agent.consensus.notifier
        while True:
            # No await between this check and wait() registering its waiter: a change
            # applied after the last reconcile is never missed.
            if self._table_index() == self._seen_index:
                await notifier.wait(("areas",), self.reconcile_interval)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("reconciling network areas failed; retrying in 5s")
                await asyncio.sleep(5.0)

    async def reconcile(self) -> None:
        """One pass: make the running pools match the areas table."""
        async with self._lock:
            if not self._started:
                return
            index = self._table_index()
            _, areas = self._store().areas.list()
            want = {a["ID"]: a for a in areas}
            for area_id in [i for i in self.pools if i not in want]:
                await self._remove(area_id, leave=True)
            for area_id, area in want.items():
                if area_id in self.pools:
                    self._update(area)
                else:
                    await self._add(area)
            self._seen_index = index

    async def _add(self, area: dict) -> None:
        agent, cfg = self.agent, self.agent.config
        area_id, peer = area["ID"], area["PeerDatacenter"]
        ctx, names = self._tls_for(area_id, bool(area.get("UseTLS")), peer)
        rpc_port = agent.rpc_server.port
        snapshot = (os.path.join(cfg.data_dir, "serf", f"area-{area_id}.snapshot")
                    if cfg.data_dir and not getattr(cfg, "dev_mode", False) else None)
        pool = AreaPool(area_id, peer, self.gossip_config, handler=self.handler,
                        datacenter=cfg.datacenter, node_name=f"{cfg.node_name}.{cfg.datacenter}",
                        advertise=cfg.advertise_addr_wan or cfg.advertise_addr, port=rpc_port,
                        bind=cfg.bind_addr, tags=area_tags(cfg, agent.node_id, rpc_port),
                        tls_context=ctx, tls_names=names, dial_timeout=self.dial_timeout,
                        snapshot_path=snapshot)
        try:
            await pool.start()
        except (OSError, ValueError, IsthmusError) as exc:
            _log.error("area %s: cannot start its gossip pool (retrying at the next "
                       "reconcile): %s dc=%s", area_id, exc, peer)
            await pool.stop()
            return
        self.pools[area_id] = pool
        self._areas[area_id] = dict(area)
        _log.info("area %s: gossip pool started (peer datacenter %s, TLS %s) dc=%s", area_id,
                  peer, "on" if ctx is not None else "off", peer)
        self._federation("add_pool", area_id, pool, ctx is not None)
        self._start_retry_join(area)

    def _update(self, area: dict) -> None:
        area_id = area["ID"]
        old = self._areas.get(area_id, {})
        self._areas[area_id] = dict(area)
        if bool(old.get("UseTLS")) != bool(area.get("UseTLS")):
            self._apply_tls(area_id, bool(area.get("UseTLS")))
        if (old.get("RetryJoin") or []) != (area.get("RetryJoin") or []):
            self._start_retry_join(area)

    async def _remove(self, area_id: str, *, leave: bool) -> None:
        pool = self.pools.pop(area_id)
        self._areas.pop(area_id, None)
        task = self._retry.pop(area_id, None)
        if task is not None:
            task.cancel()
        self._federation("remove_pool", area_id)
        if leave:
            try:
                await pool.leave()
            except Exception:                       # never keep a deleted area's pool running
                _log.exception("area %s: leaving its gossip pool failed", area_id)
        await pool.stop()
        if leave and pool._snapshot is not None:    # the area is gone: so is its snapshot
            try:
                os.unlink(pool._snapshot.path)
            except OSError:
                pass
        _log.info("area %s: gossip pool %s dc=%s", area_id, "left and stopped" if leave
                  else "stopped", pool.peer_dc)

    def _federation(self, method: str, *args: Any) -> None:
        fed = getattr(self.agent, "federation", None)
        fn = getattr(fed, method, None) if fed is not None else None
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:                           # the router's bug must not stop reconciling
            _log.exception("federation.%s(%s) failed", method, args[0])

    # ------------------------------------------------------------------ TLS

    def _make_tls_context(self) -> Any:
        tls = self.agent.config.tls_internal_rpc
        if not (tls.ca_file or tls.ca_path):
            return None
        try:
            # chain verified against our CA; names checked by us (either DC of the area)
            ctx = client_context(replace(tls, verify_outgoing=True, verify_server_hostname=False))
        except TLSConfigError as exc:
            _log.error("network areas with UseTLS will run without TLS: %s", exc)
            return None
        if tls.verify_server_hostname:
            self._tls_names_base = (self.agent.config.domain, self.agent.config.datacenter)
        return ctx

    def _tls_for(self, area_id: str, use_tls: bool, peer: str
                 ) -> tuple[Any, tuple[str, ...] | None]:
        if not use_tls:
            return None, None
        if self._tls_context is None:
            if area_id not in self._warned_no_tls:
                self._warned_no_tls.add(area_id)
                _log.warning("area %s has UseTLS but this server has no TLS CA configured: its "
                             "gossip runs without TLS dc=%s", area_id, peer)
            return None, None
        names = None
        if self._tls_names_base is not None:
            domain, own = self._tls_names_base
            names = (server_name(own, domain), server_name(peer, domain))
        return self._tls_context, names

    def _apply_tls(self, area_id: str, use_tls: bool) -> None:
        pool = self.pools[area_id]
        ctx, names = self._tls_for(area_id, use_tls, pool.peer_dc)
        pool.set_tls(ctx, names)
        _log.info("area %s: TLS %s dc=%s", area_id, "on" if ctx is not None else "off",
                  pool.peer_dc)
        self._federation("set_tls", area_id, ctx is not None)

    # ------------------------------------------------------------------ RetryJoin

    def _start_retry_join(self, area: dict) -> None:
        area_id = area["ID"]
        old = self._retry.pop(area_id, None)
        if old is not None:
            old.cancel()
        addrs = list(area.get("RetryJoin") or [])
        if addrs:
            self._retry[area_id] = self._spawn(self._retry_join(area_id, addrs))

    async def _retry_join(self, area_id: str, addrs: list[str]) -> None:
        attempt = 0
        try:
            while area_id in self.pools:
                attempt += 1
                results = await self.join(area_id, addrs)
                if any(r["Joined"] for r in results):
                    _log.info("area %s: RetryJoin joined %s", area_id,
                              ", ".join(r["Address"] for r in results if r["Joined"]))
                    return
                _log.warning("area %s: RetryJoin failed (attempt %d): %s; retrying in %.0fs",
                             area_id, attempt, "; ".join(f"{r['Address']}: {r['Error']}"
                                                         for r in results),
                             self.retry_join_interval)
                await asyncio.sleep(self.retry_join_interval)
        except UnknownArea:
            return
        finally:
            if self._retry.get(area_id) is asyncio.current_task():
                del self._retry[area_id]

    # ------------------------------------------------------------------ API (RPC layer)

    def pool(self, area_id: str) -> AreaPool:
        """The running pool of `area_id`; UnknownArea if there is none."""
        pool = self.pools.get(area_id) if isinstance(area_id, str) else None
        if pool is None:
            known = (isinstance(area_id, str) and self.agent.consensus is not None
                     and self._store().areas.get(area_id) is not None)
            raise UnknownArea(str(area_id), starting=known)
        return pool

    async def join(self, area_id: str, addrs: list[str]) -> list[dict]:
        """Join the area's pool through each address (port defaults to the RPC port): one
        {"Address", "Joined", "Error"} per input, same order; Error "" when joined."""
        try:
            pool = self.pool(area_id)
        except UnknownArea as exc:
            if not exc.starting:
                raise
            await self.reconcile()          # created a moment ago: start its pool now
            pool = self.pool(area_id)

        async def one(a: Any) -> tuple[bool, str]:
            if not isinstance(a, str) or not a.strip():
                return False, invalid_address(a, "empty address")
            return await pool.join_address(a)
        results = await asyncio.gather(*(one(a) for a in addrs))
        return [{"Address": a if isinstance(a, str) else str(a), "Joined": ok, "Error": err}
                for a, (ok, err) in zip(addrs, results)]

    def members(self, area_id: str) -> list[dict]:
        """The area pool's members in Consul's SerfMember shape (spec §2), RTT in ns."""
        return self.pool(area_id).members_json()

"""Federation on a server: the router fed by the WAN and area pools, flood joins, rebalance
pings, and forwarding of requests that name another datacenter (spec/federation.md §4).

- Every global pool (the WAN pool and one pool per network area) is a *path* in the router
  (`agent/router/core.py`); its members that are servers become routes, kept by gossip
  events: join/update add, leave/reap remove, failed rotates to the back (soft fail).
- Flood join (Consul's FloodJoins): whenever the LAN pool changes, and every minute, each
  alive server of our datacenter that a global pool lacks is joined into it — at its
  `wan_join_port` for the WAN, at its RPC port for areas (area gossip rides the RPC port).
- Rebalance: per (path, datacenter), every 2–3 minutes, ping the servers in random order
  with `Status.Ping`; the first to answer is used from then on; none → that path to that
  datacenter is offline until a server is added or a later ping answers.
- Forwarding: a request for another datacenter goes to the router's route. A server we could
  not even connect to is rotated away and the next candidate — another server, or the same
  datacenter on another path — gets the request at once (nothing was sent, so it is safe);
  an error after sending goes back to the caller, and the next request uses the rotated
  server. Unknown datacenter → "No path to datacenter"; known but no server reachable →
  "Remote DC has no server currently reachable".
"""
from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from . import log
from .errors import ConnectionLost, RPCConnectError, RPCTimeout
from .router.core import WAN_AREA, DCUnreachable, Router, Server, apply_member_event
from .serf.core import STATUS_ALIVE, STATUS_FAILED, MemberEvent
from .servers import server_from_member

if TYPE_CHECKING:
    from .agent import Agent

_log = log.get("router")
FLOOD_INTERVAL = 60.0          # Consul's SerfFloodInterval
REBALANCE_CHECK_INTERVAL = 5.0
PING_TIMEOUT = 5.0


class Federation:
    """The server's router and the drivers around it (`agent.federation`)."""

    def __init__(self, agent: "Agent", rng: random.Random | None = None) -> None:
        self.agent = agent
        self.dc = agent.config.datacenter
        self.router = Router(self.dc, rng or random.Random())
        self._pools: dict[str, Any] = {}
        self._listeners: dict[str, Any] = {}
        self._tasks: set[asyncio.Task] = set()
        self._flood_wakeup = asyncio.Event()
        self.stats = {"forwarded": 0, "failovers": 0, "errors": 0}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        agent = self.agent
        if agent.wan is not None:
            self.add_pool(WAN_AREA, agent.wan, use_tls=agent.rpc_pool.tls_context is not None)
        if agent.lan is not None:
            agent.lan.listeners.append(self._on_lan_event)
        for coro in (self._flood_loop(), self._rebalance_loop()):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        if self.agent.lan is not None and self._on_lan_event in self.agent.lan.listeners:
            self.agent.lan.listeners.remove(self._on_lan_event)
        for area in list(self._pools):
            self.remove_pool(area)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ paths

    def add_pool(self, area: str, pool: Any, use_tls: bool = False) -> None:
        """Route through `pool` (the WAN pool or an area's): seed from its members, follow
        its events, and flood our servers into it."""
        self.router.add_area(area, use_tls)
        self._pools[area] = pool
        now = asyncio.get_running_loop().time()
        for m in pool.members():
            self._member(area, m, "member-join", now)

        def listener(ev: Any, area: str = area) -> None:
            if isinstance(ev, MemberEvent):
                self._member(area, ev.member, ev.kind, asyncio.get_running_loop().time())
        pool.listeners.append(listener)
        self._listeners[area] = listener
        self._flood_wakeup.set()

    def remove_pool(self, area: str) -> None:
        """Drop a path (an area deleted): its routes go at once."""
        pool = self._pools.pop(area, None)
        listener = self._listeners.pop(area, None)
        if pool is not None and listener in pool.listeners:
            pool.listeners.remove(listener)
        self.router.remove_area(area)

    def set_tls(self, area: str, use_tls: bool) -> None:
        self.router.set_tls(area, use_tls)

    def _member(self, area: str, m: Any, kind: str, now: float) -> None:
        server = apply_member_event(self.router, area, kind, m.name, m.addr, m.tags,
                                    m.status == STATUS_FAILED, now)
        if server is None and m.tags.get("role") != "consul":
            _log.warning("Non-server %r in the %s pool, ignored", m.name, area)

    # ------------------------------------------------------------------ forwarding

    async def forward(self, method: str, body: dict) -> Any:
        """Send a request to a server of `body["Datacenter"]` (see the module doc). One
        coroutine from the handler to the reply's future: a forwarded request is suspended,
        and every level costs again to resume."""
        dc = body["Datacenter"]
        try:
            route = self.router.find_route(dc)          # NoPath for an unknown datacenter
        except DCUnreachable:
            route = None
        first, others = route, None
        pool = self.agent.rpc_pool
        tried = 0
        last: Exception | None = None
        while True:
            if route is None:                           # the route failed, or there is none
                if others is None:
                    others = [c for c in self.router.candidates(dc) if c != first]
                if not others:
                    break
                route = others.pop(0)
                self.stats["failovers"] += 1
            area, server = route
            tried += 1
            try:
                call = pool.call_open(server.addr, method, body, server.use_tls)
                reply = await (call if call is not None else
                               pool.call(server.addr, method, body, dc=dc, tls=server.use_tls))
            except RPCConnectError as exc:      # nothing was sent: the next one may have it
                self.router.notify_failed(area, server)
                last, route = exc, None
                continue
            except (ConnectionLost, RPCTimeout):    # maybe sent: the caller hears of it
                self.router.notify_failed(area, server)
                self.stats["errors"] += 1
                raise
            self.stats["forwarded"] += 1
            return reply
        self.stats["errors"] += 1
        for m in self.router.managers(dc):      # until a ping answers or a server is added
            m.offline = True
        _log.warning("No server of %s answered (%d tried): %s", dc, tried, last)
        raise DCUnreachable(dc)

    # ------------------------------------------------------------------ reads for the API

    def distance(self, area: str, server: Server) -> float | None:
        """Estimated RTT (s) from us to `server` in pool `area`, or None."""
        pool = self._pools.get(area)
        serf = getattr(pool, "serf", None)
        if serf is None or serf.coords is None:
            return None
        other = serf.coord_cache.get(server.name)
        if other is None:
            return None
        mine = serf.coords.get_coordinate()
        try:
            return mine.distance_to(other)
        except ValueError:                  # different dimensionality
            return None

    def datacenters(self) -> list[str]:
        """Datacenters we can reach, nearest first (`/v1/catalog/datacenters`)."""
        return self.router.datacenters_by_distance(self.distance)

    def datacenter_maps(self) -> list[dict]:
        """`/v1/coordinate/datacenters`: per path and datacenter, its servers' coordinates."""
        out = []
        for area, dc, servers in self.router.datacenter_servers():
            pool = self._pools.get(area)
            serf = getattr(pool, "serf", None)
            coords = []
            for s in servers:
                c = None
                if serf is not None and serf.coords is not None:
                    c = (serf.coords.get_coordinate() if s.name == pool.node_name
                         else serf.coord_cache.get(s.name))
                if c is not None:
                    coords.append({"Node": s.node, "Coord": c.to_wire()})
            out.append({"Datacenter": dc, "AreaID": area, "Coordinates": coords})
        return out

    # ------------------------------------------------------------------ flood join

    def _on_lan_event(self, ev: Any) -> None:
        if isinstance(ev, MemberEvent):
            self._flood_wakeup.set()

    async def _flood_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._flood_wakeup.wait(), FLOOD_INTERVAL)
            except TimeoutError:
                pass
            self._flood_wakeup.clear()
            await asyncio.sleep(0.1)                # let a burst of LAN events settle
            for area, pool in list(self._pools.items()):
                try:
                    await self.flood(area, pool)
                except Exception as exc:            # never let one pool stop the loop
                    _log.warning("Flood join into %s failed: %s", area, exc)

    async def flood(self, area: str, pool: Any) -> None:
        """Join every alive server of our DC that `pool` lacks (Consul's FloodJoins)."""
        lan = self.agent.lan
        if lan is None:
            return
        present = {m.name for m in pool.members() if m.status == STATUS_ALIVE}
        for m in lan.members():
            name = f"{m.name}.{self.dc}"
            if name in present or server_from_member(m, self.dc) is None:
                continue
            # the WAN gossip port for the WAN; area gossip rides the RPC port
            port = m.tags.get("wan_join_port", "") if area == WAN_AREA else m.tags["port"]
            if not port.isdigit():
                continue
            addr = f"{m.addr}:{port}" if ":" not in m.addr else f"[{m.addr}]:{port}"
            n, errors = await pool.join([addr])
            if n:
                _log.info("Flood joined %s into %s at %s", name, area, addr)
            else:
                _log.debug("Flood join of %s into %s failed: %s", name, area, "; ".join(errors))

    # ------------------------------------------------------------------ rebalance

    async def _rebalance_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(REBALANCE_CHECK_INTERVAL)
            for m in self.router.due(loop.time()):
                if m.dc == self.dc:
                    self.router.rebalanced(m, list(m.servers), m.front(), loop.time())
                    continue
                order = self.router.shuffled(m)
                answered = None
                for s in order:
                    if await self.ping(s):
                        answered = s
                        break
                if answered is None:
                    _log.warning("No server of %s answers on path %s: offline", m.dc, m.area)
                self.router.rebalanced(m, order, answered, loop.time())

    async def ping(self, s: Server) -> bool:
        try:
            await self.agent.rpc_pool.call(s.addr, "Status.Ping", {}, dc=s.dc, tls=s.use_tls,
                                           timeout=PING_TIMEOUT)
            return True
        except Exception as exc:
            _log.debug("Ping of %s (%s:%d) failed: %s", s.name, *s.addr, exc)
            return False

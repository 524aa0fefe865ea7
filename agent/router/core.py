"""The router: which servers of which datacenter a request can go to, by which path. Pure.

Consul's agent/router (spec/federation.md §4.6). A *path* ("area") is the WAN pool (area ID
"wan") or one network area (its UUID). For each path and datacenter a `Manager` keeps that
DC's servers in the order requests try them: the front one is in use. A server that fails a
request, or that gossip reports failed, is rotated to the back but kept (WAN soft fail): it
leaves the list only when it leaves the pool or is reaped. Rebalancing (driven from outside
by `due()`/`rebalanced()`) shuffles a manager's list and pings until one server answers;
when none answers the manager is *offline* and routes skip it.

`find_route(dc)` walks the DC's managers in the order their paths were added and returns the
first online one's front server; `candidates(dc)` gives every (path, server) a request may
fail over to, in order: the front server of each online path first, then the rest.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import IsthmusError

WAN_AREA = "wan"
NO_PATH = "No path to datacenter"
UNREACHABLE = "Remote DC has no server currently reachable"

REBALANCE_BASE_INTERVAL = 120.0     # Consul's clientRPCMinReuseDuration
REBALANCE_JITTER = 60.0
REBALANCE_CONNS_PER_SERVER = 64     # newRebalanceConnsPerSecPerServer


class NoPath(IsthmusError):
    """No path (WAN or area) reaches this datacenter."""

    def __init__(self, dc: str) -> None:
        super().__init__(NO_PATH)
        self.dc = dc


class DCUnreachable(IsthmusError):
    """The datacenter is known, but none of its servers answers on any path."""

    def __init__(self, dc: str) -> None:
        super().__init__(UNREACHABLE)
        self.dc = dc


@dataclass(frozen=True, slots=True)
class Server:
    """A server as a global pool's member describes it (`<node>.<dc>`, RPC address)."""
    name: str
    node: str
    dc: str
    addr: tuple[str, int]
    use_tls: bool = False
    id: str = ""


def server_from_tags(name: str, ip: str, tags: dict[str, str], use_tls: bool = False) -> Server | None:
    """The server a WAN or area member is, or None (Consul's metadata.IsConsulServer: role
    `consul`, a `dc`, and an RPC `port` that parses)."""
    if tags.get("role") != "consul" or not tags.get("dc") or not tags.get("port", "").isdigit():
        return None
    dc = tags["dc"]
    node = name[:-len(dc) - 1] if name.endswith("." + dc) else name
    return Server(name, node, dc, (ip, int(tags["port"])),
                  use_tls or tags.get("use_tls") == "1", tags.get("id", ""))


def apply_member_event(router: "Router", area: str, kind: str, name: str, addr: str,
                       tags: dict[str, str], failed: bool, now: float) -> Server | None:
    """One member event of a global pool into the router (Consul's router Serf handlers):
    join/update add the server, failed keeps it but at the back (soft fail), leave/reap remove
    it. `failed`: the member's current Serf status is failed. Returns the server, or None for
    a member that is not one (ignored).

    A failed server already known is only rotated (Consul's FailServer): re-adding it would
    clear the manager's offline mark, and a DC whose servers all died would be routed to
    again until the next rebalance (the area-tree simulation showed it)."""
    server = server_from_tags(name, addr, tags)
    if server is None:
        return None
    if kind in ("member-leave", "member-reap"):
        router.remove_server(area, server.name, server.dc)
    elif kind == "member-failed" or failed:
        m = router.manager(area, server.dc)
        if m is None or all(s.name != server.name for s in m.servers):
            router.add_server(area, server, now)      # first seen failed: known, at the back
        router.fail_server(area, server.name, server.dc)
    else:
        router.add_server(area, server, now)
    return server


@dataclass(slots=True)
class Manager:
    """One datacenter's servers on one path; `servers[0]` is the one in use."""
    area: str
    dc: str
    servers: list[Server] = field(default_factory=list)
    offline: bool = False
    rebalance_at: float = 0.0

    def front(self) -> Server | None:
        return self.servers[0] if self.servers else None

    def add(self, server: Server) -> None:
        for i, s in enumerate(self.servers):
            if s.name == server.name:
                self.servers[i] = server
                break
        else:
            self.servers.append(server)
        self.offline = False

    def remove(self, name: str) -> bool:
        before = len(self.servers)
        self.servers = [s for s in self.servers if s.name != name]
        return len(self.servers) != before

    def rotate_if_front(self, name: str) -> None:
        """Consul's NotifyFailedServer: only the server in use moves to the back."""
        if len(self.servers) > 1 and self.servers[0].name == name:
            self.servers.append(self.servers.pop(0))


@dataclass(slots=True)
class _Area:
    use_tls: bool
    managers: dict[str, Manager] = field(default_factory=dict)


class Router:
    """Managers per (path, datacenter); every method is a plain state change."""

    def __init__(self, local_dc: str, rng: random.Random) -> None:
        self.local_dc = local_dc
        self._rng = rng
        self._areas: dict[str, _Area] = {}           # insertion order = route preference

    # ---------------------------------------------------------------- paths and servers

    def add_area(self, area: str, use_tls: bool = False) -> None:
        self._areas.setdefault(area, _Area(use_tls))

    def remove_area(self, area: str) -> None:
        self._areas.pop(area, None)

    def has_area(self, area: str) -> bool:
        return area in self._areas

    def areas(self) -> list[str]:
        return list(self._areas)

    def set_tls(self, area: str, use_tls: bool) -> None:
        a = self._areas.get(area)
        if a is None:
            return
        a.use_tls = use_tls
        for m in a.managers.values():
            m.servers = [_with_tls(s, use_tls) for s in m.servers]

    def add_server(self, area: str, server: Server, now: float) -> None:
        a = self._areas.get(area)
        if a is None:
            return
        m = a.managers.get(server.dc)
        if m is None:
            m = a.managers[server.dc] = Manager(area, server.dc)
            m.rebalance_at = now + self._rebalance_interval(m)
        m.add(_with_tls(server, a.use_tls) if a.use_tls else server)

    def remove_server(self, area: str, name: str, dc: str) -> None:
        a = self._areas.get(area)
        m = a.managers.get(dc) if a is not None else None
        if m is not None and m.remove(name) and not m.servers:
            del a.managers[dc]

    def fail_server(self, area: str, name: str, dc: str) -> None:
        """Gossip says the server failed: it stays routable, at the back (soft fail)."""
        m = self.manager(area, dc)
        if m is not None:
            m.rotate_if_front(name)

    def notify_failed(self, area: str, server: Server) -> None:
        """A request to `server` failed: the next one goes to the next server."""
        self.fail_server(area, server.name, server.dc)

    def manager(self, area: str, dc: str) -> Manager | None:
        a = self._areas.get(area)
        return a.managers.get(dc) if a is not None else None

    def managers(self, dc: str) -> list[Manager]:
        return [a.managers[dc] for a in self._areas.values() if dc in a.managers]

    # ---------------------------------------------------------------- routes

    def find_route(self, dc: str) -> tuple[str, Server]:
        """(path, server) a request for `dc` goes to; NoPath / DCUnreachable otherwise."""
        managers = self.managers(dc)
        if not managers:
            raise NoPath(dc)
        for m in managers:
            if not m.offline and m.servers:
                return m.area, m.servers[0]
        raise DCUnreachable(dc)

    def candidates(self, dc: str) -> list[tuple[str, Server]]:
        """Every (path, server) for `dc` in the order to try them: the front server of each
        online path, then the other servers of online paths, then offline paths' servers
        (an offline mark is a guess from the last rebalance; trying beats refusing)."""
        managers = self.managers(dc)
        if not managers:
            raise NoPath(dc)
        online = [m for m in managers if not m.offline]
        out: list[tuple[str, Server]] = [(m.area, m.servers[0]) for m in online if m.servers]
        out += [(m.area, s) for m in online for s in m.servers[1:]]
        out += [(m.area, s) for m in managers if m.offline for s in m.servers]
        return out

    def datacenters(self) -> list[str]:
        """Every datacenter some path reaches (and our own), sorted by name."""
        names = {self.local_dc}
        for a in self._areas.values():
            names.update(a.managers)
        return sorted(names)

    def datacenters_by_distance(self, distance: Callable[[str, Server], float | None]) -> list[str]:
        """Datacenters ranked by the minimum over paths of the median estimated RTT to their
        servers (Consul's GetDatacentersByDistance); `distance(area, server)` is seconds or
        None without a coordinate. Our own DC is 0. Ties keep alphabetical order."""
        best: dict[str, float] = {self.local_dc: 0.0}
        for area, a in self._areas.items():
            for dc, m in a.managers.items():
                if dc == self.local_dc:
                    rtt = 0.0
                else:
                    rtts = sorted(math.inf if (d := distance(area, s)) is None else d
                                  for s in m.servers)
                    rtt = rtts[len(rtts) // 2] if rtts else math.inf
                best[dc] = min(best.get(dc, math.inf), rtt)
        return sorted(sorted(best), key=lambda dc: best[dc])

    def datacenter_servers(self) -> Iterable[tuple[str, str, list[Server]]]:
        """(area, dc, servers) for every manager: for /v1/coordinate/datacenters."""
        for area, a in self._areas.items():
            for dc in sorted(a.managers):
                yield area, dc, list(a.managers[dc].servers)

    # ---------------------------------------------------------------- rebalancing

    def due(self, now: float) -> list[Manager]:
        """Managers whose rebalance time has come."""
        return [m for a in self._areas.values() for m in a.managers.values()
                if m.rebalance_at <= now and m.servers]

    def shuffled(self, m: Manager) -> list[Server]:
        order = list(m.servers)
        self._rng.shuffle(order)
        return order

    def rebalanced(self, m: Manager, order: list[Server], answered: Server | None,
                   now: float) -> None:
        """The outcome of pinging a manager's servers in `order`: the one that answered goes
        in front (servers added or removed meanwhile are kept or dropped); none → offline."""
        m.rebalance_at = now + self._rebalance_interval(m)
        if answered is None:
            m.offline = True
            return
        m.offline = False
        current = {s.name: s for s in m.servers}
        if answered.name not in current:
            return
        i = [s.name for s in order].index(answered.name)
        ordered = [current[s.name] for s in order[i:] + order[:i] if s.name in current]
        seen = {s.name for s in ordered}
        m.servers = ordered + [s for s in m.servers if s.name not in seen]

    def _rebalance_interval(self, m: Manager) -> float:
        """Consul's: 2 min plus up to 1 min of jitter, longer for huge pools."""
        base = REBALANCE_BASE_INTERVAL + self._rng.random() * REBALANCE_JITTER
        nodes = sum(len(x.servers) for a in self._areas.values() for x in a.managers.values())
        return max(base, nodes / (max(1, len(m.servers)) * REBALANCE_CONNS_PER_SERVER))


def _with_tls(s: Server, use_tls: bool) -> Server:
    return s if s.use_tls == use_tls else Server(s.name, s.node, s.dc, s.addr, use_tls, s.id)

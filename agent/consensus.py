"""A server's consensus: Raft wired into the agent.

* Bootstrap as Consul does: `-dev` and `-bootstrap` make a one-server configuration;
  `-bootstrap-expect N` waits until N servers of this datacenter are alive in the LAN pool
  (their `expect` tags agreeing), asks each for its Raft peers (`Status.Peers`), and, if
  none has any, every one of them bootstraps the same configuration (sorted by ID).
* The leader reconciles the configuration with the LAN pool (Consul's leader loop and
  autopilot): a new alive server joins as a non-voter and is promoted once it has been
  healthy for `server_stabilization_time`; a server that left is removed; a failed one is
  removed when `cleanup_dead_servers` is on and a quorum of voters stays.
* The leader also keeps the catalog in step with the LAN pool (`rpc.catalog.reconcile_members`).
* Writes and non-stale reads that reach a follower are forwarded to the leader; without a
  leader they wait up to RPC_HOLD_TIMEOUT for one (`route`).
"""
from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from . import log
from .errors import IsthmusError, RPCConnectError, RPCError
from .raft.messages import Server
from .raft.node import NoLeader, NotLeaderError, RaftNode, RaftOptions
from .raft.transport import RaftTransport
from .rpc.blocking import Notifier
from .rpc.catalog import reconcile_members
from .rpc.server import RPC_RAFT
from .serf.core import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT, MemberEvent
from .state.store import Store
from .tlsutil.context import client_context, outgoing_server_hostname

if TYPE_CHECKING:
    from .agent import Agent

_log = log.get("raft")

BOOTSTRAP_RETRY = 1.0          # seconds between bootstrap-expect checks
RECONCILE_INTERVAL = 60.0      # Consul's reconcile_interval
RPC_HOLD_TIMEOUT = 7.0         # Consul's rpc_hold_timeout: how long a request waits for a leader
HOLD_POLL = 0.05


class Consensus:
    """The server's Raft node, state store and the leader's duties."""

    def __init__(self, agent: "Agent") -> None:
        self.agent = agent
        self.store = Store()
        self.notifier = Notifier()          # blocking queries, woken by applied writes
        self.rng = random.Random()          # blocking-query jitter
        self.node: RaftNode | None = None
        self._expect = agent.config.bootstrap_expect
        self._tasks: set[asyncio.Task] = set()
        self._reconcile_wakeup = asyncio.Event()
        self._nonvoter_since: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        agent, cfg = self.agent, self.agent.config
        tls = cfg.tls_internal_rpc
        transport = RaftTransport(
            tls_context=client_context(tls),
            server_name=outgoing_server_hostname(tls, cfg.datacenter, cfg.domain),
            connect_timeout=cfg.raft_multiplier * 1.0)
        agent.rpc_server.register_stream(RPC_RAFT, transport.stream_factory)
        opts = RaftOptions(tick_interval=0.1 * cfg.raft_multiplier,
                           snapshot_threshold=cfg.raft_snapshot_threshold,
                           trailing_logs=cfg.raft_trailing_logs)
        self.node = node = RaftNode(id=agent.node_id, address=agent.rpc_advertise, fsm=self.store,
                                    transport=transport,
                                    data_dir=None if cfg.dev_mode else cfg.data_dir,
                                    options=opts)
        node.start()
        node.listeners.append(self._on_role)
        node.applied_listeners.append(lambda: self.notifier.notify(self.store.drain_changed()))
        if (cfg.dev_mode or cfg.bootstrap) and not node.bootstrapped:
            node.bootstrap([Server(agent.node_id, agent.rpc_advertise, True)])
        if self._single_voter():
            node.core.campaign()          # no one to wait for: lead at once
        if self._expect and not node.bootstrapped:
            self._spawn(self._bootstrap_loop())
        self._spawn(self._reconcile_loop())

    def attach_gossip(self, lan) -> None:
        """Follow the LAN pool: bootstrap-expect and the leader's reconciliation."""
        lan.listeners.append(self._on_member_event)
        self._reconcile_wakeup.set()          # members that joined before we listened

    async def stop(self) -> None:
        from .sessions_ttl import driver_for
        await driver_for(self).stop()        # session TTL timers (the leader's)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.node is not None:
            await self.node.stop()
            self.node = None

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _single_voter(self) -> bool:
        voters = [s for s in self.node.configuration() if s.voter]
        return len(voters) == 1 and voters[0].id == self.agent.node_id

    # ------------------------------------------------------------------ Leadership (Status.*)

    def leader(self) -> str:
        return self.node.leader_address if self.node else ""

    def peers(self) -> list[str]:
        return self.node.voters() if self.node else []

    # ------------------------------------------------------------------ LAN servers

    def _lan_servers(self) -> list[tuple[Any, Server]]:
        """(member, Server) for every alive server of our datacenter in the LAN pool."""
        lan = self.agent.lan
        out = []
        for m in (lan.members() if lan else []):
            t = m.tags
            if t.get("role") != "consul" or t.get("dc") != self.agent.config.datacenter:
                continue
            if m.status != STATUS_ALIVE or not t.get("id") or not t.get("port", "").isdigit():
                continue
            out.append((m, Server(t["id"], f"{m.addr}:{t['port']}", True)))
        return out

    def _on_member_event(self, ev: Any) -> None:
        if isinstance(ev, MemberEvent):     # servers: Raft configuration; all: the catalog
            self._reconcile_wakeup.set()

    # ------------------------------------------------------------------ bootstrap-expect

    async def _bootstrap_loop(self) -> None:
        while self._expect and self.node is not None and not self.node.bootstrapped:
            try:
                await self._maybe_bootstrap()
            except Exception:                 # a bug must not end the loop silently
                _log.exception("bootstrap check failed")
            await asyncio.sleep(BOOTSTRAP_RETRY)

    async def _maybe_bootstrap(self) -> None:
        servers = self._lan_servers()
        expect = self._expect
        for m, _ in servers:
            if m.tags.get("bootstrap") == "1":
                _log.error("Member %s has bootstrap mode. Expect disabled.", m.name)
                self._expect = 0
                return
            theirs = m.tags.get("expect")
            if theirs and theirs != str(expect):
                _log.error("Member %s has a conflicting expect value. All nodes should expect "
                           "the same number.", m.name)
                return
        if len(servers) < expect:
            return
        me = self.agent.node_id
        for m, s in servers:
            if s.id == me:
                continue
            host, _, port = s.address.rpartition(":")
            try:
                peers = await self.agent.rpc_pool.call(
                    (host, int(port)), "Status.Peers", {"Datacenter": self.agent.config.datacenter},
                    timeout=5.0)
            except (RPCError, OSError) as exc:
                _log.warning("Failed to confirm peer status for %s: %s. Retrying...", m.name, exc)
                return
            if peers:
                _log.info("Existing Raft peers reported by %s, disabling bootstrap mode", m.name)
                self._expect = 0
                return
        if self.node.bootstrapped:
            return
        conf = sorted((s for _, s in servers), key=lambda s: s.id)
        _log.info("Found expected number of peers, attempting bootstrap: %s",
                  ",".join(s.address for s in conf))
        self.node.bootstrap(conf)
        self._expect = 0

    # ------------------------------------------------------------------ the leader's duties

    def _on_role(self, leader: str, role: str) -> None:
        self._reconcile_wakeup.set()

    async def _reconcile_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # woken by member and leadership events, `_again`, or every RECONCILE_INTERVAL
            periodic = loop.call_later(RECONCILE_INTERVAL, self._reconcile_wakeup.set)
            try:
                await self._reconcile_wakeup.wait()
            finally:
                periodic.cancel()
            self._reconcile_wakeup.clear()
            node = self.node
            if node is None or not node.is_leader:
                continue
            try:
                await self._reconcile(loop.time())
                await reconcile_members(self.agent)
            except (IsthmusError, RPCError) as exc:
                _log.warning("reconcile: %s", exc)
                await asyncio.sleep(1.0)
                self._reconcile_wakeup.set()
            except Exception:
                _log.exception("reconcile failed")
                await asyncio.sleep(1.0)

    async def _reconcile(self, now: float) -> None:
        node, cfg = self.node, self.agent.config
        conf = {s.id: s for s in node.configuration()}
        lan = self.agent.lan
        members = {m.tags.get("id"): m for m in (lan.members() if lan else [])
                   if m.tags.get("role") == "consul" and m.tags.get("dc") == cfg.datacenter}
        for m, s in self._lan_servers():
            cur = conf.get(s.id)
            if cur is None:
                _log.info("Adding LAN server %s (Addr: %s) as a non-voter", m.name, s.address)
                await node.add_server(s.id, s.address, voter=False)
                self._nonvoter_since[s.id] = now
                return self._again(cfg.autopilot_server_stabilization_time)
            if cur.address != s.address:
                await node.add_server(s.id, s.address, voter=cur.voter)
                return self._again(0)
            if not cur.voter:
                since = self._nonvoter_since.setdefault(s.id, now)
                if now - since >= cfg.autopilot_server_stabilization_time:
                    _log.info("Promoting server %s (Addr: %s) to voter", m.name, s.address)
                    await node.add_server(s.id, s.address, voter=True)
                    self._nonvoter_since.pop(s.id, None)
                    return self._again(0)
                self._again(cfg.autopilot_server_stabilization_time - (now - since))
        voters = [s for s in conf.values() if s.voter]
        for sid, s in conf.items():
            if sid == self.agent.node_id:
                continue
            m = members.get(sid)
            if m is None:
                continue                      # not (yet) seen in gossip: leave it be
            if m.status == STATUS_LEFT or (m.status == STATUS_FAILED and cfg.autopilot_cleanup_dead_servers
                                           and len(voters) - 1 >= len(voters) // 2 + 1):
                _log.info("Removing %s server %s (Addr: %s)",
                          "left" if m.status == STATUS_LEFT else "failed", m.name, s.address)
                await node.remove_server(sid)
                return self._again(0)

    def _again(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, delay), self._reconcile_wakeup.set)

    # ------------------------------------------------------------------ forwarding

    async def route(self, method: str, body: Any, local):
        """Run `local()` here if we lead, else forward the RPC to the leader (Consul's
        srv.forward). Without a leader, or when the leader cannot be dialled, it waits and
        retries for up to RPC_HOLD_TIMEOUT (Consul's rpc_hold_timeout) — an election in
        progress is a short wait, not an error."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RPC_HOLD_TIMEOUT
        while True:
            node = self.node
            if node is None:
                raise NoLeader()
            if node.is_leader:
                return await local()
            leader = node.leader_address
            if leader and leader != self.agent.rpc_advertise:
                host, _, port = leader.rpartition(":")
                try:
                    return await self.agent.rpc_pool.call((host, int(port)), method, body)
                except RPCConnectError:             # never reached it: safe to try again
                    if loop.time() >= deadline:
                        raise
            elif loop.time() >= deadline:
                raise NoLeader()
            await asyncio.sleep(HOLD_POLL)

    async def transfer_leader(self, to: str) -> None:
        """Hand leadership to server `to` and wait until it leads (Consul's transfer-leader)."""
        node = self.node
        node.transfer_leader(to)
        tick = node.options.tick_interval
        for _ in range(4 * node.config.election_tick):
            await asyncio.sleep(tick)
            if node.leader_id == to:
                return
        raise IsthmusError(f"leadership transfer to {to} timed out")

    def not_leader(self) -> bool:
        return self.node is None or not self.node.is_leader


__all__ = ["Consensus", "NoLeader", "NotLeaderError"]

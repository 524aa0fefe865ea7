"""The Raft driver on one loop: three RaftNodes, each with a real RPCServer on loopback
(Raft streams, byte 1), a write-ahead log in a tmp dir and a KV state store. Covers the
replicated-state interface the state store sits on: apply → (index, result), barrier,
consistent reads on any server, configuration changes and leadership transfer, errors
for non-leaders, and recovery of the log after a restart."""
from __future__ import annotations

import asyncio

import pytest

from agent.config.model import Limits
from agent.raft.messages import Server
from agent.raft.node import NoLeader, NotLeaderError, RaftError, RaftNode, RaftOptions
from agent.raft.transport import RaftTransport
from agent.rpc.registry import Registry
from agent.rpc.server import RPC_RAFT, RPCServer
from agent.state.store import Store, kv_command
from tests.aio import run

pytestmark = pytest.mark.integration
FAST = RaftOptions(tick_interval=0.02)          # 10 ticks: a 0.2-0.4 s election timeout


class Member:
    def __init__(self, i: int, tmp) -> None:
        self.id = f"s{i}"
        self.dir = str(tmp / self.id)
        self.rpc = RPCServer(Registry(), host="127.0.0.1", port=0, limits=Limits(),
                             tls_context=None, verify_incoming=False)
        self.node: RaftNode | None = None
        self.store: Store | None = None

    async def start(self) -> None:
        if self.rpc._sock is None:
            await self.rpc.start()
        transport = RaftTransport(connect_timeout=0.5)
        self.rpc._streams.pop(RPC_RAFT, None)
        self.rpc.register_stream(RPC_RAFT, transport.stream_factory)
        self.store = Store()
        self.node = RaftNode(id=self.id, address=self.address, fsm=self.store,
                             transport=transport, data_dir=self.dir, options=FAST)
        self.node.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.rpc.port}"


async def cluster(tmp, n: int = 3) -> list[Member]:
    members = [Member(i, tmp) for i in range(n)]
    for m in members:
        await m.rpc.start()
    for m in members:
        await m.start()
    conf = [Server(m.id, m.address) for m in members]
    for m in members:
        m.node.bootstrap(conf)
    return members


async def leader(members: list[Member], within: float = 5.0) -> Member:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while loop.time() < end:
        live = [m for m in members if m.node is not None]
        leaders = [m for m in live if m.node.is_leader]
        if len(leaders) == 1 and all(m.node.leader_id == leaders[0].id for m in live):
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no agreed leader")


async def stop_all(members: list[Member]) -> None:
    for m in members:
        if m.node is not None:
            await m.node.stop()
        await m.rpc.stop()


def test_apply_barrier_reads_and_errors(tmp_path):
    async def main():
        members = await cluster(tmp_path)
        try:
            lead = await leader(members)
            index, result = await lead.node.apply(kv_command("set", "k", b"v"))
            assert result is True and lead.store.kv_get("k").modify_index == index
            _, ok = await lead.node.apply(kv_command("cas", "k", b"w", cas=index - 1))
            assert ok is False
            assert await lead.node.barrier() > index
            follower = next(m for m in members if m is not lead)
            with pytest.raises(NotLeaderError) as err:
                await follower.node.apply(kv_command("set", "x", b"1"))
            assert err.value.leader == lead.address
            # a consistent read on a follower waits until the follower has applied the write
            read_index = await follower.node.consistent_read()
            assert read_index >= index and follower.store.kv_get("k").value == b"v"
            assert sorted(lead.node.voters()) == sorted(m.address for m in members)
        finally:
            await stop_all(members)
    run(main)


def test_membership_transfer_and_restart(tmp_path):
    async def main():
        members = await cluster(tmp_path)
        try:
            lead = await leader(members)
            await lead.node.apply(kv_command("set", "a", b"1"))
            # add a learner, promote it, then remove it: the configuration follows
            extra = Member(9, tmp_path)
            await extra.start()
            members.append(extra)
            await lead.node.add_server(extra.id, extra.address, voter=False)
            assert any(s.id == extra.id and not s.voter for s in lead.node.configuration())
            await lead.node.add_server(extra.id, extra.address, voter=True)
            loop = asyncio.get_running_loop()
            end = loop.time() + 5
            while extra.store.kv_get("a") is None and loop.time() < end:
                await asyncio.sleep(0.01)
            assert extra.store.kv_get("a").value == b"1"        # caught up as a learner
            await lead.node.remove_server(extra.id)
            assert extra.id not in {s.id for s in lead.node.configuration()}
            await extra.node.stop()
            await extra.rpc.stop()
            members.remove(extra)
            # two changes at once are refused with a clear error, not half applied
            with pytest.raises(RaftError):
                await lead.node.change_configuration([Server(m.id, m.address) for m in members[:1]])
            # transfer leadership to a chosen follower
            target = next(m for m in members if m is not lead)
            lead.node.transfer_leader(target.id)
            end = loop.time() + 3
            while not target.node.is_leader and loop.time() < end:
                await asyncio.sleep(0.01)
            assert await leader(members) is target
            # restart every node from its WAL: the writes are still there
            for m in members:
                await m.node.stop()
                m.node = None
            for m in members:
                await m.start()
            lead = await leader(members)
            await lead.node.barrier()
            assert lead.store.kv_get("a").value == b"1"
        finally:
            await stop_all(members)
    run(main)


def test_no_leader_without_quorum(tmp_path):
    async def main():
        members = await cluster(tmp_path)
        try:
            lead = await leader(members)
            for m in members:
                if m is not lead:
                    await m.node.stop()
                    m.node = None
            # CheckQuorum: the isolated leader steps down; proposals then fail at once
            loop = asyncio.get_running_loop()
            end = loop.time() + 3
            while lead.node.is_leader and loop.time() < end:
                await asyncio.sleep(0.02)
            assert not lead.node.is_leader
            with pytest.raises((NoLeader, NotLeaderError)):
                await lead.node.apply(kv_command("set", "b", b"2"))
        finally:
            await stop_all(members)
    run(main)

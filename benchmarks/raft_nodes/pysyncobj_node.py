"""One pysyncobj 0.3.17 node holding a replicated dict: the baseline of benchmarks/bench_raft.py.

  python -m benchmarks.raft_nodes.pysyncobj_node --name n1 --self 127.0.0.1:PORT \
      --peers 127.0.0.1:P2,127.0.0.1:P3 --control CONTROL_PORT --data-dir DIR

Configured as shared/spec/raft-notes.md §4 row "A0" (the settings §5 recommends): no autoTick
thread — the library's sockets are registered in the uvloop loop and its ticks run there, so
the whole node (raft, state machine, completion callbacks, control port) is one thread;
appendEntriesUseBatch=False, leaderFallbackTimeout=1 s, dynamicMembershipChange=True,
commandsWaitLeader=False (a put without a leader fails at once), journal and dump file in
--data-dir. Serves the ops of control.py; `leader` is the leader's raft address.
Loopback only. pysyncobj is a benchmark dependency (`pip install -e '.[bench]'`), never one
of the product.
"""
from __future__ import annotations

import argparse
import asyncio
import os

import pysyncobj.syncobj
import uvloop
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.batteries import ReplDict
from pysyncobj.poller import POLL_EVENT_TYPE, Poller

from benchmarks.raft_nodes.control import (node_arguments, parse_node_arguments, serve_control,
                                           unknown_op)

TICK_SECONDS = 0.05  # pysyncobj's autoTickPeriod default: elections, heartbeats, timeouts
PUT_TIMEOUT = 10.0
FAIL_NAMES = {v: k.lower() for k, v in vars(FAIL_REASON).items() if not k.startswith("_")}
READABLE = POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR


class LoopPoller(Poller):
    """pysyncobj's Poller on top of the loop's add_reader/add_writer. The loop waits for and
    dispatches the socket events; after each one the node asks for a tick, because commit
    advancement and state-machine application happen only inside a tick."""

    def __init__(self, loop: asyncio.AbstractEventLoop, after_event) -> None:
        self._loop = loop
        self._after_event = after_event
        self._subs: dict[int, tuple] = {}

    def subscribe(self, descr, callback, eventMask) -> None:
        old = self._subs.get(descr, (None, 0))[1]
        self._subs[descr] = (callback, eventMask)
        loop = self._loop
        if eventMask & READABLE and not old & READABLE:
            loop.add_reader(descr, self._dispatch, descr, POLL_EVENT_TYPE.READ)
        elif old & READABLE and not eventMask & READABLE:
            self._quietly(loop.remove_reader, descr)
        if eventMask & POLL_EVENT_TYPE.WRITE and not old & POLL_EVENT_TYPE.WRITE:
            loop.add_writer(descr, self._dispatch, descr, POLL_EVENT_TYPE.WRITE)
        elif old & POLL_EVENT_TYPE.WRITE and not eventMask & POLL_EVENT_TYPE.WRITE:
            self._quietly(loop.remove_writer, descr)

    def unsubscribe(self, descr) -> None:
        if self._subs.pop(descr, None) is not None:
            self._quietly(self._loop.remove_reader, descr)
            self._quietly(self._loop.remove_writer, descr)

    @staticmethod
    def _quietly(remove, descr) -> None:
        try:  # pysyncobj closes a socket before unsubscribing it
            remove(descr)
        except (OSError, ValueError):
            pass

    def _dispatch(self, descr, event) -> None:
        sub = self._subs.get(descr)
        if sub is not None:
            sub[0](descr, event)
        self._after_event()

    def poll(self, timeout) -> None:
        return None  # the loop does the waiting


class Ticker:
    """Runs SyncObj.doTick(0) every TICK_SECONDS and once soon after any event or submission
    (several requests within one loop iteration share that tick)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.raft: SyncObj | None = None
        self._soon = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self, raft: SyncObj) -> None:
        self.raft = raft
        self._periodic()

    def kick(self) -> None:
        if not self._soon and self.raft is not None:
            self._soon = True
            self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        self._soon = False
        self.raft.doTick(0.0)

    def _periodic(self) -> None:
        self._timer = self.loop.call_later(TICK_SECONDS, self._periodic)
        self.raft.doTick(0.0)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class PysyncobjNode:
    def __init__(self, args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.store = ReplDict()
        self.ticker = Ticker(loop)
        poller = LoopPoller(loop, self.ticker.kick)
        # SyncObj builds its poller through this module-level factory; hand it ours.
        pysyncobj.syncobj.createPoller = lambda _kind: poller
        os.makedirs(args.data_dir, exist_ok=True)
        conf = SyncObjConf(
            autoTick=False,
            appendEntriesUseBatch=False,
            leaderFallbackTimeout=1.0,
            dynamicMembershipChange=True,
            commandsWaitLeader=False,
            journalFile=os.path.join(args.data_dir, "raft.journal"),
            fullDumpFile=os.path.join(args.data_dir, "raft.dump"),
        )
        peers = [p for p in args.peers.split(",") if p]
        self.raft = SyncObj(args.self, peers, conf, consumers=[self.store])
        self.ticker.start(self.raft)

    async def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "put":
            return await self.put(req["key"], req["value"])
        if op == "get":
            return {"ok": True, "value": self.store.get(req["key"])}
        if op == "status":
            leader = self.raft._getLeader()
            return {"leader": "" if leader is None else str(leader.id),
                    "is_leader": self.raft._isLeader(),
                    "term": self.raft.raftCurrentTerm,
                    "commit": self.raft.raftCommitIndex}
        return unknown_op(req)

    async def put(self, key: str, value: str) -> dict:
        done = self.loop.create_future()

        def on_commit(_result, error) -> None:  # called inside a tick, on this thread
            if not done.done():
                done.set_result(error)

        self.store.set(key, value, callback=on_commit)
        self.ticker.kick()
        timer = self.loop.call_later(PUT_TIMEOUT, on_commit, None, "timeout")
        try:
            error = await done
        finally:
            timer.cancel()
        if error == FAIL_REASON.SUCCESS:
            return {"ok": True}
        return {"ok": False, "error": FAIL_NAMES.get(error, str(error))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_node_arguments(node_arguments(__doc__.split("\n")[0]), argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    node = PysyncobjNode(args, loop)
    loop.run_until_complete(serve_control(args.control, node.handle))
    try:
        loop.run_forever()
    finally:
        node.ticker.stop()
        node.raft.destroy()


if __name__ == "__main__":
    main()

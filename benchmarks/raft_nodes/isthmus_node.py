"""One Isthmus Raft node holding a replicated dict: our side of benchmarks/bench_raft.py.

  python -m benchmarks.raft_nodes.isthmus_node --name n1 --self 127.0.0.1:PORT \
      --peers 127.0.0.1:P2,127.0.0.1:P3 --control CONTROL_PORT --data-dir DIR [--fsync 1|0]

The production path end to end: `agent.raft.node.RaftNode` (pure core + write-ahead log with
group-committed fdatasync unless --fsync 0) on uvloop, messages over an `RPCServer` (type
byte 1 streams, as between agents) at --self. Timing as an agent at raft_multiplier 1
(100 ms ticks, election timeout 1–2 s). Every node bootstraps the same configuration (the
three addresses, sorted), as servers do after bootstrap-expect. Serves control.py's ops;
`leader` is the leader's RPC address.
"""
from __future__ import annotations

import argparse
import asyncio

import msgpack
import uvloop

from agent.raft.messages import Server
from agent.raft.node import RaftError, RaftNode, RaftOptions
from agent.raft.transport import RaftTransport
from agent.rpc.registry import Registry
from agent.config.model import Limits
from agent.rpc.server import RPC_RAFT, RPCServer
from benchmarks.raft_nodes.control import (node_arguments, parse_node_arguments, serve_control,
                                           unknown_op)


class DictMachine:
    """The replicated dict: commands are msgpack [key, value]."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, index: int, data: bytes) -> None:
        key, value = msgpack.unpackb(data)
        self.data[key] = value

    def snapshot(self) -> bytes:
        return msgpack.packb(self.data)

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data)


async def main(args: argparse.Namespace) -> None:
    host, port = args.self.rsplit(":", 1)
    server = RPCServer(Registry(), host=host, port=int(port), limits=Limits(), tls_context=None,
                       verify_incoming=False)
    transport = RaftTransport()
    server.register_stream(RPC_RAFT, transport.stream_factory)
    await server.start()
    fsm = DictMachine()
    node = RaftNode(id=args.self, address=args.self, fsm=fsm, transport=transport,
                    data_dir=args.data_dir, options=RaftOptions(fsync=bool(args.fsync)))
    node.start()
    if not node.bootstrapped:
        addrs = sorted([args.self] + [p for p in args.peers.split(",") if p])
        node.bootstrap([Server(a, a, True) for a in addrs])

    async def handle(req: dict) -> dict:
        op = req.get("op")
        if op == "status":
            return {"leader": node.leader_address, "is_leader": node.is_leader,
                    "term": node.core.term, "commit": node.core.commit}
        if op == "put":
            try:
                await node.apply(msgpack.packb([req["key"], req["value"]]), 10.0)
            except RaftError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True}
        if op == "get":
            return {"ok": True, "value": fsm.data.get(req["key"])}
        return unknown_op(req)

    await serve_control(args.control, handle)
    await asyncio.Event().wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = node_arguments(__doc__.split("\n")[0])
    ap.add_argument("--fsync", type=int, default=1, choices=(0, 1))
    return parse_node_arguments(ap, argv)


if __name__ == "__main__":
    uvloop.run(main(parse_args()))

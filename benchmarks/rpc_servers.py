"""Servers for bench_rpc.py, one per process so /proc gives each one's CPU time.

  python benchmarks/rpc_servers.py KIND [--tls CERT KEY] [--cpu N]
KIND: echo     raw uvloop echo of every byte (the floor)
      bare     msgpack-RPC with a streaming msgpack.Unpacker + Packer, Status.Ping → {}
               (as shared/tools/perf/tcp_rr.py's rpc server; replies coalesced per read)
      isthmus  agent.rpc.server.RPCServer with the real Status endpoints
Prints the listening port on stdout, then serves until killed (or 10 minutes pass).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import sys

MAX_SECONDS = 600


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.tr = transport

    def data_received(self, data):
        self.tr.write(data)


class BareRPC(asyncio.Protocol):
    def __init__(self):
        import msgpack
        self.unpacker = msgpack.Unpacker()
        self.pack = msgpack.Packer().pack
        self.hdr = None

    def connection_made(self, transport):
        self.tr = transport

    def data_received(self, data):
        self.unpacker.feed(data)
        out = []
        pack = self.pack
        for obj in self.unpacker:
            if self.hdr is None:
                self.hdr = obj
                continue
            hdr, body = self.hdr, obj
            self.hdr = None
            _ = body.get("Datacenter") if isinstance(body, dict) else None
            out.append(pack({"ServiceMethod": hdr["ServiceMethod"], "Seq": hdr["Seq"], "Error": ""})
                       + pack({}))
        if out:
            self.tr.write(b"".join(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["echo", "bare", "isthmus"])
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        ctx = None
        if args.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(*args.tls)
        if args.kind == "isthmus":
            from agent.config.model import Limits
            from agent.rpc.registry import Registry
            from agent.rpc.server import RPCServer
            from agent.rpc.status import SingleServer, register_status
            reg = Registry()
            register_status(reg, "dc1", SingleServer("127.0.0.1:8300"))
            srv = RPCServer(reg, host="127.0.0.1", port=0, limits=Limits(), tls_context=ctx)
            await srv.start()
            port = srv.port
        else:
            factory = Echo if args.kind == "echo" else BareRPC
            server = await loop.create_server(factory, "127.0.0.1", 0, ssl=ctx, backlog=256)
            port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.sleep(MAX_SECONDS)

    uvloop.run(serve())


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

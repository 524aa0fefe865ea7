"""RPC over TLS (byte 3, then byte 0 inside): mutual verification, refusals, bad handshakes."""
from __future__ import annotations

import asyncio
import os

import pytest

from agent.cli.tls_cmd import run as tls_cli
from agent.config.model import Limits, TLSSettings
from agent.errors import ConnectionLost, RPCConnectError
from agent.rpc.client import RPCPool
from agent.rpc.registry import Registry
from agent.rpc.server import RPCServer
from agent.rpc.status import SingleServer, register_status
from agent.tlsutil.context import client_context, outgoing_server_hostname, server_context
from tests.aio import run


def make_pki(directory, *certs: tuple[str, str]) -> list[tuple[str, str]]:
    """A CA in `directory` and certs [(kind, dc)]; returns their (cert, key) paths."""
    os.makedirs(directory, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        assert tls_cli(["ca", "create"]) == 0
        made = []
        counts: dict[tuple[str, str], int] = {}
        for kind, dc in certs:
            assert tls_cli(["cert", "create", f"-{kind}", "-dc", dc]) == 0
            n = counts.get((kind, dc), 0)
            counts[(kind, dc)] = n + 1
            base = os.path.join(str(directory), f"{dc}-{kind}-consul-{n}")
            made.append((base + ".pem", base + "-key.pem"))
        return made
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    a, b, client, dc2 = make_pki(root / "ca1", ("server", "dc1"), ("server", "dc1"),
                                 ("client", "dc1"), ("server", "dc2"))
    (other,) = make_pki(root / "ca2", ("server", "dc1"))
    return {"ca": str(root / "ca1" / "consul-agent-ca.pem"), "a": a, "b": b, "client": client,
            "dc2": dc2, "other_ca": str(root / "ca2" / "consul-agent-ca.pem"), "other": other}


def settings(pki, who: str, ca: str | None = None, **kw) -> TLSSettings:
    cert, key = pki[who]
    return TLSSettings(ca_file=ca or pki["ca"], cert_file=cert, key_file=key, **kw)


STRICT = dict(verify_incoming=True, verify_outgoing=True, verify_server_hostname=True)


async def start_tls_server(pki, who: str = "b", **kw) -> RPCServer:
    s = settings(pki, who, **{**STRICT, **kw})
    reg = Registry()
    register_status(reg, "dc1", SingleServer("127.0.0.1:8300"))
    srv = RPCServer(reg, host="127.0.0.1", port=0, limits=Limits(rpc_handshake_timeout=1.0),
                    tls_context=server_context(s), verify_incoming=s.verify_incoming)
    await srv.start()
    return srv


def pool_for(s: TLSSettings, dc: str = "dc1") -> RPCPool:
    return RPCPool(tls_context=client_context(s),
                   server_name=lambda _dc: outgoing_server_hostname(s, dc, "consul"))


def test_agent_a_certificate_calls_agent_b_over_mutual_tls(pki):
    async def main():
        srv = await start_tls_server(pki, "b")
        pool = pool_for(settings(pki, "a", **STRICT))
        assert await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}) == {}
        assert await pool.call(("127.0.0.1", srv.port), "Status.Leader", {}) == "127.0.0.1:8300"
        await pool.close()
        await srv.stop()
    run(main)


def test_client_certificate_from_another_ca_is_refused(pki):
    async def main():
        srv = await start_tls_server(pki, "b")
        # trusts ca1 (so the server's cert verifies) but presents a cert from ca2
        s = TLSSettings(ca_file=pki["ca"], cert_file=pki["other"][0], key_file=pki["other"][1],
                        **STRICT)
        pool = pool_for(s)
        with pytest.raises((RPCConnectError, ConnectionLost)):
            await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}, timeout=5)
        await pool.close()
        assert srv.stats["tls_failed"] == 1
        await still_ok(pki, srv)
        await srv.stop()
    run(main)


def test_server_certificate_from_another_ca_is_refused_by_the_client(pki):
    async def main():
        srv = await start_tls_server(pki, "other", ca=pki["ca"], verify_incoming=False)
        pool = pool_for(settings(pki, "a", **STRICT))
        with pytest.raises(RPCConnectError, match="TLS handshake failed"):
            await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}, timeout=5)
        await pool.close()
        await srv.stop()
    run(main)


def test_server_hostname_is_checked(pki):
    async def main():
        srv = await start_tls_server(pki, "dc2")            # a dc2 server cert
        pool = pool_for(settings(pki, "a", **STRICT), dc="dc1")
        with pytest.raises(RPCConnectError, match="TLS handshake failed"):
            await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}, timeout=5)
        await pool.close()
        # the same server is fine for a client that expects dc2
        pool = pool_for(settings(pki, "a", **STRICT), dc="dc2")
        assert await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}) == {}
        await pool.close()
        await srv.stop()
    run(main)


def test_plaintext_is_refused_under_verify_incoming(pki):
    async def main():
        srv = await start_tls_server(pki, "b")
        pool = RPCPool()
        with pytest.raises((ConnectionLost, RPCConnectError)):
            await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}, timeout=5)
        await pool.close()
        await still_ok(pki, srv)
        await srv.stop()
    run(main)


def test_failed_handshakes_and_tls_in_tls_are_closed(pki):
    async def main():
        srv = await start_tls_server(pki, "b", verify_incoming=False)
        # byte 3 followed by garbage instead of a ClientHello
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"\x03" + b"\x00garbage-not-tls" * 10)
        assert await reader.read() == b""
        writer.close()
        # byte 3 then silence: the handshake times out
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"\x03")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert srv.stats["tls_failed"] == 2
        # TLS, then byte 3 again inside: refused
        import ssl
        import socket
        ctx = client_context(settings(pki, "a", verify_outgoing=True))
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"\x03")
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="")
        writer.write(b"\x03")
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except (ConnectionResetError, ssl.SSLError):
            pass
        writer.close()
        assert srv.stats["bad_byte"] == 1
        await still_ok(pki, srv)
        await srv.stop()
    run(main)


async def still_ok(pki, srv: RPCServer) -> None:
    pool = pool_for(settings(pki, "a", **STRICT))
    assert await pool.call(("127.0.0.1", srv.port), "Status.Ping", {}) == {}
    await pool.close()

"""Issue #2's "Done when" for TLS, with real agents: a client holding agent A's certificate
calls Status.Ping on agent B over mutually verified TLS; a certificate from another CA and
plaintext are refused. A uses the classic top-level TLS keys, B the `tls {}` block."""
from __future__ import annotations

import json

import pytest

from agent.config.model import TLSSettings
from agent.errors import ConnectionLost, RPCConnectError
from agent.rpc.client import RPCPool
from agent.tlsutil.context import client_context, outgoing_server_hostname
from tests.aio import run
from tests.integration.procs import AgentProc
from tests.integration.test_rpc_tls import make_pki

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("tlsagents")
    (a_cert, a_key), (b_cert, b_key) = make_pki(root / "ca1", ("server", "dc1"), ("server", "dc1"))
    (other_cert, other_key), = make_pki(root / "ca2", ("server", "dc1"))
    ca = str(root / "ca1" / "consul-agent-ca.pem")
    classic = {"ca_file": ca, "cert_file": a_cert, "key_file": a_key, "verify_incoming": True,
               "verify_outgoing": True, "verify_server_hostname": True}
    block = {"tls": {"defaults": {"ca_file": ca, "cert_file": b_cert, "key_file": b_key,
                                  "verify_incoming": True, "verify_outgoing": True},
                     "internal_rpc": {"verify_server_hostname": True}}}
    (root / "a.json").write_text(json.dumps(classic))
    (root / "b.json").write_text(json.dumps(block))
    agents = {}
    for name, host, cfg in (("a", "127.0.0.2", "a.json"), ("b", "127.0.0.3", "b.json")):
        agents[name] = AgentProc("-server", "-bootstrap", "-node", name, "-bind", host,
                                 "-client", host, "-data-dir", str(root / f"data-{name}"),
                                 "-config-file", str(root / cfg), host=host)
    try:
        for a in agents.values():
            a.wait_ready()
        yield {"ca": ca, "a_cert": (a_cert, a_key), "other": (other_cert, other_key), **agents}
    finally:
        for a in agents.values():
            a.kill()


def pool(ca: str, cert: tuple[str, str]) -> RPCPool:
    s = TLSSettings(ca_file=ca, cert_file=cert[0], key_file=cert[1], verify_incoming=True,
                    verify_outgoing=True, verify_server_hostname=True)
    return RPCPool(tls_context=client_context(s),
                   server_name=lambda dc: outgoing_server_hostname(s, dc or "dc1", "consul"))


def test_agent_a_certificate_pings_agent_b(cluster):
    b = cluster["b"]
    assert "Verify Incoming: true, Verify Outgoing: true, Verify Server Hostname: true" in b.output

    async def main():
        p = pool(cluster["ca"], cluster["a_cert"])
        addr = ("127.0.0.3", b.server_port)
        assert await p.call(addr, "Status.Ping", {}) == {}
        assert await p.call(addr, "Status.Leader", {}) == f"127.0.0.3:{b.server_port}"
        await p.close()
    run(main)


def test_certificate_from_another_ca_and_plaintext_are_refused(cluster):
    b = cluster["b"]

    async def main():
        addr = ("127.0.0.3", b.server_port)
        p = pool(cluster["ca"], cluster["other"])
        with pytest.raises((RPCConnectError, ConnectionLost)):
            await p.call(addr, "Status.Ping", {}, timeout=10)
        await p.close()
        plain = RPCPool()
        with pytest.raises((RPCConnectError, ConnectionLost)):
            await plain.call(addr, "Status.Ping", {}, timeout=10)
        await plain.close()
        # B is still serving the right certificate
        p = pool(cluster["ca"], cluster["a_cert"])
        assert await p.call(addr, "Status.Ping", {}) == {}
        await p.close()
    run(main)
    assert "TLS handshake failed" in b.output
    assert "non-TLS connection attempted with verify_incoming set" in b.output

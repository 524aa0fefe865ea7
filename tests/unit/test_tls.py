"""`isthmus tls ca/cert create` (through the CLI entry point) and the TLS contexts, with real handshakes."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import os
import shutil
import socket
import ssl
import stat
import threading
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.cli.tls_cmd import run
from agent.config.model import TLSSettings
from agent.errors import IsthmusError
from agent.tlsutil import (
    TLSConfigError,
    client_context,
    outgoing_server_hostname,
    server_context,
    server_name,
)

IO_TIMEOUT = 5.0

SERVER_WARNING = (
    "==> WARNING: Server Certificates grants authority to become a\n"
    "    server and access all state in the cluster including root keys\n"
    "    and all ACL tokens. Do not distribute them to production hosts\n"
    "    that are not server nodes. Store them as securely as CA keys.\n"
)


# -- helpers ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def _sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    san = _ext(cert, x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]


def _days(cert: x509.Certificate) -> float:
    return (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@dataclasses.dataclass
class PKI:
    dir: Path
    ca: Path
    ca_key: Path
    server: tuple[Path, Path]        # dc1 server cert, key
    client: tuple[Path, Path]        # dc1 client cert, key
    server_dc2: tuple[Path, Path]    # same CA, server cert for dc2
    other_ca: Path                   # a second, unrelated CA
    other_client: tuple[Path, Path]  # client cert from the unrelated CA
    other_server: tuple[Path, Path]  # server.dc1.consul cert from the unrelated CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    main = tmp_path_factory.mktemp("pki")
    other = tmp_path_factory.mktemp("other")
    with _cwd(main):
        assert run(["ca", "create"]) == 0
        assert run(["cert", "create", "-server"]) == 0
        assert run(["cert", "create", "-client"]) == 0
        assert run(["cert", "create", "-server", "-dc", "dc2"]) == 0
    with _cwd(other):
        assert run(["ca", "create"]) == 0
        assert run(["cert", "create", "-client"]) == 0
        assert run(["cert", "create", "-server"]) == 0
    return PKI(
        dir=main,
        ca=main / "consul-agent-ca.pem",
        ca_key=main / "consul-agent-ca-key.pem",
        server=(main / "dc1-server-consul-0.pem", main / "dc1-server-consul-0-key.pem"),
        client=(main / "dc1-client-consul-0.pem", main / "dc1-client-consul-0-key.pem"),
        server_dc2=(main / "dc2-server-consul-0.pem", main / "dc2-server-consul-0-key.pem"),
        other_ca=other / "consul-agent-ca.pem",
        other_client=(other / "dc1-client-consul-0.pem", other / "dc1-client-consul-0-key.pem"),
        other_server=(other / "dc1-server-consul-0.pem", other / "dc1-server-consul-0-key.pem"),
    )


def _settings(ca=None, pair=None, **kw) -> TLSSettings:
    return TLSSettings(
        ca_file=str(ca) if ca else None,
        cert_file=str(pair[0]) if pair else None,
        key_file=str(pair[1]) if pair else None,
        **kw,
    )


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
               server_hostname: str | None = None):
    """One TLS connection over loopback; returns (client_error, server_error, info)."""
    info: dict = {}
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(IO_TIMEOUT)
    port = lsock.getsockname()[1]

    def serve():
        try:
            conn, _ = lsock.accept()
        except Exception as e:  # noqa: BLE001
            info["server_error"] = e
            return
        conn.settimeout(IO_TIMEOUT)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                info["server_peer"] = tls.getpeercert()
                if tls.recv(4) != b"ping":
                    raise ConnectionError("no ping")
                tls.sendall(b"pong")
            info["server_error"] = None
        except Exception as e:  # noqa: BLE001
            info["server_error"] = e
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_error = None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                tls.sendall(b"ping")
                got = tls.recv(4)
                if got != b"pong":
                    raise ConnectionError(f"expected pong, got {got!r}")
                info["version"] = tls.version()
                info["cipher"] = tls.cipher()[0]
                info["client_peer"] = tls.getpeercert()
    except Exception as e:  # noqa: BLE001
        client_error = e
    t.join(IO_TIMEOUT + 2)
    lsock.close()
    assert not t.is_alive(), "server thread did not finish"
    return client_error, info.get("server_error", "no result"), info


# -- tls ca create ---------------------------------------------------------------------------

def test_ca_create_defaults(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["ca", "create"]) == 0
    out = capsys.readouterr()
    assert out.out == "==> Saved consul-agent-ca.pem\n==> Saved consul-agent-ca-key.pem\n"
    assert out.err == ""

    cert = _load(tmp_path / "consul-agent-ca.pem")
    assert _cn(cert).startswith("Consul Agent CA ")
    assert _cn(cert) == f"Consul Agent CA {cert.serial_number}"
    assert 0 < cert.serial_number < 2 ** 128
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "HashiCorp Inc."
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and ku.value.digital_signature
    assert not ku.value.key_encipherment
    ski = _ext(cert, x509.SubjectKeyIdentifier).value.digest
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
    assert ski == aki
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert ski == hashlib.sha256(spki).digest()
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.NameConstraints)
    assert round(_days(cert)) == 1825
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    cert.verify_directly_issued_by(cert)

    key_path = tmp_path / "consul-agent-ca-key.pem"
    assert _mode(key_path) == 0o600
    assert key_path.read_text().startswith("-----BEGIN EC PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_ca_create_options(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["ca", "create", "-days=365", "-name-constraint=true", "-domain=foo",
                "-additional-name-constraint=bar"]) == 0
    assert capsys.readouterr().out == "==> Saved foo-agent-ca.pem\n==> Saved foo-agent-ca-key.pem\n"
    cert = _load(tmp_path / "foo-agent-ca.pem")
    assert round(_days(cert)) == 365
    nc = _ext(cert, x509.NameConstraints)
    assert nc.critical
    assert sorted(g.value for g in nc.value.permitted_subtrees) == ["bar", "foo", "localhost"]
    assert _mode(tmp_path / "foo-agent-ca-key.pem") == 0o600


def test_ca_create_common_name_and_cluster_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(["ca", "create", "-common-name", "My CA", "-domain", "foo", "-cluster-id", "uuid"]) == 0
    cert = _load(tmp_path / "foo-agent-ca.pem")
    assert _cn(cert) == "My CA"
    uris = _ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.UniformResourceIdentifier)
    assert uris == ["spiffe://uuid.foo"]


def test_ca_create_refuses_to_overwrite(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["ca", "create"]) == 0
    before = (tmp_path / "consul-agent-ca.pem").read_bytes()
    capsys.readouterr()
    assert run(["ca", "create"]) == 1
    out = capsys.readouterr()
    assert out.err == "consul-agent-ca.pem already exists.\n"
    assert out.out == ""
    assert (tmp_path / "consul-agent-ca.pem").read_bytes() == before


# -- tls cert create -------------------------------------------------------------------------

def _ca_here(tmp_path, monkeypatch, capsys, *extra):
    monkeypatch.chdir(tmp_path)
    assert run(["ca", "create", *extra]) == 0
    capsys.readouterr()


def test_cert_create_server(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys)
    assert run(["cert", "create", "-server"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out == (SERVER_WARNING
                       + "==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
                       + "==> Saved dc1-server-consul-0.pem\n"
                       + "==> Saved dc1-server-consul-0-key.pem\n")
    ca = _load(tmp_path / "consul-agent-ca.pem")
    cert = _load(tmp_path / "dc1-server-consul-0.pem")
    assert _cn(cert) == "server.dc1.consul"
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert _sans(cert) == (["server.dc1.consul", "localhost"], ["127.0.0.1"])
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    assert not _ext(cert, x509.BasicConstraints).value.ca
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        _ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert round(_days(cert)) == 365
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((cert.not_valid_before_utc - now).total_seconds()) < 120
    assert _mode(tmp_path / "dc1-server-consul-0-key.pem") == 0o600
    key = serialization.load_pem_private_key((tmp_path / "dc1-server-consul-0-key.pem").read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_cert_create_index_increments_and_node(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys)
    assert run(["cert", "create", "-server"]) == 0
    assert run(["cert", "create", "-server", "-node", "mysrv"]) == 0
    # a stray key file alone also makes an index taken
    (tmp_path / "dc1-server-consul-2-key.pem").write_text("x")
    assert run(["cert", "create", "-server"]) == 0
    out = capsys.readouterr().out
    assert "==> Saved dc1-server-consul-1.pem\n" in out
    assert "==> Saved dc1-server-consul-3.pem\n==> Saved dc1-server-consul-3-key.pem\n" in out
    assert not (tmp_path / "dc1-server-consul-2.pem").exists()
    assert (tmp_path / "dc1-server-consul-2-key.pem").read_text() == "x"
    cert1 = _load(tmp_path / "dc1-server-consul-1.pem")
    assert _sans(cert1)[0] == ["mysrv.server.dc1.consul", "server.dc1.consul", "localhost"]
    assert _load(tmp_path / "dc1-server-consul-0.pem").serial_number != cert1.serial_number


def test_cert_create_client_and_cli(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys)
    assert run(["cert", "create", "-client"]) == 0
    assert run(["cert", "create", "-client"]) == 0
    assert run(["cert", "create", "-cli"]) == 0
    out = capsys.readouterr().out
    assert "WARNING" not in out
    assert out.startswith("==> Using consul-agent-ca.pem and consul-agent-ca-key.pem\n"
                          "==> Saved dc1-client-consul-0.pem\n==> Saved dc1-client-consul-0-key.pem\n")
    client = _load(tmp_path / "dc1-client-consul-1.pem")
    assert _cn(client) == "client.dc1.consul"
    assert _sans(client) == (["client.dc1.consul", "localhost"], ["127.0.0.1"])
    assert list(_ext(client, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    cli = _load(tmp_path / "dc1-cli-consul-0.pem")
    assert _cn(cli) == "cli.dc1.consul"
    assert _sans(cli) == (["cli.dc1.consul", "localhost"], [])
    with pytest.raises(x509.ExtensionNotFound):  # Consul gives cli certs no EKU
        _ext(cli, x509.ExtendedKeyUsage)
    for name in ("dc1-client-consul-0-key.pem", "dc1-client-consul-1-key.pem", "dc1-cli-consul-0-key.pem"):
        assert _mode(tmp_path / name) == 0o600


def test_cert_create_other_dc_domain_days_and_extra_sans(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys, "-domain", "nomad")
    assert run(["cert", "create", "-server", "-dc", "dc2", "-domain", "nomad", "-days", "30",
                "-additional-dnsname", "a.example", "-additional-dnsname=b.example",
                "-additional-ipaddress", "10.1.2.3", "--additional-ipaddress=::1"]) == 0
    out = capsys.readouterr().out
    assert "==> Using nomad-agent-ca.pem and nomad-agent-ca-key.pem\n" in out
    cert = _load(tmp_path / "dc2-server-nomad-0.pem")
    assert _cn(cert) == "server.dc2.nomad"
    assert _sans(cert) == (["a.example", "b.example", "server.dc2.nomad", "localhost"],
                           ["10.1.2.3", "::1", "127.0.0.1"])
    assert round(_days(cert)) == 30


def test_cert_create_explicit_ca_and_key(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys)
    (tmp_path / "keys").mkdir()
    os.rename("consul-agent-ca.pem", "keys/my-ca.pem")
    os.rename("consul-agent-ca-key.pem", "keys/my-ca-key.pem")
    assert run(["cert", "create", "-client", "-ca", "keys/my-ca.pem", "-key=keys/my-ca-key.pem"]) == 0
    assert "==> Using keys/my-ca.pem and keys/my-ca-key.pem\n" in capsys.readouterr().out
    _load(tmp_path / "dc1-client-consul-0.pem").verify_directly_issued_by(_load(tmp_path / "keys/my-ca.pem"))


@pytest.mark.parametrize("args, message", [
    ([], "Please provide either -server, -client, or -cli"),
    (["-server", "-client"], "Please provide either -server, -client, or -cli"),
    (["-server", "-client", "-cli"], "Please provide either -server, -client, or -cli"),
    (["-client", "-cli"], "Please provide either -server, -client, or -cli"),
    (["-client", "-node", "foo"], "-node requires -server"),
    (["-cli", "-node", "foo"], "-node requires -server"),
    (["-ca", "", "-key", ""], "Please provide the ca"),
    (["-ca", "foo.pem", "-key", ""], "Please provide the key"),
    (["-server", "-bogus"], "flag provided but not defined: -bogus"),
    (["-server", "-days", "ten"], 'invalid value "ten" for flag -days: parse error'),
    (["-server", "-days"], "flag needs an argument: -days"),
    (["-server=maybe"], 'invalid boolean value "maybe" for -server: parse error'),
    (["-server", "-additional-ipaddress", "not-an-ip"], "invalid IP address: not-an-ip"),
])
def test_cert_create_argument_errors(tmp_path, monkeypatch, capsys, args, message):
    _ca_here(tmp_path, monkeypatch, capsys)
    before = sorted(os.listdir(tmp_path))
    assert run(["cert", "create", *args]) == 1
    assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == before


def test_cert_create_missing_ca(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["cert", "create", "-server"]) == 1
    out = capsys.readouterr()
    assert out.err == "Error reading CA: open consul-agent-ca.pem: no such file or directory\n"
    assert out.out == ""
    (tmp_path / "consul-agent-ca.pem").write_text("x")
    assert run(["cert", "create", "-server"]) == 1
    assert capsys.readouterr().err == \
        "Error reading CA key: open consul-agent-ca-key.pem: no such file or directory\n"
    assert os.listdir(tmp_path) == ["consul-agent-ca.pem"]


def test_cert_create_bad_ca_key(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys)
    (tmp_path / "consul-agent-ca-key.pem").write_text("not a key\n")
    assert run(["cert", "create", "-server"]) == 1
    assert "no PEM-encoded data found" in capsys.readouterr().err
    assert not list(tmp_path.glob("dc1-*"))


def test_cert_create_name_constraint_enforced(tmp_path, monkeypatch, capsys):
    _ca_here(tmp_path, monkeypatch, capsys, "-name-constraint")
    assert run(["cert", "create", "-server"]) == 0  # server.dc1.consul and localhost are allowed
    assert run(["cert", "create", "-server", "-additional-dnsname", "evil.example"]) == 1
    assert "not permitted" in capsys.readouterr().err
    assert not (tmp_path / "dc1-server-consul-1.pem").exists()


def test_help_and_groups(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(["cert", "create", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: isthmus tls cert create [options]")
    assert "  -additional-dnsname=<value>" in out and "  -days=<int>" in out and "  -server\n" in out
    assert run(["ca", "create", "--help"]) == 0
    assert capsys.readouterr().out.startswith("Usage: isthmus tls ca create [options]")
    assert run([]) == 1
    assert capsys.readouterr().out.startswith("Usage: isthmus tls <subcommand>")
    assert run(["cert"]) == 1
    assert capsys.readouterr().out.startswith("Usage: isthmus tls cert <subcommand>")
    assert run(["ca", "-help"]) == 0
    assert run(["nope"]) == 1
    assert os.listdir(tmp_path) == []


# -- contexts: configuration errors ----------------------------------------------------------

def test_server_name():
    assert server_name("dc1") == "server.dc1.consul"
    assert server_name("east", "example.") == "server.east.example"


def test_contexts_off(pki):
    assert server_context(TLSSettings()) is None
    assert server_context(_settings(ca=pki.ca)) is None
    assert client_context(TLSSettings()) is None
    # A cert and a CA alone do not make outgoing RPC use TLS (Consul: needs verify_outgoing).
    s = _settings(ca=pki.ca, pair=pki.client)
    assert client_context(s) is None
    assert outgoing_server_hostname(s, "dc1", "consul") is None
    s = dataclasses.replace(s, verify_outgoing=True)
    assert isinstance(client_context(s), ssl.SSLContext)
    assert outgoing_server_hostname(s, "dc1", "consul") is None
    # verify_server_hostname implies verify_outgoing
    s = _settings(ca=pki.ca, verify_server_hostname=True)
    assert client_context(s).check_hostname
    assert outgoing_server_hostname(s, "dc1", "consul") == "server.dc1.consul"


def test_context_settings(pki):
    srv = server_context(_settings(ca=pki.ca, pair=pki.server, verify_incoming=True))
    assert srv.verify_mode == ssl.CERT_REQUIRED
    assert srv.minimum_version == ssl.TLSVersion.TLSv1_2
    assert server_context(_settings(ca=pki.ca, pair=pki.server)).verify_mode == ssl.CERT_NONE
    cli = client_context(_settings(ca=pki.ca, verify_outgoing=True, tls_min_version="TLSv1_3"))
    assert cli.verify_mode == ssl.CERT_REQUIRED and not cli.check_hostname
    assert cli.minimum_version == ssl.TLSVersion.TLSv1_3


def test_bad_pem_and_mismatched_key(pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError, match="garbage.pem"):
        server_context(_settings(pair=(garbage, pki.server[1])))
    empty = tmp_path / "empty.pem"
    empty.write_text("hello\n")
    with pytest.raises(TLSConfigError, match="empty.pem.*no PEM"):
        server_context(_settings(pair=(pki.server[0], empty)))
    with pytest.raises(TLSConfigError, match="does not match"):
        server_context(_settings(pair=(pki.server[0], pki.client[1])))
    with pytest.raises(TLSConfigError, match="does not match"):
        client_context(_settings(ca=pki.ca, pair=(pki.client[0], pki.server[1]), verify_outgoing=True))
    with pytest.raises(TLSConfigError, match="empty.pem"):
        client_context(_settings(ca=empty, verify_outgoing=True))
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(TLSConfigError, match="missing-ca.pem"):
        server_context(_settings(ca=missing, pair=pki.server, verify_incoming=True))
    with pytest.raises(TLSConfigError, match="missing-key.pem"):
        server_context(_settings(pair=(pki.server[0], tmp_path / "missing-key.pem")))
    assert issubclass(TLSConfigError, IsthmusError)


def test_invalid_combinations(pki):
    with pytest.raises(TLSConfigError, match="no CA certificates"):
        server_context(_settings(pair=pki.server, verify_incoming=True))
    with pytest.raises(TLSConfigError, match="Cert and Key pair"):
        server_context(_settings(ca=pki.ca, verify_incoming=True))
    with pytest.raises(TLSConfigError, match="no CA certificates"):
        client_context(_settings(pair=pki.client, verify_outgoing=True))
    with pytest.raises(TLSConfigError, match="key_file"):
        server_context(TLSSettings(cert_file=str(pki.server[0])))


def test_cipher_suites_and_versions(pki):
    base = _settings(ca=pki.ca, pair=pki.server)
    with pytest.raises(TLSConfigError, match="TLS_BOGUS"):
        server_context(dataclasses.replace(base, cipher_suites=("TLS_BOGUS",)))
    with pytest.raises(TLSConfigError, match="TLS 1.3 cipher suites are not configurable"):
        server_context(dataclasses.replace(
            base, tls_min_version="TLSv1_3",
            cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)))
    for v in ("TLSv1_1", "TLSv1_0", "SSLv3"):
        with pytest.raises(TLSConfigError, match="tls_min_version"):
            server_context(dataclasses.replace(base, tls_min_version=v))


def test_ca_path(pki, tmp_path):
    d = tmp_path / "cas"
    (d / "nested").mkdir(parents=True)
    shutil.copy(pki.other_ca, d / "other.pem")
    shutil.copy(pki.ca, d / "nested" / "main.pem")
    srv = server_context(TLSSettings(ca_path=str(d), cert_file=str(pki.server[0]),
                                     key_file=str(pki.server[1]), verify_incoming=True))
    cli = client_context(_settings(ca=pki.ca, pair=pki.client, verify_outgoing=True,
                                   verify_server_hostname=True))
    c_err, s_err, _ = _handshake(srv, cli, "server.dc1.consul")
    assert c_err is None and s_err is None
    (d / "README").write_text("not a cert\n")
    with pytest.raises(TLSConfigError, match="README"):
        server_context(TLSSettings(ca_path=str(d), cert_file=str(pki.server[0]),
                                   key_file=str(pki.server[1]), verify_incoming=True))
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    with pytest.raises(TLSConfigError, match="no CAs found"):
        client_context(TLSSettings(ca_path=str(empty), verify_outgoing=True))


# -- contexts: real handshakes ---------------------------------------------------------------

def _strict_server(pki, pair=None, **kw):
    return server_context(_settings(ca=pki.ca, pair=pair or pki.server, verify_incoming=True, **kw))


def _strict_client(pki, pair, ca=None, **kw):
    kw.setdefault("verify_outgoing", True)
    kw.setdefault("verify_server_hostname", True)
    s = _settings(ca=ca or pki.ca, pair=pair, **kw)
    return client_context(s), outgoing_server_hostname(s, "dc1", "consul")


def test_mutual_tls_succeeds(pki):
    cli, hostname = _strict_client(pki, pki.client)
    assert hostname == "server.dc1.consul"
    c_err, s_err, info = _handshake(_strict_server(pki), cli, hostname)
    assert c_err is None and s_err is None
    assert info["version"] == "TLSv1.3"
    peer = info["server_peer"]
    assert dict(x[0] for x in peer["subject"])["commonName"] == "client.dc1.consul"
    assert dict(x[0] for x in info["client_peer"]["subject"])["commonName"] == "server.dc1.consul"


def test_server_to_server_with_the_same_cert(pki):
    # Consul servers dial each other presenting their server certificate.
    cli, hostname = _strict_client(pki, pki.server)
    c_err, s_err, info = _handshake(_strict_server(pki), cli, hostname)
    assert c_err is None and s_err is None
    assert dict(x[0] for x in info["server_peer"]["subject"])["commonName"] == "server.dc1.consul"


def test_client_cert_from_another_ca_is_refused(pki):
    cli, hostname = _strict_client(pki, pki.other_client)  # trusts our CA, presents a foreign cert
    c_err, s_err, _ = _handshake(_strict_server(pki), cli, hostname)
    assert isinstance(s_err, ssl.SSLError), s_err
    assert "certificate verify failed" in str(s_err) or "unknown ca" in str(s_err).lower()
    assert c_err is not None


def test_client_without_cert_is_refused_under_verify_incoming(pki):
    cli, hostname = _strict_client(pki, None)
    c_err, s_err, _ = _handshake(_strict_server(pki), cli, hostname)
    assert isinstance(s_err, ssl.SSLError), s_err
    assert "certificate" in str(s_err).lower()
    assert c_err is not None


def test_client_without_cert_is_accepted_without_verify_incoming(pki):
    srv = server_context(_settings(ca=pki.ca, pair=pki.server))
    cli, hostname = _strict_client(pki, None)
    c_err, s_err, info = _handshake(srv, cli, hostname)
    assert c_err is None and s_err is None
    assert not info["server_peer"]  # no client certificate was requested


def test_wrong_datacenter_fails_verify_server_hostname(pki):
    srv = _strict_server(pki, pair=pki.server_dc2)
    cli, hostname = _strict_client(pki, pki.client)
    assert hostname == "server.dc1.consul"
    c_err, s_err, _ = _handshake(srv, cli, hostname)
    assert isinstance(c_err, ssl.SSLCertVerificationError), c_err
    assert "hostname" in str(c_err).lower()
    assert s_err is not None


def test_verify_outgoing_without_hostname_checks_chain_only(pki):
    srv = _strict_server(pki, pair=pki.server_dc2)
    cli, hostname = _strict_client(pki, pki.client, verify_server_hostname=False)
    assert hostname is None
    c_err, s_err, _ = _handshake(srv, cli, hostname)
    assert c_err is None and s_err is None
    # ... but the chain is still verified: a server with a foreign CA's cert is rejected.
    foreign = server_context(_settings(ca=pki.ca, pair=pki.other_server, verify_incoming=True))
    c_err, _, _ = _handshake(foreign, cli, hostname)
    assert isinstance(c_err, ssl.SSLCertVerificationError), c_err


def test_tls_1_1_is_refused(pki):
    srv = server_context(_settings(ca=pki.ca, pair=pki.server))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1 at all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError) as e:
        pytest.skip(f"this OpenSSL cannot act as a TLS 1.1 client: {e}")
    c_err, s_err, _ = _handshake(srv, old)
    assert c_err is not None
    assert isinstance(s_err, ssl.SSLError), s_err
    text = str(s_err).lower()
    if "eof" in text:
        pytest.skip("the local OpenSSL refused to send a TLS 1.1 ClientHello at all")
    assert "unsupported protocol" in text or "version" in text


def test_tls_min_version_1_3_refuses_1_2(pki):
    srv = server_context(_settings(ca=pki.ca, pair=pki.server, tls_min_version="TLSv1_3"))
    cli, hostname = _strict_client(pki, pki.client, verify_incoming=False)
    cli.maximum_version = ssl.TLSVersion.TLSv1_2
    c_err, s_err, _ = _handshake(srv, cli, hostname)
    assert c_err is not None and isinstance(s_err, ssl.SSLError)


def test_cipher_suites_apply_to_tls_1_2(pki):
    srv = server_context(_settings(ca=pki.ca, pair=pki.server, verify_incoming=True,
                                   cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",)))
    cli, hostname = _strict_client(pki, pki.client)
    cli.maximum_version = ssl.TLSVersion.TLSv1_2
    c_err, s_err, info = _handshake(srv, cli, hostname)
    assert c_err is None and s_err is None
    assert info["version"] == "TLSv1.2"
    assert info["cipher"] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_generated_cert_has_ip_san_usable_for_loopback(pki):
    # The 127.0.0.1 SAN lets a client verify a server dialed by IP (Consul puts it in server certs).
    srv = server_context(_settings(ca=pki.ca, pair=pki.server))
    cli = client_context(_settings(ca=pki.ca, pair=pki.client, verify_outgoing=True,
                                   verify_server_hostname=True))
    c_err, s_err, _ = _handshake(srv, cli, "127.0.0.1")
    assert c_err is None and s_err is None

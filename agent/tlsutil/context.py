"""`ssl.SSLContext`s for the agent's listeners and outgoing RPC, following Consul's `tlsutil`.

Rules (Consul `tlsutil/config.go`, Configurator.commonTLSConfig / internalRPCTLSConfig /
OutgoingRPCConfig / wrapTLSClient, and `agent/config/builder.go`):

* Minimum version from `tls_min_version`; Isthmus never goes below TLS 1.2 (Consul's
  AgentMinSupportedTLSVersion is TLSv1_2 too). "" / "TLS_AUTO" mean TLS 1.2.
* `cipher_suites` are Consul's (Go/IANA) names, mapped to OpenSSL names; they only apply to
  TLS 1.2 (TLS 1.3 suites are not configurable: Consul rejects cipher_suites together with
  tls_min_version TLSv1_3, and so do we).
* Server side: serve our cert chain; `verify_incoming` -> require a client certificate that
  chains to the CA (Go: RequireAndVerifyClientCert); otherwise no client cert is requested.
  Consul refuses verify_incoming without a CA or without a cert/key pair; so do we.
* Client side (outgoing internal RPC): Consul dials TLS only when `verify_outgoing` is set
  (or auto-encrypt/auto-config is on, which Isthmus does not implement). A cert and CA
  alone do NOT switch outgoing RPC to TLS: Configurator.outgoingRPCTLSEnabled() is
  `AutoTLS || VerifyOutgoing` (the older "use TLS when a CA is present" behaviour is gone).
  `verify_server_hostname` implies `verify_outgoing` (documented, and enforced by Consul's
  config builder), so either flag yields a client context here.
  - The server's chain is always verified against the CA (Go verifies it by hand when
    InsecureSkipVerify is set for lack of verify_server_hostname).
  - `verify_server_hostname` additionally checks the name `server.<dc>.<domain>`; callers
    pass `outgoing_server_hostname(...)` as `server_hostname=`.
  - Our cert, when configured, is presented (mutual TLS).
  - verify_outgoing without a CA is an error ("VerifyOutgoing set but no CA certificates
    were provided").
* CAs: `ca_file` if set, else every file under `ca_path` (recursively); Consul ignores
  ca_path when ca_file is set. Each file must hold at least one PEM certificate.
"""
from __future__ import annotations

import os
import ssl

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

from agent.config.model import TLSSettings
from agent.errors import IsthmusError

__all__ = [
    "CIPHER_SUITES", "TLSConfigError", "client_context", "outgoing_server_hostname",
    "outgoing_tls_enabled", "server_context", "server_name",
]


class TLSConfigError(IsthmusError):
    """TLS settings that cannot be turned into an SSL context (bad files, bad names, bad combos)."""


# Consul's accepted agent cipher suites (types/tls.go consulAgentTLSCipherSuites) -> OpenSSL names.
CIPHER_SUITES: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
}

_VERSIONS: dict[str, ssl.TLSVersion] = {
    "": ssl.TLSVersion.TLSv1_2,
    "TLS_AUTO": ssl.TLSVersion.TLSv1_2,
    "TLSv1_2": ssl.TLSVersion.TLSv1_2,
    "TLSv1_3": ssl.TLSVersion.TLSv1_3,
    "tls12": ssl.TLSVersion.TLSv1_2,   # Consul's deprecated spellings
    "tls13": ssl.TLSVersion.TLSv1_3,
}
_TOO_OLD = ("TLSv1_0", "TLSv1_1", "tls10", "tls11")


def server_name(datacenter: str, domain: str = "consul") -> str:
    """The name servers' certificates must carry: server.<dc>.<domain> (trailing dot dropped)."""
    return f"server.{datacenter}.{domain.rstrip('.')}"


def outgoing_tls_enabled(s: TLSSettings) -> bool:
    """Whether outgoing internal RPC uses TLS (Consul: verify_outgoing; verify_server_hostname implies it)."""
    return bool(s.verify_outgoing or s.verify_server_hostname)


def outgoing_server_hostname(s: TLSSettings, datacenter: str, domain: str = "consul") -> str | None:
    """The name to check on the server's certificate when dialing `datacenter`, or None.

    None when outgoing TLS is off or hostnames are not verified (then pass server_hostname=None).
    """
    if not (outgoing_tls_enabled(s) and s.verify_server_hostname):
        return None
    return server_name(datacenter, domain)


# -- helpers ---------------------------------------------------------------------------------

def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None


def _pem_certs(data: bytes, path: str, what: str) -> list[x509.Certificate]:
    # cryptography's X.509 parts load only when TLS is configured (a few MiB of RSS)
    from cryptography import x509
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise TLSConfigError(f"{what} {path}: no PEM-encoded certificate found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError(f"{what} {path}: bad PEM certificate: {e}") from None


def _min_version(value: str) -> ssl.TLSVersion:
    v = value or ""
    if v in _VERSIONS:
        return _VERSIONS[v]
    if v in _TOO_OLD:
        raise TLSConfigError(
            f"tls_min_version {v} is not supported: the minimum is TLSv1_2")
    raise TLSConfigError(
        f"invalid tls_min_version {v!r}: please specify one of [TLSv1_2, TLSv1_3]")


def _cipher_string(suites: tuple[str, ...] | list[str], min_version: ssl.TLSVersion) -> str | None:
    if not suites:
        return None
    if min_version >= ssl.TLSVersion.TLSv1_3:
        raise TLSConfigError("TLS 1.3 cipher suites are not configurable")
    unknown = [c for c in suites if c not in CIPHER_SUITES]
    if unknown:
        raise TLSConfigError(
            f"no matching Consul Agent TLS cipher suite found for {','.join(unknown)}")
    return ":".join(CIPHER_SUITES[c] for c in suites)


def _has_ca(s: TLSSettings) -> bool:
    return bool(s.ca_file or s.ca_path)


def _load_cas(ctx: ssl.SSLContext, s: TLSSettings) -> bool:
    """Load the CA(s) into ctx; False when none are configured."""
    if s.ca_file:
        files = [(s.ca_file, "ca_file")]
    elif s.ca_path:
        if not os.path.isdir(s.ca_path):
            if not os.path.exists(s.ca_path):
                raise TLSConfigError(f"cannot read ca_path {s.ca_path}: No such file or directory")
            files = [(s.ca_path, "ca_path")]
        else:
            files = []
            for root, dirs, names in os.walk(s.ca_path):
                dirs.sort()
                files += [(os.path.join(root, n), "ca_path file") for n in sorted(names)]
            if not files:
                raise TLSConfigError(f"ca_path {s.ca_path}: no CAs found")
    else:
        return False
    from cryptography.hazmat.primitives import serialization
    for path, what in files:
        certs = _pem_certs(_read(path, what), path, what)
        pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)
        try:
            ctx.load_verify_locations(cadata=pem)
        except ssl.SSLError as e:
            raise TLSConfigError(f"{what} {path}: cannot load CA: {e}") from None
    return True


def _spki(key_or_cert) -> bytes:
    from cryptography.hazmat.primitives import serialization
    pub = key_or_cert.public_key()
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _load_key_pair(ctx: ssl.SSLContext, s: TLSSettings) -> bool:
    """Load cert_file/key_file into ctx; False when no pair is configured."""
    if not s.cert_file and not s.key_file:
        return False
    if not s.cert_file:
        raise TLSConfigError(f"key_file {s.key_file} is set but cert_file is not")
    if not s.key_file:
        raise TLSConfigError(f"cert_file {s.cert_file} is set but key_file is not")
    from cryptography.hazmat.primitives import serialization
    certs = _pem_certs(_read(s.cert_file, "cert_file"), s.cert_file, "cert_file")
    key_data = _read(s.key_file, "key_file")
    if b"PRIVATE KEY-----" not in key_data:
        raise TLSConfigError(f"key_file {s.key_file}: no PEM-encoded private key found")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TLSConfigError(f"key_file {s.key_file}: the private key is encrypted") from None
    except ValueError as e:
        raise TLSConfigError(f"key_file {s.key_file}: bad PEM private key: {e}") from None
    if _spki(key) != _spki(certs[0]):
        raise TLSConfigError(
            f"Failed to load cert/key pair: private key {s.key_file} does not match "
            f"the certificate in {s.cert_file}")
    try:
        ctx.load_cert_chain(s.cert_file, s.key_file)
    except (ssl.SSLError, OSError) as e:
        raise TLSConfigError(
            f"Failed to load cert/key pair {s.cert_file} / {s.key_file}: {e}") from None
    return True


def _base(purpose: int, s: TLSSettings) -> ssl.SSLContext:
    minimum = _min_version(s.tls_min_version)
    ciphers = _cipher_string(tuple(s.cipher_suites), minimum)
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = minimum
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if ciphers is not None:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise TLSConfigError(
                f"none of cipher_suites {list(s.cipher_suites)} is available in this OpenSSL") from None
    return ctx


# -- public ----------------------------------------------------------------------------------

def server_context(s: TLSSettings) -> ssl.SSLContext | None:
    """Context for accepting TLS (internal RPC, HTTPS); None when no cert/key pair is set (TLS off)."""
    if not (s.cert_file or s.key_file):
        if s.verify_incoming:
            raise TLSConfigError(
                "VerifyIncoming requires either a Cert and Key pair in the configuration file, "
                "or auto_encrypt/auto_config be enabled")
        return None
    if s.verify_incoming and not _has_ca(s):
        raise TLSConfigError("VerifyIncoming set but no CA certificates were provided")
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, s)
    _load_key_pair(ctx, s)
    _load_cas(ctx, s)
    # Go: ClientAuth = RequireAndVerifyClientCert only with verify_incoming; else NoClientCert.
    ctx.verify_mode = ssl.CERT_REQUIRED if s.verify_incoming else ssl.CERT_NONE
    return ctx


def client_context(s: TLSSettings) -> ssl.SSLContext | None:
    """Context for outgoing internal RPC; None when outgoing RPC is plaintext (see module doc)."""
    if not outgoing_tls_enabled(s):
        return None
    if not _has_ca(s):
        raise TLSConfigError("VerifyOutgoing set but no CA certificates were provided")
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, s)
    ctx.check_hostname = bool(s.verify_server_hostname)
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_cas(ctx, s)
    _load_key_pair(ctx, s)  # present our cert when we have one (mutual TLS)
    return ctx


def area_client_context(s: TLSSettings) -> ssl.SSLContext | None:
    """Context for servers of a network area with `UseTLS` ("use TLS if possible"): the
    outgoing context when verify_outgoing is on, else one verifying the peer's chain against
    our CA whenever a CA is configured; None (plaintext) without TLS material."""
    ctx = client_context(s)
    if ctx is not None or not _has_ca(s):
        return ctx
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, s)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_cas(ctx, s)
    _load_key_pair(ctx, s)
    return ctx

"""Agent TLS CA and certificate generation, as `consul tls ca create` / `consul tls cert create` make them.

Mirrors Consul's `tlsutil/generate.go` (GenerateCA, GenerateCert, Verify) and the naming
rules of `command/tls/{ca,cert}/create`:

* keys are ECDSA P-256, written PEM "EC PRIVATE KEY" (Go's x509.MarshalECPrivateKey);
* serial numbers are random below 2**128;
* the subject/authority key id is the SHA-256 of the DER SubjectPublicKeyInfo;
* the CA subject is HashiCorp's fixed address block with CN "Consul Agent CA <serial>",
  basic constraints CA (critical), key usage certSign|cRLSign|digitalSignature (critical),
  and, with -name-constraint, critical permitted DNS subtrees;
* leaf certificates carry only a CN, key usage digitalSignature|keyEncipherment, the
  given extended key usages, SANs, their own subject key id and the CA's as authority
  key id (Go fills that in from the parent's SubjectKeyId).
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.errors import IsthmusError

__all__ = [
    "CertError", "CertSpec", "DEFAULT_DOMAIN", "DEFAULT_CA_DAYS", "DEFAULT_CERT_DAYS",
    "SERVER_WARNING", "ca_file_names", "cert_spec", "find_free_names", "generate_ca",
    "generate_cert", "generate_private_key", "generate_serial_number", "key_id",
    "parse_cert", "parse_signer", "verify", "write_new_file",
]

DEFAULT_DOMAIN = "consul"
DEFAULT_CA_DAYS = 1825      # `consul tls ca create -days` default (about 5 years)
DEFAULT_CERT_DAYS = 365     # `consul tls cert create -days` default
MAX_FILE_INDEX = 10000      # Consul gives up after <prefix>-10000.pem

SERVER_WARNING = (
    "==> WARNING: Server Certificates grants authority to become a\n"
    "    server and access all state in the cluster including root keys\n"
    "    and all ACL tokens. Do not distribute them to production hosts\n"
    "    that are not server nodes. Store them as securely as CA keys."
)


class CertError(IsthmusError):
    """Generating, parsing or verifying an agent TLS certificate failed."""


# -- primitives ------------------------------------------------------------------------------

def generate_serial_number() -> int:
    """A random serial in [1, 2**128) (Go: rand.Int(rand.Reader, 1<<128); 0 is not a valid serial)."""
    while True:
        sn = secrets.randbelow(1 << 128)
        if sn:
            return sn


def generate_private_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A new ECDSA P-256 key and its PEM ("EC PRIVATE KEY", SEC 1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
    return key, pem


def key_id(public_key) -> bytes:
    """Consul's key id: SHA-256 over the DER SubjectPublicKeyInfo (32 bytes)."""
    if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        raise CertError(f"invalid key type: {type(public_key).__name__}")
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def parse_cert(pem: str | bytes) -> x509.Certificate:
    """The first PEM block, which must be a CERTIFICATE (Consul's parseCert)."""
    data = pem.encode() if isinstance(pem, str) else pem
    begin = data.find(b"-----BEGIN ")
    if begin < 0:
        raise CertError("no PEM-encoded data found")
    if not data.startswith(b"-----BEGIN CERTIFICATE-----", begin):
        raise CertError("first PEM-block should be CERTIFICATE type")
    try:
        return x509.load_pem_x509_certificate(data[begin:])
    except ValueError as e:
        raise CertError(f"failed to parse certificate: {e}") from None


def parse_signer(pem: str | bytes):
    """A private key from PEM: EC PRIVATE KEY, RSA PRIVATE KEY or PRIVATE KEY (Consul's ParseSigner)."""
    data = pem.encode() if isinstance(pem, str) else pem
    begin = data.find(b"-----BEGIN ")
    if begin < 0:
        raise CertError("no PEM-encoded data found")
    end = data.find(b"-----", begin + 11)
    block_type = data[begin + 11:end].decode("ascii", "replace") if end > 0 else ""
    if block_type not in ("EC PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY"):
        raise CertError(f"unknown PEM block type for signing key: {block_type}")
    try:
        key = serialization.load_pem_private_key(data[begin:], password=None)
    except TypeError:
        raise CertError("private key is encrypted; an unencrypted key is required") from None
    except ValueError as e:
        raise CertError(f"failed to parse private key: {e}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CertError("private key is not a valid format")
    return key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _hash_for(key) -> hashes.HashAlgorithm:
    # Go picks SHA-256 for P-256 and RSA keys, SHA-384 for P-384, SHA-512 for P-521.
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {384: hashes.SHA384(), 521: hashes.SHA512()}.get(key.curve.key_size, hashes.SHA256())
    return hashes.SHA256()


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- CA --------------------------------------------------------------------------------------

def generate_ca(
    *,
    days: int = DEFAULT_CA_DAYS,
    permitted_dns_domains: list[str] | tuple[str, ...] = (),
    common_name: str = "",
    cluster_id: str = "",
    domain: str = DEFAULT_DOMAIN,
    signer=None,
) -> tuple[str, str]:
    """Create a self-signed agent CA; returns (cert PEM, key PEM). Key PEM is "" when `signer` is given.

    `permitted_dns_domains` non-empty adds critical X.509 name constraints (Consul passes
    additional constraints + [domain, "localhost"]). `cluster_id` adds the SPIFFE signing URI
    spiffe://<cluster_id>.<domain> as Consul's -cluster-id does.
    """
    key_pem = ""
    if signer is None:
        signer, key_pem = generate_private_key()
    sn = generate_serial_number()
    name = common_name or f"Consul Agent CA {sn}"
    if days == 0:
        days = 365  # GenerateCA's own default when Days is unset
    if days < 0:
        raise CertError(f"invalid number of days {days}: must not be negative")
    kid = key_id(signer.public_key())
    subject = x509.Name([
        # Go's pkix.Name.ToRDNSequence order: C, ST, L, street, postalCode, O, OU, CN.
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
        x509.NameAttribute(NameOID.STREET_ADDRESS, "101 Second Street"),
        x509.NameAttribute(NameOID.POSTAL_CODE, "94105"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "HashiCorp Inc."),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])
    now = _now()
    b = (
        x509.CertificateBuilder()
        .serial_number(sn)
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(signer.public_key())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(kid), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(kid, None, None), critical=False)
    )
    if cluster_id:
        uri = f"spiffe://{cluster_id}.{domain}"
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                            critical=False)
    if permitted_dns_domains:
        b = b.add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(d) for d in permitted_dns_domains],
            excluded_subtrees=None), critical=True)
    try:
        cert = b.sign(signer, _hash_for(signer))
    except (ValueError, TypeError) as e:
        raise CertError(f"error generating CA certificate: {e}") from None
    return _pem(cert), key_pem


# -- leaf certificates -----------------------------------------------------------------------

def generate_cert(
    *,
    signer,
    ca: str,
    name: str,
    days: int,
    dns_names: list[str] | tuple[str, ...] = (),
    ip_addresses: list | tuple = (),
    ext_key_usage: list | tuple = (),
) -> tuple[str, str]:
    """Sign a new leaf for `name` with the CA (PEM `ca`, key `signer`); returns (cert PEM, key PEM)."""
    try:
        parent = parse_cert(ca)
    except CertError as e:
        raise CertError(f"failed to parse CA: {e}") from None
    if days < 0:
        raise CertError(f"invalid number of days {days}: must not be negative")
    key, key_pem = generate_private_key()
    now = _now()
    b = (
        x509.CertificateBuilder()
        .serial_number(generate_serial_number())
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(parent.subject)
        .public_key(key.public_key())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier(key_id(key.public_key())), critical=False)
    )
    if ext_key_usage:
        b = b.add_extension(x509.ExtendedKeyUsage(list(ext_key_usage)), critical=False)
    try:
        ski = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = b.add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    except x509.ExtensionNotFound:
        pass
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i) if isinstance(i, str) else i)
             for i in ip_addresses]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        cert = b.sign(signer, _hash_for(signer))
    except (ValueError, TypeError) as e:
        raise CertError(f"failed to create certificate: {e}") from None
    return _pem(cert), key_pem


def _dns_permitted(name: str, constraint: str) -> bool:
    """Go's matchDomainConstraint, for the plain cases Consul produces."""
    name, constraint = name.lower().rstrip("."), constraint.lower()
    if not constraint:
        return True
    if constraint.startswith("."):
        return name.endswith(constraint)
    return name == constraint or name.endswith("." + constraint)


def verify(ca: str, cert: str, dns_name: str) -> None:
    """Check `cert` chains to `ca`, is valid now, is for `dns_name` and obeys the CA's name constraints.

    Consul runs x509 Verify with DNSName=<name> right after signing; this is that check.
    """
    try:
        root = parse_cert(ca)
    except CertError:
        raise CertError("failed to parse root certificate") from None
    try:
        leaf = parse_cert(cert)
    except CertError:
        raise CertError("failed to parse certificate") from None
    try:
        leaf.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise CertError("x509: certificate signed by unknown authority") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
        raise CertError(
            f"x509: certificate has expired or is not yet valid: current time {now:%Y-%m-%dT%H:%M:%SZ} "
            f"is after {leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    try:
        dns = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if dns_name and dns_name.lower() not in {d.lower() for d in dns}:
        raise CertError(
            f"x509: certificate is valid for {', '.join(dns)}, not {dns_name}" if dns
            else "x509: certificate is not valid for any names")
    try:
        nc = root.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return
    permitted = [g.value for g in (nc.permitted_subtrees or []) if isinstance(g, x509.DNSName)]
    if permitted:
        for d in dns:
            if not any(_dns_permitted(d, c) for c in permitted):
                raise CertError(
                    "x509: a root or intermediate certificate is not authorized to sign for this "
                    f"name: DNS name {d!r} is not permitted by any constraint")


# -- what `tls cert create` makes ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CertSpec:
    """Name, SANs, extended key usages and file prefix of one `tls cert create` certificate."""
    kind: str                   # "server" | "client" | "cli"
    name: str                   # the CN, and the name the cert is verified for
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    ext_key_usage: tuple        # ExtendedKeyUsageOID values
    prefix: str                 # files are <prefix>-<n>.pem and <prefix>-<n>-key.pem


def cert_spec(
    kind: str,
    *,
    dc: str = "dc1",
    domain: str = DEFAULT_DOMAIN,
    node: str = "",
    additional_dns: list[str] | tuple[str, ...] = (),
    additional_ips: list[str] | tuple[str, ...] = (),
) -> CertSpec:
    """Consul's SAN layout: the additional names first, then the fixed ones.

    server: [<node>.server.<dc>.<domain>,] server.<dc>.<domain>, localhost; IP 127.0.0.1;
            EKU serverAuth, clientAuth (servers dial each other with the same cert).
    client: client.<dc>.<domain>, localhost; IP 127.0.0.1; EKU clientAuth, serverAuth.
    cli:    cli.<dc>.<domain>, localhost (Consul drops -additional-dnsname here but keeps
            -additional-ipaddress, and adds no 127.0.0.1); no EKU extension at all.
    """
    dns = [d.strip() for d in additional_dns if d]
    ips = []
    for i in additional_ips:
        if not i:
            continue
        try:
            ips.append(str(ipaddress.ip_address(i.strip())))
        except ValueError:
            raise CertError(f"invalid IP address: {i.strip()}") from None
    if kind == "server":
        name = f"server.{dc}.{domain}"
        if node:
            dns.append(f"{node}.server.{dc}.{domain}")
        dns += [name, "localhost"]
        ips.append("127.0.0.1")
        eku = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    elif kind == "client":
        name = f"client.{dc}.{domain}"
        dns += [name, "localhost"]
        ips.append("127.0.0.1")
        eku = (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH)
    elif kind == "cli":
        name = f"cli.{dc}.{domain}"
        dns = [name, "localhost"]   # replaces -additional-dnsname; -additional-ipaddress is kept
        eku = ()
    else:
        raise CertError(f"unknown certificate kind {kind!r}")
    return CertSpec(kind, name, tuple(dns), tuple(ips), eku, f"{dc}-{kind}-{domain}")


def ca_file_names(domain: str = DEFAULT_DOMAIN) -> tuple[str, str]:
    """(<domain>-agent-ca.pem, <domain>-agent-ca-key.pem)."""
    return f"{domain}-agent-ca.pem", f"{domain}-agent-ca-key.pem"


def find_free_names(prefix: str, directory: str = ".") -> tuple[str, str] | None:
    """The first (<prefix>-<n>.pem, <prefix>-<n>-key.pem), n from 0, where neither file exists."""
    for i in range(MAX_FILE_INDEX + 1):
        cert, key = f"{prefix}-{i}.pem", f"{prefix}-{i}-key.pem"
        if not os.path.lexists(os.path.join(directory, cert)) and \
                not os.path.lexists(os.path.join(directory, key)):
            return cert, key
    return None


def write_new_file(path: str, data: str, mode: int) -> None:
    """Create `path` (never overwriting: O_EXCL) with `data`, fsynced, permissions `mode`.

    Keys are written 0600 exactly; certificates 0666 less the umask, as Consul does.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        if mode == 0o600:
            os.fchmod(fd, 0o600)  # independent of the umask
        view = memoryview(data.encode("ascii"))
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)

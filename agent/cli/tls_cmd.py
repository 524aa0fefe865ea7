"""`isthmus tls ...`: Consul's `consul tls ca create` and `consul tls cert create`.

`run(argv)` takes what follows `isthmus tls` (e.g. ["cert", "create", "-server"]) and returns
the exit code. Files go to the current directory, as with Consul. Behaviour mirrors Consul's
command/tls (flags, defaults, file names, messages, exit codes) and mitchellh/cli:

* `-h`, `-help`, `--help` anywhere (before `--`) print the command's help to stdout, exit 0;
* `isthmus tls`, `isthmus tls ca`, `isthmus tls cert` (or an unknown subcommand) print the
  group's help and exit 1 (cli.RunResultHelp);
* flags parse like Go's `flag` package: `-flag value`, `-flag=value`, `--flag`, booleans as
  `-flag` or `-flag=false`; parsing stops at the first non-flag argument or `--`;
* normal output goes to stdout, errors to stderr; 0 on success, 1 on any error.
"""
from __future__ import annotations

import os
import sys

from agent.cli.flags import FlagError, FlagSet, HelpRequested
from agent.tlsutil import certs
from agent.tlsutil.certs import CertError

__all__ = ["run"]


# -- output ----------------------------------------------------------------------------------

def _out(msg: str) -> None:
    print(msg, file=sys.stdout, flush=True)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- help texts (Consul's, with the binary renamed) ------------------------------------------

_TLS_HELP = """\
Usage: isthmus tls <subcommand> <subcommand> [options]

  This command has subcommands for interacting with Consul TLS.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a CA

    $ isthmus tls ca create

  Create a server certificate

    $ isthmus tls cert create -server

  Create a client certificate

    $ isthmus tls cert create -client

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    ca      Helpers for CAs
    cert    Helpers for certificates"""

_CA_HELP = """\
Usage: isthmus tls ca <subcommand> [options]

  This command has subcommands for interacting with Certificate Authorities.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a CA

    $ isthmus tls ca create
    ==> saved consul-agent-ca.pem
    ==> saved consul-agent-ca-key.pem

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create a new consul CA"""

_CERT_HELP = """\
Usage: isthmus tls cert <subcommand> [options]

  This command has subcommands for interacting with certificates

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  Create a certificate

    $ isthmus tls cert create -server
    ==> saved dc1-server-consul-0.pem
    ==> saved dc1-server-consul-0-key.pem

  Create a certificate with your own CA:

    $ isthmus tls cert create -server -ca my-ca.pem -key my-ca-key.pem
    ==> saved dc1-server-consul-0.pem
    ==> saved dc1-server-consul-0-key.pem

  For more examples, ask for subcommand help or view the documentation.

Subcommands:
    create    Create a new certificate"""

_CA_CREATE_HELP = """\
Usage: isthmus tls ca create [options]

  Create a new consul CA:

  $ isthmus tls ca create
  ==> saved consul-agent-ca.pem
  ==> saved consul-agent-ca-key.pem"""

_CERT_CREATE_HELP = """\
Usage: isthmus tls cert create [options]

  Create a new certificate

  $ isthmus tls cert create -server
  ==> WARNING: Server Certificates grants authority to become a
      server and access all state in the cluster including root keys
      and all ACL tokens. Do not distribute them to production hosts
      that are not server nodes. Store them as securely as CA keys.
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-server-consul-0.pem
  ==> Saved dc1-server-consul-0-key.pem
  $ isthmus tls cert create -client
  ==> Using consul-agent-ca.pem and consul-agent-ca-key.pem
  ==> Saved dc1-client-consul-0.pem
  ==> Saved dc1-client-consul-0-key.pem"""


def _ca_create_flags() -> FlagSet:
    fs = FlagSet()
    fs.add("days", "int", certs.DEFAULT_CA_DAYS,
           "Number of days the CA is valid for. Defaults to 1825 days (approximately 5 years).")
    fs.add("name-constraint", "bool", False,
           "Enables X.509 name constraints for the CA. If used, the CA only signs certificates "
           "for localhost and the domains specified by -domain and -additional-name-constraint. "
           "If Consul's UI is served over HTTPS in your deployment, add its DNS name with "
           "-additional-constraint. Defaults to false.")
    fs.add("domain", "string", certs.DEFAULT_DOMAIN,
           "The DNS domain of the Consul cluster that agents are configured with. Defaults to "
           "consul. Only used when -name-constraint is set. Additional domains can be passed "
           "with -additional-name-constraint.")
    fs.add("cluster-id", "string", "",
           "ID of the Consul cluster. Sets the CA's URI with the SPIFFEID composed of the "
           "cluster ID and domain (specified by -domain or 'consul' by default).")
    fs.add("common-name", "string", "", "Common Name of CA. Defaults to Consul Agent CA.")
    fs.add("additional-name-constraint", "list", [],
           "Add name constraints for the CA. Results in rejecting certificates for other DNS "
           "than specified. Can be used multiple times. Only used in combination with "
           "-name-constraint.")
    return fs


def _cert_create_flags() -> FlagSet:
    fs = FlagSet()
    fs.add("ca", "string", "#DOMAIN#-agent-ca.pem",
           "Provide path to the ca. Defaults to #DOMAIN#-agent-ca.pem.")
    fs.add("key", "string", "#DOMAIN#-agent-ca-key.pem",
           "Provide path to the key. Defaults to #DOMAIN#-agent-ca-key.pem.")
    fs.add("server", "bool", False, "Generate server certificate.")
    fs.add("client", "bool", False, "Generate client certificate.")
    fs.add("node", "string", "",
           "When generating a server cert and this is set an additional dns name is included "
           "of the form <node>.server.<datacenter>.<domain>.")
    fs.add("cli", "bool", False, "Generate cli certificate.")
    fs.add("days", "int", certs.DEFAULT_CERT_DAYS,
           "Provide number of days the certificate is valid for from now on. Defaults to 1 year.")
    fs.add("dc", "string", "dc1",
           "Provide the datacenter. Matters only for -server certificates. Defaults to dc1.")
    fs.add("domain", "string", certs.DEFAULT_DOMAIN,
           "Provide the domain. Matters only for -server certificates.")
    fs.add("additional-dnsname", "list", [],
           "Provide an additional dnsname for Subject Alternative Names. localhost is always "
           "included. This flag may be provided multiple times.")
    fs.add("additional-ipaddress", "list", [],
           "Provide an additional ipaddress for Subject Alternative Names. 127.0.0.1 is always "
           "included. This flag may be provided multiple times.")
    return fs


def _parse_or_report(fs: FlagSet, args: list[str]) -> dict[str, object] | int:
    try:
        values, _rest = fs.parse(args)   # Consul ignores positional leftovers
    except HelpRequested:
        return 0
    except FlagError as e:
        _err(str(e))
        _err(f"Failed to parse args: {e}")
        return 1
    return values


def _os_error(e: OSError, path: str) -> str:
    """Go's *PathError text: "open <path>: no such file or directory"."""
    msg = e.strerror or str(e)
    return f"open {path}: {msg[:1].lower()}{msg[1:]}"


# -- commands --------------------------------------------------------------------------------

def _ca_create(args: list[str]) -> int:
    parsed = _parse_or_report(_ca_create_flags(), args)
    if isinstance(parsed, int):
        return parsed
    domain = str(parsed["domain"])
    cert_name, key_name = certs.ca_file_names(domain)
    for name in (cert_name, key_name):
        if os.path.lexists(name):
            _err(f"{name} already exists.")
            return 1
    constraints: list[str] = []
    if parsed["name-constraint"]:
        constraints = list(parsed["additional-name-constraint"]) + [domain, "localhost"]  # type: ignore[arg-type]
    try:
        ca_pem, key_pem = certs.generate_ca(
            days=int(parsed["days"]), permitted_dns_domains=constraints,  # type: ignore[arg-type]
            common_name=str(parsed["common-name"]), cluster_id=str(parsed["cluster-id"]),
            domain=domain)
    except CertError as e:
        _err(str(e))
        return 1
    try:
        certs.write_new_file(cert_name, ca_pem, 0o666)
    except OSError as e:
        _err(_os_error(e, cert_name))
        return 1
    _out("==> Saved " + cert_name)
    try:
        certs.write_new_file(key_name, key_pem, 0o600)
    except OSError as e:
        _err(_os_error(e, key_name))
        return 1
    _out("==> Saved " + key_name)
    return 0


def _cert_create(args: list[str]) -> int:
    parsed = _parse_or_report(_cert_create_flags(), args)
    if isinstance(parsed, int):
        return parsed
    ca, key = str(parsed["ca"]), str(parsed["key"])
    if ca == "":
        _err("Please provide the ca")
        return 1
    if key == "":
        _err("Please provide the key")
        return 1
    kinds = [k for k in ("server", "client", "cli") if parsed[k]]
    if len(kinds) != 1:
        _err("Please provide either -server, -client, or -cli")
        return 1
    kind = kinds[0]
    node = str(parsed["node"])
    if node and kind != "server":
        _err("-node requires -server")
        return 1
    domain = str(parsed["domain"])
    try:
        spec = certs.cert_spec(
            kind, dc=str(parsed["dc"]), domain=domain, node=node,
            additional_dns=parsed["additional-dnsname"],  # type: ignore[arg-type]
            additional_ips=parsed["additional-ipaddress"])  # type: ignore[arg-type]
    except CertError as e:
        _err(str(e))
        return 1
    names = certs.find_free_names(spec.prefix)
    if names is None:
        _err("Could not find a filename that doesn't already exist")
        return 1
    cert_name, key_name = names

    ca_file = ca.replace("#DOMAIN#", domain, 1)
    key_file = key.replace("#DOMAIN#", domain, 1)
    try:
        with open(ca_file, "rb") as f:
            ca_pem = f.read().decode("utf-8", "replace")
    except OSError as e:
        _err(f"Error reading CA: {_os_error(e, ca_file)}")
        return 1
    try:
        with open(key_file, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        _err(f"Error reading CA key: {_os_error(e, key_file)}")
        return 1

    if kind == "server":
        _out(certs.SERVER_WARNING)
    _out(f"==> Using {ca_file} and {key_file}")

    try:
        signer = certs.parse_signer(key_pem)
        pub, priv = certs.generate_cert(
            signer=signer, ca=ca_pem, name=spec.name, days=int(parsed["days"]),  # type: ignore[arg-type]
            dns_names=spec.dns_names, ip_addresses=spec.ip_addresses,
            ext_key_usage=spec.ext_key_usage)
        certs.verify(ca_pem, pub, spec.name)
    except CertError as e:
        _err(str(e))
        return 1

    try:
        certs.write_new_file(cert_name, pub, 0o666)
    except OSError as e:
        _err(_os_error(e, cert_name))
        return 1
    _out("==> Saved " + cert_name)
    try:
        certs.write_new_file(key_name, priv, 0o600)
    except OSError as e:
        _err(_os_error(e, key_name))
        return 1
    _out("==> Saved " + key_name)
    return 0


_LEAVES = {
    ("ca", "create"): (_ca_create, _CA_CREATE_HELP, _ca_create_flags),
    ("cert", "create"): (_cert_create, _CERT_CREATE_HELP, _cert_create_flags),
}
_GROUPS = {(): _TLS_HELP, ("ca",): _CA_HELP, ("cert",): _CERT_HELP}


def _wants_help(args: list[str]) -> bool:
    for a in args:
        if a == "--":
            return False
        if a in ("-h", "-help", "--help"):
            return True
    return False


def run(argv: list[str]) -> int:
    """Run `isthmus tls <argv...>`; returns the process exit code."""
    argv = list(argv)
    # mitchellh/cli: the subcommand path is the leading non-flag words; the longest known wins.
    words: list[str] = []
    for a in argv:
        if a.startswith("-") or len(words) == 2:
            break
        words.append(a)
    path = tuple(words)
    if path in _LEAVES:
        func, help_text, flags = _LEAVES[path]
        rest = argv[len(path):]
        if _wants_help(rest):
            _out(help_text + "\n\n" + flags().usage())
            return 0
        return func(rest)
    group = path[:1] if path[:1] in _GROUPS else ()
    if _wants_help(argv):
        _out(_GROUPS[group])
        return 0
    # Consul's group commands return cli.RunResultHelp: help on stdout, exit status 1.
    _out(_GROUPS[group])
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))

"""Agent TLS: certificate generation (`isthmus tls ...`) and SSL contexts following Consul's tlsutil."""
from agent.tlsutil.certs import CertError, generate_ca, generate_cert
from agent.tlsutil.context import (
    TLSConfigError,
    client_context,
    outgoing_server_hostname,
    outgoing_tls_enabled,
    server_context,
    server_name,
)

__all__ = [
    "CertError", "TLSConfigError", "client_context", "generate_ca", "generate_cert",
    "outgoing_server_hostname", "outgoing_tls_enabled", "server_context", "server_name",
]

"""Agent TLS: certificate generation (`isthmus tls ...`, in `certs`, imported on use: it
pulls in cryptography's X.509 and key modules) and SSL contexts following Consul's tlsutil."""
from agent.tlsutil.context import (
    TLSConfigError,
    client_context,
    outgoing_server_hostname,
    outgoing_tls_enabled,
    server_context,
    server_name,
)

__all__ = [
    "TLSConfigError", "client_context", "outgoing_server_hostname", "outgoing_tls_enabled",
    "server_context", "server_name",
]

"""The CLI's HTTP client: every command except `agent`, `version` and `tls` talks to the HTTP API.

Address: `-http-addr`, else ISTHMUS_HTTP_ADDR, else CONSUL_HTTP_ADDR, else 127.0.0.1:8500.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping

from ..errors import IsthmusError
from .flags import FlagSet

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"


class APIError(IsthmusError):
    """The HTTP API answered an error (status and plain-text body), or could not be reached."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def add_http_flags(fs: FlagSet) -> None:
    """The HTTP client flags every API command accepts (as Consul's `-http-addr` family)."""
    fs.add("http-addr", usage="The address and port of the Isthmus HTTP agent. Can also be set "
           "with ISTHMUS_HTTP_ADDR or CONSUL_HTTP_ADDR. Default 127.0.0.1:8500.")
    fs.add("token", usage="ACL token to use in the request (X-Consul-Token).")
    fs.add("ca-file", usage="Path to a CA file to use for TLS when communicating with the agent.")
    fs.add("client-cert", usage="Path to a client cert file to use for TLS.")
    fs.add("client-key", usage="Path to a client key file to use for TLS.")
    fs.add("tls-server-name", usage="The server name to use as the SNI host for TLS.")
    fs.add("datacenter", usage="Name of the datacenter to query. Defaults to the agent's.")
    fs.add("stale", "bool", usage="Permit any server to answer, not only the leader.")


def resolve_http_addr(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The agent's base URL, with a scheme, from the flag or the environment."""
    env = os.environ if env is None else env
    addr = flag or env.get("ISTHMUS_HTTP_ADDR") or env.get("CONSUL_HTTP_ADDR") or DEFAULT_HTTP_ADDR
    if "://" not in addr:
        addr = "http://" + addr
    return addr.rstrip("/")


class APIClient:
    """Blocking JSON requests to the agent's HTTP API."""

    def __init__(self, opts: Mapping[str, Any], env: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> None:
        env = os.environ if env is None else env
        self.base = resolve_http_addr(opts.get("http-addr"), env)
        self.token = opts.get("token") or env.get("CONSUL_HTTP_TOKEN") or ""
        self.datacenter = opts.get("datacenter") or ""
        self.stale = bool(opts.get("stale"))
        self.timeout = timeout
        self._ssl = None
        if self.base.startswith("https://"):
            ctx = ssl.create_default_context(cafile=opts.get("ca-file") or env.get("CONSUL_CACERT"))
            cert = opts.get("client-cert") or env.get("CONSUL_CLIENT_CERT")
            if cert:
                ctx.load_cert_chain(cert, opts.get("client-key") or env.get("CONSUL_CLIENT_KEY"))
            self._ssl = ctx

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None,
                body: Any = None) -> Any:
        """Send a request; JSON answers are decoded, empty ones are None; errors raise APIError."""
        data = None if body is None else json.dumps(body).encode()
        raw = self.raw_request(method, path, params, data)
        return json.loads(raw) if raw.strip() else None

    def raw_request(self, method: str, path: str, params: Mapping[str, str] | None = None,
                    data: bytes | None = None) -> bytes:
        """Send a request with a raw body; the raw answer (errors raise APIError)."""
        q = dict(params or {})
        if self.datacenter:
            q.setdefault("dc", self.datacenter)
        if self.stale:
            q.setdefault("stale", "")
        url = self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")
        req = urllib.request.Request(url, data=data, method=method)
        if self.token:
            req.add_header("X-Consul-Token", self.token)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace").strip()
            raise APIError(f"Unexpected response code: {exc.code} ({text})", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise APIError(f"{method.title()} \"{url}\": {reason}") from None
        return raw

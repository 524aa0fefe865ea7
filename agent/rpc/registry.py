"""RPC endpoints registered by Consul-style name (`Status.Ping`)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling: the peer address and whether the connection is TLS."""
    peer: tuple
    tls: bool


Handler = Callable[[Any, CallContext], Any]


class Registry:
    """Maps `Service.Method` to a handler `fn(body, ctx)`; coroutine functions run as tasks."""

    def __init__(self) -> None:
        self.methods: dict[str, tuple[Handler, bool]] = {}
        self.services: set[str] = set()
        # Servers: requests whose body names another datacenter go to
        # `forward(method, body)` instead of the handler (Consul's srv.forward → forwardDC).
        self.datacenter = ""
        self.forward: Callable[[str, dict], Any] | None = None

    def remote(self, body: Any) -> bool:
        """Whether a request body names a datacenter other than ours (and we forward)."""
        if self.forward is None or body.__class__ is not dict:
            return False
        dc = body.get("Datacenter")
        return bool(dc) and dc != self.datacenter

    def register(self, name: str, fn: Handler) -> None:
        service, dot, method = name.partition(".")
        if not dot or not service or not method:
            raise ValueError(f"RPC name {name!r} must be Service.Method")
        if name in self.methods:
            raise ValueError(f"RPC method {name!r} registered twice")
        self.methods[name] = (fn, inspect.iscoroutinefunction(fn))
        self.services.add(service)

    def missing(self, name: str) -> str:
        """Go net/rpc's error for a name with no handler."""
        service, dot, _ = name.rpartition(".")
        if not dot:
            return f"rpc: service/method request ill-formed: {name}"
        if service not in self.services:
            return f"rpc: can't find service {name}"
        return f"rpc: can't find method {name}"

"""Free loopback ports, for `isthmus demo` (and the tests and benchmarks, which import it)."""
from __future__ import annotations

import socket


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free TCP ports on `host`: the sockets are held together while the kernel
    picks, so two of them can never be the same port."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()

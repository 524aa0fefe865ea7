"""Small pieces every whole-process benchmark uses."""
from __future__ import annotations

import dataclasses
import os
import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (held together while chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def load_from_env(load, env: dict[str, str]):
    """`load` (a frozen dataclass of sizes) with the fields named in `env` ({field: VAR})
    replaced by the environment's values, converted to each field's type."""
    changes = {f: type(getattr(load, f))(os.environ[v]) for f, v in env.items() if v in os.environ}
    return dataclasses.replace(load, **changes)

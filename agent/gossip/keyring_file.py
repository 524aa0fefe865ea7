"""Gossip keys on disk as Consul keeps them: `<data_dir>/serf/local.keyring` (LAN) and
`remote.keyring` (WAN), a JSON array of base64 keys, primary first."""
from __future__ import annotations

import base64
import binascii
import json
import os

from _core.keyring import Keyring, validate_key

from ..errors import IsthmusError

FILES = {"lan": "local.keyring", "wan": "remote.keyring"}


def keyring_path(data_dir: str, kind: str) -> str:
    return os.path.join(data_dir, "serf", FILES[kind])


def decode_key(text: str) -> bytes:
    """A base64 gossip key → bytes; IsthmusError naming the problem."""
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IsthmusError(f"invalid gossip key {text[:8]}...: not base64") from None
    try:
        validate_key(key)
    except ValueError as exc:
        raise IsthmusError(f"invalid gossip key: {exc}") from None
    return key


def load(data_dir: str | None, kind: str, encrypt: str | None) -> tuple[Keyring | None, list[str]]:
    """The pool's keyring: the file if present (the `encrypt` key then only warns), else
    `encrypt` (written to the file), else None. Returns (keyring, warnings)."""
    warnings: list[str] = []
    path = keyring_path(data_dir, kind) if data_dir else None
    if path and os.path.exists(path):
        try:
            with open(path) as f:
                texts = json.load(f)
            keys = [decode_key(t) for t in texts]
        except (OSError, ValueError) as exc:
            raise IsthmusError(f"cannot read keyring file {path}: {exc}") from None
        if not keys:
            raise IsthmusError(f"keyring file {path} holds no keys")
        if encrypt:
            warnings.append(f"{kind.upper()} keyring exists but -encrypt given, using keyring {path}")
        return Keyring(keys), warnings
    if not encrypt:
        return None, warnings
    ring = Keyring([decode_key(encrypt)])
    if path:
        save(ring, path)
    return ring, warnings


def save(ring: Keyring, path: str) -> None:
    """Write the keys (primary first) atomically, mode 0600."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump([base64.b64encode(k).decode() for k in ring.keys], f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

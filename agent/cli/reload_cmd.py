"""`isthmus reload` (Consul's command/reload): ask the agent to re-read its config files."""
from __future__ import annotations

import sys

from .api import APIError
from .commands import _api_command


def reload(argv: list[str]) -> int:
    got = _api_command("reload", argv)
    if isinstance(got, int):
        return got
    client, _ = got
    try:
        client.request("PUT", "/v1/agent/reload")
    except APIError as exc:
        print(f"Error reloading: {exc}", file=sys.stderr)
        return 1
    print("Configuration reload triggered")
    return 0

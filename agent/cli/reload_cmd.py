"""`isthmus reload` (Consul's command/reload): ask the agent to re-read its config files."""
from __future__ import annotations

from .commands import put_command


def reload(argv: list[str]) -> int:
    return put_command("reload", argv, "/v1/agent/reload", "Error reloading",
                       "Configuration reload triggered")

"""Reloading the parts of the configuration an agent applies while running (Consul's
Agent.reloadConfig, reduced to what Isthmus reloads): the config files' services and
checks and node_meta. Shared by PUT /v1/agent/reload and anything else that reloads."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..config.load import load
from ..errors import ConfigError, IsthmusError

if TYPE_CHECKING:
    from .manager import LocalAgent


class ReloadFailed(IsthmusError):
    """The configuration did not load or its definitions did not apply; nothing changed."""


def reload_config(local: "LocalAgent", argv: list[str]) -> list[str]:
    """Load `argv` (the agent's own arguments) again and apply it; the load's warnings.

    Raises ReloadFailed with Consul-like wording ("Failed to parse config: ...",
    "Failed reloading services: ...") and leaves the agent as it was.
    """
    try:
        loaded = load(list(argv))
    except ConfigError as exc:
        raise ReloadFailed("Failed to parse config: " + "; ".join(exc.problems)) from None
    cfg = loaded.config
    try:
        local.apply_config(cfg.services, cfg.checks)    # checks everything before changing
    except IsthmusError as exc:
        raise ReloadFailed(f"Failed reloading services: {exc}") from None
    st = local.state
    st.set_node_info(st.node_id, st.node_address, st.tagged_addresses, dict(cfg.node_meta))
    local.syncer.trigger_full()
    return loaded.warnings

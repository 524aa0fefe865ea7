"""Serf tags an agent advertises, as Consul sets them (agent/consul/server.go, client.go)."""
from __future__ import annotations

from .config.model import AgentConfig
from .version import CONSUL_API_VERSION, PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION

BUILD = f"{CONSUL_API_VERSION}:isthmus"


def lan_tags(cfg: AgentConfig, node_id: str) -> dict[str, str]:
    """The LAN-pool tags of this agent: role `consul` for servers, `node` for clients."""
    tags = {
        "role": "consul" if cfg.server else "node",
        "dc": cfg.datacenter,
        "segment": "",
        "id": node_id,
        "vsn": str(PROTOCOL_VERSION),
        "vsn_min": str(PROTOCOL_MIN),
        "vsn_max": str(PROTOCOL_MAX),
        "build": BUILD,
    }
    if cfg.server:
        tags.update({"port": str(cfg.ports.server), "raft_vsn": "3", "acls": "0",
                     "ft_fs": "1", "ft_si": "1",
                     "wan_join_port": str(cfg.ports.serf_wan)})
        if cfg.bootstrap:
            tags["bootstrap"] = "1"
        if cfg.bootstrap_expect:
            tags["expect"] = str(cfg.bootstrap_expect)
        if cfg.tls_internal_rpc.enabled:
            tags["use_tls"] = "1"
    return tags

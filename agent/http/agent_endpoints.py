"""/v1/agent/self, /v1/agent/version and /v1/agent/leave."""
from __future__ import annotations

import asyncio
import os
import platform
import resource
import sys
from typing import TYPE_CHECKING

from aiohttp import web

from ..tags import lan_tags
from ..version import CONSUL_API_VERSION, ISTHMUS_VERSION

if TYPE_CHECKING:
    from ..agent import Agent

# Serf/memberlist protocol ranges reported in Member (Consul's values).
MEMBER_PROTOCOL = {"ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                   "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4}
# A Vivaldi coordinate before any sample (Serf's defaults; coordinates arrive with gossip).
INITIAL_COORD = {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-05}


def _tls_debug(s) -> dict:
    return {"CAFile": s.ca_file or "", "CAPath": s.ca_path or "", "CertFile": s.cert_file or "",
            "KeyFile": "hidden" if s.key_file else "", "VerifyIncoming": s.verify_incoming,
            "VerifyOutgoing": s.verify_outgoing, "VerifyServerHostname": s.verify_server_hostname,
            "TLSMinVersion": s.tls_min_version, "CipherSuites": list(s.cipher_suites)}


def _self_member(agent: "Agent") -> dict:
    """This agent as its LAN pool sees it (Consul's `Member`), or as configured without one."""
    cfg = agent.config
    if agent.lan is not None:
        from .gossip_endpoints import member_json
        for mem in agent.lan.members():
            if mem.name == cfg.node_name:
                return member_json(mem)
    return {"Name": cfg.node_name, "Addr": cfg.advertise_addr, "Port": cfg.ports.serf_lan,
            "Tags": lan_tags(cfg, agent.node_id), "Status": 1, **MEMBER_PROTOCOL}


def _agent_stats(agent: "Agent") -> dict:
    """Consul's `agent` stats block: how many services and checks this agent runs."""
    local = agent.local.state if agent.local is not None else None
    checks = local.active_checks() if local is not None else {}
    ttls = sum(1 for c in checks.values() if c.get("Type") == "ttl")
    return {"check_monitors": str(sum(1 for c in checks.values() if c.get("Type") == "script")),
            "check_ttls": str(ttls), "checks": str(len(checks)),
            "services": str(len(local.active_services()) if local is not None else 0)}


def _server_stats(agent: "Agent") -> dict:
    """Consul's `consul` and `raft` stats blocks, on servers."""
    node = agent.consensus.node if agent.consensus is not None else None
    if node is None:
        return {}
    return {"consul": {"server": "true", "bootstrap": str(agent.config.bootstrap).lower(),
                       "leader": str(node.is_leader).lower(),
                       "leader_addr": node.leader_address, "known_datacenters": "1"},
            "raft": node.info()}


def self_info(agent: "Agent") -> dict:
    """The body of GET /v1/agent/self in Consul's shape (Config, DebugConfig, Coord, Member, Stats, Meta)."""
    cfg = agent.config
    rpc_port = agent.rpc_server.port if agent.rpc_server else cfg.ports.server
    ru = resource.getrusage(resource.RUSAGE_SELF)
    http_addrs = agent.http.addresses if agent.http else []
    return {
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.primary_datacenter or cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": agent.node_id,
            "Partition": "",
            "Revision": "isthmus",
            "Server": cfg.server,
            "Version": CONSUL_API_VERSION,
            "BuildDate": "",
            "IsthmusVersion": ISTHMUS_VERSION,
        },
        "DebugConfig": {
            "Datacenter": cfg.datacenter,
            "NodeName": cfg.node_name,
            "NodeID": agent.node_id,
            "ServerMode": cfg.server,
            "Bootstrap": cfg.bootstrap,
            "BootstrapExpect": cfg.bootstrap_expect,
            "DevMode": cfg.dev_mode,
            "DataDir": cfg.data_dir or "",
            "BindAddr": cfg.bind_addr,
            "AdvertiseAddrLAN": cfg.advertise_addr,
            "AdvertiseAddrWAN": cfg.advertise_addr_wan or cfg.advertise_addr,
            "ClientAddrs": list(cfg.client_addrs),
            "HTTPAddrs": [f"tcp://{h}:{p}" for h, p in http_addrs],
            "HTTPPort": cfg.ports.http,
            "HTTPSPort": cfg.ports.https,
            "DNSPort": cfg.ports.dns,
            "ServerPort": rpc_port,
            "SerfPortLAN": cfg.ports.serf_lan,
            "SerfPortWAN": cfg.ports.serf_wan,
            "RetryJoinLAN": list(cfg.retry_join),
            "RetryJoinWAN": list(cfg.retry_join_wan),
            "StartJoinAddrsLAN": list(cfg.start_join),
            "StartJoinAddrsWAN": list(cfg.start_join_wan),
            "EncryptKey": "hidden" if cfg.encrypt else "",
            "Logging": {"LogLevel": cfg.log_level, "LogJSON": cfg.log_json},
            "RaftMultiplier": cfg.raft_multiplier,
            "RPCMaxConnsPerClient": cfg.limits.rpc_max_conns_per_client,
            "RPCHandshakeTimeout": f"{cfg.limits.rpc_handshake_timeout:g}s",
            "TLS": {"InternalRPC": _tls_debug(cfg.tls_internal_rpc),
                    "HTTPS": _tls_debug(cfg.tls_https)},
        },
        "Coord": dict(INITIAL_COORD),
        "Member": _self_member(agent),
        "Stats": {
            "agent": _agent_stats(agent),
            "build": {"prerelease": "", "revision": "isthmus", "version": CONSUL_API_VERSION,
                      "isthmus_version": ISTHMUS_VERSION},
            "runtime": {"arch": platform.machine(), "os": sys.platform,
                        "cpu_count": str(os.cpu_count()), "version": platform.python_version(),
                        "implementation": platform.python_implementation(),
                        "max_rss_kb": str(ru.ru_maxrss),
                        "tasks": str(len(asyncio.all_tasks()))},
            **_server_stats(agent),
        },
        "Meta": dict(cfg.node_meta),
    }


async def agent_self(agent: "Agent", request: web.Request) -> dict:
    return self_info(agent)


async def agent_version(agent: "Agent", request: web.Request) -> dict:
    return {"SHA": "isthmus", "BuildDate": "", "HumanVersion": CONSUL_API_VERSION, "FIPS": "",
            "IsthmusVersion": ISTHMUS_VERSION}


async def agent_leave(agent: "Agent", request: web.Request) -> web.Response:
    """Graceful leave: answer first, then the daemon stops the agent."""
    asyncio.get_running_loop().call_soon(agent.leave_requested.set)
    return web.Response(status=200)


ROUTES = {
    "/v1/agent/self": {"GET": agent_self},
    "/v1/agent/version": {"GET": agent_version},
    "/v1/agent/leave": {"PUT": agent_leave},
}

"""The agent's configuration as frozen data. Only `agent/config/load.py` builds it."""
from __future__ import annotations

from dataclasses import dataclass, field

TLS_VERSIONS = ("TLSv1_2", "TLSv1_3")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """Effective TLS settings of one listener family (internal RPC, HTTPS)."""
    ca_file: str | None = None
    ca_path: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_incoming: bool = False
    verify_outgoing: bool = False
    verify_server_hostname: bool = False
    tls_min_version: str = "TLSv1_2"
    cipher_suites: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """True when this agent has a certificate to serve TLS with."""
        return bool(self.cert_file and self.key_file)


@dataclass(frozen=True, slots=True)
class Ports:
    """Listener ports; -1 disables a listener (Consul's convention)."""
    dns: int = 8600
    http: int = 8500
    https: int = -1
    grpc: int = -1
    grpc_tls: int = -1
    serf_lan: int = 8301
    serf_wan: int = 8302
    server: int = 8300


@dataclass(frozen=True, slots=True)
class Limits:
    """Consul's `limits` block, plus Isthmus's RPC frame size limits."""
    rpc_max_conns_per_client: int = 100
    rpc_handshake_timeout: float = 5.0      # seconds a new RPC connection may take to say what it is
    rpc_client_timeout: float = 60.0        # default per-call deadline of outgoing RPCs
    http_max_conns_per_client: int = 200
    rpc_max_header_bytes: int = 64 * 1024   # Isthmus: largest msgpack-RPC header accepted
    rpc_max_body_bytes: int = 8 * 1024 * 1024  # Isthmus: largest msgpack-RPC body accepted


@dataclass(frozen=True, slots=True)
class DNSSettings:
    """Consul's `dns_config` block (the keys Isthmus implements), with Consul's defaults."""
    allow_stale: bool = True
    max_stale: float = 87600 * 3600.0       # seconds; Consul >= 0.7.1: 10 years
    node_ttl: float = 0.0                   # seconds
    service_ttl: tuple[tuple[str, float], ...] = ()   # (name or "prefix*", seconds)
    only_passing: bool = False
    enable_truncate: bool = False
    udp_answer_limit: int = 3
    a_record_limit: int = 0                 # 0: no limit
    recursor_timeout: float = 2.0           # seconds
    recursor_strategy: str = "sequential"   # or "random"
    enable_additional_node_meta_txt: bool = True
    soa_refresh: int = 3600
    soa_retry: int = 600
    soa_expire: int = 86400
    soa_min_ttl: int = 0


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """One `service` / `services` entry of a config file, decoded as the agent's service
    registration API decodes a body (agent/local/defs.py parse_service)."""
    service: dict                                   # NodeService fields; "ID" is set
    checks: tuple[tuple[dict, dict], ...] = ()      # (HealthCheck, CheckType) pairs
    token: str = ""
    source: str = ""                                # the file it was read from
    key: str = ""                                   # where in the file: "services[1]"


@dataclass(frozen=True, slots=True)
class CheckDefinition:
    """One top-level `check` / `checks` entry of a config file (parse_check's result)."""
    check: dict                                     # HealthCheck fields; "CheckID" is set
    chk_type: dict = field(default_factory=dict)    # runner settings, durations in seconds
    token: str = ""
    source: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything an agent needs to start, after defaults, files and flags were merged."""
    datacenter: str = "dc1"
    primary_datacenter: str = ""
    domain: str = "consul"
    alt_domain: str = ""                   # without the root dot; "" = none
    recursors: tuple[str, ...] = ()        # upstream DNS servers: "ip" or "ip:port"
    translate_wan_addrs: bool = False
    dns_config: DNSSettings = field(default_factory=DNSSettings)
    node_name: str = ""
    node_id: str | None = None             # None: read from / written to the data dir
    server: bool = False
    bootstrap: bool = False
    bootstrap_expect: int = 0
    dev_mode: bool = False
    data_dir: str | None = None            # None only in -dev (in-memory)
    bind_addr: str = "0.0.0.0"
    advertise_addr: str = ""               # resolved: never empty after load
    advertise_addr_wan: str = ""
    client_addrs: tuple[str, ...] = ("127.0.0.1",)
    ports: Ports = field(default_factory=Ports)
    start_join: tuple[str, ...] = ()
    start_join_wan: tuple[str, ...] = ()
    retry_join: tuple[str, ...] = ()
    retry_join_wan: tuple[str, ...] = ()
    retry_interval: float = 30.0
    retry_interval_wan: float = 30.0
    encrypt: str | None = None             # base64 gossip key (16, 24 or 32 bytes decoded)
    encrypt_verify_incoming: bool = True
    encrypt_verify_outgoing: bool = True
    tls_internal_rpc: TLSSettings = field(default_factory=TLSSettings)
    tls_https: TLSSettings = field(default_factory=TLSSettings)
    log_level: str = "INFO"
    log_json: bool = False
    limits: Limits = field(default_factory=Limits)
    raft_multiplier: int = 1
    raft_snapshot_threshold: int = 16384    # entries applied between Raft snapshots
    raft_trailing_logs: int = 10240         # entries kept in the log after a snapshot
    autopilot_cleanup_dead_servers: bool = True
    autopilot_server_stabilization_time: float = 10.0   # a new server's wait before it votes
    node_meta: tuple[tuple[str, str], ...] = ()
    leave_on_terminate: bool = False        # Consul: true for clients, false for servers
    enable_script_checks: bool = False      # script (Args) checks may be registered
    enable_local_script_checks: bool = False   # ... but only from config files
    services: tuple[ServiceDefinition, ...] = ()   # from config files, in merge order
    checks: tuple[CheckDefinition, ...] = ()       # top-level config-file checks
    config_sources: tuple[str, ...] = ()   # files read, in merge order

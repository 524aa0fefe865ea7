"""Every key of Consul's agent configuration file (JSON names), as a tree.

Source: hashicorp/consul `agent/config/config.go` (the `Config` struct's `mapstructure`
tags, including the Enterprise-only and "non-user configurable" fields, which Consul's
parser accepts too), `agent/config/deprecated.go` (`DeprecatedConfig`) and
`agent/config/default.go` (keys newer than that copy of config.go: `experiments`,
`server_rejoin_age_max`). Keys marked "newer" below come from Consul's documentation
rather than from the struct we read.

A value is either a dict (a struct block: its keys are checked, like mapstructure's
`Unused` check that makes Consul fail with "invalid config key") or a type tag. The tags
drive the merge (Consul's `merge.go`): LIST values are concatenated, MAP values are
overlaid key by key, every other value is replaced by a later source. Blocks whose
contents are free-form or big sub-languages (service and check definitions, watches,
config entries, CA provider config) are OBJECT/LIST here: this tree accepts any keys
inside. Service and check definitions are then checked field by field by load.py against
agent/local/defs.py (the fields the registration API decodes).
"""
from __future__ import annotations

from typing import Union

STRING = "string"
BOOL = "bool"
INT = "int"
FLOAT = "float"
DURATION = "duration"   # Go duration string: "30s", "1m30s"
LIST = "list"           # JSON array; concatenated when merged
MAP = "map"             # JSON object with arbitrary keys; overlaid when merged
OBJECT = "object"       # JSON object with arbitrary contents; replaced when merged

Spec = Union[str, dict[str, "Spec"]]

_TLS_PROTOCOL: dict[str, Spec] = {
    "ca_file": STRING,
    "ca_path": STRING,
    "cert_file": STRING,
    "key_file": STRING,
    "tls_min_version": STRING,
    "tls_cipher_suites": STRING,
    "verify_incoming": BOOL,
    "verify_outgoing": BOOL,
    "verify_server_hostname": BOOL,
    "use_auto_cert": BOOL,
}

_GOSSIP: dict[str, Spec] = {
    "gossip_nodes": INT,
    "gossip_interval": DURATION,
    "probe_interval": DURATION,
    "probe_timeout": DURATION,
    "suspicion_mult": INT,
    "retransmit_mult": INT,
}

CONSUL_KEYS: dict[str, Spec] = {
    "acl": {
        "enabled": BOOL,
        "enable_token_replication": BOOL,
        "policy_ttl": DURATION,
        "role_ttl": DURATION,
        "token_ttl": DURATION,
        "down_policy": STRING,
        "default_policy": STRING,
        "enable_key_list_policy": BOOL,
        "enable_token_persistence": BOOL,
        "msp_disable_bootstrap": BOOL,                  # Enterprise
        "tokens": {
            "initial_management": STRING,
            "replication": STRING,
            "agent_recovery": STRING,
            "default": STRING,
            "agent": STRING,
            "config_file_service_registration": STRING,
            "dns": STRING,                              # newer (Consul 1.19 docs)
            "managed_service_provider": LIST,           # Enterprise
            "master": STRING,                           # deprecated → initial_management
            "agent_master": STRING,                     # deprecated → agent_recovery
        },
    },
    "addresses": {
        "dns": STRING,
        "http": STRING,
        "https": STRING,
        "grpc": STRING,
        "grpc_tls": STRING,
    },
    "advertise_addr": STRING,
    "advertise_addr_ipv4": STRING,
    "advertise_addr_ipv6": STRING,
    "advertise_addr_wan": STRING,
    "advertise_addr_wan_ipv4": STRING,
    "advertise_addr_wan_ipv6": STRING,
    "advertise_reconnect_timeout": DURATION,
    "alt_domain": STRING,
    "audit": {                                          # Enterprise
        "enabled": BOOL,
        "sink": MAP,
    },
    "auto_config": {
        "enabled": BOOL,
        "intro_token": STRING,
        "intro_token_file": STRING,
        "server_addresses": LIST,
        "dns_sans": LIST,
        "ip_sans": LIST,
        "authorization": {
            "enabled": BOOL,
            "static": {
                "claim_assertions": LIST,
                "allow_reuse": BOOL,
                "jwt_supported_algs": LIST,
                "bound_audiences": LIST,
                "claim_mappings": MAP,
                "list_claim_mappings": MAP,
                "oidc_discovery_url": STRING,
                "oidc_discovery_ca_cert": STRING,
                "jwks_url": STRING,
                "jwks_ca_cert": STRING,
                "jwt_validation_pub_keys": LIST,
                "bound_issuer": STRING,
                "expiration_leeway": DURATION,
                "not_before_leeway": DURATION,
                "clock_skew_leeway": DURATION,
            },
        },
    },
    "auto_encrypt": {
        "tls": BOOL,
        "dns_san": LIST,
        "ip_san": LIST,
        "allow_tls": BOOL,
    },
    "auto_reload_config": BOOL,
    "autopilot": {
        "cleanup_dead_servers": BOOL,
        "last_contact_threshold": DURATION,
        "max_trailing_logs": INT,
        "min_quorum": INT,
        "server_stabilization_time": DURATION,
        "disable_upgrade_migration": BOOL,              # Enterprise
        "redundancy_zone_tag": STRING,                  # Enterprise
        "upgrade_version_tag": STRING,                  # Enterprise
    },
    "bind_addr": STRING,
    "bootstrap": BOOL,
    "bootstrap_expect": INT,
    "cache": {
        "entry_fetch_max_burst": INT,
        "entry_fetch_rate": FLOAT,
    },
    "check": OBJECT,
    "check_output_max_size": INT,
    "check_update_interval": DURATION,
    "checks": LIST,
    "client_addr": STRING,
    "cloud": {
        "resource_id": STRING,
        "client_id": STRING,
        "client_secret": STRING,
        "hostname": STRING,
        "auth_url": STRING,
        "scada_address": STRING,
    },
    "config_entries": {
        "bootstrap": LIST,
    },
    "connect": {
        "enabled": BOOL,
        "ca_provider": STRING,
        "ca_config": MAP,
        "enable_mesh_gateway_wan_federation": BOOL,
        "test_ca_leaf_root_change_spread": DURATION,
    },
    "data_dir": STRING,
    "datacenter": STRING,
    "default_query_time": DURATION,
    "disable_anonymous_signature": BOOL,
    "disable_coordinates": BOOL,
    "disable_host_node_id": BOOL,
    "disable_http_unprintable_char_filter": BOOL,
    "disable_keyring_file": BOOL,
    "disable_remote_exec": BOOL,
    "disable_update_check": BOOL,
    "discard_check_output": BOOL,
    "discovery_max_stale": DURATION,
    "dns_config": {
        "allow_stale": BOOL,
        "a_record_limit": INT,
        "disable_compression": BOOL,
        "enable_truncate": BOOL,
        "max_stale": DURATION,
        "node_ttl": DURATION,
        "only_passing": BOOL,
        "recursor_strategy": STRING,
        "recursor_timeout": DURATION,
        "service_ttl": MAP,
        "udp_answer_limit": INT,
        "enable_additional_node_meta_txt": BOOL,
        "soa": {
            "refresh": INT,
            "retry": INT,
            "expire": INT,
            "min_ttl": INT,
        },
        "use_cache": BOOL,
        "cache_max_age": DURATION,
        "prefer_namespace": BOOL,                       # Enterprise
    },
    "domain": STRING,
    "enable_agent_tls_for_checks": BOOL,
    "enable_central_service_config": BOOL,
    "enable_debug": BOOL,
    "enable_local_script_checks": BOOL,
    "enable_script_checks": BOOL,
    "enable_syslog": BOOL,
    "encrypt": STRING,
    "encrypt_verify_incoming": BOOL,
    "encrypt_verify_outgoing": BOOL,
    "experiments": LIST,                                # newer (default.go)
    "gossip_lan": dict(_GOSSIP),
    "gossip_wan": dict(_GOSSIP),
    "http_config": {
        "block_endpoints": LIST,
        "allow_write_http_from": LIST,
        "response_headers": MAP,
        "use_cache": BOOL,
        "max_header_bytes": INT,
    },
    "leave_on_terminate": BOOL,
    "license_path": STRING,                             # Enterprise
    "limits": {
        "http_max_conns_per_client": INT,
        "https_handshake_timeout": DURATION,
        "request_limits": {
            "mode": STRING,
            "read_rate": FLOAT,
            "write_rate": FLOAT,
        },
        "rpc_client_timeout": DURATION,
        "rpc_handshake_timeout": DURATION,
        "rpc_max_burst": INT,
        "rpc_max_conns_per_client": INT,
        "rpc_rate": FLOAT,
        "kv_max_value_size": INT,
        "txn_max_req_len": INT,
        # Isthmus only (not Consul keys): msgpack-RPC frame limits, DESIGN.md §4.
        "rpc_max_header_bytes": INT,
        "rpc_max_body_bytes": INT,
    },
    "locality": {
        "region": STRING,
        "zone": STRING,
    },
    "log_file": STRING,
    "log_json": BOOL,
    "log_level": STRING,
    "log_rotate_bytes": INT,
    "log_rotate_duration": DURATION,
    "log_rotate_max_files": INT,
    "log_sublevels": MAP,
    "max_query_time": DURATION,
    "node_id": STRING,
    "node_meta": MAP,
    "node_name": STRING,
    "partition": STRING,                                # Enterprise
    "peering": {
        "enabled": BOOL,
        "test_allow_peer_registrations": BOOL,
    },
    "performance": {
        "leave_drain_time": DURATION,
        "raft_multiplier": INT,
        "rpc_hold_timeout": DURATION,
    },
    "pid_file": STRING,
    "ports": {
        "dns": INT,
        "http": INT,
        "https": INT,
        "serf_lan": INT,
        "serf_wan": INT,
        "server": INT,
        "grpc": INT,
        "grpc_tls": INT,
        "proxy_min_port": INT,
        "proxy_max_port": INT,
        "sidecar_min_port": INT,
        "sidecar_max_port": INT,
        "expose_min_port": INT,
        "expose_max_port": INT,
    },
    "primary_datacenter": STRING,
    "primary_gateways": LIST,
    "primary_gateways_interval": DURATION,
    "protocol": INT,
    "raft_logstore": {
        "backend": STRING,
        "disable_log_cache": BOOL,
        "verification": {
            "enabled": BOOL,
            "interval": DURATION,
        },
        "boltdb": {
            "no_freelist_sync": BOOL,
        },
        "wal": {
            "segment_size_mb": INT,
        },
    },
    "raft_protocol": INT,
    "raft_snapshot_interval": DURATION,
    "raft_snapshot_threshold": INT,
    "raft_trailing_logs": INT,
    "read_replica": BOOL,                               # Enterprise
    "non_voting_server": BOOL,                          # Enterprise; alias of read_replica
    "reconnect_timeout": DURATION,
    "reconnect_timeout_wan": DURATION,
    "recursors": LIST,
    "rejoin_after_leave": BOOL,
    "reporting": {
        "license": {
            "enabled": BOOL,
        },
    },
    "retry_interval": DURATION,
    "retry_interval_wan": DURATION,
    "retry_join": LIST,
    "retry_join_wan": LIST,
    "retry_max": INT,
    "retry_max_wan": INT,
    "rpc": {
        "enable_streaming": BOOL,
    },
    "segment": STRING,                                  # Enterprise
    "segments": LIST,                                   # Enterprise
    "serf_lan": STRING,
    "serf_lan_allowed_cidrs": LIST,
    "serf_wan": STRING,
    "serf_wan_allowed_cidrs": LIST,
    "server": BOOL,
    "server_name": STRING,
    "server_rejoin_age_max": DURATION,                  # newer (default.go, builder.go)
    "service": OBJECT,
    "services": LIST,
    "session_ttl_min": DURATION,
    "skip_leave_on_interrupt": BOOL,
    "snapshot_agent": MAP,
    "syslog_facility": STRING,
    "tagged_addresses": MAP,
    "telemetry": {
        "circonus_api_app": STRING,
        "circonus_api_token": STRING,
        "circonus_api_url": STRING,
        "circonus_broker_id": STRING,
        "circonus_broker_select_tag": STRING,
        "circonus_check_display_name": STRING,
        "circonus_check_force_metric_activation": STRING,
        "circonus_check_id": STRING,
        "circonus_check_instance_id": STRING,
        "circonus_check_search_tag": STRING,
        "circonus_check_tags": STRING,
        "circonus_submission_interval": STRING,
        "circonus_submission_url": STRING,
        "disable_hostname": BOOL,
        "dogstatsd_addr": STRING,
        "dogstatsd_tags": LIST,
        "enable_host_metrics": BOOL,                    # newer (telemetry docs)
        "filter_default": BOOL,
        "metrics_prefix": STRING,
        "prefix_filter": LIST,
        "prometheus_retention_time": DURATION,
        "retry_failed_connection": BOOL,
        "statsd_address": STRING,
        "statsite_address": STRING,
    },
    "tls": {
        "defaults": dict(_TLS_PROTOCOL),
        "internal_rpc": dict(_TLS_PROTOCOL),
        "https": dict(_TLS_PROTOCOL),
        "grpc": dict(_TLS_PROTOCOL),
    },
    "translate_wan_addrs": BOOL,
    "ui_config": {
        "enabled": BOOL,
        "dir": STRING,
        "content_path": STRING,
        "metrics_provider": STRING,
        "metrics_provider_files": LIST,
        "metrics_provider_options_json": STRING,
        "metrics_proxy": {
            "base_url": STRING,
            "add_headers": LIST,
            "path_allowlist": LIST,
        },
        "dashboard_url_templates": MAP,
    },
    "unix_sockets": {
        "group": STRING,
        "mode": STRING,
        "user": STRING,
    },
    "use_streaming_backend": BOOL,
    "watches": LIST,
    "xds": {
        "update_max_per_second": FLOAT,
    },

    # Deprecated keys Consul still accepts (deprecated.go, builder.go): see DEPRECATED.
    "acl_agent_master_token": STRING,
    "acl_agent_token": STRING,
    "acl_datacenter": STRING,
    "acl_default_policy": STRING,
    "acl_down_policy": STRING,
    "acl_enable_key_list_policy": BOOL,
    "acl_master_token": STRING,
    "acl_replication_token": STRING,
    "acl_token": STRING,
    "acl_ttl": DURATION,
    "enable_acl_replication": BOOL,
    "ca_file": STRING,
    "ca_path": STRING,
    "cert_file": STRING,
    "key_file": STRING,
    "tls_cipher_suites": STRING,
    "tls_min_version": STRING,
    "tls_prefer_server_cipher_suites": BOOL,
    "verify_incoming": BOOL,
    "verify_incoming_https": BOOL,
    "verify_incoming_rpc": BOOL,
    "verify_outgoing": BOOL,
    "verify_server_hostname": BOOL,
    "start_join": LIST,
    "start_join_wan": LIST,
    "raft_boltdb": {
        "no_freelist_sync": BOOL,
    },
    "ui": BOOL,
    "ui_content_path": STRING,
    "ui_dir": STRING,
    "acl_enforce_version_8": BOOL,      # removed; Consul only warns "should be removed"

    # Not user-configurable, but Consul's parser accepts them (config.go "non-user").
    "ae_interval": DURATION,
    "build_date": STRING,
    "check_deregister_interval_min": DURATION,
    "check_reap_interval": DURATION,
    "consul": {
        "coordinate": {
            "update_batch_size": INT,
            "update_max_batches": INT,
            "update_period": DURATION,
        },
        "raft": {
            "election_timeout": DURATION,
            "heartbeat_timeout": DURATION,
            "leader_lease_timeout": DURATION,
        },
        "server": {
            "health_interval": DURATION,
        },
    },
    "license_poll_base_time": DURATION,                 # Enterprise
    "license_poll_max_time": DURATION,                  # Enterprise
    "license_update_base_time": DURATION,               # Enterprise
    "license_update_max_time": DURATION,                # Enterprise
    "revision": STRING,
    "segment_limit": INT,
    "segment_name_limit": INT,
    "sync_coordinate_interval_min": DURATION,
    "sync_coordinate_rate_target": FLOAT,
    "version": STRING,
    "version_metadata": STRING,
    "version_prerelease": STRING,
}

# Deprecated key (dotted path) → the key that replaces it, as Consul names them in
# "The 'old' field is deprecated. Use the 'new' field instead." (deprecated.go).
DEPRECATED: dict[str, str] = {
    "acl_agent_master_token": "acl.tokens.agent_recovery",
    "acl_agent_token": "acl.tokens.agent",
    "acl_token": "acl.tokens.default",
    "acl.tokens.master": "acl.tokens.initial_management",
    "acl.tokens.agent_master": "acl.tokens.agent_recovery",
    "acl_master_token": "acl.tokens.initial_management",
    "acl_replication_token": "acl.tokens.replication",
    "enable_acl_replication": "acl.enable_token_replication",
    "acl_datacenter": "primary_datacenter",
    "acl_default_policy": "acl.default_policy",
    "acl_down_policy": "acl.down_policy",
    "acl_ttl": "acl.token_ttl",
    "acl_enable_key_list_policy": "acl.enable_key_list_policy",
    "start_join": "retry_join",
    "start_join_wan": "retry_join_wan",
    "raft_boltdb": "raft_logstore.boltdb",
    "ca_file": "tls.defaults.ca_file",
    "ca_path": "tls.defaults.ca_path",
    "cert_file": "tls.defaults.cert_file",
    "key_file": "tls.defaults.key_file",
    "tls_cipher_suites": "tls.defaults.tls_cipher_suites",
    "tls_min_version": "tls.defaults.tls_min_version",
    "verify_incoming": "tls.defaults.verify_incoming",
    "verify_incoming_https": "tls.https.verify_incoming",
    "verify_incoming_rpc": "tls.internal_rpc.verify_incoming",
    "verify_outgoing": "tls.defaults.verify_outgoing",
    "verify_server_hostname": "tls.internal_rpc.verify_server_hostname",
    "ui": "ui_config.enabled",
    "ui_dir": "ui_config.dir",
    "ui_content_path": "ui_config.content_path",
}

# Consul agent TLS cipher suites (types/tls.go, consulAgentTLSCipherSuites).
AGENT_CIPHER_SUITES: frozenset[str] = frozenset({
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
})


def spec_at(path: str) -> Spec | None:
    """The spec of a dotted key path (`"ports.http"`), or None if Consul has no such key."""
    node: Spec = CONSUL_KEYS
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node

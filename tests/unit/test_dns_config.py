"""The DNS configuration keys: alt_domain, recursors, translate_wan_addrs, dns_config.*,
ports.dns (agent/config/load.py), and what the resolver takes from them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.config.load import load, recursor_address
from agent.config.model import DNSSettings
from agent.dns.resolver import ResolverConfig
from agent.errors import ConfigError


def run(argv: list[str]):
    return load(["-dev", *argv], hostname="node1")


def problems(argv: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        run(argv)
    return info.value.problems


def cfg_file(tmp_path: Path, data: dict) -> list[str]:
    path = tmp_path / "dns.json"
    path.write_text(json.dumps(data))
    return ["-config-file", str(path)]


def test_defaults_are_consuls():
    cfg = run([]).config
    assert cfg.ports.dns == 8600 and cfg.domain == "consul" and cfg.alt_domain == ""
    assert cfg.recursors == () and cfg.translate_wan_addrs is False
    d = cfg.dns_config
    assert d == DNSSettings()
    assert (d.allow_stale, d.max_stale, d.node_ttl, d.service_ttl, d.only_passing) == \
           (True, 87600 * 3600.0, 0.0, (), False)
    assert (d.enable_truncate, d.udp_answer_limit, d.a_record_limit, d.recursor_timeout,
            d.recursor_strategy, d.enable_additional_node_meta_txt) == \
           (False, 3, 0, 2.0, "sequential", True)
    assert (d.soa_refresh, d.soa_retry, d.soa_expire, d.soa_min_ttl) == (3600, 600, 86400, 0)


def test_flags():
    cfg = run(["-dns-port", "8653", "-domain", "Example.", "-alt-domain", "alt.internal.",
               "-recursor", "192.0.2.53", "-recursor", "[2001:db8::53]:5353"]).config
    assert cfg.ports.dns == 8653 and cfg.domain == "Example" and cfg.alt_domain == "alt.internal"
    assert cfg.recursors == ("192.0.2.53", "[2001:db8::53]:5353")
    rc = ResolverConfig.from_agent(cfg)
    assert (rc.domain, rc.alt_domain, rc.recursors) == ("example", "alt.internal", 2)
    assert run(["-dns-port", "-1"]).config.ports.dns == -1       # disabled
    assert run(["-dns-port", "0"]).config.ports.dns == -1        # Consul: 0 disables too


def test_file_keys(tmp_path):
    cfg = run(cfg_file(tmp_path, {
        "recursors": ["192.0.2.1", "dns.example.com:5353 192.0.2.2"],
        "translate_wan_addrs": True,
        "dns_config": {"allow_stale": False, "max_stale": "5s", "node_ttl": "30s",
                       "service_ttl": {"*": "5s", "web": "1m"}, "only_passing": True,
                       "enable_truncate": True, "udp_answer_limit": 5, "a_record_limit": 2,
                       "recursor_timeout": "500ms", "recursor_strategy": "random",
                       "enable_additional_node_meta_txt": False,
                       "soa": {"refresh": 1, "retry": 2, "expire": 3, "min_ttl": 4}}})).config
    assert cfg.recursors == ("192.0.2.1", "dns.example.com:5353", "192.0.2.2")
    assert cfg.translate_wan_addrs is True
    d = cfg.dns_config
    assert (d.allow_stale, d.max_stale, d.node_ttl, d.only_passing, d.enable_truncate) == \
           (False, 5.0, 30.0, True, True)
    assert dict(d.service_ttl) == {"*": 5.0, "web": 60.0}
    assert (d.udp_answer_limit, d.a_record_limit, d.recursor_timeout, d.recursor_strategy) == \
           (5, 2, 0.5, "random")
    assert d.enable_additional_node_meta_txt is False
    assert (d.soa_refresh, d.soa_retry, d.soa_expire, d.soa_min_ttl) == (1, 2, 3, 4)


def test_dns_keys_no_longer_warn_as_unimplemented(tmp_path):
    loaded = run(cfg_file(tmp_path, {"recursors": ["192.0.2.1"], "alt_domain": "x",
                                     "dns_config": {"node_ttl": "1s", "use_cache": True}}))
    assert not any('"recursors"' in w or '"alt_domain"' in w or '"dns_config.node_ttl"' in w
                   for w in loaded.warnings)
    assert any('"dns_config.use_cache"' in w for w in loaded.warnings)   # not implemented


@pytest.mark.parametrize("data, needle", [
    ({"recursors": ["not an address:x"]}, 'recursors: invalid recursor address "address:x"'),
    ({"recursors": ["192.0.2.1:99999"]}, 'invalid recursor address "192.0.2.1:99999"'),
    ({"recursors": ["{{ GetPrivateIP }}"]}, "go-sockaddr templates"),
    ({"dns_config": {"udp_answer_limit": -1}},
     "dns_config.udp_answer_limit cannot be -1. Must be greater than or equal to zero"),
    ({"dns_config": {"a_record_limit": -2}}, "dns_config.a_record_limit cannot be -2"),
    ({"dns_config": {"service_ttl": {"web": "soon"}}},
     'dns_config.service_ttl: invalid duration "soon" for "web"'),
    ({"dns_config": {"service_ttl": {"web": 5}}}, '"dns_config.service_ttl" in'),
    ({"dns_config": {"node_ttl": "-1s"}}, 'dns_config.node_ttl cannot be negative'),
    ({"dns_config": {"recursor_strategy": "fastest"}},
     'dns_config.recursor_strategy: unknown strategy "fastest"'),
    ({"dns_config": {"soa": {"refresh": -1}}}, "dns_config.soa.refresh cannot be -1"),
    ({"translate_wan_addrs": "yes"}, '"translate_wan_addrs" in'),
])
def test_bad_values_are_problems(tmp_path, data, needle):
    found = problems(cfg_file(tmp_path, data))
    assert any(needle in p for p in found), found


@pytest.mark.parametrize("text, parsed", [
    ("192.0.2.1", ("192.0.2.1", 53)), ("192.0.2.1:5353", ("192.0.2.1", 5353)),
    ("2001:db8::1", ("2001:db8::1", 53)), ("[2001:db8::1]:54", ("2001:db8::1", 54)),
    ("[2001:db8::1]", ("2001:db8::1", 53)), ("dns.example.com", ("dns.example.com", 53)),
    ("dns.example.com:54", ("dns.example.com", 54)),
    ("", None), (":53", None), ("a b", None), ("host:0", None), ("[host]:53", None),
    ("[::1]x", None), ("1.2.3.4:port", None),
])
def test_recursor_address(text, parsed):
    assert recursor_address(text) == parsed

"""Join addresses as Consul takes them: IPs, `ip:port`, `[v6]:port`, host names (resolved,
every address joined), memberlist's `name/` prefix; garbage refused with a reason."""
from __future__ import annotations

import pytest

from agent.gossip.pool import parse_join_address, resolve_join_address
from tests.aio import run


@pytest.mark.parametrize("text,want", [
    ("10.0.0.1", ("10.0.0.1", 8301)),
    ("10.0.0.1:9000", ("10.0.0.1", 9000)),
    ("[::1]:9000", ("::1", 9000)),
    ("::1", ("::1", 8301)),
    ("node-a/10.0.0.1:7", ("10.0.0.1", 7)),
    ("localhost", ("localhost", 8301)),
    ("consul-0.consul.svc.cluster.local:8301", ("consul-0.consul.svc.cluster.local", 8301)),
])
def test_parse(text, want):
    assert parse_join_address(text, 8301) == want


@pytest.mark.parametrize("text", ["", "bad host", "-x.example", "10.0.0.1:0", "10.0.0.1:99999",
                                  "a..b", "host:port"])
def test_parse_refuses(text):
    with pytest.raises(ValueError):
        parse_join_address(text, 8301)


def test_resolve_ip_and_name():
    assert run(lambda: resolve_join_address("10.1.2.3", 1)) == [("10.1.2.3", 1)]
    got = run(lambda: resolve_join_address("localhost", 8301))
    assert ("127.0.0.1", 8301) in got or ("::1", 8301) in got

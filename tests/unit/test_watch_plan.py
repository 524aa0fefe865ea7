"""`isthmus watch` parameters as Consul's watch.Parse takes them (pure)."""
from __future__ import annotations

import pytest

from agent.cli.watch_cmd import QueryFailed, WatchError, backoff, event_index, parse


@pytest.mark.parametrize("params, error", [
    ({}, "Watch type must be specified"),
    ({"type": "bogus"}, "Unsupported watch type: bogus"),
    ({"type": "key"}, "Must specify a single key to watch"),
    ({"type": "keyprefix"}, "Must specify a single prefix to watch"),
    ({"type": "service"}, "Must specify a single service to watch"),
    ({"type": "checks", "service": "web", "state": "passing"}, "Cannot specify service and state"),
    ({"type": "key", "key": "k", "service": "web"}, "Invalid parameters: [service]"),
    ({"type": "nodes", "tag": "x", "name": "y"}, "Invalid parameters: [name tag]"),
    ({"type": "event", "stale": True}, "Invalid parameters: [stale]"),
    ({"type": "services", "passingonly": True}, "Invalid parameters: [passingonly]"),
    ({"type": "service", "service": "web", "passingonly": "yes"},
     "Expecting passingonly to be a boolean"),
])
def test_parse_errors_are_consuls(params, error):
    with pytest.raises(WatchError) as exc:
        parse(params)
    assert str(exc.value) == error


def test_plans_query_consuls_endpoints():
    p = parse({"type": "key", "key": "a/b c", "stale": True, "datacenter": "dc1", "token": "t"})
    assert (p.path, p.params, p.missing_ok) == ("/v1/kv/a/b%20c", [("stale", "")], True)
    assert p.shape([{"Key": "a/b c"}], 0) == {"Key": "a/b c"} and p.shape(None, 0) is None
    p = parse({"type": "keyprefix", "prefix": "app/"})
    assert (p.path, p.params) == ("/v1/kv/app/", [("recurse", "")])
    assert p.shape(None, 0) is None                      # Consul's kv.List: nil on 404
    assert parse({"type": "services"}).path == "/v1/catalog/services"
    assert parse({"type": "nodes"}).path == "/v1/catalog/nodes"
    p = parse({"type": "service", "service": "web", "tag": "v1", "passingonly": True})
    assert (p.path, p.params) == ("/v1/health/service/web", [("tag", "v1"), ("passing", "1")])
    p = parse({"type": "service", "service": "web", "passingonly": False})
    assert p.params == []
    assert parse({"type": "checks"}).path == "/v1/health/state/any"
    assert parse({"type": "checks", "state": "critical"}).path == "/v1/health/state/critical"
    assert parse({"type": "checks", "service": "web"}).path == "/v1/health/checks/web"
    p = parse({"type": "event", "name": "deploy"})
    assert (p.path, p.params) == ("/v1/event/list", [("name", "deploy")])


def test_checks_state_is_checked_per_query_as_consuls_api_does():
    p = parse({"type": "checks", "state": "bogus"})         # parses: the query refuses it
    with pytest.raises(QueryFailed, match="Unsupported state: bogus"):
        p.check()
    parse({"type": "checks", "state": "warning"}).check()


def test_checks_tag_filters_on_service_tags():
    p = parse({"type": "checks", "state": "any", "tag": "v1"})
    rows = [{"CheckID": "a", "ServiceTags": ["v1", "x"]}, {"CheckID": "b", "ServiceTags": []},
            {"CheckID": "c", "ServiceTags": None}]
    assert [r["CheckID"] for r in p.shape(rows, 0)] == ["a"]


def test_event_watch_hands_over_only_new_events():
    ids = ["6a1f0c5e-3a4b-4c5d-8e9f-0a1b2c3d4e5f", "7b2f0c5e-3a4b-4c5d-8e9f-0a1b2c3d4e60",
           "8c3f0c5e-3a4b-4c5d-8e9f-0a1b2c3d4e61"]
    events = [{"ID": i} for i in ids]
    p = parse({"type": "event"})
    assert p.shape(events, 0) == events
    assert p.shape(events, event_index(ids[0])) == events[1:]
    assert p.shape(events, event_index(ids[2])) == []
    assert p.shape(events, 12345) == events                  # last one not there: all
    # Consul's IDToIndex: the two halves XORed
    assert event_index("00000000-0000-0001-0000-000000000003") == 1 ^ 3


def test_retry_backoff_is_consuls():
    assert [backoff(n) for n in (1, 2, 3, 5, 6, 7)] == [5.0, 20.0, 45.0, 125.0, 180.0, 180.0]

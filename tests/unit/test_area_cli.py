"""`isthmus operator area …`: tables, RTT as Go's Duration.String(), output lines, errors and
exit codes (spec federation.md §3), against a fake HTTP client."""
from __future__ import annotations

import pytest

from agent.cli import area_cmds
from agent.cli.api import APIError
from agent.cli.main import main
from agent.cli.table import columnize

A1 = "5b1c9e1a-0c4d-7e52-3f9a-2d8e61b0c7a4"
A2 = "e07f3d22-91ab-4c10-8d2e-4b6f0a9c3e15"


@pytest.mark.parametrize("ns,want", [
    (0, "0s"), (1, "1ns"), (999, "999ns"), (1000, "1µs"), (742_050, "742.05µs"),
    (594_191, "594.191µs"), (1_312_000, "1.312ms"), (2_500_000_000, "2.5s"),
    (62_500_000_000, "1m2.5s"), (3_600_000_000_000, "1h0m0s"), (-1, "-1ns"),
    (-1_500_000, "-1.5ms"), (59_999_999_999, "59.999999999s"), (1_000_000_001, "1.000000001s"),
])
def test_rtt_is_go_duration_string(ns, want):
    assert area_cmds.go_duration_ns(ns) == want


def test_list_table_is_the_spec_sample():
    areas = [{"ID": A1, "PeerDatacenter": "dc2", "RetryJoin": ["10.0.2.10", "10.0.2.11"], "UseTLS": False},
             {"ID": A2, "PeerDatacenter": "dc3", "RetryJoin": None, "UseTLS": False}]
    assert columnize(area_cmds.list_rows(areas)) == (
        "Area                                  PeerDC  RetryJoin\n"
        f"{A1}  dc2     10.0.2.10,10.0.2.11\n"
        f"{A2}  dc3     (none)")
    assert columnize(area_cmds.list_rows([{"ID": A2, "PeerDatacenter": "x", "RetryJoin": []}])) \
        .endswith("(none)")


def test_join_table_is_the_spec_sample():
    err = 'failed to connect to "10.0.2.99:8300": dial tcp 10.0.2.99:8300: i/o timeout'
    rows = area_cmds.join_rows([{"Address": "10.0.2.10", "Joined": True, "Error": ""},
                                {"Address": "10.0.2.99", "Joined": False, "Error": err}])
    assert columnize(rows) == ("Address    Joined  Error\n"
                               "10.0.2.10  true    (none)\n"
                               f"10.0.2.99  false   {err}")


def _member(name, addr, rtt, dc="dc1", build="0.8.0"):
    return {"ID": "x", "Name": name, "Addr": addr, "Port": 8300, "Datacenter": dc, "Role": "server",
            "Build": build, "Protocol": 2, "Status": "alive", "RTT": rtt}


def test_members_table_is_the_clidoc_sample():
    a, b = "6a52a0af-62e2-dad4-da60-e66acc37096c", "96e33424-f5ce-9fcd-ecab-27974e36678f"
    rows = area_cmds.member_rows([
        (a, [_member("node-2.dc1", "127.0.0.2", 594_191), _member("node-1.dc1", "127.0.0.1", 0)]),
        (b, [_member("node-1.dc1", "127.0.0.1", 0, build="0.8.0:abc123"),
             _member("node-2.dc1", "127.0.0.2", 634_109)])])
    # µ counts as one column, as columnize counts runes
    assert columnize(rows) == (
        "Area                                  Node        Address         Status  Build  Protocol  DC   RTT\n"
        f"{a}  node-1.dc1  127.0.0.1:8300  alive   0.8.0  2         dc1  0s\n"
        f"{a}  node-2.dc1  127.0.0.2:8300  alive   0.8.0  2         dc1  594.191µs\n"
        f"{b}  node-1.dc1  127.0.0.1:8300  alive   0.8.0  2         dc1  0s\n"
        f"{b}  node-2.dc1  127.0.0.2:8300  alive   0.8.0  2         dc1  634.109µs")


# ---------------------------------------------------------------------------- commands


class FakeClient:
    """Stands in for APIClient: answers from `routes`, records every request."""
    areas: list = []
    calls: list = []
    fail: dict = {}
    opts: list = []

    def __init__(self, opts, env=None, timeout=30.0):
        FakeClient.opts.append(dict(opts))

    def request(self, method, path, params=None, body=None):
        FakeClient.calls.append((method, path, body))
        if (method, path) in FakeClient.fail:
            raise APIError(FakeClient.fail[(method, path)])
        if (method, path) == ("GET", "/v1/operator/area"):
            return FakeClient.areas
        if (method, path) == ("POST", "/v1/operator/area"):
            return {"ID": A1}
        if path.endswith("/join"):
            return [{"Address": a, "Joined": a.startswith("127."), "Error": "" if a.startswith("127.")
                     else "boom"} for a in body]
        if path.endswith("/members"):
            return [_member("srv.dc1", "127.0.0.1", 0)]
        if method in ("PUT", "DELETE"):
            return {"ID": path.rsplit("/", 1)[1]}
        raise AssertionError(path)


@pytest.fixture
def fake(monkeypatch):
    FakeClient.areas = [{"ID": A1, "PeerDatacenter": "dc2", "RetryJoin": None, "UseTLS": False},
                        {"ID": A2, "PeerDatacenter": "dc3", "RetryJoin": ["10.0.0.1"], "UseTLS": False}]
    FakeClient.calls, FakeClient.fail, FakeClient.opts = [], {}, []
    monkeypatch.setattr(area_cmds, "APIClient", FakeClient)
    return FakeClient


def _run(capsys, *argv):
    rc = main(["operator", "area", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_create(fake, capsys):
    rc, out, err = _run(capsys, "create", "-peer-datacenter=dc2", "-retry-join", "10.0.2.10",
                        "-retry-join=10.0.2.11:8300", "-use-tls")
    assert (rc, out, err) == (0, f'Created area "{A1}" with peer datacenter "dc2"!\n', "")
    assert fake.calls == [("POST", "/v1/operator/area", {
        "PeerDatacenter": "dc2", "RetryJoin": ["10.0.2.10", "10.0.2.11:8300"], "UseTLS": True})]
    rc, out, err = _run(capsys, "create", "-peer-datacenter", "dc4", "-use-tls=false")
    assert fake.calls[-1][2] == {"PeerDatacenter": "dc4", "RetryJoin": None, "UseTLS": False}


def test_create_errors(fake, capsys):
    assert _run(capsys, "create") == (1, "", "Error creating area: Missing required -peer-datacenter flag\n")
    fake.fail[("POST", "/v1/operator/area")] = "Unexpected response code: 500 (boom)"
    assert _run(capsys, "create", "-peer-datacenter=dc1") == (
        1, "", "Error creating area: Unexpected response code: 500 (boom)\n")
    rc, out, err = _run(capsys, "create", "-use-tls=maybe")
    assert rc == 1 and out == "" and 'invalid boolean value "maybe" for -use-tls' in err
    rc, out, err = _run(capsys, "create", "-peer-datacenter=dc2", "extra")
    assert (rc, err) == (1, "Error creating area: Too many arguments (expected 0, got 1)\n")


def test_list(fake, capsys):
    rc, out, err = _run(capsys, "list", "-datacenter=dc9", "-stale")
    assert rc == 0 and err == ""
    assert out == ("Area                                  PeerDC  RetryJoin\n"
                   f"{A1}  dc2     (none)\n"
                   f"{A2}  dc3     10.0.0.1\n")
    assert fake.opts[-1]["datacenter"] == "dc9" and fake.opts[-1]["stale"] is True
    fake.areas = []
    assert _run(capsys, "list") == (0, "Area  PeerDC  RetryJoin\n", "")


def test_delete_by_id_and_by_peer(fake, capsys):
    assert _run(capsys, "delete", f"-id={A2}") == (0, f'Deleted area "{A2}"!\n', "")
    assert fake.calls[-1][:2] == ("DELETE", f"/v1/operator/area/{A2}")
    assert _run(capsys, "delete", "-peer-datacenter", "dc2") == (0, f'Deleted area "{A1}"!\n', "")
    assert fake.calls[-2:] == [("GET", "/v1/operator/area", None),
                               ("DELETE", f"/v1/operator/area/{A1}", None)]


def test_selection_errors(fake, capsys):
    assert _run(capsys, "delete") == (1, "", "Error deleting area: Must specify either -id or -peer-datacenter\n")
    assert _run(capsys, "delete", "-id=x", "-peer-datacenter=dc2") == (
        1, "", "Error deleting area: Only one of -id or -peer-datacenter may be given\n")
    assert _run(capsys, "update", "-peer-datacenter=dc9", "-use-tls=true") == (
        1, "", 'Error updating area: No area found for peer datacenter "dc9"\n')
    fake.fail[("DELETE", "/v1/operator/area/nope")] = 'Unexpected response code: 404 (unknown area "nope")'
    assert _run(capsys, "delete", "-id=nope") == (
        1, "", 'Error deleting area: Unexpected response code: 404 (unknown area "nope")\n')


def test_update(fake, capsys):
    assert _run(capsys, "update", "-peer-datacenter=dc3", "-use-tls=true") == (0, f'Updated area "{A2}"\n', "")
    assert fake.calls[-1] == ("PUT", f"/v1/operator/area/{A2}", {"UseTLS": True})
    assert _run(capsys, "update", f"-id={A1}", "-use-tls=false") == (0, f'Updated area "{A1}"\n', "")
    assert fake.calls[-1] == ("PUT", f"/v1/operator/area/{A1}", {"UseTLS": False})
    rc, out, err = _run(capsys, "update", f"-id={A1}")
    assert (rc, out) == (1, "") and "Missing required -use-tls" in err
    assert fake.calls[-1][0] == "PUT" and len([c for c in fake.calls if c[0] == "PUT"]) == 2


def test_join(fake, capsys):
    rc, out, err = _run(capsys, "join", "-peer-datacenter=dc2", "127.0.0.2", "10.0.0.99")
    assert (rc, err) == (0, "")
    assert out == ("Address    Joined  Error\n"
                   "127.0.0.2  true    (none)\n"
                   "10.0.0.99  false   boom\n")
    assert fake.calls[-1] == ("PUT", f"/v1/operator/area/{A1}/join", ["127.0.0.2", "10.0.0.99"])
    rc, out, err = _run(capsys, "join", f"-id={A1}", "10.0.0.99")      # nothing joined: exit 1
    assert rc == 1 and out.endswith("10.0.0.99  false   boom\n")
    assert _run(capsys, "join", f"-id={A1}") == (
        1, "", "Error joining area: Must provide at least one address to join\n")


def test_members(fake, capsys):
    rc, out, err = _run(capsys, "members")
    assert (rc, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["Area", "Node", "Address", "Status", "Build", "Protocol", "DC", "RTT"]
    assert [ln.split()[0] for ln in lines[1:]] == [A1, A2]
    assert lines[1].split()[1:] == ["srv.dc1", "127.0.0.1:8300", "alive", "0.8.0", "2", "dc1", "0s"]
    rc, out, err = _run(capsys, "members", "-peer-datacenter=dc3")
    assert rc == 0 and [ln.split()[0] for ln in out.splitlines()[1:]] == [A2]


def test_usage(fake, capsys):
    rc, out, err = _run(capsys)
    assert rc == 0 and "create     Create a new network area" in err
    rc, out, err = _run(capsys, "explode")
    assert rc == 1 and "Usage: isthmus operator area <subcommand>" in err
    rc = main(["operator"])
    assert "area    Provides tools for working with network areas" in capsys.readouterr().err
    rc, out, err = _run(capsys, "create", "-help")
    assert rc == 0 and "-peer-datacenter" in out and "-retry-join" in out

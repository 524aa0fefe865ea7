"""Local state, its files, the anti-entropy diff (a fake catalog behind a fake RPC), the
client's server list, and the definition parsing."""
from __future__ import annotations

import asyncio
import copy
import random
from dataclasses import dataclass, field

import pytest

from agent.config.model import AgentConfig
from agent.errors import NoServersError, RPCConnectError, RPCError
from agent.local.body import DecodeFailed, Fields, go_duration
from agent.local.defs import INVALID_CHECK, Invalid, parse_check, parse_service
from agent.local.manager import LocalAgent, NotFound
from agent.local.state import LocalFiles, LocalState
from agent.local.sync import StateSyncer, scale_factor
from agent.serf.core import STATUS_ALIVE, STATUS_FAILED
from agent.servers import ServerManager
from tests.aio import run

NODE_ID = "9d2f6f9e-2b4a-4cc4-8f51-5b3a7d4f8f10"


class FakeCatalog:
    """The four RPCs anti-entropy uses, on dicts; `calls` records every write."""

    def __init__(self) -> None:
        self.node: dict | None = None
        self.services: dict[str, dict] = {}
        self.checks: dict[str, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.fail: Exception | None = None

    async def rpc(self, method: str, body: dict):
        if self.fail is not None:
            raise self.fail
        body = copy.deepcopy(body)
        if method == "Catalog.NodeServices":
            return {"NodeServices": None if self.node is None else
                    {"Node": dict(self.node), "Services": copy.deepcopy(self.services)},
                    "Index": 1}
        if method == "Health.NodeChecks":
            return {"HealthChecks": list(copy.deepcopy(self.checks).values()), "Index": 1}
        self.calls.append((method, body))
        if method == "Catalog.Register":
            if not body.get("SkipNodeUpdate") or self.node is None:
                self.node = {"ID": body["ID"], "Node": body["Node"], "Address": body["Address"],
                             "TaggedAddresses": body["TaggedAddresses"],
                             "Meta": body["NodeMeta"]}
            if body.get("Service"):
                self.services[body["Service"]["ID"]] = body["Service"]
            for chk in ([body["Check"]] if body.get("Check") else []) + (body.get("Checks") or []):
                self.checks[chk["CheckID"]] = chk
            return None
        if method == "Catalog.Deregister":
            if body.get("ServiceID"):
                self.services.pop(body["ServiceID"], None)
                for cid in [k for k, c in self.checks.items()
                            if c.get("ServiceID") == body["ServiceID"]]:
                    del self.checks[cid]
            elif body.get("CheckID"):
                self.checks.pop(body["CheckID"], None)
            return None
        raise AssertionError(method)


def new_state() -> LocalState:
    st = LocalState("n1", "dc1", check_update_interval=0)
    st.set_node_info(NODE_ID, "10.0.0.1", {"lan": "10.0.0.1"}, {"rack": "r1"})
    return st


def svc(sid: str, name: str = "web", **kw) -> dict:
    return {"Kind": "", "ID": sid, "Service": name, "Tags": kw.get("tags", []), "Address": "",
            "TaggedAddresses": {}, "Meta": {}, "Port": kw.get("port", 80),
            "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False}


def chk(cid: str, sid: str = "", status: str = "critical") -> dict:
    return {"CheckID": cid, "Name": cid, "Status": status, "Notes": "", "Output": "",
            "ServiceID": sid, "Type": "ttl"}


def test_full_sync_registers_node_services_and_checks_then_is_quiet():
    async def main():
        cat, st = FakeCatalog(), new_state()
        st.add_service(svc("web1"))
        st.add_check(chk("service:web1", "web1"))
        st.add_check(chk("mem"))
        syncer = StateSyncer(st, cat.rpc, lambda: 1)
        await syncer.sync_full()
        assert cat.node["Address"] == "10.0.0.1" and cat.node["Meta"] == {"rack": "r1"}
        assert set(cat.services) == {"web1"}
        assert set(cat.checks) == {"service:web1", "mem"}
        assert cat.checks["service:web1"]["ServiceName"] == "web"
        assert st.in_sync()
        cat.calls.clear()
        await syncer.sync_full()              # nothing differs: no writes
        assert cat.calls == []
    run(main)


def test_full_sync_repairs_catalog_drift_and_removes_foreign_items():
    async def main():
        cat, st = FakeCatalog(), new_state()
        st.add_service(svc("web1"))
        syncer = StateSyncer(st, cat.rpc, lambda: 1)
        await syncer.sync_full()
        # Someone changed the catalog behind the agent's back.
        cat.services["web1"]["Port"] = 81
        cat.services["ghost"] = svc("ghost", "ghost")
        cat.services["consul"] = svc("consul", "consul")        # the servers' own: kept
        cat.checks["serfHealth"] = chk("serfHealth", status="passing")  # the leader's: kept
        cat.checks["stale"] = chk("stale")
        cat.node["Meta"] = {}
        cat.calls.clear()
        await syncer.sync_full()
        assert cat.services["web1"]["Port"] == 80
        assert "ghost" not in cat.services and "stale" not in cat.checks
        assert "consul" in cat.services and "serfHealth" in cat.checks
        assert cat.node["Meta"] == {"rack": "r1"}
        methods = [m for m, _ in cat.calls]
        assert methods.count("Catalog.Deregister") == 2
        assert "ghost" not in st.services and "stale" not in st.checks
    run(main)


def test_removals_and_status_changes_are_pushed_by_partial_syncs():
    async def main():
        cat, st = FakeCatalog(), new_state()
        syncer = StateSyncer(st, cat.rpc, lambda: 1, debounce=0)
        st.add_service(svc("web1"))
        st.add_check(chk("c1", "web1"))
        await syncer.sync_full()
        syncer.start()
        try:
            assert st.update_check("c1", "passing", "ok", now=1.0) == "changed"
            for _ in range(200):
                if cat.checks["c1"]["Status"] == "passing":
                    break
                await asyncio.sleep(0.01)
            assert cat.checks["c1"]["Output"] == "ok"
            st.remove_service("web1")
            for _ in range(200):
                if "web1" not in cat.services:
                    break
                await asyncio.sleep(0.01)
            assert "web1" not in cat.services and "c1" not in cat.checks
            assert "web1" not in st.services
        finally:
            await syncer.stop()
    run(main)


def test_output_only_changes_are_deferred_by_check_update_interval():
    st = LocalState("n1", "dc1", check_update_interval=300)
    st.add_check(chk("c1"))
    st.checks["c1"].in_sync = True
    assert st.update_check("c1", "critical", "new output", now=0) == "deferred"
    assert st.checks["c1"].in_sync and st.checks["c1"].check["Output"] == "new output"
    assert st.update_check("c1", "critical", "newer", now=1) == "unchanged"
    # A full sync meanwhile ignores the output difference.
    st.update_sync_state(None, {}, [dict(chk("c1"), Node="n1", Output="old")])
    assert st.checks["c1"].in_sync
    st.undefer("c1")
    assert not st.checks["c1"].in_sync
    assert st.update_check("c1", "passing", "x", now=2) == "changed"


def test_a_change_during_an_rpc_keeps_the_item_out_of_sync():
    st = new_state()
    st.add_service(svc("web1"))
    ops = st.plan()
    st.add_service(svc("web1", port=81))      # changed while the Register was in flight
    for op in ops:
        st.done(op)
    assert not st.services["web1"].in_sync and st.node_in_sync


def test_sync_errors_propagate_but_permission_denied_is_skipped():
    async def main():
        cat, st = FakeCatalog(), new_state()
        st.add_service(svc("web1"))
        cat.fail = NoServersError()
        syncer = StateSyncer(st, cat.rpc, lambda: 1)
        with pytest.raises(NoServersError):
            await syncer.sync_full()
        cat.fail = None

        async def denied(method, body):
            if method == "Catalog.Register" and body.get("Service"):
                raise RPCError("Permission denied")
            return await cat.rpc(method, body)
        await StateSyncer(st, denied, lambda: 1).sync_full()
        assert "web1" not in cat.services and not st.services["web1"].in_sync
    run(main)


@pytest.mark.parametrize("nodes,factor", [(1, 1), (128, 1), (129, 2), (256, 2), (257, 3),
                                          (512, 3), (1024, 4), (8192, 7)])
def test_scale_factor_is_consuls_ae_scale(nodes, factor):
    assert scale_factor(nodes) == factor


def test_files_round_trip_and_skip_torn_files(tmp_path):
    files = LocalFiles(str(tmp_path))
    files.save_service(svc("a/b"), token="t")
    files.save_check(chk("c1", "a/b"), {"TTL": 10.0})
    files.save_check_state("c1", "passing", "ok", 123.0)
    (tmp_path / "services" / "garbage").write_text("{not json")
    services, checks, states = files.load()
    assert [p["Service"]["ID"] for p in services] == ["a/b"] and services[0]["Token"] == "t"
    assert checks[0]["ChkType"] == {"TTL": 10.0}
    assert states["c1"]["Status"] == "passing"
    files.remove_check("c1")
    files.remove_service("a/b")
    assert files.load() == ([], [], {})


def config(tmp_path, **kw) -> AgentConfig:
    return AgentConfig(node_name="n1", data_dir=str(tmp_path), advertise_addr="10.0.0.1", **kw)


def test_local_agent_persists_and_reloads_with_ttl_state(tmp_path):
    async def main():
        cat = FakeCatalog()
        la = LocalAgent(config(tmp_path), NODE_ID, cat.rpc, lambda: 1)
        await la.start()
        service, checks = parse_service(Fields({"Name": "web", "ID": "web1", "Port": 80,
                                                "Check": {"TTL": "1m"}}, "ServiceDefinition"))
        la.add_service(service, checks)
        la.update_ttl("service:web1", "passing", "fine")
        la.enable_node_maintenance("")
        await la.stop()

        la2 = LocalAgent(config(tmp_path), NODE_ID, cat.rpc, lambda: 1)
        await la2.start()
        try:
            assert la2.services()["web1"]["Port"] == 80
            c = la2.checks()["service:web1"]
            assert (c["Status"], c["Output"]) == ("passing", "fine")
            assert "_node_maintenance" in la2.checks()
            la2.remove_service("web1")
            with pytest.raises(NotFound):
                la2.remove_service("web1")
        finally:
            await la2.stop()
        la3 = LocalAgent(config(tmp_path), NODE_ID, cat.rpc, lambda: 1)
        await la3.start()
        assert la3.services() == {} and set(la3.checks()) == {"_node_maintenance"}
        await la3.stop()
    run(main)


def test_script_checks_need_enable_script_checks(tmp_path):
    async def main():
        cat = FakeCatalog()
        check, ct = parse_check(Fields({"Name": "s", "Args": ["true"], "Interval": "10s"},
                                       "CheckDefinition"))
        la = LocalAgent(config(tmp_path), NODE_ID, cat.rpc, lambda: 1)
        await la.start()
        try:
            with pytest.raises(Exception, match="^Scripts are disabled on this agent"):
                la.add_check(check, ct)
            assert la.checks() == {}
        finally:
            await la.stop()
        la = LocalAgent(config(tmp_path, enable_script_checks=True), NODE_ID, cat.rpc,
                        lambda: 1)
        await la.start()
        try:
            la.add_check(check, ct)
            assert la.checks()["s"]["Type"] == "script"
        finally:
            await la.stop()
    run(main)


def test_deregister_critical_service_after(tmp_path):
    async def main():
        cat = FakeCatalog()
        la = LocalAgent(config(tmp_path), NODE_ID, cat.rpc, lambda: 1)
        await la.start()
        try:
            service, checks = parse_service(Fields(
                {"Name": "web", "Check": {"TTL": "1h", "DeregisterCriticalServiceAfter": "50ms"}},
                "ServiceDefinition"))
            la.add_service(service, checks)
            assert la.reap_critical() == []
            await asyncio.sleep(0.1)
            assert la.reap_critical() == ["web"]
            assert la.services() == {} and la.checks() == {}
        finally:
            await la.stop()
    run(main)


def test_definitions_parse_like_consul():
    service, checks = parse_service(Fields(
        {"name": "web", "tags": ["a"], "port": 80, "meta": {"k": "v"},
         "checks": [{"http": "http://x/", "interval": "10s"}, {"ttl": 30_000_000_000}]},
        "ServiceDefinition"))
    assert service["ID"] == "web" and service["Weights"] == {"Passing": 1, "Warning": 1}
    assert [c["CheckID"] for c, _ in checks] == ["service:web:1", "service:web:2"]
    assert checks[0][0]["Name"] == "Service 'web' check"
    assert checks[0][0]["Definition"]["Interval"] == "10s" and checks[1][1] == {"TTL": 30.0}
    with pytest.raises(Invalid, match="Missing service name"):
        parse_service(Fields({"Port": 1}, "ServiceDefinition"))
    with pytest.raises(Invalid, match="Invalid service address"):
        parse_service(Fields({"Name": "x", "Address": "0.0.0.0"}, "ServiceDefinition"))
    with pytest.raises(Invalid) as e:
        parse_check(Fields({"Name": "x", "HTTP": "http://x/"}, "CheckDefinition"))
    assert str(e.value) == INVALID_CHECK
    with pytest.raises(DecodeFailed, match="ServiceDefinition.Port of type int"):
        parse_service(Fields({"Name": "x", "Port": "80"}, "ServiceDefinition"))
    with pytest.raises(Invalid, match="reserved"):
        parse_service(Fields({"Name": "x", "Meta": {"consul-x": "1"}}, "ServiceDefinition"))


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (10, "10s"), (90, "1m30s"), (0.5, "500ms"),
                                          (3600, "1h0m0s"), (1.5, "1.5s"), (60, "1m0s")])
def test_go_duration_strings(seconds, text):
    assert go_duration(seconds) == text


@dataclass
class Member:
    name: str
    addr: str
    tags: dict = field(default_factory=dict)
    status: int = STATUS_ALIVE


def server(name: str, port: int, dc: str = "dc1", status: int = STATUS_ALIVE) -> Member:
    return Member(name, "127.0.0.1", {"role": "consul", "dc": dc, "port": str(port)}, status)


def test_server_manager_tracks_lan_servers_and_rotates_on_connect_errors():
    async def main():
        down = {("127.0.0.1", 1)}
        calls = []

        async def caller(addr, method, body):
            calls.append(addr)
            if addr in down:
                raise RPCConnectError("failed to connect")
            return {"from": addr}
        ups = []
        mgr = ServerManager("dc1", caller, rng=random.Random(1), on_server_up=lambda: ups.append(1))
        with pytest.raises(NoServersError, match="No known Consul servers"):
            await mgr.call("Status.Ping", {})
        mgr.update([server("s1", 1), server("s2", 2), server("other", 3, dc="dc2"),
                    Member("client", "127.0.0.1", {"role": "node", "dc": "dc1"}),
                    server("dead", 4, status=STATUS_FAILED)])
        assert sorted(s.name for s in mgr.servers) == ["s1", "s2"] and ups == [1]
        for _ in range(3):
            assert (await mgr.call("Status.Ping", {}))["from"] == ("127.0.0.1", 2)
        assert mgr.servers[0].name == "s2"          # the failed one went to the back
        down.add(("127.0.0.1", 2))
        with pytest.raises(RPCConnectError):
            await mgr.call("Status.Ping", {})
        mgr.update([server("s1", 1)])
        assert [s.name for s in mgr.servers] == ["s1"] and ups == [1]
    run(main)


def test_enable_script_checks_config_key(tmp_path):
    from agent.config.load import load
    assert load(["-dev"]).config.enable_script_checks is False
    assert load(["-dev", "-enable-script-checks"]).config.enable_script_checks is True
    f = tmp_path / "c.json"
    f.write_text('{"enable_script_checks": true}')
    loaded = load(["-dev", f"-config-file={f}"])
    assert loaded.config.enable_script_checks is True
    assert not any("enable_script_checks" in w for w in loaded.warnings)

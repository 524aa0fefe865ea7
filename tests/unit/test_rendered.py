"""agent/http/rendered.py: who renders a read's body — the server that answers it when that
is another one, this agent when the answer came from its own store or from a server that
ignores `Render` (Consul's) — and that both give the same bytes."""
from __future__ import annotations

from types import SimpleNamespace

from agent.http import rendered
from agent.rpc.registry import Registry
from tests.aio import run

ROW = {"Key": "k", "CreateIndex": 5, "ModifyIndex": 6, "LockIndex": 0, "Flags": 0,
       "Value": b"v", "Session": None}


def kv_server(calls: list) -> Registry:
    reg = Registry()

    async def get(body, ctx):
        calls.append(dict(body))
        return {"Entries": [ROW] if body["Key"] == "k" else None, "Index": 6}
    reg.register("KVS.Get", get)
    for method in ("Catalog.ServiceNodes", "Health.ServiceNodes", "KVS.List"):
        reg.register(method, get)
    return reg


def wire_to(reg: Registry):
    """remote(): a request sent to the server whose handlers `reg` holds."""
    async def over_the_wire(method, body):
        fn, _ = reg.methods[method]
        return await fn(body, None)
    return over_the_wire


def agent(dc: str, registry: Registry | None, server: bool) -> SimpleNamespace:
    """An agent whose rpc() serves its own datacenter from `registry` and sends any other
    datacenter's read to `remote` (set by the test)."""
    a = SimpleNamespace(config=SimpleNamespace(datacenter=dc),
                        consensus=object() if server else None, remote=None)

    async def rpc(method, body):
        if body.get("Datacenter") != dc or not server:
            return await a.remote(method, body)
        fn, _ = registry.methods[method]
        return await fn(body, None)
    a.rpc = rpc
    return a


def test_a_read_of_another_dc_is_rendered_by_the_server_that_answers_it():
    calls: list = []
    reg = kv_server(calls)
    dc2 = agent("dc2", reg, server=True)
    rendered.serve(reg, dc2)
    dc1 = agent("dc1", None, server=True)
    dc1.remote = wire_to(reg)

    async def main():
        reply, body = await rendered.read(dc1, "KVS.Get", {"Datacenter": "dc2", "Key": "k"},
                                          {"Pretty": False})
        assert calls[-1]["Render"] == {"Pretty": False}
        assert "Entries" not in reply and reply["Index"] == 6    # the rows stayed in dc2
        local_reply, local_body = await rendered.read(
            dc2, "KVS.Get", {"Datacenter": "dc2", "Key": "k"}, {"Pretty": False})
        assert "Render" not in calls[-1] and local_reply["Entries"] == [ROW]
        assert body == local_body == (b'[{"Key":"k","CreateIndex":5,"ModifyIndex":6,'
                                      b'"LockIndex":0,"Flags":0,"Value":"dg=="}]')
        # nothing matched: no body, the endpoint's 404
        reply, body = await rendered.read(dc1, "KVS.Get", {"Datacenter": "dc2", "Key": "x"},
                                          {"Pretty": True})
        assert body is None and reply["Entries"] is None
    run(main)


def test_a_server_that_ignores_render_gets_its_rows_rendered_here():
    calls: list = []
    reg = kv_server(calls)                  # no rendered.serve: Consul's server
    client = agent("dc1", None, server=False)
    client.remote = wire_to(reg)

    async def main():
        reply, body = await rendered.read(client, "KVS.Get", {"Datacenter": "dc1", "Key": "k"},
                                          {"Pretty": True})
        assert calls[-1]["Render"] == {"Pretty": True} and reply["Entries"] == [ROW]
        assert body.startswith(b'[\n    {\n        "Key": "k"')
    run(main)


def test_a_reply_the_leader_rendered_is_passed_on_as_it_is():
    """A follower sends a default-consistency read to its leader with `Render` in it: the
    leader renders, and the follower's handler passes that reply on."""
    reg = Registry()

    async def via_leader(body, ctx):
        return {"JSON": b"[1]", "Index": 7}
    for method in rendered.views():
        reg.register(method, via_leader)
    rendered.serve(reg, agent("dc2", reg, server=True))

    async def main():
        fn, is_async = reg.methods["Health.ServiceNodes"]
        assert is_async
        got = await fn({"Datacenter": "dc2", "ServiceName": "web", "Render": {}}, None)
        assert got == {"JSON": b"[1]", "Index": 7}
    run(main)

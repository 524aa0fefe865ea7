"""Service reads from shared rows and per-service indexes (Consul's serviceIndex
"service.<name>"): joined ServiceNodes / CheckServiceNodes are built once per service and
rebuilt after any write that touches it, always equal to a join computed from scratch; a
service's index (X-Consul-Index) moves only with writes to its instances, their checks or
their nodes, and only those wake a blocking read on it; the HTTP layer's encoded-body cache."""
from __future__ import annotations

import asyncio
import random

from agent.http import health_endpoints
from agent.http.catalog_endpoints import BodyCache, FragmentMemo, _service_node_json
from agent.http.server import encode
from agent.rpc import health as health_rpc
from agent.rpc import catalog as catalog_rpc
from agent.rpc.blocking import Notifier
from agent.rpc.registry import CallContext, Registry
from agent.state.catalog import (EXTINCTION_TABLE, clone, deregister_command, register_command,
                                 service_table)
from agent.state.store import Store
from tests.aio import run


class Writer:
    """A store fed with consecutive Raft indexes."""

    def __init__(self) -> None:
        self.store = Store()
        self.cat = self.store.catalog
        self.index = 0

    def reg(self, node: str, service: dict | None = None, checks: list | None = None,
            address: str = "10.0.0.1", meta: dict | None = None) -> int:
        self.index += 1
        req = {"Datacenter": "dc1", "Node": node, "Address": address, "NodeMeta": meta}
        if service is not None:
            req["Service"] = service
        if checks:
            req["Checks"] = checks
        assert self.store.apply(self.index, register_command(req)) is True
        return self.index

    def dereg(self, node: str, service_id: str = "", check_id: str = "") -> int:
        self.index += 1
        assert self.store.apply(self.index, deregister_command(
            {"Node": node, "ServiceID": service_id, "CheckID": check_id})) is True
        return self.index


# ---------------------------------------------------------------------- reference joins
# What the reads returned before they shared rows (a scan and a copy per call).

def _ref_rows(cat, service):
    for nkey in sorted(cat.services):
        for skey in sorted(cat.services[nkey]):
            s = cat.services[nkey][skey]
            if s["Service"].lower() == service.lower():
                yield nkey, s


def _ref_tags(tags, wanted):
    have = {t.lower() for t in (tags or [])}
    return all(w.lower() in have for w in wanted)


def _ref_meta(meta, filters):
    return not filters or all(k in (meta or {}) and meta[k] == v for k, v in filters.items())


def ref_service_nodes(cat, service, tags=None, meta=None):
    out = []
    for nkey, s in _ref_rows(cat, service):
        n = cat.nodes[nkey]
        if (tags and not _ref_tags(s["Tags"], tags)) or not _ref_meta(n["Meta"], meta):
            continue
        out.append(clone({
            "ID": n["ID"], "Node": n["Node"], "Address": n["Address"],
            "Datacenter": n["Datacenter"], "TaggedAddresses": n["TaggedAddresses"],
            "NodeMeta": n["Meta"], "ServiceKind": s["Kind"], "ServiceID": s["ID"],
            "ServiceName": s["Service"], "ServiceTags": s["Tags"],
            "ServiceAddress": s["Address"], "ServiceTaggedAddresses": s["TaggedAddresses"],
            "ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"], "ServicePort": s["Port"],
            "ServiceSocketPath": s["SocketPath"],
            "ServiceEnableTagOverride": s["EnableTagOverride"], "ServiceProxy": s["Proxy"],
            "ServiceConnect": s["Connect"],
            "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}))
    return out


def ref_check_service_nodes(cat, service, tags=None, meta=None):
    out = []
    for nkey, s in _ref_rows(cat, service):
        n = cat.nodes[nkey]
        if (tags and not _ref_tags(s["Tags"], tags)) or not _ref_meta(n["Meta"], meta):
            continue
        sid = s["ID"].lower()
        checks = [c for _, c in sorted(cat.checks.get(nkey, {}).items())
                  if not c["ServiceID"] or c["ServiceID"].lower() == sid]
        out.append(clone({"Node": n, "Service": s, "Checks": checks}))
    return out


def ref_list_services(cat):
    out: dict = {}
    for nkey in sorted(cat.services):
        for skey in sorted(cat.services[nkey]):
            s = cat.services[nkey][skey]
            tags = out.setdefault(s["Service"], [])
            tags.extend(t for t in s["Tags"] or () if t not in tags)
    return {k: sorted(v) for k, v in out.items()}


def test_cached_joins_always_equal_a_fresh_join():
    w = Writer()
    rng = random.Random(5)
    nodes = [f"n{i}" for i in range(6)]
    names = ["web", "Web", "db", "cache"]
    for step in range(400):
        op = rng.random()
        node = rng.choice(nodes)
        if op < 0.35:
            name = rng.choice(names)
            sid = rng.choice(["a", "b", name])
            w.reg(node, {"ID": sid, "Service": name, "Port": rng.randrange(3),
                         "Tags": rng.sample(["v1", "v2", "V1"], rng.randrange(3))},
                  address=rng.choice(["10.0.0.1", "10.0.0.2"]),
                  meta=rng.choice([None, {"env": "dev"}]))
        elif op < 0.65 and w.cat.nodes:
            node = rng.choice(sorted(w.cat.nodes))
            services = sorted(w.cat.services.get(node, {}))
            chk = {"Node": node, "CheckID": rng.choice(["c1", "c2", "serfHealth"]),
                   "Name": "chk", "Status": rng.choice(["passing", "critical", "warning"])}
            if services and rng.random() < 0.6:
                chk["ServiceID"] = rng.choice(services)
            w.reg(node, checks=[chk], address=w.cat.nodes[node]["Address"],
                  meta=w.cat.nodes[node]["Meta"])
        elif op < 0.75:
            w.reg(node, address=rng.choice(["10.0.0.1", "10.0.0.3"]))     # node only
        elif op < 0.85 and w.cat.services.get(node):
            w.dereg(node, service_id=rng.choice(sorted(w.cat.services[node])))
        elif op < 0.92 and w.cat.checks.get(node):
            w.dereg(node, check_id=rng.choice(sorted(w.cat.checks[node])))
        elif op >= 0.97:
            w.dereg(node)
        assert w.cat.list_services()[1] == ref_list_services(w.cat), step
        w.cat.list_services()[1].clear()         # the caller's copy
        for name in ("web", "db", "cache", "nope"):
            for tags, meta in ((None, None), (["v1"], None), (None, {"env": "dev"})):
                assert w.cat.service_nodes(name, tags, meta)[1] == \
                    ref_service_nodes(w.cat, name, tags, meta), (step, name)
                assert w.cat.check_service_nodes(name, tags, meta)[1] == \
                    ref_check_service_nodes(w.cat, name, tags, meta), (step, name)
        if step % 50 == 49:                      # a restored store joins the same
            other = Store()
            other.restore(w.store.snapshot())
            for name in ("web", "db", "cache"):
                assert other.catalog.check_service_nodes(name) == \
                    w.cat.check_service_nodes(name)


def test_reads_hand_out_fresh_lists():
    w = Writer()
    w.reg("n1", {"ID": "web", "Service": "web"})
    _, a = w.cat.check_service_nodes("web")
    a.clear()                                    # the caller's list (DNS shuffles it)
    assert len(w.cat.check_service_nodes("web")[1]) == 1
    _, b = w.cat.service_nodes("web")
    b.append(None)
    assert len(w.cat.service_nodes("web")[1]) == 1


def test_unchanged_instances_keep_their_entries():
    w = Writer()
    for i in range(4):
        w.reg(f"n{i}", {"ID": "web", "Service": "web"},
              checks=[{"CheckID": "up", "ServiceID": "web", "Status": "passing"}])
    _, sn1 = w.cat.service_nodes("web")
    _, csn1 = w.cat.check_service_nodes("web")
    w.reg("n2", checks=[{"CheckID": "up", "ServiceID": "web", "Status": "critical"}])
    _, sn2 = w.cat.service_nodes("web")
    _, csn2 = w.cat.check_service_nodes("web")
    assert [a is b for a, b in zip(sn1, sn2)] == [True] * 4        # rows unchanged
    assert [a is b for a, b in zip(csn1, csn2)] == [True, True, False, True]
    assert csn2[2]["Checks"][0]["Status"] == "critical"
    w.reg("n1", {"ID": "web", "Service": "web", "Port": 5})
    _, sn3 = w.cat.service_nodes("web")
    assert [a is b for a, b in zip(sn2, sn3)] == [True, False, True, True]
    assert sn3[1]["ServicePort"] == 5
    for _ in range(5):                  # writes with only one kind of read: no chain of views
        w.reg("n3", checks=[{"CheckID": "up", "ServiceID": "web", "Status": "warning"}])
        w.cat.check_service_nodes("web")
    view = w.cat._views["web"]
    assert view._prev is None or view._prev._prev is None


def _idx(w, name, checks=False):
    return w.cat.service_index(name, checks)


def test_a_service_index_moves_only_with_its_own_writes():
    w = Writer()
    i1 = w.reg("n1", {"ID": "a", "Service": "a"})
    w.reg("n2", {"ID": "b", "Service": "b"})
    assert _idx(w, "a") == i1 and w.cat.service_nodes("A")[0] == i1
    assert w.store.indexes[service_table("a")] == i1 and service_table("A") == "service.a"
    # B's service, its checks, a check on a node without A, a node without A: A stays put
    w.reg("n2", {"ID": "b", "Service": "b", "Port": 9})
    w.reg("n2", checks=[{"CheckID": "b-up", "ServiceID": "b", "Status": "passing"}],
          address="10.0.0.1")
    w.reg("n2", checks=[{"CheckID": "serfHealth", "Status": "passing"}], address="10.0.0.1")
    w.reg("n3", address="10.0.0.9")
    w.reg("n1", {"ID": "b2", "Service": "b"})             # B on A's node
    w.reg("n1", checks=[{"CheckID": "b2-up", "ServiceID": "b2"}])   # B's check on A's node
    w.dereg("n1", check_id="b2-up")
    w.dereg("n2")
    assert _idx(w, "a") == _idx(w, "a", checks=True) == i1
    assert w.cat.check_service_nodes("a")[0] == i1
    # A's node, A's node-level check, A's own check, A's service: each moves it
    for write in (lambda: w.reg("n1", address="10.0.0.2"),
                  lambda: w.reg("n1", checks=[{"CheckID": "serfHealth", "Status": "passing"}],
                                address="10.0.0.2"),
                  lambda: w.reg("n1", checks=[{"CheckID": "a-up", "ServiceID": "a"}],
                                address="10.0.0.2"),
                  lambda: w.dereg("n1", check_id="serfHealth"),
                  lambda: w.reg("n1", {"ID": "a", "Service": "a", "Port": 1},
                                address="10.0.0.2")):
        i = write()
        assert _idx(w, "a") == i and w.cat.check_service_nodes("a")[0] == i


def test_extinct_and_unknown_services():
    w = Writer()
    i1 = w.reg("n1", {"ID": "a", "Service": "a"})
    # never an extinction yet: an unknown service reports the catalog's index
    assert w.cat.service_nodes("zz")[0] == w.store.max_index("nodes", "services") == i1
    i2 = w.reg("n1", {"ID": "b", "Service": "b"})
    i3 = w.dereg("n1", service_id="a")
    assert service_table("a") not in w.store.indexes
    assert w.store.indexes[EXTINCTION_TABLE] == i3
    assert w.cat.service_nodes("a") == (i3, []) and w.cat.check_service_nodes("zz") == (i3, [])
    assert w.cat.service_nodes("b")[0] == i2
    i4 = w.reg("n1", {"ID": "a", "Service": "A"})         # back again
    assert w.cat.service_nodes("a")[0] == i4
    # a rename takes the instance from its old name: the old name goes extinct
    i5 = w.reg("n1", {"ID": "a", "Service": "c"})
    assert w.cat.service_nodes("a") == (i5, []) and w.cat.service_nodes("c")[0] == i5
    # deleting the node removes its services one by one
    i6 = w.dereg("n1")
    assert w.cat.service_nodes("b") == (i6, []) and w.store.indexes[EXTINCTION_TABLE] == i6
    assert not [t for t in w.store.indexes if t.startswith("service.")]


def test_restore_rebuilds_instances_and_drops_stale_indexes():
    w = Writer()
    w.reg("n1", {"ID": "a", "Service": "a"})
    snap = w.store.snapshot()
    w.reg("n1", {"ID": "b", "Service": "b"})
    assert w.cat.check_service_nodes("b")[1]
    w.store.restore(snap)
    assert w.cat.check_service_nodes("b")[1] == [] and service_table("b") not in w.store.indexes
    assert [e["Service"]["ID"] for e in w.cat.check_service_nodes("a")[1]] == ["a"]
    assert w.cat.service_nodes("a")[0] == 1


# ---------------------------------------------------------------------- blocking

class _Node:
    leader_id = "me"

    def last_contact_ms(self) -> int:
        return 0

    async def consistent_read(self) -> None:
        return None


class _Consensus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.node = _Node()
        self.notifier = Notifier()
        self.rng = random.Random(1)

    def not_leader(self) -> bool:
        return False


class _Config:
    datacenter = "dc1"
    node_name = "me"


class _Agent:
    def __init__(self, store: Store) -> None:
        self.consensus = _Consensus(store)
        self.config = _Config()
        self.federation = None


def test_a_blocking_read_wakes_only_for_its_own_service():
    w = Writer()
    w.reg("n1", {"ID": "a", "Service": "a"})
    w.reg("n2", {"ID": "b", "Service": "b"})
    w.store.drain_changed()
    agent = _Agent(w.store)
    registry = Registry()
    catalog_rpc.register(registry, agent)
    health_rpc.register(registry, agent)
    ctx = CallContext(("127.0.0.1", 1), False)
    calls = {"a": 0}
    real = w.cat.check_service_nodes

    def counting(service, *args):
        if service == "a":
            calls["a"] += 1
        return real(service, *args)
    w.cat.check_service_nodes = counting

    def apply(write):
        write()
        agent.consensus.notifier.notify(w.store.drain_changed())

    async def main():
        health, _ = registry.methods["Health.ServiceNodes"]
        cat_nodes, _ = registry.methods["Catalog.ServiceNodes"]
        first = await health({"ServiceName": "a"}, ctx)
        index = first["Index"]
        blocked = asyncio.ensure_future(
            health({"ServiceName": "a", "MinQueryIndex": index, "MaxQueryTime": 60}, ctx))
        blocked_cat = asyncio.ensure_future(
            cat_nodes({"ServiceName": "a", "MinQueryIndex": index, "MaxQueryTime": 60}, ctx))
        for _ in range(5):
            await asyncio.sleep(0)
        assert calls["a"] == 2
        apply(lambda: w.reg("n2", {"ID": "b", "Service": "b", "Port": 1}))
        apply(lambda: w.reg("n2", checks=[{"CheckID": "b", "ServiceID": "b"}]))
        apply(lambda: w.reg("n3", {"ID": "c", "Service": "c"}))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not blocked.done() and not blocked_cat.done()
        assert calls["a"] == 2                       # not woken: no re-read
        assert (await health({"ServiceName": "a"}, ctx))["Index"] == index
        apply(lambda: w.reg("n1", checks=[{"CheckID": "a-up", "ServiceID": "a"}]))
        reply = await asyncio.wait_for(blocked, 10)
        cat_reply = await asyncio.wait_for(blocked_cat, 10)
        assert reply["Index"] == cat_reply["Index"] == w.index > index
        assert [c["CheckID"] for c in reply["Nodes"][0]["Checks"]] == ["a-up"]
    run(main)


# ---------------------------------------------------------------------- encoded bodies

def test_body_cache_by_index_and_size():
    c = BodyCache(limit=10)
    c.put(("k",), 5, b"abcd")
    assert c.get(("k",), 5) == b"abcd" and c.get(("k",), 6) is None
    assert c.get(("k",), 5) is None and c.size == 0        # a stale body is dropped
    c.put(("x",), 1, b"1234")
    c.put(("y",), 1, b"1234")
    assert c.get(("x",), 1) == b"1234"                     # x is now the most recent
    c.put(("z",), 1, b"1234")                              # over 10 bytes: y goes
    assert c.get(("y",), 1) is None and c.get(("x",), 1) and c.get(("z",), 1)
    c.put(("big",), 1, b"x" * 11)                          # bigger than the limit: not kept
    assert c.get(("big",), 1) is None and c.size == 8


def test_fragments_encode_as_the_whole_list_and_follow_changes():
    w = Writer()
    for i in range(5):
        w.reg(f"n{i}", {"ID": "web", "Service": "web", "Tags": ["é", f"t{i}"],
                        "Meta": {"k": "v\u2028"}},
              checks=[{"CheckID": "up", "ServiceID": "web", "Status": "passing"}])
    memo = FragmentMemo(size=8)                  # small: generations turn over
    shape = health_endpoints._check_service_node_json
    for step in range(6):
        _, csn = w.cat.check_service_nodes("web")
        _, sn = w.cat.service_nodes("web")
        for entries, fn in ((csn, shape), (sn, _service_node_json),
                            (csn[::-1], shape), (csn[1:3], shape), ([], shape)):
            assert memo.encode(entries, fn) == encode([fn(e) for e in entries], False)
        w.reg(f"n{step % 5}", checks=[{"CheckID": "up", "ServiceID": "web",
                                       "Status": ("critical", "passing")[step % 2]}])

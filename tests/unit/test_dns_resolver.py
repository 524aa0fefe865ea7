"""The pure DNS resolver (agent/dns/resolver.py): every name form, the response codes, TTLs,
truncation, and bad input — driven with dnspython-built queries and a fake catalog."""
from __future__ import annotations

import random
import struct
from dataclasses import replace

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from agent.config.model import DNSSettings
from agent.dns.resolver import (Failed, Lookup, Recurse, Resolver, ResolverConfig,
                                acceptable_upstream_reply)

NOW = 1_700_000_000.0


# ----------------------------------------------------------------------- a fake catalog

def node(name: str, addr: str, dc: str = "dc1", meta: dict | None = None,
         tagged: dict | None = None) -> dict:
    return {"ID": "", "Node": name, "Address": addr, "Datacenter": dc, "TaggedAddresses": tagged,
            "Meta": meta or {}}


def inst(n: dict, svc: str, port: int = 80, addr: str = "", tags=(), checks=("passing",),
         weights=None, tagged=None) -> dict:
    return {"Node": n,
            "Service": {"ID": f"{svc}-{n['Node']}-{port}", "Service": svc, "Tags": list(tags),
                        "Address": addr, "Port": port, "TaggedAddresses": tagged,
                        "Weights": weights or {"Passing": 1, "Warning": 1}},
            "Checks": [{"CheckID": f"c{i}", "Status": s, "ServiceName": svc, "ServiceID": ""}
                       for i, s in enumerate(checks)]}


N1 = node("n1", "10.0.0.1", meta={"rack": "a", "rfc1035-raw": "plain", " k=`": "v`"})
N2 = node("n2", "10.0.0.2")
N6 = node("n6", "2001:db8::6")
SRV1 = node("s1", "10.0.1.1")


class Catalog:
    """Answers the resolver's Lookups like the servers would; records every call."""

    def __init__(self, services: dict | None = None, nodes: list | None = None,
                 errors: dict | None = None, last_contact: int = 0) -> None:
        self.services = services if services is not None else {
            "web": [inst(N1, "web", tags=["v1"]), inst(N2, "web", addr="10.1.1.1", tags=["v2"]),
                    inst(N2, "web", 81, checks=("critical",))],
            "consul": [inst(SRV1, "consul", 8300)],
        }
        self.nodes = nodes if nodes is not None else [N1, N2, N6, SRV1]
        self.errors = errors or {}
        self.last_contact = last_contact
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, method: str, body: dict):
        self.calls.append((method, body))
        dc = body.get("Datacenter")
        if dc in self.errors:
            return Failed(self.errors[dc])
        if method == "Health.ServiceNodes":
            nodes = [n for n in self.services.get(body["ServiceName"].lower(), [])
                     if not body.get("TagFilter") or all(
                         t.lower() in [x.lower() for x in n["Service"]["Tags"]]
                         for t in body["ServiceTags"])]
            return {"Nodes": nodes, "Index": 5, "LastContact": self.last_contact}
        if method == "Catalog.NodeServices":
            for n in self.nodes:
                if n["Node"].lower() == body["Node"].lower():
                    return {"NodeServices": {"Node": n, "Services": {}}, "Index": 5}
            return {"NodeServices": None, "Index": 5}
        if method == "Catalog.ListNodes":
            return {"Nodes": self.nodes, "Index": 5}
        if method == "Catalog.ServiceNodes":
            return {"ServiceNodes": [
                {"Node": i["Node"]["Node"], "Datacenter": "dc1", "ServiceName": i["Service"]["Service"],
                 "ServiceAddress": i["Service"]["Address"]}
                for svc in self.services.values() for i in svc
                if i["Service"]["Address"] == body["ServiceAddress"]], "Index": 5}
        raise AssertionError(f"unexpected lookup {method}")


def run(resolver: Resolver, wire: bytes, backend=None, network: str = "udp", seed: int = 1,
        upstream=None):
    """Drive the resolver's generator to its reply bytes (None: nothing sent)."""
    backend = backend or Catalog()
    gen = resolver.resolve(wire, network, NOW, random.Random(seed))
    try:
        step = next(gen)
        while True:
            if isinstance(step, Lookup):
                step = gen.send(backend(step.method, step.body))
            else:
                assert isinstance(step, Recurse)
                step = gen.send(upstream(step) if upstream else None)
    except StopIteration as stop:
        return stop.value


def ask(name: str, rdtype: str = "A", *, cfg: ResolverConfig | None = None, backend=None,
        network: str = "udp", seed: int = 1, edns: int | None = None,
        upstream=None) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns is not None,
                               payload=edns or 512)
    wire = run(Resolver(cfg or ResolverConfig()), q.to_wire(), backend, network, seed, upstream)
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.id == q.id and r.flags & dns.flags.QR
    return r


def answers(r: dns.message.Message, rdtype: str | None = None) -> list[str]:
    out = []
    for rrset in r.answer:
        if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype):
            out += [rd.to_text() for rd in rrset]
    return out


def additional(r: dns.message.Message) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rrset in r.additional:
        out.setdefault(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)}", []).extend(
            rd.to_text() for rd in rrset)
    return out


def rcode(r: dns.message.Message) -> str:
    return dns.rcode.to_text(r.rcode())


def soa_only(r: dns.message.Message) -> bool:
    return [rr.rdtype for rr in r.authority] == [dns.rdatatype.SOA]


def cfg(**dns_kw) -> ResolverConfig:
    return ResolverConfig(dns=replace(DNSSettings(), **dns_kw))


# ----------------------------------------------------------------------- services

def test_service_a_lists_passing_instances_only():
    r = ask("web.service.consul")
    assert rcode(r) == "NOERROR" and r.flags & dns.flags.AA
    assert not r.flags & dns.flags.RA                      # no recursors configured
    assert sorted(answers(r, "A")) == ["10.0.0.1", "10.1.1.1"]   # critical instance left out
    assert r.answer[0].name == dns.name.from_text("web.service.consul.")
    assert r.answer[0].ttl == 0                            # service_ttl default


def test_service_answers_are_shuffled():
    many = {"web": [inst(node(f"n{i}", f"10.0.0.{i}"), "web") for i in range(1, 9)]}
    orders = {tuple(answers(ask("web.service.consul", backend=Catalog(many), network="tcp",
                                seed=s))) for s in range(6)}
    assert len(orders) > 1
    assert all(sorted(o) == sorted(f"10.0.0.{i}" for i in range(1, 9)) for o in orders)


@pytest.mark.parametrize("name", ["WEB.Service.CONSUL", "web.SERVICE.dc1.Consul.",
                                  "web.service.DC1.dc.consul", "web.service.default.dc1.consul",
                                  "web.service.default.ns.dc1.dc.consul"])
def test_names_are_case_insensitive_and_dc_forms(name):
    cat = Catalog()
    r = ask(name, backend=cat)
    assert sorted(answers(r)) == ["10.0.0.1", "10.1.1.1"]
    assert cat.calls[0] == ("Health.ServiceNodes",
                            {"Datacenter": "dc1", "ServiceName": "web", "AllowStale": True})


def test_tag_lookup_filters_by_tag():
    cat = Catalog()
    r = ask("v2.web.service.consul", backend=cat)
    assert answers(r) == ["10.1.1.1"]
    assert cat.calls[0][1] == {"Datacenter": "dc1", "ServiceName": "web", "ServiceTags": ["v2"],
                               "TagFilter": True, "AllowStale": True}
    cat = Catalog({"web": [inst(N1, "web", tags=["a.b"])]})
    assert answers(ask("a.b.web.service.consul", backend=cat)) == ["10.0.0.1"]  # dotted tag


def test_rfc2782_srv_forms():
    cat = Catalog()
    r = ask("_web._tcp.service.consul", "SRV", backend=cat)
    assert "TagFilter" not in cat.calls[0][1]                # _tcp: no tag filter
    assert sorted(answers(r, "SRV")) == ["1 1 80 0a010101.addr.dc1.consul.",
                                         "1 1 80 n1.node.dc1.consul."]
    cat = Catalog()
    r = ask("_web._v1.dc1.consul", "SRV", backend=cat)        # "service" label left out
    assert cat.calls[0][1]["ServiceTags"] == ["v1"]
    assert answers(r, "SRV") == ["1 1 80 n1.node.dc1.consul."]
    cat = Catalog()
    ask("_web._udp.service.consul", "SRV", backend=cat)       # as Consul: udp is a tag
    assert cat.calls[0][1]["ServiceTags"] == ["udp"]


def test_srv_targets_and_additional_records():
    r = ask("web.service.consul", "SRV")
    extra = additional(r)
    assert extra["n1.node.dc1.consul. A"] == ["10.0.0.1"]
    assert extra["0a010101.addr.dc1.consul. A"] == ["10.1.1.1"]
    # node meta as TXT next to the node's address (enable_additional_node_meta_txt)
    assert sorted(extra["n1.node.dc1.consul. TXT"]) == ['"` k`=``=v``"', '"plain"', '"rack=a"']
    r = ask("web.service.consul", "SRV", cfg=cfg(enable_additional_node_meta_txt=False))
    assert "n1.node.dc1.consul. TXT" not in additional(r)


def test_srv_target_for_service_address_equal_to_node_and_host_name():
    cat = Catalog({"web": [inst(N1, "web", addr="10.0.0.1", port=90),
                           inst(N2, "web", addr="web.example.com", port=91)]})
    r = ask("web.service.consul", "SRV", backend=cat)
    assert sorted(answers(r, "SRV")) == ["1 1 90 n1.node.dc1.consul.",
                                         "1 1 91 web.example.com."]
    assert "web.example.com. A" not in additional(r)
    r = ask("web.service.consul", "A", backend=cat)
    assert answers(r, "A") == ["10.0.0.1"]                  # the CNAME only when nothing else
    cat = Catalog({"web": [inst(N2, "web", addr="web.example.com")]})
    r = ask("web.service.consul", "A", backend=cat)
    assert answers(r, "CNAME") == ["web.example.com."]


def test_srv_weights_follow_health():
    cat = Catalog({"web": [inst(N1, "web", checks=("passing",), weights={"Passing": 10, "Warning": 2}),
                           inst(N2, "web", checks=("warning",), weights={"Passing": 10, "Warning": 2})]})
    r = ask("web.service.consul", "SRV", backend=cat)
    assert sorted(answers(r, "SRV")) == ["1 10 80 n1.node.dc1.consul.", "1 2 80 n2.node.dc1.consul."]


def test_only_passing_excludes_warning():
    cat = Catalog({"web": [inst(N1, "web"), inst(N2, "web", checks=("passing", "warning"))]})
    assert sorted(answers(ask("web.service.consul", backend=cat))) == ["10.0.0.1", "10.0.0.2"]
    r = ask("web.service.consul", backend=cat, cfg=cfg(only_passing=True))
    assert answers(r) == ["10.0.0.1"]


def test_no_healthy_instance_is_nxdomain_with_soa():
    cat = Catalog({"web": [inst(N1, "web", checks=("critical",))]})
    for name in ("web.service.consul", "nope.service.consul"):
        r = ask(name, backend=cat)
        assert rcode(r) == "NXDOMAIN" and r.flags & dns.flags.AA and not r.answer
        assert soa_only(r)
        soa = r.authority[0][0]
        assert (str(soa.mname), str(soa.rname), soa.serial) == \
               ("ns.consul.", "hostmaster.consul.", int(NOW))
        assert (soa.refresh, soa.retry, soa.expire, soa.minimum) == (3600, 600, 86400, 0)


def test_existing_name_without_records_of_the_type_is_nodata():
    r = ask("web.service.consul", "MX")
    assert rcode(r) == "NOERROR" and not r.answer and soa_only(r)
    r = ask("n1.node.consul", "AAAA")                       # an IPv4-only node
    assert rcode(r) == "NOERROR" and not r.answer and soa_only(r)


def test_consul_service_lists_the_servers():
    r = ask("consul.service.consul")
    assert answers(r) == ["10.0.1.1"]


def test_a_record_limit():
    many = {"web": [inst(node(f"n{i}", f"10.0.0.{i}"), "web") for i in range(1, 9)]}
    r = ask("web.service.consul", backend=Catalog(many), cfg=cfg(a_record_limit=2),
            network="tcp")
    assert len(answers(r)) == 2


def test_duplicate_instance_addresses_are_answered_once():
    cat = Catalog({"web": [inst(N1, "web", 80), inst(N1, "web", 81)]})
    assert answers(ask("web.service.consul", backend=cat)) == ["10.0.0.1"]
    assert len(answers(ask("web.service.consul", "SRV", backend=cat), "SRV")) == 2


# ----------------------------------------------------------------------- nodes, addr, PTR

def test_node_lookups():
    r = ask("n1.node.consul")
    assert answers(r) == ["10.0.0.1"] and rcode(r) == "NOERROR"
    assert sorted(additional(r)["n1.node.consul. TXT"]) == ['"` k`=``=v``"', '"plain"', '"rack=a"']
    r = ask("N1.NODE.dc1.consul", "TXT")
    assert sorted(answers(r, "TXT")) == ['"` k`=``=v``"', '"plain"', '"rack=a"']
    r = ask("n1.node.consul", "ANY", network="tcp")
    assert answers(r, "A") == ["10.0.0.1"] and len(answers(r, "TXT")) == 3
    assert len(ask("n1.node.consul", "ANY").answer[0]) + len(ask(
        "n1.node.consul", "ANY").answer[1]) == 3               # UDP: udp_answer_limit
    r = ask("n6.node.consul", "AAAA")
    assert answers(r) == ["2001:db8::6"]
    assert not ask("n6.node.consul", "A").answer
    r = ask("nope.node.consul")
    assert rcode(r) == "NXDOMAIN" and soa_only(r)


def test_node_names_with_dots_and_host_name_addresses():
    cat = Catalog(nodes=[node("a.b", "10.9.9.9"), node("ext", "db.example.com")])
    assert answers(ask("a.b.node.consul", backend=cat)) == ["10.9.9.9"]
    r = ask("ext.node.consul", backend=cat)
    assert answers(r, "CNAME") == ["db.example.com."]


def test_node_lookup_asks_the_named_datacenter():
    cat = Catalog()
    ask("n1.node.dc2.consul", backend=cat)
    assert cat.calls == [("Catalog.NodeServices",
                          {"Datacenter": "dc2", "Node": "n1", "AllowStale": True})]


def test_addr_lookups():
    assert answers(ask("0a000001.addr.consul")) == ["10.0.0.1"]
    assert answers(ask("0a000001.addr.dc1.consul", "ANY")) == ["10.0.0.1"]
    r = ask("20010db8000000000000000000000006.addr.consul", "AAAA")
    assert answers(r) == ["2001:db8::6"]
    assert not ask("0a000001.addr.consul", "AAAA").answer
    for bad in ("zz000001.addr.consul", "0a0001.addr.consul", "x.0a000001.addr.consul"):
        assert rcode(ask(bad)) == "NXDOMAIN"


def test_ptr_names_nodes_then_services():
    r = ask("1.0.0.10.in-addr.arpa", "PTR")
    assert answers(r) == ["n1.node.dc1.consul."] and r.answer[0].ttl == 0
    r = ask("6.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR")
    assert answers(r) == ["n6.node.dc1.consul."]
    r = ask("1.1.1.10.in-addr.arpa", "PTR")                 # a service's own address
    assert answers(r) == ["web.service.dc1.consul."]
    r = ask("9.9.9.10.in-addr.arpa", "PTR")
    assert rcode(r) == "NXDOMAIN" and soa_only(r)
    assert rcode(ask("0.10.in-addr.arpa", "PTR")) == "NXDOMAIN"   # not a whole address
    r = ask("1.0.0.10.IN-ADDR.ARPA", "A")
    assert rcode(r) == "NOERROR" and not r.answer


# ----------------------------------------------------------------------- datacenters, errors

def test_datacenter_errors_map_to_rcodes():
    cat = Catalog(errors={"dc9": "No path to datacenter",
                          "dc8": "Remote DC has no server currently reachable",
                          "dc7": "No cluster leader"})
    r = ask("web.service.dc9.consul", backend=cat)
    assert rcode(r) == "NXDOMAIN" and soa_only(r)            # newest Consul: ErrNoDCPath
    assert rcode(ask("n1.node.dc9.consul", backend=cat)) == "NXDOMAIN"
    for dc in ("dc8", "dc7"):
        r = ask(f"web.service.{dc}.consul", backend=cat)
        assert rcode(r) == "SERVFAIL" and not r.answer and not r.authority
        assert not r.flags & dns.flags.AA


def test_lookups_name_the_datacenter_in_answers():
    cat = Catalog({"web": [inst(node("r1", "10.2.0.1", dc="dc2"), "web")]})
    r = ask("web.service.dc2.consul", "SRV", backend=cat)
    assert answers(r, "SRV") == ["1 1 80 r1.node.dc2.consul."]
    assert cat.calls[0][1]["Datacenter"] == "dc2"


def test_translate_wan_addrs_for_remote_datacenters_only():
    wan_node = node("r1", "10.2.0.1", dc="dc2", tagged={"wan": "198.51.100.1"})
    cat = Catalog({"web": [inst(wan_node, "web")]}, nodes=[wan_node])
    assert answers(ask("web.service.dc2.consul", backend=cat)) == ["10.2.0.1"]
    on = ResolverConfig(translate_wan_addrs=True)
    assert answers(ask("web.service.dc2.consul", backend=cat, cfg=on)) == ["198.51.100.1"]
    assert answers(ask("r1.node.dc2.consul", backend=cat, cfg=on)) == ["198.51.100.1"]
    r = ask("web.service.dc2.consul", "SRV", backend=cat, cfg=on)
    assert answers(r, "SRV") == ["1 1 80 c6336401.addr.dc2.consul."]   # not the node's own
    local = node("l1", "10.0.0.9", tagged={"wan": "198.51.100.9"})
    cat = Catalog({"web": [inst(local, "web")]})
    assert answers(ask("web.service.consul", backend=cat, cfg=on)) == ["10.0.0.9"]


def test_tagged_lan_addresses_answer_both_families():
    dual = node("d1", "10.0.0.7", tagged={"lan_ipv4": "10.0.0.7", "lan_ipv6": "2001:db8::7"})
    cat = Catalog(nodes=[dual])
    assert answers(ask("d1.node.consul", backend=cat)) == ["10.0.0.7"]
    assert answers(ask("d1.node.consul", "AAAA", backend=cat)) == ["2001:db8::7"]


def test_stale_reads_and_max_stale():
    cat = Catalog()
    ask("web.service.consul", backend=cat, cfg=cfg(allow_stale=False))
    assert cat.calls[0][1]["AllowStale"] is False
    cat = Catalog(last_contact=20_000)                       # ms
    ask("web.service.consul", backend=cat, cfg=cfg(max_stale=10.0))
    assert [c[1]["AllowStale"] for c in cat.calls] == [True, False]


def test_ttls():
    c = cfg(node_ttl=30.0, service_ttl=(("db*", 7.0), ("d*", 5.0), ("web", 9.0), ("*", 3.0)))
    cat = Catalog({"web": [inst(N1, "web")], "dbx": [inst(N1, "dbx")],
                   "other": [inst(N1, "other")]})
    assert ask("web.service.consul", backend=cat, cfg=c).answer[0].ttl == 9
    assert ask("dbx.service.consul", backend=cat, cfg=c).answer[0].ttl == 7   # longest prefix
    assert ask("other.service.consul", backend=cat, cfg=c).answer[0].ttl == 3
    assert ask("n1.node.consul", backend=cat, cfg=c).answer[0].ttl == 30


# ----------------------------------------------------------------------- domain, SOA, NS

def test_soa_and_ns_queries_name_up_to_three_servers():
    servers = {"consul": [inst(node(f"s{i}", f"10.0.1.{i}"), "consul", 8300) for i in range(1, 6)]}
    r = ask("consul", "NS", backend=Catalog(servers))
    ns = answers(r, "NS")
    assert len(ns) == 3 and all(n.endswith(".node.dc1.consul.") for n in ns)
    assert {k.split()[0] for k in additional(r)} == set(ns)
    r = ask("web.service.consul", "SOA", backend=Catalog(servers))
    assert rcode(r) == "NOERROR" and len(answers(r, "SOA")) == 1
    assert len([rd for rrset in r.authority for rd in rrset]) == 3


def test_alt_domain():
    c = ResolverConfig(domain="consul", alt_domain="test.internal")
    r = ask("web.service.test.internal", "SRV", cfg=c)
    assert "1 1 80 n1.node.dc1.test.internal." in answers(r, "SRV")
    r = ask("nope.node.test.internal", cfg=c)
    assert rcode(r) == "NXDOMAIN" and str(r.authority[0].name) == "test.internal."
    assert answers(ask("web.service.consul", cfg=c))          # the primary still works


def test_unknown_names_in_the_domain():
    for name in ("consul", "foo.consul", "web.service.a.b.c.consul", "web.service.x.peer.consul",
                 "web.service.ns1.ns.dc1.dc.consul", "q.query.consul", "web.connect.consul",
                 "service.consul", "node.consul"):
        r = ask(name)
        assert rcode(r) == "NXDOMAIN" and soa_only(r), name


def test_axfr_and_other_opcodes_are_not_implemented():
    assert rcode(ask("consul", "AXFR", network="tcp")) == "NOTIMP"
    q = dns.message.make_query("web.service.consul", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    r = dns.message.from_wire(run(Resolver(ResolverConfig()), q.to_wire()))
    assert rcode(r) == "NOTIMP" and r.opcode() == dns.opcode.NOTIFY


# ----------------------------------------------------------------------- outside the domain

def test_outside_the_domain_is_refused_without_recursors():
    r = ask("example.com")
    assert rcode(r) == "REFUSED" and not r.flags & dns.flags.AA and not r.flags & dns.flags.RA


def test_outside_the_domain_goes_to_the_recursors():
    seen = []

    def upstream(step: Recurse) -> bytes:
        seen.append(step)
        q = dns.message.from_wire(step.query)
        reply = dns.message.make_response(q)
        reply.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.1"))
        return reply.to_wire()

    c = ResolverConfig(recursors=2)
    r = ask("Example.COM", cfg=c, upstream=upstream)
    assert answers(r) == ["192.0.2.1"]
    assert seen[0].order == (0, 1) and seen[0].network == "udp"
    r = ask("9.9.9.10.in-addr.arpa", "PTR", cfg=c, upstream=upstream, network="tcp")
    assert answers(r) == ["192.0.2.1"] and seen[1].network == "tcp"   # unknown PTR recursed
    r = ask("example.com", cfg=c)                                       # every recursor failed
    assert rcode(r) == "SERVFAIL" and r.flags & dns.flags.RA
    assert ask("web.service.consul", cfg=c).flags & dns.flags.RA
    shuffled = replace(c, recursors=5, dns=replace(DNSSettings(), recursor_strategy="random"))
    orders = set()
    for s in range(5):
        ask("example.com", cfg=shuffled, upstream=upstream, seed=s)
        orders.add(seen[-1].order)
    assert len(orders) > 1 and all(sorted(o) == [0, 1, 2, 3, 4] for o in orders)


def test_acceptable_upstream_reply():
    q = dns.message.make_query("example.com", "A")
    ok = dns.message.make_response(q)
    assert acceptable_upstream_reply(q.id, ok.to_wire())
    ok.set_rcode(dns.rcode.NXDOMAIN)
    assert acceptable_upstream_reply(q.id, ok.to_wire())
    ok.set_rcode(dns.rcode.SERVFAIL)
    assert not acceptable_upstream_reply(q.id, ok.to_wire())
    ok.flags |= dns.flags.TC
    assert acceptable_upstream_reply(q.id, ok.to_wire())
    assert not acceptable_upstream_reply(q.id ^ 1, dns.message.make_response(q).to_wire())
    assert not acceptable_upstream_reply(q.id, q.to_wire())            # not a response
    assert not acceptable_upstream_reply(q.id, b"\x00")


# ----------------------------------------------------------------------- sizes, EDNS

MANY = {"web": [inst(node(f"node-with-a-long-name-{i:02d}", f"10.0.{i // 250}.{i % 250 + 1}"),
                     "web") for i in range(40)]}


def test_udp_answer_limit_without_edns():
    r = ask("web.service.consul", backend=Catalog(MANY))
    assert len(answers(r)) == 3 and not r.flags & dns.flags.TC      # Consul's default
    r = ask("web.service.consul", backend=Catalog(MANY), cfg=cfg(enable_truncate=True))
    assert len(answers(r)) == 3 and r.flags & dns.flags.TC
    r = ask("web.service.consul", backend=Catalog(MANY), cfg=cfg(udp_answer_limit=20))
    assert len(answers(r)) == 8                                      # maxUDPAnswerLimit
    r = ask("web.service.consul", "SRV", backend=Catalog(MANY))
    assert len(answers(r, "SRV")) == 3
    targets = {rd.split()[-1] for rd in answers(r, "SRV")}
    assert {k.split()[0] for k in additional(r)} == targets          # extras follow answers


def test_udp_reply_cut_to_512_bytes_sets_tc():
    c = cfg(udp_answer_limit=8)
    q = dns.message.make_query("web.service.consul", "SRV")
    wire = run(Resolver(c), q.to_wire(), Catalog(MANY))
    assert len(wire) <= 512
    r = dns.message.from_wire(wire)
    assert r.flags & dns.flags.TC and 0 < len(answers(r, "SRV")) < 8


def test_edns_raises_the_udp_size_and_is_echoed():
    r = ask("web.service.consul", "SRV", backend=Catalog(MANY), edns=4096)
    assert len(answers(r, "SRV")) == 40 and not r.flags & dns.flags.TC
    assert r.edns == 0 and r.payload == 4096
    r = ask("web.service.consul", "SRV", backend=Catalog(MANY), edns=1232)
    wire_len = len(r.to_wire())
    assert r.flags & dns.flags.TC and wire_len <= 1232 and len(answers(r, "SRV")) < 40


def test_tcp_answers_everything():
    r = ask("web.service.consul", "SRV", backend=Catalog(MANY), network="tcp")
    assert len(answers(r, "SRV")) == 40 and not r.flags & dns.flags.TC
    assert len(additional(r)) == 40                                  # each target's A record


def test_question_is_echoed_as_asked():
    q = dns.message.make_query("WeB.SeRvIcE.CoNsUl", "A")
    r = dns.message.from_wire(run(Resolver(ResolverConfig()), q.to_wire()))
    assert r.question[0].name.to_text() == "WeB.SeRvIcE.CoNsUl."
    assert r.flags & dns.flags.RD                                  # RD copied


# ----------------------------------------------------------------------- bad input

def test_short_and_response_messages_are_dropped():
    res = Resolver(ResolverConfig())
    assert run(res, b"") is None
    assert run(res, b"\x12\x34\x01") is None
    q = dns.message.make_query("web.service.consul", "A")
    reply = dns.message.make_response(q)
    assert run(res, reply.to_wire()) is None                      # never answer a response
    assert res.stats.malformed == 3


def test_garbage_gets_formerr_with_its_id():
    res = Resolver(ResolverConfig())
    wire = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x07garbage"
    r = dns.message.from_wire(run(res, wire))
    assert r.id == 0xBEEF and rcode(r) == "FORMERR" and r.flags & dns.flags.RD
    two = dns.message.make_query("a.consul", "A")
    two.question.append(dns.message.make_query("b.consul", "A").question[0])
    assert rcode(dns.message.from_wire(run(res, two.to_wire()))) == "FORMERR"
    none = struct.pack("!HHHHHH", 7, 0x0100, 0, 0, 0, 0)
    assert rcode(dns.message.from_wire(run(res, none))) == "FORMERR"


def test_fuzzed_queries_never_raise():
    """Every truncation, and seeded random byte flips and splices, of real queries: the
    resolver answers or drops, it never raises, and what it sends parses."""
    rng = random.Random(20261126)
    seeds = [dns.message.make_query(n, t, use_edns=e).to_wire()
             for n, t, e in (("web.service.consul", "SRV", True), ("n1.node.consul", "A", False),
                             ("1.0.0.10.in-addr.arpa", "PTR", False),
                             ("_web._tcp.service.dc1.consul", "SRV", True),
                             ("example.com", "A", False))]
    cases = [s[:i] for s in seeds for i in range(len(s))]
    for _ in range(3000):
        s = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            if not s:
                s += bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif op < 0.6:
                s[rng.randrange(len(s))] = rng.randrange(256)
            elif op < 0.8:
                s[rng.randrange(len(s)):] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 12)))
            else:
                i = rng.randrange(len(s))
                s[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        if len(s) > 2:
            s[2] &= 0x7F                                          # a query (QR clear)
        cases.append(bytes(s))
    cases += [bytes(rng.randrange(256) for _ in range(rng.randint(0, 600))) for _ in range(500)]
    res = Resolver(ResolverConfig(recursors=1))
    for wire in cases:
        out = run(res, wire, Catalog(), upstream=lambda step: None,
                  network=rng.choice(["udp", "tcp"]))
        if out is not None:
            assert dns.message.from_wire(out).flags & dns.flags.QR


def test_names_that_cannot_be_answered_are_skipped_not_fatal():
    long_node = node("x" * 70, "10.0.0.70")              # a label over 63 bytes
    cat = Catalog({"web": [inst(long_node, "web"), inst(N1, "web")]})
    r = ask("web.service.consul", "SRV", backend=cat)
    assert answers(r, "SRV") == ["1 1 80 n1.node.dc1.consul."]

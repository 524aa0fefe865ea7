"""Consul's DNS interface as a pure function of a query: bytes in, the reply's bytes out.

`Resolver.resolve(wire, network, now, rng)` is a generator. It yields the catalog reads it
needs as `Lookup(method, body)` steps (the driver answers each with `Agent.rpc`'s reply, or
`Failed(text)` when the RPC raised) and `Recurse` when the name belongs to the recursors
(answered with an upstream reply's bytes or None), and returns the reply's wire bytes, or
None when nothing should be sent. No sockets, clocks, logging or global randomness here:
`now` (seconds since the epoch: the SOA serial) and a seeded `random.Random` come in.

What is answered (Consul's agent/dns.go and agent/dns/router.go, newest behaviour first):

  <node>.node[.<dc>].<domain>                A/AAAA (CNAME for a host-name address); TXT from
                                             node meta (answer for TXT/ANY, else additional)
  [<tag>.]<service>.service[.<dc>].<domain>  A/AAAA per passing instance, shuffled; SRV with
  _<service>._<tag|tcp>[.service][.<dc>]...  target <node>.node.<dc>.<domain> (service without
                                             its own address) or <hex ip>.addr.<dc>.<domain>
                                             (service address), A/AAAA in the additional section
  <hex ip>.addr[.<dc>].<domain>              A/AAAA of the encoded address
  <reversed ip>.in-addr.arpa / .ip6.arpa     PTR: a node with that address, else a service
  any name in the domain, qtype SOA or NS    SOA / NS: up to 3 servers (the `consul` service)

`<dc>` may also be written `<dc>.dc`; `default.ns` / `default.ap` are accepted (there are no
namespaces or partitions). Instances with a critical check are left out (with `only_passing`,
any check that is not passing). Names outside the domain (and alt_domain) go to the
recursors if any are configured, else REFUSED.

Response codes: an unknown name in the domain, an unknown service or node, or a datacenter
the router has no path to ("No path to datacenter", as the newest Consul maps
ErrNoDCPath) -> NXDOMAIN with the SOA in the authority section. A known datacenter whose
servers are all unreachable ("Remote DC has no server currently reachable") and any other
failed lookup -> SERVFAIL: the name may exist, so resolvers must not cache a negative answer
for it. A name that exists without records of the asked type -> NOERROR with the SOA.
Malformed queries -> FORMERR (nothing when not even the 12-byte header is there, and never
an answer to a message that is itself a response); other opcodes -> NOTIMP; AXFR -> NOTIMP.

UDP replies fit in 512 bytes, or the EDNS0 size the client offers: without EDNS0 at most
min(8, udp_answer_limit) answers are kept (Consul); then answers are dropped from the end
until the reply fits and TC is set, so that clients (dig, stub resolvers) retry over TCP.
Isthmus choice: Consul sets TC only with `enable_truncate`; it does so here too for the
answer-limit cut, but a reply cut to fit the size always carries TC. TCP replies are cut to
fit 65535 bytes.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from random import Random
from typing import Any, Generator, Iterable

import dns.exception
import dns.flags
import dns.immutable
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset

from ..config.model import AgentConfig, DNSSettings

IN = dns.rdataclass.IN
A, AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY, dns.rdatatype.CNAME,
    dns.rdatatype.NS, dns.rdatatype.PTR, dns.rdatatype.SOA, dns.rdatatype.SRV,
    dns.rdatatype.TXT)
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = (
    dns.rcode.NOERROR, dns.rcode.FORMERR, dns.rcode.SERVFAIL, dns.rcode.NXDOMAIN,
    dns.rcode.NOTIMP, dns.rcode.REFUSED)

NO_PATH = "No path to datacenter"     # the router's error text (agent/router/core.py)
DEFAULT_UDP_SIZE = 512                # RFC 1035 §4.2.1
MAX_UDP_ANSWERS = 8                   # Consul's maxUDPAnswerLimit
MAX_UDP_SIZE = 65535 - 68             # Consul's maxUDPDatagramSize: IP + UDP headers
MAX_TCP_SIZE = 65535                  # the 2-byte length prefix
MAX_NAMESERVERS = 3                   # Consul's NS answer: at most three servers
HEADER = struct.Struct("!HHHHHH")     # id, flags, qd, an, ns, ar counts

_KINDS = frozenset({"service", "node", "addr", "query", "connect", "ingress", "virtual"})
_ACCEPT_V4, _ACCEPT_V6, _ACCEPT_NAME = 1, 2, 4
_DECODE_ERRORS = (dns.exception.DNSException, ValueError, UnicodeError, IndexError, KeyError,
                  struct.error)   # dnspython wraps most, not all, of what bad input raises
_BAD_NODE_NAME = frozenset("\\ \t\"'()@;$")


# ----------------------------------------------------------------------- steps and config

@dataclass(frozen=True, slots=True)
class Lookup:
    """An RPC the driver makes for the resolver: `await agent.rpc(method, body)`."""
    method: str
    body: dict


@dataclass(frozen=True, slots=True)
class Failed:
    """Sent back for a Lookup whose RPC raised: the error's text (IsthmusError messages)."""
    error: str


@dataclass(frozen=True, slots=True)
class Recurse:
    """Forward `query` (the client's bytes, unchanged) to the recursors in `order` (indexes
    into the configured list), over `network`; send back the first reply that
    `acceptable_upstream_reply` accepts, or None."""
    query: bytes
    network: str
    order: tuple[int, ...]


Step = Lookup | Recurse


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """What the resolver needs from the agent's configuration."""
    datacenter: str = "dc1"
    domain: str = "consul"
    alt_domain: str = ""
    recursors: int = 0                   # how many upstream recursors are configured
    translate_wan_addrs: bool = False
    dns: DNSSettings = field(default_factory=DNSSettings)

    @classmethod
    def from_agent(cls, cfg: AgentConfig) -> "ResolverConfig":
        return cls(datacenter=cfg.datacenter, domain=cfg.domain.lower().strip("."),
                   alt_domain=cfg.alt_domain.lower().strip("."), recursors=len(cfg.recursors),
                   translate_wan_addrs=cfg.translate_wan_addrs, dns=cfg.dns_config)


@dataclass
class Stats:
    """Counters the driver reports (and tests read)."""
    queries: int = 0
    malformed: int = 0
    by_rcode: dict[str, int] = field(default_factory=dict)
    truncated: int = 0


def acceptable_upstream_reply(query_id: int, wire: bytes) -> bool:
    """Consul's handleRecurse: an upstream reply counts if it answers our query with NOERROR
    or NXDOMAIN (or is truncated); anything else sends the query to the next recursor."""
    if len(wire) < HEADER.size:
        return False
    rid, flags = struct.unpack_from("!HH", wire)
    if rid != query_id or not flags & dns.flags.QR:
        return False
    return bool(flags & dns.flags.TC) or (flags & 0xF) in (NOERROR, NXDOMAIN)


# ----------------------------------------------------------------------- records

@dataclass(slots=True)
class _RR:
    name: dns.name.Name
    ttl: int
    rdata: Any


# Names, addresses and address records are immutable: the same node and service names and
# addresses come back query after query, so they are parsed once (bounded caches).
@lru_cache(maxsize=8192)
def _name(text: str) -> dns.name.Name | None:
    """An absolute name from text, or None when it cannot be one (a label over 63 bytes, an
    empty label, a name over 255 bytes): such a record is left out, never sent half-built."""
    try:
        return dns.name.from_text(text if text.endswith(".") else text + ".")
    except dns.exception.DNSException:
        return None


@lru_cache(maxsize=8192)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dns.immutable.immutable
class _A(dns.rdtypes.IN.A.A):
    """An A record that keeps its 4 wire bytes: address records are cached and sent again
    and again, and dnspython re-parses the address text on every write and every hash."""
    __slots__ = ["_wire"]

    def __init__(self, address: str) -> None:
        super().__init__(IN, A, address)
        self._wire = ipaddress.IPv4Address(address).packed

    def _to_wire(self, file, compress=None, origin=None, canonicalize=False) -> None:
        file.write(self._wire)

    def __hash__(self) -> int:
        return hash(self._wire)          # = Rdata.__hash__: the digestable form is the wire


@dns.immutable.immutable
class _AAAA(dns.rdtypes.IN.AAAA.AAAA):
    """An AAAA record that keeps its 16 wire bytes (see _A)."""
    __slots__ = ["_wire"]

    def __init__(self, address: str) -> None:
        super().__init__(IN, AAAA, address)
        self._wire = ipaddress.IPv6Address(address).packed

    def _to_wire(self, file, compress=None, origin=None, canonicalize=False) -> None:
        file.write(self._wire)

    def __hash__(self) -> int:
        return hash(self._wire)


@lru_cache(maxsize=8192)
def _addr_rdata(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    return _A(str(ip)) if ip.version == 4 else _AAAA(str(ip))


def _txt_escape(key: str) -> str:
    """RFC 1464 key escaping (Consul's encodeKVasRFC1464): ` and = are back-quoted, as are
    leading and trailing spaces."""
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    return stripped + "` " * (len(key) - len(stripped))


def _txt_rdatas(meta: dict | None) -> list[Any]:
    out = []
    for key, value in (meta or {}).items():
        text = str(value) if key.lower().startswith("rfc1035-") else \
            _txt_escape(str(key)) + "=" + str(value).replace("`", "``")
        data = text.encode("utf-8", "replace")
        chunks = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        out.append(dns.rdtypes.ANY.TXT.TXT(IN, TXT, chunks))
    return out


def _aggregated_status(service: dict, checks: list[dict]) -> str:
    """api.HealthChecks.AggregatedStatus over the node's checks and the instance's."""
    warning = critical = maintenance = False
    for c in checks:
        if c.get("ServiceName") not in ("", None, service.get("Service")):
            continue
        cid = c.get("CheckID") or ""
        if cid == "_node_maintenance" or cid.startswith("_service_maintenance:"):
            maintenance = True
            continue
        status = c.get("Status")
        if status == "passing":
            continue
        if status == "warning":
            warning = True
        elif status == "critical":
            critical = True
        else:
            return ""
    if maintenance:
        return "maintenance"
    if critical:
        return "critical"
    if warning:
        return "warning"
    return "passing"                      # every check passing, or none at all


def _weight(service: dict, checks: list[dict]) -> int:
    """Consul's findWeight: Weights.Passing, or Weights.Warning for an instance in warning."""
    w = service.get("Weights") or {}
    status = _aggregated_status(service, checks)
    if status == "warning":
        value = w.get("Warning", 1)
    elif status == "passing":
        value = w.get("Passing", 1)
    elif status in ("maintenance", "critical"):
        value = 0
    else:
        value = 1
    return max(0, min(0xFFFF, int(value or 0)))


# ----------------------------------------------------------------------- the resolver

@dataclass(slots=True)
class _Query:
    msg: dns.message.Message
    network: str
    qname: dns.name.Name
    qtype: int
    domain: str = ""            # the domain (or alt_domain) the name was asked in
    answer: list[_RR] = field(default_factory=list)
    extra: list[_RR] = field(default_factory=list)
    ns: list[_RR] = field(default_factory=list)


class Resolver:
    """Answers DNS queries for one agent's domain(s); see the module docstring."""

    def __init__(self, cfg: ResolverConfig) -> None:
        self.cfg = cfg
        self.stats = Stats()
        domains = [d for d in (cfg.domain, cfg.alt_domain) if d]
        # (labels, text) longest first: with consul and alt.consul, alt.consul wins
        self._domains = sorted(((tuple(d.split(".")), d) for d in domains),
                               key=lambda t: -len(t[0]))
        self._ra = cfg.recursors > 0

    # -- entry point ----------------------------------------------------------------------

    def resolve(self, wire: bytes, network: str, now: float,
                rng: Random) -> Generator[Step, Any, bytes | None]:
        """The reply to one query (see the module docstring for the protocol)."""
        self.stats.queries += 1
        if len(wire) < HEADER.size:
            self.stats.malformed += 1
            return None
        qid, flags = struct.unpack_from("!HH", wire)
        if flags & dns.flags.QR:
            self.stats.malformed += 1            # a response: never answer one (no loops)
            return None
        try:
            msg = dns.message.from_wire(wire)
        except _DECODE_ERRORS:
            self.stats.malformed += 1
            return self._header_only(qid, flags, FORMERR)
        if msg.opcode() != dns.opcode.QUERY:
            return self._header_only(qid, flags, NOTIMP)
        if len(msg.question) != 1:
            self.stats.malformed += 1
            return self._header_only(qid, flags, FORMERR)
        rrset = msg.question[0]
        q = _Query(msg, network, rrset.name, rrset.rdtype)
        labels = [lb.decode("ascii", "replace").lower() for lb in q.qname.labels[:-1]]

        for dlabels, text in self._domains:
            n = len(dlabels)
            if len(labels) >= n and tuple(labels[len(labels) - n:]) == dlabels:
                q.domain = text
                rcode = yield from self._in_domain(q, labels[:len(labels) - n], now, rng)
                return self._finish(q, rcode, now)
        if labels and labels[-1] == "arpa":
            q.domain = self.cfg.domain           # PTR answers always name the primary domain
            rcode = yield from self._ptr(q, labels)
            if rcode is None:                    # unknown address: the recursors' business
                if self._ra:
                    return (yield from self._recurse(q, wire, rng))
                rcode = NXDOMAIN
            return self._finish(q, rcode, now)
        if self._ra:
            return (yield from self._recurse(q, wire, rng))
        return self._finish(q, REFUSED, now)

    # -- dispatch within the domain ---------------------------------------------------------

    def _in_domain(self, q: _Query, labels: list[str], now: float,
                   rng: Random) -> Generator[Step, Any, int]:
        if q.qtype in (SOA, NS):
            ns, glue = yield from self._nameservers(q, rng)
            if q.qtype == SOA:
                q.answer.append(self._soa(q.domain, now))
                q.ns.extend(ns)
            else:
                q.answer.extend(ns)
            q.extra.extend(glue)
            return NOERROR
        if q.qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR):
            return NOTIMP
        kind, parts, suffixes = "", [], []
        for i in range(len(labels) - 1, -1, -1):
            if labels[i] in _KINDS:
                kind, parts, suffixes = labels[i], labels[:i], labels[i + 1:]
                break
            if q.qtype == SRV and labels[i].startswith("_"):
                # RFC 2782 names may leave out "service": _web._tcp.consul
                kind, parts, suffixes = "service", labels[:i + 1], labels[i + 1:]
                break
        if kind == "addr":
            return self._addr(q, parts)
        dc = self._datacenter(suffixes)
        if dc is None or not parts:
            return NXDOMAIN
        if kind == "service":
            if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
                service, tag = parts[0][1:], parts[1][1:]
                if tag == "tcp":                 # _web._tcp: no tag filter
                    tag = ""
            else:
                service, tag = parts[-1], ".".join(parts[:-1])   # tags may contain dots
            if not service:
                return NXDOMAIN
            return (yield from self._service(q, dc, service, tag, rng))
        if kind == "node":
            return (yield from self._node(q, dc, ".".join(parts)))
        # prepared queries, Connect, ingress and virtual IPs do not exist in Isthmus: no
        # such name (Consul answers an unknown prepared query with NXDOMAIN too)
        return NXDOMAIN

    def _datacenter(self, suffixes: list[str]) -> str | None:
        """The datacenter named after the query kind (parseLocality), or None if invalid."""
        if not suffixes:
            return self.cfg.datacenter
        if len(suffixes) == 1:
            return suffixes[0] or None
        if len(suffixes) not in (2, 4, 6):
            return None
        dc = ""
        pairs = list(zip(suffixes[0::2], suffixes[1::2]))
        for value, key in pairs:
            if key in ("dc", "cluster"):
                dc = value
            elif key in ("ns", "ap"):
                if value != "default":           # no namespaces or partitions here
                    return None
            elif len(pairs) == 1 and value == "default":
                dc = key                         # <namespace>.<datacenter>
            else:
                return None                      # peers, sameness groups: not supported
        return dc or self.cfg.datacenter

    # -- lookups ----------------------------------------------------------------------------

    def _read(self, method: str, body: dict) -> Generator[Step, Any, dict | Failed]:
        """One catalog read with Consul's stale rules: AllowStale from dns_config, and a
        consistent re-read when the answering server's LastContact exceeds max_stale."""
        cfg = self.cfg.dns
        body["AllowStale"] = cfg.allow_stale
        reply = yield Lookup(method, dict(body))
        if (cfg.allow_stale and isinstance(reply, dict)
                and (reply.get("LastContact") or 0) > cfg.max_stale * 1000):
            body["AllowStale"] = False
            reply = yield Lookup(method, dict(body))
        if not isinstance(reply, (dict, Failed)):
            return Failed(f"unexpected reply to {method}")
        return reply

    @staticmethod
    def _failed(result: Failed) -> int:
        return NXDOMAIN if result.error.startswith(NO_PATH) else SERVFAIL

    def _healthy(self, nodes: Iterable[dict]) -> list[dict]:
        """CheckServiceNodes.Filter(only_passing): drop instances with a critical check, or
        with any check not passing when only_passing is set."""
        only_passing = self.cfg.dns.only_passing
        out = []
        for n in nodes:
            statuses = [c.get("Status") for c in n.get("Checks") or ()]
            if "critical" in statuses or (only_passing and any(s != "passing" for s in statuses)):
                continue
            out.append(n)
        return out

    def _service_ttl(self, service: str) -> int:
        """dns_config.service_ttl: an exact name first, then the longest "prefix*" match."""
        best, best_len = 0.0, -1
        for key, ttl in self.cfg.dns.service_ttl:
            if key == service:
                return int(ttl)
            if key.endswith("*") and service.startswith(key[:-1]) and len(key) > best_len:
                best, best_len = ttl, len(key)
        return int(best)

    def _service(self, q: _Query, dc: str, service: str, tag: str,
                 rng: Random) -> Generator[Step, Any, int]:
        body: dict[str, Any] = {"Datacenter": dc, "ServiceName": service}
        if tag:
            body["ServiceTags"] = [tag]
            body["TagFilter"] = True
        reply = yield from self._read("Health.ServiceNodes", body)
        if isinstance(reply, Failed):
            return self._failed(reply)
        nodes = self._healthy(reply.get("Nodes") or ())
        if not nodes:
            return NXDOMAIN
        rng.shuffle(nodes)
        ttl = self._service_ttl(service)
        if q.qtype == SRV:
            self._srv_records(q, dc, nodes, ttl)
        else:
            self._service_addr_records(q, dc, nodes, ttl)
        return NOERROR

    def _node(self, q: _Query, dc: str, node: str) -> Generator[Step, Any, int]:
        reply = yield from self._read("Catalog.NodeServices", {"Datacenter": dc, "Node": node})
        if isinstance(reply, Failed):
            return self._failed(reply)
        ns = reply.get("NodeServices")
        if not ns or not isinstance(ns.get("Node"), dict):
            return NXDOMAIN
        n = ns["Node"]
        ttl = int(self.cfg.dns.node_ttl)
        if q.qtype in (A, AAAA, ANY):
            self._node_addr_records(q, q.qname, n, ttl, dc, q.answer)
        if q.qtype in (TXT, ANY):
            q.answer.extend(_RR(q.qname, ttl, rd) for rd in _txt_rdatas(n.get("Meta")))
        elif q.qtype in (A, AAAA) and self.cfg.dns.enable_additional_node_meta_txt:
            q.extra.extend(_RR(q.qname, ttl, rd) for rd in _txt_rdatas(n.get("Meta")))
        return NOERROR

    def _addr(self, q: _Query, parts: list[str]) -> int:
        """<hex ip>.addr[.<dc>].<domain>: the address encoded in the first label."""
        if len(parts) != 1 or len(parts[0]) not in (8, 32):
            return NXDOMAIN
        try:
            raw = bytes.fromhex(parts[0])
        except ValueError:
            return NXDOMAIN
        ip = ipaddress.ip_address(raw)
        want = A if ip.version == 4 else AAAA
        if q.qtype in (want, ANY):
            q.answer.append(_RR(q.qname, int(self.cfg.dns.node_ttl), _addr_rdata(ip)))
        return NOERROR

    def _ptr(self, q: _Query, labels: list[str]) -> Generator[Step, Any, int | None]:
        """Reverse lookups: a node with this address, else a service instance (Consul's
        handlePtr). None: no such address here (recursors may know it)."""
        try:
            ip = ipaddress.ip_address(dns.reversename.to_address(q.qname))
        except (dns.exception.DNSException, ValueError, UnicodeError):
            return None
        dc = self.cfg.datacenter
        target = None
        reply = yield from self._read("Catalog.ListNodes", {"Datacenter": dc})
        if isinstance(reply, dict):
            for n in reply.get("Nodes") or ():
                if _ip(n.get("Address") or "") == ip:
                    target = _name(f"{n['Node']}.node.{n.get('Datacenter') or dc}.{q.domain}")
                    break
        if target is None:
            reply = yield from self._read("Catalog.ServiceNodes",
                                          {"Datacenter": dc, "ServiceAddress": str(ip)})
            if isinstance(reply, dict):
                for s in reply.get("ServiceNodes") or ():
                    if _ip(s.get("ServiceAddress") or "") == ip:
                        target = _name(f"{s['ServiceName']}.service."
                                       f"{s.get('Datacenter') or dc}.{q.domain}")
                        break
        if target is None:
            return None
        if q.qtype in (PTR, ANY):
            # Consul gives PTR records TTL 0
            q.answer.append(_RR(q.qname, 0, dns.rdtypes.ANY.PTR.PTR(IN, PTR, target)))
        return NOERROR

    def _nameservers(self, q: _Query, rng: Random) -> Generator[Step, Any, tuple[list, list]]:
        """NS records for up to three servers of this datacenter, with their addresses."""
        dc = self.cfg.datacenter
        reply = yield from self._read("Health.ServiceNodes",
                                      {"Datacenter": dc, "ServiceName": "consul"})
        if isinstance(reply, Failed):
            return [], []
        nodes = self._healthy(reply.get("Nodes") or ())
        rng.shuffle(nodes)
        owner = _name(q.domain)
        ttl = int(self.cfg.dns.node_ttl)
        ns: list[_RR] = []
        glue: list[_RR] = []
        for n in nodes:
            node = n.get("Node") or {}
            name = node.get("Node") or ""
            if not name or any(not (ch.isalnum() or ch == "-") for ch in name):
                continue                          # Consul's InvalidNameRe: not a DNS label
            fqdn = _name(f"{name}.node.{node.get('Datacenter') or dc}.{q.domain}".lower())
            if fqdn is None or owner is None:
                continue
            ns.append(_RR(owner, ttl, dns.rdtypes.ANY.NS.NS(IN, NS, fqdn)))
            self._node_addr_records(q, fqdn, node, ttl, dc, glue, any_family=True,
                                    cname=False)
            if len(ns) >= MAX_NAMESERVERS:
                break
        return ns, glue

    # -- addresses --------------------------------------------------------------------------

    def _accept(self, qtype: int) -> int:
        if qtype == A:
            return _ACCEPT_V4 | _ACCEPT_NAME
        if qtype == AAAA:
            return _ACCEPT_V6 | _ACCEPT_NAME
        return _ACCEPT_V4 | _ACCEPT_V6 | _ACCEPT_NAME

    def _wan(self, dc: str) -> bool:
        return self.cfg.translate_wan_addrs and dc != self.cfg.datacenter

    def _translate(self, dc: str, address: str, tagged: dict | None, accept: int,
                   service: bool = False) -> str:
        """Consul's TranslateAddress / TranslateServiceAddress: the lan_ipv4/lan_ipv6 tagged
        address for the family asked, and for another datacenter with translate_wan_addrs
        the wan ones; else the address itself if its family (or being a name) is accepted."""
        tagged = tagged if isinstance(tagged, dict) else {}

        def get(key: str) -> str:
            v = tagged.get(key)
            if service:
                v = v.get("Address") if isinstance(v, dict) else None
            return v if isinstance(v, str) else ""

        default, v4, v6 = address, get("lan_ipv4"), get("lan_ipv6")
        if self._wan(dc):
            if "wan" in tagged:
                default = get("wan")
            v4, v6 = get("wan_ipv4"), get("wan_ipv6")
        if v4 and accept & _ACCEPT_V4:
            return v4
        if v6 and accept & _ACCEPT_V6:
            return v6
        if default:
            ip = _ip(default)
            if ip is None:
                return default if accept & _ACCEPT_NAME else ""
            return default if accept & (_ACCEPT_V4 if ip.version == 4 else _ACCEPT_V6) else ""
        return ""

    def _service_port(self, dc: str, service: dict) -> int:
        port = service.get("Port") or 0
        if self._wan(dc):
            wan = (service.get("TaggedAddresses") or {}).get("wan")
            if isinstance(wan, dict) and wan.get("Port"):
                port = wan["Port"]
        return int(port) & 0xFFFF

    def _addr_record(self, qtype: int, owner: dns.name.Name, address: str, ttl: int,
                     any_family: bool = False) -> _RR | None:
        """An A/AAAA record if `address` is an IP of a family the question accepts."""
        ip = _ip(address)
        if ip is None:
            return None
        if not any_family and qtype not in (ANY, SRV, NS, TXT, A if ip.version == 4 else AAAA):
            return None
        return _RR(owner, ttl, _addr_rdata(ip))

    def _node_addr_records(self, q: _Query, owner: dns.name.Name, node: dict, ttl: int,
                           dc: str, out: list[_RR], any_family: bool = False,
                           cname: bool = True) -> None:
        accept = self._accept(ANY if any_family else q.qtype)
        addr = self._translate(node.get("Datacenter") or dc, node.get("Address") or "",
                               node.get("TaggedAddresses"), accept)
        if not addr:
            return
        rr = self._addr_record(q.qtype, owner, addr, ttl, any_family)
        if rr is not None:
            out.append(rr)
        elif cname and _ip(addr) is None:
            target = _name(addr)
            if target is not None:
                out.append(_RR(owner, ttl, dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target)))

    def _instance_address(self, q: _Query, dc: str, n: dict, accept: int) -> tuple[str, bool]:
        """(address, is_node_address) of one instance as Consul's makeNodeServiceRecords
        picks it: the service address if set (a name equal to the question means the node),
        else the node's."""
        node, svc = n.get("Node") or {}, n.get("Service") or {}
        node_addr = self._translate(node.get("Datacenter") or dc, node.get("Address") or "",
                                    node.get("TaggedAddresses"), accept)
        svc_addr = self._translate(dc, svc.get("Address") or "", svc.get("TaggedAddresses"),
                                   accept, service=True)
        if svc_addr and not (_ip(svc_addr) is None and _name(svc_addr) == q.qname):
            # Isthmus choice: a service address equal to its node's names the node in SRV
            # targets (Consul's v1 server named it <hex>.addr, the newest the service)
            return svc_addr, svc_addr == (node.get("Address") or "")
        # a WAN-translated node address is not the node's own: Consul names it by address
        return node_addr, node_addr == (node.get("Address") or "")

    def _service_addr_records(self, q: _Query, dc: str, nodes: list[dict], ttl: int) -> None:
        accept = self._accept(q.qtype)
        seen: set[str] = set()
        cnames: list[_RR] = []
        limit = self.cfg.dns.a_record_limit
        cap = self._cap(q)
        if cap is not None and (not limit or cap < limit):
            limit = cap
        count = 0
        for n in nodes:
            addr, _ = self._instance_address(q, dc, n, accept)
            if not addr:
                continue
            rr = self._addr_record(q.qtype, q.qname, addr, ttl)
            if rr is None:
                if _ip(addr) is None and not cnames:
                    target = _name(addr)
                    if target is not None:
                        cnames.append(_RR(q.qname, ttl,
                                          dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target)))
                continue
            if addr in seen:                      # one node, same service on several ports
                continue
            seen.add(addr)
            q.answer.append(rr)
            count += 1
            if count == limit:
                break
        if not q.answer and cnames:               # a CNAME only when nothing else answers
            q.answer.extend(cnames)

    def _srv_records(self, q: _Query, dc: str, nodes: list[dict], ttl: int) -> None:
        accept = self._accept(ANY)
        seen: set[tuple[str, str, int]] = set()
        meta_txt = self.cfg.dns.enable_additional_node_meta_txt
        cap = self._cap(q)
        for n in nodes:
            if cap is not None and len(q.answer) >= cap:
                break
            node, svc = n.get("Node") or {}, n.get("Service") or {}
            node_name = node.get("Node") or ""
            addr, is_node = self._instance_address(q, dc, n, accept)
            port = self._service_port(dc, svc)
            key = (node_name.lower(), addr, port)
            if not addr or key in seen:
                continue
            seen.add(key)
            ip = _ip(addr)
            if ip is None:
                target = _name(addr)             # a host name: the client resolves it
            elif is_node:
                target = _name(f"{node_name}.node.{dc}.{q.domain}")
            else:
                packed = ip.packed.hex()
                target = _name(f"{packed}.addr.{dc}.{q.domain}")
            if target is None:
                continue
            rd = dns.rdtypes.IN.SRV.SRV(IN, SRV, 1, _weight(svc, n.get("Checks") or []),
                                        port, target)
            q.answer.append(_RR(q.qname, ttl, rd))
            if ip is not None:
                q.extra.append(_RR(target, ttl, _addr_rdata(ip)))
                if is_node and meta_txt:
                    q.extra.extend(_RR(target, ttl, rd) for rd in _txt_rdatas(node.get("Meta")))

    def _cap(self, q: _Query) -> int | None:
        """Answers worth building: a UDP reply without EDNS0 keeps at most the UDP answer
        limit (see _render); one more is built so that the cut is seen. None: no cap."""
        if q.network == "udp" and (q.msg.edns < 0 or q.msg.payload <= DEFAULT_UDP_SIZE):
            return min(MAX_UDP_ANSWERS, self.cfg.dns.udp_answer_limit) + 1
        return None

    # -- recursion --------------------------------------------------------------------------

    def _recurse(self, q: _Query, wire: bytes, rng: Random) -> Generator[Step, Any, bytes]:
        order = list(range(self.cfg.recursors))
        if self.cfg.dns.recursor_strategy == "random":
            rng.shuffle(order)
        reply = yield Recurse(wire, q.network, tuple(order))
        if isinstance(reply, (bytes, bytearray)):
            return bytes(reply)
        # every recursor failed: SERVFAIL, recursion available (Consul's handleRecurse)
        resp = self._response(q, SERVFAIL)
        return self._render(q, resp)

    # -- replies ----------------------------------------------------------------------------

    def _soa(self, domain: str, now: float) -> _RR:
        d = self.cfg.dns
        owner = _name(domain) or dns.name.root
        rd = dns.rdtypes.ANY.SOA.SOA(
            IN, SOA, dns.name.Name(("ns",)) + owner, dns.name.Name(("hostmaster",)) + owner,
            int(now) & 0xFFFFFFFF, d.soa_refresh, d.soa_retry, d.soa_expire, d.soa_min_ttl)
        # the SOA's own TTL follows min_ttl so negative answers are cached consistently
        return _RR(owner, d.soa_min_ttl, rd)

    @staticmethod
    def _header_only(qid: int, flags: int, rcode: int) -> bytes:
        """A reply with no sections, for a query that cannot be parsed (or is unsupported):
        its ID, opcode and RD echoed."""
        out = dns.flags.QR | (flags & (0x7800 | dns.flags.RD)) | rcode
        return HEADER.pack(qid, out, 0, 0, 0, 0)

    def _response(self, q: _Query, rcode: int) -> dns.message.Message:
        msg = q.msg
        resp = dns.message.make_response(msg, recursion_available=self._ra,
                                         our_payload=max(DEFAULT_UDP_SIZE, msg.payload)
                                         if msg.edns >= 0 else 8192)
        resp.set_rcode(rcode)
        if rcode != REFUSED and (rcode != SERVFAIL):
            resp.flags |= dns.flags.AA
        if rcode == REFUSED:
            resp.flags &= ~dns.flags.RA
        return resp

    def _finish(self, q: _Query, rcode: int, now: float) -> bytes:
        name = dns.rcode.to_text(rcode)
        self.stats.by_rcode[name] = self.stats.by_rcode.get(name, 0) + 1
        if rcode == NXDOMAIN or (rcode == NOERROR and not q.answer):
            if not (q.qtype in (SOA, NS) and rcode == NOERROR):
                q.ns = [self._soa(q.domain or self.cfg.domain, now)]
        if rcode not in (NOERROR,):
            q.answer, q.extra = [], []
            if rcode != NXDOMAIN:
                q.ns = []
        return self._render(q, self._response(q, rcode))

    def _render(self, q: _Query, resp: dns.message.Message) -> bytes:
        if q.network == "tcp":
            max_size, limit = MAX_TCP_SIZE, None
        else:
            max_size = DEFAULT_UDP_SIZE
            if q.msg.edns >= 0:
                max_size = min(MAX_UDP_SIZE, max(DEFAULT_UDP_SIZE, q.msg.payload))
            limit = min(MAX_UDP_ANSWERS, self.cfg.dns.udp_answer_limit) \
                if max_size == DEFAULT_UDP_SIZE else None
        answer, ns, extra = q.answer, q.ns, q.extra
        tc = False
        if limit is not None and len(answer) > limit:
            answer = answer[:limit]
            extra = _sync_extra(answer, extra)
            tc = self.cfg.dns.enable_truncate
        wire = _to_wire(resp, answer, ns, extra, tc)
        if _size(wire) > max_size and len(answer) > 1:
            # cut answers until the reply fits: drop the authority section first, then
            # binary search the longest prefix of the answers that fits
            ns = []
            lo, hi = 1, len(answer)             # answer[:lo] is sent even if it does not fit
            while lo < hi:
                mid = (lo + hi + 1) // 2
                cut = answer[:mid]
                if _size(_to_wire(resp, cut, ns, _sync_extra(cut, extra), True)) <= max_size:
                    lo = mid
                else:
                    hi = mid - 1
            answer = answer[:lo]
            extra = _sync_extra(answer, extra)
            wire = _to_wire(resp, answer, ns, extra, q.network != "tcp")
            self.stats.truncated += 1
        elif tc:
            self.stats.truncated += 1
        if wire is None:                          # not even one answer fits in 64 KiB
            return self._header_only(q.msg.id, q.msg.flags, SERVFAIL)
        return wire


def _size(wire: bytes | None) -> int:
    return MAX_TCP_SIZE + 1 if wire is None else len(wire)


def _sync_extra(answer: list[_RR], extra: list[_RR]) -> list[_RR]:
    """The additional records still needed by `answer` (Consul's syncExtra): those for its
    SRV targets (and its own names: node meta TXT), following CNAMEs."""
    wanted = set()
    for rr in answer:
        wanted.add(rr.name)
        target = getattr(rr.rdata, "target", None)
        if target is not None:
            wanted.add(target)
    out = []
    for rr in extra:
        if rr.name in wanted:
            out.append(rr)
            target = getattr(rr.rdata, "target", None)
            if target is not None:
                wanted.add(target)
    return out


def _to_wire(resp: dns.message.Message, answer: list[_RR], ns: list[_RR], extra: list[_RR],
             tc: bool) -> bytes | None:
    """The reply with these sections, or None if it would not fit in a DNS message."""
    for section, rrs in ((resp.answer, answer), (resp.authority, ns),
                         (resp.additional, extra)):
        section.clear()
        index: dict[tuple, Any] = {}
        for rr in rrs:
            key = (rr.name, rr.rdata.rdtype)
            rrset = index.get(key)
            if rrset is None:
                rrset = index[key] = dns.rrset.RRset(rr.name, IN, rr.rdata.rdtype)
                section.append(rrset)
            rrset.add(rr.rdata, rr.ttl)
    if tc:
        resp.flags |= dns.flags.TC
    else:
        resp.flags &= ~dns.flags.TC
    resp.index = {}                              # sections were rebuilt by hand
    try:
        # max_size: dnspython would otherwise cap a reply at the client's EDNS size
        # want_shuffle=False: dnspython would reorder each RRset with the global random
        # module; the order is ours (shuffled with the caller's seeded rng)
        return resp.to_wire(max_size=MAX_TCP_SIZE, want_shuffle=False)
    except dns.exception.TooBig:
        return None

"""The DNS interface of real agents, asked with dnspython and with `dig` (when installed):
a -dev server, a client agent (lookups through its server), two WAN-joined datacenters
(lookups forwarded to the other), and garbage on UDP and TCP that must not stop the agent."""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from .procs import AgentProc, isthmus, wait_until

pytestmark = pytest.mark.integration
DIG = shutil.which("dig")
needs_dig = pytest.mark.skipif(DIG is None, reason="dig is not installed (apt-get install dnsutils)")


def query(agent: AgentProc, name: str, rdtype: str = "A", tcp: bool = False,
          edns: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns or None)
    ask = dns.query.tcp if tcp else dns.query.udp
    return ask(q, agent.host, port=agent.dns_port, timeout=10)


def addrs(r: dns.message.Message, rdtype: str = "A") -> list[str]:
    t = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in r.answer if rrset.rdtype == t for rd in rrset)


def rcode(r: dns.message.Message) -> str:
    return dns.rcode.to_text(r.rcode())


def dig(agent: AgentProc, *args: str) -> str:
    r = subprocess.run([DIG, f"@{agent.host}", "-p", str(agent.dns_port), "+time=5",
                        "+tries=1", *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def dig_answers(out: str) -> list[list[str]]:
    """The ANSWER SECTION of dig's output, each record split into its fields."""
    lines = out.split(";; ANSWER SECTION:\n", 1)[1].split("\n\n", 1)[0].splitlines() \
        if ";; ANSWER SECTION:" in out else []
    return [line.split() for line in lines]


def wait(pred, within: float, what: str) -> float:
    """Seconds until `pred()` holds (DNS errors count as "not yet")."""
    t0 = time.monotonic()
    wait_until(pred, within, what, ignore=(OSError, dns.exception.DNSException, AssertionError))
    return time.monotonic() - t0


def register(agent: AgentProc, body: dict) -> None:
    status, text, _ = agent.get("/v1/catalog/register", "PUT", json.dumps(body).encode())
    assert (status, text.strip()) == (200, "true"), text


@pytest.fixture(scope="module")
def dev():
    a = AgentProc("-dev", "-node", "dnsdev")
    try:
        a.wait_ready()
        took = wait(lambda: addrs(query(a, "consul.service.consul")) == ["127.0.0.1"], 30,
                    "the server's own consul service in DNS")
        print(f"consul.service.consul answered {took:.2f}s after the HTTP API")
        register(a, {"Node": "web1", "Address": "10.1.0.1", "NodeMeta": {"rack": "r1"},
                     "Service": {"Service": "web", "Tags": ["v1"], "Port": 8080},
                     "Check": {"Name": "ok", "ServiceID": "web", "Status": "passing"}})
        register(a, {"Node": "web2", "Address": "10.1.0.2",
                     "Service": {"Service": "web", "Tags": ["v2"], "Port": 8081},
                     "Check": {"Name": "down", "ServiceID": "web", "Status": "critical"}})
        register(a, {"Node": "web3", "Address": "10.1.0.3",
                     "Service": {"Service": "web", "Tags": ["v2"], "Port": 8082,
                                 "Address": "10.9.0.3"},
                     "Check": {"Name": "meh", "ServiceID": "web", "Status": "warning"}})
        for i in range(30):
            register(a, {"Node": f"bulk-node-with-a-longish-name-{i:02d}",
                         "Address": f"10.2.0.{i + 1}", "Service": {"Service": "bulk", "Port": 9000}})
        yield a
    finally:
        a.kill()


def test_service_node_and_srv_lookups(dev):
    r = query(dev, "web.service.consul")
    assert rcode(r) == "NOERROR" and r.flags & dns.flags.AA
    assert addrs(r) == ["10.1.0.1", "10.9.0.3"]          # critical web2 left out
    assert addrs(query(dev, "WEB.service.DC1.consul")) == ["10.1.0.1", "10.9.0.3"]
    assert addrs(query(dev, "v2.web.service.consul")) == ["10.9.0.3"]
    r = query(dev, "_web._tcp.service.consul", "SRV")
    assert addrs(r, "SRV") == ["1 1 8080 web1.node.dc1.consul.", "1 1 8082 0a090003.addr.dc1.consul."]
    extra = {(str(rr.name), rd.to_text()) for rr in r.additional for rd in rr}
    assert ("web1.node.dc1.consul.", "10.1.0.1") in extra
    assert ("0a090003.addr.dc1.consul.", "10.9.0.3") in extra
    assert ("web1.node.dc1.consul.", '"rack=r1"') in extra      # node meta as TXT
    assert addrs(query(dev, "0a090003.addr.dc1.consul")) == ["10.9.0.3"]   # the target resolves
    assert addrs(query(dev, "web1.node.consul")) == ["10.1.0.1"]
    assert addrs(query(dev, "web1.node.consul", "TXT"), "TXT") == ['"rack=r1"']
    assert addrs(query(dev, "dnsdev.node.dc1.consul")) == ["127.0.0.1"]
    r = query(dev, "1.0.1.10.in-addr.arpa", "PTR")
    assert addrs(r, "PTR") == ["web1.node.dc1.consul."]


def test_negative_answers(dev):
    for name in ("nope.service.consul", "nope.node.consul", "web.service.nowhere.consul",
                 "foo.consul"):
        r = query(dev, name)
        assert rcode(r) == "NXDOMAIN", name
        assert [rr.rdtype for rr in r.authority] == [dns.rdatatype.SOA], name
    r = query(dev, "web.service.consul", "MX")
    assert rcode(r) == "NOERROR" and not r.answer and r.authority      # NODATA
    r = query(dev, "example.com")
    assert rcode(r) == "REFUSED" and not r.flags & dns.flags.RA
    r = query(dev, "consul", "NS")
    assert addrs(r, "NS") == ["dnsdev.node.dc1.consul."]


def test_udp_truncation_and_tcp(dev):
    r = query(dev, "bulk.service.consul")
    assert len(addrs(r)) == 3                              # udp_answer_limit without EDNS
    r = query(dev, "bulk.service.consul", "SRV", edns=True)     # dnspython offers 1232 bytes
    assert r.flags & dns.flags.TC and 3 < len(addrs(r, "SRV")) < 30
    assert len(r.to_wire()) <= 1232
    r = query(dev, "bulk.service.consul", "SRV", tcp=True)
    assert len(addrs(r, "SRV")) == 30 and not r.flags & dns.flags.TC


def test_tcp_pipelining_on_one_connection(dev):
    names = ["web.service.consul", "web1.node.consul", "nope.service.consul"] * 5
    qs = [dns.message.make_query(n, "A", id=i + 1) for i, n in enumerate(names)]
    with socket.create_connection((dev.host, dev.dns_port), timeout=10) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in qs)))
        got = {}
        buf = b""
        while len(got) < len(qs):
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                r = dns.message.from_wire(buf[2:2 + n])
                buf = buf[2 + n:]
                got[r.id] = r
    for q in qs:
        r = got[q.id]
        assert r.question[0].name == q.question[0].name


def test_garbage_does_not_stop_the_agent(dev):
    rng = random.Random(6)
    valid = dns.message.make_query("web.service.consul", "A").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        for i in range(300):
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(0, 700)))
            if i % 3 == 0 and len(junk) > 12:
                junk = bytes(valid[:12]) + junk[12:]     # a real header, garbage after it
            u.sendto(junk, (dev.host, dev.dns_port))
        u.sendto(struct.pack("!HHHHHH", 0xABCD, 0x0100, 1, 0, 0, 0) + b"\xff\xff",
                 (dev.host, dev.dns_port))
        while True:                                      # FORMERR for that one, with its ID
            r = dns.message.from_wire(u.recv(65535))
            if r.id == 0xABCD:
                assert rcode(r) == "FORMERR"
                break
    for payload in (b"\x00", b"\xff\xff" + b"x" * 100, b"\x00\x05hello\x00\x00",
                    b"\x00\x0c" + bytes(12) + b"\x00\x02\xff",
                    bytes(rng.randrange(256) for _ in range(5000))):
        with socket.create_connection((dev.host, dev.dns_port), timeout=5) as s:
            s.sendall(payload)
    # a connection that sends half a frame and goes away, and one that says nothing
    s1 = socket.create_connection((dev.host, dev.dns_port), timeout=5)
    s1.sendall(b"\x00\x40abc")
    s2 = socket.create_connection((dev.host, dev.dns_port), timeout=5)
    s1.close()
    assert dev.proc.poll() is None
    assert addrs(query(dev, "web.service.consul")) == ["10.1.0.1", "10.9.0.3"]
    assert addrs(query(dev, "web.service.consul", tcp=True)) == ["10.1.0.1", "10.9.0.3"]
    s2.close()
    assert "Traceback" not in dev.output, dev.output[-3000:]


@needs_dig
def test_dig(dev):
    out = dig(dev, "consul.service.consul")
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out, out
    assert dig_answers(out) == [["consul.service.consul.", "0", "IN", "A", "127.0.0.1"]], out
    assert sorted(dig(dev, "+short", "web.service.consul").split()) == ["10.1.0.1", "10.9.0.3"]
    out = dig(dev, "+short", "_web._tcp.service.consul", "SRV")
    assert "1 1 8080 web1.node.dc1.consul." in out, out
    assert dig(dev, "+short", "-x", "10.1.0.1").strip() == "web1.node.dc1.consul."
    assert "status: NXDOMAIN" in dig(dev, "nope.service.consul")
    assert "status: REFUSED" in dig(dev, "example.com")
    out = dig(dev, "+tcp", "+short", "bulk.service.consul")
    assert len(out.split()) == 30
    # without EDNS the UDP reply holds three answers (Consul's udp_answer_limit)
    assert len(dig(dev, "+noedns", "+short", "bulk.service.consul").split()) == 3
    # an SRV reply too big for the offered 600 bytes comes back with TC: dig retries over
    # TCP by itself and gets every record
    out = dig(dev, "+bufsize=600", "bulk.service.consul", "SRV")
    assert "Truncated, retrying in TCP mode" in out, out
    assert len(dig_answers(out)) == 30, out


def test_client_agent_answers_through_its_server(dev, tmp_path):
    c = AgentProc("-node", "dnsclient", "-bind", "127.0.0.1", "-data-dir", str(tmp_path / "c"),
                  "-retry-join", f"127.0.0.1:{dev.serf_lan_port}", "-retry-interval", "1s")
    try:
        c.wait_ready()
        took = wait(lambda: addrs(query(c, "web.service.consul")) == ["10.1.0.1", "10.9.0.3"],
                    30, "web through the client agent")
        print(f"client agent answered {took:.2f}s after start")
        assert addrs(query(c, "dnsdev.node.consul")) == ["127.0.0.1"]
        assert rcode(query(c, "nope.service.consul")) == "NXDOMAIN"
        wait(lambda: addrs(query(c, "dnsclient.node.consul")) == ["127.0.0.1"], 30,
             "the client's own node (registered by anti-entropy)")
    finally:
        c.kill()


def test_dns_port_minus_one_disables_dns(tmp_path):
    a = AgentProc("-dev", "-node", "nodns", "-dns-port", "-1")
    try:
        a.wait_ready()
        assert "DNS listening" not in a.output and "dns:" not in a.output
    finally:
        a.kill()


def test_dns_port_in_use_stops_the_start_with_a_clear_error(tmp_path):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as taken:
            taken.bind(("127.0.0.1", 0))
            if kind == socket.SOCK_STREAM:
                taken.listen()
            port = taken.getsockname()[1]
            a = AgentProc("-dev", "-node", "busy", "-dns-port", str(port))
            try:
                assert a.wait_exit(60) == 1
            finally:
                a.kill()
            proto = "udp" if kind == socket.SOCK_DGRAM else "tcp"
            assert (f"Error starting agent: Failed to start DNS server 127.0.0.1:{port} ({proto}):"
                    " bind: address already in use") in a.output, a.output


@pytest.mark.slow
def test_idle_tcp_connections_are_closed(dev):
    with socket.create_connection((dev.host, dev.dns_port), timeout=60) as s:
        t0 = time.monotonic()
        assert s.recv(1) == b""                          # closed by the agent
        took = time.monotonic() - t0
    print(f"idle TCP connection closed after {took:.1f}s")


def test_listen_address_is_logged(dev):
    assert f"dns: DNS listening on 127.0.0.1:{dev.dns_port} (udp, tcp)" in dev.output


class Upstream:
    """A stand-in upstream DNS server on one port, UDP and TCP: answers 192.0.2.1 over UDP
    and 192.0.2.2 over TCP; names starting "nx" get NXDOMAIN, "fail" SERVFAIL."""

    def __init__(self) -> None:
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket()
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen()
        self.seen: list[str] = []
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    def answer(self, wire: bytes, over: str) -> bytes:
        q = dns.message.from_wire(wire)
        name = q.question[0].name
        self.seen.append(f"{over} {name}")
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        if str(name).startswith("nx"):
            r.set_rcode(dns.rcode.NXDOMAIN)
        elif str(name).startswith("fail"):
            r.set_rcode(dns.rcode.SERVFAIL)
        elif q.question[0].rdtype == dns.rdatatype.PTR:
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "PTR", "host.example.com."))
        else:
            ip = "192.0.2.1" if over == "udp" else "192.0.2.2"
            r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", ip))
        return r.to_wire()

    def _serve_udp(self) -> None:
        while True:
            try:
                data, addr = self.udp.recvfrom(65535)
                self.udp.sendto(self.answer(data, "udp"), addr)
            except OSError:
                return

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    n = struct.unpack("!H", conn.recv(2))[0]
                    data = b""
                    while len(data) < n:
                        data += conn.recv(n - len(data))
                    reply = self.answer(data, "tcp")
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def test_recursors(tmp_path):
    up = Upstream()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # bound, never answers
    dead.bind(("127.0.0.1", 0))
    cfg = tmp_path / "dns.json"
    cfg.write_text(json.dumps({"dns_config": {"recursor_timeout": "300ms"}}))
    a = AgentProc("-dev", "-node", "rec", "-config-file", str(cfg),
                  "-recursor", f"127.0.0.1:{dead.getsockname()[1]}",
                  "-recursor", f"127.0.0.1:{up.port}")
    try:
        a.wait_ready()
        r = query(a, "Example.COM")                 # the first recursor times out: the next
        assert addrs(r) == ["192.0.2.1"] and rcode(r) == "NOERROR"
        assert r.flags & dns.flags.RA
        assert addrs(query(a, "example.com", tcp=True)) == ["192.0.2.2"]   # same transport
        assert rcode(query(a, "nx.example.com")) == "NXDOMAIN"               # passed through
        r = query(a, "fail.example.com")            # upstream SERVFAIL: nobody answered well
        assert rcode(r) == "SERVFAIL" and r.flags & dns.flags.RA and not r.answer
        r = query(a, "9.9.9.10.in-addr.arpa", "PTR")
        assert addrs(r, "PTR") == ["host.example.com."]                      # unknown to us
        r = query(a, "consul.service.consul")       # our own names stay ours
        assert addrs(r) == ["127.0.0.1"] and r.flags & dns.flags.RA
        assert not any("consul" in s for s in up.seen), up.seen
    finally:
        a.kill()
        up.close()
        dead.close()


@pytest.mark.slow
def test_lookups_in_another_datacenter(tmp_path):
    """Two WAN-joined datacenters: dc1's DNS answers dc2's names through the router; a
    datacenter with no path is NXDOMAIN; dc2 gone entirely is SERVFAIL."""
    def server(name: str, host: str, dc: str) -> AgentProc:
        p = AgentProc("-server", "-bootstrap-expect", "1", "-node", name, "-datacenter", dc,
                      "-bind", host, "-client", host, "-data-dir", os.path.join(tmp_path, name),
                      host=host)
        p.wait_ready(60)
        return p

    a = b = None
    try:
        a = server("a1", "127.0.0.1", "dc1")
        b = server("b1", "127.0.0.2", "dc2")
        for p, ip in ((a, "127.0.0.1"), (b, "127.0.0.2")):
            wait(lambda p=p, ip=ip: addrs(query(p, "consul.service.consul")) == [ip], 60,
                 f"{p.host} serving its own DNS")
        r = isthmus("join", "-http-addr", a.http, "-wan", f"127.0.0.2:{b.serf_wan_port}")
        assert r.returncode == 0, r.stdout + r.stderr
        took = wait(lambda: addrs(query(a, "consul.service.dc2.consul")) == ["127.0.0.2"], 60,
                    "dc2's servers through dc1's DNS")
        print(f"consul.service.dc2.consul answered by dc1 {took:.2f}s after join -wan")
        register(b, {"Node": "remote-web", "Address": "10.20.0.1",
                     "Service": {"Service": "web", "Port": 80}})
        assert addrs(query(a, "web.service.dc2.consul")) == ["10.20.0.1"]
        assert addrs(query(a, "remote-web.node.dc2.consul")) == ["10.20.0.1"]
        assert addrs(query(a, "_web._tcp.service.dc2.consul", "SRV"), "SRV") == \
            ["1 1 80 remote-web.node.dc2.consul."]
        assert rcode(query(a, "web.service.consul")) == "NXDOMAIN"        # not in dc1
        assert addrs(query(b, "consul.service.dc1.consul")) == ["127.0.0.1"]
        r = query(a, "web.service.dc3.consul")
        assert rcode(r) == "NXDOMAIN" and r.authority                    # no path
        if DIG:
            out = dig(a, "consul.service.dc2.consul")
            assert "status: NOERROR" in out and "flags: qr aa rd;" in out, out
            assert dig_answers(out) == [["consul.service.dc2.consul.", "0", "IN", "A",
                                         "127.0.0.2"]], out
        b.kill()
        # dc2 is still known (soft fail) but nobody answers: SERVFAIL, not a cached NXDOMAIN
        wait(lambda: rcode(query(a, "web.service.dc2.consul")) == "SERVFAIL", 60,
             "SERVFAIL for an unreachable datacenter")
    finally:
        for p in (a, b):
            if p is not None:
                p.kill()

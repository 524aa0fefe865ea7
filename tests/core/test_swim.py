"""The SWIM core (`_core.swim`) on one node, fed fake packets and streams.

Spec: shared/spec/memberlist-wire.md §3.3–3.5 and §4. Every input is real wire bytes made
with `_core.wire`; every output is decoded back to check it.
"""
from __future__ import annotations

import ipaddress
import os
import random
import sys

import pytest

import _core.swim
from _core import messages as m
from _core import wire
from _core.gossip_config import GossipConfig
from _core.swim import (
    STATE_ALIVE, STATE_DEAD, STATE_LEFT, STATE_SUSPECT, JoinResult, LeaveDone, Malformed,
    NullDelegate, ProbeFailed, PushPullRejected, Refuted, StreamRequest, SwimNode,
    TcpFallbackOnly, UpdateDone, push_pull_scale, remaining_suspicion_time, suspicion_timeout,
)
from agent.sim import pure_python_swim

_SWIM_NAMES = ("JoinResult", "LeaveDone", "Malformed", "ProbeFailed", "PushPullRejected",
               "Refuted", "StreamRequest", "SwimNode", "TcpFallbackOnly", "UpdateDone",
               "push_pull_scale", "remaining_suspicion_time", "suspicion_timeout")


@pytest.fixture(autouse=True, params=["compiled", "source"])
def swim_impl(request, monkeypatch):
    """Every test runs on the compiled module and on `_core/swim.py` run from source."""
    mod = _core.swim if request.param == "compiled" else pure_python_swim()
    if request.param == "compiled" and mod.__file__.endswith(".py"):
        if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
            pytest.fail("_core.swim is not compiled")
        pytest.skip("_core.swim not compiled")
    here = sys.modules[__name__]
    for name in _SWIM_NAMES:
        monkeypatch.setattr(here, name, getattr(mod, name))
    return mod

PORT = 7946
VSN = bytes((1, 5, 2, 2, 5, 5))        # what a stock serf agent advertises


def raw(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def ip_of(i: int) -> str:
    return f"10.0.0.{i}"


class Rec(NullDelegate):
    """Records what the core tells its delegate."""

    def __init__(self) -> None:
        self.calls: list = []
        self.meta = b"meta-1"
        self.user_broadcasts: list = []

    def node_meta(self, limit):
        return self.meta

    def notify_msg(self, payload, now):
        self.calls.append(("msg", payload))

    def get_broadcasts(self, overhead, limit):
        out, self.user_broadcasts = self.user_broadcasts, []
        return out

    def local_state(self, join):
        return b"user-state-%d" % join

    def merge_remote_state(self, buf, join, now):
        self.calls.append(("merge", buf, join))

    def ack_payload(self):
        return b"\x01coord"

    def notify_ping_complete(self, node, rtt, payload, now):
        self.calls.append(("ping", node.name, round(rtt, 6), payload))

    def notify_join(self, node, now):
        self.calls.append(("join", node.name))

    def notify_leave(self, node, now):
        self.calls.append(("leave", node.name, node.state))

    def notify_update(self, node, now):
        self.calls.append(("update", node.name))

    def notify_conflict(self, existing, other, now):
        self.calls.append(("conflict", existing.name, other.udp))

    def of(self, kind):
        return [c for c in self.calls if c[0] == kind]


def node(cfg: GossipConfig | None = None, *, name: str = "me", ip: str = "10.0.0.100",
         seed: int = 1, delegate=None, now: float = 0.0, **kw) -> SwimNode:
    n = SwimNode(cfg or GossipConfig(), name, raw(ip), PORT, random.Random(seed), now,
                 delegate, **kw)
    n._broadcasts.reset()          # our own bootstrap alive: keeps outputs easy to read
    n.drain()
    return n


def pkt(*msgs, **kw) -> bytes:
    return wire.encode_packet([wire.encode_message(x) for x in msgs], **kw)


def alive(name: str, ip: str, inc: int = 1, meta: bytes = b"", vsn: bytes = VSN) -> m.Alive:
    return m.Alive(inc, name, raw(ip), PORT, meta, vsn)


def add(n: SwimNode, count: int, now: float = 0.0, vsn: bytes = VSN) -> list[str]:
    """Make `count` members n1..n<count> known as alive (via alive packets)."""
    names = []
    for i in range(1, count + 1):
        names.append(f"n{i}")
        n.step_packet(pkt(alive(f"n{i}", ip_of(i), vsn=vsn)), (ip_of(i), PORT), now)
    n._broadcasts.reset()
    n.drain()
    return names


def sent(n: SwimNode):
    """Decoded packets since the last drain: [(addr, [msgs])], plus the Ready object."""
    ready = n.drain()
    return [(addr, list(wire.decode_packet(data))) for addr, data in ready.packets], ready


_CLOCK: dict = {}                   # id(node) -> time of the last tick first_probe made


def first_probe(n: SwimNode) -> tuple[float, tuple, m.Ping]:
    """Tick until the node probes someone: (time, dest, ping)."""
    for _ in range(1000):
        ready = n.drain()
        for addr, data in ready.packets:
            for msg in wire.decode_packet(data):
                if isinstance(msg, m.Ping):
                    return _CLOCK.get(id(n), 0.0), addr, msg
        _CLOCK[id(n)] = ready.next_deadline
        n.tick(ready.next_deadline)
    raise AssertionError("no probe")


# ------------------------------------------------------------------ config and formulas

def test_gossip_config_profiles_match_memberlist():
    lan = GossipConfig.lan()
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks, lan.retransmit_mult,
            lan.suspicion_mult, lan.suspicion_max_timeout_mult, lan.push_pull_interval,
            lan.gossip_interval, lan.gossip_nodes, lan.gossip_to_the_dead_time,
            lan.tcp_timeout, lan.awareness_max_multiplier, lan.udp_buffer_size) == (
        1.0, 0.5, 3, 4, 4, 6, 30.0, 0.2, 3, 30.0, 10.0, 8, 1400)
    wan = GossipConfig.wan()
    assert (wan.tcp_timeout, wan.suspicion_mult, wan.push_pull_interval, wan.probe_timeout,
            wan.probe_interval, wan.gossip_nodes, wan.gossip_interval,
            wan.gossip_to_the_dead_time) == (30.0, 6, 60.0, 3.0, 5.0, 4, 0.5, 60.0)
    loc = GossipConfig.local()
    assert (loc.tcp_timeout, loc.indirect_checks, loc.retransmit_mult, loc.suspicion_mult,
            loc.push_pull_interval, loc.probe_timeout, loc.gossip_interval,
            loc.gossip_to_the_dead_time) == (1.0, 1, 2, 3, 15.0, 0.2, 0.1, 15.0)
    assert lan.vsn == VSN
    assert lan.problems() == [] and wan.problems() == [] and loc.problems() == []


def test_gossip_config_problems_lists_everything():
    from dataclasses import replace
    bad = replace(GossipConfig(), probe_interval=0.0, probe_timeout=2.0, protocol_version=9,
                  delegate_protocol=(3, 2, 5), udp_buffer_size=10)
    probs = bad.problems()
    assert len(probs) == 5, probs
    with pytest.raises(ValueError):
        node(bad)


def test_suspicion_timeouts_from_the_spec():
    # spec §4.5 examples (LAN: mult 4, max mult 6, probe interval 1 s)
    assert suspicion_timeout(4, 5, 1.0) == 4.0
    assert suspicion_timeout(4, 20, 1.0) == pytest.approx(5.204)
    assert 6 * suspicion_timeout(4, 20, 1.0) == pytest.approx(31.224)
    assert suspicion_timeout(4, 50, 1.0) == pytest.approx(6.792)
    assert suspicion_timeout(4, 100, 1.0) == 8.0
    assert suspicion_timeout(4, 1000, 1.0) == 12.0        # Go's Log10 is exact here
    assert suspicion_timeout(4, 10, 1.0) == 4.0
    assert suspicion_timeout(6, 20, 5.0) == pytest.approx(39.03)      # WAN
    assert suspicion_timeout(4, 0, 1.0) == 4.0
    # n = 5: k = 2, 24 s, 11.38 s after one confirmation, 4 s after two
    assert remaining_suspicion_time(1, 2, 0.0, 4.0, 24.0) == pytest.approx(11.381)
    assert remaining_suspicion_time(2, 2, 0.0, 4.0, 24.0) == pytest.approx(4.0)
    assert remaining_suspicion_time(2, 2, 10.0, 4.0, 24.0) == pytest.approx(-6.0)
    assert remaining_suspicion_time(1, 2, 0.0, 5.204, 31.224) == pytest.approx(14.807)
    assert remaining_suspicion_time(1, 2, 0.0, 6.792, 40.752) == pytest.approx(19.325)


def test_push_pull_scale():
    assert push_pull_scale(30.0, 32) == 30.0
    assert push_pull_scale(30.0, 33) == 60.0
    assert push_pull_scale(30.0, 64) == 60.0
    assert push_pull_scale(30.0, 65) == 90.0
    assert push_pull_scale(30.0, 1000) == 180.0


# ------------------------------------------------------------------ bootstrap and members

def test_bootstrap_inserts_ourselves_alive_and_queues_our_alive():
    d = Rec()
    n = SwimNode(GossipConfig(), "me", raw("10.0.0.100"), PORT, random.Random(1), 0.0, d)
    me = n.local
    assert (me.name, me.incarnation, me.state, me.meta, me.vsn, me.udp) == (
        "me", 1, STATE_ALIVE, b"meta-1", VSN, ("10.0.0.100", PORT))
    assert (me.pmin, me.pmax, me.pcur, me.dmin, me.dmax, me.dcur) == (1, 5, 2, 2, 5, 5)
    assert d.of("join") == [("join", "me")]
    assert n.num_queued() == 1 and n.num_members == 1
    assert n.drain().next_deadline < 1.0          # the first probe/gossip ticks


def test_unknown_alive_with_incarnation_zero_is_recorded_dead():
    n = node()
    n.step_packet(pkt(alive("x", "10.0.0.9", inc=0)), ("10.0.0.9", PORT), 0.0)
    assert n.member("x").state == STATE_DEAD
    n.step_packet(pkt(alive("x", "10.0.0.9", inc=1)), ("10.0.0.9", PORT), 0.0)
    assert n.member("x").state == STATE_ALIVE


def test_alive_with_bad_versions_is_ignored():
    import msgpack
    n = node()
    for vsn in (bytes((0, 5, 2, 2, 5, 5)), bytes((1, 0, 2, 2, 5, 5)), bytes((3, 2, 2, 2, 5, 5)),
                bytes((1, 5, 2))):          # a short Vsn crashes Go 0.2.2: never accept it
        body = {"Addr": raw("10.0.0.9"), "Incarnation": 1, "Meta": b"", "Node": "x",
                "Port": PORT, "Vsn": vsn}
        data = b"\x04" + msgpack.packb(body, use_bin_type=False)
        n.step_packet(data, ("10.0.0.9", PORT), 0.0)
    # our decoder already refuses the short one (malformed); the core ignores the rest
    assert n.member("x") is None and n.stats.bad_alive == 3 and n.stats.malformed == 1


def test_alive_port_zero_means_our_port():
    n = node()
    n.step_packet(pkt(m.Alive(1, "x", raw("10.0.0.9"), 0, b"", VSN)), ("10.0.0.9", 1), 0.0)
    assert n.member("x").port == PORT


# ------------------------------------------------------------------ incarnations (§4.6)

def test_incarnation_precedence():
    d = Rec()
    n = node(delegate=d)
    add(n, 3)
    src = (ip_of(1), PORT)
    # alive needs a strictly higher incarnation
    n.step_packet(pkt(alive("n1", ip_of(1), inc=1, meta=b"new")), src, 1.0)
    assert n.member("n1").meta == b""
    n.step_packet(pkt(alive("n1", ip_of(1), inc=2, meta=b"new")), src, 1.0)
    assert n.member("n1").meta == b"new" and ("update", "n1") in d.calls
    # suspect with an older incarnation: ignored; same or newer: accepted
    n.step_packet(pkt(m.Suspect(1, "n1", "n2")), src, 1.0)
    assert n.member("n1").state == STATE_ALIVE
    n.step_packet(pkt(m.Suspect(2, "n1", "n2")), src, 1.0)
    assert n.member("n1").state == STATE_SUSPECT
    # an alive at the same incarnation does not clear a suspicion; a higher one does
    n.step_packet(pkt(alive("n1", ip_of(1), inc=2, meta=b"new")), src, 1.0)
    assert n.member("n1").state == STATE_SUSPECT
    n.step_packet(pkt(alive("n1", ip_of(1), inc=3, meta=b"new")), src, 1.0)
    assert n.member("n1").state == STATE_ALIVE and "n1" not in n._suspicions
    # dead at an incarnation >= ours kills an alive node at once, older is ignored
    n.step_packet(pkt(m.Dead(2, "n2", "n3")), src, 2.0)
    assert n.member("n2").state == STATE_DEAD
    assert ("leave", "n2", STATE_DEAD) in d.calls
    n.step_packet(pkt(m.Dead(0, "n3", "n1")), src, 2.0)
    assert n.member("n3").state == STATE_ALIVE
    # dead from the node itself = left
    n.step_packet(pkt(m.Dead(1, "n3", "n3")), src, 2.0)
    assert n.member("n3").state == STATE_LEFT
    # dead/left -> alive (higher incarnation) is a join
    n.step_packet(pkt(alive("n2", ip_of(2), inc=3)), src, 3.0)
    assert n.member("n2").state == STATE_ALIVE and d.calls.count(("join", "n2")) == 2


def test_suspect_and_dead_of_unknown_nodes_are_ignored():
    n = node()
    n.step_packet(pkt(m.Suspect(1, "ghost", "x"), m.Dead(1, "ghost", "x")), ("1.2.3.4", 1), 0.0)
    assert n.member("ghost") is None


# ------------------------------------------------------------------ refutation (§4.6)

def test_refute_suspect_dead_and_alive_about_us():
    n = node()
    add(n, 1)
    src = (ip_of(1), PORT)
    n.step_packet(pkt(m.Suspect(1, "me", "n1")), src, 1.0)
    assert n.local.incarnation == 2 and n.local.state == STATE_ALIVE
    assert n.health_score == 1 and n.stats.refutes == 1
    # the refuting alive is queued under our address string, not our name (quirk)
    (b,) = n._broadcasts.ordered_view()
    assert b.name == "10.0.0.100"
    assert list(wire.decode_packet(b.msg)) == [m.Alive(2, "me", raw("10.0.0.100"), PORT, b"",
                                                       VSN)]
    ev = n.drain().events
    assert ev == [Refuted("suspect", "n1", 2)]
    # an accusation ahead of us: jump past it
    n.step_packet(pkt(m.Dead(7, "me", "n1")), src, 2.0)
    assert n.local.incarnation == 8 and n.local.state == STATE_ALIVE
    # an alive claiming our name with other meta: refute; identical: ignore
    n.step_packet(pkt(m.Alive(8, "me", raw("10.0.0.100"), PORT, b"other", VSN)), src, 3.0)
    assert n.local.incarnation == 9
    n.step_packet(pkt(m.Alive(9, "me", raw("10.0.0.100"), PORT, b"", VSN)), src, 3.0)
    assert n.local.incarnation == 9
    assert n.health_score == 3


def test_refute_via_buddy_suspect_on_a_ping():
    n = node()
    add(n, 1)
    n.step_packet(pkt(m.Ping(5, "me", raw(ip_of(1)), PORT, "n1"), m.Suspect(1, "me", "n1")),
                  (ip_of(1), PORT), 1.0)
    assert n.local.incarnation == 2
    out, _ = sent(n)
    # the ack goes back at once (parts are handled in order); the refutation is queued
    # for the next packet
    assert out == [((ip_of(1), PORT), [m.Ack(5, None)])]
    n.step_packet(pkt(m.Ping(6, "me")), (ip_of(1), PORT), 1.1)
    out, _ = sent(n)
    assert out[0][1][1] == m.Alive(2, "me", raw("10.0.0.100"), PORT, b"", VSN)


# ------------------------------------------------------------------ suspicion (§4.5)

def _no_probes(n: SwimNode) -> SwimNode:
    probe_tick = 0                  # swim._T_PROBE_TICK (a C constant once compiled)
    for _, _, t in n._timers:
        if t.kind == probe_tick:
            t.cancelled = True
    return n


def _suspicion_node(n_members: int, cfg: GossipConfig | None = None) -> SwimNode:
    cfg = cfg or GossipConfig(gossip_interval=0.0, push_pull_interval=0.0)
    n = _no_probes(node(cfg))
    add(n, n_members - 1)
    return n


def _dead_at(n: SwimNode, name: str, confirm_at: list[tuple[float, str]]) -> float:
    for at, who in confirm_at:
        n.tick(at)
        n.step_packet(pkt(m.Suspect(1, name, who)), (ip_of(9), PORT), at)
        n.tick(at)
        if n.member(name).state == STATE_DEAD:
            return at
    t = 0.0
    while n.member(name).state == STATE_SUSPECT:
        t = n.drain().next_deadline
        n.tick(t)
    assert n.member(name).state == STATE_DEAD
    return t


LAST_PING = GossipConfig().probe_timeout   # Lifeguard's last-chance ping before declaring death


@pytest.mark.parametrize("confirmations,expect", [
    ([], 24.0),                                           # k = 2: starts at max
    ([(1.0, "n3")], 11.381),                              # one: log-scaled
    ([(1.0, "n3"), (2.0, "n4")], 4.0),                    # two: min
    ([(1.0, "n1"), (1.5, "n3"), (1.6, "n3")], 11.381),    # the accuser and repeats don't count
    ([(20.0, "n3")], 20.0),                               # past the new timeout: fire at once
])
def test_suspicion_timeout_n5(confirmations, expect):
    n = _suspicion_node(5)                                  # n = 5 known nodes
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    assert _dead_at(n, "n2", confirmations) == pytest.approx(expect + LAST_PING)


def test_suspicion_confirmations_rebroadcast_only_news():
    n = _suspicion_node(5)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    n._broadcasts.reset()
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.5)
    assert n.num_queued() == 0
    n.step_packet(pkt(m.Suspect(1, "n2", "n3")), (ip_of(1), PORT), 0.5)
    assert n.num_queued() == 1


def test_suspicion_timeout_n20_and_small_clusters():
    n = _suspicion_node(20)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    assert _dead_at(n, "n2", []) == pytest.approx(31.224 + LAST_PING)
    n = _suspicion_node(20)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    assert _dead_at(n, "n2", [(1.0, "n3")]) == pytest.approx(14.807 + LAST_PING)
    n = _suspicion_node(3)                                   # n − 2 < k → k = 0: min
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    assert _dead_at(n, "n2", []) == pytest.approx(4.0 + LAST_PING)


def test_last_chance_ping_answered_keeps_the_suspect_alive():
    """Isthmus addition: when the suspicion timer runs out, one last direct ping (sent
    twice); an ack within probe_timeout clears our suspicion instead of declaring death."""
    n = _suspicion_node(5)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    n.drain()
    n.tick(24.0)                                            # k = 2, no confirmations: max
    pings = [p for _, p in n.drain().packets]
    assert len(pings) == 2 and pings[0] == pings[1]
    seq = list(wire.decode_packet(pings[0]))[0].seq_no
    n.step_packet(pkt(m.Ack(seq, None)), (ip_of(2), PORT), 24.2)
    n.tick(30.0)
    assert n.member("n2").state == STATE_ALIVE
    assert (n.stats.last_pings, n.stats.last_ping_saves, n.stats.dead_declared) == (1, 1, 0)


def test_plain_swim_uses_the_fixed_minimum():
    cfg = GossipConfig(gossip_interval=0.0, push_pull_interval=0.0, lifeguard=False)
    n = _suspicion_node(20, cfg)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    assert _dead_at(n, "n2", [(1.0, "n3")]) == pytest.approx(5.204)


def test_suspicion_cleared_by_refutation():
    n = _suspicion_node(5)
    n.step_packet(pkt(m.Suspect(1, "n2", "n1")), (ip_of(1), PORT), 0.0)
    n.step_packet(pkt(alive("n2", ip_of(2), inc=2)), (ip_of(2), PORT), 3.0)
    n.tick(100.0)
    assert n.member("n2").state == STATE_ALIVE and n.stats.dead_declared == 0


# ------------------------------------------------------------------ probing (§4.2)

def _prober(count: int = 4, cfg: GossipConfig | None = None, vsn: bytes = VSN, delegate=None):
    cfg = cfg or GossipConfig(gossip_interval=0.0, push_pull_interval=0.0)
    n = node(cfg, delegate=delegate)
    _CLOCK[id(n)] = 0.0
    add(n, count, vsn=vsn)
    return n


def test_probe_round_robin_and_direct_ack():
    d = Rec()
    n = _prober(delegate=d)
    seen = []
    for _ in range(4):
        t, dest, ping = first_probe(n)
        target = ping.node
        assert dest == n.member(target).udp
        assert (ping.source_addr, ping.source_port, ping.source_node) == (
            raw("10.0.0.100"), PORT, "me")
        seen.append(target)
        n.step_packet(pkt(m.Ack(ping.seq_no, b"\x01c")), dest, t + 0.01)
        assert d.of("ping")[-1] == ("ping", target, 0.01, b"\x01c")
    assert sorted(seen) == ["n1", "n2", "n3", "n4"]        # each once per pass
    assert n.health_score == 0 and n.stats.probes == 4 and n.stats.probe_failures == 0


def test_probe_failure_indirect_tcp_then_suspect():
    n = _prober()
    t, dest, ping = first_probe(n)
    target = ping.node
    n.tick(t + 0.5)                                         # ProbeTimeout
    out, ready = sent(n)
    inds = [(addr, msg) for addr, msgs in out for msg in msgs if isinstance(msg, m.IndirectPing)]
    assert len(inds) == 3
    for addr, ind in inds:
        assert addr != dest and addr != n.local.udp
        assert (ind.seq_no, ind.node, ind.target, ind.port, ind.nack) == (
            ping.seq_no, target, raw(dest[0]), PORT, True)
        assert ind.source_node == "me"
    (req,) = ready.streams
    assert isinstance(req, StreamRequest) and req.kind == "ping" and req.addr == dest
    assert req.timeout == pytest.approx(0.5)
    assert list(wire.StreamDecoder().feed(req.payload)) == [
        m.Ping(ping.seq_no, target, raw("10.0.0.100"), PORT, "me")]
    n.stream_result(req.req_id, None, t + 0.9)
    n.tick(t + 1.0)                                         # the probe deadline
    assert n.member(target).state == STATE_SUSPECT
    assert n.health_score == 3                              # three nacks expected, none came
    assert ProbeFailed(target) in n.drain().events
    (b,) = n._broadcasts.ordered_view()
    assert list(wire.decode_packet(b.msg)) == [m.Suspect(1, target, "me")]


def test_probe_failure_with_all_nacks_keeps_health():
    n = _prober()
    t, dest, ping = first_probe(n)
    n.tick(t + 0.5)
    _, ready = sent(n)
    for i in range(3):
        n.step_packet(pkt(m.Nack(ping.seq_no)), (ip_of(1), PORT), t + 0.6)
    n.stream_result(ready.streams[0].req_id, None, t + 0.9)
    n.tick(t + 1.0)
    assert n.member(ping.node).state == STATE_SUSPECT and n.health_score == 0
    assert n.stats.nacks == 3


def test_probe_without_nack_capable_helpers_costs_one():
    n = _prober(vsn=bytes((1, 3, 2, 2, 5, 5)))               # PMax 3: TCP yes, nack no
    t, dest, ping = first_probe(n)
    n.tick(t + 0.5)
    out, ready = sent(n)
    assert all(not msg.nack for _, msgs in out for msg in msgs if isinstance(msg, m.IndirectPing))
    n.stream_result(ready.streams[0].req_id, None, t + 0.9)
    n.tick(t + 1.0)
    assert n.health_score == 1


def test_forwarded_ack_in_indirect_phase_succeeds_without_ping_complete():
    d = Rec()
    n = _prober(delegate=d)
    t, dest, ping = first_probe(n)
    n.tick(t + 0.5)
    sent(n)
    n.step_packet(pkt(m.Ack(ping.seq_no, None)), (ip_of(3), PORT), t + 0.7)
    n.tick(t + 5.0)
    assert n.member(ping.node).state == STATE_ALIVE and n.health_score == 0
    assert d.of("ping") == []


def test_tcp_fallback_success():
    n = _prober()
    t, dest, ping = first_probe(n)
    n.tick(t + 0.5)
    _, ready = sent(n)
    n.stream_result(ready.streams[0].req_id, m.Ack(ping.seq_no, None), t + 0.6)
    assert n.member(ping.node).state == STATE_ALIVE        # waits for the deadline (Go)
    n.tick(t + 1.0)
    assert n.member(ping.node).state == STATE_ALIVE
    assert TcpFallbackOnly(ping.node) in n.drain().events
    # a TCP answer arriving after the deadline still counts (Go waits for the goroutine)
    n = _prober()
    t, dest, ping = first_probe(n)
    n.tick(t + 0.5)
    _, ready = sent(n)
    n.tick(t + 1.0)
    assert n.member(ping.node).state == STATE_ALIVE
    n.stream_result(ready.streams[0].req_id, m.Ack(ping.seq_no, None), t + 1.01)
    assert n.member(ping.node).state == STATE_ALIVE and n.stats.probe_failures == 0


def test_no_tcp_ping_when_disabled_or_peer_too_old():
    cfg = GossipConfig(gossip_interval=0.0, push_pull_interval=0.0, disable_tcp_pings=True)
    n = _prober(cfg=cfg)
    t, _, ping = first_probe(n)
    n.tick(t + 0.5)
    assert sent(n)[1].streams == []
    n.tick(t + 1.0)
    assert n.member(ping.node).state == STATE_SUSPECT
    n = _prober(vsn=bytes((1, 2, 2, 2, 5, 5)))              # PMax 2: no TCP pings
    t, _, ping = first_probe(n)
    n.tick(t + 0.5)
    assert sent(n)[1].streams == []


def test_awareness_scales_the_probe_deadline():
    n = _prober(cfg=GossipConfig(gossip_interval=0.0, push_pull_interval=0.0,
                                 disable_tcp_pings=True))
    n._awareness = 2
    t, _, ping = first_probe(n)
    n.tick(t + 1.0)
    assert n.member(ping.node).state == STATE_ALIVE       # deadline is 3 probe intervals
    n.tick(t + 3.0)
    assert n.member(ping.node).state == STATE_SUSPECT
    assert n.health_score == 5                              # + 3 missing nacks
    n._apply_awareness(10)
    assert n.health_score == 7                              # clamped at max − 1
    n._apply_awareness(-100)
    assert n.health_score == 0


def test_probing_a_suspect_sends_ping_and_suspect_with_crc():
    n = _prober()
    for i in range(1, 5):
        n.step_packet(pkt(m.Suspect(1, f"n{i}", "x")), (ip_of(1), PORT), 0.0)
    n.drain()
    ready = n.drain()
    for _ in range(100):
        ready = n.drain()
        if ready.packets:
            break
        n.tick(ready.next_deadline)
    (dest, data), = ready.packets
    assert data[0] == m.HAS_CRC                             # the node is known, PMax 5
    ping, sus = wire.decode_packet(data)
    assert isinstance(ping, m.Ping) and sus == m.Suspect(1, ping.node, "me")
    # plain SWIM: no buddy system
    cfg = GossipConfig(gossip_interval=0.0, push_pull_interval=0.0, lifeguard=False)
    n = _prober(cfg=cfg)
    for i in range(1, 5):
        n.step_packet(pkt(m.Suspect(1, f"n{i}", "x")), (ip_of(1), PORT), 0.0)
    n._broadcasts.reset()
    _, _, ping = first_probe(n)
    assert n.drain().packets == []


def test_probe_skips_dead_and_reaps_them_on_wrap():
    cfg = GossipConfig(gossip_interval=0.0, push_pull_interval=0.0)
    n = _prober(count=3, cfg=cfg)
    n.step_packet(pkt(m.Dead(1, "n1", "x")), (ip_of(2), PORT), 0.0)
    probed = set()
    for _ in range(6):
        t, dest, ping = first_probe(n)
        probed.add(ping.node)
        n.step_packet(pkt(m.Ack(ping.seq_no, None)), dest, t)
    assert "n1" not in probed and n.member("n1") is not None
    _CLOCK[id(n)] = 40.0                                    # past GossipToTheDeadTime
    n.tick(40.0)
    for _ in range(4):
        t, dest, ping = first_probe(n)
        n.step_packet(pkt(m.Ack(ping.seq_no, None)), dest, t)
    assert n.member("n1") is None and n.num_members == 3


# ------------------------------------------------------------------ serving pings (§4.3)

def test_ping_is_answered_with_piggybacked_broadcasts():
    d = Rec()
    n = node(delegate=d)
    add(n, 2)
    n.queue_broadcast("n9", wire.encode_message(m.Dead(1, "n9", "x")))
    d.user_broadcasts = [b"\x01serf"]
    n.step_packet(pkt(m.Ping(9, "me", raw(ip_of(1)), 7000, "n1")), (ip_of(1), 5555), 0.0)
    out, _ = sent(n)
    (addr, msgs), = out
    assert addr == (ip_of(1), 7000)                         # SourceAddr:SourcePort
    assert msgs == [m.Ack(9, b"\x01coord"), m.Dead(1, "n9", "x"), m.User(b"\x01serf")]
    # no source fields: reply to the UDP source; wrong target name: no reply
    n.step_packet(pkt(m.Ping(10, "")), (ip_of(2), 5555), 0.0)
    n.step_packet(pkt(m.Ping(11, "someone-else")), (ip_of(2), 5555), 0.0)
    out, _ = sent(n)
    assert len(out) == 1 and out[0][0] == (ip_of(2), 5555)
    assert out[0][1][0] == m.Ack(10, b"\x01coord")
    assert n.stats.wrong_node_pings == 1


def test_serving_an_indirect_ping_forwards_the_ack():
    n = node()
    req = m.IndirectPing(77, raw(ip_of(5)), 8000, "n5", True, raw(ip_of(1)), PORT, "n1")
    n.step_packet(pkt(req), (ip_of(1), 1234), 0.0)
    out, _ = sent(n)
    (addr, (ping,)), = out
    assert addr == (ip_of(5), 8000)
    assert (ping.node, ping.source_node) == ("n5", "me")
    n.step_packet(pkt(m.Ack(ping.seq_no, b"x")), addr, 0.1)
    out, _ = sent(n)
    assert out == [((ip_of(1), PORT), [m.Ack(77, None)])]
    n.tick(1.0)
    assert sent(n)[0] == []                                 # no nack after an ack


def test_serving_an_indirect_ping_sends_a_nack_when_asked():
    n = node()
    n.step_packet(pkt(m.IndirectPing(5, raw(ip_of(5)), 0, "n5", True)), (ip_of(1), 1234), 0.0)
    out, _ = sent(n)
    assert out[0][0] == (ip_of(5), PORT)                    # port 0: ours
    n.tick(0.49)
    assert sent(n)[0] == []
    n.tick(0.5)
    assert sent(n)[0] == [((ip_of(1), 1234), [m.Nack(5)])]
    n.step_packet(pkt(m.IndirectPing(6, raw(ip_of(5)), 0, "n5", False)), (ip_of(1), 1234), 1.0)
    sent(n)
    n.tick(2.0)
    assert sent(n)[0] == []                                 # no nack unless asked


# ------------------------------------------------------------------ streams (§3.3–3.5)

def _push_pull(join: bool, states: list, user: bytes = b"") -> m.PushPull:
    return m.PushPull(join, states, user)


def _state(name, ip, inc=1, state=STATE_ALIVE, vsn=VSN):
    return m.PushNodeState(name, raw(ip), PORT, b"", inc, state, vsn)


def test_push_pull_reply_then_merge():
    d = Rec()
    n = node(delegate=d)
    add(n, 2)
    n.step_packet(pkt(alive("gone", ip_of(7))), (ip_of(7), PORT), 0.0)
    remote = [_state("r1", ip_of(11)), _state("n1", ip_of(1), inc=1, state=STATE_DEAD),
              _state("gone", ip_of(7), state=STATE_LEFT), _state("r2", ip_of(12), inc=4)]
    reply = n.handle_stream([_push_pull(True, remote, b"serf")], ("10.0.0.11", 40000), 5.0)
    (msg,) = wire.StreamDecoder().feed(reply)
    assert msg.join is True and msg.user_state == b"user-state-1"
    assert {s.name for s in msg.states} == {"me", "n1", "n2", "gone"}   # before merging
    assert n.member("r1").state == STATE_ALIVE and n.member("r2").incarnation == 4
    assert n.member("n1").state == STATE_SUSPECT                # remote dead → suspect
    assert n._suspicions["n1"].confirmations == {"me"}
    assert n.member("gone").state == STATE_LEFT
    assert ("merge", b"serf", True) in d.calls


def test_push_pull_with_incompatible_versions_is_not_merged():
    n = node()
    remote = [_state("r1", ip_of(11), vsn=bytes((3, 5, 3, 2, 5, 5)))]
    reply = n.handle_stream([_push_pull(False, remote)], ("10.0.0.11", 40000), 0.0)
    assert isinstance(wire.StreamDecoder().feed(reply)[0], m.PushPull)
    assert n.member("r1") is None
    (ev,) = n.drain().events
    assert isinstance(ev, PushPullRejected) and "protocol version (2)" in ev.reason
    remote = [_state("r1", ip_of(11), vsn=bytes((1, 5, 2, 2, 3, 3)))]   # Serf DCur 5 > 3
    n.handle_stream([_push_pull(False, remote)], ("10.0.0.11", 40000), 0.0)
    assert n.member("r1") is None and "delegate" in n.drain().events[0].reason


def test_stream_ping_and_user_message():
    d = Rec()
    n = node(delegate=d)
    reply = n.handle_stream([m.Ping(3, "me")], ("1.2.3.4", 1), 0.0)
    assert wire.StreamDecoder().feed(reply) == [m.Ack(3, None)]
    assert n.handle_stream([m.Ping(3, "other")], ("1.2.3.4", 1), 0.0) is None
    assert n.handle_stream([m.User(b"hello")], ("1.2.3.4", 1), 0.0) is None
    assert ("msg", b"hello") in d.calls


def test_join_sends_push_pull_and_reports():
    n = node()
    jid = n.join([("10.0.0.1", PORT), ("10.0.0.2", PORT)], 0.0)
    ready = n.drain()
    assert len(ready.streams) == 2
    for req in ready.streams:
        assert req.kind == "push_pull" and req.timeout == 10.0
        (msg,) = wire.StreamDecoder().feed(req.payload)
        assert msg.join is True and [s.name for s in msg.states] == ["me"]
    r1, r2 = ready.streams
    n.stream_result(r1.req_id, _push_pull(True, [_state("n1", ip_of(1))]), 0.1)
    assert n.drain().events == []
    n.stream_result(r2.req_id, None, 10.0)
    (ev,) = n.drain().events
    assert ev.join_id == jid and ev.successes == 1 and len(ev.errors) == 1
    assert ev.errors[0].startswith("10.0.0.2:7946: ")
    assert n.member("n1").state == STATE_ALIVE
    # an errResp reply is an error too; no addresses: an immediate empty result
    jid = n.join([("10.0.0.3", PORT)], 11.0)
    (req,) = n.drain().streams
    n.stream_result(req.req_id, m.Err("boom"), 11.1)
    assert n.drain().events == [JoinResult(jid, 0, ("10.0.0.3:7946: remote error: boom",))]
    jid = n.join([], 12.0)
    assert n.drain().events == [JoinResult(jid, 0, ())]


def test_periodic_push_pull_is_scaled():
    cfg = GossipConfig(gossip_interval=0.0, probe_interval=1000.0, probe_timeout=1.0)
    n = node(cfg)
    add(n, 40)                                              # 41 nodes: × 2
    t = n.drain().next_deadline
    while True:
        n.tick(t)
        ready = n.drain()
        if ready.streams:
            break
        t = ready.next_deadline
    (req,) = ready.streams
    assert t < 30.0 and req.kind == "push_pull"
    assert wire.StreamDecoder().feed(req.payload)[0].join is False
    n.stream_result(req.req_id, _push_pull(False, []), t + 1.0)
    assert n.drain().next_deadline == pytest.approx(t + 1.0 + 60.0)


# ------------------------------------------------------------------ gossip (§4.8)

def test_gossip_sends_to_alive_suspect_and_recently_dead_with_crc():
    cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0,
                       gossip_nodes=10)
    n = node(cfg)
    add(n, 4)
    n.step_packet(pkt(m.Suspect(1, "n1", "x"), m.Dead(1, "n2", "x"), m.Dead(1, "n3", "n3")),
                  (ip_of(1), PORT), 0.0)
    for i in range(5):
        n.queue_broadcast(f"b{i}", wire.encode_message(m.Dead(1, f"b{i}", "x")))
    n.tick(n.drain().next_deadline)
    out, _ = sent(n)
    dests = {addr for addr, _ in out}
    assert dests == {(ip_of(1), PORT), (ip_of(2), PORT), (ip_of(4), PORT)}   # not left n3
    ready_raw = wire.encode_packet([b"x"])                   # sanity: CRC only on request
    assert ready_raw[0] != m.HAS_CRC
    # 40 s later n2 has been dead too long to gossip to
    n.queue_broadcast("late", wire.encode_message(m.Dead(1, "late", "x")))
    n.tick(40.0)
    out, _ = sent(n)
    assert (ip_of(2), PORT) not in {addr for addr, _ in out}


def test_gossip_packets_carry_crc_for_pmax5_and_compress():
    cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0,
                       gossip_nodes=1)
    n = node(cfg)
    add(n, 1)
    for i in range(10):
        n.queue_broadcast(f"x{i}", wire.encode_message(alive(f"x{i}", ip_of(50 + i))))
    n.tick(n.drain().next_deadline)
    (dest, data), = n.drain().packets
    assert data[0] == m.HAS_CRC and data[5] == m.COMPRESS
    assert len(wire.decode_packet(data)) == 10


def test_no_compression_when_disabled():
    from dataclasses import replace
    cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0,
                       gossip_nodes=1, enable_compression=False)
    n = node(cfg)
    add(n, 1, vsn=bytes((1, 4, 2, 2, 5, 5)))                # PMax 4: no CRC
    for i in range(10):
        n.queue_broadcast(f"x{i}", wire.encode_message(alive(f"x{i}", ip_of(50 + i))))
    n.tick(n.drain().next_deadline)
    (dest, data), = n.drain().packets
    assert data[0] == m.COMPOUND
    reply = n.handle_stream([m.Ping(1, "")], ("1.2.3.4", 1), 0.0)
    assert reply[0] == m.ACK_RESP
    assert replace(cfg, enable_compression=True).enable_compression


# ------------------------------------------------------------------ reclaim, leave, meta

def test_address_conflict_and_reclaim():
    d = Rec()
    n = node(delegate=d)
    add(n, 1)
    n.step_packet(pkt(alive("n1", "10.9.9.9", inc=5)), ("10.9.9.9", PORT), 0.0)
    assert n.member("n1").udp == (ip_of(1), PORT)
    assert d.of("conflict") == [("conflict", "n1", ("10.9.9.9", PORT))]
    # a left node may come back elsewhere
    n.step_packet(pkt(m.Dead(1, "n1", "n1")), (ip_of(1), PORT), 1.0)
    n.step_packet(pkt(alive("n1", "10.9.9.9", inc=1)), ("10.9.9.9", PORT), 2.0)
    assert n.member("n1").udp == ("10.9.9.9", PORT) and n.member("n1").state == STATE_ALIVE
    # a dead one only after DeadNodeReclaimTime (0 = never)
    n.step_packet(pkt(m.Dead(1, "n1", "x")), (ip_of(1), PORT), 3.0)
    n.step_packet(pkt(alive("n1", ip_of(1), inc=2)), (ip_of(1), PORT), 1000.0)
    assert n.member("n1").udp == ("10.9.9.9", PORT)
    n2 = node(GossipConfig(dead_node_reclaim_time=10.0))
    add(n2, 1)
    n2.step_packet(pkt(m.Dead(1, "n1", "x")), (ip_of(1), PORT), 0.0)
    n2.step_packet(pkt(alive("n1", "10.9.9.9", inc=1)), ("10.9.9.9", PORT), 5.0)
    assert n2.member("n1").udp == (ip_of(1), PORT)
    n2.step_packet(pkt(alive("n1", "10.9.9.9", inc=1)), ("10.9.9.9", PORT), 11.0)
    assert n2.member("n1").udp == ("10.9.9.9", PORT) and n2.member("n1").state == STATE_ALIVE


def test_leave_broadcasts_dead_from_self_then_done():
    d = Rec()
    cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0)
    n = node(cfg, delegate=d)
    add(n, 2)                                               # n = 3 → 4 transmits
    n.leave(0.0)
    assert n.local.state == STATE_LEFT and ("leave", "me", STATE_LEFT) in d.calls
    (b,) = n._broadcasts.ordered_view()
    assert list(wire.decode_packet(b.msg)) == [m.Dead(1, "me", "me")]
    assert n.drain().events == []
    events = []
    t = 0.0
    while LeaveDone() not in events and t < 5.0:
        ready = n.drain()
        events += ready.events
        t = ready.next_deadline
        n.tick(t)
    assert LeaveDone() in events + n.drain().events
    assert n.num_queued() == 0                              # sent 4 times, then finished
    # alive about us while leaving is ignored; a lonely node is done at once
    n.step_packet(pkt(m.Alive(9, "me", raw("10.0.0.100"), PORT, b"", VSN)), (ip_of(1), PORT), 6)
    assert n.local.state == STATE_LEFT
    lonely = node()
    lonely.leave(0.0)
    assert lonely.drain().events == [LeaveDone()]


def test_a_leaving_node_gossips_only_to_members_that_can_pass_it_on():
    """memberlist gossips to members dead for less than GossipToTheDeadTime; a leaving node
    does not, so its few transmissions of the leave reach the member still alive."""
    for seed in range(20):
        cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0)
        n = node(cfg, seed=seed)
        add(n, 4)                                    # n1 alive; n2..n4 just dead
        for name in ("n2", "n3", "n4"):
            n.step_packet(pkt(m.Dead(1, name, "n1")), (ip_of(1), PORT), 0.5)
        n._broadcasts.reset()
        n.drain()
        n.begin_leave()
        n.leave(1.0)
        targets = set()
        t = 1.0
        while n.num_queued() and t < 10.0:
            n.tick(t)
            packets, ready = sent(n)
            targets |= {addr for addr, msgs in packets if m.Dead(1, "me", "me") in msgs}
            t = ready.next_deadline
        assert targets == {(ip_of(1), PORT)}, seed


def test_update_meta_broadcasts_a_new_incarnation():
    d = Rec()
    n = node(delegate=d)
    d.meta = b"meta-2"
    n.update_meta(1.0)
    assert n.local.incarnation == 2 and n.local.meta == b"meta-2"
    assert ("update", "me") in d.calls
    (b,) = n._broadcasts.ordered_view()
    assert list(wire.decode_packet(b.msg)) == [m.Alive(2, "me", raw("10.0.0.100"), PORT,
                                                       b"meta-2", VSN)]
    assert UpdateDone() in n.drain().events                 # nobody else alive
    d.meta = b"x" * 513
    with pytest.raises(ValueError):
        n.update_meta(2.0)


def test_more_than_255_piggybacked_parts_are_split():
    cfg = GossipConfig(probe_interval=1000.0, probe_timeout=1.0, push_pull_interval=0.0,
                       gossip_nodes=1, udp_buffer_size=65000)
    n = node(cfg)
    add(n, 1)
    for i in range(300):
        n.queue_broadcast(f"d{i}", wire.encode_message(m.Dead(1, f"d{i}", "x")))
    n.tick(n.drain().next_deadline)
    packets = n.drain().packets
    assert len(packets) == 2
    assert sum(len(wire.decode_packet(data)) for _, data in packets) == 300


def test_send_user_is_a_bare_packet():
    n = node()
    n.queue_broadcast("x", wire.encode_message(m.Dead(1, "x", "y")))
    n.send_user(("10.0.0.5", 9000), b"\x05resp", 0.0)
    out, _ = sent(n)
    assert out == [(("10.0.0.5", 9000), [m.User(b"\x05resp")])]


# ------------------------------------------------------------------ bad input, encryption

def test_malformed_packets_are_counted_and_dropped():
    n = node()
    for junk in (b"", b"\xff\x00", b"\x04\xc1", b"\x0c\x00\x00\x00\x00\x04\x80",
                 b"\x07\x02\x00\x05"):
        n.step_packet(junk, ("6.6.6.6", 1), 0.0)
    assert n.stats.malformed == 5
    ev = n.drain().events
    assert len(ev) == 5 and all(isinstance(e, Malformed) and e.src == ("6.6.6.6", 1) for e in ev)
    assert n.num_members == 1
    # one bad part of a compound: the rest is still handled
    good = wire.encode_message(alive("x", "10.0.0.9"))
    n.step_packet(wire.make_compound([good, b"\x04\xc1"]), ("6.6.6.6", 1), 0.0)
    assert n.member("x") is not None and n.stats.malformed_parts == 1


def test_encrypted_gossip_round_trip():
    from _core.keyring import Keyring
    kr = Keyring([bytes(range(32))])
    nonces = random.Random(3)
    src = lambda k: nonces.randbytes(k)                      # noqa: E731
    n = node(keyring=kr, nonce_source=src)
    with pytest.raises(ValueError):
        SwimNode(GossipConfig(), "x", raw("10.0.0.1"), PORT, random.Random(1), 0.0, None, kr)
    n.step_packet(pkt(alive("n1", ip_of(1)), keyring=kr, nonce=src(12)), (ip_of(1), PORT), 0.0)
    assert n.member("n1") is not None
    n.step_packet(pkt(alive("n2", ip_of(2))), (ip_of(2), PORT), 0.0)   # plaintext: refused
    assert n.member("n2") is None and n.stats.malformed == 1
    n.step_packet(pkt(m.Ping(4, "me"), keyring=kr, nonce=src(12)), (ip_of(1), PORT), 0.0)
    (addr, data), = n.drain().packets
    assert wire.decode_packet(data, keyring=kr)[0] == m.Ack(4, None)
    with pytest.raises(Exception):
        wire.decode_packet(data)
    jid = n.join([(ip_of(1), PORT)], 1.0)
    (req,) = n.drain().streams
    assert req.payload[0] == m.ENCRYPT
    assert wire.StreamDecoder(keyring=kr).feed(req.payload)[0].join is True
    assert jid == 1


def test_label_on_packets_and_dialed_streams():
    cfg = GossipConfig(label=b"blue")
    n = node(cfg)
    n.step_packet(pkt(m.Ping(4, "me"), label=b"blue"), (ip_of(1), PORT), 0.0)
    (addr, data), = n.drain().packets
    assert data[:6] == b"\xf4\x04blue"
    n.step_packet(pkt(m.Ping(5, "me")), (ip_of(1), PORT), 0.0)         # no label: dropped
    assert n.stats.malformed == 1
    n.join([(ip_of(1), PORT)], 0.0)
    (req,) = n.drain().streams
    assert req.payload[:6] == b"\xf4\x04blue"
    dec = wire.StreamDecoder(label=b"blue", require_label_header=True)
    assert dec.feed(req.payload)[0].join is True
    reply = n.handle_stream([m.Ping(1, "")], ("1.2.3.4", 1), 0.0)
    assert reply[0] != 0xF4                                 # replies carry no header


def test_seed_members_inserts_silently():
    d = Rec()
    n = node(delegate=d)
    n.seed_members([_state("a", ip_of(1)), _state("b", ip_of(2)),
                    _state("c", ip_of(3), state=STATE_DEAD)], 0.0)
    assert sorted(x.name for x in n.members()) == ["a", "b", "me"]
    assert n.num_queued() == 0 and ("join", "a") in d.calls


def test_next_deadline_and_late_ticks():
    n = node(GossipConfig(gossip_interval=0.0, push_pull_interval=0.0))
    d0 = n.drain().next_deadline
    assert 0.0 <= d0 < 1.0
    n.tick(d0 + 10.5)               # a late caller: missed probe ticks are dropped
    assert n.drain().next_deadline == pytest.approx(d0 + 11.0)


# ------------------------------------------------------------------ encryption migration

def _pair_probe(x_kw: dict, y_kw: dict) -> bool:
    """x probes y once over a lossless 'network'; True when x got y's ack."""
    from dataclasses import replace

    from _core.keyring import Keyring
    ring = Keyring([bytes(range(32))])
    nonce = random.Random(5).randbytes
    nodes = {}
    for name, ip, kw in (("x", ip_of(1), x_kw), ("y", ip_of(2), y_kw)):
        cfg = replace(GossipConfig(gossip_interval=0.0, push_pull_interval=0.0),
                      gossip_verify_incoming=kw.get("incoming", True),
                      gossip_verify_outgoing=kw.get("outgoing", True))
        keyed = kw.get("key", False)
        nodes[ip] = SwimNode(cfg, name, raw(ip), PORT, random.Random(1), 0.0, None,
                             ring if keyed else None, nonce if keyed else None)
    x, y = nodes[ip_of(1)], nodes[ip_of(2)]
    x.seed_members([m.PushNodeState("y", raw(ip_of(2)), PORT, b"", 1, STATE_ALIVE, VSN)], 0.0)
    t = 0.0
    while t < 3.0 and x.stats.acks == 0:
        t += 0.05
        for n in (x, y):
            n.tick(t)
        for src, n in ((ip_of(1), x), (ip_of(2), y)):
            for (ip, _), data in n.drain().packets:
                if ip in nodes:
                    nodes[ip].step_packet(data, (src, PORT), t)
    return x.stats.acks > 0


PLAIN = {}
STEP1 = {"key": True, "incoming": False, "outgoing": False}   # key installed, nothing enforced
STEP2 = {"key": True, "incoming": False, "outgoing": True}    # sending encrypted
STEP3 = {"key": True, "incoming": True, "outgoing": True}     # plaintext refused


@pytest.mark.parametrize("a,b", [(PLAIN, STEP1), (STEP1, STEP2), (STEP2, STEP3)])
def test_encryption_can_be_rolled_out_live(a, b):
    """Consul's procedure (encrypt_verify_incoming/outgoing): agents in adjacent steps of the
    rollout keep probing each other successfully, both ways."""
    assert _pair_probe(a, b) and _pair_probe(b, a)


def test_enforced_encryption_and_plaintext_do_not_mix():
    assert not _pair_probe(PLAIN, STEP3) and not _pair_probe(STEP3, PLAIN)
    assert not _pair_probe(PLAIN, STEP2)           # STEP2 sends encrypted: plaintext can't read

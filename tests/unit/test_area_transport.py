"""Area gossip framing on the RPC port (agent/areas/transport.py): frames, the hello, the
hello-to-pool mapping, and the incoming-connection protocol fed garbage."""
from __future__ import annotations

import asyncio
import struct

import msgpack
import pytest

from _core import wire
from _core.errors import DecodeError
from _core.messages import Err
from agent.areas import transport as t
from agent.areas.transport import (MAX_FRAME, MAX_HELLO, AreaGossipHandler, FrameDecoder,
                                   FrameError, Hello, decode_hello, encode_frame, read_hello)
from tests.aio import run

HELLO = Hello("packet", "dc2", "dc1", ("10.0.2.10", 8300), "srv-b.dc2")


def hello_body(**over) -> bytes:
    obj = {"V": 1, "Kind": "stream", "DC": "dc2", "PeerDC": "dc1", "Addr": ["10.0.2.10", 8300],
           "Name": "srv-b.dc2"}
    obj.update(over)
    return msgpack.packb({k: v for k, v in obj.items() if v is not ...})


# ---------------------------------------------------------------------------- frames and hello

def test_hello_round_trips():
    frame = HELLO.encode()
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4 <= MAX_HELLO
    assert read_hello(frame) == (HELLO, len(frame))
    v6 = Hello("stream", "dc1", "dc2", ("::1", 1), "")
    assert read_hello(v6.encode())[0] == v6


def test_hello_is_none_until_complete_at_every_split():
    frame = HELLO.encode() + b"rest"
    for i in range(len(frame) - 4):
        assert read_hello(frame[:i]) is None
    assert read_hello(frame)[1] == len(frame) - 4


@pytest.mark.parametrize("n", [0, MAX_HELLO + 1, 0xFFFFFFFF])
def test_hello_with_bad_length_is_refused_from_its_four_length_bytes(n):
    with pytest.raises(FrameError):
        read_hello(struct.pack(">I", n))


@pytest.mark.parametrize("body", [
    b"\xc1",                                             # never-used msgpack byte
    b"\x93\x01\x02",                                     # truncated array
    msgpack.packb([1, 2, 3]),
    msgpack.packb("hello"),
    msgpack.packb({1: 2}),
    hello_body(V=2),
    hello_body(V=True),
    hello_body(V=...),
    hello_body(Kind="rpc"),
    hello_body(Kind=...),
    hello_body(DC=""),
    hello_body(DC=7),
    hello_body(DC="x" * 300),
    hello_body(PeerDC=...),
    hello_body(Addr=["srv-b.example", 8300]),            # names are not resolved
    hello_body(Addr=["10.0.2.10", 0]),
    hello_body(Addr=["10.0.2.10", 70000]),
    hello_body(Addr=["10.0.2.10", True]),
    hello_body(Addr=["10.0.2.10", "8300"]),
    hello_body(Addr=["10.0.2.10"]),
    hello_body(Addr="10.0.2.10:8300"),
    hello_body(Name=5),
    msgpack.packb({"V": 1}) + b"trailing",
])
def test_bad_hellos_raise_frame_error(body):
    with pytest.raises(FrameError) as err:
        decode_hello(body)
    assert isinstance(err.value, DecodeError)
    with pytest.raises(FrameError):
        read_hello(encode_frame(body))


def test_hello_normalises_the_ip_and_name_is_optional():
    h = decode_hello(hello_body(Addr=["::0001", 8300], Name=...))
    assert h.addr == ("::1", 8300) and h.name == ""


def frames_of(payloads):
    return b"".join(encode_frame(p) for p in payloads)


def test_frames_whole_byte_by_byte_and_split_at_every_offset():
    payloads = [b"a", b"\x00" * 1400, bytes(range(256)), b"z"]
    data = frames_of(payloads)
    assert FrameDecoder().feed(data) == payloads
    d = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += d.feed(data[i:i + 1])
    assert out == payloads and d.buffered == 0
    for cut in range(len(data) + 1):
        d = FrameDecoder()
        assert d.feed(data[:cut]) + d.feed(data[cut:]) == payloads


@pytest.mark.parametrize("bad", [struct.pack(">I", 0), struct.pack(">I", MAX_FRAME + 1)])
def test_bad_frame_lengths_are_sticky_errors_wherever_the_stream_is_cut(bad):
    data = frames_of([b"ok"]) + bad + b"xxxx"
    for cut in range(len(data) + 1):
        d = FrameDecoder()
        got = []
        with pytest.raises(FrameError) as err:
            got += d.feed(data[:cut])
            got += d.feed(data[cut:])
        assert got in ([], [b"ok"]) and err.value.offset == 6
        with pytest.raises(FrameError):
            d.feed(frames_of([b"fine"]))


def test_frame_limit_is_configurable():
    assert FrameDecoder(limit=3).feed(frames_of([b"abc"])) == [b"abc"]
    with pytest.raises(FrameError):
        FrameDecoder(limit=3).feed(frames_of([b"abcd"]))


def test_certificate_name_matching():
    cert = {"subjectAltName": (("DNS", "server.dc1.consul"), ("DNS", "*.dc2.consul"),
                               ("IP Address", "127.0.0.1"))}
    assert t.cert_names(cert) == ["server.dc1.consul", "*.dc2.consul"]
    assert t.cert_names(None) == []
    assert t.name_matches("server.dc1.consul", "Server.DC1.consul.")
    assert t.name_matches("*.dc2.consul", "server.dc2.consul")
    assert not t.name_matches("*.dc2.consul", "a.server.dc2.consul")
    assert not t.name_matches("server.dc1.consul", "server.dc3.consul")


# ---------------------------------------------------------------------------- mapping to pools

class FakePool:
    def __init__(self, peer_dc: str, area_id: str = "area") -> None:
        self.peer_dc = peer_dc
        self.area_id = area_id
        self.running = True
        self.packets: list = []
        self.streams: list = []
        self.bad: list = []

        class Cfg:
            tcp_timeout = 5.0
        self.cfg = Cfg()

    def packet_received(self, data, src):
        self.packets.append((data, src))

    def stream_decoder(self, inbound=False):
        return wire.StreamDecoder(require_label_header=False)

    def stream_received(self, msgs, src):
        self.streams.append((msgs, src))
        return wire.encode_stream(Err("pong"), compress=False)

    def bad_input(self, what, exc, peer):
        self.bad.append((what, str(exc), peer))


def test_hello_maps_to_the_area_of_the_sender_or_of_its_peer():
    h = AreaGossipHandler("dc1")
    p2, p3 = FakePool("dc2", "a2"), FakePool("dc3", "a3")
    h.add(p2)
    h.add(p3)
    h.add(p2)                                             # same pool again: fine
    with pytest.raises(ValueError, match="already running"):
        h.add(FakePool("dc2", "other"))
    # a dc2 server talking about its area with dc1 -> our area with dc2
    assert h.lookup(Hello("packet", "dc2", "dc1", ("10.0.0.1", 1)))[0] is p2
    # a dc1 server (same DC) in its area with dc3 -> our area with dc3
    assert h.lookup(Hello("stream", "dc1", "dc3", ("10.0.0.1", 1)))[0] is p3
    pool, why = h.lookup(Hello("packet", "dc2", "dc9", ("10.0.0.1", 1)))
    assert pool is None and "area with dc9" in why and "datacenter dc1" in why
    pool, why = h.lookup(Hello("packet", "dc4", "dc1", ("10.0.0.1", 1)))
    assert pool is None and "no network area for peer datacenter dc4" in why
    pool, why = h.lookup(Hello("packet", "dc1", "dc4", ("10.0.0.1", 1)))
    assert pool is None and "no network area for peer datacenter dc4" in why
    assert h.lookup(Hello("packet", "dc1", "dc1", ("10.0.0.1", 1)))[0] is None
    h.remove(p2)
    assert h.lookup(Hello("packet", "dc2", "dc1", ("10.0.0.1", 1)))[0] is None


# ---------------------------------------------------------------------------- incoming protocol

class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.paused = False
        self.proto = None

    def write(self, data):
        self.written += data

    def close(self):
        self._lost()

    def abort(self):
        self.aborted = True
        self._lost()

    def pause_reading(self):
        self.paused = True

    def is_closing(self):
        return self.closed

    def _lost(self):
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.proto.connection_lost, None)


def connect(handler):
    released = []
    proto = handler.factory(("127.0.0.9", 5555), False, lambda: released.append(1))
    tr = FakeTransport()
    tr.proto = proto
    proto.connection_made(tr)
    return proto, tr, released


def test_packets_after_a_hello_reach_the_pool_with_the_hellos_address():
    async def main():
        h = AreaGossipHandler("dc1")
        pool = FakePool("dc2")
        h.add(pool)
        proto, tr, released = connect(h)
        data = HELLO.encode() + frames_of([b"p1", b"p2"]) + encode_frame(b"p3")[:3]
        for i in range(0, len(data), 5):                  # in pieces
            proto.data_received(data[i:i + 5])
        proto.data_received(encode_frame(b"p3")[3:])
        assert pool.packets == [(b"p1", HELLO.addr), (b"p2", HELLO.addr), (b"p3", HELLO.addr)]
        assert h.stats["packets"] == 1 and not tr.written
        h.remove(pool)                                    # pool stopped: its connections go
        await asyncio.sleep(0)
        assert tr.aborted and released == [1]
    run(main)


@pytest.mark.parametrize("garbage,stat", [
    (b"\x00\x00\x00\x00", "bad_hello"),
    (b"\xff\xff\xff\xff", "bad_hello"),
    (b"GET / HTTP/1.1\r\n\r\n", "bad_hello"),
    (encode_frame(b"\xc1"), "bad_hello"),
    (Hello("packet", "dc7", "dc1", ("10.0.0.1", 1)).encode(), "unknown_area"),
    (HELLO.encode() + struct.pack(">I", MAX_FRAME + 1), "bad_frame"),
    (HELLO.encode() + struct.pack(">I", 0), "bad_frame"),
])
def test_garbage_is_counted_and_closed_never_raised(garbage, stat):
    async def main():
        h = AreaGossipHandler("dc1")
        pool = FakePool("dc2")
        h.add(pool)
        proto, tr, released = connect(h)
        proto.data_received(garbage)
        proto.data_received(b"more garbage after the refusal")
        await asyncio.sleep(0)
        assert tr.closed and h.stats[stat] == 1 and released == [1]
        assert not pool.packets and not pool.streams
    run(main)


def test_a_refused_stream_is_told_why_before_it_is_closed():
    async def main():
        h = AreaGossipHandler("dc1")
        proto, tr, released = connect(h)
        proto.data_received(Hello("stream", "dc2", "dc1", ("10.0.0.1", 1)).encode() + b"\x00ab")
        msgs = wire.StreamDecoder().feed(bytes(tr.written))
        assert isinstance(msgs[0], Err)
        assert "no network area for peer datacenter dc2" in msgs[0].error
        assert not tr.closed                              # reads the dialer's request first
        tr.close()                                        # the dialer hung up
        await asyncio.sleep(0)
        assert released == [1] and h.stats["unknown_area"] == 1
    run(main)


def test_a_stream_exchange_goes_to_the_pool_and_the_reply_comes_back():
    async def main():
        h = AreaGossipHandler("dc1")
        pool = FakePool("dc2")
        h.add(pool)
        proto, tr, released = connect(h)
        request = wire.encode_stream(Err("ping"), compress=False)
        proto.data_received(Hello("stream", "dc2", "dc1", ("10.0.2.10", 8300)).encode() + request)
        assert pool.streams[0][1] == ("10.0.2.10", 8300)
        assert wire.StreamDecoder().feed(bytes(tr.written)) == [Err("pong")]
        await asyncio.sleep(0)
        assert tr.closed and released == [1]
        # a garbage stream body is the pool's malformed input: dropped, never raised
        proto, tr, _ = connect(h)
        hello = Hello("stream", "dc2", "dc1", ("10.0.2.10", 8300)).encode()
        proto.data_received(hello + b"\xff" * 9)
        await asyncio.sleep(0)
        assert tr.aborted and pool.bad and pool.bad[0][0] == "stream"
    run(main)


def test_a_silent_connection_is_closed_after_the_hello_timeout(monkeypatch):
    monkeypatch.setattr(t, "HELLO_TIMEOUT", 0.05)

    async def main():
        h = AreaGossipHandler("dc1")
        proto, tr, released = connect(h)
        proto.data_received(HELLO.encode()[:3])
        await asyncio.sleep(0.2)
        assert tr.aborted and h.stats["hello_timeout"] == 1 and released == [1]
    run(main)

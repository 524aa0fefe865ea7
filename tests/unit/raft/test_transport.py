"""Raft frames on the RPC port: encode, decode split anywhere, garbage refused."""
from __future__ import annotations

import pytest

from _core.errors import DecodeError
from agent.raft.messages import (ENTRY_CONFIG, MSG_APP, MSG_SNAP, Entry, Message, Server,
                                 SnapshotMeta, decode_message, encode_configuration)
from agent.raft.transport import FrameReader, frame, hello_frame

HELLO = hello_frame("s1", "127.0.0.1:8300")


def sample() -> list[Message]:
    conf = (Server("a", "127.0.0.1:8300"), Server("b", "127.0.0.2:8300", False))
    return [
        Message(MSG_APP, "b", "a", term=3, log_term=2, index=7, commit=6,
                entries=[Entry(3, 8, 0, b"x" * 100), Entry(3, 9, ENTRY_CONFIG,
                                                           encode_configuration(conf))]),
        Message(MSG_SNAP, "b", "a", term=3, snapshot=SnapshotMeta(40, 2, conf),
                snapshot_data=b"\x00" * 5000),
        Message(4, "a", "b", term=3, index=9, reject=True, reject_hint=5, context=b"ctx"),
    ]


def test_frames_decode_whole_and_split_at_every_offset():
    msgs = sample()
    stream = HELLO + b"".join(frame(m) for m in msgs)
    r = FrameReader()
    assert r.feed(stream) == msgs and r.hello == ("s1", "127.0.0.1:8300")
    for cut in range(len(stream) + 1):
        r = FrameReader()
        assert r.feed(stream[:cut]) + r.feed(stream[cut:]) == msgs


def test_byte_by_byte():
    msgs = sample()
    r = FrameReader()
    got = []
    for b in HELLO + b"".join(frame(m) for m in msgs):
        got += r.feed(bytes((b,)))
    assert got == msgs


def test_oversized_frame_and_garbage_are_refused():
    with pytest.raises(DecodeError):
        FrameReader(max_frame=100).feed(HELLO + frame(sample()[1]))
    with pytest.raises(DecodeError):
        FrameReader().feed(HELLO + b"\x00\x00\x00\x03abc")
    with pytest.raises(DecodeError):                    # a stream must open with a hello
        FrameReader().feed(frame(sample()[0]))
    with pytest.raises(DecodeError):
        decode_message(b"\x93\x01\x02\x03")


@pytest.mark.parametrize("mutate", range(40))
def test_mutated_messages_raise_decode_error_or_decode(mutate):
    import random
    rng = random.Random(mutate)
    raw = bytearray(frame(sample()[0])[4:])
    for _ in range(3):
        raw[rng.randrange(len(raw))] = rng.randrange(256)
    try:
        decode_message(bytes(raw))
    except DecodeError:
        pass

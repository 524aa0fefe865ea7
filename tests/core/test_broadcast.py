"""TransmitLimitedQueue: the behaviours of memberlist's queue_test.go, plus ours."""
from __future__ import annotations

import os
import random
import sys

import pytest

import _core.broadcast
from _core.broadcast import TransmitLimitedQueue, retransmit_limit
from agent.sim import pure_python_swim


@pytest.fixture(autouse=True, params=["compiled", "source"])
def queue_impl(request, monkeypatch):
    """Every test runs on the compiled module and on `_core/broadcast.py` run from source."""
    if request.param == "compiled":
        mod = _core.broadcast
        if mod.__file__.endswith(".py"):
            if os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1":
                pytest.fail("_core.broadcast is not compiled")
            pytest.skip("_core.broadcast not compiled")
    else:
        pure_python_swim()
        mod = sys.modules["_core._broadcast_source"]
    here = sys.modules[__name__]
    for name in ("TransmitLimitedQueue", "retransmit_limit"):
        monkeypatch.setattr(here, name, getattr(mod, name))
    return mod


def names(q: TransmitLimitedQueue, reverse: bool = True) -> list[str]:
    """queue_test.go's orderedView walks the tree in reverse (most transmitted first)."""
    view = q.ordered_view()
    return [b.name for b in (reversed(view) if reverse else view)]


def test_retransmit_limit_formula():
    # retransmit_mult × ceil(log10(n + 1)) (spec §4.7: LAN n ≤ 9 → 4, 10–99 → 8, n = 0 → 0)
    assert retransmit_limit(4, 0) == 0
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8
    assert retransmit_limit(4, 99) == 8
    assert retransmit_limit(4, 100) == 12
    assert retransmit_limit(4, 1000) == 16
    assert retransmit_limit(1, 10) == 2


@pytest.mark.parametrize("a,b", [
    ((0, 10, 100), (1, 10, 100)),      # diff transmits
    ((0, 12, 100), (0, 10, 100)),      # same transmits, longer first
    ((0, 12, 100), (0, 12, 90)),       # same length, newer (higher id) first
])
def test_limited_broadcast_less(a, b):
    # TestLimitedBroadcastLess: a sorts before b
    q = TransmitLimitedQueue(1, lambda: 1)
    for (tr, ln, id_), name in ((b, "b"), (a, "a")):
        q._id_gen = id_ - 1
        q.queue_broadcast(b"x" * ln, name, transmits=tr)
    assert names(q, reverse=False) == ["a", "b"]


def test_queue_named_invalidation():
    # TestTransmitLimited_Queue
    q = TransmitLimitedQueue(1, lambda: 1)
    q.queue_broadcast(b"", "test")
    q.queue_broadcast(b"", "foo")
    q.queue_broadcast(b"", "bar")
    assert q.num_queued() == 3
    assert names(q) == ["test", "foo", "bar"]
    q.queue_broadcast(b"", "test")              # invalidates the previous "test"
    assert q.num_queued() == 3
    assert names(q) == ["foo", "bar", "test"]


def test_get_broadcasts_overhead():
    # TestTransmitLimited_GetBroadcasts: 18-byte messages, limit 80
    q = TransmitLimitedQueue(3, lambda: 10)
    for i, n in enumerate(("test", "foo", "bar", "baz"), 1):
        q.queue_broadcast(f"{i}. this is a test.".encode(), n)
    assert len(q.get_broadcasts(2, 80)) == 4      # 4 × (18 + 2) = 80
    assert len(q.get_broadcasts(3, 80)) == 3      # 4 × 21 > 80


def test_get_broadcasts_transmit_limit():
    # TestTransmitLimited_GetBroadcasts_Limit: mult 1, n 10 → limit 2
    q = TransmitLimitedQueue(1, lambda: 10)
    assert q._id_gen == 0
    assert retransmit_limit(1, 10) == 2
    for i, n in enumerate(("test", "foo", "bar", "baz"), 1):
        q.queue_broadcast(f"{i}. this is a test.".encode(), n)
    assert q._id_gen == 4
    assert len(q.get_broadcasts(3, 80)) == 3
    assert len(q.get_broadcasts(3, 80)) == 3
    assert len(q.get_broadcasts(3, 80)) == 2      # only two not expired
    assert len(q.get_broadcasts(3, 80)) == 0
    assert q._id_gen == 4                         # ids are never reset


def test_prune_keeps_newest_and_finishes_the_rest():
    # TestTransmitLimited_Prune
    q = TransmitLimitedQueue(1, lambda: 10)
    done = []
    q.queue_broadcast(b"1. this is a test.", "test", finished=lambda: done.append("test"))
    q.queue_broadcast(b"2. this is a test.", "foo", finished=lambda: done.append("foo"))
    q.queue_broadcast(b"3. this is a test.", "bar")
    q.queue_broadcast(b"4. this is a test.", "baz")
    q.prune(2)
    assert q.num_queued() == 2
    assert sorted(done) == ["foo", "test"]
    assert names(q) == ["bar", "baz"]


def test_ordering_by_transmits():
    # TestTransmitLimited_ordering
    q = TransmitLimitedQueue(1, lambda: 10)
    for name, tr in (("node0", 0), ("node1", 10), ("node2", 3), ("node3", 4), ("node4", 7)):
        q.queue_broadcast(name.encode(), name, transmits=tr)
    assert [b.transmits for b in reversed(q.ordered_view())] == [10, 7, 4, 3, 0]


def test_named_replace_then_relays_keep_all():
    # TestTransmitLimitedQueue_NamedReplaceThenRelaysKeepsAll
    q = TransmitLimitedQueue(4, lambda: 3)
    q.queue_broadcast(b"a" * 115, "node-3")
    q.queue_broadcast(b"b" * 115, "node-3")
    q.queue_broadcast(b"c" * 115, "node-1")
    q.queue_broadcast(b"d" * 115, "node-2")
    assert q.num_queued() == 3
    assert any(m[:1] == b"b" for m in q.get_broadcasts(2, 1398))


def test_reinsert_after_idle_keeps_all():
    # TestTransmitLimitedQueue_ReinsertAfterIdleKeepsAll
    q = TransmitLimitedQueue(4, lambda: 3)
    overhead, limit = 2, 2 + 115
    q.queue_broadcast(b"a" * 115, "node-a")
    got = q.get_broadcasts(overhead, limit)
    assert got == [b"a" * 115] and q.num_queued() == 1
    q.queue_broadcast(b"b" * 115, "node-b")
    q.queue_broadcast(b"c" * 115, "node-c")
    seen = set()
    for i in range(5):
        for m in q.get_broadcasts(overhead, limit):
            seen.add(m[:1])
        assert q.num_queued() == 3, i
    assert seen == {b"a", b"b", b"c"}


def test_largest_fitting_message_of_the_lowest_tier_first():
    q = TransmitLimitedQueue(4, lambda: 100)       # limit 12
    q.queue_broadcast(b"x" * 10, "small")
    q.queue_broadcast(b"y" * 50, "big")
    q.queue_broadcast(b"z" * 30, "sent", transmits=1)
    # 44 bytes: "big" (50) does not fit; "small" fits (12), then tier 1: "sent" (32) fits
    assert q.get_broadcasts(2, 44) == [b"x" * 10, b"z" * 30]
    # an item taken is not taken twice in one call even though it moved to the next tier
    q2 = TransmitLimitedQueue(4, lambda: 100)
    q2.queue_broadcast(b"a" * 10, "a")
    assert q2.get_broadcasts(2, 1000) == [b"a" * 10]
    assert q2.ordered_view()[0].transmits == 1


def test_free_space_exhausted_stops():
    q = TransmitLimitedQueue(4, lambda: 10)
    q.queue_broadcast(b"x" * 10, "a")
    assert q.get_broadcasts(2, 2) == []            # free = 0
    assert q.get_broadcasts(2, 11) == []           # 10 + 2 > 11
    assert q.get_broadcasts(2, 12) == [b"x" * 10]


def test_zero_nodes_sends_once_then_finishes():
    q = TransmitLimitedQueue(4, lambda: 0)         # limit 0
    done = []
    q.queue_broadcast(b"m", "a", finished=lambda: done.append(1))
    assert q.get_broadcasts(2, 100) == [b"m"]
    assert q.num_queued() == 0 and done == [1]


def test_finished_called_once_on_limit_and_on_invalidation():
    q = TransmitLimitedQueue(1, lambda: 1)          # limit 1
    done = []
    q.queue_broadcast(b"one", "n", finished=lambda: done.append("one"))
    q.queue_broadcast(b"two", "n", finished=lambda: done.append("two"))
    assert done == ["one"]
    assert q.get_broadcasts(2, 100) == [b"two"]
    assert done == ["one", "two"]
    q.reset()
    assert done == ["one", "two"]


def test_unique_broadcasts_never_invalidate():
    q = TransmitLimitedQueue(4, lambda: 10)
    q.queue_broadcast(b"same")
    q.queue_broadcast(b"same")
    assert q.num_queued() == 2


def test_other_broadcasts_use_invalidates_predicate():
    q = TransmitLimitedQueue(4, lambda: 10)
    done = []
    q.queue_broadcast(b"k1:v1", invalidates=lambda other: other.msg.startswith(b"k1:"),
                      finished=lambda: done.append("v1"))
    q.queue_broadcast(b"k2:v1", invalidates=lambda other: other.msg.startswith(b"k2:"))
    q.queue_broadcast(b"k1:old-unique")                         # unique: never invalidated
    q.queue_broadcast(b"k1:v2", invalidates=lambda other: other.msg.startswith(b"k1:"))
    assert done == ["v1"]
    assert sorted(b.msg for b in q.ordered_view()) == [b"k1:old-unique", b"k1:v2", b"k2:v1"]


def test_reset_finishes_everything():
    q = TransmitLimitedQueue(4, lambda: 10)
    done = []
    for i in range(3):
        q.queue_broadcast(b"m%d" % i, finished=lambda i=i: done.append(i))
    q.reset()
    assert q.num_queued() == 0 and sorted(done) == [0, 1, 2]


def test_matches_a_reference_model():
    """Random operations against a straightforward model of queue.go's algorithm."""
    rng = random.Random(5)
    for _ in range(200):
        n_nodes = rng.choice([0, 1, 5, 10, 50, 500])
        mult = rng.choice([1, 2, 4])
        q = TransmitLimitedQueue(mult, lambda: n_nodes)
        model: list[list] = []          # [transmits, len, id, name, msg]
        next_id = 0
        for _ in range(rng.randrange(1, 40)):
            op = rng.random()
            if op < 0.6:
                next_id += 1
                name = rng.choice(["a", "b", "c", "d", "e", "f", None])
                msg = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
                if name is not None:
                    model = [m for m in model if m[3] != name]
                model.append([0, len(msg), next_id, name, msg])
                q.queue_broadcast(msg, name)
            else:
                overhead, limit = rng.choice([2, 3]), rng.randrange(0, 200)
                tl = retransmit_limit(mult, n_nodes)
                used, out, again = 0, [], []
                while True:
                    free = limit - used - overhead
                    if free <= 0 or not model:
                        break
                    cands = sorted((m for m in model if m[1] <= free),
                                   key=lambda m: (m[0], -m[1], -m[2]))
                    if not cands:
                        break
                    m = cands[0]
                    model.remove(m)
                    used += overhead + m[1]
                    out.append(m[4])
                    if m[0] + 1 < tl:
                        m[0] += 1
                        again.append(m)
                model.extend(again)
                assert q.get_broadcasts(overhead, limit) == out
            expect = [m[4] for m in sorted(model, key=lambda m: (m[0], -m[1], -m[2]))]
            assert [b.msg for b in q.ordered_view()] == expect

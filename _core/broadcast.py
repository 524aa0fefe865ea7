# cython: annotation_typing=False
"""memberlist's TransmitLimitedQueue (shared/spec/memberlist-wire.md §4.7; queue.go).

Order, as memberlist's B-tree: fewer transmits first; within a tier longer messages
first; then newer (higher id) first. Kept here as one sorted list of integer keys with a
parallel list of items, so `bisect` finds "the largest message of tier t that fits in
`free` bytes" exactly as the B-tree's `AscendRange` does.

Three kinds of broadcast, as in memberlist:
* named (`name=`): queueing one drops the queued broadcast of the same name (memberlist's
  own alive/suspect/dead, named by node);
* unique (default, `name=None` and no `invalidates`): never invalidates anything (Serf);
* other (`invalidates=` predicate): drops every queued *other* broadcast it invalidates.
Dropped or finished broadcasts get their `finished` callback called once.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from typing import Callable

# key = tier << 56 | (LEN_MAX - len) << 40 | (ID_MAX - id), ascending keys = memberlist's
# Less order, in 64 bits: tiers from 254 up and lengths from 65535 up compare equal (no
# retransmit limit comes near 254; no packet holds 64 KiB, so such messages never fit).
_ID_BITS = 40
_LEN_BITS = 16
_TIER_SHIFT = _ID_BITS + _LEN_BITS
_TIER_MAX = 254                 # keeps (tier + 1) << 56 within 64 bits
_ID_MAX = 0xFF_FFFF_FFFF         # (1 << _ID_BITS) - 1, as literals: C ints once compiled
_LEN_MAX = 0xFFFF               # (1 << _LEN_BITS) - 1


def retransmit_limit(retransmit_mult: int, n: int) -> int:
    """retransmit_mult × ceil(log10(n + 1)) (memberlist util.go retransmitLimit)."""
    return retransmit_mult * int(math.ceil(math.log10(n + 1)))


class Broadcast:
    """One queued message (read-only for callers; `transmits` counts sends so far)."""

    __slots__ = ("msg", "name", "finished", "invalidates", "transmits", "id", "key")

    def __init__(self, msg: bytes, name: str | None, finished: Callable[[], None] | None,
                 invalidates: Callable[["Broadcast"], bool] | None, transmits: int,
                 id_: int) -> None:
        self.msg = msg
        self.name = name
        self.finished = finished
        self.invalidates = invalidates
        self.transmits = transmits
        self.id = id_
        self.key = 0

    def __repr__(self) -> str:
        return f"Broadcast(name={self.name!r}, transmits={self.transmits}, len={len(self.msg)})"


def _finish(b: Broadcast) -> None:
    """Call the broadcast's `finished` callback, once."""
    if b.finished is not None:
        cb = b.finished
        b.finished = None
        cb()


def _key(b: Broadcast) -> int:
    n = len(b.msg)
    if n > _LEN_MAX:
        n = _LEN_MAX
    t = b.transmits
    if t > _TIER_MAX:
        t = _TIER_MAX
    k = (t << _TIER_SHIFT) | ((_LEN_MAX - n) << _ID_BITS) | (_ID_MAX - b.id)
    return k


class TransmitLimitedQueue:
    """Broadcasts to piggyback, each sent at most `retransmit_limit(mult, num_nodes())` times."""

    def __init__(self, retransmit_mult: int, num_nodes: Callable[[], int]) -> None:
        self.retransmit_mult = retransmit_mult
        self.num_nodes = num_nodes
        self._keys: list[int] = []
        self._items: list[Broadcast] = []
        self._named: dict[str, Broadcast] = {}
        self._id_gen = 0

    def __len__(self) -> int:
        return len(self._keys)

    def num_queued(self) -> int:
        """Number of queued broadcasts."""
        return len(self._keys)

    def queue_broadcast(self, msg: bytes, name: str | None = None, *,
                        finished: Callable[[], None] | None = None,
                        invalidates: Callable[[Broadcast], bool] | None = None,
                        transmits: int = 0) -> None:
        """Queue `msg`; a named one replaces the queued one of the same name."""
        if self._id_gen >= _ID_MAX:      # memberlist wraps its int64 id the same way
            self._id_gen = 1
        else:
            self._id_gen += 1
        b = Broadcast(msg, name, finished, invalidates, transmits, self._id_gen)
        if name is not None:
            old = self._named.get(name)
            if old is not None:
                _finish(old)
                self._delete(old)
        elif invalidates is not None:
            # slow path (memberlist: "hopefully nothing hot hits this"): only other
            # non-named, non-unique broadcasts can be invalidated
            for cur in [c for c in self._items if c.name is None and c.invalidates is not None
                        and invalidates(c)]:
                _finish(cur)
                self._delete(cur)
        self._add(b)

    def _add(self, b: Broadcast) -> None:
        k = _key(b)
        b.key = k
        i = bisect_left(self._keys, k)
        self._keys.insert(i, k)
        self._items.insert(i, b)
        if b.name is not None:
            self._named[b.name] = b

    def _delete(self, b: Broadcast) -> None:
        i = bisect_left(self._keys, b.key)
        if i < len(self._keys) and self._items[i] is b:
            del self._keys[i]
            del self._items[i]
        if b.name is not None and self._named.get(b.name) is b:
            del self._named[b.name]

    def get_broadcasts(self, overhead: int, limit: int) -> list[bytes]:
        """Messages that fit in `limit` bytes, `overhead` bytes each (memberlist GetBroadcasts)."""
        if not self._keys:
            return []
        return self._take(overhead, limit)

    def _take(self, overhead: int, limit: int) -> list:
        keys = self._keys
        items = self._items
        transmit_limit = retransmit_limit(self.retransmit_mult, self.num_nodes())
        used = 0
        out: list = []
        reinsert: list = []
        tier = keys[0] >> _TIER_SHIFT
        max_tier = keys[len(keys) - 1] >> _TIER_SHIFT
        while tier <= max_tier:
            free = limit - used - overhead
            if free <= 0:
                break
            if free > _LEN_MAX - 1:
                free = _LEN_MAX - 1
            # the first key of this tier whose message is no longer than `free`
            lo = (tier << _TIER_SHIFT) | ((_LEN_MAX - free) << _ID_BITS)
            nxt = (tier + 1) << _TIER_SHIFT
            i = bisect_left(keys, lo)
            if i >= len(keys) or keys[i] >= nxt:
                # nothing fits in this tier: go to the next tier that has items
                j = bisect_left(keys, nxt)
                if j >= len(keys):
                    break
                tier = keys[j] >> _TIER_SHIFT
                continue
            b = items[i]
            del keys[i]
            del items[i]
            if b.name is not None and self._named.get(b.name) is b:
                del self._named[b.name]
            msg = b.msg
            used += overhead + len(msg)
            out.append(msg)
            if b.transmits + 1 >= transmit_limit:
                _finish(b)
            else:
                # re-added after the walk, or we could pick it again in the next tier
                b.transmits += 1
                reinsert.append(b)
        for b in reinsert:
            self._add(b)
        return out

    def prune(self, max_retain: int) -> None:
        """Drop the most-transmitted (then smallest, oldest) broadcasts beyond `max_retain`."""
        while len(self._keys) > max_retain:
            b = self._items.pop()
            self._keys.pop()
            if b.name is not None and self._named.get(b.name) is b:
                del self._named[b.name]
            _finish(b)

    def reset(self) -> None:
        """Drop everything (finished callbacks are called); ids are not reused."""
        items = self._items
        self._keys, self._items, self._named = [], [], {}
        for b in items:
            _finish(b)

    def ordered_view(self) -> list[Broadcast]:
        """The queued broadcasts in send order (for tests and debugging)."""
        return list(self._items)

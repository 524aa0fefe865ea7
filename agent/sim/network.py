"""An in-memory network for simulated nodes: latency, jitter, loss, partitions.

Deterministic given its `random.Random`: every loss and jitter draw comes from it, in the
order the simulator asks. Addresses are the nodes' ("ip", port) tuples.

Rules (a link override replaces the defaults; node overrides apply to everything that
enters or leaves that node):
* delay  = latency + U(0, jitter), from the link override, else the largest of the default
  and the two nodes' overrides;
* loss   = the link override, else 1 − (1 − default)(1 − p_src)(1 − p_dst), where the
  default is `loss` for datagrams and `stream_loss` for stream legs;
* a packet is never delivered between isolated nodes or across a partition.

Streams (TCP) are reliable in real life, but under heavy loss a connection or its reply
may not make it within a sub-second probe deadline; the simulator models each direction
of a stream exchange as one "leg" lost with probability `stream_loss` (default: `loss`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

Addr = tuple


@dataclass(slots=True)
class LinkParams:
    """Overrides for a link or a node; None keeps the default."""
    latency: float | None = None
    jitter: float | None = None
    loss: float | None = None


class Network:
    """Delivery decisions between simulated addresses."""

    def __init__(self, rng: random.Random, latency: float = 0.001, jitter: float = 0.0,
                 loss: float = 0.0, stream_loss: float | None = None) -> None:
        self.rng = rng
        self.latency = latency
        self.jitter = jitter
        self.loss = loss
        self.stream_loss = loss if stream_loss is None else stream_loss
        self._links: dict[tuple[Addr, Addr], LinkParams] = {}
        self._nodes: dict[Addr, LinkParams] = {}
        self._partitions: list[tuple[frozenset, frozenset]] = []
        self._isolated: set = set()
        self.sent = 0
        self.dropped = 0

    # ------------------------------------------------------------------ configuration

    def set_link(self, a: Addr, b: Addr, *, latency: float | None = None,
                 jitter: float | None = None, loss: float | None = None,
                 both_ways: bool = True) -> None:
        """Override the link a → b (and b → a unless `both_ways` is False)."""
        p = LinkParams(latency, jitter, loss)
        self._links[(a, b)] = p
        if both_ways:
            self._links[(b, a)] = p

    def set_node(self, addr: Addr, *, latency: float | None = None,
                 jitter: float | None = None, loss: float | None = None) -> None:
        """Override everything entering or leaving `addr`."""
        self._nodes[addr] = LinkParams(latency, jitter, loss)

    def clear_overrides(self) -> None:
        self._links.clear()
        self._nodes.clear()

    def partition(self, group_a: Iterable[Addr], group_b: Iterable[Addr]) -> None:
        """No traffic between any address of `group_a` and any of `group_b`."""
        self._partitions.append((frozenset(group_a), frozenset(group_b)))

    def isolate(self, addr: Addr) -> None:
        """No traffic to or from `addr`."""
        self._isolated.add(addr)

    def heal(self) -> None:
        """Remove every partition and isolation (overrides stay)."""
        self._partitions.clear()
        self._isolated.clear()

    # ------------------------------------------------------------------ decisions

    def reachable(self, src: Addr, dst: Addr) -> bool:
        """True unless an isolation or a partition separates src and dst."""
        if self._isolated and (src in self._isolated or dst in self._isolated):
            return False
        for a, b in self._partitions:
            if (src in a and dst in b) or (src in b and dst in a):
                return False
        return True

    def _params(self, src: Addr, dst: Addr, loss: float) -> tuple[float, float, float]:
        """(latency, jitter, loss) for src → dst, starting from the default `loss`."""
        link = self._links.get((src, dst)) if self._links else None
        lat, jit = self.latency, self.jitter
        if link is not None:
            return (lat if link.latency is None else link.latency,
                    jit if link.jitter is None else link.jitter,
                    loss if link.loss is None else link.loss)
        if self._nodes:
            keep = 1.0 - loss
            for addr in (src, dst):
                p = self._nodes.get(addr)
                if p is None:
                    continue
                if p.latency is not None and p.latency > lat:
                    lat = p.latency
                if p.jitter is not None and p.jitter > jit:
                    jit = p.jitter
                if p.loss is not None:
                    keep *= 1.0 - p.loss
            loss = 1.0 - keep
        return lat, jit, loss

    def packet_delay(self, src: Addr, dst: Addr) -> float | None:
        """Seconds until a datagram src → dst arrives, or None if it is lost."""
        self.sent += 1
        if (self._partitions or self._isolated) and not self.reachable(src, dst):
            self.dropped += 1
            return None
        if self._links or self._nodes:
            lat, jit, loss = self._params(src, dst, self.loss)
        else:
            lat, jit, loss = self.latency, self.jitter, self.loss
        rng = self.rng
        if loss > 0.0 and rng.random() < loss:
            self.dropped += 1
            return None
        return lat + rng.random() * jit if jit > 0.0 else lat

    def stream_leg_delay(self, src: Addr, dst: Addr) -> float | None:
        """One direction of a stream exchange: its delay, or None if it fails."""
        if not self.reachable(src, dst):
            return None
        lat, jit, loss = self._params(src, dst, self.stream_loss)
        rng = self.rng
        if loss > 0.0 and rng.random() < loss:
            return None
        return lat + rng.random() * jit if jit > 0.0 else lat

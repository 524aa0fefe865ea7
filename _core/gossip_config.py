"""Gossip (memberlist) timing and protocol settings as frozen data.

Defaults are memberlist's `DefaultLANConfig` (shared/spec/memberlist-wire.md §4.9);
`wan()` and `local()` are its WAN and Local profiles. The agent's own configuration maps
onto this; `_core.swim` reads nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

# memberlist understands protocol 1..5 (spec §1.10: ProtocolVersionMin/Max)
PROTOCOL_VERSION_MIN = 1
PROTOCOL_VERSION_MAX = 5
META_MAX_SIZE = 512                      # MetaMaxSize (spec §1.4)


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """memberlist's Config fields that the SWIM core acts on (seconds, counts, flags)."""
    probe_interval: float = 1.0          # one probe of one member per interval (× awareness)
    probe_timeout: float = 0.5           # wait for the direct ack before asking helpers
    indirect_checks: int = 3             # helpers asked to ping a silent target for us
    retransmit_mult: int = 4             # broadcast sent retransmit_mult × ceil(log10(n+1)) times
    suspicion_mult: int = 4              # suspicion min = mult × max(1, log10(n)) × probe_interval
    suspicion_max_timeout_mult: int = 6  # suspicion max = this × min (Lifeguard)
    push_pull_interval: float = 30.0     # full state exchange, scaled up above 32 nodes; 0 = off
    gossip_interval: float = 0.2         # one gossip round per interval; 0 = off
    gossip_nodes: int = 3                # members sent broadcasts per gossip round
    gossip_to_the_dead_time: float = 30.0  # keep gossiping to (and keep) dead nodes this long
    awareness_max_multiplier: int = 8    # Lifeguard local health: score in [0, this − 1]
    tcp_timeout: float = 10.0            # dial + each phase of a stream exchange
    udp_buffer_size: int = 1400          # largest packet we fill with piggybacked broadcasts
    enable_compression: bool = True      # LZW on packets (when smaller) and on streams
    disable_tcp_pings: bool = False      # no TCP fallback ping during probes
    dead_node_reclaim_time: float = 0.0  # a dead name may take a new address after this; 0 = never
    protocol_version: int = 2            # memberlist protocol spoken (ProtocolVersion2Compatible)
    delegate_protocol: tuple[int, int, int] = (2, 5, 5)   # Serf (DMin, DMax, DCur)
    lifeguard: bool = True               # False: plain SWIM + suspicion (fixed min timeout, no
    #                                      awareness, no nacks, no suspect piggybacked on pings)
    handoff_queue_depth: int = 1024      # for drivers that queue packets before the core
    label: bytes = b""                   # packet/stream label (memberlist >= 0.3.0); b"" = none
    gossip_verify_incoming: bool = True  # with a keyring: drop what does not decrypt
    gossip_verify_outgoing: bool = True  # with a keyring: encrypt what we send

    @classmethod
    def lan(cls) -> "GossipConfig":
        """memberlist DefaultLANConfig."""
        return cls()

    @classmethod
    def wan(cls) -> "GossipConfig":
        """memberlist DefaultWANConfig."""
        return replace(cls(), tcp_timeout=30.0, suspicion_mult=6, push_pull_interval=60.0,
                       probe_timeout=3.0, probe_interval=5.0, gossip_nodes=4,
                       gossip_interval=0.5, gossip_to_the_dead_time=60.0)

    @classmethod
    def local(cls) -> "GossipConfig":
        """memberlist DefaultLocalConfig."""
        return replace(cls(), tcp_timeout=1.0, indirect_checks=1, retransmit_mult=2,
                       suspicion_mult=3, push_pull_interval=15.0, probe_timeout=0.2,
                       probe_interval=1.0, gossip_interval=0.1, gossip_to_the_dead_time=15.0)

    @property
    def vsn(self) -> bytes:
        """Our 6 version bytes [PMin, PMax, PCur, DMin, DMax, DCur] (memberlist BuildVsnArray)."""
        dmin, dmax, dcur = self.delegate_protocol
        return bytes((PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, self.protocol_version,
                      dmin, dmax, dcur))

    def problems(self) -> list[str]:
        """Every problem with these settings (empty when usable)."""
        out: list[str] = []

        def positive(name: str) -> None:
            if not getattr(self, name) > 0:
                out.append(f"{name} must be > 0 (got {getattr(self, name)!r})")

        def non_negative(name: str) -> None:
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0 (got {getattr(self, name)!r})")

        for name in ("probe_interval", "probe_timeout", "tcp_timeout", "suspicion_mult",
                     "suspicion_max_timeout_mult", "awareness_max_multiplier",
                     "handoff_queue_depth", "retransmit_mult"):
            positive(name)
        for name in ("indirect_checks", "push_pull_interval", "gossip_interval", "gossip_nodes",
                     "gossip_to_the_dead_time", "dead_node_reclaim_time"):
            non_negative(name)
        if self.probe_timeout > self.probe_interval:
            out.append(f"probe_timeout ({self.probe_timeout}) must not exceed probe_interval "
                       f"({self.probe_interval})")
        if not 200 <= self.udp_buffer_size <= 65507:
            out.append(f"udp_buffer_size must be in [200, 65507] (got {self.udp_buffer_size})")
        if not PROTOCOL_VERSION_MIN <= self.protocol_version <= PROTOCOL_VERSION_MAX:
            out.append(f"protocol_version must be in [{PROTOCOL_VERSION_MIN}, "
                       f"{PROTOCOL_VERSION_MAX}] (got {self.protocol_version})")
        dp = self.delegate_protocol
        if len(dp) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in dp):
            out.append(f"delegate_protocol must be three versions 0..255 (got {dp!r})")
        elif not dp[0] <= dp[2] <= dp[1]:
            out.append(f"delegate_protocol: DCur {dp[2]} not within [DMin {dp[0]}, DMax {dp[1]}]")
        if not isinstance(self.label, bytes) or len(self.label) > 255:
            out.append("label must be at most 255 bytes")
        return out

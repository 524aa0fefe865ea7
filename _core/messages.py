"""memberlist and Serf messages as Python objects (shared/spec/memberlist-wire.md §1.4, §5.2).

`_core.wire` turns these into bytes and back; the SWIM core and the Serf layer work on
them. Attribute names are snake_case of the Go field names (`from_` for `From`). Addresses
are raw bytes (4 or 16, as advertised — never UTF-8); `vsn` is the 6 raw version bytes
[PMin, PMax, PCur, DMin, DMax, DCur]; `meta` is raw bytes (Serf: 0xff + msgpack tags).
"""
from __future__ import annotations

from dataclasses import dataclass, field

# memberlist message types (hashicorp/memberlist net.go; spec §1.2)
PING = 0
INDIRECT_PING = 1
ACK_RESP = 2
SUSPECT = 3
ALIVE = 4
DEAD = 5
PUSH_PULL = 6
COMPOUND = 7
USER = 8
COMPRESS = 9
ENCRYPT = 10
NACK_RESP = 11
HAS_CRC = 12
ERR = 13
HAS_LABEL = 244

# node states in push/pull (spec §1.4)
STATE_ALIVE = 0
STATE_SUSPECT = 1
STATE_DEAD = 2
STATE_LEFT = 3

# Serf message types: first byte of a memberlist user message (spec §5.2)
SERF_LEAVE = 0
SERF_JOIN = 1
SERF_PUSH_PULL = 2
SERF_USER_EVENT = 3
SERF_QUERY = 4
SERF_QUERY_RESPONSE = 5
SERF_CONFLICT_RESPONSE = 6
SERF_KEY_REQUEST = 7
SERF_KEY_RESPONSE = 8
SERF_RELAY = 9

# Serf query flags (spec §5.6)
QUERY_FLAG_ACK = 1
QUERY_FLAG_NO_BROADCAST = 2

PING_VERSION = 1          # first byte of a Serf ack payload carrying a coordinate (§5.11)


# ---------------------------------------------------------------- memberlist

@dataclass(slots=True)
class Ping:
    seq_no: int
    node: str = ""                     # intended target; "" = whoever receives it
    source_addr: bytes = b""           # omitempty: where to send the ack
    source_port: int = 0
    source_node: str = ""


@dataclass(slots=True)
class IndirectPing:
    seq_no: int
    target: bytes                      # target IP, raw 4/16 bytes
    port: int
    node: str
    nack: bool = False
    source_addr: bytes = b""
    source_port: int = 0
    source_node: str = ""


@dataclass(slots=True)
class Ack:
    seq_no: int
    payload: bytes | None = None       # ping-delegate data (Serf: 0x01 + msgpack Coordinate)


@dataclass(slots=True)
class Nack:
    seq_no: int


@dataclass(slots=True)
class Suspect:
    incarnation: int
    node: str
    from_: str


@dataclass(slots=True)
class Alive:
    incarnation: int
    node: str
    addr: bytes
    port: int
    meta: bytes = b""
    vsn: bytes = b""


@dataclass(slots=True)
class Dead:
    incarnation: int
    node: str
    from_: str                         # == node: a voluntary leave


@dataclass(slots=True)
class PushNodeState:
    name: str
    addr: bytes
    port: int
    meta: bytes
    incarnation: int
    state: int
    vsn: bytes


@dataclass(slots=True)
class PushPull:
    """TCP push/pull body: header, every node state, raw delegate (Serf) state."""
    join: bool
    states: list[PushNodeState] = field(default_factory=list)
    user_state: bytes = b""


@dataclass(slots=True)
class User:
    """A delegate (Serf) message: the raw bytes after the memberlist type byte."""
    payload: bytes


@dataclass(slots=True)
class Err:
    error: str


class DecodedPacket(list):
    """The messages of one packet in order (compound and compress flattened), plus what
    memberlist would log and skip without dropping the rest of the packet:

    `truncated`: compound parts cut off because the packet ended before their declared
    length (memberlist: "Compound request had N truncated messages");
    `dropped`: a DecodeError for each compound part that failed to decode on its own.
    """
    __slots__ = ("truncated", "dropped")

    def __init__(self, msgs=(), truncated: int = 0, dropped: list | None = None) -> None:
        super().__init__(msgs)
        self.truncated = truncated
        self.dropped = [] if dropped is None else dropped

    def __repr__(self) -> str:
        return (f"DecodedPacket({list.__repr__(self)}, truncated={self.truncated}, "
                f"dropped={self.dropped!r})")


# ---------------------------------------------------------------- Serf

@dataclass(slots=True)
class SerfLeave:
    ltime: int
    node: str
    prune: bool = False


@dataclass(slots=True)
class SerfJoin:
    ltime: int
    node: str


@dataclass(slots=True)
class SerfUserEvent:
    ltime: int
    name: str
    payload: bytes = b""
    cc: bool = False                   # coalesce


@dataclass(slots=True)
class SerfUserEvents:
    """One LTime slot of the event ring in a Serf push/pull."""
    ltime: int
    events: list[tuple[str, bytes]] = field(default_factory=list)   # (name, payload)


@dataclass(slots=True)
class SerfPushPull:
    ltime: int
    status_ltimes: dict[str, int] = field(default_factory=dict)
    left_members: list[str] = field(default_factory=list)
    event_ltime: int = 0
    events: list[SerfUserEvents | None] = field(default_factory=list)
    query_ltime: int = 0


@dataclass(slots=True)
class SerfQuery:
    ltime: int
    id: int
    addr: bytes
    port: int
    source_node: str
    name: str
    payload: bytes = b""
    filters: list[bytes] = field(default_factory=list)
    flags: int = 0
    relay_factor: int = 0
    timeout: int = 0                   # nanoseconds (Go time.Duration)


@dataclass(slots=True)
class SerfQueryResponse:
    ltime: int
    id: int
    from_: str
    payload: bytes = b""
    flags: int = 0


@dataclass(slots=True)
class SerfRelay:
    """Forward `inner` (a whole encoded Serf message) as a user message to dest."""
    dest_addr: bytes
    dest_port: int
    dest_name: str
    inner: bytes
    dest_zone: str = ""                # Go net.UDPAddr.Zone (IPv6 scope), usually empty

"""Raft's data types and their msgpack wire form (shared by the core, the WAL, the driver
and the simulator). Pure: no I/O.

Servers are named by their ID (a string: Consul's node ID, a UUID); each carries the RPC
address Raft reaches it on, so the configuration alone tells the driver where to send.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from _core.errors import DecodeError

# ------------------------------------------------------------------ message types
# Local to one node (never on the wire): fed through RaftCore's methods, not step().
MSG_HUP = 0             # campaign now (election timeout fired, or `campaign()`)
MSG_BEAT = 1            # leader: send heartbeats now
MSG_PROP = 2            # proposal (a follower forwards nothing: propose() raises NotLeader)
# On the wire.
MSG_APP = 3             # AppendEntries: log_term/index = prev entry; entries; commit
MSG_APP_RESP = 4        # index = last matching index; reject + reject_hint on mismatch
MSG_VOTE = 5            # RequestVote: log_term/index = candidate's last entry
MSG_VOTE_RESP = 6       # reject = vote refused
MSG_PRE_VOTE = 7        # PreVote (term = the term the candidate *would* use)
MSG_PRE_VOTE_RESP = 8
MSG_SNAP = 9            # InstallSnapshot: snapshot (meta) + snapshot_data (the driver fills it)
MSG_HEARTBEAT = 10      # commit = min(follower's match, leader's commit); context = read ctx
MSG_HEARTBEAT_RESP = 11
MSG_TIMEOUT_NOW = 12    # leadership transfer: campaign at once, skipping PreVote
MSG_READ_INDEX = 13     # follower → leader: context = the read's id
MSG_READ_INDEX_RESP = 14  # index = the read index; reject = the leader could not serve it
MSG_TRANSFER_LEADER = 15  # follower → leader: please transfer to `frm`
MSG_MAX = 15

MSG_NAMES = {
    MSG_HUP: "hup", MSG_BEAT: "beat", MSG_PROP: "prop", MSG_APP: "app", MSG_APP_RESP: "app_resp",
    MSG_VOTE: "vote", MSG_VOTE_RESP: "vote_resp", MSG_PRE_VOTE: "pre_vote",
    MSG_PRE_VOTE_RESP: "pre_vote_resp", MSG_SNAP: "snap", MSG_HEARTBEAT: "heartbeat",
    MSG_HEARTBEAT_RESP: "heartbeat_resp", MSG_TIMEOUT_NOW: "timeout_now",
    MSG_READ_INDEX: "read_index", MSG_READ_INDEX_RESP: "read_index_resp",
    MSG_TRANSFER_LEADER: "transfer_leader",
}

# ------------------------------------------------------------------ entry types
ENTRY_NORMAL = 0        # data = the state machine's command (b"" = the leader's no-op)
ENTRY_CONFIG = 1        # data = encode_configuration(the whole new configuration)

# ------------------------------------------------------------------ roles
FOLLOWER = "follower"
CANDIDATE = "candidate"
PRE_CANDIDATE = "pre-candidate"
LEADER = "leader"


@dataclass(slots=True)
class Entry:
    term: int
    index: int
    type: int = ENTRY_NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Server:
    """One member of the configuration (hashicorp/raft's Server): a voter or a non-voter."""
    id: str
    address: str        # "ip:port" of its RPC server (Raft travels on it, byte 1)
    voter: bool = True


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int                          # last entry the snapshot covers
    term: int                           # its term
    configuration: tuple[Server, ...]   # the configuration as of `index`


@dataclass(slots=True)
class HardState:
    """What must be on disk before any message that depends on it is sent."""
    term: int = 0
    vote: str = ""
    commit: int = 0


@dataclass(slots=True)
class Message:
    type: int
    to: str
    frm: str
    term: int = 0
    log_term: int = 0
    index: int = 0
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    entries: list[Entry] = field(default_factory=list)
    snapshot: SnapshotMeta | None = None
    snapshot_data: bytes = b""


# ------------------------------------------------------------------ codec
# A message is one msgpack array:
# [type, to, frm, term, log_term, index, commit, reject, reject_hint, context,
#  [[term, index, type, data], ...], snapshot or nil, snapshot_data]
# snapshot = [index, term, [[id, address, voter], ...]]

def _servers_out(servers) -> list:
    return [[s.id, s.address, s.voter] for s in servers]


def _servers_in(raw) -> tuple[Server, ...]:
    if not isinstance(raw, list):
        raise DecodeError("configuration is not an array")
    out = []
    for s in raw:
        if (not isinstance(s, list) or len(s) != 3 or not isinstance(s[0], str)
                or not isinstance(s[1], str) or not isinstance(s[2], bool)):
            raise DecodeError("bad server in configuration")
        out.append(Server(s[0], s[1], s[2]))
    return tuple(out)


def encode_configuration(servers) -> bytes:
    """The data of an ENTRY_CONFIG entry."""
    return msgpack.packb(_servers_out(servers))


def decode_configuration(data: bytes) -> tuple[Server, ...]:
    try:
        raw = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises several types for garbage
        raise DecodeError(f"bad configuration: {exc}") from None
    return _servers_in(raw)


def encode_snapshot_meta(meta: SnapshotMeta) -> list:
    return [meta.index, meta.term, _servers_out(meta.configuration)]


def decode_snapshot_meta(raw) -> SnapshotMeta:
    if (not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], int)
            or not isinstance(raw[1], int) or raw[0] < 0 or raw[1] < 0):
        raise DecodeError("bad snapshot metadata")
    return SnapshotMeta(raw[0], raw[1], _servers_in(raw[2]))


def encode_message(msg: Message) -> bytes:
    return msgpack.packb([
        msg.type, msg.to, msg.frm, msg.term, msg.log_term, msg.index, msg.commit, msg.reject,
        msg.reject_hint, msg.context, [[e.term, e.index, e.type, e.data] for e in msg.entries],
        None if msg.snapshot is None else encode_snapshot_meta(msg.snapshot), msg.snapshot_data,
    ])


def _uint(v, what: str) -> int:
    if type(v) is not int or v < 0:
        raise DecodeError(f"{what} is not an unsigned integer")
    return v


def decode_message(data: bytes) -> Message:
    """One wire message; DecodeError for anything that is not a well-formed one."""
    try:
        raw = msgpack.unpackb(data)
    except Exception as exc:
        raise DecodeError(f"bad raft message: {exc}") from None
    if not isinstance(raw, list) or len(raw) != 13:
        raise DecodeError("raft message is not a 13-element array")
    (typ, to, frm, term, log_term, index, commit, reject, hint, ctx, ents, snap,
     snap_data) = raw
    if type(typ) is not int or not MSG_APP <= typ <= MSG_MAX:
        raise DecodeError(f"unknown raft message type {typ!r}")
    if not isinstance(to, str) or not isinstance(frm, str) or not isinstance(reject, bool):
        raise DecodeError("bad raft message fields")
    if not isinstance(ctx, bytes) or not isinstance(snap_data, bytes) or not isinstance(ents, list):
        raise DecodeError("bad raft message fields")
    entries = []
    for e in ents:
        if (not isinstance(e, list) or len(e) != 4 or not isinstance(e[3], bytes)
                or e[2] not in (ENTRY_NORMAL, ENTRY_CONFIG)):
            raise DecodeError("bad raft entry")
        entries.append(Entry(_uint(e[0], "entry term"), _uint(e[1], "entry index"), e[2], e[3]))
    return Message(typ, to, frm, _uint(term, "term"), _uint(log_term, "log_term"),
                   _uint(index, "index"), _uint(commit, "commit"), reject,
                   _uint(hint, "reject_hint"), ctx, entries,
                   None if snap is None else decode_snapshot_meta(snap), snap_data)

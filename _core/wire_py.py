"""memberlist and Serf wire codec, pure-Python twin of `wire_c` (same API, same errors).

Spec: shared/spec/memberlist-wire.md §1 (messages, compound, CRC, label, LZW), §2
(encryption), §3.1–3.2 (streams, push/pull), §5.1–5.2, §5.4, §5.8, §5.11 (Serf).

This module has two halves:

* The msgpack struct mapping (message objects of `_core.messages` ⇄ Go structs), shared
  with `wire_c`, which imports it: `encode_message`, `encode_serf`/`decode_serf`, tags,
  ack payloads, and the `_struct_*` / `_stream_message` helpers that decode one
  complete body. It follows go-msgpack 0.5.x (spec §1.3): structs are maps keyed by the
  Go field name, written in sorted key order; strings and byte slices in the old raw
  family (`use_bin_type=False`); non-negative ints in the smallest unsigned form. Decoding
  accepts keys in any order, skips unknown keys, gives missing keys and nil their zero
  value, and ignores bytes after the object (Go decodes one object from a reader).
  Bodies are unpacked with `raw=False, unicode_errors="surrogateescape"`, so str-family
  values arrive as `str` (byte fields take their exact bytes back) and bin-family values
  as `bytes` (a bin-encoded Go string is refused, as Go 0.5.x does).

* The layering (label, encryption, CRC, compound, compress; stream framing), written
  independently in `wire_c` so the two can be tested against each other.

Errors are `DecodeError` subclasses with an offset into the layer they were found in:
the packet or stream as received for label/CRC/compound framing (stream offsets count
from the first byte fed), the message's first byte for a body that does not decode, 0 for
decryption failures, and the LZW data for decompression failures.
"""
from __future__ import annotations

import operator
import zlib
from typing import Any

import msgpack

from . import lzw
from .errors import (BadCompression, BadChecksum, DecodeError, DecryptError, MalformedPacket,
                     PacketTooLarge)
from .keyring import ENCRYPT_OVERHEAD
from .messages import (
    ACK_RESP, ALIVE, COMPOUND, COMPRESS, DEAD, ENCRYPT, ERR, HAS_CRC, HAS_LABEL, INDIRECT_PING,
    NACK_RESP, PING, PING_VERSION, PUSH_PULL, SERF_JOIN, SERF_LEAVE, SERF_PUSH_PULL, SERF_QUERY,
    SERF_QUERY_RESPONSE, SERF_RELAY, SERF_USER_EVENT, SUSPECT, USER,
    Ack, Alive, Dead, DecodedPacket, Err, IndirectPing, Nack, Ping, PushNodeState, PushPull,
    SerfJoin, SerfLeave, SerfPushPull, SerfQuery, SerfQueryResponse, SerfRelay, SerfUserEvent,
    SerfUserEvents, Suspect, User,
)
from .msgpack_scan import ARRAY as _ARRAY
from .msgpack_scan import BLOB as _BLOB
from .msgpack_scan import CLASS as _CLASS
from .msgpack_scan import FIXED as _FIXED
from .msgpack_scan import INVALID as _INVALID
from .msgpack_scan import MAP as _MAP
from .msgpack_scan import SIZE as _SIZE
from .msgpack_scan import WIDTH as _WIDTH

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED", "DEFAULT_MAX_STREAM", "MAX_COMPOUND_PARTS", "MAX_NESTING",
    "COMPOUND_HEADER_OVERHEAD", "COMPOUND_OVERHEAD", "USER_MSG_OVERHEAD", "CRC_OVERHEAD",
    "ENCRYPT_OVERHEAD", "DecodedPacket",
    "encode_message", "make_compound", "compress_message", "label_header", "encode_packet",
    "decode_packet", "encode_stream", "StreamDecoder",
    "encode_serf", "decode_serf", "encode_tags", "decode_tags",
    "encode_ack_payload", "decode_ack_payload",
]

DEFAULT_MAX_DECOMPRESSED = 40 * 1024 * 1024   # maxDecompressedBytes (memberlist ≥ 0.6)
DEFAULT_MAX_STREAM = 20 * 1024 * 1024         # maxPushStateBytes
MAX_COMPOUND_PARTS = 255                      # the part count is one byte (§1.5)
MAX_NESTING = 16     # compound/compress levels; memberlist recurses without limit, but its
                     # own packets nest at most 2 deep and Python's stack is not a goroutine's
COMPOUND_HEADER_OVERHEAD = 2                  # compoundHeaderOverhead: type + count
COMPOUND_OVERHEAD = 2                         # compoundOverhead: u16 length per part
USER_MSG_OVERHEAD = 1                         # userMsgOverhead: the type byte
CRC_OVERHEAD = 5                              # u8 12 | u32be crc
LZW_ALGO = 0                                  # lzwAlgo, the only compress.Algo

_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

_unpackb = msgpack.unpackb
_ExtraData = msgpack.ExtraData
_OutOfData = msgpack.OutOfData
_pack = msgpack.Packer(use_bin_type=False).pack   # go-msgpack 0.5.x: raw family, no str8/bin


# ============================================================ struct mapping (shared)

def _as_bytes(data: Any) -> bytes:
    """bytes of any buffer (bytes(5) would be five zeros: refuse non-buffers)."""
    return data if type(data) is bytes else bytes(memoryview(data))


def _kind(v: Any) -> str:
    """The msgpack family of a decoded value, for error reasons."""
    if v is None:
        return "nil"
    t = type(v)
    if t is str:
        return "str"
    if t is bytes:
        return "bin"
    return {bool: "bool", int: "int", float: "float", list: "array", dict: "map"}.get(
        t, t.__name__)


def _bad(what: str, key: str, problem: str, off: int) -> MalformedPacket:
    return MalformedPacket(f"{what} field {key}: {problem}", off)


def _uint(limit: int, name: str):
    def conv(v: Any, what: str, key: str, off: int) -> int:
        if type(v) is int:
            if 0 <= v <= limit:
                return v
            raise _bad(what, key, f"{v} out of range for {name}", off)
        if v is None:
            return 0
        raise _bad(what, key, f"expected {name}, got {_kind(v)}", off)
    return conv


_u8 = _uint(_U8, "uint8")
_u16 = _uint(_U16, "uint16")
_u32 = _uint(_U32, "uint32")
_u64 = _uint(_U64, "uint64")


def _i64(v: Any, what: str, key: str, off: int) -> int:
    if type(v) is int:
        if _I64_MIN <= v <= _I64_MAX:
            return v
        raise _bad(what, key, f"{v} out of range for int64", off)
    if v is None:
        return 0
    raise _bad(what, key, f"expected int64, got {_kind(v)}", off)


def _bool(v: Any, what: str, key: str, off: int) -> bool:
    if type(v) is bool:
        return v
    if v is None:
        return False
    if type(v) is int and (v == 0 or v == 1):    # go-msgpack 0.5.x DecodeBool takes 0/1
        return v == 1
    raise _bad(what, key, f"expected bool, got {_kind(v)}", off)


def _float(v: Any, what: str, key: str, off: int) -> float:
    t = type(v)
    if t is float:
        return v
    if t is int:
        return float(v)
    if v is None:
        return 0.0
    raise _bad(what, key, f"expected float64, got {_kind(v)}", off)


def _string(v: Any, what: str, key: str, off: int) -> str:
    if type(v) is str:
        if not v.isascii():
            try:
                v.encode("utf-8")        # escaped bytes (invalid UTF-8 on the wire) fail
            except UnicodeEncodeError:
                raise _bad(what, key, "not valid UTF-8", off) from None
        return v
    if v is None:
        return ""
    raise _bad(what, key, f"expected str, got {_kind(v)}", off)


def _bytes(v: Any, what: str, key: str, off: int) -> bytes:
    t = type(v)
    if t is str:
        return v.encode("utf-8", "surrogateescape")     # the exact bytes sent
    if t is bytes:
        return v
    if v is None:
        return b""
    if t is list:                     # Go's slice path: an array of uint8
        for x in v:
            if type(x) is not int or not 0 <= x <= _U8:
                raise _bad(what, key, f"array element {x!r} is not a uint8", off)
        return bytes(v)
    raise _bad(what, key, f"expected bytes, got {_kind(v)}", off)


def _opt_bytes(v: Any, what: str, key: str, off: int) -> bytes | None:
    """A []byte whose nil is kept apart from empty (ackResp.Payload)."""
    if v is None:
        return None
    return _bytes(v, what, key, off)


def _addr(v: Any, what: str, key: str, off: int) -> bytes:
    b = _bytes(v, what, key, off)
    if len(b) != 4 and len(b) != 16:
        raise _bad(what, key, f"address must be 4 or 16 bytes, got {len(b)}", off)
    return b


def _opt_addr(v: Any, what: str, key: str, off: int) -> bytes:
    b = _bytes(v, what, key, off)
    if len(b) != 4 and len(b) != 16 and len(b) != 0:
        raise _bad(what, key, f"address must be 4 or 16 bytes, got {len(b)}", off)
    return b


def _vsn(v: Any, what: str, key: str, off: int) -> bytes:
    b = _bytes(v, what, key, off)
    if len(b) != 6 and len(b) != 0:   # 0.2.2 indexes Vsn[0..5] whenever it is non-empty
        raise _bad(what, key, f"Vsn must be 6 bytes, got {len(b)}", off)
    return b


def _str_list(v: Any, what: str, key: str, off: int) -> list[str]:
    if type(v) is list:
        return [_string(x, what, f"{key}[{i}]", off) for i, x in enumerate(v)]
    if v is None:
        return []
    raise _bad(what, key, f"expected array, got {_kind(v)}", off)


def _bytes_list(v: Any, what: str, key: str, off: int) -> list[bytes]:
    if type(v) is list:
        return [_bytes(x, what, f"{key}[{i}]", off) for i, x in enumerate(v)]
    if v is None:
        return []
    raise _bad(what, key, f"expected array, got {_kind(v)}", off)


def _float_list(v: Any, what: str, key: str, off: int) -> list[float]:
    if type(v) is list:
        return [_float(x, what, f"{key}[{i}]", off) for i, x in enumerate(v)]
    if v is None:
        return []
    raise _bad(what, key, f"expected array, got {_kind(v)}", off)


def _ltime_map(v: Any, what: str, key: str, off: int) -> dict[str, int]:
    """map[string]LamportTime: keys are Go strings (str family only), values uint64."""
    if type(v) is dict:
        out = {}
        for k, x in v.items():
            name = _string(k, what, f"{key} key", off)
            out[name] = _u64(x, what, f"{key}[{name!r}]", off)
        return out
    if v is None:
        return {}
    raise _bad(what, key, f"expected map, got {_kind(v)}", off)


def _fields(obj: Any, what: str, off: int, spec: dict, values: list) -> list:
    """Fill `values` (the zero values, in the message class's field order) from a Go struct map."""
    if type(obj) is not dict:
        if obj is None:                    # Go decodes nil into a struct as its zero value
            return values
        raise MalformedPacket(f"{what} is not a map (got {_kind(obj)})", off)
    for k, v in obj.items():
        f = spec.get(k) if type(k) is str else None
        if f is None:
            if type(k) is not str:     # Go decodes every key as a string
                raise MalformedPacket(f"{what} has a map key that is not a str ({_kind(k)})",
                                      off)
            continue                   # unknown field: skipped, as go-msgpack does
        values[f[0]] = f[1](v, what, k, off)
    return values


def _required_addr(values: list, i: int, what: str, key: str, off: int) -> None:
    """An address field that was missing (its zero value is no address at all)."""
    n = len(values[i])
    if n != 4 and n != 16:
        raise _bad(what, key, f"address must be 4 or 16 bytes, got {n}", off)


# -- memberlist structs (§1.4); spec: Go key -> (index in the class's fields, converter)

_PING = {"SeqNo": (0, _u32), "Node": (1, _string), "SourceAddr": (2, _opt_addr),
         "SourcePort": (3, _u16), "SourceNode": (4, _string)}
_INDIRECT = {"SeqNo": (0, _u32), "Target": (1, _addr), "Port": (2, _u16), "Node": (3, _string),
             "Nack": (4, _bool), "SourceAddr": (5, _opt_addr), "SourcePort": (6, _u16),
             "SourceNode": (7, _string)}
_ACK = {"SeqNo": (0, _u32), "Payload": (1, _opt_bytes)}
_NACK = {"SeqNo": (0, _u32)}
_SUSPECT_DEAD = {"Incarnation": (0, _u32), "Node": (1, _string), "From": (2, _string)}
_ALIVE = {"Incarnation": (0, _u32), "Node": (1, _string), "Addr": (2, _addr), "Port": (3, _u16),
          "Meta": (4, _bytes), "Vsn": (5, _vsn)}
_STATE = {"Name": (0, _string), "Addr": (1, _addr), "Port": (2, _u16), "Meta": (3, _bytes),
          "Incarnation": (4, _u32), "State": (5, _i64), "Vsn": (6, _vsn)}
_PP_HEADER = {"Join": (0, _bool), "Nodes": (1, _i64), "UserStateLen": (2, _i64)}
_USER_HEADER = {"UserMsgLen": (0, _i64)}
_ERR = {"Error": (0, _string)}
_COMPRESS = {"Algo": (0, _u8), "Buf": (1, _bytes)}


def _struct_ping(obj: Any, off: int) -> Ping:
    return Ping(*_fields(obj, "ping", off, _PING, [0, "", b"", 0, ""]))


def _struct_indirect_ping(obj: Any, off: int) -> IndirectPing:
    v = _fields(obj, "indirect ping", off, _INDIRECT, [0, b"", 0, "", False, b"", 0, ""])
    _required_addr(v, 1, "indirect ping", "Target", off)
    return IndirectPing(*v)


def _struct_ack(obj: Any, off: int) -> Ack:
    return Ack(*_fields(obj, "ack", off, _ACK, [0, None]))


def _struct_nack(obj: Any, off: int) -> Nack:
    return Nack(*_fields(obj, "nack", off, _NACK, [0]))


def _struct_suspect(obj: Any, off: int) -> Suspect:
    return Suspect(*_fields(obj, "suspect", off, _SUSPECT_DEAD, [0, "", ""]))


def _struct_alive(obj: Any, off: int) -> Alive:
    v = _fields(obj, "alive", off, _ALIVE, [0, "", b"", 0, b"", b""])
    _required_addr(v, 2, "alive", "Addr", off)
    return Alive(*v)


def _struct_dead(obj: Any, off: int) -> Dead:
    return Dead(*_fields(obj, "dead", off, _SUSPECT_DEAD, [0, "", ""]))


def _struct_err(obj: Any, off: int) -> Err:
    return Err(*_fields(obj, "error response", off, _ERR, [""]))


def _struct_push_node_state(obj: Any, off: int) -> PushNodeState:
    v = _fields(obj, "push/pull node state", off, _STATE, ["", b"", 0, b"", 0, 0, b""])
    _required_addr(v, 1, "push/pull node state", "Addr", off)
    return PushNodeState(*v)


def _struct_push_pull_header(obj: Any, off: int) -> tuple[bool, int, int]:
    """(Join, Nodes, UserStateLen); negative counts refused (Go's make() would panic)."""
    join, nodes, user_len = _fields(obj, "push/pull header", off, _PP_HEADER, [False, 0, 0])
    if nodes < 0:
        raise MalformedPacket(f"push/pull header field Nodes: negative count {nodes}", off)
    if user_len < 0:
        raise MalformedPacket(
            f"push/pull header field UserStateLen: negative length {user_len}", off)
    return join, nodes, user_len


def _struct_user_header(obj: Any, off: int) -> int:
    (n,) = _fields(obj, "user message header", off, _USER_HEADER, [0])
    if n < 0:
        raise MalformedPacket(f"user message header field UserMsgLen: negative length {n}", off)
    return n


def _struct_compress(obj: Any, off: int) -> bytes:
    """The LZW data of a compress object; BadCompression for an unknown algorithm."""
    algo, buf = _fields(obj, "compress", off, _COMPRESS, [0, b""])
    if algo != LZW_ALGO:
        raise BadCompression(f"Cannot decompress unknown algorithm {algo}", off)
    return buf


_PACKET_STRUCTS = {
    PING: ("ping", _struct_ping),
    INDIRECT_PING: ("indirect ping", _struct_indirect_ping),
    ACK_RESP: ("ack", _struct_ack),
    SUSPECT: ("suspect", _struct_suspect),
    ALIVE: ("alive", _struct_alive),
    DEAD: ("dead", _struct_dead),
    NACK_RESP: ("nack", _struct_nack),
}
_STREAM_STRUCTS = {
    PING: ("ping", _struct_ping),
    ACK_RESP: ("ack", _struct_ack),
    ERR: ("error response", _struct_err),
}
PACKET_TYPES = frozenset(_PACKET_STRUCTS) | {COMPOUND, COMPRESS, USER}
STREAM_TYPES = frozenset(_STREAM_STRUCTS) | {PUSH_PULL, USER}


def _undecodable(what: str, exc: Exception, off: int) -> MalformedPacket:
    detail = str(exc)
    reason = f"undecodable {what}: {type(exc).__name__}"
    return MalformedPacket(f"{reason}: {detail}" if detail else reason, off)


def _unpack(data: Any, what: str, off: int) -> Any:
    """One msgpack object from the start of `data`; bytes after it are ignored, as in Go."""
    try:
        return _unpackb(data, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except _ExtraData as exc:
        return exc.unpacked
    except Exception as exc:      # anything msgpack refuses is the peer's fault
        raise _undecodable(what, exc, off) from None


def _unpacker(data: Any) -> msgpack.Unpacker:
    """An Unpacker over the whole of `data`: an object cut off by its end is "truncated".

    Its length limits are the buffer's size (a declared length beyond it is truncation,
    where msgpack's defaults of size/2 for maps would call it a limit error)."""
    n = max(len(data), 1)
    u = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                         max_buffer_size=n, max_str_len=n, max_bin_len=n, max_array_len=n,
                         max_map_len=n, max_ext_len=n)
    u.feed(data)
    return u


def _next(u: msgpack.Unpacker, what: str, off: int) -> Any:
    try:
        return u.unpack()
    except _OutOfData:
        raise MalformedPacket(f"{what} truncated", off) from None
    except Exception as exc:
        raise _undecodable(what, exc, off) from None


def _packet_struct(t: int, body: Any, off: int) -> Any:
    """The message of packet type `t` (a struct type of _PACKET_STRUCTS) from its body."""
    what, make = _PACKET_STRUCTS[t]
    return make(_unpack(body, what, off), off)


def _decompress(body: Any, off: int, budget: int) -> bytes:
    """LZW-decode the payload of a compress message body (after its type byte)."""
    data = _struct_compress(_unpack(body, "compress", off), off)
    return lzw.decompress(data, budget)


def _stream_message(data: bytes, off: int, allow_compress: bool, max_decompressed: int) -> Any:
    """One whole stream message (type byte first) read from a complete buffer: what a
    decrypted or decompressed stream message holds, or a plain one already delimited.

    memberlist reads the message from a reader over this buffer: bytes after it are
    ignored; a compress wrapper is opened once (§3.1).
    """
    if not data:
        raise MalformedPacket("missing message type byte", off)
    t = data[0]
    if t == COMPRESS and allow_compress:
        inner = _decompress(memoryview(data)[1:], off, max_decompressed)
        return _stream_message(inner, off, False, max_decompressed)
    entry = _STREAM_STRUCTS.get(t)
    if entry is not None:
        return entry[1](_unpack(memoryview(data)[1:], entry[0], off), off)
    if t == PUSH_PULL:
        u = _unpacker(memoryview(data)[1:])
        join, nodes, user_len = _struct_push_pull_header(
            _next(u, "push/pull header", off), off)
        states = []
        for _ in range(nodes):
            states.append(_struct_push_node_state(_next(u, "push/pull node state", off), off))
        pos = 1 + u.tell()
        if len(data) - pos < user_len:
            raise MalformedPacket("push/pull user state truncated", off)
        return PushPull(join, states, bytes(data[pos:pos + user_len]))
    if t == USER:
        u = _unpacker(memoryview(data)[1:])
        n = _struct_user_header(_next(u, "user message header", off), off)
        pos = 1 + u.tell()
        if len(data) - pos < n:
            raise MalformedPacket("user message truncated", off)
        return User(bytes(data[pos:pos + n]))
    raise MalformedPacket(f"unexpected stream message type {t}", off)


# -- encoding (Go's sorted key order; §1.3–1.4)

def _check_addr(addr: bytes, name: str, optional: bool = False) -> bytes:
    n = len(addr)
    if n != 4 and n != 16 and not (optional and n == 0):
        raise ValueError(f"{name} must be 4 or 16 bytes, got {n}")
    return addr


def _check_vsn(vsn: bytes) -> bytes:
    if len(vsn) != 6:
        raise ValueError(f"vsn must be 6 bytes, got {len(vsn)}")
    return vsn


def _enc_ping(m: Ping) -> bytes:
    d = {"Node": m.node, "SeqNo": m.seq_no}
    if m.source_addr:                         # the Source* fields are omitempty
        d["SourceAddr"] = _check_addr(m.source_addr, "source_addr")
    if m.source_node:
        d["SourceNode"] = m.source_node
    if m.source_port:
        d["SourcePort"] = m.source_port
    return b"\x00" + _pack(d)


def _enc_indirect_ping(m: IndirectPing) -> bytes:
    d = {"Nack": bool(m.nack), "Node": m.node, "Port": m.port, "SeqNo": m.seq_no}
    if m.source_addr:
        d["SourceAddr"] = _check_addr(m.source_addr, "source_addr")
    if m.source_node:
        d["SourceNode"] = m.source_node
    if m.source_port:
        d["SourcePort"] = m.source_port
    d["Target"] = _check_addr(m.target, "target")
    return b"\x01" + _pack(d)


def _enc_ack(m: Ack) -> bytes:
    return b"\x02" + _pack({"Payload": m.payload, "SeqNo": m.seq_no})


def _enc_nack(m: Nack) -> bytes:
    return b"\x0b" + _pack({"SeqNo": m.seq_no})


def _enc_suspect(m: Suspect) -> bytes:
    return b"\x03" + _pack({"From": m.from_, "Incarnation": m.incarnation, "Node": m.node})


def _enc_dead(m: Dead) -> bytes:
    return b"\x05" + _pack({"From": m.from_, "Incarnation": m.incarnation, "Node": m.node})


def _enc_alive(m: Alive) -> bytes:
    return b"\x04" + _pack({"Addr": _check_addr(m.addr, "addr"), "Incarnation": m.incarnation,
                            "Meta": m.meta, "Node": m.node, "Port": m.port,
                            "Vsn": _check_vsn(m.vsn)})


def _enc_state(s: PushNodeState) -> bytes:
    return _pack({"Addr": _check_addr(s.addr, "addr"), "Incarnation": s.incarnation,
                  "Meta": s.meta, "Name": s.name, "Port": s.port, "State": s.state,
                  "Vsn": _check_vsn(s.vsn)})


def _enc_push_pull(m: PushPull) -> bytes:
    header = _pack({"Join": bool(m.join), "Nodes": len(m.states),
                    "UserStateLen": len(m.user_state)})
    return b"".join([b"\x06", header, *map(_enc_state, m.states), m.user_state])


def _enc_user(m: User) -> bytes:
    return b"\x08" + m.payload


def _enc_err(m: Err) -> bytes:
    return b"\x0d" + _pack({"Error": m.error})


_ENCODERS = {
    Ping: _enc_ping, IndirectPing: _enc_indirect_ping, Ack: _enc_ack, Nack: _enc_nack,
    Suspect: _enc_suspect, Alive: _enc_alive, Dead: _enc_dead, PushPull: _enc_push_pull,
    User: _enc_user, Err: _enc_err,
}


def encode_message(msg: Any) -> bytes:
    """One memberlist message: its type byte, then its msgpack body as Go writes it.

    User → `08 | payload` (the packet form); PushPull → `06 | header | states | user state`.
    """
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        raise TypeError(f"not a memberlist message: {type(msg).__name__}")
    return enc(msg)


def _stream_body(msg: Any) -> bytes:
    """A stream message before compression/encryption (user messages in the stream form)."""
    t = type(msg)
    if t is User:
        return b"".join((b"\x08", _pack({"UserMsgLen": len(msg.payload)}), msg.payload))
    if t is PushPull or t is Ping or t is Ack or t is Err:
        return _ENCODERS[t](msg)
    raise TypeError(f"not a stream message: {t.__name__}")


def compress_message(payload: Any) -> bytes:
    """`09 | msgpack compress{Algo: 0, Buf: lzw(payload)}` (memberlist compressPayload)."""
    return b"\x09" + _pack({"Algo": LZW_ALGO, "Buf": lzw.compress(payload)})


def label_header(label: bytes) -> bytes:
    """`f4 | u8 len | label` (memberlist ≥ 0.3.0), or b"" for no label: what a dialer writes
    once at the start of a stream (packets get it from encode_packet)."""
    _check_label(label)
    if not label:
        return b""
    return b"\xf4" + bytes((len(label),)) + label


def _check_label(label: Any) -> None:
    if not isinstance(label, bytes):
        raise TypeError(f"label must be bytes, not {type(label).__name__}")
    if len(label) > 255:
        raise ValueError(f"label must be at most 255 bytes, got {len(label)}")


def _check_limit(value: Any, name: str) -> int:
    value = operator.index(value)
    if not 0 <= value <= 1 << 40:
        raise ValueError(f"{name} must be in 0..{1 << 40}, got {value}")
    return value


# -- Serf (§5.2, §5.4, §5.8, §5.11)

def _enc_events(e: SerfUserEvents | None) -> dict | None:
    if e is None:
        return None
    return {"Events": [{"Name": n, "Payload": p} for n, p in e.events], "LTime": e.ltime}


def _serf_push_pull_dict(m: SerfPushPull) -> dict:
    return {"EventLTime": m.event_ltime, "Events": [_enc_events(e) for e in m.events],
            "LTime": m.ltime, "LeftMembers": list(m.left_members),
            "QueryLTime": m.query_ltime, "StatusLTimes": dict(m.status_ltimes)}


def encode_serf(msg: Any) -> bytes:
    """`u8 serf type | msgpack body` (serf encodeMessage); relay: header, then the inner message."""
    t = type(msg)
    if t is SerfJoin:
        return b"\x01" + _pack({"LTime": msg.ltime, "Node": msg.node})
    if t is SerfLeave:
        return b"\x00" + _pack({"LTime": msg.ltime, "Node": msg.node, "Prune": bool(msg.prune)})
    if t is SerfUserEvent:
        return b"\x03" + _pack({"CC": bool(msg.cc), "LTime": msg.ltime, "Name": msg.name,
                                "Payload": msg.payload})
    if t is SerfQuery:
        return b"\x04" + _pack({
            "Addr": _check_addr(msg.addr, "addr"), "Filters": list(msg.filters),
            "Flags": msg.flags, "ID": msg.id, "LTime": msg.ltime, "Name": msg.name,
            "Payload": msg.payload, "Port": msg.port, "RelayFactor": msg.relay_factor,
            "SourceNode": msg.source_node, "Timeout": msg.timeout})
    if t is SerfQueryResponse:
        return b"\x05" + _pack({"Flags": msg.flags, "From": msg.from_, "ID": msg.id,
                                "LTime": msg.ltime, "Payload": msg.payload})
    if t is SerfPushPull:
        return b"\x02" + _pack(_serf_push_pull_dict(msg))
    if t is SerfRelay:
        header = {"DestAddr": {"IP": _check_addr(msg.dest_addr, "dest_addr"),
                               "Port": msg.dest_port, "Zone": msg.dest_zone},
                  "DestName": msg.dest_name}
        return b"".join((b"\x09", _pack(header), msg.inner))
    raise TypeError(f"not a Serf message: {t.__name__}")


_S_LEAVE = {"LTime": (0, _u64), "Node": (1, _string), "Prune": (2, _bool)}
_S_JOIN = {"LTime": (0, _u64), "Node": (1, _string)}
_S_EVENT = {"LTime": (0, _u64), "Name": (1, _string), "Payload": (2, _bytes), "CC": (3, _bool)}
_S_QUERY = {"LTime": (0, _u64), "ID": (1, _u32), "Addr": (2, _addr), "Port": (3, _u16),
            "SourceNode": (4, _string), "Name": (5, _string), "Payload": (6, _bytes),
            "Filters": (7, _bytes_list), "Flags": (8, _u32), "RelayFactor": (9, _u8),
            "Timeout": (10, _i64)}
_S_RESPONSE = {"LTime": (0, _u64), "ID": (1, _u32), "From": (2, _string), "Payload": (3, _bytes),
               "Flags": (4, _u32)}
_S_UDPADDR = {"IP": (0, _addr), "Port": (1, _i64), "Zone": (2, _string)}
_S_USER_EVENT = {"Name": (0, _string), "Payload": (1, _bytes)}
_COORD = {"Adjustment": (0, _float), "Error": (1, _float), "Height": (2, _float),
          "Vec": (3, _float_list)}


def _user_events(v: Any, what: str, key: str, off: int) -> SerfUserEvents | None:
    if v is None:                          # an empty slot of the event ring
        return None
    ltime, events = _fields(v, f"{what} {key}", off, _S_USER_EVENTS, [0, []])
    return SerfUserEvents(ltime, events)


def _user_event_list(v: Any, what: str, key: str, off: int) -> list[tuple[str, bytes]]:
    if type(v) is list:
        out = []
        for i, e in enumerate(v):
            name, payload = _fields(e, f"{what} {key}[{i}]", off, _S_USER_EVENT, ["", b""])
            out.append((name, payload))
        return out
    if v is None:
        return []
    raise _bad(what, key, f"expected array, got {_kind(v)}", off)


def _events_ring(v: Any, what: str, key: str, off: int) -> list[SerfUserEvents | None]:
    if type(v) is list:
        return [_user_events(x, what, f"{key}[{i}]", off) for i, x in enumerate(v)]
    if v is None:
        return []
    raise _bad(what, key, f"expected array, got {_kind(v)}", off)


_S_USER_EVENTS = {"LTime": (0, _u64), "Events": (1, _user_event_list)}
_S_PUSH_PULL = {"LTime": (0, _u64), "StatusLTimes": (1, _ltime_map),
                "LeftMembers": (2, _str_list), "EventLTime": (3, _u64),
                "Events": (4, _events_ring), "QueryLTime": (5, _u64)}


def _udp_addr(v: Any, what: str, key: str, off: int) -> list:
    vals = _fields(v, f"{what} {key}", off, _S_UDPADDR, [b"", 0, ""])
    _required_addr(vals, 0, f"{what} {key}", "IP", off)
    if not 0 <= vals[1] <= _U16:
        raise _bad(f"{what} {key}", "Port", f"{vals[1]} out of range for a port", off)
    return vals


_S_RELAY = {"DestAddr": (0, _udp_addr), "DestName": (1, _string)}


def decode_serf(data: Any) -> Any:
    """The Serf message in a memberlist user payload (`u8 type | msgpack body`)."""
    data = _as_bytes(data)
    if not data:
        raise MalformedPacket("missing Serf message type byte", 0)
    t = data[0]
    body = memoryview(data)[1:]
    if t == SERF_JOIN:
        return SerfJoin(*_fields(_unpack(body, "serf join", 0), "serf join", 0, _S_JOIN, [0, ""]))
    if t == SERF_LEAVE:
        return SerfLeave(*_fields(_unpack(body, "serf leave", 0), "serf leave", 0, _S_LEAVE,
                                  [0, "", False]))
    if t == SERF_USER_EVENT:
        return SerfUserEvent(*_fields(_unpack(body, "serf user event", 0), "serf user event", 0,
                                      _S_EVENT, [0, "", b"", False]))
    if t == SERF_QUERY:
        v = _fields(_unpack(body, "serf query", 0), "serf query", 0, _S_QUERY,
                    [0, 0, b"", 0, "", "", b"", [], 0, 0, 0])
        _required_addr(v, 2, "serf query", "Addr", 0)
        return SerfQuery(*v)
    if t == SERF_QUERY_RESPONSE:
        return SerfQueryResponse(*_fields(_unpack(body, "serf query response", 0),
                                          "serf query response", 0, _S_RESPONSE,
                                          [0, 0, "", b"", 0]))
    if t == SERF_PUSH_PULL:
        return SerfPushPull(*_fields(_unpack(body, "serf push/pull", 0), "serf push/pull", 0,
                                     _S_PUSH_PULL, [0, {}, [], 0, [], 0]))
    if t == SERF_RELAY:
        u = _unpacker(body)
        header = _next(u, "serf relay header", 0)
        dest, name = _fields(header, "serf relay header", 0, _S_RELAY, [None, ""])
        if dest is None:
            raise MalformedPacket("serf relay header field DestAddr: missing", 0)
        ip, port, zone = dest
        return SerfRelay(ip, port, name, data[1 + u.tell():], zone)
    raise MalformedPacket(f"unknown Serf message type {t}", 0)


def encode_tags(tags: dict[str, str]) -> bytes:
    """Serf node meta: `ff | msgpack map[string]string`, keys sorted (Go's order is random;
    a stable encoding keeps our meta bytes equal while the tags are). Checking the 512-byte
    limit (MetaMaxSize) is the caller's job."""
    for k, v in tags.items():
        if type(k) is not str or type(v) is not str:
            raise TypeError("tag names and values must be str")
    return b"\xff" + _pack({k: tags[k] for k in sorted(tags)})


def decode_tags(meta: Any) -> dict[str, str]:
    """Tags from Serf node meta; meta without the 0xff magic is the protocol-2 form
    `{"role": meta}` (serf decodeTags). MalformedPacket where serf would log a decode error."""
    meta = _as_bytes(meta)
    if not meta or meta[0] != 0xFF:
        return {"role": meta.decode("utf-8", "replace")}
    obj = _unpack(memoryview(meta)[1:], "tags", 1)
    if obj is None:
        return {}
    if type(obj) is not dict:
        raise MalformedPacket(f"tags are not a map (got {_kind(obj)})", 1)
    return {_string(k, "tags", "key", 1): _string(v, "tags", repr(k), 1) for k, v in obj.items()}


def encode_ack_payload(coord_wire: dict) -> bytes:
    """`01 | msgpack Coordinate{Adjustment, Error, Height, Vec}` (serf ping delegate)."""
    return b"\x01" + _pack({"Adjustment": float(coord_wire.get("Adjustment", 0.0)),
                            "Error": float(coord_wire.get("Error", 0.0)),
                            "Height": float(coord_wire.get("Height", 0.0)),
                            "Vec": [float(x) for x in coord_wire.get("Vec", ())]})


def decode_ack_payload(payload: Any) -> dict:
    """The coordinate of a Serf ack payload as {"Adjustment", "Error", "Height", "Vec"}.

    Serf ignores an empty payload (a peer without coordinates): check before calling.
    """
    payload = _as_bytes(payload)
    if not payload:
        raise MalformedPacket("empty ack payload", 0)
    if payload[0] != PING_VERSION:
        raise MalformedPacket(f"unsupported ping version {payload[0]}", 0)
    adj, err, height, vec = _fields(_unpack(memoryview(payload)[1:], "coordinate", 1),
                                    "coordinate", 1, _COORD, [0.0, 0.0, 0.0, []])
    return {"Adjustment": adj, "Error": err, "Height": height, "Vec": vec}


# ============================================================ layering (twin of wire_c)

def make_compound(parts: list[bytes]) -> bytes:
    """`07 | u8 n | n × u16be len | parts` (memberlist makeCompoundMessage), n ≤ 255."""
    n = len(parts)
    if n > MAX_COMPOUND_PARTS:
        raise ValueError(f"a compound message holds at most {MAX_COMPOUND_PARTS} parts, got {n}")
    out = bytearray((COMPOUND, n))
    for p in parts:
        if len(p) > _U16:
            raise ValueError(f"compound part of {len(p)} bytes exceeds 65535")
        out += len(p).to_bytes(2, "big")
    for p in parts:
        out += p
    return bytes(out)


def encode_packet(parts: list[bytes], *, compress: bool = False, crc: bool = False,
                  keyring: Any = None, nonce: bytes | None = None, label: bytes = b"") -> bytes:
    """One UDP payload: one part bare, several as a compound; then compress (only when that
    is shorter), CRC, encryption (vsn 1, AAD = label) and the label header (§1.1 order)."""
    _check_label(label)
    if not parts:
        raise ValueError("a packet needs at least one message")
    payload = _as_bytes(parts[0]) if len(parts) == 1 else make_compound(parts)
    if compress:
        packed = compress_message(payload)
        if len(packed) < len(payload):
            payload = packed
    if crc:
        payload = b"\x0c" + zlib.crc32(payload).to_bytes(4, "big") + payload
    if keyring is not None:
        if nonce is None:
            raise ValueError("encrypting needs a nonce")
        payload = keyring.encrypt(payload, nonce, label)
    if label:
        payload = b"\xf4" + bytes((len(label),)) + label + payload
    return payload


class _Ctx:
    __slots__ = ("out", "budget")

    def __init__(self, budget: int) -> None:
        self.out = DecodedPacket()
        self.budget = budget


def decode_packet(data: Any, *, keyring: Any = None, verify_incoming: bool = True,
                  label: bytes = b"", max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
                  ) -> DecodedPacket:
    """The messages of one UDP payload in order, compound and compress flattened.

    Raises DecodeError for a packet memberlist would drop whole (label, decryption, CRC,
    a bad outermost message); a compound part that fails alone is skipped and reported in
    `.dropped`, parts cut off by the end of the packet are counted in `.truncated`.
    `max_decompressed` bounds all decompressed bytes of the packet together.
    """
    _check_label(label)
    budget = _check_limit(max_decompressed, "max_decompressed")
    buf = _as_bytes(data)
    pos = 0
    end = len(buf)
    # label header (memberlist ≥ 0.3.0 RemoveLabelHeaderFromPacket), then the label check
    got = b""
    if end and buf[0] == HAS_LABEL:
        if end < 2:
            raise MalformedPacket("cannot decode label; packet has been truncated", 0)
        size = buf[1]
        if size < 1:
            raise MalformedPacket("label header cannot be empty when present", 0)
        if end < 2 + size:
            raise MalformedPacket("cannot decode label; packet has been truncated", 0)
        got = buf[2:2 + size]
        pos = 2 + size
    if got != label:
        raise MalformedPacket(f"discarding packet with unacceptable label {got!r}", 0)
    if keyring is not None:
        try:
            plain = keyring.decrypt(memoryview(buf)[pos:], label)
        except DecryptError:
            if verify_incoming:
                raise
        else:                          # the plaintext is a new layer: offsets restart at 0
            buf, pos, end = plain, 0, len(plain)
    if end - pos >= 5 and buf[pos] == HAS_CRC:
        expected = int.from_bytes(buf[pos + 1:pos + 5], "big")
        crc = zlib.crc32(memoryview(buf)[pos + 5:end])
        if crc != expected:
            raise BadChecksum(f"invalid checksum {crc:08x}, expected {expected:08x}", pos)
        pos += 5
    ctx = _Ctx(budget)
    _command(buf, pos, end, 0, ctx)
    return ctx.out


def _command(buf: bytes, start: int, end: int, depth: int, ctx: _Ctx) -> None:
    """memberlist handleCommand: one message in buf[start:end], nested ones recursively."""
    if start >= end:
        raise MalformedPacket("missing message type byte", start)
    t = buf[start]
    if t in _PACKET_STRUCTS:
        ctx.out.append(_packet_struct(t, memoryview(buf)[start + 1:end], start))
    elif t == USER:
        ctx.out.append(User(buf[start + 1:end]))
    elif t == COMPOUND:
        if depth >= MAX_NESTING:
            raise MalformedPacket(f"messages nested more than {MAX_NESTING} deep", start)
        _compound(buf, start, end, depth, ctx)
    elif t == COMPRESS:
        if depth >= MAX_NESTING:
            raise MalformedPacket(f"messages nested more than {MAX_NESTING} deep", start)
        inner = _decompress(memoryview(buf)[start + 1:end], start, ctx.budget)
        ctx.budget -= len(inner)
        _command(inner, 0, len(inner), depth + 1, ctx)
    else:
        raise MalformedPacket(f"unknown message type {t}", start)


def _compound(buf: bytes, start: int, end: int, depth: int, ctx: _Ctx) -> None:
    """memberlist decodeCompoundMessage + handleCompound."""
    p = start + 1
    if p >= end:
        raise MalformedPacket("missing compound length byte", start)
    n = buf[p]
    p += 1
    if end - p < 2 * n:
        raise MalformedPacket("truncated len slice", start)
    lens = [int.from_bytes(buf[p + 2 * i:p + 2 * i + 2], "big") for i in range(n)]
    p += 2 * n
    for i, length in enumerate(lens):
        if end - p < length:
            ctx.out.truncated += n - i
            return
        try:
            _command(buf, p, p + length, depth + 1, ctx)
        except DecodeError as exc:     # memberlist logs the part and goes on with the next
            ctx.out.dropped.append(exc)
        p += length


def encode_stream(msg: Any, *, compress: bool = True, keyring: Any = None,
                  nonce: bytes | None = None, label: bytes = b"") -> bytes:
    """One stream message (Ping, Ack, PushPull, User, Err): compressed when asked (always,
    no size check), then encrypted as `0a | u32be len | blob` with AAD = those 5 bytes +
    label. The label header itself is the dialer's, once per connection: `label_header`."""
    _check_label(label)
    body = _stream_body(msg)
    if compress:
        body = compress_message(body)
    if keyring is None:
        return body
    if nonce is None:
        raise ValueError("encrypting needs a nonce")
    header = b"\x0a" + (len(body) + ENCRYPT_OVERHEAD).to_bytes(4, "big")
    return header + keyring.encrypt(body, nonce, header + label)


# -- stream framing

# StreamDecoder phases
_P_LABEL = 0      # the connection's label header (accepting side only)
_P_TYPE = 1       # a message's type byte
_P_ENC_LEN = 2    # encrypted: the u32 length
_P_ENC_BODY = 3   # encrypted: the blob
_P_OBJECT = 4     # ping/ack/err/compress: one msgpack object
_P_HEADER = 5     # push/pull or user: the header object
_P_STATES = 6     # push/pull: `Nodes` node-state objects
_P_RAW = 7        # push/pull user state or user message bytes


class StreamDecoder:
    """Splits one direction of a memberlist TCP connection into messages (§3.1).

    Plain and compressed stream messages carry no length: they are delimited by scanning
    msgpack objects as bytes arrive. `max_size` bounds each message as sent (type byte to
    end, or the encrypted length), `max_decompressed` what decompressing one yields.

    `require_label_header`: True on the accepting side, where memberlist ≥ 0.3.0 dialers
    start the connection with a label header: it is read once and must carry `label` (no
    header = empty label). False on the dialing side (replies carry no header). Either way
    `label` is part of the AAD of encrypted messages.

    Errors are sticky: after a DecodeError every feed raises it again. Every DecodeError
    depends only on the stream's bytes, never on how they were chunked.
    """

    __slots__ = ("_keyring", "_verify", "_label", "_max", "_max_decompressed", "_buf", "_base",
                 "_phase", "_start", "_pos", "_rem", "_reserve", "_end", "_type",
                 "_consumed", "_failed", "_busy")

    def __init__(self, *, keyring: Any = None, verify_incoming: bool = True,
                 label: bytes = b"", max_size: int = DEFAULT_MAX_STREAM,
                 require_label_header: bool = False,
                 max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> None:
        _check_label(label)
        self._keyring = keyring
        self._verify = bool(verify_incoming)
        self._label = label
        self._max = _check_limit(max_size, "max_size")
        self._max_decompressed = _check_limit(max_decompressed, "max_decompressed")
        self._buf = bytearray()   # stream bytes from _base on
        self._base = 0            # stream offset of _buf[0]
        self._phase = _P_LABEL if require_label_header else _P_TYPE
        self._start = 0           # stream offset of the current message (or label header)
        self._pos = 0             # stream offset of the next element to scan
        self._rem = 0             # msgpack objects still needed in this phase
        self._reserve = 0         # bytes the message needs after those objects
        self._end = 0             # stream offset just past the message (raw/encrypted phases)
        self._type = 0
        self._consumed = 0
        self._failed: DecodeError | None = None
        self._busy = False

    @property
    def buffered(self) -> int:
        """Bytes held for the incomplete message at the end of the stream."""
        return len(self._buf)

    @property
    def consumed(self) -> int:
        """Stream bytes taken by the label header and completed messages."""
        return self._consumed

    def feed(self, data: Any) -> list:
        """Messages completed by `data`, in stream order; DecodeError (sticky) on bad input."""
        if self._failed is not None:
            raise self._failed.with_traceback(None)
        if self._busy:
            raise RuntimeError("StreamDecoder.feed() called while already feeding")
        out: list = []
        with memoryview(data) as mv:
            if mv.nbytes == 0:
                return out
            self._busy = True
            try:
                self._buf += mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv
                while self._step(out):
                    pass
            except DecodeError as exc:
                self._failed = exc
                raise
            finally:
                self._busy = False
        drop = self._start - self._base
        if drop:
            del self._buf[:drop]
            self._base = self._start
        return out

    def _avail(self) -> int:
        """Stream offset just past the buffered bytes."""
        return self._base + len(self._buf)

    def _byte(self, off: int) -> int:
        return self._buf[off - self._base]

    def _slice(self, a: int, b: int) -> bytes:
        return bytes(self._buf[a - self._base:b - self._base])

    def _too_large(self, off: int) -> PacketTooLarge:
        return PacketTooLarge(f"stream message larger than {self._max} bytes", off)

    def _step(self, out: list) -> bool:
        """Advance one phase if the bytes allow; True to call again."""
        phase = self._phase
        start = self._start
        avail = self._avail()
        if phase == _P_TYPE:
            if avail <= start:
                return False
            t = self._byte(start)
            self._type = t
            if t == ENCRYPT:
                if self._keyring is None:
                    raise DecryptError(
                        "Remote state is encrypted and encryption is not configured", start)
                self._phase = _P_ENC_LEN
                return True
            if self._keyring is not None and self._verify:
                raise DecryptError("Encryption is configured but remote state is not encrypted",
                                   start)
            if t == PING or t == ACK_RESP or t == ERR or t == COMPRESS:
                self._phase = _P_OBJECT
            elif t == PUSH_PULL or t == USER:
                self._phase = _P_HEADER
            else:
                raise MalformedPacket(f"unexpected stream message type {t}", start)
            self._pos = start + 1
            self._rem = 1
            self._reserve = 0
            return True
        if phase == _P_OBJECT or phase == _P_HEADER or phase == _P_STATES:
            if not self._scan(avail):
                return False
            if phase == _P_OBJECT:
                self._finish(self._pos, out)
                return True
            if phase == _P_HEADER:
                hdr = _unpack(self._slice(start + 1, self._pos), "stream header", start)
                if self._type == USER:
                    nodes, user_len = 0, _struct_user_header(hdr, start)
                else:
                    _, nodes, user_len = _struct_push_pull_header(hdr, start)
                # every node state takes at least one byte
                if self._pos - start + nodes + user_len > self._max:
                    raise self._too_large(start)
                self._rem = nodes
                self._reserve = user_len
                self._phase = _P_STATES
                if nodes:
                    return True
            self._end = self._pos + self._reserve
            self._phase = _P_RAW
            return True
        if phase == _P_RAW:
            if avail < self._end:
                return False
            self._finish(self._end, out)
            return True
        if phase == _P_ENC_LEN:
            if avail < start + 5:
                return False
            length = int.from_bytes(self._slice(start + 1, start + 5), "big")
            if length > self._max:
                raise PacketTooLarge(f"Remote node state is larger than limit ({length})", start)
            self._end = start + 5 + length
            self._phase = _P_ENC_BODY
            return True
        if phase == _P_ENC_BODY:
            end = self._end
            if avail < end:
                return False
            header = self._slice(start, start + 5)
            try:
                plain = self._keyring.decrypt(self._slice(start + 5, end), header + self._label)
            except DecryptError as exc:
                raise DecryptError(exc.reason, start) from None
            out.append(_stream_message(plain, start, True, self._max_decompressed))
            self._done(end)
            return True
        # _P_LABEL: memberlist ≥ 0.3.0 RemoveLabelHeaderFromStream, then the label check
        if avail <= start:
            return False
        got = b""
        end = start
        if self._byte(start) == HAS_LABEL:
            if avail < start + 2:
                return False
            size = self._byte(start + 1)
            if size < 1:
                raise MalformedPacket("label header cannot be empty when present", start)
            end = start + 2 + size
            if avail < end:
                return False
            got = self._slice(start + 2, end)
        if got != self._label:
            raise MalformedPacket(f"discarding stream with unacceptable label {got!r}", start)
        self._phase = _P_TYPE
        self._start = self._consumed = end
        return True

    def _finish(self, end: int, out: list) -> None:
        """The plain message [start, end) is complete: decode it."""
        start = self._start
        out.append(_stream_message(self._slice(start, end), start, True,
                                   self._max_decompressed))
        self._done(end)

    def _done(self, end: int) -> None:
        self._phase = _P_TYPE
        self._start = self._consumed = end

    def _scan(self, avail: int) -> bool:
        """Advance over buffered msgpack elements; True once `_rem` objects are complete.

        Each check needs only bytes at fixed positions of the current element and waits at
        that element's first byte when they are missing, so errors do not depend on chunking.
        """
        buf = self._buf
        base = self._base
        pos = self._pos
        start = self._start
        rem = self._rem
        limit = self._max - self._reserve
        done = False
        while pos < avail:
            b = buf[pos - base]
            c = _CLASS[b]
            if c == _INVALID:
                raise MalformedPacket(f"invalid msgpack type byte 0x{b:02x}", pos)
            h = _SIZE[b]
            # Every element still needed takes at least one byte: rem - 1 after this one.
            if pos - start + h + rem - 1 > limit:
                raise self._too_large(pos)
            if c == _FIXED:
                if pos + h > avail:
                    break
                pos += h
                rem -= 1
            elif c == _BLOB:
                if pos + h > avail:
                    break
                w = _WIDTH[b]
                n = int.from_bytes(buf[pos - base + 1:pos - base + 1 + w], "big")
                if pos - start + h + n + rem - 1 > limit:
                    raise self._too_large(pos)
                if pos + h + n > avail:
                    break          # payload not all here: resume at this element's header
                pos += h + n
                rem -= 1
            else:
                w = _WIDTH[b]
                if w == 0:
                    n = b & 0x0F
                else:
                    if pos + h > avail:
                        break
                    n = int.from_bytes(buf[pos - base + 1:pos - base + 1 + w], "big")
                if c == _MAP:
                    n *= 2
                if pos - start + h + n + rem - 1 > limit:
                    raise self._too_large(pos)
                pos += h
                rem += n - 1
            if rem == 0:
                done = True
                break
        self._pos = pos
        self._rem = rem
        return done

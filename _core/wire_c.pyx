# cython: language_level=3
"""memberlist and Serf wire codec, compiled (twin of `wire_py`: same API, same errors).

The layering is written here independently of the twin, over typed pointers: label
header, CRC-32 (own table), compound split/join, the compress/compound recursion of
`decode_packet`, the encryption framing of streams and the incremental StreamDecoder
(a resumable msgpack scanner that delimits length-less stream messages). The msgpack
struct mapping (message objects ⇄ Go structs) and the Serf/tag/coordinate codecs are
shared with the twin: they live in `wire_py` and are imported from there, so both
decode bodies the same way and the differential tests exercise the layering. The hot
packet messages (ping, ack, nack, suspect, alive, dead) and the ack payload have
compiled fast paths for the regular case only; every other input is handed to the shared
mapping, so the fast paths change speed, never results or errors.

See `wire_py` for the behaviour, the error offsets and shared/spec/memberlist-wire.md.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t
from libc.string cimport memcmp, memcpy, strlen
from _core.mpwrite cimport _put_be, _put_uint, _uint_size
from _core.mpscan cimport K_ARRAY, K_BLOB, K_FIXED, K_INVALID, K_MAP, build_scan_table

import operator

import msgpack

from . import wire_py as _py
from .errors import BadChecksum, DecodeError, DecryptError, MalformedPacket, PacketTooLarge
from .messages import Ack, Alive, Dead, DecodedPacket, Nack, Ping, Suspect, User


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object s)
    void *PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

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
MAX_COMPOUND_PARTS = 255
MAX_NESTING = 16
COMPOUND_HEADER_OVERHEAD = 2
COMPOUND_OVERHEAD = 2
USER_MSG_OVERHEAD = 1
CRC_OVERHEAD = 5
ENCRYPT_OVERHEAD = _py.ENCRYPT_OVERHEAD

# The shared struct mapping (see the module docstring); encode_message and
# encode_ack_payload have compiled fast paths below.
compress_message = _py.compress_message
encode_serf = _py.encode_serf
decode_serf = _py.decode_serf
encode_tags = _py.encode_tags
decode_tags = _py.decode_tags
decode_ack_payload = _py.decode_ack_payload

cdef object _packet_struct = _py._packet_struct
cdef object _unpackb = msgpack.unpackb
cdef dict _STRUCT_FN = {t: entry[1] for t, entry in _py._PACKET_STRUCTS.items()}
cdef object _decompress = _py._decompress
cdef object _stream_message = _py._stream_message
cdef object _stream_body = _py._stream_body
cdef object _unpack = _py._unpack
cdef object _push_pull_header = _py._struct_push_pull_header
cdef object _user_header = _py._struct_user_header

# memberlist message types (spec §1.2)
cdef enum:
    T_PING = 0
    T_INDIRECT_PING = 1
    T_ACK = 2
    T_SUSPECT = 3
    T_ALIVE = 4
    T_DEAD = 5
    T_PUSH_PULL = 6
    T_COMPOUND = 7
    T_USER = 8
    T_COMPRESS = 9
    T_ENCRYPT = 10
    T_NACK = 11
    T_CRC = 12
    T_ERR = 13
    T_LABEL = 244

cdef enum:
    C_MAX_NESTING = 16
    C_MAX_PARTS = 255
    C_ENCRYPT_OVERHEAD = 29

cdef long long C_MAX_LIMIT = 1LL << 40      # largest accepted size limit


# -- CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320: Go crc32.ChecksumIEEE) ---------

cdef uint32_t _CRC_TABLE[256]


cdef void _build_crc_table() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = <uint32_t>n
        for k in range(8):
            if c & 1:
                c = <uint32_t>0xEDB88320 ^ (c >> 1)
            else:
                c = c >> 1
        _CRC_TABLE[n] = c


_build_crc_table()


cdef uint32_t _crc32(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    cdef uint32_t c = 0xFFFFFFFF
    cdef Py_ssize_t i
    for i in range(n):
        c = _CRC_TABLE[(c ^ p[i]) & 0xFF] ^ (c >> 8)
    return c ^ <uint32_t>0xFFFFFFFF


cdef inline uint32_t _be32(const unsigned char *q) noexcept nogil:
    return ((<uint32_t>q[0] << 24) | (<uint32_t>q[1] << 16) | (<uint32_t>q[2] << 8)
            | <uint32_t>q[3])


cdef inline void _put_be32(unsigned char *q, uint32_t v) noexcept nogil:
    q[0] = <unsigned char>(v >> 24)
    q[1] = <unsigned char>(v >> 16)
    q[2] = <unsigned char>(v >> 8)
    q[3] = <unsigned char>v


# -- argument checks ----------------------------------------------------------------------

cdef int _check_label(object label) except -1:
    if not isinstance(label, bytes):
        raise TypeError(f"label must be bytes, not {type(label).__name__}")
    if len(label) > 255:
        raise ValueError(f"label must be at most 255 bytes, got {len(label)}")
    return 0


cdef long long _check_limit(object value, str name) except -1:
    value = operator.index(value)
    if not 0 <= value <= C_MAX_LIMIT:
        raise ValueError(f"{name} must be in 0..{C_MAX_LIMIT}, got {value}")
    return value


cdef bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(memoryview(data))


cdef inline bytes _slice(const unsigned char *p, Py_ssize_t a, Py_ssize_t b):
    return PyBytes_FromStringAndSize(<const char *>p + a, b - a)


# -- packets ------------------------------------------------------------------------------

def label_header(label):
    """`f4 | u8 len | label` (memberlist ≥ 0.3.0), or b"" for no label: what a dialer writes
    once at the start of a stream (packets get it from encode_packet)."""
    _check_label(label)
    cdef Py_ssize_t n = len(label)
    if n == 0:
        return b""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, 2 + n)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(out)
    q[0] = T_LABEL
    q[1] = <unsigned char>n
    memcpy(q + 2, PyBytes_AS_STRING(label), n)
    return out


def make_compound(parts):
    """`07 | u8 n | n × u16be len | parts` (memberlist makeCompoundMessage), n ≤ 255."""
    cdef Py_ssize_t n = len(parts)
    cdef Py_ssize_t total = 2 + 2 * n, i, k
    cdef Py_buffer view
    if n > C_MAX_PARTS:
        raise ValueError(f"a compound message holds at most {C_MAX_PARTS} parts, got {n}")
    cdef list blobs = [_as_bytes(x) for x in parts]
    for i in range(n):
        k = PyBytes_GET_SIZE(blobs[i])
        if k > 0xFFFF:
            raise ValueError(f"compound part of {k} bytes exceeds 65535")
        total += k
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(out)
    q[0] = T_COMPOUND
    q[1] = <unsigned char>n
    cdef unsigned char *body = q + 2 + 2 * n
    for i in range(n):
        k = PyBytes_GET_SIZE(blobs[i])
        q[2 + 2 * i] = <unsigned char>(k >> 8)
        q[3 + 2 * i] = <unsigned char>k
        memcpy(body, PyBytes_AS_STRING(blobs[i]), k)
        body += k
    return out


def encode_packet(parts, *, compress=False, crc=False, keyring=None, nonce=None, label=b""):
    """One UDP payload: one part bare, several as a compound; then compress (only when that
    is shorter), CRC, encryption (vsn 1, AAD = label) and the label header (§1.1 order)."""
    _check_label(label)
    if not parts:
        raise ValueError("a packet needs at least one message")
    cdef bytes payload
    if len(parts) == 1:
        payload = _as_bytes(parts[0])
    else:
        payload = make_compound(parts)
    cdef bytes packed, out
    cdef unsigned char *q
    cdef Py_ssize_t n, lab
    if compress:
        packed = compress_message(payload)
        if PyBytes_GET_SIZE(packed) < PyBytes_GET_SIZE(payload):
            payload = packed
    if crc:
        n = PyBytes_GET_SIZE(payload)
        out = PyBytes_FromStringAndSize(NULL, 5 + n)
        q = <unsigned char *>PyBytes_AS_STRING(out)
        q[0] = T_CRC
        _put_be32(q + 1, _crc32(<const unsigned char *>PyBytes_AS_STRING(payload), n))
        memcpy(q + 5, PyBytes_AS_STRING(payload), n)
        payload = out
    if keyring is not None:
        if nonce is None:
            raise ValueError("encrypting needs a nonce")
        payload = keyring.encrypt(payload, nonce, label)
    lab = PyBytes_GET_SIZE(label)
    if lab:
        n = PyBytes_GET_SIZE(payload)
        out = PyBytes_FromStringAndSize(NULL, 2 + lab + n)
        q = <unsigned char *>PyBytes_AS_STRING(out)
        q[0] = T_LABEL
        q[1] = <unsigned char>lab
        memcpy(q + 2, PyBytes_AS_STRING(label), lab)
        memcpy(q + 2 + lab, PyBytes_AS_STRING(payload), n)
        payload = out
    return payload


@cython.final
cdef class _Ctx:
    """What one decode_packet call collects: messages (with truncated/dropped), the
    decompression budget left."""
    cdef list msgs
    cdef list dropped
    cdef long long truncated
    cdef long long budget


def decode_packet(data, *, keyring=None, verify_incoming=True, label=b"",
                  max_decompressed=DEFAULT_MAX_DECOMPRESSED):
    """The messages of one UDP payload in order, compound and compress flattened.

    Raises DecodeError for a packet memberlist would drop whole (label, decryption, CRC,
    a bad outermost message); a compound part that fails alone is skipped and reported in
    `.dropped`, parts cut off by the end of the packet are counted in `.truncated`.
    `max_decompressed` bounds all decompressed bytes of the packet together.
    """
    _check_label(label)
    cdef long long budget = _check_limit(max_decompressed, "max_decompressed")
    cdef bytes buf = _as_bytes(data)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t pos = 0, size
    cdef Py_ssize_t lab = PyBytes_GET_SIZE(label)
    cdef uint32_t crc, expected
    # label header (memberlist ≥ 0.3.0 RemoveLabelHeaderFromPacket), then the label check
    cdef bint match
    if end and p[0] == T_LABEL:
        if end < 2:
            raise MalformedPacket("cannot decode label; packet has been truncated", 0)
        size = p[1]
        if size < 1:
            raise MalformedPacket("label header cannot be empty when present", 0)
        if end < 2 + size:
            raise MalformedPacket("cannot decode label; packet has been truncated", 0)
        pos = 2 + size
        match = size == lab and memcmp(p + 2, PyBytes_AS_STRING(label), size) == 0
        if not match:
            raise MalformedPacket(
                f"discarding packet with unacceptable label {_slice(p, 2, pos)!r}", 0)
    elif lab:
        raise MalformedPacket("discarding packet with unacceptable label b''", 0)
    if keyring is not None:
        try:
            plain = keyring.decrypt(buf[pos:] if pos else buf, label)
        except DecryptError:
            if verify_incoming:
                raise
        else:                          # the plaintext is a new layer: offsets restart at 0
            buf = <bytes?>plain
            p = <const unsigned char *>PyBytes_AS_STRING(buf)
            pos = 0
            end = PyBytes_GET_SIZE(buf)
    if end - pos >= 5 and p[pos] == T_CRC:
        expected = _be32(p + pos + 1)
        crc = _crc32(p + pos + 5, end - pos - 5)
        if crc != expected:
            raise BadChecksum(f"invalid checksum {crc:08x}, expected {expected:08x}", pos)
        pos += 5
    cdef _Ctx ctx = _Ctx.__new__(_Ctx)
    ctx.msgs = []
    ctx.dropped = []
    ctx.truncated = 0
    ctx.budget = budget
    _command(ctx, buf, p, pos, end, 0)
    return DecodedPacket(ctx.msgs, ctx.truncated, ctx.dropped)


cdef int _command(_Ctx ctx, bytes owner, const unsigned char *p, Py_ssize_t start,
                  Py_ssize_t end, int depth) except -1:
    """memberlist handleCommand: one message in p[start:end] (p points into owner)."""
    cdef unsigned char t
    cdef bytes inner
    if start >= end:
        raise MalformedPacket("missing message type byte", start)
    t = p[start]
    if (t == T_PING or t == T_INDIRECT_PING or t == T_ACK or t == T_SUSPECT or t == T_ALIVE
            or t == T_DEAD or t == T_NACK):
        ctx.msgs.append(_fast_struct(t, _slice(p, start + 1, end), start))
    elif t == T_USER:
        ctx.msgs.append(User(_slice(p, start + 1, end)))
    elif t == T_COMPOUND:
        if depth >= C_MAX_NESTING:
            raise MalformedPacket(f"messages nested more than {C_MAX_NESTING} deep", start)
        _compound(ctx, owner, p, start, end, depth)
    elif t == T_COMPRESS:
        if depth >= C_MAX_NESTING:
            raise MalformedPacket(f"messages nested more than {C_MAX_NESTING} deep", start)
        inner = <bytes?>_decompress(_slice(p, start + 1, end), start, ctx.budget)
        ctx.budget -= PyBytes_GET_SIZE(inner)
        _command(ctx, inner, <const unsigned char *>PyBytes_AS_STRING(inner), 0,
                 PyBytes_GET_SIZE(inner), depth + 1)
    else:
        raise MalformedPacket(f"unknown message type {t}", start)
    return 0


cdef int _compound(_Ctx ctx, bytes owner, const unsigned char *p, Py_ssize_t start,
                   Py_ssize_t end, int depth) except -1:
    """memberlist decodeCompoundMessage + handleCompound."""
    cdef Py_ssize_t q = start + 1
    cdef Py_ssize_t n, i, length, lens
    if q >= end:
        raise MalformedPacket("missing compound length byte", start)
    n = p[q]
    q += 1
    if end - q < 2 * n:
        raise MalformedPacket("truncated len slice", start)
    lens = q
    q += 2 * n
    for i in range(n):
        length = (<Py_ssize_t>p[lens + 2 * i] << 8) | p[lens + 2 * i + 1]
        if end - q < length:
            ctx.truncated += n - i
            return 0
        try:
            _command(ctx, owner, p, q, q + length, depth + 1)
        except DecodeError as exc:     # memberlist logs the part and goes on with the next
            ctx.dropped.append(exc)
        q += length
    return 0


# -- compiled fast path of the shared struct mapping ---------------------------------------
#
# Decodes the common case of the hot packet messages without the generic Python mapping:
# a map whose keys are all str and whose known fields all have exactly the expected type
# and a valid value. Anything else (nil, wrong types, out of range, missing addresses,
# non-ASCII strings, unpack errors, trailing bytes) goes to the shared mapping of
# `wire_py`, which decides the result or the error: the fast path never changes what
# comes out, only how fast (tests/core/test_wire.py checks both against each other).

cdef enum:
    F_SEQ = 0
    F_NODE = 1
    F_SOURCE_ADDR = 2
    F_SOURCE_PORT = 3
    F_SOURCE_NODE = 4
    F_PAYLOAD = 5
    F_INCARNATION = 6
    F_FROM = 7
    F_ADDR = 8
    F_PORT = 9
    F_META = 10
    F_VSN = 11

# Go field name -> field id; msgpack interns map keys, so lookups hit the cached hash
cdef dict _FIELD_IDS = {
    "SeqNo": F_SEQ, "Node": F_NODE, "SourceAddr": F_SOURCE_ADDR, "SourcePort": F_SOURCE_PORT,
    "SourceNode": F_SOURCE_NODE, "Payload": F_PAYLOAD, "Incarnation": F_INCARNATION,
    "From": F_FROM, "Addr": F_ADDR, "Port": F_PORT, "Meta": F_META, "Vsn": F_VSN,
}
# the fields each fast-path message has (bit per field id)
cdef unsigned int _FIELDS_OF[12]
_FIELDS_OF[T_PING] = (1 << F_SEQ) | (1 << F_NODE) | (1 << F_SOURCE_ADDR) | (
    1 << F_SOURCE_PORT) | (1 << F_SOURCE_NODE)
_FIELDS_OF[T_ACK] = (1 << F_SEQ) | (1 << F_PAYLOAD)
_FIELDS_OF[T_SUSPECT] = (1 << F_INCARNATION) | (1 << F_NODE) | (1 << F_FROM)
_FIELDS_OF[T_DEAD] = _FIELDS_OF[T_SUSPECT]
_FIELDS_OF[T_ALIVE] = (1 << F_INCARNATION) | (1 << F_NODE) | (1 << F_ADDR) | (1 << F_PORT) | (
    1 << F_META) | (1 << F_VSN)
_FIELDS_OF[T_NACK] = 1 << F_SEQ


cdef inline bint _is_uint(object v, unsigned long long limit):
    """v is a Python int (not bool) in 0..limit."""
    cdef unsigned long long x
    if type(v) is not int:
        return False
    try:
        x = v
    except OverflowError:            # negative or beyond 64 bits
        return False
    return x <= limit


cdef inline object _fast_bytes(object v):
    """A []byte field's bytes, or None to leave the value to the shared mapping."""
    if type(v) is bytes:
        return v
    if type(v) is str:
        if PyUnicode_IS_ASCII(v):
            return PyBytes_FromStringAndSize(<const char *>PyUnicode_DATA(v),
                                             PyUnicode_GET_LENGTH(v))
        return v.encode("utf-8", "surrogateescape")      # the exact bytes sent
    return None


cdef object _fast_struct(int t, bytes body, Py_ssize_t off):
    """The message of packet type t from its body (see above)."""
    cdef Py_ssize_t i = 0
    cdef PyObject *k
    cdef PyObject *v
    cdef PyObject *fid
    cdef int f
    cdef unsigned int allowed
    try:
        obj = _unpackb(body, raw=False, unicode_errors="surrogateescape", strict_map_key=False)
    except Exception:
        return _packet_struct(t, body, off)      # errors, or bytes after the object
    if type(obj) is not dict or t == T_INDIRECT_PING:
        return (<object>PyDict_GetItem(_STRUCT_FN, t))(obj, off)
    allowed = _FIELDS_OF[t]
    seq = incarnation = port = source_port = 0
    node = source_node = from_ = ""
    addr = source_addr = meta = vsn = b""
    payload = None
    while PyDict_Next(<dict>obj, &i, &k, &v):
        if type(<object>k) is not str:
            return (<object>PyDict_GetItem(_STRUCT_FN, t))(obj, off)
        fid = PyDict_GetItem(_FIELD_IDS, <object>k)
        if fid is NULL:
            continue                                 # unknown field: skipped
        f = <int><object>fid
        if not (allowed >> f) & 1:
            continue
        value = <object>v
        if f == F_NODE or f == F_SOURCE_NODE or f == F_FROM:
            if type(value) is not str or not PyUnicode_IS_ASCII(value):
                break
            if f == F_NODE:
                node = value
            elif f == F_FROM:
                from_ = value
            else:
                source_node = value
        elif f == F_SEQ or f == F_INCARNATION:
            if not _is_uint(value, 0xFFFFFFFF):
                break
            if f == F_SEQ:
                seq = value
            else:
                incarnation = value
        elif f == F_PORT or f == F_SOURCE_PORT:
            if not _is_uint(value, 0xFFFF):
                break
            if f == F_PORT:
                port = value
            else:
                source_port = value
        else:                                        # []byte fields
            if value is None and f == F_PAYLOAD:
                payload = None
                continue
            value = _fast_bytes(value)
            if value is None:
                break
            if f == F_ADDR:
                if PyBytes_GET_SIZE(value) != 4 and PyBytes_GET_SIZE(value) != 16:
                    break
                addr = value
            elif f == F_SOURCE_ADDR:
                if (PyBytes_GET_SIZE(value) != 4 and PyBytes_GET_SIZE(value) != 16
                        and PyBytes_GET_SIZE(value) != 0):
                    break
                source_addr = value
            elif f == F_VSN:
                if PyBytes_GET_SIZE(value) != 6 and PyBytes_GET_SIZE(value) != 0:
                    break
                vsn = value
            elif f == F_META:
                meta = value
            else:
                payload = value
    else:
        if t == T_PING:
            return Ping(seq, node, source_addr, source_port, source_node)
        if t == T_ACK:
            return Ack(seq, payload)
        if t == T_ALIVE:
            if PyBytes_GET_SIZE(addr) != 0:           # a missing Addr is an error
                return Alive(incarnation, node, addr, port, meta, vsn)
        elif t == T_SUSPECT:
            return Suspect(incarnation, node, from_)
        elif t == T_DEAD:
            return Dead(incarnation, node, from_)
        elif t == T_NACK:
            return Nack(seq)
    return (<object>PyDict_GetItem(_STRUCT_FN, t))(obj, off)


# -- compiled encoders of the hot messages ------------------------------------------------
#
# Write what the shared encoder's packb writes (Go's key order, raw-family strings and
# bytes without str8, smallest unsigned ints, float64) for messages whose fields have
# exactly the expected types and valid values; anything else goes to the shared encoder,
# which decides the bytes or the exception.

cdef struct _Field:
    const char *key          # the Go field name
    Py_ssize_t klen
    int kind                 # _RAW, _UINT, _NIL, _FLOAT
    const char *data         # raw bytes (str as UTF-8)
    Py_ssize_t n
    unsigned long long u
    double d

cdef enum:
    _RAW = 0
    _UINT = 1
    _NIL = 2
    _FLOAT = 3


cdef inline Py_ssize_t _raw_header(Py_ssize_t n) noexcept:
    if n < 32:
        return 1
    if n < 0x10000:
        return 3                 # str16: go-msgpack 0.5.x never writes str8
    return 5


cdef unsigned char *_put_raw(unsigned char *q, const char *s, Py_ssize_t n) noexcept:
    if n < 32:
        q[0] = 0xa0 | <unsigned char>n
        q += 1
    elif n < 0x10000:
        q[0] = 0xda
        q = _put_be(q + 1, n, 2)
    else:
        q[0] = 0xdb
        q = _put_be(q + 1, n, 4)
    memcpy(q, s, n)
    return q + n


cdef unsigned char *_put_double(unsigned char *q, double d) noexcept:
    cdef unsigned long long bits
    memcpy(&bits, &d, 8)
    q[0] = 0xcb
    return _put_be(q + 1, bits, 8)


cdef inline Py_ssize_t _field_size(_Field *f) noexcept:
    cdef Py_ssize_t size = 1 + f.klen
    if f.kind == _RAW:
        return size + _raw_header(f.n) + f.n
    if f.kind == _UINT:
        return size + _uint_size(f.u)
    if f.kind == _FLOAT:
        return size + 9
    return size + 1


cdef unsigned char *_put_field(unsigned char *q, _Field *f) noexcept:
    q = _put_raw(q, f.key, f.klen)
    if f.kind == _RAW:
        return _put_raw(q, f.data, f.n)
    if f.kind == _UINT:
        return _put_uint(q, f.u)
    if f.kind == _FLOAT:
        return _put_double(q, f.d)
    q[0] = 0xc0
    return q + 1


cdef bytes _write_struct(unsigned char type_byte, _Field *fields, int count):
    """type byte + fixmap of the fields (in the order given: Go's sorted order)."""
    cdef Py_ssize_t size = 2
    cdef int i
    for i in range(count):
        size += _field_size(&fields[i])
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(out)
    q[0] = type_byte
    q[1] = 0x80 | <unsigned char>count
    q += 2
    for i in range(count):
        q = _put_field(q, &fields[i])
    return out


cdef bint _set_str(_Field *f, const char *key, object v) except -1:
    """A Go string field from an exact str; False to leave the message to the shared encoder."""
    if type(v) is not str:
        return False
    f.key = key
    f.klen = strlen(key)
    f.kind = _RAW
    try:
        f.data = PyUnicode_AsUTF8AndSize(v, &f.n)
    except UnicodeEncodeError:
        return False
    return f.n <= 0xFFFFFFFF


cdef bint _set_bytes(_Field *f, const char *key, object v) except -1:
    if type(v) is not bytes:
        return False
    f.key = key
    f.klen = strlen(key)
    f.kind = _RAW
    f.data = PyBytes_AS_STRING(v)
    f.n = PyBytes_GET_SIZE(v)
    return f.n <= 0xFFFFFFFF


cdef bint _set_uint(_Field *f, const char *key, object v) except -1:
    if type(v) is not int:
        return False
    try:
        f.u = v
    except OverflowError:
        return False
    f.key = key
    f.klen = strlen(key)
    f.kind = _UINT
    return True


cdef bint _set_float(_Field *f, const char *key, object v) except -1:
    if type(v) is not float and type(v) is not int:
        return False
    try:
        f.d = v
    except OverflowError:
        return False
    f.key = key
    f.klen = strlen(key)
    f.kind = _FLOAT
    return True


cdef inline bint _addr_ok(object v, bint optional) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(v)
    return n == 4 or n == 16 or (optional and n == 0)


cdef object _encode_fast(object msg):
    """The compiled encoding of msg, or None to use the shared encoder."""
    cdef _Field f[6]
    cdef int n = 0
    t = type(msg)
    if t is Ping:
        m = <object>msg
        if not (_set_str(&f[0], "Node", m.node) and _set_uint(&f[1], "SeqNo", m.seq_no)):
            return None
        n = 2
        if m.source_addr:
            if not (_set_bytes(&f[n], "SourceAddr", m.source_addr)
                    and _addr_ok(m.source_addr, False)):
                return None
            n += 1
        if m.source_node:
            if not _set_str(&f[n], "SourceNode", m.source_node):
                return None
            n += 1
        if m.source_port:
            if not _set_uint(&f[n], "SourcePort", m.source_port):
                return None
            n += 1
        return _write_struct(T_PING, f, n)
    if t is Ack:
        m = <object>msg
        if m.payload is None:
            f[0].key = "Payload"
            f[0].klen = 7
            f[0].kind = _NIL
        elif not _set_bytes(&f[0], "Payload", m.payload):
            return None
        if not _set_uint(&f[1], "SeqNo", m.seq_no):
            return None
        return _write_struct(T_ACK, f, 2)
    if t is Alive:
        m = <object>msg
        if not (_set_bytes(&f[0], "Addr", m.addr) and _addr_ok(m.addr, False)
                and _set_uint(&f[1], "Incarnation", m.incarnation)
                and _set_bytes(&f[2], "Meta", m.meta) and _set_str(&f[3], "Node", m.node)
                and _set_uint(&f[4], "Port", m.port) and _set_bytes(&f[5], "Vsn", m.vsn)
                and PyBytes_GET_SIZE(m.vsn) == 6):
            return None
        return _write_struct(T_ALIVE, f, 6)
    if t is Suspect or t is Dead:
        m = <object>msg
        if not (_set_str(&f[0], "From", m.from_)
                and _set_uint(&f[1], "Incarnation", m.incarnation)
                and _set_str(&f[2], "Node", m.node)):
            return None
        return _write_struct(T_SUSPECT if t is Suspect else T_DEAD, f, 3)
    if t is Nack:
        if not _set_uint(&f[0], "SeqNo", (<object>msg).seq_no):
            return None
        return _write_struct(T_NACK, f, 1)
    return None


def encode_message(msg):
    """One memberlist message: its type byte, then its msgpack body as Go writes it.

    User → `08 | payload` (the packet form); PushPull → `06 | header | states | user state`.
    """
    out = _encode_fast(msg)
    if out is None:
        return _py.encode_message(msg)
    return out


def encode_ack_payload(coord_wire):
    """`01 | msgpack Coordinate{Adjustment, Error, Height, Vec}` (serf ping delegate)."""
    cdef _Field f[3]
    cdef Py_ssize_t i, n, size
    cdef double d
    cdef bytes out
    cdef unsigned char *q
    if type(coord_wire) is not dict:
        return _py.encode_ack_payload(coord_wire)
    vec = coord_wire.get("Vec", ())
    if not (_set_float(&f[0], "Adjustment", coord_wire.get("Adjustment", 0.0))
            and _set_float(&f[1], "Error", coord_wire.get("Error", 0.0))
            and _set_float(&f[2], "Height", coord_wire.get("Height", 0.0))
            and (type(vec) is list or type(vec) is tuple)):
        return _py.encode_ack_payload(coord_wire)
    n = len(vec)
    for x in vec:
        if type(x) is not float and type(x) is not int:
            return _py.encode_ack_payload(coord_wire)
    size = 2 + _field_size(&f[0]) + _field_size(&f[1]) + _field_size(&f[2]) + 4 + 9 * n
    size += 1 if n < 16 else 3 if n < 0x10000 else 5
    out = PyBytes_FromStringAndSize(NULL, size)
    q = <unsigned char *>PyBytes_AS_STRING(out)
    q[0] = 0x01                  # PingVersion
    q[1] = 0x84
    q += 2
    for i in range(3):
        q = _put_field(q, &f[i])
    q = _put_raw(q, "Vec", 3)
    if n < 16:
        q[0] = 0x90 | <unsigned char>n
        q += 1
    elif n < 0x10000:
        q[0] = 0xdc
        q = _put_be(q + 1, n, 2)
    else:
        q[0] = 0xdd
        q = _put_be(q + 1, n, 4)
    for i in range(n):
        try:
            d = vec[i]
        except OverflowError:
            return _py.encode_ack_payload(coord_wire)
        q = _put_double(q, d)
    return out


def encode_stream(msg, *, compress=True, keyring=None, nonce=None, label=b""):
    """One stream message (Ping, Ack, PushPull, User, Err): compressed when asked (always,
    no size check), then encrypted as `0a | u32be len | blob` with AAD = those 5 bytes +
    label. The label header itself is the dialer's, once per connection: `label_header`."""
    _check_label(label)
    cdef bytes body = <bytes?>_stream_body(msg)
    if compress:
        body = <bytes?>compress_message(body)
    if keyring is None:
        return body
    if nonce is None:
        raise ValueError("encrypting needs a nonce")
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body) + C_ENCRYPT_OVERHEAD
    if n > 0xFFFFFFFF:
        raise ValueError("stream message too large to encrypt")
    cdef bytes header = PyBytes_FromStringAndSize(NULL, 5)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(header)
    q[0] = T_ENCRYPT
    _put_be32(q + 1, <uint32_t>n)
    return header + keyring.encrypt(body, nonce, header + label)


# -- stream framing -----------------------------------------------------------------------

cdef unsigned char _CLASS[256]
cdef unsigned char _SIZE[256]     # header size; whole element size for K_FIXED
cdef unsigned char _WIDTH[256]    # bytes of the length/count field (0: in the type byte)
build_scan_table(_CLASS, _SIZE, _WIDTH)


cdef inline long long _read_be(const unsigned char *q, int width) noexcept nogil:
    """Big-endian unsigned length/count field of 1, 2 or 4 bytes."""
    if width == 1:
        return q[0]
    if width == 2:
        return (<long long>q[0] << 8) | q[1]
    return ((<long long>q[0] << 24) | (<long long>q[1] << 16)
            | (<long long>q[2] << 8) | q[3])


# StreamDecoder phases (as in wire_py)
cdef enum:
    P_LABEL = 0      # the connection's label header (accepting side only)
    P_TYPE = 1       # a message's type byte
    P_ENC_LEN = 2    # encrypted: the u32 length
    P_ENC_BODY = 3   # encrypted: the blob
    P_OBJECT = 4     # ping/ack/err/compress: one msgpack object
    P_HEADER = 5     # push/pull or user: the header object
    P_STATES = 6     # push/pull: `Nodes` node-state objects
    P_RAW = 7        # push/pull user state or user message bytes


@cython.final
cdef class StreamDecoder:
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

    cdef object _keyring
    cdef bint _verify
    cdef bytes _label
    cdef long long _max
    cdef long long _max_decompressed
    cdef bytearray _buf       # stream bytes from _base on
    cdef long long _base      # stream offset of _buf[0]
    cdef int _phase
    cdef long long _start     # stream offset of the current message (or label header)
    cdef long long _pos       # stream offset of the next element to scan
    cdef long long _rem       # msgpack objects still needed in this phase
    cdef long long _reserve   # bytes the message needs after those objects
    cdef long long _end       # stream offset just past the message (raw/encrypted phases)
    cdef int _type
    cdef long long _consumed
    cdef object _failed
    cdef bint _busy

    def __init__(self, *, keyring=None, verify_incoming=True, label=b"",
                 max_size=DEFAULT_MAX_STREAM, require_label_header=False,
                 max_decompressed=DEFAULT_MAX_DECOMPRESSED):
        _check_label(label)
        self._keyring = keyring
        self._verify = bool(verify_incoming)
        self._label = label
        self._max = _check_limit(max_size, "max_size")
        self._max_decompressed = _check_limit(max_decompressed, "max_decompressed")
        self._buf = bytearray()
        self._base = 0
        self._phase = P_LABEL if require_label_header else P_TYPE
        self._start = 0
        self._pos = 0
        self._rem = 0
        self._reserve = 0
        self._end = 0
        self._type = 0
        self._consumed = 0
        self._failed = None
        self._busy = False

    @property
    def buffered(self):
        """Bytes held for the incomplete message at the end of the stream."""
        return PyByteArray_GET_SIZE(self._buf)

    @property
    def consumed(self):
        """Stream bytes taken by the label header and completed messages."""
        return self._consumed

    def feed(self, data):
        """Messages completed by `data`, in stream order; DecodeError (sticky) on bad input."""
        cdef Py_buffer dv
        cdef list out = []
        cdef Py_ssize_t held, drop
        if self._failed is not None:
            raise self._failed.with_traceback(None)
        if self._busy:
            raise RuntimeError("StreamDecoder.feed() called while already feeding")
        PyObject_GetBuffer(data, &dv, PyBUF_SIMPLE)
        try:
            if dv.len == 0:
                return out
            self._busy = True
            held = PyByteArray_GET_SIZE(self._buf)
            PyByteArray_Resize(self._buf, held + dv.len)
            memcpy(PyByteArray_AS_STRING(self._buf) + held, dv.buf, dv.len)
            while self._step(out):
                pass
        except DecodeError as exc:
            self._failed = exc
            raise
        finally:
            self._busy = False
            PyBuffer_Release(&dv)
        drop = <Py_ssize_t>(self._start - self._base)
        if drop:
            del self._buf[:drop]
            self._base = self._start
        return out

    cdef inline const unsigned char *_ptr(self):
        return <const unsigned char *>PyByteArray_AS_STRING(self._buf)

    cdef inline long long _avail(self):
        return self._base + PyByteArray_GET_SIZE(self._buf)

    cdef bytes _bytes(self, long long a, long long b):
        return PyBytes_FromStringAndSize(<const char *>self._ptr() + (a - self._base), b - a)

    cdef object _too_large(self, long long off):
        return PacketTooLarge(f"stream message larger than {self._max} bytes", off)

    cdef int _step(self, list out) except -1:
        """Advance one phase if the bytes allow; 1 to call again, 0 to wait for more."""
        cdef int phase = self._phase
        cdef long long start = self._start
        cdef long long avail = self._avail()
        cdef long long base = self._base
        cdef const unsigned char *q = self._ptr()                # q[off - base] = stream byte off
        cdef int t
        cdef long long nodes, user_len, length, end, size
        if phase == P_TYPE:
            if avail <= start:
                return 0
            t = q[start - base]
            self._type = t
            if t == T_ENCRYPT:
                if self._keyring is None:
                    raise DecryptError(
                        "Remote state is encrypted and encryption is not configured", start)
                self._phase = P_ENC_LEN
                return 1
            if self._keyring is not None and self._verify:
                raise DecryptError("Encryption is configured but remote state is not encrypted",
                                   start)
            if t == T_PING or t == T_ACK or t == T_ERR or t == T_COMPRESS:
                self._phase = P_OBJECT
            elif t == T_PUSH_PULL or t == T_USER:
                self._phase = P_HEADER
            else:
                raise MalformedPacket(f"unexpected stream message type {t}", start)
            self._pos = start + 1
            self._rem = 1
            self._reserve = 0
            return 1
        if phase == P_OBJECT or phase == P_HEADER or phase == P_STATES:
            if not self._scan(q, base, avail):
                return 0
            if phase == P_OBJECT:
                self._finish(self._pos, out)
                return 1
            if phase == P_HEADER:
                hdr = _unpack(self._bytes(start + 1, self._pos), "stream header", start)
                if self._type == T_USER:
                    n = 0
                    u = _user_header(hdr, start)
                else:
                    _, n, u = _push_pull_header(hdr, start)
                # Every node state takes at least one byte. Python ints: Go ints reach
                # 2**63 - 1, beyond what the sum could hold in a long long.
                if self._pos - start + n + u > self._max:
                    raise self._too_large(start)
                nodes = n
                user_len = u
                self._rem = nodes
                self._reserve = user_len
                self._phase = P_STATES
                if nodes:
                    return 1
            self._end = self._pos + self._reserve
            self._phase = P_RAW
            return 1
        if phase == P_RAW:
            if avail < self._end:
                return 0
            self._finish(self._end, out)
            return 1
        if phase == P_ENC_LEN:
            if avail < start + 5:
                return 0
            length = _be32(q + (start + 1 - base))
            if length > self._max:
                raise PacketTooLarge(f"Remote node state is larger than limit ({length})", start)
            self._end = start + 5 + length
            self._phase = P_ENC_BODY
            return 1
        if phase == P_ENC_BODY:
            end = self._end
            if avail < end:
                return 0
            header = self._bytes(start, start + 5)
            try:
                plain = self._keyring.decrypt(self._bytes(start + 5, end), header + self._label)
            except DecryptError as exc:
                raise DecryptError(exc.reason, start) from None
            out.append(_stream_message(plain, start, True, self._max_decompressed))
            self._done(end)
            return 1
        # P_LABEL: memberlist ≥ 0.3.0 RemoveLabelHeaderFromStream, then the label check
        if avail <= start:
            return 0
        end = start
        size = 0
        if q[start - base] == T_LABEL:
            if avail < start + 2:
                return 0
            size = q[start + 1 - base]
            if size < 1:
                raise MalformedPacket("label header cannot be empty when present", start)
            end = start + 2 + size
            if avail < end:
                return 0
        if not (size == PyBytes_GET_SIZE(self._label)
                and memcmp(q + (start + 2 - base), PyBytes_AS_STRING(self._label), size) == 0):
            got = self._bytes(start + 2, end) if size else b""
            raise MalformedPacket(f"discarding stream with unacceptable label {got!r}", start)
        self._phase = P_TYPE
        self._start = end
        self._consumed = end
        return 1

    cdef int _finish(self, long long end, list out) except -1:
        """The plain message [start, end) is complete: decode it."""
        cdef long long start = self._start
        out.append(_stream_message(self._bytes(start, end), start, True,
                                   self._max_decompressed))
        self._done(end)
        return 0

    cdef inline void _done(self, long long end) noexcept:
        self._phase = P_TYPE
        self._start = end
        self._consumed = end

    cdef int _scan(self, const unsigned char *q, long long base, long long avail) except -1:
        """Advance over buffered msgpack elements (q[off - base] = stream byte off); 1 once `_rem`
        objects are complete, 0 if more bytes are needed.

        Each check needs only bytes at fixed positions of the current element and waits at
        that element's first byte when they are missing, so errors do not depend on chunking.
        """
        cdef long long pos = self._pos
        cdef long long start = self._start
        cdef long long rem = self._rem
        cdef long long limit = self._max - self._reserve
        cdef long long count
        cdef unsigned char b, c
        cdef long long h
        cdef int done = 0
        while pos < avail:
            b = q[pos - base]
            c = _CLASS[b]
            if c == K_INVALID:
                raise MalformedPacket(f"invalid msgpack type byte 0x{b:02x}", pos)
            h = _SIZE[b]
            # Every element still needed takes at least one byte: rem - 1 after this one.
            if pos - start + h + rem - 1 > limit:
                raise self._too_large(pos)
            if c == K_FIXED:
                if pos + h > avail:
                    break
                pos += h
                rem -= 1
            elif c == K_BLOB:
                if pos + h > avail:
                    break
                count = _read_be(q + (pos + 1 - base), _WIDTH[b])
                if pos - start + h + count + rem - 1 > limit:
                    raise self._too_large(pos)
                if pos + h + count > avail:
                    break          # payload not all here: resume at this element's header
                pos += h + count
                rem -= 1
            else:
                if _WIDTH[b] == 0:
                    count = b & 0x0f
                else:
                    if pos + h > avail:
                        break
                    count = _read_be(q + (pos + 1 - base), _WIDTH[b])
                if c == K_MAP:
                    count *= 2
                if pos - start + h + count + rem - 1 > limit:
                    raise self._too_large(pos)
                pos += h
                rem += count - 1
            if rem == 0:
                done = 1
                break
        self._pos = pos
        self._rem = rem
        return done

# cython: language_level=3
"""Consul msgpack-RPC framing, compiled (twin of `rpcframe_py`: same API, same errors).

Consul's RPC codec (hashicorp/net-rpc-msgpackrpc) has no length prefix: a call is two
consecutive msgpack objects on the stream, a header map then the body.
  request: {"ServiceMethod": str, "Seq": uint64}            then the body
  reply:   {"ServiceMethod": str, "Seq": uint64, "Error": str} then the body

A resumable scanner finds where each object ends without decoding it (position plus one
counter of objects still needed; no stack), enforcing the size limits as soon as a declared
length or element count proves an object cannot fit. Complete objects are then decoded by
msgpack's C extension: small ones in runs through one Unpacker, large ones by unpackb
straight from the stream bytes (a `_Slice` buffer), without copying them.

Every DecodeError depends only on the stream's bytes, never on how they were chunked:
each check needs only bytes at fixed positions of the current element, the checks run in
a fixed order, and a check that lacks bytes waits at that element's first byte.
"""
cimport cython
from cpython.buffer cimport (
    PyBUF_FORMAT, PyBUF_ND, PyBUF_SIMPLE, PyBUF_STRIDES, PyBUF_WRITABLE,
    PyBuffer_Release, PyObject_GetBuffer,
)
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_AsUnsignedLongLong
from cpython.object cimport PyObject
from libc.string cimport memcpy
from _core.mpwrite cimport _put_be, _put_uint, _uint_size
from _core.mpscan cimport K_ARRAY, K_BLOB, K_FIXED, K_INVALID, K_MAP, build_scan_table

import operator

import msgpack

from .errors import BadHeader, DecodeError, FrameTooLarge, MalformedFrame

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

__all__ = [
    "REQUEST",
    "REPLY",
    "DEFAULT_MAX_HEADER",
    "DEFAULT_MAX_BODY",
    "MAX_LIMIT",
    "FrameDecoder",
    "encode_request",
    "encode_reply",
]

REQUEST = 0
REPLY = 1
DEFAULT_MAX_HEADER = 64 * 1024
DEFAULT_MAX_BODY = 8 * 1024 * 1024
MAX_LIMIT = 1 << 40          # largest accepted max_header/max_body: keeps the sums below in range

cdef enum:
    C_REQUEST = 0
    C_REPLY = 1

cdef object _unpackb = msgpack.unpackb
cdef object _packb = msgpack.packb

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


cdef object _too_large(str what, long long limit, long long offset):
    return FrameTooLarge(f"{what} larger than {limit} bytes", offset)


cdef object _undecodable(str what, object exc, long long offset):
    detail = str(exc)
    reason = f"undecodable {what}: {type(exc).__name__}"
    return MalformedFrame(f"{reason}: {detail}" if detail else reason, offset)


cdef long long _check_limit(object value, str name) except -1:
    value = operator.index(value)
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be in 1..{MAX_LIMIT}, got {value}")
    return value


cdef char *_FORMAT_B = "B"


@cython.final
@cython.no_gc
@cython.freelist(8)
cdef class _Slice:
    """Read-only buffer over owner[start:start+length] for one unpackb call.

    Cheaper than slicing a memoryview (one small object, no slice/int objects), and safe
    even if it outlived the feed: every export re-acquires owner's buffer and re-checks
    the bounds, and holds that buffer (so a bytearray owner cannot resize) until released.
    """
    cdef object owner
    cdef Py_ssize_t start
    cdef Py_ssize_t length
    cdef Py_buffer inner
    cdef bint held

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("frame slice is read-only")
        if self.held:
            raise BufferError("frame slice already exported")
        PyObject_GetBuffer(self.owner, &self.inner, PyBUF_SIMPLE)
        if self.start + self.length > self.inner.len:
            PyBuffer_Release(&self.inner)
            raise BufferError("frame slice outside its buffer")
        self.held = True
        view.buf = <char *>self.inner.buf + self.start
        view.len = self.length
        view.readonly = 1
        view.itemsize = 1
        view.format = NULL
        if flags & PyBUF_FORMAT:
            view.format = _FORMAT_B
        view.ndim = 1
        view.shape = &view.len if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = &view.itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self

    def __releasebuffer__(self, Py_buffer *view):
        if self.held:
            self.held = False
            PyBuffer_Release(&self.inner)

    def __dealloc__(self):
        if self.held:
            self.held = False
            PyBuffer_Release(&self.inner)


# Small objects are decoded in runs by one msgpack Unpacker per decoder: feed() copies the
# run once (as a bare Unpacker does) and next() per object is far cheaper than unpackb's
# per-call setup (argument parsing, buffer export, context init: ~1.25x an Unpacker on
# its own for Consul's small RPC frames). Objects above SMALL_OBJECT are decoded by
# unpackb straight from the stream bytes, so large bodies are never copied. Both
# paths run the same msgpack unpack code, so they raise the same exceptions (twin
# equivalence is checked by tests/core/test_rpcframe.py).
# The Unpacker's buffer grows to the largest run and stays: RUN_BYTES bounds the memory a
# decoder (one per connection) keeps.
cdef enum:
    SMALL_OBJECT = 8 * 1024       # largest object decoded through the run Unpacker
    RUN_BYTES = 32 * 1024         # largest run fed to it at once
    RUN_OBJECTS = 256             # objects per run (their start offsets live on the C stack)


@cython.final
cdef class FrameDecoder:
    """Splits a Consul msgpack-RPC byte stream into frames; feed it chunks as they arrive."""

    cdef int _kind
    cdef long long _max_header
    cdef long long _max_body
    cdef bytearray _buf       # stream bytes from _base on, kept only between feeds
    cdef long long _base      # stream offset of _buf[0] (or of the next byte fed)
    cdef long long _consumed  # stream offset just past the last completed frame
    cdef long long _start     # stream offset of the object being scanned
    cdef long long _pos       # stream offset of the next element to scan
    cdef long long _rem       # objects still needed to complete the current object
    cdef bint _scan_body      # the object being scanned is a body (else a header)
    cdef bint _in_body        # a header was decoded (method/seq/error set), body next
    cdef object _method
    cdef object _seq
    cdef object _error
    cdef object _failed
    cdef object _unpacker     # run decoder, made on first use
    cdef bint _busy           # inside feed(): a second feeder would corrupt the scan state

    def __init__(self, kind=REQUEST, max_header=DEFAULT_MAX_HEADER,
                 max_body=DEFAULT_MAX_BODY):
        if kind != REQUEST and kind != REPLY:
            raise ValueError(f"kind must be REQUEST or REPLY, got {kind!r}")
        self._kind = C_REPLY if kind == REPLY else C_REQUEST
        self._max_header = _check_limit(max_header, "max_header")
        self._max_body = _check_limit(max_body, "max_body")
        self._buf = bytearray()
        self._base = 0
        self._consumed = 0
        self._start = 0
        self._pos = 0
        self._rem = 1
        self._scan_body = False
        self._in_body = False
        self._method = ""
        self._seq = 0
        self._error = ""
        self._failed = None
        self._unpacker = None
        self._busy = False

    @property
    def buffered(self):
        """Bytes held back for the incomplete object at the end of the stream."""
        return PyByteArray_GET_SIZE(self._buf)

    @property
    def consumed(self):
        """Stream bytes consumed by completed frames."""
        return self._consumed

    def feed(self, data):
        """Frames completed by `data`, in stream order; DecodeError (sticky) on bad input."""
        cdef Py_buffer dv
        cdef Py_buffer bv
        cdef list frames = []
        cdef Py_ssize_t held, keep, n
        cdef long long base = self._base
        if self._failed is not None:
            raise self._failed.with_traceback(None)
        if self._busy:
            raise RuntimeError("FrameDecoder.feed() called while already feeding")
        PyObject_GetBuffer(data, &dv, PyBUF_SIMPLE)
        self._busy = True
        try:
            if dv.len == 0:
                return frames
            held = PyByteArray_GET_SIZE(self._buf)
            if held:
                # Resume at self._pos: only the current element's header is re-read.
                PyByteArray_Resize(self._buf, held + dv.len)
                memcpy(PyByteArray_AS_STRING(self._buf) + held, dv.buf, dv.len)
                PyObject_GetBuffer(self._buf, &bv, PyBUF_SIMPLE)   # pinned while we scan it
                try:
                    keep = self._run(self._buf, <const unsigned char *>bv.buf, bv.len, base, frames)
                finally:
                    PyBuffer_Release(&bv)
                if keep:
                    del self._buf[:keep]    # once per feed, after the pin is released
            else:
                # Nothing held back: scan the caller's chunk in place, keep only the tail.
                n = dv.len
                keep = self._run(data, <const unsigned char *>dv.buf, n, base, frames)
                if keep < n:
                    PyByteArray_Resize(self._buf, n - keep)
                    memcpy(PyByteArray_AS_STRING(self._buf), <char *>dv.buf + keep, n - keep)
        except DecodeError as exc:
            self._failed = exc
            raise
        finally:
            self._busy = False
            PyBuffer_Release(&dv)
        self._base = self._start
        return frames

    cdef Py_ssize_t _run(self, object owner, const unsigned char *p, Py_ssize_t n,
                         long long base, list frames) except -1:
        """Take every frame completed in p[0:n] (p[0] is stream byte `base`); bytes to drop.

        Scanning runs ahead of decoding by at most one run; a scan error first decodes the
        objects before it, so errors come out in stream order whatever the chunking.
        """
        cdef long long starts[RUN_OBJECTS]
        cdef int count = 0
        cdef long long run_end = 0
        cdef long long s, e
        cdef int r
        while True:
            try:
                r = self._scan(p, n, base)
            except DecodeError:
                if count:
                    self._decode_run(owner, base, starts, count, run_end, frames)
                raise
            if not r:
                break
            s = self._start
            e = self._pos
            if e - s <= SMALL_OBJECT:
                if count and (count == RUN_OBJECTS or e - starts[0] > RUN_BYTES):
                    self._decode_run(owner, base, starts, count, run_end, frames)
                    count = 0
                starts[count] = s
                count += 1
                run_end = e
            else:
                if count:
                    self._decode_run(owner, base, starts, count, run_end, frames)
                    count = 0
                self._take(self._decode_one(owner, base, s, e), s, e, frames)
            self._scan_body = not self._scan_body
            self._start = e
            self._rem = 1
        if count:
            self._decode_run(owner, base, starts, count, run_end, frames)
        return <Py_ssize_t>(self._start - base)

    cdef int _scan(self, const unsigned char *p, Py_ssize_t n, long long base) except -1:
        """Advance over p[0:n]; 1 once the current object is complete, 0 if it needs more."""
        cdef Py_ssize_t pos = <Py_ssize_t>(self._pos - base)
        cdef Py_ssize_t start = <Py_ssize_t>(self._start - base)
        cdef long long rem = self._rem
        cdef long long limit = self._max_body if self._scan_body else self._max_header
        cdef long long count
        cdef unsigned char b, c
        cdef Py_ssize_t h
        cdef int done = 0
        while pos < n:
            b = p[pos]
            c = _CLASS[b]
            if c == K_INVALID:
                raise MalformedFrame(f"invalid msgpack type byte 0x{b:02x}", base + pos)
            h = _SIZE[b]
            # Every element still needed takes at least one byte: rem - 1 after this one.
            if pos - start + h + rem - 1 > limit:
                raise self._too_large(limit, base + pos)
            if c == K_FIXED:
                if h > n - pos:
                    break
                pos += h
                rem -= 1
            elif c == K_BLOB:
                if h > n - pos:
                    break
                count = _read_be(p + pos + 1, _WIDTH[b])
                if pos - start + h + count + rem - 1 > limit:
                    raise self._too_large(limit, base + pos)
                if h + count > n - pos:
                    break              # payload not all here: resume at this element's header
                pos += h + count
                rem -= 1
            else:
                if _WIDTH[b] == 0:
                    count = b & 0x0f
                else:
                    if h > n - pos:
                        break
                    count = _read_be(p + pos + 1, _WIDTH[b])
                if c == K_MAP:
                    count *= 2
                if pos - start + h + count + rem - 1 > limit:
                    raise self._too_large(limit, base + pos)
                pos += h
                rem += count - 1
            if rem == 0:
                done = 1
                break
        self._pos = base + pos
        self._rem = rem
        return done

    cdef object _too_large(self, long long limit, long long offset):
        return _too_large("body" if self._scan_body else "header", limit, offset)

    cdef int _decode_run(self, object owner, long long base, const long long *starts,
                         int count, long long run_end, list frames) except -1:
        """Decode `count` contiguous small objects starting at starts[0] and ending at run_end."""
        cdef _Slice view = _Slice.__new__(_Slice)
        cdef int i
        cdef long long end
        if self._unpacker is None:
            self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False,
                                              max_buffer_size=RUN_BYTES + SMALL_OBJECT,
                                              read_size=4 * 1024)
        unpacker = self._unpacker
        view.owner = owner
        view.start = <Py_ssize_t>(starts[0] - base)
        view.length = <Py_ssize_t>(run_end - starts[0])
        unpacker.feed(view)
        for i in range(count):
            end = starts[i + 1] if i + 1 < count else run_end
            try:
                obj = next(unpacker)
            except Exception as exc:  # anything msgpack refuses is the peer's fault
                raise _undecodable("body" if self._in_body else "header", exc, starts[i]) from exc
            self._take(obj, starts[i], end, frames)
        return 0

    cdef object _decode_one(self, object owner, long long base, long long start, long long end):
        """Decode the complete object [start, end) in place with unpackb."""
        cdef _Slice view = _Slice.__new__(_Slice)
        view.owner = owner
        view.start = <Py_ssize_t>(start - base)
        view.length = <Py_ssize_t>(end - start)
        try:
            return _unpackb(view, raw=False, strict_map_key=False)
        except Exception as exc:      # anything msgpack refuses is the peer's fault
            raise _undecodable("body" if self._in_body else "header", exc, start) from exc

    cdef int _take(self, object obj, long long start, long long end, list frames) except -1:
        """A decoded object: a header to check and hold, or the body completing a frame."""
        if not self._in_body:
            self._take_header(obj, start)
            self._in_body = True
        else:
            if self._kind == C_REQUEST:
                frames.append((self._method, self._seq, obj))
            else:
                frames.append((self._method, self._seq, self._error, obj))
            self._in_body = False
            self._consumed = end
        return 0

    cdef int _take_header(self, object header, long long at) except -1:
        cdef PyObject *item
        if type(header) is not dict:
            raise BadHeader("header is not a map", at)
        item = PyDict_GetItem(header, "ServiceMethod")
        if item is NULL or <object>item is None:
            raise BadHeader("header has no ServiceMethod", at)
        method = <object>item
        if type(method) is not str:
            raise BadHeader("ServiceMethod is not a string", at)
        item = PyDict_GetItem(header, "Seq")
        if item is NULL or <object>item is None:
            raise BadHeader("header has no Seq", at)
        seq = <object>item
        if type(seq) is not int:      # bool is an int subclass but not a Seq
            raise BadHeader("Seq is not an integer", at)
        try:
            PyLong_AsUnsignedLongLong(seq)
        except OverflowError:
            raise BadHeader("Seq out of range", at) from None
        if self._kind == C_REPLY:
            item = PyDict_GetItem(header, "Error")
            if item is NULL or <object>item is None:   # missing or nil: no error
                self._error = ""
            elif type(<object>item) is str:
                self._error = <object>item
            else:
                raise BadHeader("Error is not a string", at)
        self._method = method
        self._seq = seq
        return 0


# -- encoder ---------------------------------------------------------------------------

cdef inline Py_ssize_t _str_header_size(Py_ssize_t n) noexcept:
    if n < 32:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    return 5


cdef unsigned char *_put_str(unsigned char *q, const char *s, Py_ssize_t n) noexcept:
    """msgpack str: the smallest header for n bytes (as msgpack's packer picks), then s."""
    if n < 32:
        q[0] = 0xa0 | <unsigned char>n
        q += 1
    elif n < 0x100:
        q[0] = 0xd9
        q = _put_be(q + 1, n, 1)
    elif n < 0x10000:
        q[0] = 0xda
        q = _put_be(q + 1, n, 2)
    else:
        q[0] = 0xdb
        q = _put_be(q + 1, n, 4)
    memcpy(q, s, n)
    return q + n


cdef const char *_utf8(object s, str name, Py_ssize_t *n) except NULL:
    if not isinstance(s, str):
        raise TypeError(f"{name} must be str, not {type(s).__name__}")
    cdef const char *raw = PyUnicode_AsUTF8AndSize(s, n)
    if n[0] > 0xffffffff:
        raise ValueError("string too long for msgpack")
    return raw


cdef unsigned long long _seq(object seq) except? 0xffffffffffffffff:
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TypeError(f"seq must be int, not {type(seq).__name__}")
    try:
        return PyLong_AsUnsignedLongLong(seq)
    except OverflowError:
        raise ValueError(f"seq {seq} out of range 0..2**64-1") from None


cdef bytes _encode(object method, object seq, object error, object body):
    """Header (error is None for a request) written by hand, then packb(body)."""
    cdef Py_ssize_t mlen, elen = 0, size
    cdef const char *m = _utf8(method, "method", &mlen)
    cdef const char *e = NULL
    cdef unsigned long long s = _seq(seq)
    if error is not None:
        e = _utf8(error, "error", &elen)
    cdef bytes packed = _packb(body)
    cdef Py_ssize_t blen = len(packed)
    size = 1 + 14 + _str_header_size(mlen) + mlen + 4 + _uint_size(s) + blen
    if e is not NULL:
        size += 6 + _str_header_size(elen) + elen
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char *q = <unsigned char *>PyBytes_AS_STRING(out)
    q[0] = 0x82 if e is NULL else 0x83          # fixmap of 2 or 3 entries
    q = _put_str(q + 1, "ServiceMethod", 13)
    q = _put_str(q, m, mlen)
    q = _put_str(q, "Seq", 3)
    q = _put_uint(q, s)
    if e is not NULL:
        q = _put_str(q, "Error", 5)
        q = _put_str(q, e, elen)
    memcpy(q, PyBytes_AS_STRING(packed), blen)
    return out


def encode_request(method, seq, body):
    """Header then body, equal to packb({"ServiceMethod": method, "Seq": seq}) + packb(body)."""
    return _encode(method, seq, None, body)


def encode_reply(method, seq, error, body):
    """Header then body, equal to packb({"ServiceMethod", "Seq", "Error"}) + packb(body)."""
    if error is None:
        raise TypeError("error must be str, not NoneType")
    return _encode(method, seq, error, body)

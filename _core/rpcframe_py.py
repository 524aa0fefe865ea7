"""Consul msgpack-RPC framing, pure-Python twin of `rpcframe_c` (same API, same errors).

Consul's RPC codec (hashicorp/net-rpc-msgpackrpc) has no length prefix: a call is two
consecutive msgpack objects on the stream, a header map then the body.
  request: {"ServiceMethod": str, "Seq": uint64}            then the body
  reply:   {"ServiceMethod": str, "Seq": uint64, "Error": str} then the body

A resumable scanner finds where each object ends without decoding it (position plus one
counter of objects still needed; no stack), enforcing the size limits as soon as a declared
length or element count proves an object cannot fit. A complete object is then decoded by
msgpack's C extension from a memoryview slice, without copying.

Every DecodeError depends only on the stream's bytes, never on how they were chunked:
each check needs only bytes at fixed positions of the current element, the checks run in
a fixed order, and a check that lacks bytes waits at that element's first byte.
"""
from __future__ import annotations

import operator
from typing import Any

import msgpack

from .errors import BadHeader, DecodeError, FrameTooLarge, MalformedFrame
from .msgpack_scan import ARRAY as _ARRAY
from .msgpack_scan import BLOB as _BLOB
from .msgpack_scan import CLASS as _CLASS
from .msgpack_scan import FIXED as _FIXED
from .msgpack_scan import INVALID as _INVALID
from .msgpack_scan import MAP as _MAP
from .msgpack_scan import SIZE as _SIZE
from .msgpack_scan import WIDTH as _WIDTH

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
MAX_LIMIT = 1 << 40          # largest accepted max_header/max_body: keeps C arithmetic in range

_UINT64_END = 1 << 64
_unpackb = msgpack.unpackb
_packb = msgpack.packb



def _too_large(what: str, limit: int, offset: int) -> FrameTooLarge:
    return FrameTooLarge(f"{what} larger than {limit} bytes", offset)


def _undecodable(what: str, exc: Exception, offset: int) -> MalformedFrame:
    detail = str(exc)
    reason = f"undecodable {what}: {type(exc).__name__}"
    return MalformedFrame(f"{reason}: {detail}" if detail else reason, offset)


def _byte_view(data: Any) -> memoryview:
    """A flat unsigned-byte view of any C-contiguous buffer (as PyBUF_SIMPLE gives C code)."""
    view = memoryview(data)
    if not view.c_contiguous:
        view.release()
        raise BufferError("feed() needs a C-contiguous buffer")
    if view.ndim == 1 and view.format == "B":
        return view
    flat = view.cast("B")
    view.release()            # the cast view keeps the underlying buffer
    return flat


def _check_limit(value: Any, name: str) -> int:
    value = operator.index(value)
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be in 1..{MAX_LIMIT}, got {value}")
    return value


class FrameDecoder:
    """Splits a Consul msgpack-RPC byte stream into frames; feed it chunks as they arrive."""

    __slots__ = (
        "_kind", "_max_header", "_max_body", "_buf", "_base", "_consumed",
        "_start", "_pos", "_rem", "_in_body", "_method", "_seq", "_error", "_failed", "_busy",
    )

    def __init__(self, kind: int = REQUEST, max_header: int = DEFAULT_MAX_HEADER,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        if kind != REQUEST and kind != REPLY:
            raise ValueError(f"kind must be REQUEST or REPLY, got {kind!r}")
        self._kind = REPLY if kind == REPLY else REQUEST
        self._max_header = _check_limit(max_header, "max_header")
        self._max_body = _check_limit(max_body, "max_body")
        self._buf = bytearray()    # stream bytes from _base on, kept only between feeds
        self._base = 0             # stream offset of _buf[0] (or of the next byte fed)
        self._consumed = 0         # stream offset just past the last completed frame
        self._start = 0            # stream offset of the object being scanned
        self._pos = 0              # stream offset of the next element to scan
        self._rem = 1              # objects still needed to complete the current object
        self._in_body = False      # header decoded (method/seq/error set), scanning the body
        self._method = ""
        self._seq = 0
        self._error = ""
        self._failed: DecodeError | None = None
        self._busy = False         # inside feed(): a second feeder would corrupt the scan state

    @property
    def buffered(self) -> int:
        """Bytes held back for the incomplete object at the end of the stream."""
        return len(self._buf)

    @property
    def consumed(self) -> int:
        """Stream bytes consumed by completed frames."""
        return self._consumed

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple]:
        """Frames completed by `data`, in stream order; DecodeError (sticky) on bad input."""
        if self._failed is not None:
            raise self._failed.with_traceback(None)
        if self._busy:
            raise RuntimeError("FrameDecoder.feed() called while already feeding")
        frames: list[tuple] = []
        buf = self._buf
        base = self._base
        with _byte_view(data) as dv:
            if not dv.nbytes:
                return frames
            self._busy = True
            try:
                if buf:
                    buf += dv      # resumes at self._pos: only the current element is re-read
                    with memoryview(buf) as mv:
                        keep = self._run(mv, base, frames)
                    if keep:
                        del buf[:keep]   # once per feed, after every view on buf is released
                else:
                    # Nothing held back: scan the caller's chunk in place, keep only the tail.
                    keep = self._run(dv, base, frames)
                    if keep < dv.nbytes:
                        buf += dv[keep:]
            except DecodeError as exc:
                self._failed = exc
                raise
            finally:
                self._busy = False
        self._base = self._start
        return frames

    def _run(self, mv: memoryview, base: int, frames: list[tuple]) -> int:
        """Take every frame completed in mv (mv[0] is stream byte `base`); bytes to drop."""
        while self._scan(mv, base, mv.nbytes):
            obj = self._decode(mv, base)
            if self._in_body:
                if self._kind == REQUEST:
                    frames.append((self._method, self._seq, obj))
                else:
                    frames.append((self._method, self._seq, self._error, obj))
                self._in_body = False
                self._consumed = self._pos
            else:
                self._take_header(obj)
                self._in_body = True
            self._start = self._pos
            self._rem = 1
        return self._start - base

    def _scan(self, mv: memoryview, base: int, end: int) -> bool:
        """Advance over mv (mv[0] is stream byte `base`); True once the object is complete."""
        pos = self._pos - base
        start = self._start - base
        rem = self._rem
        if self._in_body:
            what, limit = "body", self._max_body
        else:
            what, limit = "header", self._max_header
        done = False
        while pos < end:
            b = mv[pos]
            c = _CLASS[b]
            if c == _INVALID:
                raise MalformedFrame(f"invalid msgpack type byte 0x{b:02x}", base + pos)
            h = _SIZE[b]
            # Every element still needed takes at least one byte: rem - 1 after this one.
            if pos - start + h + rem - 1 > limit:
                raise _too_large(what, limit, base + pos)
            if c == _FIXED:
                if pos + h > end:
                    break
                pos += h
                rem -= 1
            elif c == _BLOB:
                if pos + h > end:
                    break
                n = int.from_bytes(mv[pos + 1:pos + 1 + _WIDTH[b]], "big")
                if pos - start + h + n + rem - 1 > limit:
                    raise _too_large(what, limit, base + pos)
                if pos + h + n > end:
                    break          # payload not all here: resume at this element's header
                pos += h + n
                rem -= 1
            else:
                w = _WIDTH[b]
                if w == 0:
                    n = b & 0x0F
                else:
                    if pos + h > end:
                        break
                    n = int.from_bytes(mv[pos + 1:pos + 1 + w], "big")
                if c == _MAP:
                    n *= 2
                if pos - start + h + n + rem - 1 > limit:
                    raise _too_large(what, limit, base + pos)
                pos += h
                rem += n - 1
            if rem == 0:
                done = True
                break
        self._pos = base + pos
        self._rem = rem
        return done

    def _decode(self, mv: memoryview, base: int) -> Any:
        """Decode the complete object [_start, _pos) with msgpack's C extension."""
        with mv[self._start - base:self._pos - base] as view:
            try:
                return _unpackb(view, raw=False, strict_map_key=False)
            except Exception as exc:  # anything msgpack refuses is the peer's fault
                what = "body" if self._in_body else "header"
                raise _undecodable(what, exc, self._start) from exc

    def _take_header(self, header: Any) -> None:
        at = self._start
        if type(header) is not dict:
            raise BadHeader("header is not a map", at)
        method = header.get("ServiceMethod")
        if method is None:
            raise BadHeader("header has no ServiceMethod", at)
        if type(method) is not str:
            raise BadHeader("ServiceMethod is not a string", at)
        seq = header.get("Seq")
        if seq is None:
            raise BadHeader("header has no Seq", at)
        if type(seq) is not int:      # bool is an int subclass but not a Seq
            raise BadHeader("Seq is not an integer", at)
        if not 0 <= seq < _UINT64_END:
            raise BadHeader("Seq out of range", at)
        if self._kind == REPLY:
            error = header.get("Error")
            if error is None:         # missing or nil: no error
                error = ""
            elif type(error) is not str:
                raise BadHeader("Error is not a string", at)
            self._error = error
        self._method = method
        self._seq = seq


def _str_header(n: int) -> bytes:
    if n < 32:
        return bytes((0xA0 | n,))
    if n < 0x100:
        return bytes((0xD9, n))
    if n < 0x10000:
        return b"\xda" + n.to_bytes(2, "big")
    if n <= 0xFFFFFFFF:
        return b"\xdb" + n.to_bytes(4, "big")
    raise ValueError("string too long for msgpack")


def _uint(v: int) -> bytes:
    if v < 0x80:
        return bytes((v,))
    if v < 0x100:
        return bytes((0xCC, v))
    if v < 0x10000:
        return b"\xcd" + v.to_bytes(2, "big")
    if v < 0x100000000:
        return b"\xce" + v.to_bytes(4, "big")
    return b"\xcf" + v.to_bytes(8, "big")


def _str(s: Any, name: str) -> bytes:
    if not isinstance(s, str):
        raise TypeError(f"{name} must be str, not {type(s).__name__}")
    raw = s.encode("utf-8")
    return _str_header(len(raw)) + raw


def _seq(seq: Any) -> bytes:
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise TypeError(f"seq must be int, not {type(seq).__name__}")
    if not 0 <= seq < _UINT64_END:
        raise ValueError(f"seq {seq} out of range 0..2**64-1")
    return _uint(int(seq))


def encode_request(method: str, seq: int, body: Any) -> bytes:
    """Header then body, equal to packb({"ServiceMethod": method, "Seq": seq}) + packb(body)."""
    return b"".join((b"\x82\xadServiceMethod", _str(method, "method"),
                     b"\xa3Seq", _seq(seq), _packb(body)))


def encode_reply(method: str, seq: int, error: str, body: Any) -> bytes:
    """Header then body, equal to packb({"ServiceMethod", "Seq", "Error"}) + packb(body)."""
    return b"".join((b"\x83\xadServiceMethod", _str(method, "method"),
                     b"\xa3Seq", _seq(seq), b"\xa5Error", _str(error, "error"),
                     _packb(body)))

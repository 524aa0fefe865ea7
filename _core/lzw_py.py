"""Go's compress/lzw (order LSB, literal width 8), pure-Python twin of `lzw_c` (same API,
same errors).

memberlist compresses with `lzw.NewWriter(w, lzw.LSB, 8)` and decompresses with the
matching reader (shared/spec/memberlist-wire.md §1.8): the GIF flavour, clear code 256,
EOF code 257, first free code 258, codes 9..12 bits wide packed LSB first.

Writer (Go's writer.go): a clear code first; `hi` starts at 257 and is incremented after
every emitted data code (`hi` is then the code just assigned); the width grows when `hi`
reaches 2**width; when `hi` reaches 4095 a clear code is emitted at the current width
(12) and the table resets. Close emits the pending code and does the same `hi` step, then
the EOF code, then the partial last byte. The output is deterministic, so captured Go
streams re-encode byte for byte.

Reader (Go's reader.go): starts in the post-clear state (a leading clear is optional):
width 9, `hi` = 257 (the EOF code, not 258), no previous code. `hi` grows after every code,
so the first code after a clear defines nothing and the second defines 258. At width 12
`hi` stays 4095 and the previous code is dropped until a clear. A stream without the EOF
code is an error (Go's io.ErrUnexpectedEOF); bits and bytes after the EOF code are ignored.
"""
from __future__ import annotations

import operator
from typing import Any

from .errors import BadCompression, PacketTooLarge

__all__ = ["DEFAULT_MAX_SIZE", "compress", "decompress"]

DEFAULT_MAX_SIZE = 40 * 1024 * 1024   # memberlist's maxDecompressedBytes (newer releases)

# Go's constants for litWidth 8 (shared/spec/memberlist-wire.md §1.8).
_CLEAR = 256
_EOF = 257
_MAX_CODE = 4095          # 12-bit codes; the writer resets when hi reaches it
_MAX_WIDTH = 12


def _flat_bytes(data: Any) -> bytes:
    """The bytes of any C-contiguous buffer (as PyBUF_SIMPLE gives C code)."""
    if type(data) is bytes:
        return data
    with memoryview(data) as view:
        if not view.c_contiguous:
            raise BufferError("lzw needs a C-contiguous buffer")
        return view.tobytes()


def compress(data: Any) -> bytes:
    """`data` compressed exactly as Go's lzw.NewWriter(w, lzw.LSB, 8) writes it."""
    src = _flat_bytes(data)
    out = bytearray()
    append = out.append
    table: dict[int, int] = {}       # (prefix code << 8 | next byte) -> code
    get = table.get
    width = 9
    hi = _EOF                        # the code implied by the next emission
    overflow = 1 << width
    bits = _CLEAR                    # the leading clear code (GIF spec, Go >= 1.17)
    nbits = width
    while nbits >= 8:
        append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    if src:
        code = src[0]
        for lit in src[1:]:
            key = (code << 8) | lit
            hit = get(key)
            if hit is not None:
                code = hit
                continue
            bits |= code << nbits
            nbits += width
            while nbits >= 8:
                append(bits & 0xFF)
                bits >>= 8
                nbits -= 8
            code = lit
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == _MAX_CODE:           # out of codes: clear at width 12, reset
                bits |= _CLEAR << nbits
                nbits += width
                while nbits >= 8:
                    append(bits & 0xFF)
                    bits >>= 8
                    nbits -= 8
                width = 9
                hi = _EOF
                overflow = 1 << width
                table.clear()
                continue
            table[key] = hi
        # Close(): the pending code, then the same hi step (may widen or clear).
        bits |= code << nbits
        nbits += width
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == _MAX_CODE:
            bits |= _CLEAR << nbits
            nbits += width
            width = 9
    bits |= _EOF << nbits
    nbits += width
    while nbits > 0:                  # whole bytes, then the partial last byte
        append(bits & 0xFF)
        bits >>= 8
        nbits -= 8
    return bytes(out)


def _check_max_size(max_size: Any) -> int:
    max_size = operator.index(max_size)
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    return max_size


def decompress(data: Any, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Decode a Go lzw (LSB, 8) stream; BadCompression for an invalid code or a missing
    EOF code, PacketTooLarge as soon as the output would exceed `max_size` bytes."""
    max_size = _check_max_size(max_size)
    src = _flat_bytes(data)
    n = len(src)
    out = bytearray()
    # Code c >= 258 expands to out[pos[c]:pos[c] + length[c]]: the previous code's output
    # plus the first byte of the next one, which follow each other in the output. Keeping
    # offsets, not byte strings, keeps memory to the output, whatever the stream.
    pos = [0] * (_MAX_CODE + 1)
    length = [0] * (_MAX_CODE + 1)
    width = 9
    hi = _EOF
    overflow = 1 << width
    last = -1                       # previous code; -1: none (after a clear, or saturated)
    last_pos = last_len = 0         # where the previous code's output sits
    bits = 0
    nbits = 0
    ip = 0
    while True:
        while nbits < width:
            if ip >= n:
                raise BadCompression("LZW stream ends without the EOF code", n)
            bits |= src[ip] << nbits
            ip += 1
            nbits += 8
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        o = len(out)
        if code < _CLEAR:
            size = 1
        elif code == _CLEAR:
            width = 9
            hi = _EOF
            overflow = 1 << width
            last = -1
            continue
        elif code == _EOF:
            break
        elif code < hi or (code == hi and last < 0):
            size = length[code]      # (== hi without a previous code: saturated at 4095)
        elif code == hi:
            size = last_len + 1      # KwKwK: previous expansion + its own first byte
        else:
            raise BadCompression(f"invalid LZW code {code} (> {hi})", (ip * 8 - nbits - width) // 8)
        if o + size > max_size:
            raise PacketTooLarge(
                f"decompressed LZW payload exceeds {max_size} bytes", (ip * 8 - nbits - width) // 8
            )
        if code < _CLEAR:
            out.append(code)
        elif code == hi and last >= 0:
            out += out[last_pos:o]
            out.append(out[last_pos])
        else:
            p = pos[code]
            out += out[p:p + size]
        if last >= 0:               # define code hi
            pos[hi] = last_pos
            length[hi] = last_len + 1
        last = code
        last_pos = o
        last_len = size
        hi += 1
        if hi >= overflow:
            if width == _MAX_WIDTH:
                last = -1           # no new codes until a clear
                hi -= 1
            else:
                width += 1
                overflow <<= 1
    return bytes(out)

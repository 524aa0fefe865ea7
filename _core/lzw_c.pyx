# cython: language_level=3
"""Go's compress/lzw (order LSB, literal width 8), compiled (twin of `lzw_py`: same API,
same errors).

memberlist compresses with `lzw.NewWriter(w, lzw.LSB, 8)` and decompresses with the
matching reader (shared/spec/memberlist-wire.md §1.8): the GIF flavour, clear code 256,
EOF code 257, first free code 258, codes 9..12 bits wide packed LSB first. The state
machines are described in `lzw_py`; this module follows them step for step.

Writer: the dictionary is a linear-probing hash of (prefix code << 8 | byte) -> code, as
Go's writer keeps it (the output depends only on what the dictionary holds, not on how
it is hashed), sized to the input so a small packet does not clear 64 KiB per call.

Reader: every code's expansion is a run of bytes already in the output (the previous
code's expansion plus the first byte of the one after it), so the table keeps
(offset, length) pairs and a code is decoded with one copy, not a walk of its prefix
chain. The output buffer doubles as needed but never beyond max_size (PyMem_Raw*: safe
without the GIL, and visible to tracemalloc).

Inputs of NOGIL_MIN bytes or more are processed without the GIL.
"""
cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc, PyMem_RawRealloc
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import operator

from .errors import BadCompression, PacketTooLarge

cdef extern from "Python.h":
    const Py_ssize_t PY_SSIZE_T_MAX

__all__ = ["DEFAULT_MAX_SIZE", "compress", "decompress"]

DEFAULT_MAX_SIZE = 40 * 1024 * 1024   # memberlist's maxDecompressedBytes (newer releases)

# Go's constants for litWidth 8 (shared/spec/memberlist-wire.md §1.8).
cdef enum:
    CLEAR = 256
    EOF_CODE = 257
    MAX_CODE = 4095          # 12-bit codes; the writer resets when hi reaches it
    MAX_WIDTH = 12
    NCODES = 4096
    HASH_SLOTS = 16384       # >= 4x the codes one table generation can hold (as Go)
    NOGIL_MIN = 16384        # below this, dropping the GIL costs more than it frees
    SLACK = 16               # bytes allocated past the output's capacity, for _copy_run

# _decompress outcomes
cdef enum:
    D_OK = 0
    D_TRUNCATED = 1
    D_INVALID = 2
    D_TOO_LARGE = 3
    D_NO_MEMORY = 4


# -- writer -----------------------------------------------------------------------------

cdef struct BitWriter:
    uint64_t bits
    unsigned int nbits
    uint8_t *dst
    Py_ssize_t o


cdef inline void _put(BitWriter *w, uint32_t code, unsigned int width) noexcept nogil:
    w.bits |= (<uint64_t>code) << w.nbits
    w.nbits += width
    while w.nbits >= 8:
        w.dst[w.o] = <uint8_t>w.bits
        w.o += 1
        w.bits >>= 8
        w.nbits -= 8


@cython.boundscheck(False)
@cython.wraparound(False)
cdef Py_ssize_t _compress(const uint8_t *src, Py_ssize_t n, uint8_t *dst) noexcept nogil:
    """Writes Go's LSB/8 stream for src[:n] to dst (sized by _compress_bound); its length."""
    cdef uint32_t table[HASH_SLOTS]   # key << 12 | code; 0 = empty (codes are >= 258)
    cdef uint32_t mask, key, h, t, code, lit, hi, overflow
    cdef unsigned int width = 9
    cdef Py_ssize_t i, slots, gen_codes
    cdef BitWriter w
    w.bits = 0
    w.nbits = 0
    w.dst = dst
    w.o = 0
    hi = EOF_CODE
    overflow = 1u << width
    _put(&w, CLEAR, width)           # the leading clear code (GIF spec, Go >= 1.17)
    if n > 0:
        # One generation defines at most min(n, 4095 - 258) codes: 4 slots per code.
        gen_codes = n if n < NCODES else NCODES
        slots = 1024
        while slots < 4 * gen_codes and slots < HASH_SLOTS:
            slots <<= 1
        mask = <uint32_t>(slots - 1)
        memset(table, 0, slots * sizeof(uint32_t))
        code = src[0]
        for i in range(1, n):
            lit = src[i]
            key = (code << 8) | lit
            h = ((key >> 12) ^ key) & mask
            t = table[h]
            while t != 0:
                if (t >> 12) == key:
                    break
                h = (h + 1) & mask
                t = table[h]
            if t != 0:
                code = t & MAX_CODE
                continue
            _put(&w, code, width)
            code = lit
            hi += 1
            if hi == overflow:
                width += 1
                overflow <<= 1
            if hi == MAX_CODE:            # out of codes: clear at width 12, reset
                _put(&w, CLEAR, width)
                width = 9
                hi = EOF_CODE
                overflow = 1u << width
                memset(table, 0, slots * sizeof(uint32_t))
                continue
            table[h] = (key << 12) | hi  # h: the empty slot that ended the probe
        # Close(): the pending code, then the same hi step (may widen or clear).
        _put(&w, code, width)
        hi += 1
        if hi == overflow:
            width += 1
            overflow <<= 1
        if hi == MAX_CODE:
            _put(&w, CLEAR, width)
            width = 9
    _put(&w, EOF_CODE, width)
    if w.nbits > 0:
        dst[w.o] = <uint8_t>w.bits
        w.o += 1
    return w.o


cdef inline Py_ssize_t _compress_bound(Py_ssize_t n) noexcept nogil:
    # Codes: leading clear + at most one per input byte + one clear per 3837 codes + EOF,
    # each at most 12 bits.
    return (n + n // 3000 + 4) * 3 // 2 + 2


def compress(data) -> bytes:
    """`data` compressed exactly as Go's lzw.NewWriter(w, lzw.LSB, 8) writes it."""
    cdef Py_buffer view
    cdef uint8_t *dst
    cdef Py_ssize_t n, size
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        n = view.len
        dst = <uint8_t *>PyMem_RawMalloc(_compress_bound(n))
        if dst == NULL:
            raise MemoryError()
        try:
            if n >= NOGIL_MIN:
                with nogil:
                    size = _compress(<const uint8_t *>view.buf, n, dst)
            else:
                size = _compress(<const uint8_t *>view.buf, n, dst)
            return PyBytes_FromStringAndSize(<char *>dst, size)
        finally:
            PyMem_RawFree(dst)
    finally:
        PyBuffer_Release(&view)


# -- reader -----------------------------------------------------------------------------

cdef struct Reader:
    uint8_t *out           # PyMem_Raw buffer of cap + SLACK bytes
    Py_ssize_t cap
    Py_ssize_t size        # bytes of output
    Py_ssize_t err_offset  # byte of the stream where the error was found
    uint32_t err_code      # D_INVALID: the code; with err_hi
    uint32_t err_hi


cdef int _reserve(Reader *r, Py_ssize_t need, Py_ssize_t max_size) noexcept nogil:
    """Room for `need` bytes of output in total; D_TOO_LARGE past max_size."""
    cdef Py_ssize_t cap
    cdef uint8_t *grown
    if need > max_size:
        return D_TOO_LARGE
    if need <= r.cap:
        return D_OK
    cap = r.cap * 2
    if cap < need:
        cap = need
    if cap > max_size:
        cap = max_size
    grown = <uint8_t *>PyMem_RawRealloc(r.out, cap + SLACK)
    if grown == NULL:
        return D_NO_MEMORY
    r.out = grown
    r.cap = cap
    return D_OK


cdef inline void _copy_run(uint8_t *dst, const uint8_t *src, Py_ssize_t n) noexcept nogil:
    """dst[:n] = src[:n] where src + n <= dst. Short runs (most codes expand to a few
    bytes) copy two fixed 8-byte words: bytes past n are scratch in the SLACK and later
    overwritten, and a word read that reaches dst only meets bytes past n."""
    if n <= 16:
        memcpy(dst, src, 8)
        memcpy(dst + 8, src + 8, 8)
    else:
        memcpy(dst, src, n)


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int _decompress(const uint8_t *src, Py_ssize_t n, Py_ssize_t max_size,
                     Reader *r) noexcept nogil:
    # pos[c], length[c]: where code c's expansion sits in the output (codes 258..hi).
    cdef Py_ssize_t pos[NCODES]
    cdef uint16_t length[NCODES]
    cdef uint64_t bits = 0
    cdef unsigned int nbits = 0, width = 9
    cdef uint32_t code, hi = EOF_CODE, overflow = 512
    cdef bint have_last = False      # Go's last != decoderInvalidCode
    cdef Py_ssize_t last_pos = 0, last_len = 0, cur_pos, cur_len, ip = 0, o = 0
    cdef int status = D_OK
    while True:
        while nbits < width:
            if ip >= n:
                r.size = o
                r.err_offset = n
                return D_TRUNCATED
            bits |= (<uint64_t>src[ip]) << nbits
            ip += 1
            nbits += 8
        code = <uint32_t>(bits & ((1u << width) - 1))
        bits >>= width
        nbits -= width
        if code < CLEAR:
            cur_len = 1
            if o + 1 > r.cap:
                status = _reserve(r, o + 1, max_size)
                if status != D_OK:
                    break
            r.out[o] = <uint8_t>code
        elif code == CLEAR:
            width = 9
            hi = EOF_CODE
            overflow = 1u << width
            have_last = False
            continue
        elif code == EOF_CODE:
            r.size = o
            return D_OK
        elif code < hi or (code == hi and not have_last):
            # A defined code (code == hi without a previous code: saturated at 4095,
            # which was defined just before the table filled).
            cur_len = length[code]
            if o + cur_len > r.cap:
                status = _reserve(r, o + cur_len, max_size)
                if status != D_OK:
                    break
            _copy_run(r.out + o, r.out + pos[code], cur_len)   # pos + len <= o
        elif code == hi:
            # KwKwK: the code this very code defines = last expansion + its first byte.
            cur_len = last_len + 1
            if o + cur_len > r.cap:
                status = _reserve(r, o + cur_len, max_size)
                if status != D_OK:
                    break
            _copy_run(r.out + o, r.out + last_pos, last_len)   # last_pos + last_len == o
            r.out[o + last_len] = r.out[last_pos]
        else:
            r.err_code = code
            r.err_hi = hi
            status = D_INVALID
            break
        cur_pos = o
        o += cur_len
        if have_last:
            # Code hi = last expansion + first byte of this one: the run starting at
            # last_pos, which this code's output continues.
            pos[hi] = last_pos
            length[hi] = <uint16_t>(last_len + 1)
        have_last = True
        last_pos = cur_pos
        last_len = cur_len
        hi += 1
        if hi >= overflow:
            if width == MAX_WIDTH:
                have_last = False        # no new codes until a clear
                hi -= 1
            else:
                width += 1
                overflow <<= 1
    r.size = o
    r.err_offset = (ip * 8 - nbits - width) // 8   # the byte holding the code's first bit
    return status


def decompress(data, max_size=DEFAULT_MAX_SIZE) -> bytes:
    """Decode a Go lzw (LSB, 8) stream; BadCompression for an invalid code or a missing
    EOF code, PacketTooLarge as soon as the output would exceed `max_size` bytes."""
    cdef Py_buffer view
    cdef Reader r
    cdef Py_ssize_t n, limit
    cdef int status
    max_size = operator.index(max_size)
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    limit = min(max_size, PY_SSIZE_T_MAX)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        n = view.len
        # Memberlist payloads expand ~3-4x; start there and double as needed.
        r.cap = 4 * n + 64 if n < limit // 4 else limit
        if r.cap > limit:
            r.cap = limit
        r.out = <uint8_t *>PyMem_RawMalloc(r.cap + SLACK)
        if r.out == NULL:
            raise MemoryError()
        r.size = 0
        r.err_offset = 0
        try:
            if n >= NOGIL_MIN:
                with nogil:
                    status = _decompress(<const uint8_t *>view.buf, n, limit, &r)
            else:
                status = _decompress(<const uint8_t *>view.buf, n, limit, &r)
            if status == D_OK:
                return PyBytes_FromStringAndSize(<char *>r.out, r.size)
            if status == D_TRUNCATED:
                raise BadCompression("LZW stream ends without the EOF code", r.err_offset)
            if status == D_INVALID:
                raise BadCompression(f"invalid LZW code {r.err_code} (> {r.err_hi})", r.err_offset)
            if status == D_TOO_LARGE:
                raise PacketTooLarge(
                    f"decompressed LZW payload exceeds {max_size} bytes", r.err_offset)
            raise MemoryError()
        finally:
            PyMem_RawFree(r.out)
    finally:
        PyBuffer_Release(&view)

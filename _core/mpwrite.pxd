# cython: language_level=3
"""msgpack writing helpers shared by the compiled codecs (rpcframe_c, wire_c): sizes and
big-endian integers exactly as msgpack's packer and go-msgpack choose them."""


cdef inline Py_ssize_t _uint_size(unsigned long long v) noexcept:
    """Bytes of the smallest msgpack uint encoding of v (positive fixint .. uint64)."""
    if v < 0x80:
        return 1
    if v < 0x100:
        return 2
    if v < 0x10000:
        return 3
    if v < 0x100000000:
        return 5
    return 9


cdef inline unsigned char *_put_be(unsigned char *q, unsigned long long v, int width) noexcept:
    """Write the low `width` bytes of v big-endian at q; returns q + width."""
    cdef int i
    for i in range(width - 1, -1, -1):
        q[i] = <unsigned char>(v & 0xff)
        v >>= 8
    return q + width


cdef inline unsigned char *_put_uint(unsigned char *q, unsigned long long v) noexcept:
    """msgpack uint: positive fixint or the smallest uint8..64, as msgpack's packer picks."""
    if v < 0x80:
        q[0] = <unsigned char>v
        return q + 1
    if v < 0x100:
        q[0] = 0xcc
        return _put_be(q + 1, v, 1)
    if v < 0x10000:
        q[0] = 0xcd
        return _put_be(q + 1, v, 2)
    if v < 0x100000000:
        q[0] = 0xce
        return _put_be(q + 1, v, 4)
    q[0] = 0xcf
    return _put_be(q + 1, v, 8)

# cython: language_level=3
"""The msgpack type-byte table the compiled frame scanners share (rpcframe_c, wire_c):
per type byte its scanner class, header size and length-field width (msgpack spec)."""

cdef enum:
    K_FIXED = 0      # the type byte gives the whole element size (scalars, fixstr)
    K_BLOB = 1       # str/bin/ext: big-endian length after the type byte, then (ext) a type code
    K_ARRAY = 2      # count after the type byte (fixarray: in the type byte)
    K_MAP = 3        # like K_ARRAY; each entry is two objects
    K_INVALID = 4    # 0xc1 "never used"


cdef inline void _blob(unsigned char *cls, unsigned char *size, unsigned char *width,
                       int b, int w, int extra) noexcept:
    cls[b] = K_BLOB
    size[b] = <unsigned char>(extra + w)
    width[b] = <unsigned char>w


cdef inline void build_scan_table(unsigned char *cls, unsigned char *size,
                                  unsigned char *width) noexcept:
    """Fill 256-entry tables: class, header size (whole size for K_FIXED), field width."""
    cdef int b
    for b in range(256):
        cls[b] = K_FIXED
        size[b] = 1
        width[b] = 0
    for b in range(0xa0, 0xc0):               # fixstr
        size[b] = 1 + (b & 0x1f)
    for b in range(0x80, 0x90):               # fixmap
        cls[b] = K_MAP
    for b in range(0x90, 0xa0):               # fixarray
        cls[b] = K_ARRAY
    cls[0xc1] = K_INVALID
    size[0xca] = 5; size[0xcb] = 9                                   # float32/64
    size[0xcc] = 2; size[0xcd] = 3; size[0xce] = 5; size[0xcf] = 9  # uint8..64
    size[0xd0] = 2; size[0xd1] = 3; size[0xd2] = 5; size[0xd3] = 9  # int8..64
    size[0xd4] = 3; size[0xd5] = 4; size[0xd6] = 6                  # fixext1/2/4
    size[0xd7] = 10; size[0xd8] = 18                                 # fixext8/16
    for b, w in ((0xc4, 1), (0xc5, 2), (0xc6, 4), (0xd9, 1), (0xda, 2), (0xdb, 4)):
        _blob(cls, size, width, b, w, 1)                             # bin8/16/32, str8/16/32
    for b, w in ((0xc7, 1), (0xc8, 2), (0xc9, 4)):
        _blob(cls, size, width, b, w, 2)                             # ext8/16/32 (+type)
    cls[0xdc] = K_ARRAY; size[0xdc] = 3; width[0xdc] = 2
    cls[0xdd] = K_ARRAY; size[0xdd] = 5; width[0xdd] = 4
    cls[0xde] = K_MAP; size[0xde] = 3; width[0xde] = 2
    cls[0xdf] = K_MAP; size[0xdf] = 5; width[0xdf] = 4

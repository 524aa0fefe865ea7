"""The msgpack type-byte table the pure-Python frame scanners share (rpcframe_py, wire_py).

Per type byte: its scanner class, its header size (the whole element for FIXED) and the
width of its big-endian length/count field (msgpack spec, "Formats")."""

# Scanner classes of a msgpack type byte (msgpack spec, "Formats").
FIXED = 0     # the type byte gives the whole element size (scalars, fixstr)
BLOB = 1      # str/bin/ext: big-endian length after the type byte, then (ext) a type code
ARRAY = 2     # count after the type byte (fixarray: in the type byte)
MAP = 3       # like ARRAY; each entry is two objects
INVALID = 4   # 0xc1 "never used"


def _build() -> tuple[list[int], list[int], list[int]]:
    """Per type byte: class, header size (whole size for FIXED), width of the length field."""
    cls = [FIXED] * 256
    size = [1] * 256
    width = [0] * 256
    for b in range(0xA0, 0xC0):              # fixstr
        size[b] = 1 + (b & 0x1F)
    for b in range(0x80, 0x90):              # fixmap
        cls[b] = MAP
    for b in range(0x90, 0xA0):              # fixarray
        cls[b] = ARRAY
    cls[0xC1] = INVALID
    fixed = {
        0xCA: 5, 0xCB: 9,                                    # float32/64
        0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9,                  # uint8..64
        0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9,                  # int8..64
        0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18,       # fixext1..16 (+type code)
    }
    for b, n in fixed.items():
        size[b] = n
    blobs = {
        0xC4: 1, 0xC5: 2, 0xC6: 4,                           # bin8/16/32
        0xD9: 1, 0xDA: 2, 0xDB: 4,                           # str8/16/32
    }
    for b, w in blobs.items():
        cls[b], size[b], width[b] = BLOB, 1 + w, w
    for b, w in {0xC7: 1, 0xC8: 2, 0xC9: 4}.items():         # ext8/16/32: length, then type
        cls[b], size[b], width[b] = BLOB, 2 + w, w
    for b, c, w in ((0xDC, ARRAY, 2), (0xDD, ARRAY, 4), (0xDE, MAP, 2), (0xDF, MAP, 4)):
        cls[b], size[b], width[b] = c, 1 + w, w
    return cls, size, width


CLASS, SIZE, WIDTH = _build()

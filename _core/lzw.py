"""Go's compress/lzw with order LSB and literal width 8 (memberlist's compression):
`compress(data)` writes what Go's writer writes, byte for byte; `decompress(data,
max_size)` reads what Go's reader accepts (shared/spec/memberlist-wire.md §1.8).

The compiled `lzw_c` when built, else its pure-Python twin `lzw_py` (same API, same
errors); see `_core.select`.
"""
from typing import TYPE_CHECKING

from . import select

__all__ = ["DEFAULT_MAX_SIZE", "compress", "decompress"]

if TYPE_CHECKING:
    from .lzw_py import DEFAULT_MAX_SIZE, compress, decompress
else:
    _impl = select("lzw")
    DEFAULT_MAX_SIZE = _impl.DEFAULT_MAX_SIZE
    compress = _impl.compress
    decompress = _impl.decompress

"""Consul msgpack-RPC frames (header map + body, no length prefix): decoder and encoders.

The compiled `rpcframe_c` when built, else its pure-Python twin `rpcframe_py` (same API,
same errors); see `_core.select`.
"""
from typing import TYPE_CHECKING

from . import select

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

if TYPE_CHECKING:
    from .rpcframe_py import (
        DEFAULT_MAX_BODY,
        DEFAULT_MAX_HEADER,
        MAX_LIMIT,
        REPLY,
        REQUEST,
        FrameDecoder,
        encode_reply,
        encode_request,
    )
else:
    _impl = select("rpcframe")
    REQUEST = _impl.REQUEST
    REPLY = _impl.REPLY
    DEFAULT_MAX_HEADER = _impl.DEFAULT_MAX_HEADER
    DEFAULT_MAX_BODY = _impl.DEFAULT_MAX_BODY
    MAX_LIMIT = _impl.MAX_LIMIT
    FrameDecoder = _impl.FrameDecoder
    encode_request = _impl.encode_request
    encode_reply = _impl.encode_reply

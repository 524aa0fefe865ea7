"""memberlist and Serf wire codec: packets (compound, compress, CRC, encryption, label),
streams (push/pull, user, ping/ack), Serf messages, tags and ack payloads.

The compiled `wire_c` when built, else its pure-Python twin `wire_py` (same API, same
errors); see `_core.select` and shared/spec/memberlist-wire.md.
"""
from typing import TYPE_CHECKING

from . import select

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED", "DEFAULT_MAX_STREAM", "MAX_COMPOUND_PARTS", "MAX_NESTING",
    "COMPOUND_HEADER_OVERHEAD", "COMPOUND_OVERHEAD", "USER_MSG_OVERHEAD", "CRC_OVERHEAD",
    "ENCRYPT_OVERHEAD", "DecodedPacket",
    "encode_message", "make_compound", "compress_message", "label_header", "encode_packet",
    "decode_packet", "encode_stream", "StreamDecoder",
    "encode_serf", "decode_serf", "encode_tags", "decode_tags",
    "encode_ack_payload", "decode_ack_payload",
]

if TYPE_CHECKING:
    from .wire_py import (
        COMPOUND_HEADER_OVERHEAD, COMPOUND_OVERHEAD, CRC_OVERHEAD, DEFAULT_MAX_DECOMPRESSED,
        DEFAULT_MAX_STREAM, ENCRYPT_OVERHEAD, MAX_COMPOUND_PARTS, MAX_NESTING,
        USER_MSG_OVERHEAD, DecodedPacket, StreamDecoder, compress_message, decode_ack_payload,
        decode_packet, decode_serf, decode_tags, encode_ack_payload, encode_message,
        encode_packet, encode_serf, encode_stream, encode_tags, label_header, make_compound,
    )
else:
    _impl = select("wire")
    globals().update({name: getattr(_impl, name) for name in __all__})

"""Errors raised alike by the compiled codecs and their Python twins."""


class DecodeError(ValueError):
    """Input that cannot be decoded; `offset` is the byte position in the stream."""

    def __init__(self, reason: str, offset: int = 0) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class FrameTooLarge(DecodeError):
    """A header or body exceeds its configured size limit."""


class MalformedFrame(DecodeError):
    """Bytes that are not valid msgpack, or a msgpack object that cannot be decoded."""


class BadHeader(DecodeError):
    """A well-formed msgpack object that is not a valid RPC header."""


class MalformedPacket(DecodeError):
    """A gossip packet or stream message whose framing or msgpack body is invalid."""


class BadChecksum(DecodeError):
    """A hasCrc packet whose CRC-32 does not match its contents."""


class BadCompression(DecodeError):
    """An LZW stream that Go's compress/lzw would reject (bad code, no EOF code, too large)."""


class DecryptError(DecodeError):
    """No installed key could decrypt the message, or encryption was required and absent."""


class PacketTooLarge(DecodeError):
    """A packet, stream message or decompressed payload over its configured limit."""

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

"""HTTP errors with their status code; the message is the plain-text body (Consul's convention)."""
from __future__ import annotations

from ..errors import IsthmusError


class HTTPError(IsthmusError):
    """An error with its HTTP status code; the message is the plain-text body."""

    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)

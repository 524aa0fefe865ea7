"""Payload formats carried inside Serf queries and responses (spec memberlist-wire.md §5.2).

Query filters (`u8 type | msgpack`), key requests (`07 | {Key}`), key responses
(`08 | {Keys, Message, PrimaryKey, Result}`), conflict responses (`06 | Member or nil`).
go-msgpack rules: raw strings (use_bin_type=False), struct keys sorted.
"""
from __future__ import annotations

from typing import Any

import msgpack

from _core import messages as m
from _core.errors import MalformedPacket

FILTER_NODE, FILTER_TAG = 0, 1


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=False)


def _unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=True, strict_map_key=False)
    except Exception as exc:                       # any msgpack failure is bad input
        raise MalformedPacket(f"undecodable serf payload: {type(exc).__name__}: {exc}", 0) from None


def _text(v: Any) -> str:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise MalformedPacket("string field is not UTF-8", 0) from None
    if isinstance(v, str):
        return v
    raise MalformedPacket(f"expected a string, got {type(v).__name__}", 0)


def _sorted(d: dict) -> dict:
    return {k: d[k] for k in sorted(d)}


def encode_node_filter(names: list[str]) -> bytes:
    return bytes((FILTER_NODE,)) + _pack(list(names))


def encode_tag_filter(tag: str, expr: str) -> bytes:
    return bytes((FILTER_TAG,)) + _pack({"Expr": expr, "Tag": tag})


def decode_filter(raw: bytes) -> tuple[int, Any]:
    """(FILTER_NODE, [names]) or (FILTER_TAG, (tag, expr)); unknown types → (type, None)."""
    if not raw:
        raise MalformedPacket("empty filter", 0)
    kind, body = raw[0], _unpack(bytes(raw[1:]))
    if kind == FILTER_NODE:
        if not isinstance(body, list):
            raise MalformedPacket("node filter is not a list", 1)
        return kind, [_text(n) for n in body]
    if kind == FILTER_TAG:
        if not isinstance(body, dict):
            raise MalformedPacket("tag filter is not a map", 1)
        return kind, (_text(body.get(b"Tag", b"")), _text(body.get(b"Expr", b"")))
    return kind, None


def encode_key_request(key: bytes) -> bytes:
    return bytes((m.SERF_KEY_REQUEST,)) + _pack({"Key": key})


def decode_key_request(raw: bytes) -> bytes:
    if not raw or raw[0] != m.SERF_KEY_REQUEST:
        raise MalformedPacket("not a key request", 0)
    body = _unpack(bytes(raw[1:]))
    key = body.get(b"Key") if isinstance(body, dict) else None
    if not isinstance(key, bytes):
        raise MalformedPacket("key request has no Key", 1)
    return key


def encode_key_response(resp: dict) -> bytes:
    """resp: {"Keys": [base64 str], "Message": str, "PrimaryKey": str, "Result": bool}."""
    return bytes((m.SERF_KEY_RESPONSE,)) + _pack(_sorted(resp))


def decode_key_response(raw: bytes) -> dict:
    if not raw or raw[0] != m.SERF_KEY_RESPONSE:
        raise MalformedPacket("not a key response", 0)
    body = _unpack(bytes(raw[1:]))
    if not isinstance(body, dict):
        raise MalformedPacket("key response is not a map", 1)
    keys = body.get(b"Keys") or []
    return {"Keys": [_text(k) for k in keys], "Message": _text(body.get(b"Message", b"")),
            "PrimaryKey": _text(body.get(b"PrimaryKey", b"")), "Result": bool(body.get(b"Result"))}


def encode_conflict_response(member: dict | None) -> bytes:
    """06 | msgpack Member (keys sorted), or nil when we do not know the node."""
    if member is None:
        return bytes((m.SERF_CONFLICT_RESPONSE,)) + _pack(None)
    body = dict(member)
    body["Tags"] = dict(body.get("Tags") or {})
    return bytes((m.SERF_CONFLICT_RESPONSE,)) + _pack(_sorted(body))


def decode_conflict_response(raw: bytes) -> dict | None:
    if not raw or raw[0] != m.SERF_CONFLICT_RESPONSE:
        raise MalformedPacket("not a conflict response", 0)
    body = _unpack(bytes(raw[1:]))
    if body is None:
        return None
    if not isinstance(body, dict):
        raise MalformedPacket("conflict response is not a map", 1)
    return {"Name": _text(body.get(b"Name", b"")), "Addr": body.get(b"Addr") or b"",
            "Port": int(body.get(b"Port") or 0)}

"""JSON read as Go's encoding/json reads it, for error messages worded as Consul's are."""
from __future__ import annotations

import json
from typing import Any


class GoJSONError(ValueError):
    """Malformed JSON; the message is Go's (`invalid character 'x' looking for ...`)."""


def json_type(v: Any) -> str:
    """The JSON type name Go's unmarshal errors use."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _literal_error(raw: str, pos: int) -> str:
    """Go's scanner on a value that starts like true/false/null or a number but is not one:
    it names the first wrong character inside the literal."""
    ch = raw[pos]
    for word in ("true", "false", "null"):
        if ch == word[0]:
            for i, want in enumerate(word[1:], 1):
                if pos + i >= len(raw):
                    return "unexpected EOF"
                if raw[pos + i] != want:
                    return (f"invalid character {raw[pos + i]!r} in literal {word} "
                            f"(expecting {want!r})")
            return ""
    if ch == "-":
        if pos + 1 >= len(raw):
            return "unexpected EOF"
        if not raw[pos + 1].isdigit():
            return f"invalid character {raw[pos + 1]!r} in numeric literal"
    return ""


def _syntax_error(raw: str, exc: json.JSONDecodeError) -> str:
    pos = exc.pos
    if pos >= len(raw.rstrip()):
        return "unexpected EOF"
    ch = raw[pos]
    if exc.msg.startswith("Expecting value"):
        literal = _literal_error(raw, pos)
        if literal:
            return literal
        return f"invalid character {ch!r} looking for beginning of value"
    if exc.msg.startswith("Extra data"):
        return f"invalid character {ch!r} after top-level value"
    if exc.msg.startswith("Expecting property name"):
        return f"invalid character {ch!r} looking for beginning of object key string"
    if exc.msg.startswith("Expecting ':'"):
        return f"invalid character {ch!r} after object key"
    if exc.msg.startswith("Expecting ','"):
        return f"invalid character {ch!r} after object key:value pair"
    return f"invalid character {ch!r} in string literal"


def loads(raw: bytes) -> Any:
    """The JSON value in `raw`; GoJSONError ("EOF" when empty) as Go words it."""
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise GoJSONError("EOF")

    def no_constants(name: str):                # NaN / Infinity are not JSON to Go
        raise GoJSONError(f"invalid character {name[0]!r} looking for beginning of value")
    try:
        return json.loads(text, parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise GoJSONError(_syntax_error(text, exc)) from None

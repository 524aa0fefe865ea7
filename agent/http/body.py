"""Request bodies decoded as Consul's decodeBody does (Go's encoding/json into a struct).

Go matches JSON keys to struct fields exactly or, failing that, case-insensitively
(`node`, `NODE` and `Node` all fill `Node`); unknown keys are ignored; `null` leaves a
field unset; a value of the wrong JSON type fails the whole decode. `decode_body` does the
same for a schema (field name → type) and answers 400 "Request decode failed: ..." with
Go's wording on malformed JSON or a wrong type.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

from ..gojson import GoJSONError, json_type, loads
from .errors import bad_request

STR, INT, BOOL, FLOAT, ANY = "string", "int", "bool", "float64", "any"


@dataclass(frozen=True)
class MapOf:
    """map[string]<value>"""
    value: "Spec"


@dataclass(frozen=True)
class ListOf:
    """[]<item>"""
    item: "Spec"


@dataclass(frozen=True)
class Struct:
    """A Go struct: its type name (for messages) and fields {Name: spec}."""
    name: str
    fields: dict

    def __hash__(self) -> int:              # fields is a dict: hash by name only
        return hash(self.name)


Spec = Union[str, MapOf, ListOf, Struct]


class DecodeFailed(ValueError):
    pass


def _go_type(spec: Spec) -> str:
    if isinstance(spec, Struct):
        return spec.name
    if isinstance(spec, MapOf):
        return f"map[string]{_go_type(spec.value)}"
    if isinstance(spec, ListOf):
        return f"[]{_go_type(spec.item)}"
    return {ANY: "interface {}"}.get(spec, spec)


def _fail(v: Any, spec: Spec, where: str) -> DecodeFailed:
    what = json_type(v)
    if what == "number" and spec == INT:
        what = f"number {json.dumps(v)}"
    into = f"Go struct field {where}" if "." in where else "Go value"
    return DecodeFailed(f"json: cannot unmarshal {what} into {into} of type {_go_type(spec)}")


def _decode(v: Any, spec: Spec, where: str) -> Any:
    if v is None:
        return None
    if spec == ANY:
        return v
    if spec == STR:
        if not isinstance(v, str):
            raise _fail(v, spec, where)
        return v
    if spec == BOOL:
        if not isinstance(v, bool):
            raise _fail(v, spec, where)
        return v
    if spec == INT:
        if isinstance(v, bool) or not isinstance(v, int) or not -(1 << 63) <= v < (1 << 63):
            raise _fail(v, spec, where)
        return v
    if spec == FLOAT:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _fail(v, spec, where)
        return v
    if isinstance(spec, MapOf):
        if not isinstance(v, dict):
            raise _fail(v, spec, where)
        return {k: _decode(x, spec.value, where) for k, x in v.items()}
    if isinstance(spec, ListOf):
        if not isinstance(v, list):
            raise _fail(v, spec, where)
        return [_decode(x, spec.item, where) for x in v]
    if isinstance(spec, Struct):
        if not isinstance(v, dict):
            raise _fail(v, spec, where)
        return _decode_struct(v, spec, where)
    raise TypeError(f"bad schema spec {spec!r}")


def _decode_struct(obj: dict, spec: Struct, where: str) -> dict:
    folded = {name.lower(): name for name in spec.fields}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in spec.fields else folded.get(key.lower())
        if name is None:
            continue                          # Go ignores unknown keys
        got = _decode(value, spec.fields[name], f"{where}.{name}")
        if got is None:
            continue
        out[name] = got
    return out


def decode_struct(raw: bytes, spec: Struct) -> dict:
    """The body as `spec`'s fields by Consul's names; DecodeFailed with Go's message."""
    try:
        obj = loads(raw)
    except GoJSONError as exc:
        raise DecodeFailed(str(exc)) from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise DecodeFailed(f"json: cannot unmarshal {json_type(obj)} into Go value of type "
                           f"{spec.name}")
    return _decode_struct(obj, spec, spec.name.rpartition(".")[2])


def decode_body(raw: bytes, spec: Struct) -> dict:
    """`decode_struct`, failing with HTTP 400 "Request decode failed: ..." as Consul does."""
    try:
        return decode_struct(raw, spec)
    except DecodeFailed as exc:
        raise bad_request(f"Request decode failed: {exc}") from None

"""The record types `?filter=` expressions are checked against (go-bexpr's view of Consul's
structs): primitives, maps, slices and structs.

Apart from the expression language (agent/filter.py) so the HTTP layer can declare the
types of the records it filters (agent/http/filtering.py) without loading the parser and
evaluator, which load with the first `?filter=`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

STR, INT, UINT, BOOL, FLOAT = "string", "int", "uint", "bool", "float"


@dataclass(frozen=True)
class MapOf:
    """map[string]<value>; value None: not selectable further (map[string]interface{})."""
    value: "Type | None"


@dataclass(frozen=True)
class SliceOf:
    """[]<item>"""
    item: "Type"


@dataclass(frozen=True, eq=False)
class Struct:
    """A struct: {FieldName: type}; a None type marks a field that is not filterable."""
    fields: dict


Type = Union[str, MapOf, SliceOf, Struct]

"""Request bodies read as Consul's decodeBody does: field names case-insensitively (and
snake_case spellings, as lib.TranslateKeys), type errors worded as Go's encoding/json.

Errors raise DecodeFailed; endpoints answer 400 "Request decode failed: <message>".
"""
from __future__ import annotations

from typing import Any

from ..config.load import parse_go_duration
from ..errors import IsthmusError
from ..gojson import GoJSONError, json_type, loads


class DecodeFailed(IsthmusError):
    """A body that does not decode into the Go struct Consul would decode it into."""


def _norm(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def parse_json(raw: bytes) -> Any:
    """JSON text → value (None for an empty body); DecodeFailed with Go's wording."""
    if not raw.strip():
        return None
    try:
        return loads(raw)
    except GoJSONError as exc:
        raise DecodeFailed(str(exc)) from None


class Fields:
    """A JSON object whose fields are looked up case-insensitively."""

    def __init__(self, obj: Any, struct: str) -> None:
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise DecodeFailed(f"json: cannot unmarshal {json_type(obj)} into Go value of "
                               f"type structs.{struct}")
        self.struct = struct
        self._m: dict[str, Any] = {}
        for k, v in obj.items():
            self._m.setdefault(_norm(str(k)), v)

    def has(self, *names: str) -> bool:
        return any(self._m.get(_norm(n)) is not None for n in names)

    def raw(self, *names: str) -> Any:
        for n in names:
            v = self._m.get(_norm(n))
            if v is not None:
                return v
        return None

    def _bad(self, name: str, v: Any, gotype: str) -> DecodeFailed:
        return DecodeFailed(f"json: cannot unmarshal {json_type(v)} into Go struct field "
                            f"{self.struct}.{name} of type {gotype}")

    def str(self, name: str, *aliases: str) -> str:
        v = self.raw(name, *aliases)
        if v is None:
            return ""
        if not isinstance(v, str):
            raise self._bad(name, v, "string")
        return v

    def int(self, name: str, *aliases: str) -> int:
        v = self.raw(name, *aliases)
        if v is None:
            return 0
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v):
            raise self._bad(name, v, "int")
        return int(v)

    def bool(self, name: str, *aliases: str) -> bool:
        v = self.raw(name, *aliases)
        if v is None:
            return False
        if not isinstance(v, bool):
            raise self._bad(name, v, "bool")
        return v

    def strlist(self, name: str, *aliases: str) -> list[str]:
        v = self.raw(name, *aliases)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self._bad(name, v, "[]string")
        return list(v)

    def strmap(self, name: str, *aliases: str) -> dict[str, str]:
        v = self.raw(name, *aliases)
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise self._bad(name, v, "map[string]string")
        return dict(v)

    def header(self, name: str) -> dict[str, list[str]]:
        v = self.raw(name)
        if v is None:
            return {}
        if not isinstance(v, dict) or not all(
                isinstance(x, list) and all(isinstance(y, str) for y in x) for x in v.values()):
            raise self._bad(name, v, "map[string][]string")
        return {k: list(x) for k, x in v.items()}

    def obj(self, name: str, struct: str) -> "Fields | None":
        v = self.raw(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise self._bad(name, v, struct)
        return Fields(v, struct)

    def objlist(self, name: str, struct: str) -> list["Fields"]:
        v = self.raw(name)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self._bad(name, v, f"[]*structs.{struct}")
        return [Fields(x, struct) for x in v]

    def duration(self, name: str, *aliases: str) -> float:
        """Seconds: a Go duration string ("10s"), or a number of nanoseconds (Go's JSON)."""
        v = self.raw(name, *aliases)
        if v is None or v == "":
            return 0.0
        if isinstance(v, bool):
            raise self._bad(name, v, "time.Duration")
        if isinstance(v, (int, float)):
            return float(v) / 1e9
        if isinstance(v, str):
            try:
                return parse_go_duration(v)
            except ValueError as exc:
                raise DecodeFailed(str(exc)) from None
        raise self._bad(name, v, "time.Duration")


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String(): "10s", "1m30s", "500ms", "0s"."""
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_trim(ns / 1e6)}ms"
    h, rem = divmod(ns, 3600 * 10**9)
    m, rem = divmod(rem, 60 * 10**9)
    s = _trim(rem / 1e9)
    if h:
        return f"{sign}{h}h{m}m{s}s"
    if m:
        return f"{sign}{m}m{s}s"
    return f"{sign}{s}s"


def _trim(x: float) -> str:
    text = f"{x:.9f}".rstrip("0").rstrip(".")
    return text or "0"

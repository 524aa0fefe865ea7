"""Isthmus core: byte codecs and state machines, no I/O.

Each byte-level codec `x` has a compiled module `x_c` (Cython) and a pure-Python twin
`x_py` with the same API and errors; `_core/x.py` picks one through `select()`.
ISTHMUS_NO_EXTENSIONS=1 selects the twins; ISTHMUS_REQUIRE_EXTENSIONS=1 (CI) makes a
missing compiled module an ImportError instead of a silent fallback.
"""
import importlib
import os
from types import ModuleType

NO_EXTENSIONS = os.environ.get("ISTHMUS_NO_EXTENSIONS") == "1"
REQUIRE_EXTENSIONS = os.environ.get("ISTHMUS_REQUIRE_EXTENSIONS") == "1"


def load_impl(name: str, kind: str) -> ModuleType:
    """Import one implementation of codec `name`: kind "c" (compiled) or "py" (twin)."""
    if kind not in ("c", "py"):
        raise ValueError(f"unknown implementation kind {kind!r}")
    return importlib.import_module(f"{__name__}.{name}_{kind}")


def select(name: str) -> ModuleType:
    """The implementation of codec `name` this process should use."""
    if NO_EXTENSIONS:
        return load_impl(name, "py")
    try:
        return load_impl(name, "c")
    except ImportError:
        if REQUIRE_EXTENSIONS:
            raise
        return load_impl(name, "py")   # not built: same behaviour, slower

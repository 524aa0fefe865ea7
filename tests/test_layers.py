"""Imports point downward (shared/STYLE.md): `_core` does no I/O and never imports `agent`."""
from __future__ import annotations

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE_FORBIDDEN = {"agent", "asyncio", "socket", "ssl", "time", "random", "logging", "threading",
                  "uvloop", "aiohttp", "os"}
CORE_ALLOWED_OS = {"__init__.py"}          # reads ISTHMUS_* environment flags once at import


def imports(path: str) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found.add("__import__")
    return found


def core_files():
    core = os.path.join(ROOT, "_core")
    for name in sorted(os.listdir(core)):
        if name.endswith((".py", ".pyx", ".pxd")):
            yield name, os.path.join(core, name)


def test_core_does_no_io_and_never_imports_agent():
    bad = {}
    for name, path in core_files():
        if name.endswith((".pyx", ".pxd")):
            with open(path) as f:       # Cython syntax is not Python's: check import lines
                text = f.read()
            mods = {line.split()[1].split(".")[0] for line in text.splitlines()
                    if line.startswith(("import ", "from ")) and len(line.split()) > 1}
        else:
            mods = imports(path)
        forbidden = CORE_FORBIDDEN - ({"os"} if name in CORE_ALLOWED_OS else set())
        if mods & forbidden:
            bad[name] = sorted(mods & forbidden)
    assert not bad, f"_core imports I/O or agent modules: {bad}"


def test_agent_config_model_is_pure():
    assert not imports(os.path.join(ROOT, "agent", "config", "model.py")) & {"os", "socket", "asyncio"}


PURE_AGENT_MODULES = ["agent/raft/core.py", "agent/raft/log.py", "agent/raft/progress.py",
                      "agent/raft/messages.py", "agent/state/store.py", "agent/serf/core.py",
                      "agent/router/core.py", "agent/dns/resolver.py"]
PURE_FORBIDDEN = {"asyncio", "socket", "ssl", "time", "logging", "threading", "os", "uvloop",
                  "aiohttp"}


def test_pure_layers_do_no_io():
    """The Raft core, the state store and the Serf layer run under the simulator: no I/O,
    no clock, no logging (randomness only through an injected random.Random)."""
    bad = {}
    for rel in PURE_AGENT_MODULES:
        found = imports(os.path.join(ROOT, rel)) & PURE_FORBIDDEN
        if found:
            bad[rel] = sorted(found)
    assert not bad, f"pure layers import I/O modules: {bad}"

"""`isthmus <command> [args]`: dispatch to the command, print Consul-style usage otherwise."""
from __future__ import annotations

import sys
from typing import Callable


def _agent(argv: list[str]) -> int:
    from .agent_cmd import run
    return run(argv)


def _tls(argv: list[str]) -> int:
    from .tls_cmd import run
    return run(argv)


def _cmd(name: str, module: str = "commands") -> Callable[[list[str]], int]:
    def call(argv: list[str]) -> int:
        import importlib
        mod = importlib.import_module(f"{__package__}.{module}")
        return getattr(mod, name)(argv)
    return call


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "agent": (_agent, "Runs an Isthmus agent"),
    "catalog": (_cmd("catalog", "catalog_cmds"), "Interact with the catalog"),
    "force-leave": (_cmd("force_leave", "gossip_cmds"), "Forces a member of the cluster to enter the \"left\" state"),
    "info": (_cmd("info"), "Provides debugging information for operators."),
    "join": (_cmd("join", "gossip_cmds"), "Tell Isthmus agent to join cluster"),
    "keygen": (_cmd("keygen", "gossip_cmds"), "Generates a new encryption key"),
    "keyring": (_cmd("keyring", "gossip_cmds"), "Manages gossip layer encryption keys"),
    "kv": (_cmd("kv", "kv_cmds"), "Interact with the key-value store"),
    "leave": (_cmd("leave"), "Gracefully leaves the cluster and shuts down"),
    "lock": (_cmd("lock", "kv_cmds"), "Execute a command holding a lock"),
    "watch": (_cmd("watch", "watch_cmd"), "Watch for changes in Isthmus"),
    "demo": (_cmd("run", "demo_cmd"), "Runs a walkthrough on real agents (demo areas)"),
    "event": (_cmd("event", "kv_cmds"), "Fire a new event"),
    "members": (_cmd("members", "gossip_cmds"), "Lists the members of an Isthmus cluster"),
    "operator": (_cmd("operator", "operator_cmds"), "Provides cluster-level tools for Isthmus operators"),
    "reload": (_cmd("reload", "reload_cmd"), "Triggers the agent to reload configuration files"),
    "rtt": (_cmd("rtt", "gossip_cmds"), "Estimates network round trip time between nodes"),
    "services": (_cmd("services", "services_cmds"), "Interact with services"),
    "tls": (_tls, "Builtin helpers for creating CAs and certificates"),
    "version": (_cmd("version"), "Prints the Isthmus version"),
}


def usage() -> str:
    width = max(len(n) for n in COMMANDS) + 4
    rows = "\n".join(f"    {n.ljust(width)}{h}" for n, (_, h) in sorted(COMMANDS.items()))
    return f"Usage: isthmus [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n{rows}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "-help", "--help", "help"):
        print(usage(), file=sys.stderr)
        return 0 if argv else 1
    if argv[0] in ("-v", "-version", "--version"):
        argv = ["version"]
    entry = COMMANDS.get(argv[0])
    if entry is None:
        print(f"Unknown command: {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 1
    try:
        return entry[0](argv[1:])
    except KeyboardInterrupt:
        return 130

"""Small commands: `version` (local), `info` and `leave` (through the HTTP API)."""
from __future__ import annotations

import sys

from ..version import CONSUL_API_VERSION, ISTHMUS_VERSION, PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION
from .api import APIClient, APIError, add_http_flags
from .flags import FlagError, FlagSet, HelpRequested


def version(argv: list[str]) -> int:
    fs = FlagSet()
    fs.add("format", default="pretty", usage='Output format: "pretty" or "json".')
    try:
        opts, _ = fs.parse(argv)
    except HelpRequested:
        print("Usage: isthmus version [options]\n\n" + fs.usage())
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    if opts["format"] == "json":
        import json
        print(json.dumps({"Version": ISTHMUS_VERSION, "ConsulAPIVersion": CONSUL_API_VERSION,
                          "Revision": "", "Prerelease": "", "BuildDate": ""}, indent=2))
        return 0
    print(f"Isthmus v{ISTHMUS_VERSION}\nConsul API v{CONSUL_API_VERSION}\n"
          f"Protocol {PROTOCOL_VERSION} spoken by default, understands {PROTOCOL_MIN} to "
          f"{PROTOCOL_MAX} (agent will automatically use protocol >{PROTOCOL_VERSION} when "
          f"speaking to compatible agents)")
    return 0


def _api_command(name: str, argv: list[str]) -> tuple[APIClient, list[str]] | int:
    fs = FlagSet()
    add_http_flags(fs)
    try:
        opts, args = fs.parse(argv)
    except HelpRequested:
        print(f"Usage: isthmus {name} [options]\n\n" + fs.usage())
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    return APIClient(opts), args


def info(argv: list[str]) -> int:
    got = _api_command("info", argv)
    if isinstance(got, int):
        return got
    client, _ = got
    try:
        self_ = client.request("GET", "/v1/agent/self")
    except APIError as exc:
        print(f"Error querying agent: {exc}", file=sys.stderr)
        return 1
    for section in sorted(self_.get("Stats", {})):
        print(f"{section}:")
        for k, v in sorted(self_["Stats"][section].items()):
            print(f"\t{k} = {v}")
    return 0


def put_command(name: str, argv: list[str], path: str, failed: str, done: str) -> int:
    """A command that PUTs an agent endpoint (`path`) and says `done`, or `failed: <error>`."""
    got = _api_command(name, argv)
    if isinstance(got, int):
        return got
    client, _ = got
    try:
        client.request("PUT", path)
    except APIError as exc:
        print(f"{failed}: {exc}", file=sys.stderr)
        return 1
    print(done)
    return 0


def leave(argv: list[str]) -> int:
    return put_command("leave", argv, "/v1/agent/leave", "Error leaving", "Graceful leave complete")

"""`isthmus services register|deregister` (Consul's command/services): a service from
flags or from definition files (JSON: `{"service": {...}}` or `{"services": [...]}`),
registered with the local agent over its HTTP API."""
from __future__ import annotations

import json
import sys
import urllib.parse

from .api import APIClient, APIError
from .gossip_cmds import _parse

USAGE = """Usage: isthmus services <subcommand> [options] [args]

  This command has subcommands for interacting with services registered with the
  local agent. Services registered with this command are persisted in the agent's
  data dir and re-synced to the catalog by anti-entropy.

Subcommands:
    deregister    Deregister services with the local agent
    register      Register services with the local agent
"""


def services(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 1
    sub = {"register": register, "deregister": deregister}.get(argv[0])
    if sub is None:
        print(f"Unknown subcommand: {argv[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 1
    return sub(argv[1:])


def _definitions(paths: list[str]) -> list[dict] | str:
    """The service definitions in files, or an error string."""
    out: list[dict] = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = json.loads(fh.read().decode("utf-8"))
        except OSError as exc:
            return f"Error reading {path}: {exc.strerror}"
        except (ValueError, UnicodeDecodeError) as exc:
            return f"Error parsing {path}: {exc} (service files must be JSON)"
        if not isinstance(data, dict):
            return f"Error parsing {path}: the top level must be a JSON object"
        found = False
        for key, value in data.items():
            if key.lower() == "service" and isinstance(value, dict):
                out.append(value)
                found = True
            elif key.lower() == "services" and isinstance(value, list):
                out.extend(v for v in value if isinstance(v, dict))
                found = True
        if not found:
            return f"Error parsing {path}: no service definition (\"service\" or \"services\")"
    return out


def _meta(values: list[str]) -> dict[str, str] | str:
    meta = {}
    for kv in values:
        k, eq, v = kv.partition("=")
        if not eq or not k:
            return f"Invalid -meta value {kv!r}: must be key=value"
        meta[k] = v
    return meta


def register(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("name", "string", "", usage="Name of the service. This is ignored if a file "
               "path is given.")
        fs.add("id", "string", "", usage="ID of the service. This is ignored if a file path "
               "is given.")
        fs.add("address", "string", "", usage="Address of the service.")
        fs.add("port", "int", 0, usage="Port of the service.")
        fs.add("tag", "list", usage="Tag to add to the service. This flag can be specified "
               "multiple times to set multiple tags.")
        fs.add("tags", "string", "", usage="(Isthmus) Comma-separated tags, added to -tag.")
        fs.add("meta", "list", usage="Metadata to set on the service, formatted as key=value. "
               "This flag may be specified multiple times to set multiple meta fields.")
    got = _parse("services register", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if args:
        defs = _definitions(args)
        if isinstance(defs, str):
            print(defs, file=sys.stderr)
            return 1
    else:
        if not opts["name"]:
            print("Service name must be specified with the -name flag or a file path must be "
                  "given", file=sys.stderr)
            return 1
        meta = _meta(opts["meta"])
        if isinstance(meta, str):
            print(meta, file=sys.stderr)
            return 1
        tags = list(opts["tag"]) + [t for t in opts["tags"].split(",") if t]
        svc = {"Name": opts["name"], "Tags": tags, "Meta": meta, "Port": opts["port"],
               "Address": opts["address"]}
        if opts["id"]:
            svc["ID"] = opts["id"]
        defs = [svc]
    client = APIClient(opts)
    for svc in defs:
        name = next((v for k, v in svc.items() if k.lower() == "name"), "")
        try:
            client.request("PUT", "/v1/agent/service/register", body=svc)
        except APIError as exc:
            print(f"Error registering service {name!r}: {exc}", file=sys.stderr)
            return 1
        print(f"Registered service: {name}")
    return 0


def deregister(argv: list[str]) -> int:
    got = _parse("services deregister", argv,
                 lambda fs: fs.add("id", "string", "", usage="ID to delete. This must not be "
                                   "set if arguments are given."))
    if isinstance(got, int):
        return got
    opts, args = got
    if opts["id"] and args:
        print("Only one of -id or a file path may be specified", file=sys.stderr)
        return 1
    if opts["id"]:
        ids = [opts["id"]]
    elif args:
        defs = _definitions(args)
        if isinstance(defs, str):
            print(defs, file=sys.stderr)
            return 1
        ids = []
        for svc in defs:
            low = {k.lower(): v for k, v in svc.items()}
            ids.append(low.get("id") or low.get("name") or "")
    else:
        print("Either a service ID (-id) or a file path must be given", file=sys.stderr)
        return 1
    client = APIClient(opts)
    for sid in ids:
        try:
            client.request("PUT", "/v1/agent/service/deregister/" + urllib.parse.quote(sid, safe=""))
        except APIError as exc:
            print(f"Error deregistering service {sid!r}: {exc}", file=sys.stderr)
            return 1
        print(f"Deregistered service: {sid}")
    return 0

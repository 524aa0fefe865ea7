"""`catalog datacenters|nodes|services` — as Consul's command/catalog commands.

`-near` is accepted and passed along; the server ignores it for now (no sorting by network
coordinates yet).
"""
from __future__ import annotations

import sys
import urllib.parse

from .api import APIClient, APIError
from .gossip_cmds import _parse
from .table import columnize

SYNOPSIS = """Usage: isthmus catalog <subcommand> [options] [args]

  This command has subcommands for interacting with Isthmus' catalog. The catalog
  should not be confused with the agent, although the APIs and responses may be
  similar.

Subcommands:
    datacenters    Lists all known datacenters
    nodes          Lists all nodes in the given datacenter
    services       Lists all registered services in a datacenter"""


def _meta_params(opts: dict) -> list[tuple[str, str]]:
    return [("node-meta", m) for m in opts.get("node-meta") or []]


def _kv(m: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted((m or {}).items()))


def datacenters(argv: list[str]) -> int:
    got = _parse("catalog datacenters", argv, lambda fs: None)
    if isinstance(got, int):
        return got
    opts, args = got
    if args:
        print("This command takes no arguments", file=sys.stderr)
        return 1
    try:
        dcs = APIClient(opts).request("GET", "/v1/catalog/datacenters")
    except APIError as exc:
        print(f"Error listing datacenters: {exc}", file=sys.stderr)
        return 1
    if not dcs:
        print("No datacenters found", file=sys.stderr)
        return 1
    print("\n".join(dcs))
    return 0


def _get(client: APIClient, path: str, params: list[tuple[str, str]]):
    query = "?" + urllib.parse.urlencode(params) if params else ""
    return client.request("GET", path + query)


def nodes(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("detailed", "bool", usage="Output detailed information about the nodes including "
               "their addresses and metadata.")
        fs.add("near", usage="Node name to sort the node list in ascending order based on "
               "estimated round-trip time from that node. Passing \"_agent\" will use this "
               "agent's node for sorting.")
        fs.add("node-meta", "list", usage="Metadata to filter nodes with the given `key=value` "
               "pairs. This flag may be specified multiple times to filter on multiple "
               "sources of metadata.")
        fs.add("service", usage="Service `id or name` to filter nodes. Only nodes which are "
               "providing the given service will be returned.")
    got = _parse("catalog nodes", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if args:
        print("This command takes no arguments", file=sys.stderr)
        return 1
    params = _meta_params({"node-meta": [m.replace("=", ":", 1) for m in opts["node-meta"]]})
    if opts["near"]:
        params.append(("near", opts["near"]))
    client = APIClient(opts)
    try:
        if opts["service"]:
            svc = urllib.parse.quote(opts["service"], safe="")
            found = [{"ID": s["ID"], "Node": s["Node"], "Address": s["Address"],
                      "Datacenter": s["Datacenter"], "TaggedAddresses": s["TaggedAddresses"],
                      "Meta": s["NodeMeta"]}
                     for s in _get(client, f"/v1/catalog/service/{svc}", params) or []]
        else:
            found = _get(client, "/v1/catalog/nodes", params) or []
    except APIError as exc:
        print(f"Error listing nodes: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("No nodes match the given query - try expanding your search.", file=sys.stderr)
        return 0
    if opts["detailed"]:
        rows = [["Node", "ID", "Address", "DC", "TaggedAddresses", "Meta"]]
        rows += [[n["Node"], n["ID"], n["Address"], n["Datacenter"], _kv(n["TaggedAddresses"]),
                  _kv(n["Meta"])] for n in found]
    else:
        rows = [["Node", "ID", "Address", "DC"]]
        rows += [[n["Node"], (n["ID"] or "")[:8], n["Address"], n["Datacenter"]] for n in found]
    print(columnize(rows))
    return 0


def services(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("node", usage="Node `id or name` for which to list services.")
        fs.add("node-meta", "list", usage="Metadata to filter nodes with the given `key=value` "
               "pairs. If specified, only services running on nodes matching the given "
               "metadata will be returned. This flag may be specified multiple times to "
               "filter on multiple sources of metadata.")
        fs.add("tags", "bool", usage="Display each service's tags as a comma-separated list "
               "beside each service entry.")
    got = _parse("catalog services", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if args:
        print("This command takes no arguments", file=sys.stderr)
        return 1
    client = APIClient(opts)
    found: dict[str, list[str]] = {}
    try:
        if opts["node"]:
            node = urllib.parse.quote(opts["node"], safe="")
            ns = _get(client, f"/v1/catalog/node/{node}", [])
            for s in ((ns or {}).get("Services") or {}).values():
                found.setdefault(s["Service"], []).extend(s.get("Tags") or [])
        else:
            params = _meta_params({"node-meta": [m.replace("=", ":", 1)
                                                 for m in opts["node-meta"]]})
            found = _get(client, "/v1/catalog/services", params) or {}
    except APIError as exc:
        print(f"Error listing services: {exc}", file=sys.stderr)
        return 1
    if not found:
        print("No services match the given query - try expanding your search.", file=sys.stderr)
        return 0
    names = sorted(found)
    if opts["tags"]:
        print(columnize([[n, ",".join(sorted(set(found[n] or [])))] for n in names]))
    else:
        print("\n".join(names))
    return 0


SUBCOMMANDS = {"datacenters": datacenters, "nodes": nodes, "services": services}


def catalog(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "-help", "--help") or argv[0] not in SUBCOMMANDS:
        print(SYNOPSIS, file=sys.stderr if argv and argv[0] not in ("-h", "-help", "--help")
              else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "-help", "--help") else 1
    return SUBCOMMANDS[argv[0]](argv[1:])

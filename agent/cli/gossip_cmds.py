"""`members`, `join`, `force-leave`, `keygen`, `keyring`, `rtt` — as Consul's commands."""
from __future__ import annotations

import base64
import json
import math
import os
import re
import sys

from .api import APIClient, APIError, add_http_flags
from .flags import FlagError, FlagSet, HelpRequested
from .table import columnize

STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


def _parse(name: str, argv: list[str], extra) -> tuple[dict, list[str]] | int:
    fs = FlagSet()
    add_http_flags(fs)
    extra(fs)
    try:
        return fs.parse(argv)
    except HelpRequested:
        print(f"Usage: isthmus {name} [options]\n\n" + fs.usage())
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        return 1


def members(argv: list[str]) -> int:
    def flags(fs: FlagSet) -> None:
        fs.add("wan", "bool", usage="If the agent is in server mode, this can be used to return "
               "the other peers in the WAN pool.")
        fs.add("detailed", "bool", usage="Provides detailed information about nodes.")
        fs.add("status", "string", ".*", usage="If provided, output is filtered to only nodes "
               "matching the regular expression for status.")
    got = _parse("members", argv, flags)
    if isinstance(got, int):
        return got
    opts, _ = got
    try:
        status_re = re.compile(opts["status"])
    except re.error as exc:
        print(f"Failed to compile status regexp: {exc}", file=sys.stderr)
        return 1
    try:
        found = APIClient(opts).request("GET", "/v1/agent/members",
                                        {"wan": "1"} if opts["wan"] else None)
    except APIError as exc:
        print(f"Error retrieving members: {exc}", file=sys.stderr)
        return 1
    found = [mem for mem in found if status_re.search(STATUS.get(mem["Status"], "unknown"))]
    if not found:
        return 2
    found.sort(key=lambda mem: mem["Name"])
    if opts["detailed"]:
        rows = [["Node", "Address", "Status", "Tags"]]
        for mem in found:
            tags = ",".join(f"{k}={v}" for k, v in sorted(mem["Tags"].items()))
            rows.append([mem["Name"], f"{mem['Addr']}:{mem['Port']}",
                         STATUS.get(mem["Status"], "unknown"), tags])
    else:
        rows = [["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition",
                 "Segment"]]
        for mem in found:
            tags = mem["Tags"]
            server = tags.get("role") == "consul"
            rows.append([mem["Name"], f"{mem['Addr']}:{mem['Port']}",
                         STATUS.get(mem["Status"], "unknown"), "server" if server else "client",
                         tags.get("build", "").split(":")[0], tags.get("vsn", ""),
                         tags.get("dc", ""), "default", "<all>" if server else
                         (tags.get("segment") or "<default>")])
    print(columnize(rows))
    return 0


def join(argv: list[str]) -> int:
    got = _parse("join", argv, lambda fs: fs.add("wan", "bool", usage="Joins a server to "
                                                  "another server in the WAN pool."))
    if isinstance(got, int):
        return got
    opts, addrs = got
    if not addrs:
        print("At least one address to join must be specified.", file=sys.stderr)
        return 1
    client = APIClient(opts)
    joined = 0
    for addr in addrs:
        try:
            client.request("PUT", f"/v1/agent/join/{addr}", {"wan": "1"} if opts["wan"] else None)
            joined += 1
        except APIError as exc:
            print(f"Error joining address '{addr}': {exc}", file=sys.stderr)
    if not joined:
        print("Failed to join any nodes.", file=sys.stderr)
        return 1
    print(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


def force_leave(argv: list[str]) -> int:
    got = _parse("force-leave", argv, lambda fs: fs.add(
        "prune", "bool", usage="Remove agent forcibly from list of members"))
    if isinstance(got, int):
        return got
    opts, args = got
    if len(args) != 1:
        print("A single node name must be specified to force leave.", file=sys.stderr)
        return 1
    try:
        APIClient(opts).request("PUT", f"/v1/agent/force-leave/{args[0]}",
                                {"prune": "1"} if opts["prune"] else None)
    except APIError as exc:
        print(f"Error force leaving: {exc}", file=sys.stderr)
        return 1
    return 0


def keygen(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "-help", "--help"):
        print("Usage: isthmus keygen\n\n  Generates a new 32-byte encryption key for gossip.")
        return 0
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def keyring(argv: list[str]) -> int:
    def flags(fs: FlagSet) -> None:
        fs.add("install", usage="Install a new encryption key.")
        fs.add("use", usage="Change the primary encryption key.")
        fs.add("remove", usage="Remove the given key from the cluster.")
        fs.add("list", "bool", usage="List all keys currently in use within the cluster.")
        fs.add("list-primary", "bool", usage="List all primary keys currently in use.")
    got = _parse("keyring", argv, flags)
    if isinstance(got, int):
        return got
    opts, _ = got
    chosen = [k for k in ("install", "use", "remove") if opts[k]] + \
             [k for k in ("list", "list-primary") if opts[k]]
    if len(chosen) != 1:
        print("Exactly one of -list, -list-primary, -install, -remove, or -use must be provided",
              file=sys.stderr)
        return 1
    op = chosen[0]
    client = APIClient(opts)
    verbs = {"install": ("POST", "Installing new gossip encryption key..."),
             "use": ("PUT", "Changing primary gossip encryption key..."),
             "remove": ("DELETE", "Removing gossip encryption key...")}
    try:
        if op in verbs:
            method, msg = verbs[op]
            print(f"==> {msg}")
            client.request(method, "/v1/operator/keyring", body={"Key": opts[op]})
            return 0
        print("==> Gathering installed encryption keys...")
        for ring in client.request("GET", "/v1/operator/keyring"):
            pool = "WAN" if ring["WAN"] else f"{ring['Datacenter']} (LAN)"
            keys = ring["PrimaryKeys"] if op == "list-primary" else ring["Keys"]
            print(f"\n{pool}:")
            for key, n in sorted(keys.items()):
                print(f"  {key} [{n}/{ring['NumNodes']}]")
    except APIError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _distance(a: dict, b: dict) -> float:
    """Serf's coordinate distance in seconds (vector norm + heights, adjusted if positive)."""
    dist = math.sqrt(sum((x - y) ** 2 for x, y in zip(a["Vec"], b["Vec"]))) + a["Height"] + b["Height"]
    adjusted = dist + a["Adjustment"] + b["Adjustment"]
    return adjusted if adjusted > 0 else dist


def rtt(argv: list[str]) -> int:
    got = _parse("rtt", argv, lambda fs: fs.add("wan", "bool", usage="Use WAN coordinates."))
    if isinstance(got, int):
        return got
    opts, nodes = got
    if len(nodes) not in (1, 2):
        print("One or two node names must be specified", file=sys.stderr)
        return 1
    client = APIClient(opts)
    try:
        if len(nodes) == 1:             # the second node defaults to the agent (Consul's)
            cfg = client.request("GET", "/v1/agent/self")["Config"]
            me = cfg["NodeName"]
            nodes = [nodes[0], f"{me}.{cfg['Datacenter']}" if opts["wan"] else me]
        if opts["wan"]:                 # servers as `node.dc`, from every WAN/area pool
            coords = {f"{c['Node']}.{e['Datacenter']}".lower(): c["Coord"]
                      for e in client.request("GET", "/v1/coordinate/datacenters")
                      for c in e["Coordinates"]}
        else:   # the catalog's LAN coordinates (default segment), names case-insensitive
            coords = {c["Node"].lower(): c["Coord"] for c in
                      client.request("GET", "/v1/coordinate/nodes") if not c.get("Segment")}
    except APIError as exc:
        print(f"Error getting coordinates: {exc}", file=sys.stderr)
        return 1
    for n in nodes:
        if n.lower() not in coords:
            print(f"Could not find a coordinate for node {json.dumps(n)}", file=sys.stderr)
            return 1
    ms = _distance(coords[nodes[0].lower()], coords[nodes[1].lower()]) * 1000
    print(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {ms:.3f} ms "
          f"(using {'WAN' if opts['wan'] else 'LAN'} coordinates)")
    return 0

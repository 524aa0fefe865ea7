"""`operator raft list-peers | remove-peer | transfer-leader` and `kv get | put | delete`,
as Consul's commands (output, messages and exit codes)."""
from __future__ import annotations

import base64
import json
import sys
import urllib.parse

from .api import APIClient, APIError
from .gossip_cmds import _parse
from .table import columnize

RAFT_USAGE = """Usage: isthmus operator raft <subcommand> [options]

  The Raft operator command is used to interact with Isthmus's Raft subsystem. The
  command can be used to verify Raft peers or in rare cases to recover quorum by
  removing invalid peers.

Subcommands:
    list-peers         Display the current Raft peer configuration
    remove-peer        Remove an Isthmus server from the Raft configuration
    transfer-leader    Transfer raft leadership to another node"""

OPERATOR_USAGE = """Usage: isthmus operator <subcommand> [options]

Subcommands:
    raft    Provides cluster-level tools for Isthmus operators"""


def operator(argv: list[str]) -> int:
    if not argv or argv[0] != "raft":
        print(OPERATOR_USAGE, file=sys.stderr)
        return 1 if argv and argv[0] not in ("-h", "-help", "--help") else 0
    sub = argv[1] if len(argv) > 1 else ""
    fn = {"list-peers": _list_peers, "remove-peer": _remove_peer,
          "transfer-leader": _transfer_leader}.get(sub)
    if fn is None:
        print(RAFT_USAGE, file=sys.stderr)
        return 1 if sub and sub not in ("-h", "-help", "--help") else 0
    return fn(argv[2:])


def _list_peers(argv: list[str]) -> int:
    got = _parse("operator raft list-peers", argv, lambda fs: None)
    if isinstance(got, int):
        return got
    opts, _ = got
    try:
        conf = APIClient(opts).request("GET", "/v1/operator/raft/configuration")
    except APIError as exc:
        print(f"Error getting peers: {exc}", file=sys.stderr)
        return 1
    leader_index = max((s.get("LastIndex", 0) for s in conf["Servers"] if s["Leader"]), default=0)
    rows = [["Node", "ID", "Address", "State", "Voter", "RaftProtocol", "Commit Index",
             "Trails Leader By"]]
    for s in conf["Servers"]:
        state = "leader" if s["Leader"] else "follower"
        trails = "-" if s["Leader"] else f"{max(0, leader_index - s.get('LastIndex', 0))} commits"
        rows.append([s["Node"], s["ID"], s["Address"], state, str(s["Voter"]).lower(),
                     s.get("ProtocolVersion", "3"), str(s.get("LastIndex", 0)), trails])
    print(columnize(rows))
    return 0


def _remove_peer(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("address", usage="The address to remove from the Raft configuration.")
        fs.add("id", usage="The ID to remove from the Raft configuration.")
    got = _parse("operator raft remove-peer", argv, flags)
    if isinstance(got, int):
        return got
    opts, _ = got
    if bool(opts["address"]) == bool(opts["id"]):
        print("Error removing peer: Must specify either -id or -address" if not opts["id"]
              else "Error removing peer: Only one of -id or -address may be given",
              file=sys.stderr)
        return 1
    params = {"id": opts["id"]} if opts["id"] else {"address": opts["address"]}
    try:
        APIClient(opts).request("DELETE", "/v1/operator/raft/peer", params)
    except APIError as exc:
        print(f"Error removing peer: {exc}", file=sys.stderr)
        return 1
    if opts["id"]:
        print(f'Removed peer with id "{opts["id"]}"')
    else:
        print(f'Removed peer with address "{opts["address"]}"')
    return 0


def _transfer_leader(argv: list[str]) -> int:
    got = _parse("operator raft transfer-leader", argv,
                 lambda fs: fs.add("id", usage="The ID of the node to transfer leadership to."))
    if isinstance(got, int):
        return got
    opts, _ = got
    try:
        reply = APIClient(opts).request("POST", "/v1/operator/raft/transfer-leader",
                                        {"id": opts["id"]} if opts["id"] else None)
    except APIError as exc:
        print(f"Error transferring leadership: Failed to transfer leadership {exc}", file=sys.stderr)
        return 1
    if not reply or not reply.get("Success"):
        print("Error transferring leadership: Failed to transfer leadership", file=sys.stderr)
        return 1
    print("Success")
    return 0


# ---------------------------------------------------------------------- kv

KV_USAGE = """Usage: isthmus kv <subcommand> [options] [args]

Subcommands:
    delete    Removes data from the KV store
    get       Retrieves or lists data from the KV store
    put       Sets or updates data in the KV store"""


def kv(argv: list[str]) -> int:
    sub = argv[0] if argv else ""
    fn = {"get": _kv_get, "put": _kv_put, "delete": _kv_delete}.get(sub)
    if fn is None:
        print(KV_USAGE, file=sys.stderr)
        return 1 if sub and sub not in ("-h", "-help", "--help") else 0
    return fn(argv[1:])


def _path(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe="/")


def _kv_get(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("recurse", "bool", usage="Recursively look at all keys prefixed with the given path.")
        fs.add("keys", "bool", usage="List keys which start with the given prefix, but not values.")
        fs.add("separator", default="/", usage="String to use as a separator between keys.")
        fs.add("detailed", "bool", usage="Provide additional metadata about the key.")
        fs.add("base64", "bool", usage="Base64 encode the value.")
    got = _parse("kv get", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if len(args) > 1:
        print(f"Too many arguments (expected 1, got {len(args)})", file=sys.stderr)
        return 1
    key = args[0] if args else ""
    if not key and not (opts["recurse"] or opts["keys"]):
        print("Error! Missing KEY argument", file=sys.stderr)
        return 1
    client = APIClient(opts)
    try:
        if opts["keys"]:
            keys = client.request("GET", _path(key), {"keys": "", "separator": opts["separator"]})
            for k in keys or []:
                print(k)
            return 0
        ents = client.request("GET", _path(key), {"recurse": ""} if opts["recurse"] else None)
    except APIError as exc:
        if exc.status == 404:
            if opts["recurse"]:
                return 0
            print(f"Error! No key exists at: {key}", file=sys.stderr)
            return 1
        print(f"Error querying Isthmus agent: {exc}", file=sys.stderr)
        return 1

    def value(e) -> str:
        raw = base64.b64decode(e["Value"]) if e.get("Value") else b""
        return base64.b64encode(raw).decode() if opts["base64"] else raw.decode(errors="replace")
    for e in ents or []:
        if opts["detailed"]:
            rows = [["CreateIndex", str(e["CreateIndex"])], ["Flags", str(e["Flags"])],
                    ["Key", e["Key"]], ["LockIndex", str(e["LockIndex"])],
                    ["ModifyIndex", str(e["ModifyIndex"])], ["Session", e.get("Session") or "-"],
                    ["Value", value(e)]]
            print(columnize(rows))
            if opts["recurse"]:
                print()
        elif opts["recurse"]:
            print(f"{e['Key']}:{value(e)}")
        else:
            print(value(e))
    return 0


def _kv_put(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("cas", "bool", usage="Perform a Check-And-Set operation.")
        fs.add("modify-index", "int", 0, usage="Unsigned integer representing the ModifyIndex of the key.")
        fs.add("flags", "int", 0, usage="Unsigned integer value to assign to this KV pair.")
        fs.add("base64", "bool", usage="Treat the data as base 64 encoded.")
    got = _parse("kv put", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if not args:
        print("Error! Missing KEY argument", file=sys.stderr)
        return 1
    if len(args) > 2:
        print(f"Too many arguments (expected 1 or 2, got {len(args)})", file=sys.stderr)
        return 1
    key, data = args[0], (args[1] if len(args) > 1 else "")
    if data == "-":
        raw = sys.stdin.buffer.read()
    else:
        raw = data.encode()
    if opts["base64"]:
        try:
            raw = base64.b64decode(raw, validate=True)
        except ValueError as exc:
            print(f"Error! Cannot base 64 decode data: {exc}", file=sys.stderr)
            return 1
    params = {"flags": str(opts["flags"])} if opts["flags"] else {}
    if opts["cas"]:
        params["cas"] = str(opts["modify-index"])
    try:
        ok = json.loads(APIClient(opts).raw_request("PUT", _path(key), params, raw) or b"false")
    except APIError as exc:
        print(f"Error! Failed writing data: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"Error! Did not write to {key}: CAS failed", file=sys.stderr)
        return 1
    print(f"Success! Data written to: {key}")
    return 0


def _kv_delete(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("recurse", "bool", usage="Recursively delete all keys with the path.")
        fs.add("cas", "bool", usage="Perform a Check-And-Set operation.")
        fs.add("modify-index", "int", 0, usage="Unsigned integer representing the ModifyIndex of the key.")
    got = _parse("kv delete", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    key = args[0] if args else ""
    if not key and not opts["recurse"]:
        print("Error! Missing KEY argument", file=sys.stderr)
        return 1
    params = {"recurse": ""} if opts["recurse"] else {}
    if opts["cas"]:
        params["cas"] = str(opts["modify-index"])
    try:
        ok = APIClient(opts).request("DELETE", _path(key), params)
    except APIError as exc:
        print(f"Error! Did not delete key {key}: {exc}", file=sys.stderr)
        return 1
    if not ok:
        print(f"Error! Did not delete key {key}: CAS failed", file=sys.stderr)
        return 1
    print(f"Success! Deleted keys with prefix: {key}" if opts["recurse"]
          else f"Success! Deleted key: {key}")
    return 0

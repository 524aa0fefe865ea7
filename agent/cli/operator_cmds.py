"""`operator raft list-peers | remove-peer | transfer-leader`, as Consul's commands (output,
messages and exit codes). The `kv` commands live in kv_cmds.py."""
from __future__ import annotations

import sys

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
    area    Provides tools for working with network areas
    raft    Provides cluster-level tools for Isthmus operators"""


def operator(argv: list[str]) -> int:
    if argv and argv[0] == "area":
        from .area_cmds import area
        return area(argv[1:])
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

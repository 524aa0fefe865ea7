"""`operator area create|delete|join|list|members|update` — Consul Enterprise's network area
commands (shared/spec/federation.md §3): flags, output lines, tables and exit codes.

Every subcommand takes the HTTP client flags plus `-datacenter` and `-stale`. Areas are
picked by `-id` or `-peer-datacenter` (the CLI lists the areas to map a peer DC to its ID).
Errors go to stderr with exit code 1. `join` prints its table and exits 1 when no address
joined (like `isthmus join`), 0 when at least one did.
"""
from __future__ import annotations

import sys
import urllib.parse
from typing import Any

from .api import APIClient, APIError
from .flags import FlagSet
from .gossip_cmds import _parse
from .table import columnize

AREA_USAGE = """Usage: isthmus operator area <subcommand> [options]

  The operator area command is used to interact with Isthmus's network area
  subsystem. Network areas are used to link together Isthmus servers in different
  datacenters. With network areas, datacenters can be linked together in ways
  other than a fully-connected mesh, as is required for the WAN.

Subcommands:

    create     Create a new network area
    delete     Remove a network area
    join       Join Isthmus servers into an existing network area
    list       List network areas
    members    Display Isthmus server members present in network areas
    update     Update the configuration of a network area"""

NONE = "(none)"


class _Fail(Exception):
    """A message for stderr; the command exits 1."""


def go_duration_ns(ns: int) -> str:
    """Go's time.Duration(ns).String() — `0s`, `742.05µs`, `1.312ms`, `1m2.5s`, `-1ns`."""
    from ..local.body import go_duration        # Duration.String on seconds (float)
    return go_duration(int(ns) / 1e9)


def area_path(area_id: str, suffix: str = "") -> str:
    return "/v1/operator/area/" + urllib.parse.quote(area_id, safe="") + suffix


def list_rows(areas: list[dict]) -> list[list[str]]:
    """`operator area list`'s table."""
    rows = [["Area", "PeerDC", "RetryJoin"]]
    for a in areas:
        rows.append([a["ID"], a["PeerDatacenter"], ",".join(a.get("RetryJoin") or []) or NONE])
    return rows


def join_rows(results: list[dict]) -> list[list[str]]:
    """`operator area join`'s table."""
    rows = [["Address", "Joined", "Error"]]
    for r in results:
        rows.append([r["Address"], "true" if r["Joined"] else "false", r.get("Error") or NONE])
    return rows


def _host_port(addr: str, port: Any) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def member_rows(by_area: list[tuple[str, list[dict]]]) -> list[list[str]]:
    """`operator area members`' table: areas in the order given, members by name."""
    rows = [["Area", "Node", "Address", "Status", "Build", "Protocol", "DC", "RTT"]]
    for area_id, members in by_area:
        for m in sorted(members, key=lambda m: m.get("Name", "")):
            rows.append([area_id, m.get("Name", ""), _host_port(m.get("Addr", ""), m.get("Port", 0)),
                         m.get("Status", ""), str(m.get("Build", "")).split(":")[0],
                         str(m.get("Protocol", "")), m.get("Datacenter", ""),
                         go_duration_ns(m.get("RTT", 0))])
    return rows


# ---------------------------------------------------------------------------------------


def _select_flags(fs: FlagSet) -> None:
    fs.add("id", usage="Looks up the area to operate on by its ID. This can be given instead "
           "of a peer datacenter.")
    fs.add("peer-datacenter", usage="Looks up the area to operate on by its peer datacenter. "
           "This can be given instead of an ID.")


def _areas(client: APIClient) -> list[dict]:
    return client.request("GET", "/v1/operator/area") or []


def _select(client: APIClient, opts: dict, required: bool = True) -> str:
    """The area ID `-id` or `-peer-datacenter` names ("" when neither and not required)."""
    area_id, peer = opts.get("id") or "", opts.get("peer-datacenter") or ""
    if area_id and peer:
        raise _Fail("Only one of -id or -peer-datacenter may be given")
    if area_id:
        return area_id
    if not peer:
        if required:
            raise _Fail("Must specify either -id or -peer-datacenter")
        return ""
    for a in _areas(client):
        if a.get("PeerDatacenter") == peer:
            return a["ID"]
    raise _Fail(f'No area found for peer datacenter "{peer}"')


def _run(name: str, argv: list[str], flags, body) -> int:
    got = _parse(f"operator area {name}", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    try:
        return body(opts, args)
    except (_Fail, APIError) as exc:
        print(f"Error {_DOING[name]}: {exc}", file=sys.stderr)
        return 1


_DOING = {"create": "creating area", "delete": "deleting area", "join": "joining area",
          "list": "retrieving area list", "members": "retrieving area members",
          "update": "updating area"}


def _no_args(args: list[str]) -> None:
    if args:
        raise _Fail(f"Too many arguments (expected 0, got {len(args)})")


def create(argv: list[str]) -> int:
    def flags(fs: FlagSet) -> None:
        fs.add("peer-datacenter", usage="Declares the peer datacenter that will make up the "
               "other side of this network area. This is required.")
        fs.add("retry-join", "list", usage="Specifies the address of a server to join to, "
               "such as an IP or hostname with an optional port number. This is optional "
               "and can be specified multiple times.")
        fs.add("use-tls", "bool", usage="Specifies whether gossip over this area should be "
               "encrypted with TLS if possible.")

    def body(opts: dict, args: list[str]) -> int:
        _no_args(args)
        peer = opts["peer-datacenter"] or ""
        if not peer:
            raise _Fail("Missing required -peer-datacenter flag")
        area = {"PeerDatacenter": peer, "RetryJoin": list(opts["retry-join"]) or None,
                "UseTLS": bool(opts["use-tls"])}
        reply = APIClient(opts).request("POST", "/v1/operator/area", body=area)
        print(f'Created area "{reply["ID"]}" with peer datacenter "{peer}"!')
        return 0
    return _run("create", argv, flags, body)


def delete(argv: list[str]) -> int:
    def body(opts: dict, args: list[str]) -> int:
        _no_args(args)
        client = APIClient(opts)
        area_id = _select(client, opts)
        client.request("DELETE", area_path(area_id))
        print(f'Deleted area "{area_id}"!')
        return 0
    return _run("delete", argv, _select_flags, body)


def join(argv: list[str]) -> int:
    def body(opts: dict, args: list[str]) -> int:
        if not args:
            raise _Fail("Must provide at least one address to join")
        client = APIClient(opts)
        area_id = _select(client, opts)
        results = client.request("PUT", area_path(area_id, "/join"), body=list(args)) or []
        print(columnize(join_rows(results)))
        return 0 if any(r.get("Joined") for r in results) else 1
    return _run("join", argv, _select_flags, body)


def list_(argv: list[str]) -> int:
    def body(opts: dict, args: list[str]) -> int:
        _no_args(args)
        print(columnize(list_rows(_areas(APIClient(opts)))))
        return 0
    return _run("list", argv, lambda fs: None, body)


def members(argv: list[str]) -> int:
    def body(opts: dict, args: list[str]) -> int:
        _no_args(args)
        client = APIClient(opts)
        area_id = _select(client, opts, required=False)
        ids = [area_id] if area_id else [a["ID"] for a in _areas(client)]
        by_area = [(i, client.request("GET", area_path(i, "/members")) or []) for i in ids]
        print(columnize(member_rows(by_area)))
        return 0
    return _run("members", argv, _select_flags, body)


def update(argv: list[str]) -> int:
    def flags(fs: FlagSet) -> None:
        _select_flags(fs)
        fs.add("use-tls", "bool", usage="Specifies whether gossip over this area should be "
               "encrypted with TLS if possible. Must be either true or false.")
        # the one setting an update changes, so it must be given: no default marks "unset"
        fs.flags["use-tls"].default = None

    def body(opts: dict, args: list[str]) -> int:
        _no_args(args)
        if opts["use-tls"] is None:
            raise _Fail("Missing required -use-tls=true|false flag (the setting to update)")
        client = APIClient(opts)
        area_id = _select(client, opts)
        reply = client.request("PUT", area_path(area_id), body={"UseTLS": bool(opts["use-tls"])})
        print(f'Updated area "{(reply or {}).get("ID") or area_id}"')
        return 0
    return _run("update", argv, flags, body)


SUBCOMMANDS = {"create": create, "delete": delete, "join": join, "list": list_,
               "members": members, "update": update}


def area(argv: list[str]) -> int:
    """`isthmus operator area <subcommand> …`"""
    sub = argv[0] if argv else ""
    fn = SUBCOMMANDS.get(sub)
    if fn is None:
        print(AREA_USAGE, file=sys.stderr)
        return 1 if sub and sub not in ("-h", "-help", "--help") else 0
    return fn(argv[1:])

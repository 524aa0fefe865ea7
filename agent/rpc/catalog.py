"""`Catalog.*` endpoints (Consul's agent/consul/catalog_endpoint.go) and the leader's member
reconciliation (Consul's leader.go reconcile / reconcileMember / reconcileReaped).

Register, Deregister: validated as Consul does, applied through Raft on the leader.
ListDatacenters: ours and every datacenter the router reaches, nearest first.
ListNodes, ListServices, ServiceNodes, NodeServices: reads with Consul's consistency modes
and blocking queries on the catalog tables (ServiceNodes by name: on that service's own
index table); ListNodes and ServiceNodes sort by estimated RTT from the request's `Source`
node ({Datacenter, Node}: `?near=`) as Consul does.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Iterable

from .. import log
from ..errors import IsthmusError
from ..serf.core import STATUS_ALIVE, STATUS_FAILED, STATUS_LEFT
from ..state.catalog import (CRITICAL, PASSING, SERF_CHECK_ID, Catalog, deregister_command,
                             register_command, service_table)
from ..state.store import CommandError
from .consistency import check_dc, read, write
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent

_log = log.get("raft")

SERF_CHECK_NAME = "Serf Health Status"
SERF_CHECK_ALIVE_OUTPUT = "Agent alive and reachable"
SERF_CHECK_FAILED_OUTPUT = "Agent not live or unreachable"
CONSUL_SERVICE_ID = CONSUL_SERVICE_NAME = "consul"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ANY_ADDRESS = ("0.0.0.0", "::", "[::]")


class BadRequest(IsthmusError):
    """A catalog request whose fields are missing or of the wrong type."""


# ---------------------------------------------------------------------- request checks

def _str(body: dict, name: str) -> str:
    v = body.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"{name} must be a string")
    return v


def _str_map(v: Any, name: str) -> dict[str, str] | None:
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items()):
        raise BadRequest(f"{name} must be a map of strings")
    return v


def _str_list(v: Any, name: str) -> list[str] | None:
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise BadRequest(f"{name} must be a list of strings")
    return v


def _uuid_error(value: str) -> str | None:
    """go-uuid ParseUUID's complaint about `value`, or None if it is a UUID."""
    if len(value) != 36:
        return "uuid string is wrong length"
    if not _UUID.match(value):
        return "uuid is improperly formatted"
    return None


def _service(raw: Any) -> dict:
    if not isinstance(raw, dict):
        raise BadRequest("Service must be an object")
    svc = dict(raw)
    for f in ("ID", "Service", "Address", "Kind", "SocketPath"):
        svc[f] = _str(svc, f)
    svc["Tags"] = _str_list(svc.get("Tags"), "Service.Tags")
    svc["Meta"] = _str_map(svc.get("Meta"), "Service.Meta")
    port = svc.get("Port") or 0
    if type(port) is not int:
        raise BadRequest("Service.Port must be an integer")
    svc["Port"] = port
    if not svc["ID"] and svc["Service"]:
        svc["ID"] = svc["Service"]
    if svc["ID"] and not svc["Service"]:
        raise BadRequest("Must provide service name (Service.Service) with ID (Service.ID)")
    if svc["Address"] in _ANY_ADDRESS:
        raise BadRequest("Invalid service address")
    return {k: svc.get(k) for k in ("Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses",
                                    "Meta", "Port", "SocketPath", "Weights", "EnableTagOverride",
                                    "Proxy", "Connect")}


def _check(raw: Any, node: str) -> dict:
    if not isinstance(raw, dict):
        raise BadRequest("Check must be an object")
    chk = {k: raw.get(k) for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output",
                                   "ServiceID", "Type", "Interval", "Timeout", "ExposedPort",
                                   "Definition")}
    for f in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "Type",
              "Interval", "Timeout"):
        chk[f] = _str(chk, f)
    if not chk["Node"]:
        chk["Node"] = node
    if not chk["CheckID"] and chk["Name"]:
        chk["CheckID"] = chk["Name"]          # Consul's checkPreApply
    return chk


def register_request(body: dict, default_dc: str) -> dict:
    """A RegisterRequest checked as Consul's Catalog.Register does, ready for Raft."""
    node = _str(body, "Node")
    if not node:
        raise BadRequest("Must provide node")
    address = _str(body, "Address")
    skip = bool(body.get("SkipNodeUpdate"))
    if not address and not skip:
        raise BadRequest("Must provide address if SkipNodeUpdate is not set")
    nid = _str(body, "ID")
    if nid:
        err = _uuid_error(nid)
        if err:
            raise BadRequest(f"Bad node ID: {err}")
    req: dict[str, Any] = {
        "Datacenter": _str(body, "Datacenter") or default_dc, "ID": nid, "Node": node,
        "Address": address,
        "TaggedAddresses": _str_map(body.get("TaggedAddresses"), "TaggedAddresses"),
        "NodeMeta": _str_map(body.get("NodeMeta"), "NodeMeta"), "SkipNodeUpdate": skip}
    if body.get("Service") is not None:
        req["Service"] = _service(body["Service"])
    checks = body.get("Checks") or []
    if not isinstance(checks, list):
        raise BadRequest("Checks must be a list")
    checks = [_check(c, node) for c in checks]
    if body.get("Check") is not None:
        checks.append(_check(body["Check"], node))
    req["Checks"] = checks
    return req


def _meta_filters(body: dict) -> dict[str, str] | None:
    return _str_map(body.get("NodeMetaFilters"), "NodeMetaFilters") or None


def _tag_filter(body: dict) -> list[str] | None:
    """ServiceTags when TagFilter is set (a pre-1.3 ServiceTag wins, as in Consul)."""
    if not body.get("TagFilter"):
        return None
    if _str(body, "ServiceTag"):
        return [body["ServiceTag"]]
    return _str_list(body.get("ServiceTags"), "ServiceTags") or []


# ---------------------------------------------------------------------- endpoints

def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store
    catalog: Catalog = store.catalog

    async def _apply(command: bytes) -> bool:
        _, result = await consensus.node.apply(command)
        return result

    async def register_(body: Any, ctx: CallContext) -> None:
        check_dc(body, datacenter)
        command = register_command(register_request(body, datacenter))

        async def local() -> None:
            await _apply(command)
        return await write(consensus, "Catalog.Register", body, local)

    async def deregister(body: Any, ctx: CallContext) -> None:
        check_dc(body, datacenter)
        node = _str(body, "Node")
        if not node:
            raise BadRequest("Must provide node")
        command = deregister_command({"Node": node, "ServiceID": _str(body, "ServiceID"),
                                      "CheckID": _str(body, "CheckID")})

        async def local() -> None:
            await _apply(command)
        return await write(consensus, "Catalog.Deregister", body, local)

    async def list_datacenters(body: Any, ctx: CallContext) -> list[str]:
        fed = agent.federation
        return fed.datacenters() if fed is not None else [datacenter]

    async def list_nodes(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        meta = _meta_filters(body)

        def local() -> dict:
            idx, nodes = catalog.list_nodes(meta)
            nodes = store.coordinates.sort_near(body.get("Source"), datacenter, nodes,
                                                lambda n: n["Node"])
            return {"Nodes": nodes, "Index": idx}
        return await read(consensus, "Catalog.ListNodes", body, local, ("nodes",))

    async def list_services(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        meta = _meta_filters(body)

        def local() -> dict:
            idx, services = catalog.list_services(meta)
            return {"Services": services, "Index": idx}
        return await read(consensus, "Catalog.ListServices", body, local, ("services", "nodes"))

    async def service_nodes(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        name, addr = _str(body, "ServiceName"), _str(body, "ServiceAddress")
        if not name and not addr:
            raise BadRequest("Must provide service name")
        tags, meta = _tag_filter(body), _meta_filters(body)

        def local() -> dict:
            idx, nodes = catalog.service_nodes(name, tags, meta, addr or None)
            nodes = store.coordinates.sort_near(body.get("Source"), datacenter, nodes,
                                                lambda n: n["Node"])
            return {"ServiceNodes": nodes, "Index": idx}
        # By name: only that service's writes wake a blocking query (Consul's serviceIndex)
        tables = ("nodes", "services") if addr else (service_table(name),)
        return await read(consensus, "Catalog.ServiceNodes", body, local, tables)

    async def node_services(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        node = _str(body, "Node")
        if not node:
            raise BadRequest("Must provide node")

        def local() -> dict:
            idx, ns = catalog.node_services(node)
            return {"NodeServices": ns, "Index": idx}
        return await read(consensus, "Catalog.NodeServices", body, local, ("nodes", "services"))

    registry.register("Catalog.Register", register_)
    registry.register("Catalog.Deregister", deregister)
    registry.register("Catalog.ListDatacenters", list_datacenters)
    registry.register("Catalog.ListNodes", list_nodes)
    registry.register("Catalog.ListServices", list_services)
    registry.register("Catalog.ServiceNodes", service_nodes)
    registry.register("Catalog.NodeServices", node_services)


# ---------------------------------------------------------------------- leader reconciliation

def _build_version(tags: dict) -> str:
    return tags.get("build", "").split(":")[0]


def _handled(member: Any, datacenter: str) -> bool:
    """Consul's shouldHandleMember: a client (role node) or a server (role consul, no
    segment) of this datacenter."""
    t = member.tags
    if t.get("dc") != datacenter:
        return False
    if t.get("role") == "node":
        return True
    return t.get("role") == "consul" and not t.get("segment")


def _server_service(member: Any) -> dict | None:
    """The `consul` service a server member is registered with (Consul's handleAliveMember)."""
    t = member.tags
    if t.get("role") != "consul" or not t.get("port", "").isdigit():
        return None
    meta = {"non_voter": "true" if t.get("nonvoter") == "1" else "false",
            "read_replica": "true" if t.get("read_replica") == "1" else "false",
            "raft_version": t.get("raft_vsn", "1") or "1",
            "serf_protocol_current": str(member.pcur),
            "serf_protocol_min": str(member.pmin),
            "serf_protocol_max": str(member.pmax),
            "version": _build_version(t)}
    for tag, key in (("grpc_port", "grpc_port"), ("grpc_tls_port", "grpc_tls_port")):
        if t.get(tag, "").isdigit() and int(t[tag]) > 0:
            meta[key] = t[tag]
    return {"ID": CONSUL_SERVICE_ID, "Service": CONSUL_SERVICE_NAME, "Port": int(t["port"]),
            "Weights": {"Passing": 1, "Warning": 1}, "Meta": meta}


def _serf_check(catalog: Catalog, name: str) -> dict | None:
    _, checks = catalog.node_checks(name)
    return next((c for c in checks if c["CheckID"] == SERF_CHECK_ID), None)


def _alive(member: Any, catalog: Catalog, datacenter: str) -> bytes | None:
    service = _server_service(member)
    node = catalog.get_node(member.name)
    if node is not None and node["Address"] == member.addr:
        current = True
        if service is not None:
            _, ns = catalog.node_services(member.name)
            have = (ns or {}).get("Services", {}).get(CONSUL_SERVICE_ID)
            current = have is not None and have["Meta"] == service["Meta"]
        chk = _serf_check(catalog, member.name)
        if current and chk is not None and chk["Status"] == PASSING:
            return None
    req = {"Datacenter": datacenter, "Node": member.name, "ID": member.tags.get("id", ""),
           "Address": member.addr,
           "Checks": [{"Node": member.name, "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME,
                       "Status": PASSING, "Output": SERF_CHECK_ALIVE_OUTPUT}]}
    if service is not None:
        req["Service"] = service
    if node is not None:                     # keep what the agent itself synced
        req["TaggedAddresses"], req["NodeMeta"] = node["TaggedAddresses"], node["Meta"]
    return register_command(req)


def _failed(member: Any, catalog: Catalog, datacenter: str) -> bytes | None:
    node = catalog.get_node(member.name)
    if node is None:
        return None                          # never registered: nothing to mark
    if node["Address"] == member.addr:
        chk = _serf_check(catalog, member.name)
        if chk is not None and chk["Status"] == CRITICAL:
            return None
    return register_command({
        "Datacenter": datacenter, "Node": member.name, "ID": member.tags.get("id", ""),
        "Address": member.addr, "SkipNodeUpdate": True,
        "Checks": [{"Node": member.name, "CheckID": SERF_CHECK_ID, "Name": SERF_CHECK_NAME,
                    "Status": CRITICAL, "Output": SERF_CHECK_FAILED_OUTPUT}]})


def _deregister(name: str, catalog: Catalog, own_name: str) -> bytes | None:
    # The leader never deregisters itself: a follower takes over and does it later.
    if name.lower() == own_name.lower() or catalog.get_node(name) is None:
        return None
    return deregister_command({"Node": name, "ServiceID": "", "CheckID": ""})


def member_commands(members: Iterable[Any], catalog: Catalog, datacenter: str,
                    own_name: str) -> list[bytes]:
    """The Raft commands that bring the catalog in line with the LAN pool: alive members
    registered with a passing serfHealth check (servers with the `consul` service), failed
    ones critical, left ones and reaped ones (in the catalog with a serfHealth check but no
    longer members) deregistered."""
    out: list[bytes] = []
    known: set[str] = set()
    for m in members:
        known.add(m.name.lower())
        if not _handled(m, datacenter):
            continue
        cmd = None
        if m.status == STATUS_ALIVE:
            cmd = _alive(m, catalog, datacenter)
        elif m.status == STATUS_FAILED:
            cmd = _failed(m, catalog, datacenter)
        elif m.status == STATUS_LEFT:
            cmd = _deregister(m.name, catalog, own_name)
        if cmd is not None:
            out.append(cmd)
    _, checks = catalog.checks_in_state("any")
    for c in checks:
        if c["CheckID"] == SERF_CHECK_ID and c["Node"].lower() not in known:
            cmd = _deregister(c["Node"], catalog, own_name)
            if cmd is not None:
                out.append(cmd)
    return out


async def reconcile_members(agent: "Agent") -> None:
    """On the leader: apply `member_commands` for the current LAN pool (Consul's reconcile).
    Each member is reconciled on its own; one that fails is logged and the rest go on."""
    consensus = agent.consensus
    if consensus is None or consensus.not_leader() or agent.lan is None:
        return
    for cmd in member_commands(agent.lan.members(), consensus.store.catalog,
                               agent.config.datacenter, agent.config.node_name):
        try:
            await consensus.node.apply(cmd)
        except CommandError as exc:
            _log.warning("failed to reconcile member: %s", exc)

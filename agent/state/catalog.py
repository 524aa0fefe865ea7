"""The catalog: nodes, services and health checks (Consul's agent/consul/state/catalog.go). Pure.

Rows are kept in Consul's API shapes (`structs.Node`, `structs.NodeService`,
`structs.HealthCheck`, with CreateIndex/ModifyIndex). Names are case-insensitive as in
Consul's memdb indexes: rows are keyed by lower-cased node name, service ID and check ID,
and listed in that order. A registration that changes nothing writes nothing (no index
moves, no blocking query wakes), as Consul's ensureRegistrationTxn; a registration either
applies whole or not at all.
"""
from __future__ import annotations

from typing import Any

import msgpack

from .store import CommandError, Store

# Consul's structs.MessageType values
REGISTER_REQUEST = 0
DEREGISTER_REQUEST = 1

TABLES = ("nodes", "services", "checks")


def clone(v):
    """A deep copy of JSON-like rows (dicts, lists, scalars): what reads hand out, so the
    caller may change them; several times faster than copy.deepcopy."""
    t = type(v)
    if t is dict:
        return {k: clone(x) for k, x in v.items()}
    if t is list:
        return [clone(x) for x in v]
    return v


PASSING, WARNING, CRITICAL, MAINT, ANY = "passing", "warning", "critical", "maintenance", "any"

NODE_FIELDS = ("ID", "Node", "Address", "Datacenter", "TaggedAddresses", "Meta")
# structs.NodeService as stored (Consul's ToServiceNode/ToNodeService round trip)
SERVICE_FIELDS = ("Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta", "Port",
                  "SocketPath", "Weights", "EnableTagOverride", "Proxy", "Connect")
CHECK_FIELDS = ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
                "ServiceTags", "Type", "Interval", "Timeout", "ExposedPort", "Definition")

_SERVICE_DEFAULTS: dict[str, Any] = {
    "Kind": "", "ID": "", "Service": "", "Tags": None, "Address": "", "TaggedAddresses": None,
    "Meta": None, "Port": 0, "SocketPath": "", "Weights": None, "EnableTagOverride": False,
    "Proxy": None, "Connect": None}
_CHECK_DEFAULTS: dict[str, Any] = {
    "Node": "", "CheckID": "", "Name": "", "Status": "", "Notes": "", "Output": "",
    "ServiceID": "", "ServiceName": "", "ServiceTags": None, "Type": "", "Interval": "",
    "Timeout": "", "ExposedPort": 0, "Definition": None}


def register_command(req: dict) -> bytes:
    """The Raft command of a Catalog.Register (Consul's RegisterRequest, as validated)."""
    return bytes((REGISTER_REQUEST,)) + msgpack.packb(req)


def deregister_command(req: dict) -> bytes:
    """The Raft command of a Catalog.Deregister ({Node, ServiceID, CheckID})."""
    return bytes((DEREGISTER_REQUEST,)) + msgpack.packb(req)


def check_type(definition: Any) -> str:
    """Consul's CheckType.Type() from a check's Definition (empty when none applies)."""
    d = definition if isinstance(definition, dict) else {}
    for key, name in (("ScriptArgs", "script"), ("HTTP", "http"), ("TCP", "tcp"), ("UDP", "udp"),
                      ("GRPC", "grpc"), ("H2PING", "h2ping"), ("TTL", "ttl"),
                      ("AliasService", "alias"), ("AliasNode", "alias"),
                      ("DockerContainerID", "docker"), ("OSService", "os_service")):
        if d.get(key):
            return name
    return ""


def meta_matches(meta: dict | None, filters: dict | None) -> bool:
    """Consul's SatisfiesMetaFilters: every filter key present with that exact value."""
    if not filters:
        return True
    meta = meta or {}
    return all(k in meta and meta[k] == v for k, v in filters.items())


def _tags_match(tags: list | None, wanted: list) -> bool:
    """Consul's serviceTagsFilter: every wanted tag present, compared case-insensitively."""
    have = {t.lower() for t in (tags or [])}
    return all(w.lower() in have for w in wanted)


def _norm_service(svc: dict) -> dict:
    row = {k: clone(svc.get(k, d)) for k, d in _SERVICE_DEFAULTS.items()}
    for k in ("Kind", "ID", "Service", "Address", "SocketPath"):
        row[k] = row[k] or ""
    row["Port"] = row["Port"] or 0
    row["EnableTagOverride"] = bool(row["EnableTagOverride"])
    w = row["Weights"]
    # Consul's ToServiceNode: missing (or invalid) weights become {Passing: 1, Warning: 1}
    if not (isinstance(w, dict) and isinstance(w.get("Passing"), int) and w["Passing"] >= 1):
        w = {"Passing": 1, "Warning": 1}
    row["Weights"] = {"Passing": w["Passing"], "Warning": w.get("Warning") or 0}
    return row


def _norm_check(chk: dict) -> dict:
    row = {k: clone(chk.get(k, d)) for k, d in _CHECK_DEFAULTS.items()}
    for k in ("Node", "CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
              "Type", "Interval", "Timeout"):
        row[k] = row[k] or ""
    row["ExposedPort"] = row["ExposedPort"] or 0
    if not row["Status"]:
        row["Status"] = CRITICAL       # Consul's default for a check registered without one
    if not row["CheckID"] and row["Name"]:
        row["CheckID"] = row["Name"]   # checkPreApply
    if not row["Type"]:
        row["Type"] = check_type(row["Definition"])
    if not isinstance(row["Definition"], dict):
        row["Definition"] = {}
    return row


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _same(row: dict, new: dict, fields: tuple[str, ...]) -> bool:
    """Nothing to write: every field equal (nil and empty count as equal, as a re-sync from
    an agent may send either)."""
    return all(row.get(f) == new.get(f) or (_empty(row.get(f)) and _empty(new.get(f)))
               for f in fields)


class Catalog:
    """The catalog tables, attached to a Store as `store.catalog`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.nodes: dict[str, dict] = {}                 # lower(node) -> Node row
        self.services: dict[str, dict[str, dict]] = {}   # lower(node) -> lower(id) -> NodeService row
        self.checks: dict[str, dict[str, dict]] = {}     # lower(node) -> lower(check id) -> HealthCheck row
        store.attach("catalog", self, {REGISTER_REQUEST: self._apply_register,
                                       DEREGISTER_REQUEST: self._apply_deregister}, tables=TABLES)
        store.catalog = self  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> Any:
        return {"nodes": list(self.nodes.values()),
                "services": [[n, list(s.values())] for n, s in self.services.items()],
                "checks": [[n, list(c.values())] for n, c in self.checks.items()]}

    def restore(self, data: Any) -> None:
        self.nodes = {r["Node"].lower(): r for r in data["nodes"]}
        self.services = {n: {r["ID"].lower(): r for r in rows} for n, rows in data["services"]}
        self.checks = {n: {r["CheckID"].lower(): r for r in rows} for n, rows in data["checks"]}

    # ------------------------------------------------------------------ writes

    def _notify(self, index: int, node: str, check_id: str, status: str) -> None:
        for fn in list(self.store.check_listeners):
            fn(index, node, check_id, status)

    def _apply_register(self, index: int, req: dict) -> Any:
        name = req.get("Node") or ""
        if not isinstance(name, str) or not name:
            return CommandError("Must provide node")
        key = name.lower()
        node = self.nodes.get(key)
        new_node = {"ID": req.get("ID") or "", "Node": name,
                    "Address": req.get("Address") or "",
                    "Datacenter": req.get("Datacenter") or "",
                    "TaggedAddresses": clone(req.get("TaggedAddresses") or None),
                    "Meta": clone(req.get("NodeMeta") or None)}
        write_node = node is None or (not req.get("SkipNodeUpdate")
                                      and not _same(node, new_node, NODE_FIELDS))
        # --- validate everything first: a registration applies whole or not at all
        if write_node and new_node["ID"]:
            for other_key, other in self.nodes.items():
                if other_key != key and other["ID"].lower() == new_node["ID"].lower():
                    return CommandError(
                        f'failed inserting node: node ID "{new_node["ID"]}" for node "{name}" '
                        f'aliases existing node "{other["Node"]}"')
        svc = None
        if req.get("Service") is not None:
            svc = _norm_service(req["Service"])
            if not svc["ID"]:
                svc["ID"] = svc["Service"]
        checks = [_norm_check(c) for c in (req.get("Checks") or [])]
        if req.get("Check") is not None:
            checks.append(_norm_check(req["Check"]))    # Consul appends Check to Checks
        node_services = dict(self.services.get(key, {}))
        if svc is not None:
            node_services[svc["ID"].lower()] = svc
        for chk in checks:
            if not chk["Node"]:
                chk["Node"] = name
            ckey = chk["Node"].lower()
            if ckey != key and ckey not in self.nodes:
                return CommandError("failed inserting check: Missing node registration")
            if chk["ServiceID"]:
                pool = node_services if ckey == key else self.services.get(ckey, {})
                s = pool.get(chk["ServiceID"].lower())
                if s is None:
                    return CommandError("failed inserting check: Missing service registration")
                chk["ServiceName"], chk["ServiceTags"] = s["Service"], clone(s["Tags"])
        # --- apply
        if write_node:
            if node is None:
                new_node["CreateIndex"] = index
            else:
                new_node["CreateIndex"] = node["CreateIndex"]
            new_node["ModifyIndex"] = index
            self.nodes[key] = new_node
            self.store.bump("nodes", index)
        if svc is not None:
            services = self.services.setdefault(key, {})
            cur = services.get(svc["ID"].lower())
            if cur is None or not _same(cur, svc, SERVICE_FIELDS):
                svc["CreateIndex"] = cur["CreateIndex"] if cur else index
                svc["ModifyIndex"] = index
                services[svc["ID"].lower()] = svc
                self.store.bump("services", index)
        for chk in checks:
            self._ensure_check(index, chk)
        return True

    def _ensure_check(self, index: int, chk: dict) -> None:
        nkey = chk["Node"].lower()
        chk["Node"] = self.nodes[nkey]["Node"]
        table = self.checks.setdefault(nkey, {})
        cur = table.get(chk["CheckID"].lower())
        if cur is not None and _same(cur, chk, CHECK_FIELDS):
            return
        chk["CreateIndex"] = cur["CreateIndex"] if cur else index
        chk["ModifyIndex"] = index
        table[chk["CheckID"].lower()] = chk
        self.store.bump("checks", index)
        if cur is None or cur["Status"] != chk["Status"]:
            self._notify(index, chk["Node"], chk["CheckID"], chk["Status"])

    def _apply_deregister(self, index: int, req: dict) -> Any:
        name = req.get("Node") or ""
        if not isinstance(name, str) or not name:
            return CommandError("Must provide node")
        key = name.lower()
        if req.get("ServiceID"):
            self._delete_service(index, key, req["ServiceID"].lower())
        elif req.get("CheckID"):
            self._delete_check(index, key, req["CheckID"].lower())
        else:
            self._delete_node(index, key)
        return True

    def _delete_check(self, index: int, nkey: str, ckey: str) -> None:
        table = self.checks.get(nkey, {})
        row = table.pop(ckey, None)
        if row is None:
            return
        if not table:
            self.checks.pop(nkey, None)
        self.store.bump("checks", index)
        self._notify(index, row["Node"], row["CheckID"], "")

    def _delete_service(self, index: int, nkey: str, skey: str) -> None:
        services = self.services.get(nkey, {})
        if skey not in services:
            return
        for ckey, chk in list(self.checks.get(nkey, {}).items()):
            if chk["ServiceID"].lower() == skey:
                self._delete_check(index, nkey, ckey)
        del services[skey]
        if not services:
            self.services.pop(nkey, None)
        self.store.bump("services", index)

    def _delete_node(self, index: int, nkey: str) -> None:
        if nkey not in self.nodes:
            return
        for ckey in list(self.checks.get(nkey, {})):
            self._delete_check(index, nkey, ckey)
        if self.services.pop(nkey, None):
            self.store.bump("services", index)
        row = self.nodes.pop(nkey)
        self.store.bump("nodes", index)
        self._notify(index, row["Node"], "", "")      # the node itself is gone (sessions)

    # ------------------------------------------------------------------ reads
    # Each returns (index, result); results are copies the caller may keep.

    def _index(self, *tables: str) -> int:
        return self.store.max_index(*tables)

    def get_node(self, name: str) -> dict | None:
        row = self.nodes.get(name.lower())
        return clone(row) if row else None

    def list_nodes(self, node_meta: dict | None = None) -> tuple[int, list[dict]]:
        out = [clone(self.nodes[k]) for k in sorted(self.nodes)
               if meta_matches(self.nodes[k]["Meta"], node_meta)]
        return self._index("nodes"), out

    def list_services(self, node_meta: dict | None = None) -> tuple[int, dict[str, list[str]]]:
        """{service name: its tags across every instance} (Consul's Services)."""
        out: dict[str, list[str]] = {}
        for nkey in sorted(self.services):
            if node_meta and not meta_matches(self.nodes[nkey]["Meta"], node_meta):
                continue
            for skey in sorted(self.services[nkey]):
                s = self.services[nkey][skey]
                tags = out.setdefault(s["Service"], [])
                for t in s["Tags"] or ():
                    if t not in tags:
                        tags.append(t)
        for tags in out.values():
            tags.sort()
        return self._index("services", "nodes") if node_meta else self._index("services"), out

    def _service_rows(self, service: str | None, address: str | None = None):
        want = service.lower() if service is not None else None
        for nkey in sorted(self.services):
            for skey in sorted(self.services[nkey]):
                s = self.services[nkey][skey]
                if want is not None and s["Service"].lower() != want:
                    continue
                if address is not None and s["Address"] != address:
                    continue
                yield nkey, s

    def service_nodes(self, service: str, tags: list[str] | None = None,
                      node_meta: dict | None = None,
                      address: str | None = None) -> tuple[int, list[dict]]:
        """structs.ServiceNodes: each instance of `service` joined with its node."""
        out = []
        rows = self._service_rows(None if address is not None else service, address)
        for nkey, s in rows:
            if tags and not _tags_match(s["Tags"], tags):
                continue
            n = self.nodes[nkey]
            if not meta_matches(n["Meta"], node_meta):
                continue
            out.append(clone({
                "ID": n["ID"], "Node": n["Node"], "Address": n["Address"],
                "Datacenter": n["Datacenter"], "TaggedAddresses": n["TaggedAddresses"],
                "NodeMeta": n["Meta"], "ServiceKind": s["Kind"], "ServiceID": s["ID"],
                "ServiceName": s["Service"], "ServiceTags": s["Tags"],
                "ServiceAddress": s["Address"], "ServiceTaggedAddresses": s["TaggedAddresses"],
                "ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"], "ServicePort": s["Port"],
                "ServiceSocketPath": s["SocketPath"],
                "ServiceEnableTagOverride": s["EnableTagOverride"], "ServiceProxy": s["Proxy"],
                "ServiceConnect": s["Connect"],
                "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}))
        return self._index("nodes", "services"), out

    def node_services(self, name: str) -> tuple[int, dict | None]:
        """{Node, Services: {id: NodeService}}, or None for an unknown node."""
        key = name.lower()
        idx = self._index("nodes", "services")
        n = self.nodes.get(key)
        if n is None:
            return idx, None
        services = {s["ID"]: clone(s)
                    for _, s in sorted(self.services.get(key, {}).items())}
        return idx, {"Node": clone(n), "Services": services}

    def node_checks(self, name: str) -> tuple[int, list[dict]]:
        key = name.lower()
        rows = self.checks.get(key, {})
        return self._index("checks"), [clone(rows[c]) for c in sorted(rows)]

    def _all_checks(self):
        for nkey in sorted(self.checks):
            for ckey in sorted(self.checks[nkey]):
                yield nkey, self.checks[nkey][ckey]

    def service_checks(self, service: str, node_meta: dict | None = None) -> tuple[int, list[dict]]:
        want = service.lower()
        out = [clone(c) for nkey, c in self._all_checks()
               if c["ServiceName"].lower() == want
               and meta_matches(self.nodes[nkey]["Meta"], node_meta)]
        return self._index("checks", "nodes") if node_meta else self._index("checks"), out

    def checks_in_state(self, state: str, node_meta: dict | None = None) -> tuple[int, list[dict]]:
        """Checks with Status == state ("any": all). An unknown state matches nothing."""
        out = [clone(c) for nkey, c in self._all_checks()
               if (state == ANY or c["Status"] == state)
               and meta_matches(self.nodes[nkey]["Meta"], node_meta)]
        return self._index("checks", "nodes") if node_meta else self._index("checks"), out

    def check_service_nodes(self, service: str, tags: list[str] | None = None,
                            node_meta: dict | None = None) -> tuple[int, list[dict]]:
        """structs.CheckServiceNodes: {Node, Service, Checks} per instance; Checks are the
        node's own checks plus the instance's."""
        out = []
        for nkey, s in self._service_rows(service):
            if tags and not _tags_match(s["Tags"], tags):
                continue
            n = self.nodes[nkey]
            if not meta_matches(n["Meta"], node_meta):
                continue
            sid = s["ID"].lower()
            checks = [c for _, c in sorted(self.checks.get(nkey, {}).items())
                      if not c["ServiceID"] or c["ServiceID"].lower() == sid]
            out.append(clone({"Node": n, "Service": s, "Checks": checks}))
        return self._index("nodes", "services", "checks"), out

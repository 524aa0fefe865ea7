"""The catalog: nodes, services and health checks (Consul's agent/consul/state/catalog.go). Pure.

Rows are kept in Consul's API shapes (`structs.Node`, `structs.NodeService`,
`structs.HealthCheck`, with CreateIndex/ModifyIndex). Names are case-insensitive as in
Consul's memdb indexes: rows are keyed by lower-cased node name, service ID and check ID,
and listed in that order. A registration that changes nothing writes nothing (no index
moves, no blocking query wakes), as Consul's ensureRegistrationTxn; a registration either
applies whole or not at all.

Each service name has its own index table, `service_table(name)` (Consul's serviceIndex
"service.<name>"): moved by any write to an instance of it, its checks or its nodes, and
reported by ServiceNodes / CheckServiceNodes, so a blocking query on one service wakes only
for that service. When the last instance goes, the table is dropped and
`EXTINCTION_TABLE` moves (Consul's "service_last_extinction": the index a read of a
service that does not exist reports).

Reads share the stored rows (never changed in place: a write replaces a row whole), so
callers treat what they get as read-only; per service name, the joined ServiceNodes and
CheckServiceNodes entries are built once and kept until a write touches that name.
"""
from __future__ import annotations

from typing import Any

import msgpack

from .store import CommandError, Store

# Consul's structs.MessageType values
REGISTER_REQUEST = 0
DEREGISTER_REQUEST = 1

TABLES = ("nodes", "services", "checks")
SERVICE_TABLE_PREFIX = "service."
EXTINCTION_TABLE = "service_last_extinction"


def service_table(name: str) -> str:
    """The index table of one service name (names are case-insensitive)."""
    return SERVICE_TABLE_PREFIX + name.lower()


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


SERF_CHECK_ID = "serfHealth"        # Consul's structs.SerfCheckID

class _View:
    """One service name's instances, joined once (rebuilt after a write touches the name).
    A rebuilt view reuses the previous one's entries whose rows are the same objects, so an
    unchanged instance keeps its entry (consumers may key derived data, as encoded JSON, on
    an entry's identity)."""
    __slots__ = ("rows", "_service_nodes", "_check_service_nodes", "_tag_sets", "_prev")

    def __init__(self, rows: list[tuple[str, dict, dict]], prev: "_View | None" = None) -> None:
        self.rows = rows                       # (node key, Node row, NodeService row), sorted
        self._service_nodes: list[dict] | None = None       # both in the order of rows
        self._check_service_nodes: list[dict] | None = None
        self._tag_sets: list[frozenset[str]] | None = None
        self._prev = prev                      # dropped once both lists are built
        if prev is not None:
            prev._prev = None                  # one generation back at most

    def _previous(self, attr: str) -> dict[tuple[int, int], dict]:
        """The previous view's entries of `attr` by (id(node row), id(service row)); the
        previous view holds those rows, so their ids cannot be reused meanwhile."""
        prev = self._prev
        entries = getattr(prev, attr) if prev is not None else None
        if entries is None:
            return {}
        return {(id(n), id(s)): e for (_, n, s), e in zip(prev.rows, entries)}

    def service_nodes(self) -> list[dict]:
        if self._service_nodes is None:
            old = self._previous("_service_nodes")
            self._service_nodes = [old.get((id(n), id(s))) or _service_node(n, s)
                                   for _, n, s in self.rows]
            if self._check_service_nodes is not None:
                self._prev = None
        return self._service_nodes

    def check_service_nodes(self, checks: dict[str, dict[str, dict]]) -> list[dict]:
        """{Node, Service, Checks} per row; Checks: the node's own and the instance's, from
        `checks` (lower(node) -> lower(check id) -> row)."""
        if self._check_service_nodes is None:
            old = self._previous("_check_service_nodes")
            out = self._check_service_nodes = []
            for nkey, n, s in self.rows:
                sid = s["ID"].lower()
                chks = [c for _, c in sorted(checks.get(nkey, {}).items())
                        if not c["ServiceID"] or c["ServiceID"].lower() == sid]
                e = old.get((id(n), id(s)))
                if e is None or len(e["Checks"]) != len(chks) or \
                        any(a is not b for a, b in zip(e["Checks"], chks)):
                    e = {"Node": n, "Service": s, "Checks": chks}
                out.append(e)
            if self._service_nodes is not None:
                self._prev = None
        return self._check_service_nodes

    def select(self, entries: list[dict], tags: list[str] | None,
               node_meta: dict | None) -> list[dict]:
        """The entries (one per row) whose instance has every tag in `tags` (compared
        case-insensitively, Consul's serviceTagsFilter) and whose node matches `node_meta`."""
        if not tags and not node_meta:
            return list(entries)
        if self._tag_sets is None:
            self._tag_sets = [frozenset(t.lower() for t in s["Tags"] or ())
                              for _, _, s in self.rows]
        want = frozenset(t.lower() for t in tags or ())
        return [e for e, (_, n, _), have in zip(entries, self.rows, self._tag_sets)
                if want <= have and meta_matches(n["Meta"], node_meta)]


def _service_node(n: dict, s: dict) -> dict:
    """structs.ServiceNode: one instance joined with its node (sharing the rows' values)."""
    return {
        "ID": n["ID"], "Node": n["Node"], "Address": n["Address"],
        "Datacenter": n["Datacenter"], "TaggedAddresses": n["TaggedAddresses"],
        "NodeMeta": n["Meta"], "ServiceKind": s["Kind"], "ServiceID": s["ID"],
        "ServiceName": s["Service"], "ServiceTags": s["Tags"],
        "ServiceAddress": s["Address"], "ServiceTaggedAddresses": s["TaggedAddresses"],
        "ServiceWeights": s["Weights"], "ServiceMeta": s["Meta"], "ServicePort": s["Port"],
        "ServiceSocketPath": s["SocketPath"],
        "ServiceEnableTagOverride": s["EnableTagOverride"], "ServiceProxy": s["Proxy"],
        "ServiceConnect": s["Connect"],
        "CreateIndex": s["CreateIndex"], "ModifyIndex": s["ModifyIndex"]}


class Catalog:
    """The catalog tables, attached to a Store as `store.catalog`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.nodes: dict[str, dict] = {}                 # lower(node) -> Node row
        self.services: dict[str, dict[str, dict]] = {}   # lower(node) -> lower(id) -> NodeService row
        self.checks: dict[str, dict[str, dict]] = {}     # lower(node) -> lower(check id) -> HealthCheck row
        # lower(service name) -> {(lower(node), lower(service id))}: Consul's service index
        self._instances: dict[str, set[tuple[str, str]]] = {}
        self._views: dict[str, _View] = {}               # lower(service name) -> joined reads
        self._retired: dict[str, _View] = {}             # views a write replaced, until rebuilt
        self._service_list: tuple[int, dict[str, list[str]]] | None = None   # (index, Services)
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
        self._instances, self._views, self._retired, self._service_list = {}, {}, {}, None
        for nkey, services in self.services.items():
            for skey, row in services.items():
                self._instances.setdefault(row["Service"].lower(), set()).add((nkey, skey))
        # The store restored its indexes first: drop those of services that are gone
        indexes = self.store.indexes
        for t in [t for t in indexes if t.startswith(SERVICE_TABLE_PREFIX)]:
            if t[len(SERVICE_TABLE_PREFIX):] not in self._instances:
                del indexes[t]

    # ------------------------------------------------------------------ writes

    def _notify(self, index: int, node: str, check_id: str, status: str) -> None:
        for fn in list(self.store.check_listeners):
            fn(index, node, check_id, status)

    def _touch(self, index: int, names) -> None:
        """Services with these (lower-cased) names changed: move their index tables (waking
        blocking reads on them) and drop their joined reads. A name with no instance left
        goes extinct: its table is dropped and the extinction index moves."""
        for name in names:
            view = self._views.pop(name, None)
            if view is not None:
                self._retired[name] = view
            table = SERVICE_TABLE_PREFIX + name
            self.store.bump(table, index)
            if not self._instances.get(name):
                self._instances.pop(name, None)
                self._retired.pop(name, None)
                self.store.indexes.pop(table, None)
                self.store.bump(EXTINCTION_TABLE, index)

    def _node_service_names(self, nkey: str) -> set[str]:
        return {s["Service"].lower() for s in self.services.get(nkey, {}).values()}

    def _check_service_names(self, nkey: str, chk: dict) -> set[str]:
        """The services a check's change shows in: its own, or every one on its node."""
        if not chk["ServiceID"]:
            return self._node_service_names(nkey)
        names = {chk["ServiceName"].lower()} if chk["ServiceName"] else set()
        s = self.services.get(nkey, {}).get(chk["ServiceID"].lower())
        if s is not None:
            names.add(s["Service"].lower())
        return names

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
        renamed_from = None             # the node this ID had under another name
        if write_node and new_node["ID"]:
            nid = new_node["ID"].lower()
            renamed_from = next((k for k, o in self.nodes.items()
                                 if k != key and o["ID"].lower() == nid), None)
            clash = self._name_reserved(new_node, allow_without_id=renamed_from is None)
            if clash:
                if renamed_from is not None:
                    return CommandError(f'Error while renaming Node ID: "{new_node["ID"]}" '
                                        f'({new_node["Address"]}): {clash}')
                return CommandError(f"failed inserting node: {clash}")
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
        if renamed_from is not None:    # Consul: the ID moved to a new name; the old goes
            self._delete_node(index, renamed_from)
        if write_node:
            if node is None:
                new_node["CreateIndex"] = index
            else:
                new_node["CreateIndex"] = node["CreateIndex"]
            new_node["ModifyIndex"] = index
            self.nodes[key] = new_node
            self.store.bump("nodes", index)
            self._touch(index, self._node_service_names(key))
        if svc is not None:
            services = self.services.setdefault(key, {})
            skey = svc["ID"].lower()
            cur = services.get(skey)
            if cur is None or not _same(cur, svc, SERVICE_FIELDS):
                svc["CreateIndex"] = cur["CreateIndex"] if cur else index
                svc["ModifyIndex"] = index
                services[skey] = svc
                self.store.bump("services", index)
                name = svc["Service"].lower()
                self._instances.setdefault(name, set()).add((key, skey))
                touched = {name}
                if cur is not None and cur["Service"].lower() != name:    # renamed
                    old = cur["Service"].lower()
                    self._instances.get(old, set()).discard((key, skey))
                    touched.add(old)
                self._touch(index, sorted(touched))
        for chk in checks:
            self._ensure_check(index, chk)
        return True

    def _name_reserved(self, node: dict, allow_without_id: bool) -> str:
        """Consul's ensureNoNodeWithSimilarNameTxn: a node's name (case-insensitively) is
        reserved by a node with another ID unless that node's serfHealth is critical (or it
        has no serfHealth: an external registration), or — for a new ID — it has no ID."""
        other = self.nodes.get(node["Node"].lower())
        if other is None or other["ID"].lower() == node["ID"].lower():
            return ""
        if allow_without_id and not other["ID"]:
            return ""
        serf = self.checks.get(node["Node"].lower(), {}).get(SERF_CHECK_ID.lower())
        if serf is None or serf["Status"] == "critical":
            return ""
        return (f'Node name {node["Node"]} is reserved by node {other["ID"]} with name '
                f'{other["Node"]} ({other["Address"]})')

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
        names = self._check_service_names(nkey, chk)
        if cur is not None:
            names |= self._check_service_names(nkey, cur)
        self._touch(index, sorted(names))
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
        self._touch(index, sorted(self._check_service_names(nkey, row)))
        self._notify(index, row["Node"], row["CheckID"], "")

    def _delete_service(self, index: int, nkey: str, skey: str) -> None:
        services = self.services.get(nkey, {})
        if skey not in services:
            return
        for ckey, chk in list(self.checks.get(nkey, {}).items()):
            if chk["ServiceID"].lower() == skey:
                self._delete_check(index, nkey, ckey)
        name = services.pop(skey)["Service"].lower()
        if not services:
            self.services.pop(nkey, None)
        self.store.bump("services", index)
        self._instances.get(name, set()).discard((nkey, skey))
        self._touch(index, (name,))

    def _delete_node(self, index: int, nkey: str) -> None:
        if nkey not in self.nodes:
            return
        for ckey in list(self.checks.get(nkey, {})):
            self._delete_check(index, nkey, ckey)
        for skey in list(self.services.get(nkey, {})):
            self._delete_service(index, nkey, skey)
        row = self.nodes.pop(nkey)
        self.store.bump("nodes", index)
        self._notify(index, row["Node"], "", "")      # the node itself is gone (sessions)

    # ------------------------------------------------------------------ reads
    # Each returns (index, result). Lists are the caller's; the rows in them are copies
    # except in service_nodes and check_service_nodes, which share the stored rows (read-only).

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
        if not node_meta:
            # every write to a service row moves the services index (restore clears this)
            version = self.store.indexes.get("services", 0)
            if self._service_list is None or self._service_list[0] != version:
                self._service_list = (version, self._list_services(None))
            services = {name: list(tags) for name, tags in self._service_list[1].items()}
            return self._index("services"), services
        return self._index("services", "nodes"), self._list_services(node_meta)

    def _list_services(self, node_meta: dict | None) -> dict[str, list[str]]:
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
        return out

    def _view(self, service: str) -> _View:
        name = service.lower()
        view = self._views.get(name)
        if view is None:
            rows = [(nkey, self.nodes[nkey], self.services[nkey][skey])
                    for nkey, skey in sorted(self._instances.get(name, ()))]
            view = self._views[name] = _View(rows, self._retired.pop(name, None))
        return view

    def service_index(self, service: str, checks: bool = False) -> int:
        """The index a read of `service`'s instances reports (Consul's maxIndexForService):
        its own table's; for a service that does not exist, the last extinction's; failing
        both, the catalog's (nodes and services, and checks with `checks`)."""
        name = service.lower()
        indexes = self.store.indexes
        if not self._instances.get(name) and indexes.get(EXTINCTION_TABLE):
            return indexes[EXTINCTION_TABLE]
        idx = indexes.get(SERVICE_TABLE_PREFIX + name)
        if idx:
            return idx
        return self._index("nodes", "services", *(("checks",) if checks else ()))

    def service_nodes(self, service: str, tags: list[str] | None = None,
                      node_meta: dict | None = None,
                      address: str | None = None) -> tuple[int, list[dict]]:
        """structs.ServiceNodes: each instance of `service` joined with its node (or, with
        `address`, every instance at that address, whatever its name)."""
        if address is None:
            view = self._view(service)
            return self.service_index(service), view.select(view.service_nodes(), tags, node_meta)
        out = [_service_node(self.nodes[nkey], s)
               for nkey in sorted(self.services)
               for _, s in sorted(self.services[nkey].items())
               if s["Address"] == address and (not tags or _tags_match(s["Tags"], tags))
               and meta_matches(self.nodes[nkey]["Meta"], node_meta)]
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
        view = self._view(service)
        return (self.service_index(service, checks=True),
                view.select(view.check_service_nodes(self.checks), tags, node_meta))

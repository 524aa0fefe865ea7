"""The agent's local state: the services and checks registered on this agent (Consul's
agent/local/state.go), each with an in-sync flag that anti-entropy acts on.

`LocalState` is pure bookkeeping (no clock, no I/O: callers pass `now`); `LocalFiles`
persists services and checks in the data dir so they survive a restart:
`<data-dir>/services/<sha256(id)>`, `<data-dir>/checks/<sha256(id)>` and the last
status of TTL checks in `<data-dir>/checks/state/<sha256(id)>`, JSON as Consul writes them
(`{"Token", "Service"}`, `{"Token", "Check", "ChkType"}`, `{"CheckID", "Status",
"Output", "Expires"}`); ChkType durations are in seconds (Isthmus's own).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

PASSING, WARNING, CRITICAL, MAINT = "passing", "warning", "critical", "maintenance"
STATUSES = (PASSING, WARNING, CRITICAL)
CONSUL_SERVICE_ID = "consul"        # the servers' own service: the leader manages it
SERF_CHECK_ID = "serfHealth"        # the leader's gossip health check of every node

SERVICE_FIELDS = ("Kind", "ID", "Service", "Tags", "Address", "TaggedAddresses", "Meta",
                  "Port", "Weights", "EnableTagOverride")
CHECK_FIELDS = ("CheckID", "Name", "Status", "Notes", "Output", "ServiceID", "ServiceName",
                "ServiceTags", "Type")


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {} or v is False or v == 0


def same(local: dict, remote: dict, fields: tuple[str, ...]) -> bool:
    """Consul's IsSame on the fields both sides know: empty values (nil, "", [], {}) are
    equal, and a field the remote record does not carry is not compared."""
    for f in fields:
        if f not in remote:
            continue
        a, b = local.get(f), remote.get(f)
        if _empty(a) and _empty(b):
            continue
        if a != b:
            return False
    return True


@dataclass(slots=True)
class ServiceState:
    service: dict                    # Consul's NodeService fields
    token: str = ""
    in_sync: bool = False
    deleted: bool = False
    rev: int = 0                     # bumped on every local change (a sync in flight is stale)


@dataclass(slots=True)
class CheckState:
    check: dict                      # Consul's HealthCheck fields
    chk_type: dict | None = None     # how to run it (TTL/HTTP/TCP/Args, durations in seconds)
    token: str = ""
    in_sync: bool = False
    deleted: bool = False
    critical_since: float | None = None
    deferred: bool = False           # output-only change waiting for check_update_interval
    rev: int = 0


@dataclass(slots=True)
class SyncOp:
    """One RPC anti-entropy has to make, and what it settles when it succeeds."""
    method: str
    body: dict
    services: dict[str, int] = field(default_factory=dict)   # id → rev it syncs
    checks: dict[str, int] = field(default_factory=dict)
    node: bool = False
    delete_service: str = ""
    delete_check: str = ""


class LocalState:
    """Services and checks of this agent and whether the catalog has them as we do."""

    def __init__(self, node_name: str, datacenter: str,
                 check_update_interval: float = 300.0) -> None:
        self.node_name = node_name
        self.datacenter = datacenter
        self.check_update_interval = check_update_interval
        self.node_id = ""
        self.node_address = ""
        self.tagged_addresses: dict[str, str] = {}
        self.node_meta: dict[str, str] = {}
        self.node_in_sync = False
        self.services: dict[str, ServiceState] = {}
        self.checks: dict[str, CheckState] = {}
        self.on_change: Callable[[], None] = lambda: None   # a change to push (partial sync)
        self._rev = 0

    def _next_rev(self) -> int:
        self._rev += 1
        return self._rev

    # ------------------------------------------------------------------ node
    def set_node_info(self, node_id: str, address: str, tagged: dict[str, str],
                      meta: dict[str, str]) -> None:
        if (node_id, address, tagged, meta) != (self.node_id, self.node_address,
                                                self.tagged_addresses, self.node_meta):
            self.node_id, self.node_address = node_id, address
            self.tagged_addresses, self.node_meta = dict(tagged), dict(meta)
            self.node_in_sync = False
            self.on_change()

    # ------------------------------------------------------------------ services
    def add_service(self, service: dict, token: str = "") -> None:
        """Add or replace a service (its ID is set); it is then out of sync."""
        svc = copy.deepcopy(service)
        self.services[svc["ID"]] = ServiceState(svc, token, rev=self._next_rev())
        # Checks of the service carry its name and tags (Consul: ServiceName/ServiceTags).
        for cs in self.checks.values():
            if cs.check.get("ServiceID") == svc["ID"] and not cs.deleted:
                cs.check["ServiceName"] = svc["Service"]
                cs.check["ServiceTags"] = list(svc.get("Tags") or [])
                cs.in_sync = False
                cs.rev = self._next_rev()
        self.on_change()

    def remove_service(self, service_id: str) -> bool:
        """Mark a service deleted (anti-entropy deregisters it); False if unknown."""
        s = self.services.get(service_id)
        if s is None or s.deleted:
            return False
        s.deleted, s.in_sync, s.rev = True, False, self._next_rev()
        self.on_change()
        return True

    def service(self, service_id: str) -> dict | None:
        s = self.services.get(service_id)
        return None if s is None or s.deleted else s.service

    def active_services(self) -> dict[str, dict]:
        return {k: s.service for k, s in self.services.items() if not s.deleted}

    # ------------------------------------------------------------------ checks
    def add_check(self, check: dict, chk_type: dict | None = None, token: str = "",
                  now: float | None = None) -> None:
        """Add or replace a check (CheckID set; ServiceID, if any, must be registered)."""
        chk = copy.deepcopy(check)
        sid = chk.get("ServiceID") or ""
        if sid:
            svc = self.service(sid)
            if svc is None:
                raise KeyError(f"ServiceID {sid!r} does not exist")
            chk["ServiceName"] = svc["Service"]
            chk["ServiceTags"] = list(svc.get("Tags") or [])
        chk["Node"] = self.node_name
        cs = CheckState(chk, copy.deepcopy(chk_type), token, rev=self._next_rev())
        if chk.get("Status") == CRITICAL and now is not None:
            cs.critical_since = now
        self.checks[chk["CheckID"]] = cs
        self.on_change()

    def remove_check(self, check_id: str) -> bool:
        c = self.checks.get(check_id)
        if c is None or c.deleted:
            return False
        c.deleted, c.in_sync, c.rev = True, False, self._next_rev()
        self.on_change()
        return True

    def check(self, check_id: str) -> CheckState | None:
        c = self.checks.get(check_id)
        return None if c is None or c.deleted else c

    def active_checks(self) -> dict[str, dict]:
        return {k: c.check for k, c in self.checks.items() if not c.deleted}

    def update_check(self, check_id: str, status: str, output: str, now: float) -> str:
        """A runner's result: "unchanged", "deferred" (output only: synced after
        check_update_interval, Consul's CheckUpdateInterval) or "changed" (sync now)."""
        c = self.check(check_id)
        if c is None:
            return "unchanged"
        if status == CRITICAL:
            if c.critical_since is None:
                c.critical_since = now
        else:
            c.critical_since = None
        chk = c.check
        if chk.get("Status") == status and chk.get("Output") == output:
            return "unchanged"
        if self.check_update_interval > 0 and chk.get("Status") == status:
            chk["Output"] = output
            if c.deferred:
                return "unchanged"
            c.deferred = True
            return "deferred"
        chk["Status"], chk["Output"] = status, output
        c.in_sync, c.rev = False, self._next_rev()
        self.on_change()
        return "changed"

    def undefer(self, check_id: str) -> None:
        """check_update_interval passed: push the latest output of a check."""
        c = self.checks.get(check_id)
        if c is not None and c.deferred:
            c.deferred = False
            c.in_sync, c.rev = False, self._next_rev()
            self.on_change()

    def critical_for(self, check_id: str, now: float) -> float:
        """Seconds a check has been critical (0 if it is not)."""
        c = self.check(check_id)
        if c is None or c.critical_since is None:
            return 0.0
        return now - c.critical_since

    # ------------------------------------------------------------------ anti-entropy
    def update_sync_state(self, remote_node: dict | None, remote_services: dict[str, dict],
                          remote_checks: list[dict]) -> None:
        """Compare with the catalog's view of this node (Consul's updateSyncState): remote
        items we do not have are scheduled for deletion, differing ones for registration."""
        n = remote_node or {}
        self.node_in_sync = bool(remote_node) and same(
            {"ID": self.node_id, "Address": self.node_address,
             "TaggedAddresses": self.tagged_addresses, "Meta": self.node_meta},
            n, ("ID", "Address", "TaggedAddresses", "Meta"))

        for sid, rs in remote_services.items():
            ls = self.services.get(sid)
            if ls is None:
                if sid == CONSUL_SERVICE_ID:
                    continue
                self.services[sid] = ServiceState(dict(rs), deleted=True, rev=self._next_rev())
                continue
            if not ls.deleted:
                ls.in_sync = same(ls.service, rs, SERVICE_FIELDS)
        for sid in [k for k, s in self.services.items() if k not in remote_services]:
            if self.services[sid].deleted:
                del self.services[sid]            # already gone from the catalog
            else:
                self.services[sid].in_sync = False

        remote_by_id = {c.get("CheckID"): c for c in remote_checks if c.get("CheckID")}
        for cid, rc in remote_by_id.items():
            lc = self.checks.get(cid)
            if lc is None:
                if cid == SERF_CHECK_ID:
                    continue
                self.checks[cid] = CheckState(dict(rc), deleted=True, rev=self._next_rev())
                continue
            if not lc.deleted:
                a, b = dict(lc.check), dict(rc)
                if lc.deferred:                   # its output is pushed when the timer fires
                    a["Output"] = b["Output"] = ""
                lc.in_sync = same(a, b, CHECK_FIELDS)
        for cid in [k for k in self.checks if k not in remote_by_id]:
            if self.checks[cid].deleted:
                del self.checks[cid]
            else:
                self.checks[cid].in_sync = False

    def _register_body(self) -> dict:
        return {"Datacenter": self.datacenter, "ID": self.node_id, "Node": self.node_name,
                "Address": self.node_address, "TaggedAddresses": dict(self.tagged_addresses),
                "NodeMeta": dict(self.node_meta), "SkipNodeUpdate": self.node_in_sync}

    def plan(self) -> list[SyncOp]:
        """The RPCs that bring the catalog in line (Consul's SyncChanges order: deleted
        services, services, deleted checks, checks, then the node if still needed)."""
        ops: list[SyncOp] = []
        node_covered = False
        for sid, s in self.services.items():
            if s.deleted:
                ops.append(SyncOp("Catalog.Deregister",
                                  {"Datacenter": self.datacenter, "Node": self.node_name,
                                   "ServiceID": sid}, delete_service=sid))
        for sid, s in self.services.items():
            if s.deleted or s.in_sync:
                continue
            body = self._register_body()
            body["Service"] = copy.deepcopy(s.service)
            checks = {cid: c for cid, c in self.checks.items()
                      if not c.deleted and c.check.get("ServiceID") == sid}
            if len(checks) == 1:
                body["Check"] = copy.deepcopy(next(iter(checks.values())).check)
            elif checks:
                body["Checks"] = [copy.deepcopy(c.check) for c in checks.values()]
            ops.append(SyncOp("Catalog.Register", body, services={sid: s.rev},
                              checks={cid: c.rev for cid, c in checks.items()},
                              node=not self.node_in_sync and not node_covered))
            node_covered = True
        for cid, c in self.checks.items():
            if c.deleted:
                ops.append(SyncOp("Catalog.Deregister",
                                  {"Datacenter": self.datacenter, "Node": self.node_name,
                                   "CheckID": cid}, delete_check=cid))
        synced_by_service = {cid for op in ops for cid in op.checks}
        for cid, c in self.checks.items():
            if c.deleted or c.in_sync or cid in synced_by_service:
                continue
            body = self._register_body()
            body["Check"] = copy.deepcopy(c.check)
            sid = c.check.get("ServiceID") or ""
            svc = self.service(sid) if sid else None
            if svc is not None:
                body["Service"] = copy.deepcopy(svc)     # Consul sends the service along
            ops.append(SyncOp("Catalog.Register", body, checks={cid: c.rev},
                              node=not self.node_in_sync and not node_covered))
            node_covered = True
        if not self.node_in_sync and not node_covered:
            body = self._register_body()
            body["SkipNodeUpdate"] = False
            ops.append(SyncOp("Catalog.Register", body, node=True))
        return ops

    def done(self, op: SyncOp) -> None:
        """`op` succeeded: mark what it carried in sync, unless it changed meanwhile."""
        if op.delete_service:
            s = self.services.get(op.delete_service)
            if s is not None and s.deleted:
                del self.services[op.delete_service]
                # The catalog drops a service's checks with it.
                for cid in [k for k, c in self.checks.items()
                            if c.deleted and c.check.get("ServiceID") == op.delete_service]:
                    del self.checks[cid]
        if op.delete_check:
            c = self.checks.get(op.delete_check)
            if c is not None and c.deleted:
                del self.checks[op.delete_check]
        for sid, rev in op.services.items():
            s = self.services.get(sid)
            if s is not None and s.rev == rev:
                s.in_sync = True
        for cid, rev in op.checks.items():
            c = self.checks.get(cid)
            if c is not None and c.rev == rev:
                c.in_sync = True
        if op.node:
            self.node_in_sync = True

    def in_sync(self) -> bool:
        return self.node_in_sync and all(s.in_sync for s in self.services.values()) and \
            all(c.in_sync for c in self.checks.values())


def _hash(ident: str) -> str:
    return hashlib.sha256(ident.encode()).hexdigest()


class LocalFiles:
    """Services, checks and TTL check states as files in the data dir (written atomically)."""

    def __init__(self, data_dir: str) -> None:
        self.services_dir = os.path.join(data_dir, "services")
        self.checks_dir = os.path.join(data_dir, "checks")
        self.state_dir = os.path.join(self.checks_dir, "state")

    @staticmethod
    def _write(directory: str, name: str, obj: dict) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _remove(directory: str, name: str) -> None:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass

    def save_service(self, service: dict, token: str = "") -> None:
        self._write(self.services_dir, _hash(service["ID"]),
                    {"Token": token, "Service": service, "Source": "remote"})

    def remove_service(self, service_id: str) -> None:
        self._remove(self.services_dir, _hash(service_id))

    def save_check(self, check: dict, chk_type: dict | None, token: str = "") -> None:
        self._write(self.checks_dir, _hash(check["CheckID"]),
                    {"Token": token, "Check": check, "ChkType": chk_type, "Source": "remote"})

    def remove_check(self, check_id: str) -> None:
        self._remove(self.checks_dir, _hash(check_id))
        self._remove(self.state_dir, _hash(check_id))

    def remove_check_definition(self, check_id: str) -> None:
        """Drop a persisted check definition but keep its TTL state (a config file now
        defines the check, and its last TTL status still applies)."""
        self._remove(self.checks_dir, _hash(check_id))

    def save_check_state(self, check_id: str, status: str, output: str,
                         expires_at: float) -> None:
        """A TTL check's last status; `expires_at` is wall-clock seconds (Unix time)."""
        self._write(self.state_dir, _hash(check_id),
                    {"CheckID": check_id, "Status": status, "Output": output,
                     "Expires": expires_at})

    def _read_dir(self, directory: str) -> list[dict]:
        out = []
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(directory, name)
            if name.endswith(".tmp") or not os.path.isfile(path):
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    obj = json.load(fh)
            except (OSError, ValueError):
                continue                          # a torn or foreign file: skip it
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def load(self) -> tuple[list[dict], list[dict], dict[str, dict]]:
        """(persisted services, persisted checks, TTL states by check ID)."""
        services = [p for p in self._read_dir(self.services_dir)
                    if isinstance(p.get("Service"), dict) and p["Service"].get("ID")]
        checks = [p for p in self._read_dir(self.checks_dir)
                  if isinstance(p.get("Check"), dict) and p["Check"].get("CheckID")]
        states = {p["CheckID"]: p for p in self._read_dir(self.state_dir)
                  if isinstance(p.get("CheckID"), str)}
        return services, checks, states

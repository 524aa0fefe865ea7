"""The agent's services and checks put together (Consul's Agent.AddService/AddCheck/...):
local state, its files in the data dir, the check runners, anti-entropy, maintenance mode
and the reaping of services critical for longer than DeregisterCriticalServiceAfter."""
from __future__ import annotations

import asyncio
import copy
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .. import log
from ..errors import IsthmusError
from .checks import MIN_INTERVAL, Runner, TTLCheck, make_runner
from .state import CRITICAL, LocalFiles, LocalState
from .sync import StateSyncer

if TYPE_CHECKING:
    from ..config.model import AgentConfig, CheckDefinition, ServiceDefinition

_log = log.get("agent")

NODE_MAINT_ID = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
DEFAULT_NODE_REASON = ("Maintenance mode is enabled for this node, but no reason was "
                       "provided. This is a default message.")
DEFAULT_SERVICE_REASON = ("Maintenance mode is enabled for this service, but no reason was "
                          "provided. This is a default message.")
SCRIPTS_DISABLED = ("Scripts are disabled on this agent from remote calls; to enable, "
                    "configure 'enable_script_checks' to true")
REAP_INTERVAL = 30.0          # Consul's CheckReapInterval


class NotFound(IsthmusError):
    """An unknown service or check ID (HTTP 404)."""


def service_maint_id(service_id: str) -> str:
    return SERVICE_MAINT_PREFIX + service_id


class LocalAgent:
    """Services and checks registered on this agent, kept in sync with the catalog."""

    def __init__(self, config: "AgentConfig", node_id: str,
                 rpc: Callable[[str, Any], Awaitable[Any]], cluster_size: Callable[[], int], *,
                 sync_interval: float | None = None, reap_interval: float = REAP_INTERVAL,
                 min_check_interval: float = MIN_INTERVAL) -> None:
        self.config = config
        self.state = LocalState(config.node_name, config.datacenter)
        adv = config.advertise_addr
        wan = config.advertise_addr_wan or adv
        self.state.set_node_info(node_id, adv,
                                 {"lan": adv, "lan_ipv4": adv, "wan": wan, "wan_ipv4": wan},
                                 dict(config.node_meta))
        self.files = LocalFiles(config.data_dir) if config.data_dir else None
        kw = {} if sync_interval is None else {"interval": sync_interval}
        self.syncer = StateSyncer(self.state, rpc, cluster_size, **kw)
        self.runners: dict[str, Runner] = {}
        self.reap_interval = reap_interval
        self.min_check_interval = min_check_interval
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        # Definitions from config files as last applied (service ID → definition, check
        # ID → definition): what a reload compares with. An API registration of the same
        # ID takes the ID over (it is then the API's, as in Consul until the next reload).
        self.config_services: dict[str, "ServiceDefinition"] = {}
        self.config_checks: dict[str, "CheckDefinition"] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Register the config files' services and checks and reload what the data dir
        holds (Consul's order: config services, persisted services, config checks,
        persisted checks; a persisted entry with a config-defined ID is dropped), then
        start anti-entropy and the reaper. IsthmusError if a definition does not apply."""
        persisted = self.files.load() if self.files is not None else ([], [], {})
        config_sids = {d.service["ID"] for d in self.config.services}
        self._load_services(persisted[0], config_sids)
        self.apply_config(self.config.services, self.config.checks, ttl_states=persisted[2])
        self._load_checks(persisted[1], persisted[2])
        if persisted[0] or persisted[1]:
            _log.info("Loaded %d services and %d checks from the data dir",
                      len(persisted[0]), len(persisted[1]))
        self.syncer.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for r in list(self.runners.values()):
            await r.stop()
        self.runners.clear()
        await self.syncer.stop()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _load_services(self, services: list[dict], skip: set[str]) -> None:
        for p in services:
            sid = p["Service"]["ID"]
            if sid in skip:                   # config is preferred over the API's copy
                self.files.remove_service(sid)
                continue
            self.state.add_service(p["Service"], p.get("Token") or "")

    def _load_checks(self, checks: list[dict], states: dict[str, dict]) -> None:
        now_wall = time.time()
        config_cids = set(self.config_checks).union(
            *({c["CheckID"] for c, _ in d.checks} for d in self.config_services.values()))
        for p in checks:
            chk, ct = p["Check"], p.get("ChkType")
            if chk["CheckID"] in config_cids:                  # defined in a config file
                self.files.remove_check_definition(chk["CheckID"])
                continue
            if chk.get("ServiceID") and self.state.service(chk["ServiceID"]) is None:
                self.files.remove_check(chk["CheckID"])   # its service is gone
                continue
            remaining = None
            st = states.get(chk["CheckID"])
            if ct and ct.get("TTL") and st is not None:
                left = float(st.get("Expires") or 0) - now_wall
                if left > 0:                              # Consul: restore unexpired TTLs
                    chk = dict(chk, Status=st.get("Status") or chk.get("Status"),
                               Output=st.get("Output") or "")
                    remaining = left
            self._add_check(chk, ct, p.get("Token") or "", persist=False,
                            ttl_remaining=remaining)

    # ------------------------------------------------------------------ config files
    def apply_config(self, services: "tuple[ServiceDefinition, ...]",
                     checks: "tuple[CheckDefinition, ...]", *,
                     ttl_states: dict[str, dict] | None = None) -> None:
        """Make the config-file services and checks these (at start and on reload, as
        Consul's loadServices/loadChecks): definitions no longer in the files are
        deregistered, changed ones replace the registered ones (a check keeps its current
        status, as Consul's check-state snapshot), unchanged ones are left running, and
        what was registered through the API stays. Everything is checked first: on an
        IsthmusError (naming the file and key) nothing has changed. `ttl_states` (at start:
        the data dir's last TTL statuses) restores unexpired TTL checks, as Consul does."""
        svc_defs = {d.service["ID"]: d for d in services}     # the last definition wins
        chk_defs = {d.check["CheckID"]: d for d in checks}
        api_sids = {sid for sid in self.state.active_services()
                    if sid not in self.config_services}
        for d in chk_defs.values():
            sid = d.check.get("ServiceID") or ""
            if sid and sid not in svc_defs and sid not in api_sids:
                raise IsthmusError(f'"{d.key}" in {d.source}: Failed to register check '
                                   f'{d.check["Name"]!r}: ServiceID "{sid}" does not exist')

        for sid in [s for s in self.config_services if s not in svc_defs]:
            del self.config_services[sid]
            if self.state.service(sid) is not None:
                self.remove_service(sid)
                _log.info("Deregistered service %r: no longer in the config files", sid)
        for cid in [c for c in self.config_checks if c not in chk_defs]:
            del self.config_checks[cid]
            if self.state.check(cid) is not None:
                self.remove_check(cid)
        for sid, d in svc_defs.items():
            old = self.config_services.get(sid)
            # Same definition (wherever in the files it now is) and still registered as such.
            if old is not None and (old.service, old.checks, old.token) == \
                    (d.service, d.checks, d.token) and self._registered_as(d.service, d.checks):
                continue
            if old is not None:                 # its checks no longer defined go
                keep = {c["CheckID"] for c, _ in d.checks}
                for c, _ in old.checks:
                    if c["CheckID"] not in keep and self.state.check(c["CheckID"]) is not None:
                        self.remove_check(c["CheckID"])
            self._add_config_service(d, ttl_states)
        for cid, d in chk_defs.items():
            old = self.config_checks.get(cid)
            if old is not None and (old.check, old.chk_type, old.token) == \
                    (d.check, d.chk_type, d.token) and \
                    self._registered_as(None, ((d.check, d.chk_type),)):
                continue
            self._add_config_check(d.check, d.chk_type, d.token, ttl_states)
            self.config_checks[cid] = d

    def _add_config_service(self, d: "ServiceDefinition",
                            ttl_states: dict[str, dict] | None) -> None:
        sid = d.service["ID"]
        self.state.add_service(d.service, d.token)
        if self.files is not None:              # a copy the API persisted is superseded
            self.files.remove_service(sid)
        for chk, ct in d.checks:
            self._add_config_check(chk, ct, d.token, ttl_states)
        self.config_services[sid] = d

    def _add_config_check(self, check: dict, ct: dict, token: str,
                          ttl_states: dict[str, dict] | None) -> None:
        cid = check["CheckID"]
        if self.files is not None:              # a copy the API persisted is superseded
            self.files.remove_check_definition(cid)
        old = self.state.check(cid)
        remaining = None
        if old is not None:
            check = dict(check, Status=old.check["Status"], Output=old.check.get("Output", ""))
        elif ttl_states and ct.get("TTL") and cid in ttl_states:
            st = ttl_states[cid]
            left = float(st.get("Expires") or 0) - time.time()
            if left > 0:
                check = dict(check, Status=st.get("Status") or check["Status"],
                             Output=st.get("Output") or "")
                remaining = left
        self._add_check(check, ct, token, persist=False, ttl_remaining=remaining)

    def _registered_as(self, service: dict | None,
                       checks: "tuple[tuple[dict, dict], ...]") -> bool:
        """Whether local state still holds exactly this service and these checks."""
        if service is not None:
            held = self.state.service(service["ID"])
            if held is None or held != service:
                return False
        for chk, ct in checks:
            cs = self.state.checks.get(chk["CheckID"])
            if cs is None or cs.deleted or cs.chk_type != ct or \
                    cs.check.get("ServiceID", "") != chk.get("ServiceID", ""):
                return False
        return True

    # ------------------------------------------------------------------ services
    def add_service(self, service: dict, checks: list[tuple[dict, dict]],
                    replace_existing_checks: bool = False, token: str = "") -> None:
        """Register (or update) a service with its checks, as Consul's AddService."""
        for _, ct in checks:
            self._vet_check_type(ct)
        sid = service["ID"]
        self.config_services.pop(sid, None)     # the API's now (see __init__)
        for chk, _ in checks:
            self.config_checks.pop(chk["CheckID"], None)
        self.state.add_service(service, token)
        if self.files is not None:
            self.files.save_service(service, token)
        new_ids = {c["CheckID"] for c, _ in checks}
        if replace_existing_checks:
            for cid, chk in list(self.state.active_checks().items()):
                if chk.get("ServiceID") == sid and cid not in new_ids \
                        and cid != service_maint_id(sid):
                    self.remove_check(cid)
        for chk, ct in checks:
            self._add_check(chk, ct, token)

    def remove_service(self, service_id: str) -> None:
        """Deregister a service and its checks (NotFound if unknown)."""
        if self.state.service(service_id) is None:
            raise NotFound(f'Unknown service ID "{service_id}". Ensure that the service ID '
                           "is passed, not the service name.")
        for cid, chk in list(self.state.active_checks().items()):
            if chk.get("ServiceID") == service_id:
                self.remove_check(cid)
        self.state.remove_service(service_id)
        if self.files is not None:
            self.files.remove_service(service_id)

    # ------------------------------------------------------------------ checks
    def _vet_check_type(self, ct: dict | None) -> None:
        if ct and ct.get("Args") and not self.config.enable_script_checks:
            raise IsthmusError(SCRIPTS_DISABLED)

    def add_check(self, check: dict, chk_type: dict | None, token: str = "") -> None:
        """Register (or replace) a check; its ServiceID, if set, must be registered."""
        self._vet_check_type(chk_type)
        sid = check.get("ServiceID") or ""
        if sid and self.state.service(sid) is None:
            raise IsthmusError(f'ServiceID "{sid}" does not exist')
        self.config_checks.pop(check["CheckID"], None)
        self._add_check(check, chk_type, token)

    def _add_check(self, check: dict, chk_type: dict | None, token: str = "", *,
                   persist: bool = True, ttl_remaining: float | None = None) -> None:
        cid = check["CheckID"]
        self._stop_runner(cid)
        old = self.state.check(cid)
        chk = dict(check)
        if old is not None and old.chk_type == chk_type and not chk.get("Output"):
            # Re-registering the same check keeps its current result (Consul keeps the
            # runner's last status for an unchanged definition).
            chk["Status"], chk["Output"] = old.check["Status"], old.check.get("Output", "")
        loop = asyncio.get_running_loop()
        self.state.add_check(chk, chk_type, token, now=loop.time())
        if persist and self.files is not None:
            self.files.save_check(self.state.check(cid).check, chk_type, token)
        runner = make_runner(cid, chk_type or {}, self._on_result, self.min_check_interval)
        if runner is not None:
            self.runners[cid] = runner
            if isinstance(runner, TTLCheck):
                runner.last_output = chk.get("Output") or ""
                runner.start(ttl_remaining)
            else:
                runner.start()

    def _stop_runner(self, check_id: str) -> None:
        r = self.runners.pop(check_id, None)
        if r is not None:
            self._spawn(r.stop())
        t = self._timers.pop(check_id, None)
        if t is not None:
            t.cancel()

    def remove_check(self, check_id: str) -> None:
        if self.state.check(check_id) is None:
            raise NotFound(f'Unknown check ID "{check_id}". Ensure that the check ID is '
                           "passed, not the check name.")
        self._stop_runner(check_id)
        self.state.remove_check(check_id)
        if self.files is not None:
            self.files.remove_check(check_id)

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """/v1/agent/check/pass|warn|fail|update: set a TTL check's status."""
        if self.state.check(check_id) is None:
            raise NotFound(f'Unknown check ID "{check_id}". Ensure that the check ID is '
                           "passed, not the check name.")
        runner = self.runners.get(check_id)
        if not isinstance(runner, TTLCheck):
            raise IsthmusError(f'CheckID "{check_id}" does not have associated TTL')
        output = runner.set_status(status, output)
        if self.files is not None:
            self.files.save_check_state(check_id, status, output, time.time() + runner.ttl)

    def _on_result(self, check_id: str, status: str, output: str) -> None:
        loop = asyncio.get_running_loop()
        result = self.state.update_check(check_id, status, output, loop.time())
        if result == "deferred":
            def fire(cid: str = check_id) -> None:
                self._timers.pop(cid, None)
                self.state.undefer(cid)
            self._timers[check_id] = loop.call_later(self.state.check_update_interval, fire)
        if result != "unchanged":
            _log.debug("Check %r status is now %s", check_id, status)

    # ------------------------------------------------------------------ maintenance
    def enable_service_maintenance(self, service_id: str, reason: str) -> None:
        svc = self.state.service(service_id)
        if svc is None:
            raise NotFound(f'No service registered with ID "{service_id}"')
        cid = service_maint_id(service_id)
        if self.state.check(cid) is not None:
            return
        self._add_check({"CheckID": cid, "Name": "Service Maintenance Mode",
                         "Notes": reason or DEFAULT_SERVICE_REASON, "ServiceID": service_id,
                         "Status": CRITICAL, "Output": "", "Type": "maintenance",
                         "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}},
                        None)
        _log.info("Service entered maintenance mode: service=%s", service_id)

    def disable_service_maintenance(self, service_id: str) -> None:
        if self.state.service(service_id) is None:
            raise NotFound(f'No service registered with ID "{service_id}"')
        cid = service_maint_id(service_id)
        if self.state.check(cid) is not None:
            self.remove_check(cid)
            _log.info("Service left maintenance mode: service=%s", service_id)

    def enable_node_maintenance(self, reason: str) -> None:
        if self.state.check(NODE_MAINT_ID) is not None:
            return
        self._add_check({"CheckID": NODE_MAINT_ID, "Name": "Node Maintenance Mode",
                         "Notes": reason or DEFAULT_NODE_REASON, "ServiceID": "",
                         "Status": CRITICAL, "Output": "", "Type": "maintenance",
                         "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}},
                        None)
        _log.info("Node entered maintenance mode")

    def disable_node_maintenance(self) -> None:
        if self.state.check(NODE_MAINT_ID) is not None:
            self.remove_check(NODE_MAINT_ID)
            _log.info("Node left maintenance mode")

    # ------------------------------------------------------------------ reaping
    def reap_critical(self) -> list[str]:
        """Deregister services with a check critical for longer than its
        DeregisterCriticalServiceAfter (Consul's reapServicesInternal)."""
        now = asyncio.get_running_loop().time()
        reaped = []
        for cid, cs in list(self.state.checks.items()):
            if cs.deleted or not cs.chk_type:
                continue
            after = cs.chk_type.get("DeregisterCriticalServiceAfter") or 0
            sid = cs.check.get("ServiceID") or ""
            if not after or not sid or sid in reaped:
                continue
            if self.state.critical_for(cid, now) > after and self.state.service(sid):
                _log.info("Check %r for service %r has been critical for too long; "
                          "deregistered service", cid, sid)
                self.remove_service(sid)
                reaped.append(sid)
        return reaped

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                self.reap_critical()
            except Exception:                     # must not end the loop silently
                _log.exception("reaping critical services failed")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ views
    def services(self) -> dict[str, dict]:
        return copy.deepcopy(self.state.active_services())

    def checks(self) -> dict[str, dict]:
        return copy.deepcopy(self.state.active_checks())

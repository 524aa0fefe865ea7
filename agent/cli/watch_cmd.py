"""`isthmus watch` as Consul's command (command/watch and api/watch): a blocking-query loop
over one view of the data — key, keyprefix, services, nodes, service, checks or event.

Without a handler the current data is printed as indented JSON and the command exits;
with one, the handler runs now and after every change with the data as JSON on stdin and
CONSUL_INDEX in its environment (through $SHELL -c, default /bin/sh, unless -shell=false);
a handler that fails stops the watch with exit code 1. Query errors are retried with
Consul's backoff (5 s × failures², at most 180 s). Parameter errors are Consul's words.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Callable

from .api import APIClient, APIError
from .gossip_cmds import _parse
from .kv_cmds import _get_with_headers, _path

TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
STATES = ("any", "warning", "critical", "passing")
RETRY_INTERVAL = 5.0            # api/watch retryInterval
MAX_BACKOFF = 180.0             # api/watch maxBackoffTime

HELP = """Usage: isthmus watch [options] [child...]

  Watches for changes in a given data view from Isthmus. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type."""


class WatchError(Exception):
    """A watch specification Consul's watch.Parse refuses; the message is its wording."""


class QueryFailed(Exception):
    """One query of the loop failed (retried with backoff)."""


@dataclass
class Plan:
    """A parsed watch: what to query and how to turn the answer into the handler's data."""
    type: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    missing_ok: bool = False                 # 404 is an empty answer (a key not there yet)
    shape: Callable[[Any, int], Any] = lambda data, last: data
    check: Callable[[], None] = lambda: None  # a per-query check (Consul's api refusals)


def _take(params: dict, name: str, kind: type = str) -> Any:
    """Consul's assignValue / assignValueBool: consume one parameter of the given type."""
    if name not in params:
        return None
    value = params.pop(name)
    if not isinstance(value, kind):
        raise WatchError(f"Expecting {name} to be a {'boolean' if kind is bool else 'string'}")
    return value


def event_index(uuid: str) -> int:
    """Consul's Event.IDToIndex: the two halves of the UUID's hex XORed."""
    try:
        lower = int(uuid[0:8] + uuid[9:13] + uuid[14:18], 16)
        upper = int(uuid[19:23] + uuid[24:36], 16)
    except ValueError:
        return 0
    return lower ^ upper


def _tags_match(tags: list | None, wanted: list[str]) -> bool:
    have = set(tags or ())
    return all(t in have for t in wanted)


def parse(params: dict) -> Plan:
    """Consul's watch.Parse: the plan for `params` ({type, key, prefix, service, tag,
    passingonly, state, name, stale, datacenter, token}); WatchError with Consul's words."""
    params = dict(params)
    _take(params, "datacenter")
    _take(params, "token")
    kind = _take(params, "type") or ""
    if not kind:
        raise WatchError("Watch type must be specified")
    if kind not in TYPES:
        raise WatchError(f"Unsupported watch type: {kind}")
    stale = bool(_take(params, "stale", bool)) if kind != "event" else False
    base = [("stale", "")] if stale else []
    if kind == "key":
        key = _take(params, "key") or ""
        if not key:
            raise WatchError("Must specify a single key to watch")
        plan = Plan(kind, _path(key), base, missing_ok=True,
                    shape=lambda data, last: data[0] if data else None)
    elif kind == "keyprefix":
        prefix = _take(params, "prefix") or ""
        if not prefix:
            raise WatchError("Must specify a single prefix to watch")
        plan = Plan(kind, _path(prefix), base + [("recurse", "")], missing_ok=True)
    elif kind == "services":
        plan = Plan(kind, "/v1/catalog/services", base)
    elif kind == "nodes":
        plan = Plan(kind, "/v1/catalog/nodes", base)
    elif kind == "service":
        service = _take(params, "service") or ""
        if not service:
            raise WatchError("Must specify a single service to watch")
        tag = _take(params, "tag")
        passing = _take(params, "passingonly", bool)
        q = base + ([("tag", tag)] if tag else []) + ([("passing", "1")] if passing else [])
        plan = Plan(kind, "/v1/health/service/" + urllib.parse.quote(service, safe=""), q)
    elif kind == "checks":
        service = _take(params, "service") or ""
        state = _take(params, "state") or ""
        if service and state:
            raise WatchError("Cannot specify service and state")
        if not service and not state:
            state = "any"
        tag = _take(params, "tag")
        tags = [tag] if tag else []
        if state:
            def check() -> None:
                if state not in STATES:
                    raise QueryFailed(f"Unsupported state: {state}")
            # Consul's api sends tags as a filter on ServiceTags: the same, client side
            plan = Plan(kind, "/v1/health/state/" + urllib.parse.quote(state, safe=""), base,
                        shape=lambda data, last: [c for c in data or []
                                                  if _tags_match(c.get("ServiceTags"), tags)]
                        if tags else data,
                        check=check)
        else:
            plan = Plan(kind, "/v1/health/checks/" + urllib.parse.quote(service, safe=""), base)
    else:                                   # event: only the events since the last run
        name = _take(params, "name") or ""

        def new_events(data: Any, last: int) -> Any:
            events = data or []
            for i, ev in enumerate(events):
                if event_index(ev.get("ID", "")) == last:
                    return events[i + 1:]
            return events
        plan = Plan(kind, "/v1/event/list", [("name", name)] if name else [], shape=new_events)
    if params:
        raise WatchError(f"Invalid parameters: [{' '.join(sorted(params))}]")
    return plan


def _query(client: APIClient, plan: Plan, index: int) -> tuple[int, Any]:
    """One (blocking) query: (X-Consul-Index, the data before shaping)."""
    plan.check()
    q = dict(plan.params)
    if index:
        q["index"] = str(index)
    try:
        raw, headers = _get_with_headers(client, plan.path, q)
    except APIError as exc:
        raise QueryFailed(str(exc)) from None
    if not raw.strip() and not plan.missing_ok:
        raise QueryFailed("empty answer")
    try:
        new_index = int(headers.get("X-Consul-Index") or 0)
    except ValueError:
        raise QueryFailed("invalid X-Consul-Index") from None
    return new_index, json.loads(raw) if raw.strip() else None


def backoff(failures: int) -> float:
    """Consul's watch retry: 5 s × failures², at most 180 s."""
    return min(RETRY_INTERVAL * failures * failures, MAX_BACKOFF)


def _log_error(kind: str, err: str, retry: float) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    print(f"{stamp}Z [ERROR] watch: Watch errored: type={kind} error={json.dumps(err)} "
          f"retry={retry:g}s", file=sys.stderr, flush=True)


def _run_handler(args: list[str], shell: bool, index: int, data: Any) -> str | None:
    """Run the handler once with `data` on stdin; an error message, or None."""
    stdin = (json.dumps(data, separators=(",", ":")) + "\n").encode()   # json.Encoder's form
    env = {**os.environ, "CONSUL_INDEX": str(index)}
    cmd = [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(args)] if shell else args
    try:
        proc = subprocess.run(cmd, input=stdin, env=env)
    except OSError as exc:
        return str(exc)
    if proc.returncode != 0:
        return f"exit status {proc.returncode}"
    return None


def watch(argv: list[str]) -> int:
    """`isthmus watch -type=T [type flags] [handler...]` (see the module docstring)."""
    def flags(fs) -> None:
        fs.add("type", default="", usage="Specifies the watch type. One of key, keyprefix, "
               "services, nodes, service, checks, or event.")
        fs.add("key", default="", usage="Specifies the key to watch. Only for 'key' type.")
        fs.add("prefix", default="", usage="Specifies the key prefix to watch. Only for "
               "'keyprefix' type.")
        fs.add("service", default="", usage="Specifies the service to watch. Required for "
               "'service' type, optional for 'checks' type.")
        fs.add("tag", default="", usage="Specifies the service tag to filter on. Optional for "
               "'service' type.")
        fs.add("passingonly", default="", usage="Specifies if only hosts passing all checks "
               "are displayed. Optional for 'service' type, must be one of `[true|false]`. "
               "Defaults false.")
        fs.add("state", default="", usage="Specifies the states to watch. Optional for "
               "'checks' type.")
        fs.add("name", default="", usage="Specifies an event name to watch. Only for 'event' "
               "type.")
        fs.add("shell", "bool", True, usage="Use a shell to run the command (can set a custom "
               "shell via the SHELL environment variable).")
    got = _parse("watch", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if not opts["type"]:
        print(f"Watch type must be specified\n\n{HELP}", file=sys.stderr)
        return 1
    params: dict[str, Any] = {"type": opts["type"]}
    for name, key in (("datacenter", "datacenter"), ("token", "token"), ("key", "key"),
                      ("prefix", "prefix"), ("service", "service"), ("tag", "tag"),
                      ("state", "state"), ("name", "name")):
        if opts.get(name):
            params[key] = opts[name]
    if opts.get("stale"):
        params["stale"] = True
    if opts["passingonly"]:
        b = _parse_bool(opts["passingonly"])
        if b is None:
            print(f'Failed to parse passingonly flag: strconv.ParseBool: parsing '
                  f'{json.dumps(opts["passingonly"])}: invalid syntax', file=sys.stderr)
            return 1
        params["passingonly"] = b
    try:
        plan = parse(params)
    except WatchError as exc:
        print(exc, file=sys.stderr)
        return 1
    client = APIClient(opts, timeout=700.0)   # a blocking query waits up to 10 min + jitter
    try:
        client.request("GET", "/v1/agent/self")
    except APIError as exc:
        print(f"Error querying Isthmus agent: {exc}", file=sys.stderr)
        return 1

    last_index: int | None = None
    last_result: Any = None
    failures = 0
    while True:
        try:
            index, data = _query(client, plan, last_index or 0)
        except QueryFailed as exc:
            failures += 1
            last_index = None
            retry = backoff(failures)
            _log_error(plan.type, str(exc), retry)
            time.sleep(retry)
            continue
        failures = 0
        if last_index is not None and last_index == index:
            continue                            # woke without a change
        previous, last_index = last_index, index
        result = plan.shape(data, previous or 0)
        if previous is not None and result == last_result:
            continue
        last_result = result
        if not args:
            print(json.dumps(result, indent=4))
            return 0
        err = _run_handler(args, opts["shell"], index, result)
        if err is not None:
            print(f"Error executing handler: {err}", file=sys.stderr)
            return 1


def _parse_bool(s: str) -> bool | None:
    """Go's strconv.ParseBool."""
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None

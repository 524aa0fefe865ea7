"""`kv get | put | delete | export | import` as Consul's commands (output, messages and exit
codes); export/import use Consul's JSON format ([{"key", "flags", "value" (base64)}])."""
from __future__ import annotations

import base64
import json
import os
import sys
import urllib.parse
from typing import Iterator

from .api import APIClient, APIError
from .gossip_cmds import _parse
from .table import columnize

# ---------------------------------------------------------------------- kv

KV_USAGE = """Usage: isthmus kv <subcommand> [options] [args]

Subcommands:
    delete    Removes data from the KV store
    export    Exports a tree from the KV store as JSON
    get       Retrieves or lists data from the KV store
    import    Imports a tree stored as JSON to the KV store
    put       Sets or updates data in the KV store"""


def kv(argv: list[str]) -> int:
    sub = argv[0] if argv else ""
    fn = {"get": _kv_get, "put": _kv_put, "delete": _kv_delete, "export": _kv_export,
          "import": _kv_import}.get(sub)
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


def _kv_export(argv: list[str]) -> int:
    got = _parse("kv export", argv, lambda fs: None)
    if isinstance(got, int):
        return got
    opts, args = got
    if len(args) > 1:
        print(f"Too many arguments (expected 1, got {len(args)})", file=sys.stderr)
        return 1
    prefix = args[0] if args else ""
    try:
        ents = APIClient(opts).request("GET", _path(prefix), {"recurse": ""})
    except APIError as exc:
        if exc.status != 404:
            print(f"Error querying Isthmus agent: {exc}", file=sys.stderr)
            return 1
        ents = []
    out = [{"key": e["Key"], "flags": e["Flags"], "value": e.get("Value") or ""}
           for e in sorted(ents or [], key=lambda e: e["Key"])]
    print(json.dumps(out, indent="\t"))
    return 0


def _import_data(arg: str) -> str:
    """Consul's dataFromArgs: @file, - (stdin) or the JSON itself; a plain existing file
    name is read too."""
    if not arg:
        raise ValueError("Empty DATA argument")
    if arg.startswith("@"):
        with open(arg[1:], encoding="utf-8") as f:
            return f.read()
    if arg == "-":
        return sys.stdin.read()
    if not arg.lstrip().startswith("[") and os.path.isfile(arg):
        with open(arg, encoding="utf-8") as f:
            return f.read()
    return arg


def _kv_import(argv: list[str]) -> int:
    def flags(fs) -> None:
        fs.add("prefix", default="", usage="Key prefix for imported data.")
    got = _parse("kv import", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if not args:
        print("Error! Missing DATA argument", file=sys.stderr)
        return 1
    if len(args) > 1:
        print(f"Too many arguments (expected 1, got {len(args)})", file=sys.stderr)
        return 1
    try:
        entries = json.loads(_import_data(args[0]))
    except (OSError, ValueError) as exc:
        print(f"Error! {exc}" if isinstance(exc, OSError) else f"Cannot unmarshal data: {exc}",
              file=sys.stderr)
        return 1
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        print("Cannot unmarshal data: expected a JSON array of objects", file=sys.stderr)
        return 1
    client = APIClient(opts)
    for e in entries:
        key = opts["prefix"] + str(e.get("key", ""))
        try:
            value = base64.b64decode(e.get("value") or "", validate=True)
        except ValueError as exc:
            print(f"Error base 64 decoding value for key {e.get('key')}: {exc}", file=sys.stderr)
            return 1
        params = {"flags": str(e.get("flags") or 0)} if e.get("flags") else {}
        try:
            client.raw_request("PUT", _path(key), params, value)
        except APIError as exc:
            print(f"Error! Failed writing data for key {key}: {exc}", file=sys.stderr)
            return 1
        print(f"Imported: {key}")
    return 0


# ---------------------------------------------------------------------- lock

LOCK_FLAG_VALUE = 0x2ddccbc058a50c18       # Consul's api.LockFlagValue
SEMAPHORE_FLAG_VALUE = 0xe0f69a2baa414de0  # api.SemaphoreFlagValue
LOCK_KEY = ".lock"                         # api.DefaultSemaphoreKey (the lock uses it too)
LOCK_SESSION_TTL = "15s"                   # api.DefaultLockSessionTTL / DefaultSemaphoreSessionTTL
LOCK_SESSION_RENEW = 7.5                   # seconds: RenewPeriodic renews at TTL/2
LOCK_WAIT = 15.0                           # api.DefaultLockWaitTime / DefaultSemaphoreWaitTime
LOCK_RETRY = 5.0                           # api.DefaultLockRetryTime (a lock delay is in effect)
LOCK_KILL_GRACE = 5.0                      # lockKillGracePeriod: SIGTERM, then SIGKILL
MONITOR_RETRY_TIME = 1.0                   # defaultMonitorRetryTime
LOCK_CONFLICT = "Existing key does not match lock use"          # api.ErrLockConflict
LOCK_IN_USE = "Lock in use"                                      # api.ErrLockInUse
SEMAPHORE_CONFLICT = "Existing key does not match semaphore use"  # api.ErrSemaphoreConflict
SEMAPHORE_IN_USE = "Semaphore in use"                            # api.ErrSemaphoreInUse


class _LockFailed(Exception):
    """A lock or semaphore step failed; the message is Consul's."""


class _Shutdown(BaseException):
    """SIGINT/SIGTERM while waiting to acquire."""


def _join(*parts: str) -> str:
    """Go's path.Join: slash-joined, cleaned (no empty, "." or trailing segments)."""
    import posixpath
    joined = posixpath.normpath("/".join(p for p in parts if p))
    return "" if joined == "." else joined


class _Holder:
    """What a lock and a semaphore share (Consul's api.Lock / api.Semaphore): a session
    renewed at TTL/2 (and destroyed when let go), and blocking reads of the KV store."""

    behavior = "release"
    in_use = LOCK_IN_USE

    def __init__(self, client: APIClient, name: str, verbose: bool) -> None:
        import threading
        self.client, self.name, self.verbose = client, name, verbose
        self.session = ""
        self._renewing = threading.Event()

    def _create_session(self) -> None:
        import threading
        try:
            self.session = self.client.request("PUT", "/v1/session/create", body={
                "Name": self.name, "TTL": LOCK_SESSION_TTL, "Behavior": self.behavior})["ID"]
        except APIError as exc:
            raise _LockFailed(f"failed to create session: {exc}") from None
        stop, sid = self._renewing, self.session

        def renew() -> None:
            while not stop.wait(LOCK_SESSION_RENEW):
                try:
                    self.client.request("PUT", f"/v1/session/renew/{sid}")
                except APIError as exc:
                    if exc.status == 404:       # gone: the monitor notices the loss
                        return
        threading.Thread(target=renew, daemon=True).start()

    def end_session(self) -> None:
        """Stop renewing and destroy the session (RenewPeriodic's doneCh)."""
        self._renewing.set()
        if self.session:
            try:
                self.client.request("PUT", f"/v1/session/destroy/{self.session}")
            except APIError:
                pass

    def _read(self, path: str, params: dict) -> tuple[list, int]:
        """A (blocking) KV read: entries (none for a 404) and X-Consul-Index."""
        raw, headers = _get_with_headers(self.client, path, params)
        return (json.loads(raw) if raw.strip() else []), int(headers.get("X-Consul-Index") or 0)

    def _delete_unchanged(self, key: str, pair: dict) -> str | None:
        """Delete `key` if it is still `pair` (check-and-set): None, else `in_use`."""
        removed = self.client.raw_request("DELETE", _path(key), {"cas": str(pair["ModifyIndex"])})
        return None if json.loads(removed or b"false") else self.in_use

    def _put(self, key: str, params: dict, value: bytes = b"") -> bool:
        return bool(json.loads(self.client.raw_request("PUT", _path(key), params, value)
                               or b"false"))

    def monitor(self, lost, retries: int) -> None:
        """Consul's monitorLock: consistent blocking reads until we no longer hold it
        (or the agent keeps failing with 500s past `retries`); then set `lost`."""
        import time
        index = 0
        left = retries
        while True:
            try:
                held, index = self._still_held(index)
            except APIError as exc:
                if exc.status == 500 and left > 0:
                    left -= 1
                    time.sleep(MONITOR_RETRY_TIME)
                    continue
                break
            except _LockFailed:
                break
            if not held:
                break
            left = retries
        lost.set()

    @staticmethod
    def _attempt_waits(deadline: float | None) -> Iterator[float]:
        """How long each acquire attempt's blocking read may wait: LOCK_WAIT, and after the
        first attempt what is left of the -timeout (`deadline`); no more once that ran out."""
        import time
        yield LOCK_WAIT
        while True:
            left = LOCK_WAIT if deadline is None else deadline - time.monotonic()
            if left < 0:
                return
            yield left

    def _wait_params(self, index: int, wait: float) -> dict:
        params = {"wait": f"{max(wait, 0.001):.3f}s"}
        if index:
            params["index"] = str(index)
        return params

    def _still_held(self, index: int) -> tuple[bool, int]:
        raise NotImplementedError


class _Lock(_Holder):
    """Consul's api.Lock on `key`: one holder."""

    def __init__(self, client: APIClient, key: str, name: str, verbose: bool) -> None:
        super().__init__(client, name, verbose)
        self.key = key

    def acquire(self, deadline: float | None) -> bool:
        """True once held; False when the -timeout ran out (Lock with LockTryOnce)."""
        import time
        self._create_session()
        index = 0
        for wait in self._attempt_waits(deadline):
            try:
                pairs, meta_index = self._read(_path(self.key), self._wait_params(index, wait))
            except APIError as exc:
                raise _LockFailed(f"failed to read lock: {exc}") from None
            pair = pairs[0] if pairs else None
            if pair is not None and pair.get("Flags") != LOCK_FLAG_VALUE:
                raise _LockFailed(LOCK_CONFLICT)
            if pair is not None and pair.get("Session") == self.session:
                return True
            if pair is not None and pair.get("Session"):
                index = meta_index              # held by another: wait for a change
                continue
            try:
                if self._put(self.key, {"acquire": self.session, "flags": str(LOCK_FLAG_VALUE)}):
                    return True
            except APIError as exc:
                raise _LockFailed(f"failed to acquire lock: {exc}") from None
            # not acquired: someone beat us to it (wait on it), or a lock delay (retry later)
            try:
                pairs, meta_index = self._read(_path(self.key), {})
            except APIError as exc:
                raise _LockFailed(f"failed to read lock: {exc}") from None
            if pairs and pairs[0].get("Session"):
                index = meta_index
            else:
                index = 0
                time.sleep(LOCK_RETRY)
        return False

    def _still_held(self, index: int) -> tuple[bool, int]:
        params = {"consistent": "", **self._wait_params(index, 300.0)}
        pairs, index = self._read(_path(self.key), params)
        return bool(pairs) and pairs[0].get("Session") == self.session, index

    def release(self) -> None:
        """Consul's Lock.Unlock: release the key (if we still hold it), end the session."""
        try:
            self._put(self.key, {"release": self.session, "flags": str(LOCK_FLAG_VALUE)})
        finally:
            self.end_session()

    def cleanup(self) -> str | None:
        """Consul's Lock.Destroy: delete the key when no one holds it. None when done (or
        nothing to do), `in_use` when someone holds it."""
        pairs, _ = self._read(_path(self.key), {})
        if not pairs:
            return None
        if pairs[0].get("Flags") != LOCK_FLAG_VALUE:
            raise _LockFailed(LOCK_CONFLICT)
        if pairs[0].get("Session"):
            return self.in_use
        return self._delete_unchanged(self.key, pairs[0])


class _Semaphore(_Holder):
    """Consul's api.Semaphore at `prefix`: up to `limit` holders. `<prefix>/.lock` holds
    {"Limit": N, "Holders": {session: true}} (changed only by check-and-set); each
    contender holds `<prefix>/<session>` with its session, so a holder whose session dies
    is pruned by the others."""

    behavior = "delete"
    in_use = SEMAPHORE_IN_USE

    def __init__(self, client: APIClient, prefix: str, limit: int, name: str,
                 verbose: bool) -> None:
        super().__init__(client, name, verbose)
        self.prefix, self.limit = prefix, limit
        self.lock_key = _join(prefix, LOCK_KEY)

    def _find_lock(self, pairs: list) -> dict:
        for p in pairs:
            if p.get("Key") == self.lock_key:
                return p
        return {"Flags": SEMAPHORE_FLAG_VALUE, "Value": None, "ModifyIndex": 0}

    def _decode(self, pair: dict) -> dict:
        """{"Limit", "Holders"} of the lock entry (Go decodes field names case-insensitively)."""
        if pair.get("Value") is None:
            return {"Limit": self.limit, "Holders": {}}
        try:
            raw = json.loads(base64.b64decode(pair["Value"]))
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            fields = {k.lower(): v for k, v in raw.items()}
            limit, holders = fields.get("limit", 0), fields.get("holders") or {}
            if type(limit) is not int or not isinstance(holders, dict):
                raise ValueError("wrong field types")
        except ValueError as exc:
            raise _LockFailed(f"lock decoding failed: {exc}") from None
        return {"Limit": limit, "Holders": {k: bool(v) for k, v in holders.items()}}

    @staticmethod
    def _encode(lock: dict) -> bytes:
        holders = {k: lock["Holders"][k] for k in sorted(lock["Holders"])}
        return json.dumps({"Limit": lock["Limit"], "Holders": holders},
                          separators=(",", ":")).encode()

    @staticmethod
    def _prune(lock: dict, pairs: list) -> None:
        """Drop holders whose session holds no key under the prefix (it died)."""
        alive = {p["Session"] for p in pairs if p.get("Session")}
        for holder in [h for h in lock["Holders"] if h not in alive]:
            del lock["Holders"][holder]

    def _cas(self, lock: dict, modify_index: int) -> bool:
        return self._put(self.lock_key, {"cas": str(modify_index),
                                         "flags": str(SEMAPHORE_FLAG_VALUE)}, self._encode(lock))

    def acquire(self, deadline: float | None) -> bool:
        """True once we are among the holders; False when the -timeout ran out."""
        self._create_session()
        contender = _join(self.prefix, self.session)
        try:
            made = self._put(contender, {"acquire": self.session,
                                         "flags": str(SEMAPHORE_FLAG_VALUE)})
        except APIError as exc:
            raise _LockFailed(f"failed to make contender entry: {exc}") from None
        if not made:
            raise _LockFailed("failed to make contender entry: <nil>")
        index = 0
        for wait in self._attempt_waits(deadline):
            try:
                pairs, meta_index = self._read(_path(self.prefix),
                                               {"recurse": "", **self._wait_params(index, wait)})
            except APIError as exc:
                raise _LockFailed(f"failed to read prefix: {exc}") from None
            pair = self._find_lock(pairs)
            if pair.get("Flags") != SEMAPHORE_FLAG_VALUE:
                raise _LockFailed(SEMAPHORE_CONFLICT)
            lock = self._decode(pair)
            if lock["Limit"] != self.limit:
                raise _LockFailed(f"semaphore limit conflict (lock: {lock['Limit']}, "
                                  f"local: {self.limit})")
            self._prune(lock, pairs)
            if len(lock["Holders"]) >= lock["Limit"]:
                index = meta_index              # full: wait for a change under the prefix
                continue
            lock["Holders"][self.session] = True
            try:
                if self._cas(lock, pair.get("ModifyIndex") or 0):
                    return True
            except APIError as exc:
                raise _LockFailed(f"failed to update lock: {exc}") from None
            # lost a race with another contender: read again (the index has moved)
        return False

    def _still_held(self, index: int) -> tuple[bool, int]:
        params = {"recurse": "", "consistent": "", **self._wait_params(index, 300.0)}
        pairs, index = self._read(_path(self.prefix), params)
        lock = self._decode(self._find_lock(pairs))
        self._prune(lock, pairs)
        return self.session in lock["Holders"], index

    def release(self) -> None:
        """Consul's Semaphore.Release: take us out of the holders (check-and-set, retried
        on a race), delete our contender key, end the session."""
        try:
            while True:
                pairs, _ = self._read(_path(self.lock_key), {})
                pair = pairs[0] if pairs else {}
                lock = self._decode(pair)
                if self.session not in lock["Holders"]:
                    break
                del lock["Holders"][self.session]
                try:
                    if self._cas(lock, pair.get("ModifyIndex") or 0):
                        break
                except APIError as exc:
                    raise _LockFailed(f"failed to update lock: {exc}") from None
            self.client.raw_request("DELETE", _path(_join(self.prefix, self.session)))
        finally:
            self.end_session()

    def cleanup(self) -> str | None:
        """Consul's Semaphore.Destroy: delete the lock entry when no live holder is left.
        None when done (or nothing to do), `in_use` when someone still holds it."""
        pairs, _ = self._read(_path(self.prefix), {"recurse": ""})
        pair = self._find_lock(pairs)
        if not pair.get("ModifyIndex"):
            return None
        if pair.get("Flags") != SEMAPHORE_FLAG_VALUE:
            raise _LockFailed(SEMAPHORE_CONFLICT)
        lock = self._decode(pair)
        self._prune(lock, pairs)
        if lock["Holders"]:
            return self.in_use
        return self._delete_unchanged(self.lock_key, pair)


def lock(argv: list[str]) -> int:
    """`isthmus lock [options] prefix child...` as Consul's lock command: with -n=1 hold the
    lock <prefix>/.lock (api.Lock), with -n>1 one of N slots of the semaphore at <prefix>
    (api.Semaphore); run the child (CONSUL_LOCK_HELD=true in its environment) while held;
    if the lock is lost, or on SIGINT/SIGTERM, stop the child (SIGTERM, SIGKILL after 5 s);
    then let go and clean up."""
    import signal
    import threading
    import time

    def flags(fs) -> None:
        fs.add("n", "int", 1, usage="Optional limit on the number of concurrent lock holders. "
               "The underlying implementation switches from a lock to a semaphore when the "
               "value is greater than 1.")
        fs.add("name", default="", usage="Optional name to associate with the lock session. "
               "If not provided, one is generated based on the provided child command.")
        fs.add("shell", "bool", True, usage="Use a shell to run the command (can set a custom "
               "shell via the SHELL environment variable).")
        fs.add("pass-stdin", "bool", usage="Pass stdin to the child process.")
        fs.add("timeout", default="0s", usage="Maximum amount of time to wait to acquire the "
               "lock, specified as a duration like \"1s\" or \"3h\".")
        fs.add("try", default="", usage="DEPRECATED. Use -timeout instead.")
        fs.add("monitor-retry", "int", 3, usage="Number of times to retry if the agent returns "
               "a 500 error while monitoring the lock (1s between retries; 0 disables).")
        fs.add("child-exit-code", "bool", usage="Exit 2 if the child process exited with an "
               "error if this is true, otherwise this doesn't propagate an error from the child.")
        fs.add("verbose", "bool", usage="Enable verbose (debugging) output.")
    got = _parse("lock", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    verbose = opts["verbose"]

    def info(text: str) -> None:
        if verbose:
            print(text, flush=True)

    def error(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    limit = opts["n"]
    if limit <= 0:
        error("Lock holder limit must be positive")
        return 1
    if len(args) < 2:
        error("Key prefix and child command must be specified")
        return 1
    from ..config.load import parse_go_duration
    try:
        timeout = parse_go_duration(opts["try"] or opts["timeout"])
    except ValueError as exc:
        error(f"Error parsing -timeout: {exc}")
        return 1
    if timeout < 0:
        error("Timeout must be positive")
        return 1
    if opts["monitor-retry"] < 0:
        error("Number for 'monitor-retry' must be >= 0")
        return 1
    prefix = args[0][1:] if args[0].startswith("/") else args[0]
    child = args[1:]
    name = opts["name"] or f"Consul lock for '{' '.join(child)}' at '{prefix}'"
    client = APIClient(opts, timeout=600.0)
    try:
        client.request("GET", "/v1/agent/self")
    except APIError as exc:
        error(f"Error querying Consul agent: {exc}")
        return 1
    holder: _Lock | _Semaphore
    if limit == 1:
        key = _join(prefix, LOCK_KEY)
        info(f"Setting up lock at path: {key}")
        holder = _Lock(client, key, name, verbose)
    else:
        info(f"Setting up semaphore (limit {limit}) at prefix: {prefix}")
        holder = _Semaphore(client, prefix, limit, name, verbose)

    shutdown = threading.Event()
    interruptible = [True]                  # while acquiring, a signal aborts the wait

    def on_signal(signum, frame) -> None:
        shutdown.set()
        if interruptible[0]:
            raise _Shutdown()
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        info("Attempting lock acquisition")
        deadline = time.monotonic() + timeout if timeout > 0 else None
        try:
            try:
                held = holder.acquire(deadline)
            finally:
                interruptible[0] = False        # from here on a signal only sets `shutdown`
        except _LockFailed as exc:
            holder.end_session()
            error(f"Lock acquisition failed: {exc}")
            return 1
        except (_Shutdown, APIError) as exc:
            holder.end_session()
            if isinstance(exc, APIError):
                error(f"Lock acquisition failed: {exc}")
            else:
                error("Shutdown triggered or timeout during lock acquisition")
            return 1
        if not held:
            holder.end_session()
            error("Shutdown triggered or timeout during lock acquisition")
            return 1
        child_code = 0
        if shutdown.is_set():
            error("Shutdown triggered during lock acquisition")
        else:
            lost = threading.Event()
            threading.Thread(target=holder.monitor, args=(lost, opts["monitor-retry"]),
                             daemon=True).start()
            child_code = _run_child(child, opts, lost, shutdown, info, error)
        try:
            holder.release()
        except (APIError, _LockFailed) as exc:
            error(f"Lock release failed: {exc}")
            return 1
        try:
            in_use = holder.cleanup()
        except (APIError, _LockFailed) as exc:
            error(f"Lock cleanup failed: {exc}")
            return 1
        info("Cleanup aborted, lock in use" if in_use else "Cleanup succeeded")
        return child_code if opts["child-exit-code"] else 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _run_child(child: list[str], opts: dict, lost, shutdown, info, error) -> int:
    """Run the child until it exits (2 if it failed, else 0), or until the lock is lost or
    a signal comes (then SIGTERM, and SIGKILL after the grace period; 0)."""
    import os
    import subprocess
    info("Starting handler")
    if opts["shell"]:
        cmd = [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(child)]
    else:
        cmd = child
    try:
        proc = subprocess.Popen(cmd, env={**os.environ, "CONSUL_LOCK_HELD": "true"},
                                stdin=None if opts["pass-stdin"] else subprocess.DEVNULL)
    except OSError as exc:
        error(f"Error executing handler: {exc}")
        return 2
    while True:
        try:
            code = proc.wait(0.1)
        except subprocess.TimeoutExpired:
            if lost.is_set() or shutdown.is_set():
                break
            continue
        if code != 0:
            error(f"Error running handler: exit status {code}" if code > 0
                  else f"Error running handler: signal: {-code}")
        info("Child terminated, releasing lock")
        return 2 if code != 0 else 0
    info("Lock lost, killing child" if lost.is_set() else "Shutdown triggered, killing child")
    info(f"Terminating child pid {proc.pid}")
    proc.terminate()
    try:
        proc.wait(LOCK_KILL_GRACE)
        info("Child terminated")
    except subprocess.TimeoutExpired:
        info(f"Child did not exit after grace period of {LOCK_KILL_GRACE:g}s")
        info(f"Killing child pid {proc.pid}")
        proc.kill()
        proc.wait()
    return 0


# ---------------------------------------------------------------------- blocking GET

def _get_with_headers(client: APIClient, path: str, params: dict) -> tuple[bytes, dict]:
    """GET returning the body and headers; 404 is an empty answer (a key not there yet).
    Used by `watch` (watch_cmd.py)."""
    import urllib.error
    import urllib.request
    q = dict(params)
    if client.datacenter:
        q.setdefault("dc", client.datacenter)
    url = client.base + path + ("?" + urllib.parse.urlencode(q) if q else "")
    req = urllib.request.Request(url, method="GET")
    if client.token:
        req.add_header("X-Consul-Token", client.token)
    try:
        with urllib.request.urlopen(req, timeout=client.timeout, context=client._ssl) as resp:
            return resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return b"", dict(exc.headers)
        text = exc.read().decode(errors="replace").strip()
        raise APIError(f"Unexpected response code: {exc.code} ({text})", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        raise APIError(f"Get \"{url}\": {getattr(exc, 'reason', exc)}") from None


# ---------------------------------------------------------------------- event

def event(argv: list[str]) -> int:
    """`isthmus event -name=N [-node=RE] [-service=RE] [-tag=RE] [payload]`."""
    def flags(fs) -> None:
        fs.add("name", default="", usage="Name of the event.")
        fs.add("node", default="", usage="Regular expression to filter on node names.")
        fs.add("service", default="", usage="Regular expression to filter on service instances.")
        fs.add("tag", default="", usage="Regular expression to filter on service tags. Must be "
               "used with -service.")
    got = _parse("event", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if not opts["name"]:
        print("Event name must be specified", file=sys.stderr)
        return 1
    if opts["tag"] and not opts["service"]:
        print("Cannot provide tag filter without service filter.", file=sys.stderr)
        return 1
    if len(args) > 1:
        print("Too many command line arguments.", file=sys.stderr)
        return 1
    payload = args[0].encode() if args else b""
    params = {k: opts[k] for k in ("node", "service", "tag") if opts[k]}
    try:
        raw = APIClient(opts).raw_request("PUT", "/v1/event/fire/" + urllib.parse.quote(opts["name"]),
                                          params, payload)
        ev = json.loads(raw)
    except APIError as exc:
        print(f"Error firing event: {exc}", file=sys.stderr)
        return 1
    print(f"Event ID: {ev['ID']}")
    return 0

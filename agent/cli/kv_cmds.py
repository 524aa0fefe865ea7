"""`kv get | put | delete | export | import` as Consul's commands (output, messages and exit
codes); export/import use Consul's JSON format ([{"key", "flags", "value" (base64)}])."""
from __future__ import annotations

import base64
import json
import os
import sys
import urllib.parse

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

LOCK_FLAG_VALUE = 0x2ddccbc058a50c18     # Consul's api.LockFlagValue
LOCK_SESSION_TTL = "15s"                 # api.DefaultLockSessionTTL
LOCK_RETRY = 5.0                         # api.DefaultLockRetryTime (seconds)


def lock(argv: list[str]) -> int:
    """`isthmus lock [options] prefix child...`: hold the lock <prefix>/.lock (a session and
    an acquire, as Consul's api.Lock) while the child runs, then release it. Only -n=1."""
    import subprocess
    import threading
    import time

    def flags(fs) -> None:
        fs.add("n", "int", 1, usage="Optional limit on the number of concurrent lock holders. "
               "Only 1 (a lock, not a semaphore) is supported.")
        fs.add("name", default="", usage="Optional name to associate with the lock session.")
        fs.add("shell", "bool", True, usage="Use a shell to run the command.")
        fs.add("timeout", default="0s", usage="Maximum amount of time to wait to acquire the lock.")
        fs.add("child-exit-code", "bool", usage="Exit 2 if the child process exited with an "
               "error if this is true, otherwise this doesn't propagate an error from the child.")
        fs.add("verbose", "bool", usage="Enable verbose (debugging) output.")
    got = _parse("lock", argv, flags)
    if isinstance(got, int):
        return got
    opts, args = got
    if len(args) < 2:
        print("Key prefix and child command must be specified", file=sys.stderr)
        return 1
    if opts["n"] != 1:
        print("Semaphores (-n > 1) are not supported", file=sys.stderr)
        return 1
    from ..config.load import parse_go_duration
    try:
        timeout = parse_go_duration(opts["timeout"])
    except ValueError as exc:
        print(f"Error parsing -timeout: {exc}", file=sys.stderr)
        return 1
    prefix, child = args[0].rstrip("/"), args[1:]
    key = prefix + "/.lock"
    verbose = opts["verbose"]
    client = APIClient(opts, timeout=600.0)
    try:
        sid = client.request("PUT", "/v1/session/create", body={
            "Name": opts["name"] or f"Consul lock for {child[0]} at {prefix}",
            "TTL": LOCK_SESSION_TTL, "Behavior": "release"})["ID"]
    except APIError as exc:
        print(f"Lock acquisition failed: failed to create session: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def renew() -> None:              # keep the session alive at TTL/2
        while not stop.wait(7.5):
            try:
                client.request("PUT", f"/v1/session/renew/{sid}")
            except APIError:
                return
    threading.Thread(target=renew, daemon=True).start()
    deadline = time.monotonic() + timeout if timeout > 0 else None
    try:
        index = "0"
        while True:
            params = {"acquire": sid, "flags": str(LOCK_FLAG_VALUE)}
            ok = json.loads(client.raw_request("PUT", _path(key), params, b"") or b"false")
            if ok:
                break
            if deadline is not None and time.monotonic() >= deadline:
                print("Shutdown triggered or timeout during lock acquisition", file=sys.stderr)
                return 1
            # wait for the holder to let go (or a lock delay to pass), then retry
            wait = LOCK_RETRY if deadline is None else max(0.1, min(LOCK_RETRY, deadline - time.monotonic()))
            try:
                raw = client.raw_request("GET", _path(key), {"index": index, "wait": f"{wait:.1f}s"})
                ents = json.loads(raw or b"[]")
                if ents and not ents[0].get("Session"):
                    time.sleep(0.2)
            except APIError:
                time.sleep(min(wait, 1.0))
        if verbose:
            print(f"Lock acquisition succeeded at {key}")
        cmd = " ".join(child) if opts["shell"] else child
        code = subprocess.call(cmd, shell=opts["shell"])
        if verbose:
            print(f"Child exited with code {code}")
        return code if opts["child-exit-code"] else (0 if code == 0 else 2)
    except KeyboardInterrupt:
        return 130
    finally:
        stop.set()
        try:
            client.raw_request("PUT", _path(key), {"release": sid}, b"")
        except APIError:
            pass
        try:
            client.request("PUT", f"/v1/session/destroy/{sid}")
        except APIError:
            pass


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

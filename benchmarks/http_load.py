"""The one HTTP client of bench_http.py, in its own process: aiohttp ClientSession on uvloop.

  python -m benchmarks.http_load SPEC_JSON       # prints one JSON result line
SPEC "mode":
  rate   `conc` keep-alive connections, each sending its request again as soon as the previous
         reply is read (worker i sends requests[i % len]), for `warmup` + `duration` seconds.
         Counted: replies read between the end of the warmup and the end (so the CPU window
         matches; a reply's latency is from its request's start). Result: rate (replies/s), p50/p99 latency (ms), errors, and over the counted window
         the server's CPU (% of one core and µs per reply) and ours, every thread counted, from
         /proc/<pid>/task/*/schedstat (ns; /proc/<pid>/stat counts 10 ms ticks).
  watch  `watchers` connections each GET `path`?index=`index`&wait=`wait`; once every request
         is written, the server holds `watchers` more sockets than before (accepted, not just in
         its accept queue) and has used under 2 % of a core over `settle` s, the `trigger`
         request is sent on an already open connection. Result:
         time from sending the trigger until its reply, until the first and until the last
         watcher is answered (ms), p50 of the watchers' answer times, the server's and our CPU
         time (ms) over that span, errors.
A reply counts as an error unless its status is `expect` (watch: 200, and with
`new_index` an X-Consul-Index different from `index`).
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

import aiohttp

clock = time.perf_counter
QUIET = 0.02        # "still": under 2 % of a core over the settle window


def pct(sorted_s: list[float], p: float) -> float:
    if not sorted_s:
        return float("nan")
    return sorted_s[min(len(sorted_s) - 1, int(p / 100 * len(sorted_s)))] * 1e3


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))


def run_ns(pid: int) -> int:
    """ns on CPU so far, every thread of `pid` (/proc/<pid>/task/*/schedstat; ticks are 10 ms)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def socket_count(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


async def rate(spec: dict) -> dict:
    base, conc, pid = spec["base"], spec["conc"], spec["pid"]
    reqs = [(m, base + p, b.encode() if b is not None else None) for m, p, b in spec["requests"]]
    expect = spec.get("expect", 200)
    lats: list[float] = []
    errors = 0
    t0 = clock()
    t_warm = t0 + spec["warmup"]
    end = t_warm + spec["duration"]
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            method, url, body = reqs[i % len(reqs)]
            while True:
                t = clock()
                if t >= end:
                    return
                async with session.request(method, url, data=body) as r:
                    await r.read()
                    ok = r.status == expect
                t2 = clock()
                if t_warm <= t2 <= end:
                    if ok:
                        lats.append(t2 - t)
                    else:
                        errors += 1

        async def meter() -> tuple[float, float, float, float]:
            await asyncio.sleep(max(0.0, t_warm - clock()))
            me = os.getpid()
            s0, c0, w0 = run_ns(pid), run_ns(me), clock()
            await asyncio.sleep(max(0.0, end - clock()))
            return (run_ns(pid) - s0) / 1e9, (run_ns(me) - c0) / 1e9, clock() - w0, w0

        got = await asyncio.gather(meter(), *(worker(i) for i in range(conc)))
    server_cpu, client_cpu, wall, _ = got[0]
    lats.sort()
    n = len(lats)
    return {"rate": n / spec["duration"], "replies": n, "errors": errors,
            "p50_ms": pct(lats, 50), "p99_ms": pct(lats, 99),
            "server_cpu_pct": server_cpu / wall * 100, "client_cpu_pct": client_cpu / wall * 100,
            "server_us": server_cpu / n * 1e6 if n else float("nan")}


async def watch(spec: dict) -> dict:
    base, pid, n, index = spec["base"], spec["pid"], spec["watchers"], spec["index"]
    raise_nofile(n + 256)
    url = f"{base}{spec['path']}?index={index}&wait={spec['wait']}"
    sent = 0
    all_sent = asyncio.Event()

    async def on_sent(session, ctx, params) -> None:
        nonlocal sent
        sent += 1
        if sent == n:
            all_sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=60)
    done: list[float] = []
    errors = 0
    t0 = 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout,
                                     trace_configs=[trace]) as session, \
            aiohttp.ClientSession(timeout=timeout) as trigger:
        # the trigger's connection is opened (and kept alive) before the watchers
        async with trigger.get(base + spec["path"]) as r:
            await r.read()

        async def watcher() -> None:
            nonlocal errors
            async with session.get(url) as r:
                await r.read()
                ok = r.status == 200 and (not spec.get("new_index")
                                          or r.headers.get("X-Consul-Index") != str(index))
            done.append(clock())
            if not ok:
                errors += 1

        before = socket_count(pid)       # the listener, the trigger's connection, the server's own
        t_start = clock()
        tasks = [asyncio.ensure_future(watcher()) for _ in range(n)]
        await asyncio.wait_for(all_sent.wait(), 120)
        # every request is written; wait until the server has accepted them all and gone quiet
        settle = spec.get("settle", 0.5)
        deadline = clock() + 120
        while True:
            c = run_ns(pid)
            await asyncio.sleep(settle)
            # a connection the client sees open may still wait in a full accept queue
            if run_ns(pid) - c < QUIET * settle * 1e9 and socket_count(pid) >= before + n:
                break
            if clock() > deadline:
                raise TimeoutError(f"server {pid} not quiet with {n} more sockets within 120 s")
        ready_s = clock() - t_start
        early = len(done)
        method, path, body = spec["trigger"]
        s0, c0 = run_ns(pid), run_ns(os.getpid())
        t0 = clock()
        async with trigger.request(method, base + path, data=body.encode()) as r:
            await r.read()
            trigger_ok = r.status == 200
        t_put = clock()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        s1, c1 = run_ns(pid), run_ns(os.getpid())
    answers = sorted(t - t0 for t in done)
    return {"all_ms": answers[-1] * 1e3, "first_ms": answers[0] * 1e3, "p50_ms": pct(answers, 50),
            "trigger_ms": (t_put - t0) * 1e3, "server_cpu_ms": (s1 - s0) / 1e6,
            "client_cpu_ms": (c1 - c0) / 1e6, "errors": errors + (not trigger_ok), "early": early,
            "ready_s": ready_s}


def main() -> None:
    spec = json.loads(sys.argv[1])
    import uvloop
    result = uvloop.run({"rate": rate, "watch": watch}[spec["mode"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

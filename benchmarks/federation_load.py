"""bench_federation.py's load client: benchmarks/http_load.py's `rate` mode, unchanged, that
also reads the CPU time of more processes over the same counted window.

  python -m benchmarks.federation_load SPEC_JSON     # prints one JSON result line
SPEC is http_load's (mode "rate") plus "also": {label: pid}. The result is http_load's plus,
per label, "<label>_cpu_pct" (% of one core) and "<label>_us" (CPU µs per counted reply),
every thread counted (/proc/<pid>/task/*/schedstat), read at the instants http_load reads
the CPU of `pid` (the end of the warmup and the end of the run).
"""
from __future__ import annotations

import json
import sys

from benchmarks import http_load


def main() -> None:
    spec = json.loads(sys.argv[1])
    also: dict[str, int] = spec.pop("also", {})
    marks: dict[str, list[int]] = {label: [] for label in also}
    read = http_load.run_ns

    def run_ns(pid: int) -> int:
        # http_load's meter reads the server's CPU first at each end of the window
        if pid == spec["pid"]:
            for label, other in also.items():
                marks[label].append(read(other))
        return read(pid)

    http_load.run_ns = run_ns
    import uvloop
    result = uvloop.run(http_load.rate(spec))
    n = result["replies"]
    for label, (start, end) in ((k, v[:2]) for k, v in marks.items()):
        cpu = (end - start) / 1e9
        # the meter's window is the counted `duration` (within a scheduling tick)
        result[f"{label}_cpu_pct"] = cpu / spec["duration"] * 100
        result[f"{label}_us"] = cpu / n * 1e6 if n else float("nan")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""Collects per-benchmark medians during a run and prints the ratios the issues ask for."""
from __future__ import annotations

RESULTS: dict[str, dict[str, dict[str, float]]] = {}
"""group -> implementation -> {"server_us": median server CPU µs per call, "rate": calls/s}"""


def rpc_lines() -> list[str]:
    lines = []
    for group in sorted(RESULTS):
        r = RESULTS[group]
        if "isthmus" not in r:
            continue
        ours = r["isthmus"]
        parts = [f"{group:<16} isthmus {ours['server_us']:7.2f} µs/call {ours['rate']:>10,.0f} calls/s"]
        for base in ("bare", "echo"):
            if base in r and r[base]["server_us"] > 0:
                parts.append(f"/{base} CPU {ours['server_us'] / r[base]['server_us']:.2f}x")
        lines.append("  ".join(parts))
    return lines

"""Collects per-benchmark medians during a run and prints the ratios the issues ask for."""
from __future__ import annotations

RESULTS: dict[str, dict[str, dict[str, float]]] = {}
"""group -> implementation -> {"server_us": median server CPU µs per call, "rate": calls/s}"""


def rpc_lines() -> list[str]:
    lines = []
    for group in sorted(RESULTS):
        r = RESULTS[group]
        if not group.startswith("rpc") or "isthmus" not in r:
            continue
        ours = r["isthmus"]
        parts = [f"{group:<16} isthmus {ours['server_us']:7.2f} µs/call {ours['rate']:>10,.0f} calls/s"]
        for base in ("bare", "echo"):
            if base in r and r[base]["server_us"] > 0:
                parts.append(f"/{base} CPU {ours['server_us'] / r[base]['server_us']:.2f}x")
        lines.append("  ".join(parts))
    return lines


def gossip_lines() -> list[str]:
    lines = []
    for group in sorted(RESULTS):
        r = RESULTS[group]
        if not group.startswith("gossip") or not {"isthmus", "serf"} <= set(r):
            continue
        ours, serf = r["isthmus"], r["serf"]
        lines.append(
            f"{group:<14} converge {ours['converge_s']:.2f}s vs serf {serf['converge_s']:.2f}s; "
            f"detect {ours['detect_s']:.2f}s vs {serf['detect_s']:.2f}s; idle CPU "
            f"{ours['idle_cpu_pct']:.2f}% vs {serf['idle_cpu_pct']:.2f}% "
            f"({ours['idle_cpu_pct'] / max(serf['idle_cpu_pct'], 1e-9):.2f}x); RSS "
            f"{ours['rss_mib']:.1f} MiB = {ours['rss_mib'] / ours['bare_python_rss_mib']:.2f}x bare Python "
            f"({ours['bare_python_rss_mib']:.1f} MiB), serf {serf['rss_mib']:.1f} MiB")
    return lines

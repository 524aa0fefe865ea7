"""Tables as github.com/ryanuber/columnize prints them for Consul (spec federation.md §3)."""
from __future__ import annotations


def columnize(rows: list[list[str]]) -> str:
    """Left-aligned columns padded to the widest cell, glued by two spaces; last column unpadded."""
    if not rows:
        return ""
    cells = [[str(c).strip() for c in row] for row in rows]
    ncols = max(len(r) for r in cells)
    widths = [max((len(r[i]) for r in cells if i < len(r)), default=0) for i in range(ncols)]
    lines = []
    for r in cells:
        parts = [c.ljust(widths[i]) + "  " if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(parts))
    return "\n".join(lines)

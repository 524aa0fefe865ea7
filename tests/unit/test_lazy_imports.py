"""What a client agent loads at start (issue #3: RSS within 1.25x of a bare process): the
DNS listeners and the HTTP endpoint modules load without dnspython, the `?filter=` language
or the state store, which load with the first query, filter or server-side use."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROBE = """
import importlib, sys
import agent.agent, agent.coordinate_sender, agent.dns.server, agent.http.server
for name in agent.http.server.ROUTE_MODULES:
    importlib.import_module("agent.http." + name)
from aiohttp.test_utils import make_mocked_request
from agent.http.filtering import check_filter
check_filter(make_mocked_request("GET", "/v1/catalog/nodes"))     # a read without ?filter=
lazy = {"dns", "agent.filter", "agent.state.store", "agent.state.catalog", "agent.state.areas"}
print(" ".join(sorted(m for m in sys.modules if m in lazy or m.startswith("dns."))))
"""


def test_start_path_leaves_dnspython_filter_and_state_unloaded():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [], f"loaded at start: {out}"

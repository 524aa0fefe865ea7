"""Fixtures shared by the integration tests: one `isthmus agent -dev` per test module and a
py-consul client for it. A module names its agent's node with DEV_NODE (default "dev1"); a
module that defines its own `dev` or `c` fixture overrides these."""
from __future__ import annotations

import pytest

from .procs import AgentProc


@pytest.fixture(scope="module")
def dev(request):
    a = AgentProc("-dev", "-node", getattr(request.module, "DEV_NODE", "dev1"))
    a.wait_ready()
    yield a
    a.kill()


@pytest.fixture
def c(dev):
    import consul
    return consul.Consul(host=dev.host, port=dev.http_port)

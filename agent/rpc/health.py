"""`Health.*` endpoints (Consul's agent/consul/health_endpoint.go): NodeChecks,
ServiceChecks, ServiceNodes, ChecksInState — reads with consistency modes and blocking
queries on the catalog tables (ServiceNodes: on that service's own index table, so only
writes to that service, its checks or its nodes wake it); the last three sort by estimated
RTT from the request's `Source` node ({Datacenter, Node}: `?near=`) as Consul does."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..state.catalog import Catalog, service_table
from .catalog import BadRequest, _meta_filters, _str, _tag_filter
from .consistency import check_dc, read
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    store = consensus.store
    catalog: Catalog = store.catalog

    async def node_checks(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        node = _str(body, "Node")

        def local() -> dict:
            idx, checks = catalog.node_checks(node)
            return {"HealthChecks": checks, "Index": idx}
        return await read(consensus, "Health.NodeChecks", body, local, ("checks",))

    async def service_checks(body: Any, ctx: CallContext) -> dict:
        if body.get("TagFilter"):
            raise BadRequest("Tag filtering is not supported")
        check_dc(body, datacenter)
        name, meta = _str(body, "ServiceName"), _meta_filters(body)

        def local() -> dict:
            idx, checks = catalog.service_checks(name, meta)
            checks = store.coordinates.sort_near(body.get("Source"), datacenter, checks,
                                                 lambda c: c["Node"])
            return {"HealthChecks": checks, "Index": idx}
        return await read(consensus, "Health.ServiceChecks", body, local, ("checks", "nodes"))

    async def service_nodes(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        name = _str(body, "ServiceName")
        if not name:
            raise BadRequest("Must provide service name")
        tags, meta = _tag_filter(body), _meta_filters(body)

        def local() -> dict:
            idx, nodes = catalog.check_service_nodes(name, tags, meta)
            nodes = store.coordinates.sort_near(body.get("Source"), datacenter, nodes,
                                                lambda n: n["Node"]["Node"])
            return {"Nodes": nodes, "Index": idx}
        # only writes to this service, its checks or its nodes wake a blocking query
        return await read(consensus, "Health.ServiceNodes", body, local, (service_table(name),))

    async def checks_in_state(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        state, meta = _str(body, "State"), _meta_filters(body)

        def local() -> dict:
            idx, checks = catalog.checks_in_state(state, meta)
            checks = store.coordinates.sort_near(body.get("Source"), datacenter, checks,
                                                 lambda c: c["Node"])
            return {"HealthChecks": checks, "Index": idx}
        return await read(consensus, "Health.ChecksInState", body, local, ("checks", "nodes"))

    registry.register("Health.NodeChecks", node_checks)
    registry.register("Health.ServiceChecks", service_checks)
    registry.register("Health.ServiceNodes", service_nodes)
    registry.register("Health.ChecksInState", checks_in_state)

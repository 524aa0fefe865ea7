"""`Coordinate.*` endpoints (Consul's agent/consul/coordinate_endpoint.go).

Update: runs on the leader (forwarded there); the coordinate must be finite ("invalid
coordinate") and of this server's dimensionality ("incompatible coordinate"); it is only
recorded — the leader's CoordinateBatcher (agent/coordinate_sender.py) commits the latest
per node every update period. ListDatacenters: the router's servers per path and
datacenter with their coordinates in that path's pool. ListNodes, Node: reads of the "coordinates" table with
Consul's consistency modes and blocking queries.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..coordinate_sender import batcher_for
from ..errors import IsthmusError
from ..state.coordinates import TABLE, Coordinates, parse_coordinate
from .catalog import _str
from .consistency import check_dc, read, write
from .registry import CallContext, Registry

if TYPE_CHECKING:
    from ..agent import Agent


class InvalidCoordinate(IsthmusError):
    """A coordinate update refused as Consul refuses it."""


def register(registry: Registry, agent: "Agent") -> None:
    consensus = agent.consensus
    datacenter = agent.config.datacenter
    coords: Coordinates = consensus.store.coordinates

    def own_dimensions() -> int:
        lan = agent.lan
        client = lan.serf.coords if lan is not None else None
        if client is None:
            raise InvalidCoordinate("Coordinates are disabled")     # serf's GetCoordinate
        return len(client.get_coordinate().vec)

    async def update(body: Any, ctx: CallContext) -> None:
        check_dc(body, datacenter)
        node, segment = _str(body, "Node"), _str(body, "Segment")

        async def local() -> None:
            coord = parse_coordinate(body.get("Coord"))
            if coord is None:
                raise InvalidCoordinate("invalid coordinate")
            if len(coord.vec) != own_dimensions():
                raise InvalidCoordinate("incompatible coordinate")
            batcher_for(consensus).add({"Node": node, "Segment": segment,
                                        "Coord": coord.to_wire()})
        return await write(consensus, "Coordinate.Update", body, local)

    async def list_nodes(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)

        def local() -> dict:
            idx, rows = coords.list()
            return {"Coordinates": rows, "Index": idx}
        return await read(consensus, "Coordinate.ListNodes", body, local, (TABLE,))

    async def node(body: Any, ctx: CallContext) -> dict:
        check_dc(body, datacenter)
        name = _str(body, "Node")

        def local() -> dict:
            idx, rows = coords.node(name)
            return {"Coordinates": rows, "Index": idx}
        return await read(consensus, "Coordinate.Node", body, local, (TABLE,))

    async def list_datacenters(body: Any, ctx: CallContext) -> list[dict]:
        """Per path (WAN or area) and datacenter, its servers' coordinates in that pool."""
        fed = agent.federation
        return fed.datacenter_maps() if fed is not None else []

    registry.register("Coordinate.ListDatacenters", list_datacenters)
    registry.register("Coordinate.Update", update)
    registry.register("Coordinate.ListNodes", list_nodes)
    registry.register("Coordinate.Node", node)


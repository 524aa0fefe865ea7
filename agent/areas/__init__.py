"""Network areas on servers: a gossip pool per area over the RPC port (byte 6), kept in step
with the Raft-replicated areas table by the AreaManager (agent.areas on servers)."""
from .manager import AreaManager, UnknownArea, area_tags
from .pool import AreaPool
from .transport import AreaGossipHandler

__all__ = ["AreaGossipHandler", "AreaManager", "AreaPool", "UnknownArea", "area_tags"]

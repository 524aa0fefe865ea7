"""Simulation: virtual clock + in-memory network for pure cores (tests, benchmarks, studies)."""
from .cluster import (Bounds, EventLog, SimCluster, SimNode, SimTimeout, pure_python_swim,
                      sim_address)
from .network import Network

__all__ = ["Bounds", "EventLog", "Network", "SimCluster", "SimNode", "SimTimeout",
           "pure_python_swim", "sim_address"]

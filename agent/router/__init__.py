"""Routing to other datacenters (pure): per path (WAN or area) × datacenter server lists."""

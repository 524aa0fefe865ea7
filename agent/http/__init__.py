"""Consul-compatible HTTP API (aiohttp)."""

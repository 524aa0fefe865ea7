"""Version strings: Isthmus's own, and the Consul API level it speaks (DESIGN.md §4)."""

ISTHMUS_VERSION = "0.1.0"
CONSUL_API_VERSION = "1.22.0"   # reported as Config.Version, like redis_version in Redis-compatible servers
PROTOCOL_VERSION = 2            # Consul's protocol version (the `vsn` tag)
PROTOCOL_MIN, PROTOCOL_MAX = 2, 3

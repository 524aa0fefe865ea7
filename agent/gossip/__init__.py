"""Gossip drivers: LAN and WAN pools on UDP+TCP around the SWIM and Serf cores."""

"""Consul's DNS interface (port 8600, UDP and TCP).

`resolver.py` is pure: a query's bytes in, the reply's bytes out, with the catalog lookups it
needs handed to the caller as steps (`Lookup`, `Recurse`); `server.py` is the uvloop driver
that listens, runs those steps through `Agent.rpc` and the recursors, and writes replies.
Messages are encoded and decoded by dnspython.
"""

"""The server RPC plane on port 8300: connection-type dispatch, msgpack-RPC server and client pool."""

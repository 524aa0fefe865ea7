"""Errors Isthmus raises on purpose (codec errors live in `_core.errors`)."""


class IsthmusError(Exception):
    """Base of every error Isthmus raises on purpose."""


class ConfigError(IsthmusError):
    """A configuration with problems; `problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class DataDirInUse(IsthmusError):
    """Another agent holds the data directory's lock."""


class RPCError(IsthmusError):
    """An error reply from a remote RPC server; `message` is the remote error string."""

    def __init__(self, message: str, method: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.method = method


class UnknownMethod(RPCError):
    """The remote server has no such ServiceMethod."""


class NoLeaderError(RPCError):
    """The remote datacenter has no Raft leader ("No cluster leader")."""


class NoPathError(RPCError):
    """No route to the named datacenter ("No path to datacenter")."""


class NoServersError(IsthmusError):
    """This agent knows no server to send the request to ("No known Consul servers")."""

    def __init__(self) -> None:
        super().__init__("No known Consul servers")


class RPCTimeout(IsthmusError):
    """A call got no reply within its deadline."""


class ConnectionLost(IsthmusError):
    """The connection carrying a call closed before the reply arrived."""


class RPCConnectError(IsthmusError):
    """Could not open an RPC connection to a server (TCP or TLS handshake failed)."""


def remote_error(message: str, method: str = "") -> RPCError:
    """The typed exception for an error string a remote RPC server replied with."""
    if message.startswith("rpc: can't find") or message.startswith("rpc: service/method"):
        return UnknownMethod(message, method)
    if message.startswith("No cluster leader"):
        return NoLeaderError(message, method)
    if message.startswith("No path to datacenter"):
        return NoPathError(message, method)
    return RPCError(message, method)

"""The `isthmus` command line: the agent daemon, and HTTP-API clients mirroring `consul`'s commands."""

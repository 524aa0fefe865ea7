"""`isthmus demo areas`: the network-areas guide on real agents (agent/demo.py)."""
from __future__ import annotations

import signal
import sys
import time

from ..demo import Demo


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run(argv: list[str]) -> int:
    """`isthmus demo areas [-servers-per-dc=N] [-keep-running=false] [-data-dir=DIR]
    [-random-ports]`."""
    from .flags import FlagError, FlagSet, HelpRequested
    usage = ("Usage: isthmus demo areas [options]\n\n  Starts dc1 (hub), dc2 and dc3 (spokes) "
             "on loopback and walks through the network-areas guide.")
    if not argv or argv[0] != "areas":
        print(usage, file=sys.stderr)
        return 1
    fs = FlagSet()
    fs.add("servers-per-dc", "int", 1, "Servers in each datacenter.")
    fs.add("keep-running", "bool", True, "Leave the agents running until interrupted.")
    fs.add("data-dir", "string", "", "Where the agents keep data and logs (default: a temp dir).")
    fs.add("random-ports", "bool", False, "Never use Consul's default ports.")
    try:
        opts, rest = fs.parse(argv[1:])
    except HelpRequested:
        print(usage + "\n\n" + fs.usage(), file=sys.stderr)
        return 0
    except FlagError as exc:
        print(exc, file=sys.stderr)
        return 1
    if rest or not 1 <= opts["servers-per-dc"] <= 5:
        print("demo areas takes no arguments; -servers-per-dc is 1 to 5", file=sys.stderr)
        return 1
    demo = Demo(servers_per_dc=opts["servers-per-dc"], base_dir=opts["data-dir"] or None,
                default_ports=not opts["random-ports"])
    try:
        demo.start()
        demo.steps()
        if opts["keep-running"]:
            demo.summary()
            demo.say("# Press Ctrl-C to stop them.")
            signal.signal(signal.SIGTERM, _interrupt)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
    return 0

"""Go `flag`-style command-line parsing, as Consul's commands parse their flags.

`-name value`, `-name=value`, `--name=value`; boolean flags take no value (`-dev`) or
`-name=true|false`; parsing stops at the first non-flag argument or at `--`. Error
strings are Go's ("flag provided but not defined: -foo"); `-h`/`-help` raise HelpRequested.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from ..errors import IsthmusError


class FlagError(IsthmusError):
    """A command line that does not parse; the message is Go's wording."""


class HelpRequested(Exception):
    """`-h` or `-help` was given and the command defines no such flag."""


@dataclass
class Flag:
    name: str
    kind: str           # "bool" | "int" | "string" | "list"
    default: object
    usage: str


@dataclass
class FlagSet:
    """The flags of one command; `parse()` returns (values by name, positional arguments)."""
    flags: dict[str, Flag] = field(default_factory=dict)

    def add(self, name: str, kind: str = "string", default: object = None, usage: str = "") -> None:
        if kind == "list" and default is None:
            default = []
        elif kind == "bool":
            default = bool(default)
        self.flags[name] = Flag(name, kind, default, usage)

    def parse(self, args: list[str]) -> tuple[dict[str, object], list[str]]:
        values: dict[str, object] = {
            f.name: (list(f.default) if f.kind == "list" else f.default) for f in self.flags.values()}
        args = list(args)
        while args:
            s = args[0]
            if len(s) < 2 or s[0] != "-":
                break
            minuses = 1
            if s[1] == "-":
                minuses = 2
                if len(s) == 2:     # "--" ends the flags
                    args.pop(0)
                    break
            name = s[minuses:]
            if not name or name[0] in "-=":
                raise FlagError(f"bad flag syntax: {s}")
            args.pop(0)
            has_value, value = False, ""
            if "=" in name[1:]:
                i = name.index("=", 1)
                name, value, has_value = name[:i], name[i + 1:], True
            flag = self.flags.get(name)
            if flag is None:
                if name in ("help", "h"):
                    raise HelpRequested()
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind == "bool":
                if has_value:
                    b = parse_bool(value)
                    if b is None:
                        raise FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
                    values[name] = b
                else:
                    values[name] = True
                continue
            if not has_value:
                if not args:
                    raise FlagError(f"flag needs an argument: -{name}")
                value = args.pop(0)
            if flag.kind == "int":
                n = parse_int(value)
                if n is None:
                    raise FlagError(f'invalid value "{value}" for flag -{name}: parse error')
                values[name] = n
            elif flag.kind == "list":
                values[name].append(value)  # type: ignore[union-attr]
            else:
                values[name] = value
        return values, args

    def usage(self) -> str:
        """Consul's flags.Usage "Command Options" block."""
        out = ["Command Options", ""]
        for name in sorted(self.flags):
            f = self.flags[name]
            example = {"bool": "", "int": "int", "string": "string", "list": "value"}[f.kind]
            out.append(f"  -{name}=<{example}>" if example else f"  -{name}")
            if f.kind == "bool":
                dv = "true" if f.default else "false"
            elif f.kind == "list":
                dv = ",".join(f.default)  # type: ignore[arg-type]
            else:
                dv = str(f.default)
            wrapped = textwrap.wrap(f"{f.usage} ({dv})", width=67, break_long_words=False,
                                    break_on_hyphens=False) or [""]
            out += ["     " + line for line in wrapped]
            out.append("")
        return "\n".join(out).rstrip("\n")


def parse_bool(v: str) -> bool | None:
    """Go's strconv.ParseBool; None if `v` is not a boolean."""
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def parse_int(v: str) -> int | None:
    """Go's strconv.ParseInt(v, 0, 64): decimal, 0x/0o/0b prefixes, a leading 0 means octal."""
    s = v.replace("_", "") if re.match(r"^[+-]?0[xXbBoO]", v) else v
    try:
        n = int(s, 0)
    except ValueError:
        if re.fullmatch(r"[+-]?0[0-7]+", v):
            n = int(v, 8)
        else:
            return None
    if not -(1 << 63) <= n < (1 << 63):
        return None
    return n

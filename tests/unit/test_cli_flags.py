"""Go flag-package parsing used by the CLI commands."""
import pytest

from agent.cli.api import resolve_http_addr
from agent.cli.flags import FlagError, FlagSet


def flagset() -> FlagSet:
    fs = FlagSet()
    fs.add("name")
    fs.add("count", "int", 3)
    fs.add("on", "bool")
    fs.add("join", "list")
    return fs


@pytest.mark.parametrize("argv,expect", [
    (["-count", "0x10"], {"count": 16}),
    (["-name", "x"], {"name": "x"}),
    (["-name=x"], {"name": "x"}),
    (["--name=x"], {"name": "x"}),
    (["-count", "7"], {"count": 7}),
    (["-on"], {"on": True}),
    (["-on=false"], {"on": False}),
    (["-join", "a", "-join=b"], {"join": ["a", "b"]}),
])
def test_forms(argv, expect):
    values, rest = flagset().parse(argv)
    for k, v in expect.items():
        assert values[k] == v
    assert rest == []


def test_defaults_and_positional_stop():
    values, rest = flagset().parse(["-on", "pos", "-name", "x"])
    assert values == {"name": None, "count": 3, "on": True, "join": []}
    assert rest == ["pos", "-name", "x"]
    assert flagset().parse(["--", "-x"])[1] == ["-x"]


@pytest.mark.parametrize("argv,msg", [
    (["-nope"], "flag provided but not defined: -nope"),
    (["-name"], "flag needs an argument: -name"),
    (["-count", "x"], 'invalid value "x" for flag -count: parse error'),
    (["-on=maybe"], 'invalid boolean value "maybe" for -on: parse error'),
    (["---x"], "bad flag syntax: ---x"),
])
def test_errors(argv, msg):
    with pytest.raises(FlagError, match=msg):
        flagset().parse(argv)


def test_http_addr_precedence():
    env = {"ISTHMUS_HTTP_ADDR": "10.0.0.1:1", "CONSUL_HTTP_ADDR": "10.0.0.2:2"}
    assert resolve_http_addr("127.0.0.5:9", env) == "http://127.0.0.5:9"
    assert resolve_http_addr(None, env) == "http://10.0.0.1:1"
    assert resolve_http_addr(None, {"CONSUL_HTTP_ADDR": "https://h:2/"}) == "https://h:2"
    assert resolve_http_addr(None, {}) == "http://127.0.0.1:8500"

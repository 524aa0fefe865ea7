"""agent/filter.py: Consul's ?filter= language (go-bexpr) — parsing, validation against the
record type, evaluation, and go-bexpr's error messages."""
from __future__ import annotations

import pytest

from agent.filter import (BOOL, INT, STR, FilterError, MapOf, SliceOf, Struct, compile, coerce,
                          go_unquote)

PREFIX = "Failed to create boolean expression evaluator: "

CHECK = Struct({"Status": STR, "Name": STR, "ServiceTags": SliceOf(STR)})
NODE = Struct({
    "Node": STR, "Address": STR, "Port": INT, "On": BOOL, "Tags": SliceOf(STR),
    "Meta": MapOf(STR), "Weights": Struct({"Passing": INT, "Warning": INT}),
    "Checks": SliceOf(CHECK), "Config": MapOf(None),
    "Tagged": MapOf(Struct({"Address": STR, "Port": INT}))})

ROWS = [
    {"Node": "a", "Address": "1.2.3.4", "Port": 80, "On": True, "Tags": ["x", "y"],
     "Meta": {"env": "prod", "rack": "r1"}, "Weights": {"Passing": 1, "Warning": 1},
     "Checks": [{"Status": "passing", "Name": "one", "ServiceTags": ["t1"]},
                {"Status": "critical", "Name": "two", "ServiceTags": []}],
     "Config": {"k": 1}, "Tagged": {"lan": {"Address": "1.2.3.4", "Port": 80}}},
    {"Node": "b", "Address": "10.0.0.1", "Port": 81, "On": False, "Tags": [],
     "Meta": {}, "Weights": {"Passing": 3, "Warning": 1}, "Checks": [],
     "Config": {}, "Tagged": {}},
    {"Node": "c d", "Address": "10.0.0.2", "Port": 82, "On": False, "Tags": ["y"],
     "Meta": {"env": "dev", "a b": "sp"}, "Weights": None, "Checks": None,
     "Config": None, "Tagged": None},
]


def names(expr: str) -> list:
    return [r["Node"] for r in compile(expr, NODE).apply(ROWS)]


@pytest.mark.parametrize("expr,want", [
    ("Node == a", ["a"]),
    ('Node == "a"', ["a"]),
    ("Node == `a`", ["a"]),
    ('Node == "c d"', ["c d"]),
    ("Node==a", ["a"]),
    ("  Node   ==   a  ", ["a"]),
    ("Node != a", ["b", "c d"]),
    ("Port == 81", ["b"]),
    ("Port != 81", ["a", "c d"]),
    ('Port == "0x50"', ["a"]),                         # strconv.ParseInt base 0
    ("Port == -1", []),
    ("On == true", ["a"]),
    ("On == false", ["b", "c d"]),
    ('On == "T"', ["a"]),
    ("Weights.Passing == 3", ["b"]),
    ("Weights.Passing == 0", ["c d"]),                 # a null struct reads as its zero value
    # strings: substring in / contains
    ('"10." in Address', ["b", "c d"]),
    ('Address contains "10."', ["b", "c d"]),
    ('"10." not in Address', ["a"]),
    ('Address not contains "10."', ["a"]),
    # slices of primitives
    ("x in Tags", ["a"]),
    ("y in Tags", ["a", "c d"]),
    ("Tags contains y", ["a", "c d"]),
    ("y not in Tags", ["b"]),
    ("Tags not contains y", ["b"]),
    ("Tags is empty", ["b"]),
    ("Tags is not empty", ["a", "c d"]),
    # maps: key membership, emptiness, values by key
    ("env in Meta", ["a", "c d"]),
    ("Meta contains env", ["a", "c d"]),
    ("env not in Meta", ["b"]),
    ("Meta is empty", ["b"]),
    ("Meta is not empty", ["a", "c d"]),
    ("Meta.env == prod", ["a"]),
    ('Meta["env"] == prod', ["a"]),
    ('Meta[ "env" ] == prod', ["a"]),
    ("Meta[`a b`] == sp", ["c d"]),
    ('Meta["a b"] == sp', ["c d"]),
    ("Meta.env != prod", ["b", "c d"]),              # a missing key is != anything
    ("Meta.env == \"\"", []),                          # ... and == nothing, even ""
    ("Meta.missing not matches x", ["a", "b", "c d"]),
    ("Meta.missing matches x", []),
    ('"1.2" in Meta.env', []),
    ('Meta.env contains "ro"', ["a"]),
    ('Meta.env not contains "ro"', ["b", "c d"]),
    ("Config is empty", ["b", "c d"]),
    ("k in Config", ["a"]),
    ("Tagged.lan.Port == 80", ["a"]),
    ("Tagged.wan.Port != 80", ["a", "b", "c d"]),
    # slices of structs: ANY element
    ("Checks.Status == critical", ["a"]),
    ("Checks.Status != passing", ["a"]),               # any check not passing
    ("Checks.Status == passing", ["a"]),
    ("Checks is empty", ["b", "c d"]),
    ("t1 in Checks.ServiceTags", ["a"]),
    ("Checks.ServiceTags is empty", ["a"]),
    # regular expressions (unanchored, as Go's MatchString)
    ('Address matches "^10\\\\."', ["b", "c d"]),
    ("Address matches `^10\\.`", ["b", "c d"]),
    ("Address matches `0\\.0`", ["b", "c d"]),
    ("Address not matches `^10\\.`", ["a"]),
    ("Node matches `^[ab]$`", ["a", "b"]),
    # boolean logic and precedence: not > and > or
    ("not Node == a", ["b", "c d"]),
    ("not not Node == a", ["a"]),
    ("Node == a or Node == b", ["a", "b"]),
    ("Node == a and Port == 80", ["a"]),
    ("Node == a and Port == 81", []),
    ("Node == b or Node == a and Port == 81", ["b"]),
    ("(Node == b or Node == a) and Port == 81", ["b"]),
    ("Node == a and not Port == 81 or Node == b", ["a", "b"]),
    ("not (Node == a or Node == b)", ["c d"]),
    ("( Node == a )", ["a"]),
    ("((Node == a))", ["a"]),
    ("Port == 80 or Port == 81 or Port == 82", ["a", "b", "c d"]),
    ("notes in Meta", []),                             # "not" needs whitespace after it
    ("Node == and", []),                               # keywords are plain values too
])
def test_evaluation(expr, want):
    assert names(expr) == want


def test_values_may_be_selectors_and_numbers():
    # a bare selector as value is its dotted text; a number literal is its text
    rows = [{"Node": "Meta.env", "Address": "", "Port": 0, "On": False, "Tags": ["1.5"],
             "Meta": {}, "Weights": {}, "Checks": [], "Config": {}, "Tagged": {}}]
    assert compile("Node == Meta.env", NODE).apply(rows) == rows
    assert compile("Node == Meta[\"env\"]", NODE).apply(rows) == rows
    assert compile("1.5 in Tags", NODE).apply(rows) == rows


def test_dict_rows_keep_matching_values():
    flt = compile("Port == 81", NODE)
    assert flt.apply({"x": ROWS[0], "y": ROWS[1]}) == {"y": ROWS[1]}


def test_field_names_are_case_sensitive():
    with pytest.raises(FilterError) as e:
        compile("node == a", NODE)
    assert str(e.value) == PREFIX + 'Selector "node" is not valid'


@pytest.mark.parametrize("expr,msg", [
    # pigeon: farthest failure and what was expected there (Consul issue #7338's text)
    ("foo", '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or '
            '[a-zA-Z0-9_]'),
    ("", '1:1 (0): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], '
         '[1-9] or [a-zA-Z]'),
    ("Node == a and", "1:14 (13): no match found, expected: [ \\t\\r\\n]"),
    ("Node == a b", '1:11 (10): no match found, expected: "and", "or", EOF or [ \\t\\r\\n]'),
    ("Node = a", '1:6 (5): no match found, expected: "!=", "==", "contains", "in", "is", '
                 '"matches", "not" or [ \\t\\r\\n]'),
    # predicate errors carry their rule's display name (Consul issue #9441's text)
    ("Address == 10.10.10.10 ", '1:17 (16): rule "number": Invalid number literal'),
    ("Port == 0x50", '1:10 (9): rule "number": Invalid number literal'),
    ('Node == "abc', '1:13 (12): rule "string": Unterminated string literal'),
    ("Node == `abc", '1:13 (12): rule "string": Unterminated string literal'),
    ('Node == "a\\q"', '1:9 (8): rule "string": invalid syntax'),
    ("(Node == a", '1:11 (10): rule "grouping": Unmatched parentheses'),
    ("Meta[ == x", '1:7 (6): rule "index": Invalid index'),
    ('Meta["a" == x', '1:10 (9): rule "index": Unclosed index expression'),
    ('"a" in 5', '1:8 (7): rule "match": Invalid selector'),
    # validation against the record type
    ("Foo == x", 'Selector "Foo" is not valid'),
    ("Weights.Nope == 1", 'Selector "Weights.Nope" is not valid'),
    ("Meta.a.b == x", 'Selector "Meta.a.b" is not valid'),
    ("Tags.x == y", 'Selector "Tags.x" is not valid'),
    ("Config.k == 1", 'Selector "Config.k" is not valid'),
    ("Address is empty", 'Invalid match operator "Is Empty" for selector "Address"'),
    ("Meta.env is not empty", 'Invalid match operator "Is Not Empty" for selector "Meta.env"'),
    ("Tags == x", 'Invalid match operator "Equal" for selector "Tags"'),
    ("Meta == x", 'Invalid match operator "Equal" for selector "Meta"'),
    ("Weights == x", 'Invalid match operator "Equal" for selector "Weights"'),
    ("Port matches `8.`", 'Invalid match operator "Matches" for selector "Port"'),
    ("x in Port", 'Invalid match operator "In" for selector "Port"'),
    ("Checks.Status is empty", 'Invalid match operator "Is Empty" for selector "Checks.Status"'),
    ("Port == abc", 'Failed to coerce value "abc" for selector "Port": strconv.ParseInt: '
                    'parsing "abc": invalid syntax'),
    ("Port == 99999999999999999999", 'Failed to coerce value "99999999999999999999" for '
     'selector "Port": strconv.ParseInt: parsing "99999999999999999999": value out of range'),
    ("On == maybe", 'Failed to coerce value "maybe" for selector "On": strconv.ParseBool: '
                    'parsing "maybe": invalid syntax'),
])
def test_errors(expr, msg):
    with pytest.raises(FilterError) as e:
        compile(expr, NODE)
    assert str(e.value) == PREFIX + msg


def test_bad_regexp():
    with pytest.raises(FilterError) as e:
        compile('Node matches "("', NODE)
    assert str(e.value).startswith(PREFIX + 'Failed to compile regular expression "(": '
                                            "error parsing regexp: ")


def test_deep_nesting_fails_cleanly_and_long_chains_are_linear():
    with pytest.raises(FilterError):
        compile("(" * 2000 + "Node == a" + ")" * 2000, NODE)
    with pytest.raises(FilterError) as e:                # unmatched: no exponential backtracking
        compile("(" * 60 + "Node == a", NODE)
    assert "Unmatched parentheses" in str(e.value)
    flt = compile(" and ".join(["Node == a"] * 3000), NODE)
    assert [r["Node"] for r in flt.apply(ROWS)] == ["a"]


def test_unicode_positions_count_runes_and_bytes():
    with pytest.raises(FilterError) as e:
        compile('Node == "é" x', NODE)
    assert str(e.value) == PREFIX + ('1:13 (13): no match found, expected: "and", "or", EOF '
                                     'or [ \\t\\r\\n]')


def test_go_unquote_and_coerce():
    assert go_unquote('"a\\tb\\u00e9\\x41\\101"') == "a\tb\u00e9AA"
    assert go_unquote("`a\\tb`") == "a\\tb"
    with pytest.raises(ValueError):
        go_unquote('"a\\z"')
    assert coerce("0x10", INT) == 16 and coerce("010", INT) == 8 and coerce("-3", INT) == -3
    assert coerce("1", BOOL) is True and coerce("F", BOOL) is False

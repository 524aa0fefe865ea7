"""Consul's `?filter=` expression language (hashicorp/go-bexpr as Consul uses it): a PEG
parser, validation of the expression against the filtered records' type, and evaluation.

    expr     := or ; or := and ("or" or)? ; and := not ("and" and)? ; not := "not" not | group
    group    := "(" or ")" | match
    match    := selector ("=="|"!="|"contains"|"not contains"|"matches"|"not matches") value
              | selector ("is empty"|"is not empty") | value ("in"|"not in") selector
    selector := ident ("." ident | "[" string "]")*       ident := [a-zA-Z][a-zA-Z0-9_]*
    value    := selector (its dotted text) | number | "string" | `raw string`

Error messages keep go-bexpr's wording and pigeon's positions ("1:4 (3): no match found,
expected: ..."; "rule \"number\": Invalid number literal"). Validation follows go-bexpr's
field configurations: a selector walks struct fields (exact case), map keys (any key) and
slice elements; strings take ==, !=, in, not in, matches, not matches; other primitives
== and !=; slices of primitives in, not in, is empty, is not empty; other slices is empty and
is not empty; maps with string keys is empty, is not empty, in, not in (on keys). The
value is coerced to the field's type (strconv's messages). Evaluation: a selector through a
slice matches if ANY element matches; a missing map key makes ==, in, matches and
is not empty false and the negated operators true.

Pure: no I/O. `compile(text, schema)` raises FilterError with go-bexpr's message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

# the types (agent/filter_types.py), re-exported: `compile(text, Struct({...}))`
from .filter_types import BOOL, FLOAT, INT, STR, UINT, MapOf, SliceOf, Struct, Type  # noqa: F401

_PRIMITIVES = (STR, INT, UINT, BOOL, FLOAT)

EQUAL, NOT_EQUAL, IN, NOT_IN = "Equal", "Not Equal", "In", "Not In"
IS_EMPTY, IS_NOT_EMPTY, MATCHES, NOT_MATCHES = "Is Empty", "Is Not Empty", "Matches", "Not Matches"
_ANY = ""  # go-bexpr's FieldNameAny: a map's keys


class FilterError(ValueError):
    """A filter that does not parse or does not fit the records' type; str() is Consul's text."""


# ----------------------------------------------------------------------------- AST

@dataclass
class Match:
    selector: list
    op: str
    value: "str | None"                   # raw text; None for is (not) empty
    converted: Any = None


@dataclass
class Not:
    operand: Any


@dataclass
class Binary:
    op: str                               # "and" | "or"
    operands: list                        # two or more


# ----------------------------------------------------------------------------- parser

class _Fail(Exception):
    pass


_WS = " \t\r\n"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Parser:
    """A PEG parser shaped like go-bexpr's grammar.peg, with pigeon's error reporting:
    the farthest failure position and what was expected there, plus errors raised by
    the grammar's predicates (with the enclosing rule's display name)."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.pos = 0
        self.max_fail = -1
        self.expected: set = set()
        self.invert = False
        self.errors: list = []
        self.rules: list = []
        self.memo: dict = {}

    # ---- failure bookkeeping
    def _record(self, pos: int, want: str, failed: bool) -> None:
        if failed == self.invert:
            return
        if self.invert:
            want = "!" + want
        if pos > self.max_fail:
            self.max_fail, self.expected = pos, set()
        if pos == self.max_fail:
            self.expected.add(want)

    def _error(self, pos: int, msg: str) -> None:
        rule = self.rules[-1] if self.rules else ""
        prefix = f"rule {_quote(rule)}: " if rule else ""
        self.errors.append((pos, prefix + msg))

    def where(self, pos: int) -> str:
        before = self.s[:pos]
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        return f"{line}:{col} ({len(before.encode())})"

    # ---- primitives
    def lit(self, text: str) -> str:
        ok = self.s.startswith(text, self.pos)
        self._record(self.pos, _quote(text), not ok)
        if not ok:
            raise _Fail()
        self.pos += len(text)
        return text

    def cls(self, desc: str, chars: Callable[[str], bool]) -> str:
        ok = self.pos < len(self.s) and chars(self.s[self.pos])
        self._record(self.pos, desc, not ok)
        if not ok:
            raise _Fail()
        self.pos += 1
        return self.s[self.pos - 1]

    def any_char(self) -> str:
        ok = self.pos < len(self.s)
        self._record(self.pos, ".", not ok)
        if not ok:
            raise _Fail()
        self.pos += 1
        return self.s[self.pos - 1]

    def opt(self, fn):
        start = self.pos
        try:
            return fn()
        except _Fail:
            self.pos = start
            return None

    def star(self, fn) -> list:
        out = []
        while True:
            start = self.pos
            try:
                out.append(fn())
            except _Fail:
                self.pos = start
                return out

    def choice(self, *alts):
        start = self.pos
        for alt in alts:
            try:
                return alt()
            except _Fail:
                self.pos = start
        raise _Fail()

    def not_ahead(self, fn) -> None:
        start = self.pos
        self.invert = not self.invert
        try:
            fn()
            matched = True
        except _Fail:
            matched = False
        finally:
            self.invert = not self.invert
            self.pos = start
        if matched:
            raise _Fail()

    def and_ahead(self, fn) -> None:
        start = self.pos
        try:
            fn()
        finally:
            self.pos = start

    def rule(self, name: str, fn):
        self.rules.append(name)
        try:
            return fn()
        finally:
            self.rules.pop()

    def predicate_error(self, msg: str):
        self._error(self.pos, msg)
        raise _Fail()

    # ---- grammar
    def ws(self) -> None:                                   # _ <- [ \t\r\n]+
        self.cls("[ \\t\\r\\n]", _WS.__contains__)
        self.star(lambda: self.cls("[ \\t\\r\\n]", _WS.__contains__))

    def ows(self) -> None:                                  # _?
        self.opt(self.ws)

    def eof(self) -> None:
        self.not_ahead(self.any_char)

    def input(self):
        def grouped():
            self.ows()
            self.lit("(")
            self.ows()
            e = self.or_expr()
            self.ows()
            self.lit(")")
            self.ows()
            self.eof()
            return e

        def plain():
            self.ows()
            e = self.or_expr()
            self.ows()
            self.eof()
            return e
        return self.choice(grouped, plain)

    def or_expr(self):
        # Or <- And _ "or" _ Or / And, read as And (_ "or" _ And)*: the same language and
        # failures without re-parsing the left side; memoized per position (packrat) so
        # nested groups that fail cost linear time, not exponential.
        start = self.pos
        hit = self.memo.get(start)
        if hit is not None:
            node, end = hit
            if node is None:
                raise _Fail()
            self.pos = end
            return node
        try:
            node = self._chain("or", self.and_expr)
        except _Fail:
            self.memo[start] = (None, start)
            raise
        self.memo[start] = (node, self.pos)
        return node

    def and_expr(self):
        return self._chain("and", self.not_expr)

    def _chain(self, word: str, operand):
        items = [operand()]
        while True:
            start = self.pos
            try:
                self.ws()
                self.lit(word)
                self.ws()
                items.append(operand())
            except _Fail:
                self.pos = start
                break
        return items[0] if len(items) == 1 else Binary(word, items)

    def not_expr(self):
        def negated():
            self.lit("not")
            self.ws()
            inner = self.not_expr()
            if isinstance(inner, Not):                     # not not x == x
                return inner.operand
            return Not(inner)
        return self.choice(negated, self.group)

    def group(self):
        def paren():
            self.lit("(")
            self.ows()
            e = self.or_expr()
            self.ows()
            self.lit(")")
            return e

        def unmatched():
            self.lit("(")
            self.ows()
            self.or_expr()
            self.ows()
            self.not_ahead(lambda: self.lit(")"))
            self.predicate_error("Unmatched parentheses")
        return self.rule("grouping", lambda: self.choice(paren, self.match, unmatched))

    def match(self):
        return self.rule("match", lambda: self.choice(self.match_sel_op_value,
                                                      self.match_sel_op,
                                                      self.match_value_op_sel))

    def match_sel_op_value(self):
        def inner():
            sel = self.selector()
            op = self.choice(self.op_equal, self.op_not_equal, self.op_contains,
                             self.op_not_contains, self.op_matches, self.op_not_matches)
            return Match(sel, op, self.value())
        return self.rule("match", inner)

    def match_sel_op(self):
        def inner():
            sel = self.selector()
            op = self.choice(self.op_is_empty, self.op_is_not_empty)
            return Match(sel, op, None)
        return self.rule("match", inner)

    def match_value_op_sel(self):
        def good():
            value = self.value()
            op = self.choice(self.op_in, self.op_not_in)
            return Match(self.selector(), op, value)

        def bad():
            self.value()
            self.choice(self.op_in, self.op_not_in)
            self.not_ahead(self.selector)
            self.predicate_error("Invalid selector")
        return self.rule("match", lambda: self.choice(good, bad))

    def _keyword_op(self, *words: str) -> None:
        for w in words:
            self.ws()
            self.lit(w)

    def _symbol_op(self, symbol: str) -> None:
        self.ows()
        self.lit(symbol)
        self.ows()

    def op_equal(self):
        self._symbol_op("==")
        return EQUAL

    def op_not_equal(self):
        self._symbol_op("!=")
        return NOT_EQUAL

    def op_is_empty(self):
        self._keyword_op("is", "empty")
        return IS_EMPTY

    def op_is_not_empty(self):
        self._keyword_op("is", "not", "empty")
        return IS_NOT_EMPTY

    def op_in(self):
        self._keyword_op("in")
        self.ws()
        return IN

    def op_not_in(self):
        self._keyword_op("not", "in")
        self.ws()
        return NOT_IN

    def op_contains(self):
        self._keyword_op("contains")
        self.ws()
        return IN

    def op_not_contains(self):
        self._keyword_op("not", "contains")
        self.ws()
        return NOT_IN

    def op_matches(self):
        self._keyword_op("matches")
        self.ws()
        return MATCHES

    def op_not_matches(self):
        self._keyword_op("not", "matches")
        self.ws()
        return NOT_MATCHES

    def identifier(self) -> str:
        start = self.pos
        self.cls("[a-zA-Z]", lambda c: c.isascii() and c.isalpha())
        self.star(lambda: self.cls("[a-zA-Z0-9_]", _ident_char))
        return self.s[start:self.pos]

    def selector(self) -> list:
        def inner():
            first = self.identifier()

            def dotted():
                self.lit(".")
                return self.identifier()
            return [first] + self.star(lambda: self.choice(dotted, self.index))
        return self.rule("selector", inner)

    def index(self) -> str:
        def good():
            self.lit("[")
            self.ows()
            lit = self.string()
            self.ows()
            self.lit("]")
            return lit

        def invalid():
            self.lit("[")
            self.ows()
            self.not_ahead(self.string)
            self.predicate_error("Invalid index")

        def unclosed():
            self.lit("[")
            self.ows()
            self.string()
            self.ows()
            self.not_ahead(lambda: self.lit("]"))
            self.predicate_error("Unclosed index expression")
        return self.rule("index", lambda: self.choice(good, invalid, unclosed))

    def value(self) -> str:
        return self.rule("value", lambda: self.choice(lambda: ".".join(self.selector()),
                                                      self.number, self.string))

    def number(self) -> str:
        def integer_or_float():
            self.choice(lambda: self.lit("0"),
                        lambda: (self.cls("[1-9]", "123456789".__contains__),
                                 self.star(lambda: self.cls("[0-9]", str.isdigit))))

            def frac():
                self.lit(".")
                self.cls("[0-9]", _digit)
                self.star(lambda: self.cls("[0-9]", _digit))
            self.opt(frac)

        def after_numbers():
            self.and_ahead(lambda: self.choice(self.ws, self.eof, lambda: self.lit(")")))

        def good():
            start = self.pos
            self.opt(lambda: self.lit("-"))
            integer_or_float()
            after_numbers()
            return self.s[start:self.pos]

        def bad():
            self.opt(lambda: self.lit("-"))
            integer_or_float()
            self.not_ahead(after_numbers)
            self.predicate_error("Invalid number literal")
        return self.rule("number", lambda: self.choice(good, bad))

    def string(self) -> str:
        def raw_char():
            self.not_ahead(lambda: self.lit("`"))
            return self.any_char()

        def dq_char():
            self.not_ahead(lambda: self.lit('"'))
            return self.any_char()

        def good():
            start = self.pos

            def raw():
                self.lit("`")
                self.star(raw_char)
                self.lit("`")

            def dq():
                self.lit('"')
                self.star(dq_char)
                self.lit('"')
            self.choice(raw, dq)
            try:
                return go_unquote(self.s[start:self.pos])
            except ValueError as exc:
                self._error(start, str(exc))
                raise _Fail() from None

        def unterminated():
            self.choice(lambda: (self.lit("`"), self.star(raw_char)),
                        lambda: (self.lit('"'), self.star(dq_char)))
            self.eof()
            self.predicate_error("Unterminated string literal")
        return self.rule("string", lambda: self.choice(good, unterminated))


def _ident_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def _digit(c: str) -> bool:
    return c in "0123456789"


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"'}


def go_unquote(lit: str) -> str:
    """Go's strconv.Unquote for "..." and `...` literals; ValueError("invalid syntax")."""
    if lit.startswith("`"):
        return lit[1:-1].replace("\r", "")
    body, out, i = lit[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\n":
            raise ValueError("invalid syntax")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("invalid syntax")
        e = body[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("invalid syntax")
            code = int(digits, 16)
            if e != "x" and (code > 0x10FFFF or 0xD800 <= code < 0xE000):
                raise ValueError("invalid syntax")
            out.append(chr(code))
            i += 2 + n
        elif e in "01234567":
            digits = body[i + 1:i + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def _format_expected(expected: set) -> str:
    items = sorted("EOF" if e == "!." else e for e in expected)
    if not items:
        return "no match found"
    if len(items) == 1:
        return "no match found, expected: " + items[0]
    return "no match found, expected: " + ", ".join(items[:-1]) + " or " + items[-1]


def parse(text: str):
    """The expression's AST; FilterError with go-bexpr's (pigeon's) message."""
    p = _Parser(text)
    try:
        ast = p.input()
    except _Fail:
        ast = None
    except RecursionError:                                  # Go's stack is larger than ours
        raise FilterError("1:1 (0): expression is nested too deeply") from None
    errors = []
    for pos, msg in p.errors:                               # pigeon's errList.dedupe
        line = f"{p.where(pos)}: {msg}"
        if line not in errors:
            errors.append(line)
    if ast is None and not errors:
        errors.append(f"{p.where(max(p.max_fail, 0))}: {_format_expected(p.expected)}")
    if errors:
        raise FilterError("\n".join(errors))
    return ast


# ----------------------------------------------------------------------------- validation

_PRIMITIVE_OPS = (EQUAL, NOT_EQUAL)
_STRING_OPS = (EQUAL, NOT_EQUAL, IN, NOT_IN, MATCHES, NOT_MATCHES)


def _config(t: "Type | None"):
    """(supported operations, coercion type, sub-fields {name: type}) for a field's type."""
    if t is None:
        return (), None, {}
    if t in _PRIMITIVES:
        return (_STRING_OPS if t == STR else _PRIMITIVE_OPS), t, {}
    if isinstance(t, MapOf):
        sub = {_ANY: t.value} if t.value is not None else {}
        return (IS_EMPTY, IS_NOT_EMPTY, IN, NOT_IN), STR, sub
    if isinstance(t, SliceOf):
        if t.item in _PRIMITIVES:
            return (IN, NOT_IN, IS_EMPTY, IS_NOT_EMPTY), t.item, {}
        return (IS_EMPTY, IS_NOT_EMPTY), None, _config(t.item)[2]
    return (), None, {k: v for k, v in t.fields.items() if v is not None}


def _go_int(raw: str, unsigned: bool) -> int:
    """strconv.ParseInt/ParseUint(raw, 0, 64) with its error text (underscores aside)."""
    fn = "strconv.ParseUint" if unsigned else "strconv.ParseInt"
    s, neg = raw, False
    if not unsigned and s[:1] in ("+", "-"):
        neg, s = s[0] == "-", s[1:]
    base, digits = 10, s
    low = s[:2].lower()
    if low in ("0x", "0b", "0o"):
        base, digits = {"0x": 16, "0b": 2, "0o": 8}[low], s[2:]
    elif s[:1] == "0" and len(s) > 1:
        base, digits = 8, s[1:]
    allowed = "0123456789abcdefABCDEF"[:base + (base > 10) * (base - 10)]
    if not digits or any(c not in allowed for c in digits):
        raise FilterCoerceError(f"{fn}: parsing {_quote(raw)}: invalid syntax")
    v = int(digits, base)
    v = -v if neg else v
    lo, hi = (0, 2 ** 64 - 1) if unsigned else (-2 ** 63, 2 ** 63 - 1)
    if not lo <= v <= hi:
        raise FilterCoerceError(f"{fn}: parsing {_quote(raw)}: value out of range")
    return v


class FilterCoerceError(ValueError):
    pass


_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}


def coerce(raw: str, t: str) -> Any:
    """go-bexpr's coercion of a raw value to a field's primitive type."""
    if t == STR:
        return raw
    if t == BOOL:
        if raw not in _BOOLS:
            raise FilterCoerceError(f"strconv.ParseBool: parsing {_quote(raw)}: invalid syntax")
        return _BOOLS[raw]
    if t == INT:
        return _go_int(raw, False)
    if t == UINT:
        return _go_int(raw, True)
    try:
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity|nan)", raw,
                            re.IGNORECASE):
            raise ValueError
        return float(raw)
    except ValueError:
        raise FilterCoerceError(
            f"strconv.ParseFloat: parsing {_quote(raw)}: invalid syntax") from None


def _sel(path: list) -> str:
    return _quote(".".join(path))


def _validate(node, fields: dict) -> None:
    if isinstance(node, Not):
        return _validate(node.operand, fields)
    if isinstance(node, Binary):
        for operand in node.operands:
            _validate(operand, fields)
        return None
    configs, last = fields, None
    for idx, name in enumerate(node.selector):
        if name in configs:
            last = configs[name]
        elif _ANY in configs:
            last = configs[_ANY]
        else:
            raise FilterError(f"Selector {_sel(node.selector[:idx + 1])} is not valid")
        configs = _config(last)[2]
    ops, ctype, _ = _config(last)
    if node.op not in ops:
        raise FilterError(
            f"Invalid match operator {_quote(node.op)} for selector {_sel(node.selector)}")
    if node.value is None:
        return
    if ctype is not None:
        try:
            node.converted = coerce(node.value, ctype)
        except FilterCoerceError as exc:
            raise FilterError(f"Failed to coerce value {_quote(node.value)} for selector "
                              f"{_sel(node.selector)}: {exc}") from None
    else:
        node.converted = node.value
    if node.op in (MATCHES, NOT_MATCHES):
        try:
            node.converted = re.compile(node.value)
        except re.error as exc:
            raise FilterError(f"Failed to compile regular expression {_quote(node.value)}: "
                              f"error parsing regexp: {exc}") from None


# ----------------------------------------------------------------------------- evaluation

_ZERO = {STR: "", INT: 0, UINT: 0, BOOL: False, FLOAT: 0.0}


def _zero(t):
    if t in _ZERO:
        return _ZERO[t]
    if isinstance(t, SliceOf):
        return []
    return {}


def _sub_type(t, name: str):
    if isinstance(t, Struct):
        return t.fields.get(name)
    if isinstance(t, MapOf):
        return t.value
    return None


def _same(value, want, t) -> bool:
    """Go's equality of a field value (JSON-decoded) and the coerced expression value."""
    if t == STR:
        return isinstance(value, str) and value == want
    if t == BOOL:
        return isinstance(value, bool) and value is want
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == want


def _final(m: Match, value, t) -> bool:
    if value is None:
        value = _zero(t)
    op = m.op
    if op in (EQUAL, NOT_EQUAL):
        eq = _same(value, m.converted, t)
        return eq if op == EQUAL else not eq
    if op in (IN, NOT_IN):
        if isinstance(t, MapOf):
            found = isinstance(value, dict) and m.converted in value
        elif isinstance(t, SliceOf):
            found = any(_same(item, m.converted, t.item) for item in value or [])
        else:
            found = isinstance(value, str) and m.converted in value
        return found if op == IN else not found
    if op in (IS_EMPTY, IS_NOT_EMPTY):
        empty = len(value) == 0
        return empty if op == IS_EMPTY else not empty
    found = isinstance(value, str) and m.converted.search(value) is not None
    return found if op == MATCHES else not found


def _eval_match(m: Match, depth: int, value, t) -> bool:
    if depth >= len(m.selector):
        return _final(m, value, t)
    if isinstance(t, SliceOf):                              # ANY element
        return any(_eval_match(m, depth, item, t.item) for item in (value or []))
    name = m.selector[depth]
    if isinstance(t, MapOf):
        if not isinstance(value, dict) or name not in value:
            return m.op not in (EQUAL, IS_NOT_EMPTY, IN, MATCHES)
        return _eval_match(m, depth + 1, value[name], t.value)
    sub = _sub_type(t, name)
    field = value.get(name) if isinstance(value, dict) else None
    if field is None:
        field = _zero(sub)
    return _eval_match(m, depth + 1, field, sub)


def _evaluate(node, row, t) -> bool:
    if isinstance(node, Not):
        return not _evaluate(node.operand, row, t)
    if isinstance(node, Binary):
        if node.op == "and":
            return all(_evaluate(x, row, t) for x in node.operands)
        return any(_evaluate(x, row, t) for x in node.operands)
    return _eval_match(node, 0, row, t)


class Filter:
    """A validated expression for records of one type; `matches(row)` and `apply(rows)`."""

    def __init__(self, ast, schema: Struct) -> None:
        self.ast, self.schema = ast, schema

    def matches(self, row: dict) -> bool:
        return _evaluate(self.ast, row, self.schema)

    def apply(self, rows):
        """A list keeps its order; a dict keeps the entries whose value matches."""
        if isinstance(rows, dict):
            return {k: v for k, v in rows.items() if self.matches(v)}
        return [r for r in rows if self.matches(r)]


def compile(text: str, schema: Struct) -> Filter:           # noqa: A001 - bexpr's verb
    """Parse and validate `text` for records of `schema`; FilterError carries Consul's
    message ("Failed to create boolean expression evaluator: ...")."""
    try:
        ast = parse(text)
        _validate(ast, _config(schema)[2])
    except FilterError as exc:
        raise FilterError(f"Failed to create boolean expression evaluator: {exc}") from None
    return Filter(ast, schema)

"""Linearizability of key-value client histories (put / get / cas / delete).

A history is linearizable when every operation can be given one instant between its call
and its return such that, taken in that order, the operations behave like a sequential
map (Herlihy & Wing 1990). Checking is NP-complete in general; the search below is the
usual practical one:

* Per-key partitioning. Linearizability is local (Herlihy & Wing, Theorem 1): a history is
  linearizable iff its restriction to each key is, so each key is searched on its own.
* Wing & Gong's depth-first search over the time-ordered list of call/return events: at
  each point, pick an operation whose call has been seen and that has not been placed
  yet, check it against the register, place it, and start over from the earliest event;
  reaching the return of an operation that has not been placed means the last choice was
  wrong (backtrack).
* Lowe's memoization: the pair (set of placed operations, register value) fully
  determines what can still happen, so a pair seen once is never searched again.

Unknown outcomes (ret None: the client timed out or crashed). Such an operation may have
taken effect at any instant after its call, or never. It is modelled as returning at
+infinity: it never forces a backtrack, and once every operation with a known return is
placed the search succeeds (whatever is left takes effect "at the end", where nothing
observes it, which is the same as never). A read with an unknown outcome constrains
nothing and is dropped. An unknown write whose value nobody could have observed is
dropped too (see `_prunable`), which keeps the search small after partitions, where many
writes time out.

Values must be hashable (they are part of the memo key).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

KINDS = ("put", "get", "cas", "delete")


@dataclass(slots=True)
class Op:
    """One client operation. ret None = outcome unknown (it may or may not have taken effect,
    at any time after `call`)."""
    client: int
    kind: str                       # "put" | "get" | "cas" | "delete"
    key: str
    value: object = None            # put: the value; cas: the new value
    expected: object = None         # cas: the value it compares against
    call: float = 0.0
    ret: float | None = None
    output: object = None           # get: value read (None = absent); cas: bool; put/delete: None

    def describe(self) -> str:
        """One line naming the op, its interval and its result (for failure reports)."""
        if self.kind == "put":
            what = f"put({self.key!r}, {self.value!r})"
        elif self.kind == "delete":
            what = f"delete({self.key!r})"
        elif self.kind == "cas":
            what = f"cas({self.key!r}, {self.expected!r} -> {self.value!r})"
        else:
            what = f"get({self.key!r})"
        if self.ret is None:
            res = " -> ?"
        elif self.kind in ("get", "cas"):
            res = f" -> {self.output!r}"
        else:
            res = ""
        end = "?" if self.ret is None else f"{self.ret:g}"
        return f"client {self.client}: {what}{res} [{self.call:g}, {end}]"


@dataclass(slots=True)
class CheckResult:
    """The verdict. ok None = inconclusive (the step budget ran out before a verdict)."""
    ok: bool | None
    key: str | None                 # the first key that failed (or ran out of budget)
    detail: str
    ops: int                        # operations considered (after dropping unknown reads)
    elapsed_steps: int


class BudgetExhausted(Exception):
    pass


_DOMINATION_SCAN = 64     # unknown-op sets compared per memo key (bounds the cost per step)


class _Hidden:
    """The register value for "something no operation ever observed": within one key, all
    such values behave alike (no get returned them, no cas compared against them), so the
    search treats them as one, which collapses many memo entries."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "<a value nobody observed>"


HIDDEN = _Hidden()


def _apply(state, op: Op, known: bool, written):
    """(allowed, next state) of `op` on a register holding `state` (None = absent);
    `written` is what a write leaves in the register (its value, or HIDDEN)."""
    kind = op.kind
    if kind == "get":
        return op.output == state, state
    if kind == "put" or kind == "delete":
        return True, written
    # cas. A known outcome must match the comparison; an unknown one that takes effect at
    # this instant does whatever the comparison says (not taking effect at all = being
    # placed after every known operation, where it is unobservable).
    hit = state == op.expected
    if not known:
        return True, (written if hit else state)
    if op.output:
        return hit, written
    return not hit, state


def _prunable(ops: list[Op]) -> list[Op]:
    """Drop unknown-outcome reads, and unknown-outcome writes nothing could have observed.

    Why dropping such a write W (writing v) keeps the verdict: take any linearization that
    contains W, and move W to the end. Only operations placed between W and the next state
    change see a different value (the one before W, call it s, instead of v). A get there
    returned v, and a cas that applied there expected v: both are excluded by "v never
    observed". A cas with a known failure placed there might now succeed, if s equals what
    it expected: excluded by asking that no such cas returns after W's call with an
    expected value anything ever wrote (or None, the value of an absent key). Unknown cas
    there can still be left unapplied. Puts and deletes do not look at the value.
    Conversely, dropping a write never makes a history linearizable that was not (the
    write could always have been placed last, where it changes nothing).
    """
    kept = [op for op in ops if not (op.ret is None and op.kind == "get")]
    observed = set()
    writable = {None}
    for op in kept:
        if op.kind == "get":
            observed.add(op.output)
        elif op.kind == "cas":
            observed.add(op.expected)
            writable.add(op.value)
        elif op.kind == "put":
            writable.add(op.value)
    # The latest return of a known failed cas that could have been fooled.
    risky_until = max((op.ret for op in kept if op.kind == "cas" and op.ret is not None
                       and not op.output and op.expected in writable), default=None)
    out = []
    for op in kept:
        if op.ret is None and op.kind != "get":
            written = None if op.kind == "delete" else op.value
            if written not in observed and (risky_until is None or op.call > risky_until):
                continue
        out.append(op)
    return out


def _check_key(ops: list[Op], budget: int) -> tuple[bool, int, str]:
    """Search one key's history. Returns (ok, steps used, detail); raises BudgetExhausted
    (with the steps used as its argument) when `budget` steps did not suffice."""
    n = len(ops)
    if n == 0:
        return True, 0, ""
    # Events in a doubly linked list: call of op i = 2i+1, return of op i = 2i+2 (unknown
    # outcomes have no return event); 0 is the head. Calls sort before returns at equal
    # times: touching intervals count as concurrent.
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, 2 * i + 1))
        if op.ret is not None:
            events.append((op.ret, 1, 2 * i + 2))
    events.sort()
    size = 2 * n + 2
    nxt = [-1] * size
    prv = [-1] * size
    prev = 0
    for _, _, ev in events:
        nxt[prev] = ev
        prv[ev] = prev
        prev = ev
    known = [op.ret is not None for op in ops]
    observed: set = set()
    for op in ops:
        if op.kind == "get":
            observed.add(op.output)
        elif op.kind == "cas":
            observed.add(op.expected)
    written = [None if op.kind == "get" else
               (None if op.kind == "delete" else op.value) for op in ops]
    written = [w if w in observed else HIDDEN for w in written]
    # Unknown writes whose value nobody observed: see `hidden_useful` below.
    hidden_unknown = [not known[i] and ops[i].kind != "get" and written[i] is HIDDEN
                      for i in range(n)]
    failed_cas = [known[i] and ops[i].kind == "cas" and not ops[i].output for i in range(n)]
    unknown_mask = 0
    for i in range(n):
        if not known[i]:
            unknown_mask |= 1 << i
    returns_left = sum(known)
    if returns_left == 0:           # only unknown writes: all may never have happened
        return True, 0, ""

    def unlink(e: int) -> None:
        p, q = prv[e], nxt[e]
        nxt[p] = q
        if q != -1:
            prv[q] = p

    def relink(e: int) -> None:     # undo unlink(e); valid in reverse order of unlinking
        p, q = prv[e], nxt[e]
        nxt[p] = e
        if q != -1:
            prv[q] = e

    def candidates() -> list[int]:
        """Ops that may take effect now: calls before the first pending return. Known
        outcomes first; an unknown write is only tried when they are exhausted (placing it
        later is never worse, see the memo below)."""
        first, later = [], []
        e = nxt[0]
        while e != -1 and e & 1:
            i = e >> 1
            (first if known[i] else later).append(i)
            e = nxt[e]
        return first + later

    # Memo (Lowe): a configuration = (placed ops, register value). Refinement for unknown
    # outcomes: a configuration that left a subset of the same unknown ops unplaced can do
    # everything one that placed them can (they can still be placed at any later instant),
    # so once (known placed, value, unknown placed U) failed, any U' ⊇ U fails as well.
    memo: dict[tuple, list[int]] = {}
    visited: set = set()
    state = None if None in observed else HIDDEN
    placed = 0
    # Frames: (candidates, next position, op placed from it, state before it).
    cand = candidates()
    pos = 0
    stack: list[tuple[list[int], int, int, object]] = []
    best_depth = -1
    best_info: tuple = ()
    steps = 0
    while True:
        steps += 1
        if steps > budget:
            raise BudgetExhausted(steps)
        moved = False
        while pos < len(cand):
            i = cand[pos]
            pos += 1
            ok, new_state = _apply(state, ops[i], known[i], written[i])
            if not ok:
                continue
            if not known[i]:
                # An unknown op that leaves the register as it is can as well stay unplaced
                # (it is always available later). One that hides the value only matters if
                # a known failed cas comparing against the current value comes right after
                # it (any other op up to the next write cannot tell a hidden value from the
                # current one, so leaving the write unplaced changes nothing it observes),
                # and that cas is then a candidate already.
                if new_state == state:
                    continue
                if hidden_unknown[i] and not any(failed_cas[j] and ops[j].expected == state
                                                 for j in cand):
                    continue
            new_placed = placed | (1 << i)
            exact = (new_placed, new_state)
            if exact in visited:
                continue
            visited.add(exact)
            if unknown_mask:
                u = new_placed & unknown_mask
                key = (new_placed ^ u, new_state)
                seen = memo.get(key)
                if seen is None:
                    memo[key] = [u]
                elif any(m & u == m for m in seen[:_DOMINATION_SCAN]):
                    continue
                else:
                    seen.append(u)
            stack.append((cand, pos, i, state))
            state, placed = new_state, new_placed
            unlink(2 * i + 1)
            if known[i]:
                unlink(2 * i + 2)
                returns_left -= 1
                if returns_left == 0:
                    return True, steps, ""
            cand = candidates()
            pos = 0
            moved = True
            break
        if moved:
            continue
        # Nothing can be placed here: undo the last choice.
        if len(stack) > best_depth:
            e = nxt[0]
            while e != -1 and e & 1:
                e = nxt[e]
            best_depth = len(stack)
            best_info = ((e - 2) >> 1, state,
                         [f[2] for f in stack], list(cand))
        if not stack:
            return False, steps, _explain(ops, best_info)
        cand, pos, i, state = stack.pop()
        placed &= ~(1 << i)
        if known[i]:
            relink(2 * i + 2)
            returns_left += 1
        relink(2 * i + 1)


def _explain(ops: list[Op], info: tuple) -> str:
    blocked, state, order, cand = info
    lines = [f"at most {len(order)} of {len(ops)} operations could be linearized; there,"
             f" with the register holding {state!r}, this operation must take effect"
             f" before it returns but cannot:",
             "  " + ops[blocked].describe()]
    pending = [j for j in cand if j != blocked]
    if pending:
        lines.append("and no order of the others that could take effect then helps:")
        lines.extend("  " + ops[j].describe() for j in sorted(pending, key=lambda j: ops[j].call)[:12])
    tail = order[-8:]
    if tail:
        lines.append("last operations of the longest linearization found:")
        lines.extend("  " + ops[j].describe() for j in tail)
    return "\n".join(lines)


def _validate(history: Iterable[Op]) -> None:
    for op in history:
        if op.kind not in KINDS:
            raise ValueError(f"unknown operation kind {op.kind!r}")
        if op.ret is not None and op.ret < op.call:
            raise ValueError(f"operation returns before its call: {op.describe()}")


def check(history: list[Op], *, budget: int = 2_000_000) -> CheckResult:
    """Is `history` linearizable for a key-value map with put/get/cas/delete?

    `budget` bounds the search steps over all keys; when it runs out before a verdict the
    result is inconclusive (ok None). A non-linearizable key is reported with the
    operations around the point where the longest linearization got stuck."""
    _validate(history)
    by_key: dict[str, list[Op]] = {}
    for op in history:
        by_key.setdefault(op.key, []).append(op)
    parts = {k: _prunable(v) for k, v in by_key.items()}
    total = sum(len(v) for v in parts.values())
    # Smaller keys first: a violation there is found cheaply, and the order is fixed.
    order = sorted(parts, key=lambda k: (len(parts[k]), str(k)))
    used = 0
    for key in order:
        ops = parts[key]
        try:
            ok, steps, detail = _check_key(ops, budget - used)
        except BudgetExhausted as exc:
            used += exc.args[0] - 1
            return CheckResult(None, key, f"search budget of {budget} steps exhausted on key"
                               f" {key!r} ({len(ops)} operations)", total, used)
        used += steps
        if not ok:
            return CheckResult(False, key, f"key {key!r}: {detail}", total, used)
    return CheckResult(True, None, f"{total} operations on {len(parts)} keys linearizable",
                       total, used)

"""The two searches behind ``configsvc.sim.linearizability``.

Both decide whether ops with real-time intervals ``[call, ret]`` can be
ordered so that (a) an op that returned before another was called comes
first, and (b) the sequential ``step`` relation accepts each op with the
output observed. Times are sorted with calls before returns at equal instants
(touching ops are concurrent). An op with ``ret is None`` has outcome unknown:
its output is ``UNKNOWN``, which ``step`` must accept in every state.

``dfs`` — Wing–Gong/Lowe as in Porcupine. Call/return events form a doubly
linked list; walking it, a call is a candidate to linearize next, a return of
an unlinearized op forces a backtrack. Linearizing an op lifts both its events
out of the list (undone exactly in reverse). Each (bitset of linearized ops,
state) is explored once. Explicit stack, no recursion. It finds *a* witness
fast, but proving there is none can take long (every alternative prefix).

``sweep`` — just-in-time linearization (Lowe 2017), breadth first: walk the
events in time order keeping every *configuration* (which open ops are already
linearized, state). At the return of op ``i``, extend each configuration by
any sequence of open ops ending in ``i``; configurations where that is
impossible die. Ops are linearized only when a return forces them, so
configurations stay few. It proves violations fast and names the first
return that no configuration survives: the shortest non-linearizable prefix.

Unknown ops never return; an unknown op not yet linearized can always go last,
where nobody observes it. So among configurations equal but for the set of
unknown ops consumed, one consuming a subset dominates, and only the minimal
sets (an antichain) are kept. And unknown ops with equal inputs are
interchangeable (both called, both returning never), so only the first unused
one of each such class is tried. Without these, every timed-out op would
double the configurations.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any

__all__ = ["Problem", "Verdict", "dfs", "sweep"]

StepFn = Callable[[Any, Any, Any], tuple[bool, Any]]


@dataclass(frozen=True)
class Problem:
    """One sub-history, as parallel lists indexed by op."""

    init: Any
    step: StepFn
    inputs: Sequence[Any]
    outputs: Sequence[Any]  # UNKNOWN where ``rets[i] is None``
    calls: Sequence[float]
    rets: Sequence[float | None]

    def events(self) -> list[tuple[float, int, int]]:
        """(time, 0 = call / 1 = return, op), sorted; unknown returns at +inf."""
        calls = [(t, 0, i) for i, t in enumerate(self.calls)]
        rets = [(math.inf if t is None else t, 1, i) for i, t in enumerate(self.rets)]
        return sorted(calls + rets)


@dataclass(frozen=True)
class Verdict:
    """``status``: "ok", "violation" or "exhausted" (budget ran out first).

    For a violation found by ``sweep``: ``blocking`` could not be linearized
    before its return; just before it, ``states`` were the possible model
    states, ``open_ops`` were called and not returned (``blocking`` and unknown
    ops included), and ``returned`` (in return order) is a linearizable prefix.
    """

    status: str
    steps: int
    blocking: int = -1
    states: tuple[Any, ...] = ()
    open_ops: tuple[int, ...] = ()
    returned: tuple[int, ...] = ()


def dfs(p: Problem, budget: int | None) -> Verdict:
    """Porcupine's search; a violation verdict carries no details."""
    n = len(p.calls)
    head, end = 0, 2 * n + 1
    nxt = [*range(1, 2 * n + 2), end]
    prv = [head, *range(0, 2 * n + 1)]
    node_op = [-1] * (2 * n + 2)
    is_call = [False] * (2 * n + 2)
    call_node = [0] * n
    ret_node = [0] * n
    for node, (_, kind, i) in enumerate(p.events(), start=1):  # node numbers follow time
        node_op[node] = i
        is_call[node] = kind == 0
        if kind == 0:
            call_node[i] = node
        else:
            ret_node[i] = node

    step, inputs, outputs = p.step, p.inputs, p.outputs
    state: Any = p.init
    linearized = 0
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[int, Any]] = []  # (op, state before it)
    steps = 0
    node = nxt[head]
    while nxt[head] != end:
        steps += 1
        if budget is not None and steps > budget:
            return Verdict("exhausted", steps)
        if is_call[node]:
            i = node_op[node]
            legal, after = step(state, inputs[i], outputs[i])
            if legal:
                grown = linearized | (1 << i)
                if (grown, after) not in seen:
                    seen.add((grown, after))
                    stack.append((i, state))
                    state, linearized = after, grown
                    for x in (call_node[i], ret_node[i]):  # lift
                        nxt[prv[x]] = nxt[x]
                        prv[nxt[x]] = prv[x]
                    node = nxt[head]
                    continue
            node = nxt[node]
            continue
        # The return of an op not linearized yet: this prefix is a dead end.
        if not stack:
            return Verdict("violation", steps)
        i, state = stack.pop()
        linearized ^= 1 << i
        for x in (ret_node[i], call_node[i]):  # unlift, in reverse
            prv[nxt[x]] = x
            nxt[prv[x]] = x
        node = nxt[call_node[i]]
    return Verdict("ok", steps)


class _Configurations:
    """(known-open mask, state) -> antichain of unknown-op masks, insertion-ordered."""

    def __init__(self) -> None:
        self._by: dict[tuple[int, Any], list[int]] = {}

    def add(self, known: int, unknown: int, state: Any) -> bool:
        """Add unless dominated (same known/state, subset of unknowns); True if added."""
        key = (known, state)
        masks = self._by.get(key)
        if masks is None:
            self._by[key] = [unknown]
            return True
        for m in masks:
            if not m & ~unknown:
                return False
        masks[:] = [m for m in masks if unknown & ~m]
        masks.append(unknown)
        return True

    def __bool__(self) -> bool:
        return bool(self._by)

    def items(self) -> list[tuple[int, int, Any]]:
        return [(k, u, s) for (k, s), masks in self._by.items() for u in masks]


def sweep(p: Problem, budget: int | None) -> Verdict:
    """Just-in-time breadth-first search (see the module doc)."""
    step, inputs, outputs = p.step, p.inputs, p.outputs
    slot_of: dict[int, int] = {}  # open known-outcome op -> its bit in ``known``
    free_slots: list[int] = []
    next_slot = 0
    unknown_ops: list[int] = []  # called so far; op k of this list has bit 1 << k
    # input -> (bits of the called unknown ops with it, in call order; their mask).
    # A configuration always consumes a prefix of a class: the first unused.
    classes: dict[Any, tuple[list[int], int]] = {}
    configs: list[tuple[int, int, Any]] = [(0, 0, p.init)]
    returned: list[int] = []
    steps = 0
    for _, kind, i in p.events():
        if kind == 0:
            if p.rets[i] is None:
                members, mask = classes.get(inputs[i], ([], 0))
                members.append(1 << len(unknown_ops))
                classes[inputs[i]] = (members, mask | members[-1])
                unknown_ops.append(i)
            elif free_slots:
                slot_of[i] = heappop(free_slots)
            else:
                slot_of[i], next_slot = next_slot, next_slot + 1
            continue
        if p.rets[i] is None:
            break  # only unknown returns remain: everything left can go last
        slot = slot_of.pop(i)
        bit = 1 << slot
        others = [(1 << s, j) for j, s in slot_of.items()]
        reached = _Configurations()
        for known, unknown, state in configs:
            reached.add(known, unknown, state)
        survivors = _Configurations()
        todo = deque(configs)
        while todo:
            known, unknown, state = todo.popleft()
            if known & bit:
                survivors.add(known & ~bit, unknown, state)
                continue
            steps += 1 + len(others) + len(classes)
            if budget is not None and steps > budget:
                return Verdict("exhausted", steps)
            legal, after = step(state, inputs[i], outputs[i])
            if legal:
                survivors.add(known, unknown, after)
            for b, j in others:
                if not known & b:
                    legal, after = step(state, inputs[j], outputs[j])
                    if legal and reached.add(known | b, unknown, after):
                        todo.append((known | b, unknown, after))
            for op_input, (members, mask) in classes.items():
                used = (unknown & mask).bit_count()
                if used < len(members):
                    b = members[used]
                    legal, after = step(state, op_input, outputs[unknown_ops[b.bit_length() - 1]])
                    if legal and reached.add(known, unknown | b, after):
                        todo.append((known, unknown | b, after))
        if not survivors:
            states = tuple(dict.fromkeys(state for _, _, state in configs))
            open_ops = (i, *slot_of, *unknown_ops)
            return Verdict("violation", steps, i, states, open_ops, tuple(returned))
        configs = survivors.items()
        heappush(free_slots, slot)
        returned.append(i)
    return Verdict("ok", steps)

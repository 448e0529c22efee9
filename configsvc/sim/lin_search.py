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
sets (an antichain) are kept. Without this, every timed-out op would double
the configurations.

Exact shortcuts, each replacing a configuration by one that can do all it can
(so a witness is never lost, and no configuration is made up):

- *Reads* (``Problem.read_only``: ops that never change the state where they
  are accepted) are not tried at every place: an open read is linearized in
  every configuration as soon as its state accepts it — at its call, or when a
  step reaches such a state — because taking it then changes nothing that
  follows. A read whose return finds it not linearized kills the
  configuration. Unknown reads (accepted anywhere) are left out.
- *Interchangeable ops* (equal ``Problem.input_key`` and outputs, e.g. two
  deletes): a configuration takes the open one that must return first
  (earliest deadline first; having taken any other, it could swap them).
  Unknown ops all return never: the first called.
- *State keys* (``Problem.state_key``): states no op of the history tells
  apart are one configuration (e.g. two values nobody ever reads).

Without the first two, n open ops concurrent with a return cost up to 2**n
configurations there (the sweep would try every subset of them first).
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Hashable, Sequence
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
    # What is known of the ops (None: nothing), for ``sweep``; ``dfs`` uses none of it.
    #: (input, output) -> True if ``step`` never changes the state where it
    #: accepts the op (a read)
    read_only: Callable[[Any, Any], bool] | None = None
    #: ops with equal input keys (and equal outputs) are interchangeable: they
    #: are accepted in the same states, leading to states of equal ``state_key``
    input_key: Callable[[Any], Hashable] | None = None
    #: states with equal keys are accepted by the same ops, leading to states
    #: of equal keys (no op of this history tells them apart)
    state_key: Callable[[Any], Hashable] | None = None

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
    """(known-open mask, state key) -> (a state, antichain of unknown-op masks).

    Insertion-ordered. States of equal key are interchangeable: the first one
    stands for all.
    """

    def __init__(self, state_key: Callable[[Any], Hashable]) -> None:
        self._key = state_key
        self._by: dict[tuple[int, Hashable], tuple[Any, list[int]]] = {}

    def add(self, known: int, unknown: int, state: Any) -> bool:
        """Add unless dominated (same known/state key, subset of unknowns); True if added."""
        key = (known, self._key(state))
        entry = self._by.get(key)
        if entry is None:
            self._by[key] = (state, [unknown])
            return True
        masks = entry[1]
        for m in masks:
            if not m & ~unknown:
                return False
        masks[:] = [m for m in masks if unknown & ~m]
        masks.append(unknown)
        return True

    def __bool__(self) -> bool:
        return bool(self._by)

    def items(self) -> list[tuple[int, int, Any]]:
        return [(k, u, s) for (k, _), (s, masks) in self._by.items() for u in masks]


def _same(state: Any) -> Hashable:
    return state  # type: ignore[no-any-return]


def sweep(p: Problem, budget: int | None) -> Verdict:
    """Just-in-time breadth-first search (see the module doc)."""
    step, inputs, outputs, rets = p.step, p.inputs, p.outputs, p.rets
    n = len(inputs)
    read_only = [p.read_only(inputs[j], outputs[j]) for j in range(n)] if p.read_only else [False] * n
    state_key = p.state_key or _same
    classes = _classes(p)
    slot_of: dict[int, int] = {}  # open known-outcome op -> its bit in ``known``
    free_slots: list[int] = []
    next_slot = 0
    reads: dict[int, int] = {}  # open known read-only op -> its bit (also in slot_of)
    # class -> the open known ops of it that are not reads, by (return, op)
    writes: dict[Hashable, list[int]] = {}
    unknown_ops: list[int] = []  # called so far; op k of this list has bit 1 << k
    ignored: list[int] = []  # unknown reads: accepted anywhere, changing nothing
    # class -> (bits of the called unknown ops in it, in call order; their mask).
    # A configuration always consumes a prefix of a class: the first unused.
    unknown_classes: dict[Hashable, tuple[list[int], int]] = {}
    configs: list[tuple[int, int, Any]] = [(0, 0, p.init)]
    returned: list[int] = []
    steps = 0
    for _, kind, i in p.events():
        if kind == 0:
            if rets[i] is None:
                if read_only[i]:
                    ignored.append(i)
                    continue
                members, mask = unknown_classes.get(classes[i], ([], 0))
                members.append(1 << len(unknown_ops))
                unknown_classes[classes[i]] = (members, mask | members[-1])
                unknown_ops.append(i)
                continue
            if free_slots:
                slot_of[i] = heappop(free_slots)
            else:
                slot_of[i], next_slot = next_slot, next_slot + 1
            if read_only[i]:
                # A read goes in wherever it is accepted first: the state stays.
                bit = 1 << slot_of[i]
                reads[i] = bit
                steps += len(configs)
                configs = [
                    (known | bit if step(state, inputs[i], outputs[i])[0] else known, unknown, state)
                    for known, unknown, state in configs
                ]
            else:
                insort(writes.setdefault(classes[i], []), i, key=lambda j: (rets[j], j))
            continue
        if rets[i] is None:
            break  # only unknown returns remain: everything left can go last
        bit = 1 << slot_of[i]
        # Candidates: per class of writes, the open one that returns first.
        write_classes = [[(1 << slot_of[j], j) for j in members] for members in writes.values()]
        read_bits = [(b, j) for j, b in reads.items()]
        marks_of: dict[Hashable, int] = {}
        reached = _Configurations(state_key)
        for known, unknown, state in configs:
            reached.add(known, unknown, state)
        survivors = _Configurations(state_key)
        todo = deque(configs)
        while todo:
            known, unknown, state = todo.popleft()
            if known & bit:
                survivors.add(known & ~bit, unknown, state)
                continue
            steps += 1 + len(write_classes) + len(unknown_classes)
            if budget is not None and steps > budget:
                return Verdict("exhausted", steps)
            moves: list[tuple[int, int, Any]] = []
            for write_class in write_classes:
                for wbit, w in write_class:
                    if not known & wbit:
                        legal, after = step(state, inputs[w], outputs[w])
                        if legal:
                            moves.append((known | wbit, unknown, after))
                        break
            for members, mask in unknown_classes.values():
                used = (unknown & mask).bit_count()
                if used < len(members):
                    ubit = members[used]
                    u_op = unknown_ops[ubit.bit_length() - 1]
                    legal, after = step(state, inputs[u_op], outputs[u_op])
                    if legal:
                        moves.append((known, unknown | ubit, after))
            for k, u, after in moves:
                key = state_key(after)
                marks = marks_of.get(key)
                if marks is None:
                    steps += len(read_bits)
                    marks = 0
                    for rbit, r in read_bits:
                        if step(after, inputs[r], outputs[r])[0]:
                            marks |= rbit
                    marks_of[key] = marks
                k |= marks
                if k & bit:
                    survivors.add(k & ~bit, u, after)
                elif reached.add(k, u, after):
                    todo.append((k, u, after))
        if not survivors:
            states = tuple(dict.fromkeys(state for _, _, state in configs))
            open_ops = (i, *(j for j in slot_of if j != i), *unknown_ops, *ignored)
            return Verdict("violation", steps, i, states, open_ops, tuple(returned))
        configs = survivors.items()
        heappush(free_slots, slot_of.pop(i))
        if read_only[i]:
            del reads[i]
        else:
            siblings = writes[classes[i]]
            siblings.remove(i)
            if not siblings:
                del writes[classes[i]]
        returned.append(i)
    return Verdict("ok", steps)


def _classes(p: Problem) -> list[Hashable]:
    """Per op, what it is interchangeable with: equal key and equal output."""
    keys = [p.input_key(x) for x in p.inputs] if p.input_key else p.inputs
    classes: list[Hashable] = []
    for i, (key, output) in enumerate(zip(keys, p.outputs, strict=True)):
        try:
            hash(output)
        except TypeError:
            classes.append(("op", i))  # an unhashable output: a class of its own
            continue
        classes.append((key, output))
    return classes

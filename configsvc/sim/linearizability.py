"""Linearizability checking of histories, generic over a sequential model.

A history is a list of ``Operation``s with real-time ``call`` and ``ret``. It is
linearizable if the operations can be put in one order that (a) respects real
time — an op that returned before another was called comes first — and (b)
the sequential ``Model`` accepts, op by op, with the outputs observed.

Two searches decide it (``configsvc.sim.lin_search``): first Wing–Gong/Lowe
depth-first search with Porcupine's cache of (linearized-op bitset, state)
over a linked list of call/return events — it finds a witness fast when there
is one; if it proves there is none, or runs past ``DFS_STEPS_PER_OP`` steps per
op, a breadth-first "just-in-time" sweep decides, and names the first return
no order survives: the shortest non-linearizable prefix. Events sort by time,
a call before a return at the same instant (touching ops are concurrent).
Both are loops with explicit state: no recursion limit.

Unknown outcomes: an op with ``ret is None`` (the client timed out) may take
effect at any point after its call, or never. It gets ``ret = +inf`` and output
``UNKNOWN``; models accept ``UNKNOWN`` as "whatever this op returns", applying
its effect. "Never" needs no case of its own: such an op can always be
linearized after everything else, where its effect is observed by nobody.

P-compositionality: ``Model.partition`` splits a history into independent
sub-histories (one per key for ``KVModel``), each searched alone.

What a model knows of a sub-history's ops lets the searches skip work without
changing a verdict: ``Model.read_only`` names the ops that never change the
state (a read), ``Model.observation`` the states and inputs no op of the
sub-history tells apart (for ``KVModel``: values nobody reads).

Verdicts: ``Result.ok`` is False only for a violation the search proved. When
the step ``budget`` runs out first, the result is ``ok=True, unknown=True``:
inconclusive, never a false alarm.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from configsvc.sim.lin_search import Problem, Verdict, dfs, sweep

__all__ = [
    "UNKNOWN",
    "KVModel",
    "Model",
    "Operation",
    "Result",
    "check",
    "make_problem",
]

S = TypeVar("S", bound=Hashable)


class _Unknown:
    """The output of an operation whose outcome the client never learned."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""The output the checker gives an op with ``ret is None``; models must accept it."""


class _Unobserved:
    """``KVModel``'s stand-in for every value a sub-history never observes."""

    def __repr__(self) -> str:
        return "<a value never read>"


_UNOBSERVED = _Unobserved()


class _StateKeys(dict[Hashable, Hashable]):
    """A value -> itself if observed, else ``_UNOBSERVED``; learnt on first use
    (so that later look-ups cost one dict access)."""

    def __init__(self, observed: set[Hashable]) -> None:
        super().__init__()
        self._observed = observed

    def __missing__(self, value: Hashable) -> Hashable:
        key = value if value in self._observed else _UNOBSERVED
        self[value] = key
        return key


@dataclass(frozen=True, slots=True)
class Operation:
    """One client operation: ``input`` happened at some instant in ``[call, ret]``.

    ``ret is None``: no answer reached the client (timeout) — see the module doc.
    """

    client: int
    input: Any
    output: Any
    call: float
    ret: float | None = None


class Model(ABC, Generic[S]):
    """A sequential specification: a start state and a step relation."""

    @abstractmethod
    def init(self) -> S:
        """The state before any operation."""

    @abstractmethod
    def step(self, state: S, op_input: Any, op_output: Any) -> tuple[bool, S]:
        """``(legal, next_state)`` for applying ``op_input`` observing ``op_output``.

        Must be a pure function and must not mutate ``state``. ``op_output`` is
        ``UNKNOWN`` for an op that timed out: return ``legal=True`` in every
        state, applying the op's effect. Inputs are hashable, and two timed-out
        ops with equal inputs are treated as interchangeable.
        """

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        """Independent sub-histories (default: the whole history)."""
        return [list(history)]

    def read_only(self, op_input: Any, op_output: Any) -> bool:
        """True if ``step`` never changes the state where it accepts this op.

        The sweep then places the op wherever it is first accepted instead of
        trying every place. Default ``False``: always correct, never faster.
        """
        return False

    def observation(
        self, sub_history: Sequence[Operation]
    ) -> tuple[Callable[[S], Hashable], Callable[[Any], Hashable]] | None:
        """``(state_key, input_key)`` under which ``sub_history`` sees no difference.

        Two states of equal ``state_key`` must be accepted by the same ops of
        ``sub_history``, leading to states of equal keys; two inputs of equal
        ``input_key`` must, with equal outputs, be accepted in the same states,
        leading to states of equal keys. The searches then treat them as one.
        Default ``None``: every state and input is its own.
        """
        return None

    def partition_key(self, sub_history: Sequence[Operation]) -> Any:
        """What names a sub-history in a report (default: nothing)."""
        return None

    def describe(self, op: Operation) -> str:
        """One line for an op in a report."""
        return f"{op.input!r} -> {op.output!r}"


class KVModel(Model[Hashable]):
    """A register per key. Inputs are ``(key, op)`` with ``op`` one of:

    - ``("put", value)`` — output ignored (e.g. ``"ok"``);
    - ``("get",)`` — output: the value, or ``None`` if absent;
    - ``("delete",)`` — output ignored;
    - ``("cas", expected, new)`` — ``expected`` ``None`` means "absent";
      output ``True`` if it applied, ``False`` if not.

    Values are hashable and never ``None`` (``None`` is "absent"). Record an op
    only if it succeeded or its outcome is unknown; one that definitely failed
    without effect belongs in no history.
    """

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, op_input: Any, op_output: Any) -> tuple[bool, Hashable]:
        _, op = op_input
        unknown = op_output is UNKNOWN
        match op:
            case ("put", value):
                return True, value
            case ("get",):
                return unknown or op_output == state, state
            case ("delete",):
                return True, None
            case ("cas", expected, new):
                if state == expected:
                    return unknown or op_output is True, new
                return unknown or op_output is False, state
        raise ValueError(f"not a KVModel op: {op!r}")

    def read_only(self, op_input: Any, op_output: Any) -> bool:
        match op_input[1]:
            case ("get",):
                return True
            case ("cas", expected, new):
                return op_output is False or expected == new
        return False

    def observation(
        self, sub_history: Sequence[Operation]
    ) -> tuple[Callable[[Hashable], Hashable], Callable[[Any], Hashable]]:
        """A value that no completed get returns and no cas expects is never
        observed: every op accepts or refuses all such values alike, so they
        are one state, and puts of them are one put (it is overwritten unseen)."""
        observed: set[Hashable] = set()
        for op in sub_history:
            verb = op.input[1]
            if verb[0] == "get":
                if op.ret is not None:
                    observed.add(op.output)
            elif verb[0] == "cas":
                observed.add(verb[1])

        def input_key(op_input: Any) -> Hashable:
            key, op = op_input
            match op:
                case ("put", value) if value not in observed:
                    return key, ("put", _UNOBSERVED)
                case ("cas", expected, new) if new not in observed:
                    return key, ("cas", expected, _UNOBSERVED)
            return op_input  # type: ignore[no-any-return]

        return _StateKeys(observed).__getitem__, input_key

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        by_key: dict[Any, list[Operation]] = {}
        for op in history:
            by_key.setdefault(op.input[0], []).append(op)
        return list(by_key.values())

    def partition_key(self, sub_history: Sequence[Operation]) -> Any:
        return sub_history[0].input[0] if sub_history else None

    def describe(self, op: Operation) -> str:
        verb, *args = op.input[1]
        shown = ", ".join(repr(a) for a in args)
        return f"{verb}({shown}) -> {op.output!r}"


@dataclass(frozen=True)
class Result:
    """A verdict. ``ok and not unknown``: linearizable. ``not ok``: a proven violation.

    For a violation, the history is linearizable up to the return of
    ``blocking`` and not beyond: ``linearized`` (the ops that returned before it,
    in return order) can be ordered, leaving the model in one of ``states``
    (states the history cannot tell apart shown once), but no order of ``pending`` (the ops open then, ``blocking`` and timed-out
    ops included) lets ``blocking`` be accepted. ``excerpt`` is the stretch of
    ops around it to read first, sorted by call; ``explanation`` says all that
    in words.
    """

    ok: bool
    unknown: bool = False
    steps: int = 0
    key: Any = None
    blocking: Operation | None = None
    states: tuple[Any, ...] = ()
    linearized: tuple[Operation, ...] = ()
    pending: tuple[Operation, ...] = ()
    excerpt: tuple[Operation, ...] = ()
    explanation: str = ""

    @property
    def linearizable(self) -> bool:
        return self.ok and not self.unknown


DFS_STEPS_PER_OP = 100
"""Porcupine's search gets this many steps per op (plus ``DFS_MIN_STEPS``) to
find a witness before the breadth-first sweep takes over."""
DFS_MIN_STEPS = 10_000


def check(model: Model[Any], history: Sequence[Operation], budget: int | None = None) -> Result:
    """Check ``history`` against ``model``, one partition at a time.

    Per partition: Porcupine's depth-first search, which finds a witness fast
    on linearizable histories; if it proves a violation or runs long, the
    breadth-first sweep decides and locates the first failing return.
    ``budget`` bounds the total steps; running out gives an inconclusive result
    (``ok=True, unknown=True``), never a violation that was not proven.

    Raises ``ValueError`` for an op that returns before it is called.
    """
    for op in history:
        if op.ret is not None and op.ret < op.call:
            raise ValueError(f"operation returns before it is called: {op}")
    steps = 0
    inconclusive = False
    for sub in model.partition(history):
        remaining = None if budget is None else budget - steps
        if remaining is not None and remaining <= 0:
            inconclusive = True
            break
        problem = make_problem(model, sub, informed=False)
        cap = DFS_STEPS_PER_OP * len(sub) + DFS_MIN_STEPS
        first = dfs(problem, cap if remaining is None else min(cap, remaining))
        steps += first.steps
        if first.status == "ok":
            continue
        # A proven violation is only located (sweeps cost about what the DFS
        # already spent); otherwise the sweep decides within what is left.
        left = None if budget is None or first.status == "violation" else budget - steps
        second = sweep(_informed(model, sub, problem), left)
        steps += second.steps
        if second.status == "violation":
            return _violation(model, sub, second, steps)
        if first.status == "violation" and second.status == "ok":
            raise AssertionError(f"checker bug: the searches disagree on {sub!r:.2000}")
        inconclusive = inconclusive or second.status == "exhausted"
    return Result(ok=True, unknown=inconclusive, steps=steps)


def make_problem(model: Model[Any], sub: Sequence[Operation], informed: bool = True) -> Problem:
    """The search problem of one sub-history; ``informed``: with what ``model``
    says of its ops (reads, states and inputs the sub-history cannot tell apart)."""
    problem = Problem(
        init=model.init(),
        step=model.step,
        inputs=[op.input for op in sub],
        outputs=[UNKNOWN if op.ret is None else op.output for op in sub],
        calls=[op.call for op in sub],
        rets=[op.ret for op in sub],
    )
    return _informed(model, sub, problem) if informed else problem


def _informed(model: Model[Any], sub: Sequence[Operation], problem: Problem) -> Problem:
    observation = model.observation(sub)
    state_key, input_key = observation if observation is not None else (None, None)
    return replace(problem, read_only=model.read_only, input_key=input_key, state_key=state_key)


def _violation(model: Model[Any], sub: Sequence[Operation], found: Verdict, steps: int) -> Result:
    blocking = sub[found.blocking]
    known_open = [j for j in found.open_ops if sub[j].ret is not None]
    window = min(sub[j].call for j in known_open)
    overlapping = [j for j in found.returned if _ret(sub[j]) >= window]
    before = [j for j in found.returned if _ret(sub[j]) < window][-2:]
    start = min(sub[j].call for j in (*known_open, *overlapping, *before))
    opened = set(found.open_ops)
    excerpt = sorted(
        (j for j in range(len(sub)) if start <= sub[j].call <= _ret(blocking)),
        key=lambda j: (sub[j].call, j),
    )
    pending = sorted(found.open_ops, key=lambda j: (sub[j].call, j))
    key = model.partition_key(sub)
    shown = ", ".join(repr(s) for s in found.states[:8])
    more = f" (and {len(found.states) - 8} more)" if len(found.states) > 8 else ""
    lines = [
        f"not linearizable (key {key!r}): no order lets this op return where it did:",
        _line(model, blocking, "blocked"),
        f"The {len(found.returned)} ops that returned before it can be linearized, leaving "
        f"the model in one of: {shown}{more}; no order of the {len(pending)} ops open "
        "alongside it then accepts it.",
        "Excerpt, by call time:",
        *(_line(model, sub[j], "open" if j in opened else "returned") for j in excerpt),
    ]
    return Result(
        ok=False,
        steps=steps,
        key=key,
        blocking=blocking,
        states=found.states,
        linearized=tuple(sub[j] for j in found.returned),
        pending=tuple(sub[j] for j in pending),
        excerpt=tuple(sub[j] for j in excerpt),
        explanation="\n".join(lines),
    )


def _ret(op: Operation) -> float:
    return math.inf if op.ret is None else op.ret


def _line(model: Model[Any], op: Operation, mark: str) -> str:
    ret = "timed out" if op.ret is None else f"{op.ret:g}"
    return f"  [{mark:8}] client {op.client}: {model.describe(op)}  [{op.call:g}, {ret}]"

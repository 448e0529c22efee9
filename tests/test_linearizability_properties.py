"""Properties of the linearizability checker.

- Histories made by really executing ops, atomically, on a dict at points
  inside their intervals (with timeouts that did or did not take effect) are
  always accepted; changing one completed read to a value never written makes
  them rejected, at exactly that read.
- On tiny random histories, both searches and ``check`` agree with a brute
  force over every order of every admissible subset of ops.
"""

from __future__ import annotations

from itertools import combinations, permutations
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.sim.lin_search import Problem, dfs, sweep
from configsvc.sim.linearizability import UNKNOWN, KVModel, Operation, check

MODEL = KVModel()


@st.composite
def executions(draw: st.DrawFn, max_ops: int = 40) -> list[Operation]:
    """Ops on keys x/y applied to a dict in order of their linearization points."""
    n = draw(st.integers(min_value=1, max_value=max_ops))
    store: dict[str, str] = {}
    history = []
    at = 0
    for i in range(n):
        at += draw(st.integers(min_value=1, max_value=3))
        call = at - draw(st.integers(min_value=0, max_value=8))
        ret: int | None = at + draw(st.integers(min_value=0, max_value=8))
        key = draw(st.sampled_from("xy"))
        verb = draw(st.sampled_from(["put", "put", "get", "get", "delete", "cas"]))
        applied = True
        if draw(st.integers(min_value=0, max_value=9)) == 0:  # the client timed out
            ret = None
            applied = draw(st.booleans())
        current = store.get(key)
        args: tuple[Any, ...] = ()
        out: Any = "ok"
        if verb == "put":
            args = (f"v{i}",)
            if applied:
                store[key] = f"v{i}"
        elif verb == "delete":
            if applied:
                store.pop(key, None)
        elif verb == "cas":
            expected = current if draw(st.booleans()) else draw(st.sampled_from([None, "v0"]))
            args, out = (expected, f"v{i}"), expected == current
            if applied and out:
                store[key] = f"v{i}"
        else:
            out = current
        if not applied:
            out = None  # whatever the client recorded; the checker ignores it
        history.append(Operation(i % 5, (key, (verb, *args)), out, call, ret))
    return history


@given(executions())
@settings(max_examples=300)
def test_real_executions_are_accepted(history: list[Operation]) -> None:
    result = check(MODEL, history)
    assert result.linearizable, result.explanation


@given(executions(), st.data())
@settings(max_examples=300)
def test_one_read_of_a_value_never_written_is_rejected_there(
    history: list[Operation], data: st.DataObject
) -> None:
    reads = [i for i, o in enumerate(history) if o.input[1] == ("get",) and o.ret is not None]
    if not reads:
        return
    victim = data.draw(st.sampled_from(reads))
    bad = list(history)
    o = bad[victim]
    bad[victim] = Operation(o.client, o.input, "never-written", o.call, o.ret)
    result = check(MODEL, bad)
    assert not result.ok and not result.unknown
    assert result.blocking == bad[victim]
    assert result.key == o.input[0]
    assert bad[victim] in result.excerpt


def brute_force(history: list[Operation]) -> bool:
    """Some subset containing every completed op has a legal real-time order."""
    known = [i for i, o in enumerate(history) if o.ret is not None]
    unknown = [i for i, o in enumerate(history) if o.ret is None]
    for size in range(len(unknown) + 1):
        for extra in combinations(unknown, size):
            for order in permutations(known + list(extra)):
                if _legal(history, order):
                    return True
    return False


def _legal(history: list[Operation], order: tuple[int, ...]) -> bool:
    for a, first in enumerate(order):
        for later in order[a + 1 :]:
            ret = history[later].ret
            if ret is not None and ret < history[first].call:
                return False  # ``later`` returned before ``first`` was called
    state: Any = MODEL.init()
    for i in order:
        o = history[i]
        legal, state = MODEL.step(state, o.input, UNKNOWN if o.ret is None else o.output)
        if not legal:
            return False
    return True


@st.composite
def tiny_histories(draw: st.DrawFn) -> list[Operation]:
    """Up to 5 ops on one key with arbitrary (often impossible) outputs."""
    history = []
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        call = draw(st.integers(min_value=0, max_value=6))
        ret = draw(st.none() | st.integers(min_value=call, max_value=call + 4))
        verb = draw(st.sampled_from(["put", "get", "delete", "cas"]))
        args: tuple[Any, ...] = ()
        out: Any = "ok"
        if verb == "put":
            args = (draw(st.sampled_from([1, 2])),)
        elif verb == "get":
            out = draw(st.sampled_from([None, 1, 2]))
        elif verb == "cas":
            args = (draw(st.sampled_from([None, 1, 2])), draw(st.sampled_from([1, 2])))
            out = draw(st.booleans())
        history.append(Operation(i, ("k", (verb, *args)), out, call, ret))
    return history


@given(tiny_histories())
@settings(max_examples=500)
def test_both_searches_agree_with_brute_force(history: list[Operation]) -> None:
    expected = brute_force(history)
    problem = Problem(
        init=MODEL.init(),
        step=MODEL.step,
        inputs=[o.input for o in history],
        outputs=[UNKNOWN if o.ret is None else o.output for o in history],
        calls=[o.call for o in history],
        rets=[o.ret for o in history],
    )
    assert (dfs(problem, None).status == "ok") == expected
    assert (sweep(problem, None).status == "ok") == expected
    assert check(MODEL, history).linearizable == expected

"""Properties of the linearizability checker.

- Histories made by really executing ops, atomically, on a dict at points
  inside their intervals (with timeouts that did or did not take effect) are
  always accepted; changing one completed read to a value never written makes
  them rejected, at exactly that read.
- On tiny random histories, both searches and ``check`` agree with a brute
  force over every order of every admissible subset of ops — on the bare
  problem and on the one ``make_problem`` builds with what ``KVModel`` says of
  its ops (reads, values nobody observes).
- What ``KVModel`` says of a history's ops holds: reads never change the
  state; states and inputs it calls indistinguishable behave alike.
- On denser histories (an execution with a few outputs or intervals
  perturbed, so often just not linearizable), the sweep with every shortcut
  agrees with the plain depth-first search.
"""

from __future__ import annotations

from itertools import combinations, permutations
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.sim.lin_search import Problem, dfs, sweep
from configsvc.sim.linearizability import UNKNOWN, KVModel, Operation, check, make_problem

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


VALUES = [1, 2, 3]


@st.composite
def tiny_histories(draw: st.DrawFn, max_ops: int = 5) -> list[Operation]:
    """Up to ``max_ops`` ops on one key with arbitrary (often impossible) outputs."""
    history = []
    for i in range(draw(st.integers(min_value=1, max_value=max_ops))):
        call = draw(st.integers(min_value=0, max_value=6))
        ret = draw(st.none() | st.integers(min_value=call, max_value=call + 4))
        verb = draw(st.sampled_from(["put", "put", "get", "delete", "cas"]))
        args: tuple[Any, ...] = ()
        out: Any = "ok"
        if verb == "put":
            args = (draw(st.sampled_from(VALUES)),)
        elif verb == "get":
            out = draw(st.sampled_from([None, *VALUES]))
        elif verb == "cas":
            args = (draw(st.sampled_from([None, *VALUES])), draw(st.sampled_from(VALUES)))
            out = draw(st.booleans())
        history.append(Operation(i, ("k", (verb, *args)), out, call, ret))
    return history


def bare_problem(history: list[Operation]) -> Problem:
    """The problem with nothing known of its ops: no reads, every value its own."""
    return Problem(
        init=MODEL.init(),
        step=MODEL.step,
        inputs=[o.input for o in history],
        outputs=[UNKNOWN if o.ret is None else o.output for o in history],
        calls=[o.call for o in history],
        rets=[o.ret for o in history],
    )


@given(tiny_histories())
@settings(max_examples=1000)
def test_both_searches_agree_with_brute_force(history: list[Operation]) -> None:
    expected = brute_force(history)
    assert (dfs(bare_problem(history), None).status == "ok") == expected
    assert (sweep(bare_problem(history), None).status == "ok") == expected
    assert (sweep(make_problem(MODEL, history), None).status == "ok") == expected
    assert check(MODEL, history).linearizable == expected


STATES: list[Any] = [None, *VALUES, 4]  # 4: a value no tiny history mentions


@given(tiny_histories(max_ops=8))
@settings(max_examples=300)
def test_what_the_model_says_of_a_history_holds(history: list[Operation]) -> None:
    """Reads never change the state; states (inputs) of equal key are accepted
    by the same ops, leading to states of equal key."""
    observation = MODEL.observation(history)
    assert observation is not None
    state_key, input_key = observation
    ops = [(o.input, UNKNOWN if o.ret is None else o.output) for o in history]
    for op_input, out in ops:
        for s in STATES:
            legal, after = MODEL.step(s, op_input, out)
            if MODEL.read_only(op_input, out) and legal:
                assert after == s
            for t in STATES:
                if state_key(s) == state_key(t):
                    legal_t, after_t = MODEL.step(t, op_input, out)
                    assert legal == legal_t and state_key(after) == state_key(after_t)
        for other_input, other_out in ops:
            if input_key(op_input) == input_key(other_input) and out == other_out:
                for s in STATES:
                    legal, after = MODEL.step(s, op_input, out)
                    legal_o, after_o = MODEL.step(s, other_input, other_out)
                    assert legal == legal_o and state_key(after) == state_key(after_o)


@st.composite
def perturbed_executions(draw: st.DrawFn) -> list[Operation]:
    """A real execution on one key by many overlapping clients, then a few ops
    changed (an output, an interval): often just not linearizable any more."""
    history = [o for o in draw(executions(max_ops=20)) if o.input[0] == "x"]
    if not history:
        return history
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        k = draw(st.integers(min_value=0, max_value=len(history) - 1))
        o = history[k]
        verb = o.input[1][0]
        if o.ret is None or draw(st.integers(min_value=0, max_value=3)) == 0:  # move it
            call = o.call + draw(st.integers(min_value=-3, max_value=3))
            ret = None if o.ret is None else max(call, o.ret + draw(st.integers(-3, 3)))
            history[k] = Operation(o.client, o.input, o.output, call, ret)
        elif verb == "get":
            written = [None, *(p.input[1][-1] for p in history if p.input[1][0] != "get")]
            history[k] = Operation(o.client, o.input, draw(st.sampled_from(written)), o.call, o.ret)
        elif verb == "cas":
            history[k] = Operation(o.client, o.input, not o.output, o.call, o.ret)
    return history


@given(perturbed_executions())
@settings(max_examples=1000)
def test_the_sweep_with_every_shortcut_agrees_with_the_plain_search(
    history: list[Operation],
) -> None:
    expected = dfs(bare_problem(history), None).status == "ok"
    assert (sweep(make_problem(MODEL, history), None).status == "ok") == expected
    assert check(MODEL, history).linearizable == expected

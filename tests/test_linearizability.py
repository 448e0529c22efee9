"""The linearizability checker on hand-written histories.

Each history is small enough to judge by eye; the comment says why it is or
is not linearizable. Property tests live in test_linearizability_properties.py.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import pytest

from configsvc.sim.lin_search import dfs, sweep
from configsvc.sim.linearizability import (
    DFS_STEPS_PER_OP,
    UNKNOWN,
    KVModel,
    Model,
    Operation,
    Result,
    check,
    make_problem,
)


def op(
    client: int, verb: str, *args: Any, out: Any = "ok", at: tuple[float, float | None]
) -> Operation:
    return Operation(client, ("k", (verb, *args)), out, at[0], at[1])


def put(client: int, value: Any, at: tuple[float, float | None]) -> Operation:
    return op(client, "put", value, at=at)


def get(client: int, out: Any, at: tuple[float, float | None]) -> Operation:
    return op(client, "get", out=out, at=at)


def cas(
    client: int, expected: Any, new: Any, out: bool, at: tuple[float, float | None]
) -> Operation:
    return op(client, "cas", expected, new, out=out, at=at)


def verdict(history: list[Operation], budget: int | None = None) -> Result:
    return check(KVModel(), history, budget)


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        put(1, "a", (0, 1)),
        get(1, "a", (2, 3)),
        op(1, "delete", at=(4, 5)),
        get(2, None, (6, 7)),
        cas(2, None, "b", True, (8, 9)),
        cas(1, "a", "c", False, (10, 11)),
        get(1, "b", (12, 13)),
    ]
    result = verdict(history)
    assert result.ok and not result.unknown and result.linearizable


def test_an_empty_history_is_linearizable() -> None:
    assert verdict([]).linearizable


def test_a_stale_read_after_a_completed_write_is_not() -> None:
    history = [put(1, 1, (0, 1)), put(1, 2, (2, 3)), get(2, 1, (4, 5))]
    result = verdict(history)
    assert not result.ok
    assert result.key == "k"
    assert result.blocking == history[2]
    assert result.states == (2,)
    assert result.linearized == (history[0], history[1])
    assert result.excerpt == (history[0], history[1], history[2])
    assert "key 'k'" in result.explanation and "get() -> 1" in result.explanation


def test_a_read_concurrent_with_a_write_may_see_either_value() -> None:
    history = [put(1, 1, (0, 1)), put(1, 2, (2, 10)), get(2, 1, (3, 4)), get(3, 2, (5, 6))]
    assert verdict(history).linearizable


def test_two_clients_seeing_two_concurrent_puts_in_opposite_orders_is_not() -> None:
    history = [
        put(1, "a", (0, 10)),
        put(2, "b", (0, 10)),
        get(3, "a", (1, 2)),
        get(3, "b", (3, 4)),
        get(4, "b", (1, 2)),
        get(4, "a", (3, 4)),
    ]
    result = verdict(history)
    assert not result.ok
    assert result.blocking in history[2:]


def test_a_lost_cas_is_not_linearizable() -> None:
    both_won = [put(1, 0, (0, 1)), cas(2, 0, 1, True, (2, 5)), cas(3, 0, 2, True, (2, 5))]
    assert not verdict(both_won).ok
    effect_lost = [put(1, 0, (0, 1)), cas(2, 0, 1, True, (2, 3)), get(2, 0, (4, 5))]
    assert not verdict(effect_lost).ok
    one_won = [put(1, 0, (0, 1)), cas(2, 0, 1, True, (2, 5)), cas(3, 0, 2, False, (2, 5))]
    assert verdict(one_won).linearizable


def test_a_timed_out_put_that_later_appears_is_linearizable() -> None:
    history = [put(1, 1, (0, 1)), put(2, 2, (2, None)), get(3, 1, (3, 4)), get(3, 2, (50, 51))]
    assert verdict(history).linearizable


def test_a_timed_out_put_that_never_appears_is_linearizable() -> None:
    history = [put(1, 1, (0, 1)), put(2, 2, (2, None)), get(3, 1, (3, 4)), get(3, 1, (50, 51))]
    assert verdict(history).linearizable


def test_a_timed_out_put_takes_effect_at_most_once() -> None:
    history = [
        put(1, 1, (0, 1)),
        put(2, 2, (2, None)),
        get(3, 2, (3, 4)),
        put(1, 1, (5, 6)),
        get(3, 2, (7, 8)),
    ]
    assert not verdict(history).ok


def test_a_timed_out_put_cannot_take_effect_before_it_was_called() -> None:
    history = [get(1, 2, (0, 1)), put(2, 2, (2, None))]
    assert not verdict(history).ok


def test_a_timed_out_read_constrains_nothing() -> None:
    history = [put(1, 1, (0, 1)), get(2, "anything", (2, None)), get(1, 1, (3, 4))]
    assert verdict(history).linearizable


def test_a_read_of_a_value_never_written_is_not() -> None:
    history = [put(1, 1, (0, 1)), get(2, 7, (2, 3))]
    result = verdict(history)
    assert not result.ok and result.blocking == history[1] and result.states == (1,)


def test_touching_intervals_count_as_concurrent() -> None:
    assert verdict([put(1, 1, (0, 5)), get(2, None, (5, 6))]).linearizable
    assert not verdict([put(1, 1, (0, 5)), get(2, None, (5.5, 6))]).ok


def test_keys_are_checked_independently_and_the_bad_key_is_named() -> None:
    good = [Operation(1, ("x", ("put", 1)), "ok", 0, 1), Operation(2, ("x", ("get",)), 1, 2, 3)]
    bad = [Operation(1, ("y", ("put", 1)), "ok", 0, 1), Operation(2, ("y", ("get",)), 9, 2, 3)]
    result = verdict(good + bad)
    assert not result.ok and result.key == "y" and result.blocking == bad[1]
    assert verdict(good).linearizable


def test_an_exhausted_budget_is_inconclusive_not_a_violation() -> None:
    history = [put(1, 1, (0, 1)), put(1, 2, (2, 3)), get(2, 1, (4, 5))]
    result = verdict(history, budget=2)
    assert result.ok and result.unknown and not result.linearizable
    assert result.blocking is None and result.explanation == ""


def test_an_operation_returning_before_its_call_is_rejected() -> None:
    with pytest.raises(ValueError, match="returns before"):
        verdict([put(1, 1, (5, 4))])


class Counter(Model[int]):
    """A non-KV model: ``("inc",)`` and ``("read",) -> n``."""

    def init(self) -> int:
        return 0

    def step(self, state: int, op_input: Any, op_output: Any) -> tuple[bool, int]:
        if op_input == ("inc",):
            return True, state + 1
        return op_output is UNKNOWN or op_output == state, state


def test_the_checker_is_generic_over_the_model() -> None:
    inc, read = ("inc",), ("read",)
    history = [
        Operation(1, inc, None, 0, 4),
        Operation(2, inc, None, 1, 2),
        Operation(3, read, 1, 1, 3),
        Operation(3, read, 2, 5, 6),
    ]
    assert check(Counter(), history).linearizable
    regressed = [*history, Operation(4, read, 1, 7, 8)]
    result = check(Counter(), regressed)
    assert not result.ok and result.key is None and result.states == (2,)


def realistic_history(
    rng: random.Random, n: int, clients: int = 8, timeouts: float = 0.01
) -> list[Operation]:
    """Closed-loop clients on one key; each op takes effect inside its interval."""
    free = [rng.uniform(0, 5) for _ in range(clients)]
    planned = []
    for i in range(n):
        client = min(range(clients), key=lambda c: free[c])
        call = free[client]
        at = call + rng.uniform(0, 5)
        ret = at + rng.uniform(0, 5)
        free[client] = ret + rng.uniform(0, 1)
        verb = rng.choice(["put", "put", "get", "get", "get", "cas", "delete"])
        planned.append((at, i, client, verb, call, ret, rng.random() < timeouts))
    value: Hashable = None
    history = []
    for _, i, client, verb, call, ret, timed_out in sorted(planned):
        if timed_out and verb != "get" and rng.random() < 0.5:  # timed out, never applied
            args: tuple[Any, ...] = {"put": (f"v{i}",), "delete": (), "cas": (value, f"v{i}")}[verb]
            history.append(Operation(client, ("k", (verb, *args)), None, call, None))
            continue
        out: Any = "ok"
        if verb == "put":
            args, value = (f"v{i}",), f"v{i}"
        elif verb == "delete":
            args, value = (), None
        elif verb == "cas":
            expected = value if rng.random() < 0.5 else f"v{rng.randrange(i + 1)}"
            args, out = (expected, f"v{i}"), expected == value
            value = f"v{i}" if out else value
        else:
            args, out = (), value
        history.append(
            Operation(client, ("k", (verb, *args)), out, call, None if timed_out else ret)
        )
    return history


@pytest.mark.parametrize("seed", range(3))
def test_two_thousand_concurrent_ops_on_one_key_are_checked_by_the_fast_search(seed: int) -> None:
    history = realistic_history(random.Random(seed), 2000)
    result = verdict(history)
    assert result.linearizable
    assert result.steps <= DFS_STEPS_PER_OP * len(history)  # no fallback was needed


def test_a_violation_deep_in_two_thousand_ops_is_found_and_located() -> None:
    history = realistic_history(random.Random(7), 2000)
    reads = [i for i, o in enumerate(history) if o.input[1] == ("get",) and o.ret is not None]
    victim = reads[len(reads) // 2]
    history[victim] = Operation(
        history[victim].client, ("k", ("get",)), "never", history[victim].call, history[victim].ret
    )
    result = verdict(history)
    assert not result.ok and result.blocking == history[victim]
    assert history[victim] in result.excerpt and len(result.excerpt) < 40


# The sweep's shortcuts (configsvc/sim/lin_search.py): each history below
# needs the shortcut done right to be accepted, or to be rejected. ``check``
# runs the depth-first search first, which finds most witnesses alone: these
# tests run each search on its own.


def searched(history: list[Operation], model: Model[Any] | None = None) -> bool:
    """Whether ``history`` is linearizable; both searches and ``check`` must agree."""
    model = model or KVModel()
    found = sweep(make_problem(model, history), None).status
    assert found == dfs(make_problem(model, history, informed=False), None).status
    result = check(model, history)
    assert result.linearizable == (found == "ok")
    return found == "ok"


def test_a_failing_cas_needs_a_moment_when_the_state_differs() -> None:
    """``cas(a, ...) -> False`` over [3, 4] needs ``put(b)`` (open over [2, 10])
    before it; so a later read of ``a`` with nothing writing ``a`` again is not."""
    start = [put(1, "a", (0, 1)), put(2, "b", (2, 10)), cas(3, "a", "c", False, (3, 4))]
    assert searched([*start, get(4, "b", (5, 6))])
    late_read = get(4, "a", (5, 6))
    assert not searched([*start, late_read])
    assert verdict([*start, late_read]).blocking == late_read


def test_a_read_can_see_a_state_that_lasts_only_between_two_concurrent_writes() -> None:
    """Both puts are open over [2, 8]; the first read sees ``b``, the second ``c``:
    ``b`` then ``c``. A third read of ``b`` after that has no ``b`` left to see."""
    history = [
        put(1, "a", (0, 1)),
        put(2, "b", (2, 8)),
        put(3, "c", (2, 8)),
        get(4, "b", (3, 5)),
        get(4, "c", (6, 7)),
    ]
    assert searched(history)
    late_read = get(4, "b", (9, 10))
    assert not searched([*history, late_read])
    assert verdict([*history, late_read]).blocking == late_read


def test_equal_deletes_are_used_in_the_order_they_must_return() -> None:
    """Two equal deletes: the one returning at 5 must be the one before the read
    at [3, 4]; the one returning at 20 is left for the read at [21, 22]. A search
    that took the later one first (both are interchangeable) would need the
    other before 5 as well, and have none left for the end."""
    history = [
        put(1, "a", (0, 1)),
        op(2, "delete", at=(2, 20)),
        op(3, "delete", at=(2, 5)),
        get(4, None, (3, 4)),
        put(1, "a", (6, 7)),
        get(4, "a", (8, 9)),
        get(4, None, (21, 22)),
    ]
    assert searched(history)
    both_early = [*history[:1], op(2, "delete", at=(2, 5.5)), *history[2:]]
    assert not searched(both_early)
    assert verdict(both_early).blocking == history[-1]


def test_puts_of_values_nobody_reads_are_used_in_the_order_they_must_return() -> None:
    """As with the deletes: ``x`` and ``y`` are never read, so either can be the
    write that makes the first cas fail; only ``x`` can still be there for the
    last one."""
    history = [
        put(1, "a", (0, 1)),
        put(2, "x", (2, 20)),
        put(3, "y", (2, 5)),
        cas(4, "a", "z", False, (3, 4)),
        put(1, "a", (6, 7)),
        get(4, "a", (8, 9)),
        cas(4, "a", "w", False, (21, 22)),
    ]
    assert searched(history)
    both_early = [*history[:1], put(2, "x", (2, 5.5)), *history[2:]]
    assert not searched(both_early)
    assert verdict(both_early).blocking == history[-1]


def test_a_value_somebody_reads_is_not_interchangeable_with_one_nobody_reads() -> None:
    history = [put(1, "x", (0, 1)), put(2, "a", (2, 3)), put(3, "y", (4, 5)), get(4, "a", (6, 7))]
    assert not searched(history)
    assert verdict(history).blocking == history[-1]
    assert searched([*history[:2], get(4, "a", (6, 7))])


def test_kv_model_reads_and_unobserved_values() -> None:
    model = KVModel()
    assert model.read_only(("k", ("get",)), 1) and model.read_only(("k", ("get",)), UNKNOWN)
    assert model.read_only(("k", ("cas", 1, 2)), False)
    assert model.read_only(("k", ("cas", 1, 1)), True)
    assert not model.read_only(("k", ("cas", 1, 2)), True)
    assert not model.read_only(("k", ("cas", 1, 2)), UNKNOWN)
    assert not model.read_only(("k", ("put", 1)), "ok")
    assert not model.read_only(("k", ("delete",)), "ok")
    history = [
        put(1, "read", (0, 1)),
        put(1, "expected", (0, 1)),
        put(1, "unread", (0, 1)),
        put(1, "read-by-a-timed-out-get", (0, 1)),
        get(2, "read", (2, 3)),
        get(2, "read-by-a-timed-out-get", (2, None)),
        cas(3, "expected", "new", True, (4, 5)),
    ]
    observation = model.observation(history)
    assert observation is not None
    state_key, input_key = observation
    assert [state_key(v) == v for v in ("read", "expected", None)] == [True, True, False]
    assert state_key("unread") == state_key("new") == state_key("read-by-a-timed-out-get")
    assert input_key(("k", ("put", "unread"))) == input_key(("k", ("put", "new")))
    assert input_key(("k", ("put", "read"))) != input_key(("k", ("put", "expected")))
    assert input_key(("k", ("cas", "read", "x"))) == input_key(("k", ("cas", "read", "y")))
    assert input_key(("k", ("cas", "x", "y"))) != input_key(("k", ("cas", "read", "y")))


class Tickets(Model[int]):
    """``("take",) -> n``: hands out 1, 2, 3, ... Equal inputs, different outputs."""

    def init(self) -> int:
        return 0

    def step(self, state: int, op_input: Any, op_output: Any) -> tuple[bool, int]:
        out = op_output[0] if isinstance(op_output, list) else op_output
        return out is UNKNOWN or out == state + 1, state + 1


@pytest.mark.parametrize("boxed", [False, True], ids=["hashable", "unhashable"])
def test_ops_with_equal_inputs_and_different_outputs_are_not_interchangeable(
    boxed: bool,
) -> None:
    """Ticket 2 returns first, but ticket 1 must be taken before it."""
    take = ("take",)

    def out(n: int) -> Any:
        return [n] if boxed else n

    history = [Operation(1, take, out(1), 0, 10), Operation(2, take, out(2), 0, 5)]
    assert searched(history, Tickets())
    assert not searched([*history, Operation(3, take, out(2), 11, 12)], Tickets())

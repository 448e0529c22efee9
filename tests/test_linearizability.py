"""The linearizability checker on hand-written histories.

Each history is small enough to judge by eye; the comment says why it is or
is not linearizable. Property tests live in test_linearizability_properties.py.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import pytest

from configsvc.sim.linearizability import (
    DFS_STEPS_PER_OP,
    UNKNOWN,
    KVModel,
    Model,
    Operation,
    Result,
    check,
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

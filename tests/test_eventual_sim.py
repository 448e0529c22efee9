"""The eventual-store simulation: seeds pass, runs replay, and every checker
can fail (planted bugs are caught within a stated number of seeds; each
checker also rejects a hand-made bad history).

The full run is ``configsvc sim eventual --seeds 500 --json``; CI runs 20.
"""

from __future__ import annotations

import pytest

from configsvc.sim.eventual_checks import (
    Registry,
    check_causal,
    check_final,
    check_full_states,
    check_reads,
    check_sessions,
    lww_overwritten,
)
from configsvc.sim.eventual_client import HistoryOp
from configsvc.sim.eventual_sim import EventualSimConfig, run_seed
from eventual.codec import canonical_state
from eventual.config import PlantedBugs
from eventual.dots import Sibling
from eventual.messages import Event
from eventual.ormap import ORMap
from eventual.requests import Get, Put, ReadResult, SiblingView, WriteResult
from eventual.token import encode_vv

MERGE = {"cfg": "mvr", "flags": "lww"}


def test_twenty_seeds_pass_with_every_fault_kind() -> None:
    failures = [r for r in map(run_seed, range(20)) if not r.ok]
    assert failures == [], [(r.seed, r.violation, r.excerpt) for r in failures]


def test_a_seed_replays_exactly() -> None:
    a, b = run_seed(3), run_seed(3)
    assert (a.ok, a.ops, a.ops_checked, a.stats) == (b.ok, b.ops, b.ops_checked, b.stats)


# Each planted bug, the checker expected to catch it, and the number of seeds
# (counting from seed 0) within which it must be caught.
PLANTED = [
    ("deliver_before_causal_past", ("causal consistency broken", "read of", "converge",
                                    "different states"), 5),
    ("gc_before_stability", ("full state sent",), 5),
    ("non_idempotent_merge", ("read of", "resurrection", "full state sent", "converge",
                              "different states"), 15),
    ("serve_uncovered_token", ("session guarantee broken",), 5),
]


@pytest.mark.parametrize(("bug", "caught_by", "within"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_is_caught(bug: str, caught_by: tuple[str, ...], within: int) -> None:
    config = EventualSimConfig(bugs=PlantedBugs(**{bug: True}))
    for seed in range(within):
        result = run_seed(seed, config)
        if not result.ok:
            assert any(text in result.violation for text in caught_by), result.violation
            return
    pytest.fail(f"{bug} survived {within} seeds")


# ---------------------------------------------------------------------- checkers by hand

A1 = Event(("a", 1), ("cfg", "kv", "k"), b"v1", 10, (), ())
A2 = Event(("a", 2), ("cfg", "kv", "k"), b"v2", 20, (("a", 1),), (("a", 1),))
B1 = Event(("b", 1), ("cfg", "kv", "j"), b"w1", 30, (), (("a", 2),))


def registry(*events: Event) -> Registry:
    reg = Registry()
    for e in events:
        reg.add(e)
    return reg


def op(request: Put | Get, result: ReadResult | WriteResult, token_in: str | None = None,
       client: str = "c1") -> HistoryOp:
    return HistoryOp(0, client, "n1", request, token_in, 0.0, 0.1, result)


def test_session_checker_rejects_an_answer_that_does_not_cover_the_token() -> None:
    history = [
        op(Put("cfg", "k", b"v1"), WriteResult(("a", 1), encode_vv({"a": 1}))),
        op(Get("cfg", "k"), ReadResult((), "", encode_vv({})), token_in=encode_vv({"a": 1})),
    ]
    found = check_sessions(history, registry(A1), MERGE)
    assert found is not None and "read-your-writes" in found[0]
    assert check_sessions(history[:1], registry(A1), MERGE) is None


def test_causal_checker_rejects_a_cut_missing_a_causal_dependency() -> None:
    seen_b_not_a2 = op(Get("cfg", "j"), ReadResult(
        (SiblingView(b"w1", ("b", 1), 30),), "", encode_vv({"a": 1, "b": 1})))
    found = check_causal([seen_b_not_a2], registry(A1, A2, B1))
    assert found is not None and "causal consistency broken" in found[0]
    ok = op(Get("cfg", "j"), ReadResult((SiblingView(b"w1", ("b", 1), 30),), "",
                                        encode_vv({"a": 2, "b": 1})))
    assert check_causal([ok], registry(A1, A2, B1)) is None


def test_read_checker_rejects_a_superseded_value() -> None:
    stale = op(Get("cfg", "k"), ReadResult((SiblingView(b"v1", ("a", 1), 10),), "",
                                           encode_vv({"a": 2})))
    found = check_reads([stale], registry(A1, A2), MERGE)
    assert found is not None and "read of cfg/k" in found[0]


def state(*events: Event) -> ORMap:
    s = ORMap()
    for e in events:
        s.apply_event(e)
    return s


def test_final_checker_rejects_divergence_lost_writes_and_resurrection() -> None:
    good = state(A1, A2)
    acked = [op(Put("cfg", "k", b"v1"), WriteResult(("a", 1), "")),
             op(Put("cfg", "k", b"v2", encode_vv({"a": 1})), WriteResult(("a", 2), ""))]
    reg = registry(A1, A2)
    canon = {"n1": canonical_state(good), "n2": canonical_state(good)}
    assert check_final({"n1": good, "n2": good}, canon, acked, reg, MERGE) is None

    behind = state(A1)
    found = check_final({"n1": good, "n2": behind},
                        {"n1": canonical_state(good), "n2": canonical_state(behind)}, acked, reg,
                        MERGE)
    assert found is not None and "did not converge" in found[0]

    lost = state(A1, A2)
    lost.entries.clear()
    found = check_final({"n1": lost}, {"n1": canonical_state(lost)}, acked, reg, MERGE)
    assert found is not None and "lost" in found[0]

    back = state(A1, A2)
    back.entries[("cfg", "kv", "k")][("a", 1)] = Sibling(b"v1", 10)
    found = check_final({"n1": back}, {"n1": canonical_state(back)}, acked[1:], reg, MERGE)
    assert found is not None and "resurrection" in found[0]


def test_full_state_checker_rejects_a_transfer_to_a_replica_that_was_around() -> None:
    assert check_full_states([(5.0, "n1", "n2", False, 3.5)], {}, 2.97) is None
    assert check_full_states([(5.0, "n1", "n2", False, 0.4)], {"n2": 4.0}, 2.97) is None
    found = check_full_states([(5.0, "n1", "n2", False, 0.4)], {}, 2.97)
    assert found is not None and "full state sent n1 -> n2" in found[0]


def test_lww_overwritten_counts_only_concurrent_losers() -> None:
    x1 = Event(("a", 1), ("flags", "kv", "f"), b"x1", 10, (), ())
    y1 = Event(("b", 1), ("flags", "kv", "f"), b"y1", 20, (), ())  # concurrent, later stamp
    z = Event(("a", 2), ("flags", "kv", "f"), b"z", 30, (("a", 1), ("b", 1)),
              (("a", 1), ("b", 1)))  # saw both: overwrote them causally
    history = [op(Put("flags", "f", b"x1"), WriteResult(("a", 1), "")),
               op(Put("flags", "f", b"y1"), WriteResult(("b", 1), "")),
               op(Put("flags", "f", b"z"), WriteResult(("a", 2), ""))]
    assert lww_overwritten(history, registry(x1, y1, z), MERGE) == 1

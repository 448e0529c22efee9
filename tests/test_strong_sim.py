"""The strong-store simulator: it passes, it replays, and it catches planted bugs.

Each planted bug must be caught within the stated number of seeds. A bug that
is no longer caught is a checker (or fault model) that went blind: fix the
simulator, never loosen the bound to hide it.
"""

from __future__ import annotations

import pytest

from configsvc.sim.planted import CATALOGUE, PROFILES
from configsvc.sim.strong_checks import Observer, check_history, lost_writes
from configsvc.sim.strong_client import HistoryOp
from configsvc.sim.strong_sim import run_seed

#: (planted bug, caught within this many seeds): the first catching seed, as
#: measured 2026-11-30 by ``configsvc sim planted --seeds 100`` (docs/simulation.md),
#: plus a margin. Bugs the simulator catches too rarely for ``make test`` are
#: proven by their direct tests (tests/test_strong_findings.py, test_strong_review.py).
PLANTED = [
    ("half_quorum", 3),
    ("follower_local_reads", 3),
    ("skip_dedup", 3),
    ("no_prevote", 3),
    ("reply_before_durable", 31),
    ("lease_from_ack", 8),
    ("catchup_commits_uncarried", 5),
    ("unbounded_bytes", 3),
    ("unchunked_snapshots", 3),
    ("phase1_lowest_ballot", 10),
    ("phase1_ignores_accepted", 5),
    ("wiped_votes", 3),
    ("skip_lease_wait+no_prevote", 25),
    ("learner_in_quorum", 14),
]


def test_seeds_pass_with_every_fault_on() -> None:
    failures = [(s, r.violation, r.excerpt) for s in range(8) if not (r := run_seed(s)).ok]
    assert failures == []


def test_regression_seed_30_no_fault_step_outlives_the_heal() -> None:
    """Seed 30 once failed liveness: a ballot_split fault's later step installed a
    standing message drop after the heal, so no leader was ever heard again."""
    result = run_seed(30)
    assert result.ok, (result.checker, result.violation)


def test_regression_seed_1420_the_search_decides_a_contended_history() -> None:
    """Seed 1420 (48 clients on 12 keys, lossy LAN) ran the linearizability search
    out of a 2,000,000-step budget; it decides within 10,000,000 (in about a second)."""
    result = run_seed(1420)
    assert result.ok, (result.checker, result.violation)


def test_regression_seed_4271_the_sweep_does_not_try_every_subset_of_open_ops() -> None:
    """Seed 4271 (45 clients on 13 keys, lossy metro links with duplicates, every
    fault) ran the search out of its 10,000,000-step budget: at one return on key
    k11, 16 ops were open (11 puts, 5 failing cas) and the sweep tried every
    subset of them. Its history is linearizable; the sweep now places reads where
    they are first accepted, takes interchangeable ops earliest-return first and
    merges values nobody reads (configsvc/sim/lin_search.py), and decides k11 in
    about 20,000 steps."""
    result = run_seed(4271)
    assert result.ok, (result.checker, result.violation)


def test_regression_seed_4094_a_late_answer_to_an_abandoned_read_matches_nothing() -> None:
    """Seed 4094 (a staggered power loss: the whole cluster away for longer than a
    client waits) failed linearizability: a client gave up a read, started a cas
    under the same request id (ids came from the shared history's length, which an
    abandoned read does not grow, and nothing completed during the outage), and the
    read's late answer completed the cas. A harness bug; ids are per client now."""
    result = run_seed(4094)
    assert result.ok, (result.checker, result.violation)


def test_regression_seed_486_forwarded_retries_do_not_crowd_out_new_work() -> None:
    """Seed 486 (window 1, one command per slot, slow disks, 45 clients) failed
    liveness once followers forwarded commands to the leader (issue 10): every
    client retry through a follower queued another copy of the same command at
    the leader, and the copies, each a whole slot, starved new work. The leader
    now drops a forwarded command it already holds pending or in flight."""
    result = run_seed(486)
    assert result.ok, (result.checker, result.violation)


@pytest.mark.parametrize("seed", [1, 74, 77, 85])
def test_regression_reads_profile_a_follower_refuses_read_index_requests_nobody_answers(
    seed: int,
) -> None:
    """The ``reads`` profile's control (no planted bug) failed liveness in these
    seeds once followers asked the leader for read indexes (issue 10): a request sent
    to a leader that died or was deposed was never answered, so reads after the heal
    never completed. A follower now refuses a request unanswered for an election
    timeout ("not the leader": a read changes nothing, the client retries)."""
    result = run_seed(seed, CATALOGUE["exact_round_acks"].control())
    assert result.ok, (result.checker, result.violation)


def test_same_seed_same_run() -> None:
    a, b = run_seed(11), run_seed(11)
    assert (a.ok, a.ops, a.stats) == (b.ok, b.ops, b.stats)
    assert a.ops > 500


@pytest.mark.parametrize(("bug", "within"), PLANTED, ids=[p[0] for p in PLANTED])
def test_planted_bug_is_caught_by_its_own_checker(bug: str, within: int) -> None:
    """Caught means failed by the checker the bug offends (a safety bug by a
    safety checker), never by a timeout or a harness exception; the same seeds
    without the bug pass (the control)."""
    planted = CATALOGUE[bug]
    for seed in range(within):
        result = planted.run(seed)
        if planted.caught(result):
            control = run_seed(seed, planted.control())
            assert control.ok, f"control seed {seed} failed: {control.violation}"
            return
        assert result.ok or result.checker in planted.tolerated, (
            f"seed {seed} failed by {result.checker!r}, not by {sorted(planted.caught_by)}: "
            f"{result.violation}"
        )
    pytest.fail(f"{bug} not caught within {within} seeds")


@pytest.mark.parametrize("profile", ["gray", "lease", "power", "members"])
def test_fault_profiles_pass_without_bugs(profile: str) -> None:
    """The pinned profiles the catalogue uses pass on their own (the control)."""
    config = PROFILES[profile]
    assert config is not None
    failures = [(s, r.checker, r.violation) for s in range(3)
                if not (r := run_seed(s, config)).ok]
    assert failures == []


def _op(client: int, inp: tuple[object, ...], out: object, call: float, ret: float | None,
        seq: int = 0) -> HistoryOp:
    return HistoryOp(client, "k", inp, out, call, ret, f"c{client}", seq)


def test_history_checker_rejects_a_stale_read() -> None:
    history = [
        _op(0, ("put", b"a"), "ok", 0.0, 1.0, 1),
        _op(1, ("get",), None, 2.0, 3.0),
    ]
    found = check_history(history)
    assert found.violation is not None and "not linearizable" in found.violation
    ok = check_history([*history[:1], _op(1, ("get",), b"a", 2.0, 3.0)])
    assert ok.violation is None and not ok.inconclusive


def test_observer_catches_disagreeing_replicas_and_hashes() -> None:
    obs = Observer()
    obs.applied("n1", 1, (b"x",))
    obs.applied("n2", 1, (b"x",))
    assert obs.violation == ""
    obs.applied("n3", 1, ())
    assert "disagree on slot 1" in obs.violation
    obs2 = Observer()
    obs2.hashed("n1", 10, "aa")
    obs2.hashed("n2", 10, "bb")
    assert "hashes differ" in obs2.violation


def test_lost_write_check_finds_an_acknowledged_write_missing_from_the_log() -> None:
    acked = _op(0, ("put", b"a"), "ok", 0.0, 1.0, seq=1)
    assert lost_writes([acked], Observer()) == [acked]

"""The membership schedules reach the planted bugs they were written for.

``concurrent_changes`` (rule 12b-c) is caught by the ``pipeline`` profile
(``MembershipAdmin.begin_pipelined`` and ``pipelined_split``), and
``candidate_ignores_config`` (rule 13) by the ``laggard`` profile
(``MembershipAdmin.begin_laggard``), and ``handoff_skips_lease_wait``
(rule 17 with rule 4 skipped) by the ``handoff`` profile (``leader_handoff``:
the old leader deafened once its ``TimeoutNow`` is out), each by a safety
checker at the seeds
below; the same seeds with no bug planted pass, with the operator's steps
taken (a control that changed no membership would prove nothing). The
detection rates over 100 seeds are in docs/simulation.md; these seeds are
cheap ones among those caught.
"""

from __future__ import annotations

import pytest

from configsvc.sim.planted import CATALOGUE, PROFILES
from configsvc.sim.strong_sim import StrongSimConfig, run_seed

CAUGHT = [
    ("concurrent_changes", 4),
    ("concurrent_changes", 7),
    ("candidate_ignores_config", 3),
    ("candidate_ignores_config", 5),
    ("handoff_skips_lease_wait", 9),
]


@pytest.mark.parametrize(("bug", "seed"), CAUGHT)
def test_the_schedule_catches_the_planted_bug_and_its_control_passes(bug: str, seed: int) -> None:
    planted = CATALOGUE[bug]
    result = planted.run(seed)
    assert planted.caught(result), (result.checker, result.violation)
    control = run_seed(seed, planted.control())
    assert control.ok, (control.checker, control.violation, control.excerpt)
    steps = "handoffs" if planted.profile == "handoff" else "member_changes"
    assert control.stats[steps] > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_writes_handed_to_the_next_leader_stay_linearizable(seed: int) -> None:
    """The ``rehand`` profile: leaders crash, are cut off and hand off while
    clients write, and nodes hand every unanswered session write to the next
    leader (``StrongDriver._rehand``): copies are made, and every checker passes."""
    result = run_seed(seed, PROFILES["rehand"] or StrongSimConfig())
    assert result.ok, (result.checker, result.violation, result.excerpt)
    assert result.stats["rehanded"] > 0

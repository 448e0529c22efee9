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

from configsvc.sim.planted import CATALOGUE
from configsvc.sim.strong_sim import run_seed

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

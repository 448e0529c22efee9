"""Convergence after a heal, measured in simulated seconds (a small version of
``python -m configsvc.sim.eventual_bench``, which runs 10,000 keys).

Five nodes, fanout 3, 200 ms gossip, split 2 | 3, every key written on one
side only; after the heal every replica must hold the union within 2 s,
by deltas when the split was shorter than the collection horizon and by
full state transfer when it was longer.
"""

from __future__ import annotations

import pytest

from configsvc.sim.eventual_bench import run


@pytest.mark.parametrize("beyond", [False, True], ids=["deltas", "full-state"])
def test_diverged_keys_converge_within_two_seconds_of_the_heal(beyond: bool) -> None:
    result = run(keys=2000, seed=3, beyond_horizon=beyond)
    assert result.convergence_s < 2.0
    assert result.largest_message <= (128 * 1024 if not beyond else 10**7)

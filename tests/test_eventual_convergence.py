"""Convergence after a heal, measured in simulated seconds (a small version of
``python -m configsvc.sim.eventual_bench``, which runs 10,000 keys).

Five nodes, fanout 3, 200 ms gossip, split 2 | 3, every key written on one
side only; after the heal every replica must hold the union within 2 s,
by deltas only (each within the delta cap) when the split was shorter than
the collection horizon, and by full state transfer in chunks (each within
the chunk cap) when it was longer.
"""

from __future__ import annotations

from configsvc.sim.eventual_bench import run


def test_diverged_keys_converge_by_deltas_within_two_seconds_of_the_heal() -> None:
    result = run(keys=2000, seed=3, beyond_horizon=False)
    assert result.convergence_s < 2.0
    assert result.deltas > 0 and result.full_states == 0  # within the horizon: deltas only
    assert result.largest_delta <= 128 * 1024  # the delta cap


def test_diverged_keys_beyond_the_horizon_converge_by_chunked_full_states() -> None:
    result = run(keys=2000, seed=3, beyond_horizon=True, max_full_state_bytes=32 * 1024)
    assert result.convergence_s < 2.0
    # a side's 1000 keys (about 100 KB) cannot fit one chunk: several per transfer, each capped
    assert result.full_states >= 6
    assert result.largest_full_state <= 32 * 1024
    assert result.largest_message <= 128 * 1024

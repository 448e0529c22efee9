"""Hybrid logical clocks (Kulkarni et al., "Logical Physical Clocks").

A timestamp is one integer: ``physical_ms << 16 | logical``. Rules:

- ``hlc_send`` (a local event) returns a timestamp greater than ``last`` and
  at least the local physical time;
- ``hlc_recv`` (seeing a remote timestamp) returns one greater than both.

So a write's timestamp exceeds the timestamp of every write in its causal
past (the replica folds every applied event into its clock): under
last-writer-wins, a causally later write always wins; only concurrent writes
are ordered by timestamp (and then by replica identity).
"""

from __future__ import annotations

__all__ = ["LOGICAL_BITS", "hlc_logical", "hlc_pack", "hlc_physical", "hlc_recv", "hlc_send"]

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def hlc_pack(physical_ms: int, logical: int) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def hlc_physical(ts: int) -> int:
    return ts >> LOGICAL_BITS


def hlc_logical(ts: int) -> int:
    return ts & _LOGICAL_MASK


def _advance(l_max: int, candidates: list[int], pt: int) -> int:
    if pt > l_max:
        return hlc_pack(pt, 0)
    logical = max(hlc_logical(c) for c in candidates if hlc_physical(c) == l_max) + 1
    if logical > _LOGICAL_MASK:
        return hlc_pack(l_max + 1, 0)
    return hlc_pack(l_max, logical)


def hlc_send(last: int, now: float) -> int:
    """The timestamp of a local event at local time ``now`` (seconds)."""
    pt = max(0, int(now * 1000))
    return _advance(hlc_physical(last), [last], pt)


def hlc_recv(last: int, remote: int, now: float) -> int:
    """The clock after seeing ``remote`` at local time ``now``."""
    pt = max(0, int(now * 1000))
    l_max = max(hlc_physical(last), hlc_physical(remote))
    return _advance(l_max, [last, remote], pt)

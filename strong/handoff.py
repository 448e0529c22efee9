"""Leadership hand-off (``TimeoutNow``): a leader chooses its successor.

Used when the leader is asked to remove itself (``strong.replica`` rule 17)
and when an operator moves leadership (``configsvc member transfer-leader``).
Rules:

1. A target is a voter of the current configuration other than the leader,
   heard from within an election timeout. Unless the operator named one, it
   is the one whose last acknowledged commit index is highest (ties: the
   lowest id), so the successor needs no catch-up.
2. While a hand-off is in progress the leader proposes nothing new (queued
   commands wait; if leadership moves they are refused as "stepped down",
   never proposed, safe to retry) and starts no membership change. Reads are
   still answered: its lease stays valid, and the successor waits for it to
   expire before it serves (rule 4 of ``strong.replica``).
3. ``TimeoutNow`` goes to the target only once nothing is in flight and the
   target acknowledged the leader's commit index; it is sent again every
   retransmit interval until the hand-off ends.
4. It ends when the leader meets a higher ballot (``handed_to``: the node
   whose ballot it was) or after one election timeout (the target is slow,
   dead, or an old binary that does not know ``TimeoutNow``); then the leader
   resumes, and a removal of itself falls back to committing its own removal
   as a lame duck (rule 14).

Safety rests on none of this: the target runs phase 1 like any candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from strong.member_log import MembershipChange


@dataclass(slots=True)
class Transfer:
    """A hand-off in progress (part of a ``Leadership``)."""

    target: str
    deadline: float
    #: the operator's request this hand-off answers (None: none)
    request_id: int | None
    #: a removal of the leader itself, run where leadership lands (or here as
    #: a lame duck if the hand-off fails)
    then: tuple[int, MembershipChange] | None = None
    sent_at: float = float("-inf")


def handoff_target(
    me: str,
    voters: Iterable[str],
    last_ack: Mapping[str, float],
    peer_commit: Mapping[str, int],
    horizon: float,
    wanted: str | None = None,
) -> tuple[str | None, str]:
    """Rule 1: (target, "") or (None, why not). ``horizon``: the earliest
    acknowledgement time that still counts as live."""
    live = sorted(v for v in voters if v != me and last_ack.get(v, float("-inf")) >= horizon)
    if wanted is not None:
        if wanted == me:
            return None, f"{wanted!r} already leads"
        if wanted not in voters:
            return None, f"{wanted!r} is not a voter"
        if wanted not in live:
            return None, f"voter {wanted!r} was not heard from lately"
        return wanted, ""
    if not live:
        return None, "no other voter was heard from lately"
    return min(live, key=lambda v: (-peer_commit.get(v, -1), v)), ""

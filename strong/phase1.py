"""Phase 1's choice of values: what a new leader re-proposes for each slot.

Pure, from the complete promises of a quorum (``strong.replica`` rule 2):
for every slot from ``start`` (the candidate's commit index + 1) to the
highest slot any promise reported, the leader proposes

1. a value some acceptor reports *chosen* (it knows the slot is committed),
2. else the value accepted at the highest ballot (the only one that can have
   been chosen: a value chosen at ballot ``b`` is the one every higher ballot
   proposed, since each of them ran phase 1 over a quorum meeting ``b``'s),
3. else a no-op, filling the hole.

The planted bugs ``phase1_ignores_accepted`` and ``phase1_lowest_ballot`` break
rules 2 and 1-2 respectively, so the simulator can prove it notices.
"""

from __future__ import annotations

from collections.abc import Iterable

from strong.messages import NOOP, Batch, SlotValue


def recovery_values(
    reports: Iterable[tuple[str, Iterable[SlotValue]]],
    own_id: str,
    start: int,
    *,
    ignore_others: bool = False,
    lowest_ballot: bool = False,
) -> tuple[int, dict[int, Batch]]:
    """(the last slot to recover, the value to propose for each slot ``start..end``)."""
    best: dict[int, SlotValue] = {}
    end = start - 1
    for src, accepted in reports:
        for v in accepted:
            end = max(end, v.slot)
            if ignore_others and src != own_id and not v.chosen:
                continue
            cur = best.get(v.slot)
            if cur is None or (v.chosen and not cur.chosen) or (
                not cur.chosen
                and (v.ballot < cur.ballot if lowest_ballot else v.ballot > cur.ballot)
            ):
                best[v.slot] = v
    return end, {
        slot: best[slot].value if slot in best else NOOP for slot in range(start, end + 1)
    }

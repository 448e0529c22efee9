"""The storage seam of a replica and the replay that rebuilds durable state.

A ``Storage`` appends records and makes them durable on ``sync()``. The driver
obeys the rule: **append what Ready asks to persist, sync, then send Ready's
messages, then apply**. Implementations: the simulator's in-memory disk (which
loses unsynced records on a crash) and the on-disk log of the node runtime.

``recover`` is pure: it folds a record sequence into a ``DurableState``.
Later records win; a ``SnapshotRecord`` makes every slot at or below its index
obsolete.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from strong.ballot import ZERO, Ballot
from strong.messages import Batch
from strong.records import (
    AcceptRecord,
    ChosenRecord,
    CommitRecord,
    PromiseRecord,
    Record,
    SnapshotRecord,
)


class Storage(Protocol):
    def append(self, records: list[Record]) -> None:
        """Queue records for durability (not yet durable)."""

    def sync(self) -> None:
        """Make every appended record durable (fsync)."""

    def load(self) -> list[Record]:
        """Every durable record in append order (after compaction, equivalent)."""


@dataclass
class DurableState:
    """What survives a crash: the acceptor's promise and accepted slots, the
    chosen values a learner recorded, and the latest snapshot."""

    promised: Ballot = ZERO
    #: slot -> (ballot, value) accepted by this acceptor
    accepted: dict[int, tuple[Ballot, Batch]] = field(default_factory=dict)
    #: slot -> value known chosen
    chosen: dict[int, Batch] = field(default_factory=dict)
    commit_index: int = 0
    snapshot_index: int = 0
    snapshot: bytes | None = None


def fold(state: DurableState, record: Record) -> None:
    """Apply one record to ``state`` (the commit hint is left unclamped: see ``recover``)."""
    match record:
        case PromiseRecord(promised):
            state.promised = max(state.promised, promised)
        case AcceptRecord(slot, ballot, value):
            if slot > state.snapshot_index:
                state.accepted[slot] = (ballot, value)
        case ChosenRecord(slot, value):
            if slot > state.snapshot_index:
                state.chosen[slot] = value
        case CommitRecord(index):
            state.commit_index = max(state.commit_index, index)
        case SnapshotRecord(index, data):
            if index >= state.snapshot_index:
                state.snapshot_index = index
                state.snapshot = data
                state.accepted = {s: v for s, v in state.accepted.items() if s > index}
                state.chosen = {s: v for s, v in state.chosen.items() if s > index}


def clamp_commit(state: DurableState) -> None:
    """Trust the commit hint only as far as chosen values are actually known."""
    state.commit_index = max(state.commit_index, state.snapshot_index)
    index = state.snapshot_index
    while index < state.commit_index and (
        index + 1 in state.chosen or index + 1 in state.accepted
    ):
        index += 1
    state.commit_index = index


def recover(records: Iterable[Record]) -> DurableState:
    state = DurableState()
    for record in records:
        fold(state, record)
    clamp_commit(state)
    return state


def compacted(state: DurableState) -> list[Record]:
    """A minimal record sequence equivalent to ``state`` (for log rewriting)."""
    out: list[Record] = [PromiseRecord(state.promised)]
    if state.snapshot is not None:
        out.append(SnapshotRecord(state.snapshot_index, state.snapshot))
    out += [AcceptRecord(s, b, v) for s, (b, v) in sorted(state.accepted.items())]
    out += [ChosenRecord(s, v) for s, v in sorted(state.chosen.items())]
    out.append(CommitRecord(state.commit_index))
    return out

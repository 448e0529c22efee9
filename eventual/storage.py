"""The storage seam of an eventual replica and the replay that rebuilds it.

A ``Storage`` appends records and makes them durable on ``sync()``. The
driver's rule (``eventual.ready``): **append what Ready asks to persist,
sync, then send Ready's messages and replies**. Implementations: the
simulator's in-memory disk (``configsvc.sim.eventual_storage``, which loses
unsynced records on a crash) and the node runtime's on-disk log.

``recover`` is pure: it folds a record sequence into a ``DurableState``.
A ``SnapshotRecord`` replaces everything before it; an ``EventRecord`` is
applied with the same delta join the replica uses, so replay rebuilds
exactly the state the replica had when the last synced record was written.
The change-index reservation is the highest one replayed (``IndexRecord``s
and snapshots), never lower than any earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from eventual.context import CausalContext
from eventual.dots import VV
from eventual.messages import Event
from eventual.ormap import ORMap
from eventual.records import (
    EventRecord,
    IdentityRecord,
    IndexRecord,
    Record,
    Snapshot,
    SnapshotRecord,
)

__all__ = ["DurableState", "Storage", "recover", "store_from_entries"]


class Storage(Protocol):
    def append(self, records: list[Record]) -> None:
        """Queue records for durability (not yet durable)."""

    def sync(self) -> None:
        """Make every appended record durable (fsync)."""

    def load(self) -> list[Record]:
        """Every durable record in append order (after compaction, equivalent)."""


@dataclass
class DurableState:
    """What survives a crash."""

    #: None: no identity yet (new or wiped node): the replica picks a fresh one
    replica: str | None = None
    store: ORMap = field(default_factory=ORMap)
    hlc: int = 0
    #: events not yet collected, in apply order
    log: list[Event] = field(default_factory=list)
    floor: VV = field(default_factory=dict)
    #: the highest change-index reservation (``eventual.change_index``)
    change_limit: int = 0


def store_from_entries(snapshot: Snapshot) -> ORMap:
    return ORMap.model_construct(
        entries={key: dict(sibs) for key, sibs in snapshot.entries},
        context=CausalContext.of(dict(snapshot.vv)),
    )


def recover(records: Iterable[Record]) -> DurableState:
    """The state the records leave. A group's events (``eventual.txn``) are
    applied once its last one is read; a group cut short by a crash (its
    records not all durable, so its transaction was never acknowledged and,
    since messages go out only after sync, never sent) is dropped whole."""
    state = DurableState()
    group: list[Event] = []

    def apply(event: Event) -> None:
        if state.store.apply_event(event) is not None:
            state.log.append(event)
        state.hlc = max(state.hlc, event.hlc)

    for record in records:
        match record:
            case IdentityRecord(replica):
                state.replica = replica
            case SnapshotRecord(snapshot):
                group = []  # (never inside a group: snapshots are taken between steps)
                state.store = store_from_entries(snapshot)
                state.hlc = max(state.hlc, snapshot.hlc)
                state.log = list(snapshot.log)
                state.floor = dict(snapshot.floor)
                state.change_limit = max(state.change_limit, snapshot.change_limit)
            case IndexRecord(limit):
                state.change_limit = max(state.change_limit, limit)
            case EventRecord(event):
                if group or event.group_end > event.dot[1]:
                    group.append(event)
                    if event.dot[1] >= group[0].group_end:
                        for member in group:
                            apply(member)
                        group = []
                else:
                    apply(event)
    return state

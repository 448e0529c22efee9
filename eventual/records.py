"""Durable records of an eventual replica.

A replica's durable state is a sequence of records; ``eventual.storage.recover``
replays them. This module is their pure codec (``record_fields``,
``record_from_fields``); the runtime frames the fields on disk exactly as it
frames the strong store's records (``configsvc.runtime.framing``: length,
CRC32C, msgpack).

Records:

- ``IdentityRecord``: the replica identity (the actor of its dots). Written
  once, before the first event. A node whose records are gone gets a *fresh*
  identity, so no dot is ever issued twice.
- ``EventRecord``: one applied event (local or remote), in apply order. A
  local write's record is in the same ``Ready`` as its acknowledgement, so
  it is durable before the client hears "ok".
- ``SnapshotRecord``: the whole state (dot store, context, clock, the
  not-yet-collected event log and its floor, the change-index reservation);
  every earlier record is obsolete.
- ``IndexRecord``: a reservation of the per-node change index
  (``eventual.change_index``): the index may reach ``limit`` before the next
  one. Replay takes the highest reservation, so a restarted replica resumes
  above every index it can have shown.

``record_from_fields`` raises ``MalformedMessage`` (a ``ValueError``) for
fields that are not a record; the framing turns that into corruption.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventual.codec import (
    MalformedMessage,
    entries_from_wire,
    entries_to_wire,
    event_from_wire,
    event_to_wire,
    read_list,
    read_str,
    read_uint,
    read_vv,
)
from eventual.dots import WireVV
from eventual.messages import Event, StateEntry

__all__ = [
    "EventRecord",
    "IdentityRecord",
    "IndexRecord",
    "Record",
    "Snapshot",
    "SnapshotRecord",
    "record_fields",
    "record_from_fields",
]


@dataclass(frozen=True, slots=True)
class Snapshot:
    vv: WireVV
    entries: tuple[StateEntry, ...]
    hlc: int
    #: per origin, the highest counter the log can no longer serve
    floor: WireVV
    #: events not yet causally stable, in apply order
    log: tuple[Event, ...]
    #: the change-index reservation when the snapshot was taken (``IndexRecord``)
    change_limit: int = 0


@dataclass(frozen=True, slots=True)
class IdentityRecord:
    replica: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    event: Event


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class IndexRecord:
    limit: int


Record = IdentityRecord | EventRecord | SnapshotRecord | IndexRecord


def record_fields(record: Record) -> list[object]:
    match record:
        case IdentityRecord(replica):
            return ["I", replica]
        case EventRecord(event):
            return ["E", event_to_wire(event)]
        case SnapshotRecord(s):
            return ["S", [list(p) for p in s.vv], entries_to_wire(s.entries), s.hlc,
                    [list(p) for p in s.floor], [event_to_wire(e) for e in s.log],
                    s.change_limit]
        case IndexRecord(limit):
            return ["C", limit]


def record_from_fields(obj: object) -> Record:
    f = read_list(obj, "record")
    match f:
        case ["I", replica]:
            return IdentityRecord(read_str(replica, "replica", nonempty=True))
        case ["E", event]:
            return EventRecord(event_from_wire(event))
        case ["S", vv, entries, hlc, floor, log, *rest] if len(rest) <= 1:
            # six items: a snapshot written before the change index existed
            wvv = read_vv(vv, "snapshot vv")
            return SnapshotRecord(Snapshot(
                wvv, entries_from_wire(entries, wvv), read_uint(hlc, "snapshot hlc"),
                read_vv(floor, "snapshot floor"),
                tuple(event_from_wire(e) for e in read_list(log, "snapshot log")),
                read_uint(rest[0], "snapshot change limit") if rest else 0,
            ))
        case ["C", limit]:
            return IndexRecord(read_uint(limit, "change index limit"))
    raise MalformedMessage("unknown record")

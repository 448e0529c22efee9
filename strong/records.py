"""Durable records of a replica.

A replica's durable state is a sequence of records; replaying them in order
rebuilds it (``strong.storage.recover``). This module is the records' pure
codec: ``record_fields`` turns a record into msgpack-able fields and
``record_from_fields`` back (``ValueError`` on anything else). The runtime
frames those fields on disk (``configsvc.runtime.framing``: length, CRC32C,
msgpack payload): a torn tail is reported so storage can truncate it; a bad
checksum is corruption, never skipped — a node must not vote or serve from
state it cannot trust.
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.ballot import Ballot
from strong.messages import Batch


@dataclass(frozen=True, slots=True)
class PromiseRecord:
    """The acceptor promised ``promised``: it rejects every lower ballot."""

    promised: Ballot


@dataclass(frozen=True, slots=True)
class AcceptRecord:
    """The acceptor accepted ``value`` for ``slot`` at ``ballot``."""

    slot: int
    ballot: Ballot
    value: Batch


@dataclass(frozen=True, slots=True)
class ChosenRecord:
    """``value`` is known to be chosen for ``slot`` (learned by catch-up)."""

    slot: int
    value: Batch


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """Every slot ``<= index`` is chosen. Written lazily; only a hint on restart."""

    index: int


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """The applied state at ``index``; every record about slots ``<= index`` is obsolete."""

    index: int
    data: bytes


Record = PromiseRecord | AcceptRecord | ChosenRecord | CommitRecord | SnapshotRecord


def _ballot(raw: object) -> Ballot:
    if not (isinstance(raw, list) and len(raw) == 2):
        raise ValueError("ballot must be [round, node_id]")
    rnd, node = raw
    if not isinstance(rnd, int) or not isinstance(node, str):
        raise ValueError("ballot must be [int, str]")
    return Ballot(rnd, node)


def _batch(raw: object) -> Batch:
    if not isinstance(raw, list) or not all(isinstance(c, bytes) for c in raw):
        raise ValueError("batch must be a list of bytes")
    return tuple(raw)


def _int(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ValueError("expected a non-negative integer")
    return raw


def record_fields(record: Record) -> list[object]:
    match record:
        case PromiseRecord(promised):
            return ["P", list(promised)]
        case AcceptRecord(slot, ballot, value):
            return ["A", slot, list(ballot), list(value)]
        case ChosenRecord(slot, value):
            return ["C", slot, list(value)]
        case CommitRecord(index):
            return ["I", index]
        case SnapshotRecord(index, data):
            return ["S", index, data]


def record_from_fields(fields: object) -> Record:
    if not isinstance(fields, list) or not fields:
        raise ValueError("record must be a non-empty list")
    tag, *rest = fields
    match tag, len(rest):
        case "P", 1:
            return PromiseRecord(_ballot(rest[0]))
        case "A", 3:
            return AcceptRecord(_int(rest[0]), _ballot(rest[1]), _batch(rest[2]))
        case "C", 2:
            return ChosenRecord(_int(rest[0]), _batch(rest[1]))
        case "I", 1:
            return CommitRecord(_int(rest[0]))
        case "S", 2 if isinstance(rest[1], bytes):
            return SnapshotRecord(_int(rest[0]), rest[1])
    raise ValueError(f"unknown record {tag!r}/{len(rest)}")

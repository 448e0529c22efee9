"""Durable records of a replica and their framing on disk.

A replica's durable state is a sequence of records; replaying them in order
rebuilds it (``strong.storage.recover``). Each record is framed as::

    u32 length | u32 crc32c(payload) | payload (msgpack)

Invariants:
- A frame whose length runs past the end of the buffer is a *torn tail* (a
  crash mid-write): ``decode_frames`` reports where the valid prefix ends so the
  storage can truncate it. Nothing after a torn tail was ever fsynced.
- A complete frame whose checksum does not match is *corruption*:
  ``CorruptRecord`` is raised, never skipped. A node must not vote or serve
  from state it cannot trust.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c
import msgpack

from strong.ballot import Ballot
from strong.messages import Batch

_HEADER = struct.Struct(">II")


class CorruptRecord(Exception):
    """A complete record failed its checksum or could not be decoded."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


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


def _payload(record: Record) -> list[object]:
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


def _from_payload(fields: object) -> Record:
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


def encode_frame(record: Record) -> bytes:
    payload: bytes = msgpack.packb(_payload(record), use_bin_type=True)
    return _HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def decode_frames(buf: bytes) -> tuple[list[Record], int]:
    """Decode every complete frame; return the records and the length of the valid prefix.

    Raises CorruptRecord for a complete frame with a bad checksum or payload.
    """
    records: list[Record] = []
    offset = 0
    while offset + _HEADER.size <= len(buf):
        length, crc = _HEADER.unpack_from(buf, offset)
        end = offset + _HEADER.size + length
        if end > len(buf):
            break  # torn tail
        payload = buf[offset + _HEADER.size : end]
        if crc32c.crc32c(payload) != crc:
            raise CorruptRecord(offset, "checksum mismatch")
        try:
            records.append(_from_payload(msgpack.unpackb(payload, raw=False, strict_map_key=True)))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptRecord(offset, f"undecodable payload: {exc}") from exc
        offset = end
    return records, offset

"""The on-disk frame of every durable record, for both stores (pure).

The cores define their records and a pure codec for them (``record_fields``
and ``record_from_fields`` in ``strong.records`` and ``eventual.records``);
the frame around them (length, checksum) belongs to the runtime, which writes
them: ``RecordFormat`` pairs a store's codec with the framing.

    u32 length | u32 crc32c(payload) | payload (msgpack)

Invariants:
- A frame whose length runs past the end of the buffer is a *torn tail* (a
  crash mid-write): ``unframe`` stops there and reports where the valid prefix
  ends, so storage can truncate it. Nothing after a torn tail was ever fsynced.
- A complete frame whose checksum fails, or whose payload the store cannot
  decode, is *corruption*: ``CorruptRecord`` is raised, never skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import crc32c
import msgpack

R = TypeVar("R")

HEADER = struct.Struct(">II")


class CorruptRecord(Exception):
    """A complete record failed its checksum or could not be decoded."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"corrupt record at byte {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def frame(fields: object) -> bytes:
    """Encode ``fields`` (msgpack-able) as one frame."""
    payload: bytes = msgpack.packb(fields, use_bin_type=True)
    return HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def unframe(buf: bytes | memoryview, decode: Callable[[object], R]) -> tuple[list[R], int]:
    """Decode every complete frame with ``decode`` (which raises ValueError/TypeError
    on bad fields); return the records and the length of the valid prefix.

    Payloads are checked and unpacked in place (no copy of ``buf``: a snapshot
    record can be most of a node's memory).

    Raises CorruptRecord for a complete frame with a bad checksum or payload.
    """
    records: list[R] = []
    buf = memoryview(buf)
    offset = 0
    while offset + HEADER.size <= len(buf):
        length, crc = HEADER.unpack_from(buf, offset)
        end = offset + HEADER.size + length
        if end > len(buf):
            break  # torn tail
        payload = buf[offset + HEADER.size : end]
        if crc32c.crc32c(payload) != crc:
            raise CorruptRecord(offset, "checksum mismatch")
        try:
            records.append(decode(msgpack.unpackb(payload, raw=False, strict_map_key=True)))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CorruptRecord(offset, f"undecodable payload: {exc}") from exc
        offset = end
    return records, offset


def unframe_one(data: bytes | memoryview, decode: Callable[[object], R]) -> R:
    """Decode exactly one frame; ValueError if it is not one valid record."""
    try:
        records, valid = unframe(data, decode)
    except CorruptRecord as exc:
        raise ValueError(exc.reason) from exc
    if len(records) != 1 or valid != len(data):
        raise ValueError("not exactly one record")
    return records[0]


@dataclass(frozen=True)
class RecordFormat(Generic[R]):
    """One store's records in frames: ``fields`` turns a record into msgpack-able
    fields, ``from_fields`` back (raising ValueError/TypeError on anything else)."""

    fields: Callable[[R], object]
    from_fields: Callable[[object], R]

    def encode(self, record: R) -> bytes:
        """One record as one frame."""
        return frame(self.fields(record))

    def decode_all(self, buf: bytes) -> tuple[list[R], int]:
        """Every complete frame of ``buf`` and the length of the valid prefix
        (``unframe``); CorruptRecord for a bad checksum or payload."""
        return unframe(buf, self.from_fields)

    def decode_one(self, data: bytes | memoryview) -> R:
        """Exactly one frame; ValueError if it is not one valid record."""
        return unframe_one(data, self.from_fields)

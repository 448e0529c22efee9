"""Snapshot transfer in resumable chunks (issue 7, finding 2).

A replica behind its peers' compaction needs a snapshot; one larger than a
receiver's frame cap would be refused forever. So a snapshot travels as
``InstallSnapshot`` chunks of at most ``ReplicaConfig.snapshot_chunk`` bytes,
pulled one at a time by the receiver (stop-and-wait: no more than one chunk
in flight per request, the receiver's pace is the flow control):

- the receiver's ``CatchUpRequest`` names the transfer it has in progress
  (``snapshot_index``) and how many bytes it holds (``snapshot_offset``);
- the sender answers with the chunk at that offset if it still holds that
  snapshot, else with the first chunk of the snapshot it has now;
- the sender pins, per receiver, the snapshot a transfer started on
  (``SnapshotSender``): a sender that compacts faster than a transfer
  completes would otherwise restart it forever (starvation); with the pin
  every transfer completes, and the receiver then fetches a newer one;
- each chunk names the snapshot it belongs to: ``(index, total, crc)``, the
  CRC32C of the whole snapshot (the checksum the records use);
- after appending a chunk the receiver asks at once for the next one; a lost
  chunk or request is re-asked by the periodic catch-up request, from the
  offset the receiver holds: the transfer resumes, it does not restart.

Invariants (``SnapshotReceiver``):

1. Never installed partial or corrupted: a snapshot is handed out only when
   all ``total`` bytes are held and their CRC32C equals ``crc``; a mismatch
   drops the whole transfer.
2. Chunks of different snapshots never mix: one transfer at a time, identified
   by ``(index, total, crc)``; a chunk with another identity is never
   appended. Only a chunk at offset 0 may replace the transfer (a newer
   snapshot, or the one another sender holds), and the old bytes are dropped.
   A later chunk of the same index but another identity (a sender whose
   snapshot at that index has other bytes) drops the transfer, so the next
   request asks from offset 0 instead of for a chunk that can never fit.
3. In order: only the chunk at exactly the held offset is appended;
   duplicates and reordered chunks are ignored.
4. Bounded memory: at most one incomplete transfer, of at most ``total``
   bytes (one snapshot); it is volatile (a restart starts over) and dropped
   once the receiver's commit index reaches its index.

The sender holds at most one pinned snapshot per receiver (the bytes are
shared, not copied); a pin idle for ``idle`` seconds is dropped at the next
request, so an abandoned transfer does not pin an old snapshot for long.

Pure: no IO; the checksum is computed with the library the records use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import crc32c

from strong.ballot import Ballot
from strong.messages import CatchUpRequest, InstallSnapshot


def checksum(snapshot: bytes) -> int:
    """The CRC32C a transfer of ``snapshot`` names in every chunk."""
    crc: int = crc32c.crc32c(snapshot)
    return crc


def chunk_at(
    ballot: Ballot, index: int, snapshot: bytes, crc: int, offset: int, size: int
) -> InstallSnapshot:
    """The chunk of ``snapshot`` starting at ``offset`` (0 if it is not inside
    the snapshot: a request for another transfer), of at most ``size`` bytes."""
    if not 0 <= offset < len(snapshot):
        offset = 0
    data = snapshot[offset : offset + size]
    return InstallSnapshot(ballot, index, offset, len(snapshot), crc, data)


class Offer(Enum):
    #: not appended (stale, duplicate, out of order, or of another snapshot)
    IGNORED = "ignored"
    #: appended; more chunks to come
    APPENDED = "appended"
    #: the snapshot is complete and verified
    COMPLETE = "complete"
    #: complete, but its checksum does not match: the transfer was dropped
    CORRUPT = "corrupt"


@dataclass(slots=True)
class _Transfer:
    index: int
    total: int
    crc: int
    data: bytearray


class SnapshotReceiver:
    """The receiving side of one replica: at most one transfer in progress."""

    def __init__(self) -> None:
        self._transfer: _Transfer | None = None

    def position(self, commit_index: int) -> tuple[int, int]:
        """(index, bytes held) of the transfer in progress, (0, 0) if none;
        a transfer the commit index already covers is dropped first."""
        t = self._transfer
        if t is not None and t.index <= commit_index:
            self._transfer = t = None
        return (t.index, len(t.data)) if t is not None else (0, 0)

    def offer(self, chunk: InstallSnapshot) -> tuple[Offer, bytes]:
        """Take ``chunk`` if it continues (or, at offset 0, starts) a transfer.
        Returns the outcome and, if COMPLETE, the verified snapshot."""
        if chunk.offset + len(chunk.data) > chunk.total:
            return Offer.IGNORED, b""
        t = self._transfer
        same = t is not None and (t.index, t.total, t.crc) == (chunk.index, chunk.total, chunk.crc)
        if not same:
            if chunk.offset != 0:
                if t is not None and t.index == chunk.index:
                    self._transfer = None
                return Offer.IGNORED, b""
            t = self._transfer = _Transfer(chunk.index, chunk.total, chunk.crc, bytearray())
        assert t is not None
        if chunk.offset != len(t.data) or (not chunk.data and t.total):
            return Offer.IGNORED, b""
        t.data += chunk.data
        if len(t.data) < t.total:
            return Offer.APPENDED, b""
        self._transfer = None
        data = bytes(t.data)
        if checksum(data) != t.crc:
            return Offer.CORRUPT, b""
        return Offer.COMPLETE, data


@dataclass(slots=True)
class _Pin:
    index: int
    data: bytes
    crc: int
    asked_at: float


class SnapshotSender:
    """The sending side: the snapshot each receiver's transfer is pinned to."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self._pins: dict[str, _Pin] = {}

    def answer(
        self,
        dst: str,
        request: CatchUpRequest,
        ballot: Ballot,
        current: tuple[int, bytes, int],
        size: int,
        now: float,
    ) -> InstallSnapshot:
        """The chunk answering ``request`` from ``dst``, whose log we compacted
        away: from its pinned snapshot if the request continues that transfer,
        else the first chunk of ``current`` (index, data, crc), pinned anew."""
        for peer in [p for p, pin in self._pins.items() if now - pin.asked_at > self.idle]:
            del self._pins[peer]
        pin = self._pins.get(dst)
        index, offset = request.snapshot_index, request.snapshot_offset
        if pin is None or pin.index != index or not 0 < offset < len(pin.data):
            pin = self._pins[dst] = _Pin(*current, now)
            if index != pin.index:
                offset = 0
        pin.asked_at = now
        return chunk_at(ballot, pin.index, pin.data, pin.crc, offset, size)

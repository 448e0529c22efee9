"""One ``Storage`` on disk for both stores: a store's records, framed, in a ``DiskLog``.

Durability rule (the driver's contract, ``configsvc.runtime.loop``): records
passed to ``append`` are durable once ``sync`` returns, and not before; the
loop sends and applies only after that. ``sync`` blocks on fsync: call it off
the event loop (``asyncio.to_thread``), from one writer at a time (see
``configsvc.runtime.disklog``).

What differs between the stores is only what a snapshot makes obsolete, a
``Compaction`` policy built from the store's pure functions:

- strong (``StrongCompaction``): when a synced batch contains a
  ``SnapshotRecord``, the whole log is rewritten (atomically) as
  ``compacted(recover(...))`` of everything durable plus the batch, exactly
  what the simulated disk does. To avoid re-reading the log, the policy folds
  every synced record into a ``DurableState`` as it goes
  (``strong.storage.fold``, the step of ``recover``, without its final clamp
  of the commit hint, so ``recover(compacted(folded))`` equals ``recover`` of
  every record; a test checks this against ``recover`` itself).
- eventual (``EventualCompaction``): a ``SnapshotRecord`` makes every earlier
  record obsolete except the identity, so the log is rewritten as the
  identity followed by the batch from its last snapshot on. Only the identity
  is kept in memory; nothing is re-read. A directory that is missing or empty
  means a new (or wiped) node: ``load`` returns no identity, and the replica
  picks a fresh one.

Raises ``CorruptLog`` on open if the log cannot be trusted: the node must then
neither vote nor serve.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import eventual.records as eventual_records
import strong.records as strong_records
from configsvc.runtime.disklog import DEFAULT_SEGMENT_BYTES, DiskLog, Recovery
from configsvc.runtime.framing import RecordFormat
from strong.storage import DurableState, compacted, fold, recover

R = TypeVar("R")

#: the strong store's records on disk
STRONG_RECORDS: RecordFormat[strong_records.Record] = RecordFormat(
    strong_records.record_fields, strong_records.record_from_fields
)
#: the eventual store's records on disk
EVENTUAL_RECORDS: RecordFormat[eventual_records.Record] = RecordFormat(
    eventual_records.record_fields, eventual_records.record_from_fields
)


class Compaction(Protocol[R]):
    """What a store keeps of its log when a snapshot makes records obsolete (pure)."""

    def fold(self, record: R) -> None:
        """Take note of one durable record (in log order)."""

    def plan(self, batch: list[R]) -> list[R] | None:
        """``None``: append ``batch`` to the log. Otherwise the whole log to write
        instead, everything durable plus ``batch`` compacted."""

    def done(self, batch: list[R], rewritten: list[R] | None) -> None:
        """``batch`` is durable (appended, or the log rewritten as ``rewritten``)."""


class StrongCompaction:
    """The strong store's policy: fold into a ``DurableState``, compact on a snapshot."""

    def __init__(self) -> None:
        self._state = DurableState()
        self._planned: DurableState | None = None

    def fold(self, record: strong_records.Record) -> None:
        fold(self._state, record)

    def plan(self, batch: list[strong_records.Record]) -> list[strong_records.Record] | None:
        if not any(isinstance(r, strong_records.SnapshotRecord) for r in batch):
            return None
        state = _copy(self._state)
        for record in batch:
            fold(state, record)
        # recover() clamps the commit hint to what is known chosen, as the sim does.
        self._planned = recover(compacted(state))
        return compacted(self._planned)

    def done(self, batch: list[strong_records.Record],
             rewritten: list[strong_records.Record] | None) -> None:
        if rewritten is not None and self._planned is not None:
            self._state, self._planned = self._planned, None
            return
        for record in batch:
            fold(self._state, record)


class EventualCompaction:
    """The eventual store's policy: keep the identity and the log from the last snapshot."""

    def __init__(self) -> None:
        self._identity: eventual_records.IdentityRecord | None = None

    def fold(self, record: eventual_records.Record) -> None:
        if isinstance(record, eventual_records.IdentityRecord):
            self._identity = record

    def plan(self, batch: list[eventual_records.Record]) -> list[eventual_records.Record] | None:
        snapshot_at = None
        for i, record in enumerate(batch):
            if isinstance(record, eventual_records.SnapshotRecord):
                snapshot_at = i
        if snapshot_at is None:
            return None
        identity = self._identity
        for record in batch[:snapshot_at]:
            if isinstance(record, eventual_records.IdentityRecord):
                identity = record
        kept = batch[snapshot_at:]
        if identity is not None and not any(
            isinstance(r, eventual_records.IdentityRecord) for r in kept
        ):
            kept = [identity, *kept]
        return kept

    def done(self, batch: list[eventual_records.Record],
             rewritten: list[eventual_records.Record] | None) -> None:
        for record in batch:
            self.fold(record)


class DiskStorage(Generic[R]):
    """A store's ``Storage`` (``strong.storage.Storage``, ``eventual.storage.Storage``)
    backed by a data directory: ``strong_storage(path)`` or ``eventual_storage(path)``.

    Raises LogLocked if another process has ``path`` open, CorruptLog if its
    contents cannot be trusted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        records: RecordFormat[R],
        compaction: Compaction[R],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        self._records = records
        self._compaction = compaction
        self._log = DiskLog(path, segment_bytes=segment_bytes, fault_hook=fault_hook)
        self._pending: list[R] = []
        #: the records read at open, handed to the first ``load`` (the driver's, at
        #: startup) instead of reading and decoding the log a second time: the
        #: replica then shares every value with the compaction state, one copy in memory
        self._opened: list[R] | None = []
        try:
            for record in self._log.read(records.decode_one):
                compaction.fold(record)
                self._opened.append(record)
        except BaseException:
            self._log.close()
            raise

    @property
    def recovery(self) -> Recovery:
        """What opening found (torn tail truncated, unfinished rewrite completed)."""
        return self._log.recovery

    @property
    def disk_log(self) -> DiskLog:
        return self._log

    def append(self, records: list[R]) -> None:
        """Queue records for durability (not yet durable)."""
        self._pending += records

    def sync(self) -> None:
        """Make every appended record durable; compact if a snapshot is among them.

        Raises DiskLogError if the disk fails (the storage is then unusable: exit and reopen).
        """
        batch, self._pending = self._pending, []
        if not batch:
            return
        self._opened = None
        encode = self._records.encode
        rewritten = self._compaction.plan(batch)
        if rewritten is None:
            self._log.append(encode(r) for r in batch)
            self._log.sync()
        else:
            self._log.rewrite(encode(r) for r in rewritten)
        self._compaction.done(batch, rewritten)

    def load(self) -> list[R]:
        """Every durable record in append order (compacted where a snapshot was synced).

        The first call before any ``sync`` returns the records read at open (they
        are what is durable: nothing was written since) and forgets them."""
        if self._opened is not None:
            opened, self._opened = self._opened, None
            return opened
        return list(self._log.read(self._records.decode_one))

    def close(self) -> None:
        """Release the data directory; unsynced records are dropped, as by a crash."""
        self._pending = []
        self._opened = None
        self._log.close()

    def __enter__(self) -> DiskStorage[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def strong_storage(
    path: str | os.PathLike[str],
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    fault_hook: Callable[[str], None] | None = None,
) -> DiskStorage[strong_records.Record]:
    """The strong store's log in ``path``."""
    return DiskStorage(path, STRONG_RECORDS, StrongCompaction(),
                       segment_bytes=segment_bytes, fault_hook=fault_hook)


def eventual_storage(
    path: str | os.PathLike[str],
    *,
    segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    fault_hook: Callable[[str], None] | None = None,
) -> DiskStorage[eventual_records.Record]:
    """The eventual store's log in ``path``."""
    return DiskStorage(path, EVENTUAL_RECORDS, EventualCompaction(),
                       segment_bytes=segment_bytes, fault_hook=fault_hook)


def _copy(state: DurableState) -> DurableState:
    return DurableState(
        promised=state.promised,
        accepted=dict(state.accepted),
        chosen=dict(state.chosen),
        commit_index=state.commit_index,
        snapshot_index=state.snapshot_index,
        snapshot=state.snapshot,
    )

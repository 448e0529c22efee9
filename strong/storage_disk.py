"""The strong store's ``Storage`` on disk: ``strong.records`` frames in a ``DiskLog``.

Durability rule (the driver's contract): records passed to ``append`` are
durable once ``sync`` returns, and not before; the driver sends and applies
only after that. ``sync`` blocks on fsync: call it off the event loop
(``asyncio.to_thread``), from one writer at a time (see ``configsvc.disklog``).

Compaction: when a synced batch contains a ``SnapshotRecord``, the whole log is
rewritten (atomically) as ``compacted(recover(...))`` of everything durable
plus the batch, exactly what the simulated disk does. To avoid re-reading the
log, this class folds every synced record into a ``DurableState`` as it goes
(``strong.storage.fold``, the step of ``recover``, without its final
clamp of the commit hint, so ``recover(compacted(folded))`` equals ``recover``
of every record; a test checks this against ``recover`` itself).

Raises ``configsvc.disklog.CorruptLog`` on open if the log cannot be trusted:
the node must then neither vote nor serve.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from configsvc.disklog import DEFAULT_SEGMENT_BYTES, DiskLog, Recovery
from strong.records import (
    Record,
    SnapshotRecord,
    decode_frame,
    encode_frame,
)
from strong.storage import DurableState, compacted, fold, recover

__all__ = ["DiskStorage", "decode_frame"]




class DiskStorage:
    """``strong.storage.Storage`` backed by a data directory.

    Raises LogLocked if another process has ``path`` open, CorruptLog if its
    contents cannot be trusted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        self._log = DiskLog(path, segment_bytes=segment_bytes, fault_hook=fault_hook)
        self._state = DurableState()
        self._pending: list[Record] = []
        try:
            for record in self._log.read(decode_frame):
                fold(self._state, record)
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

    def append(self, records: list[Record]) -> None:
        """Queue records for durability (not yet durable)."""
        self._pending += records

    def sync(self) -> None:
        """Make every appended record durable; compact if a snapshot is among them.

        Raises DiskLogError if the disk fails (the storage is then unusable: exit and reopen).
        """
        batch, self._pending = self._pending, []
        if not batch:
            return
        if any(isinstance(r, SnapshotRecord) for r in batch):
            state = _copy(self._state)
            for record in batch:
                fold(state, record)
            # recover() clamps the commit hint to what is known chosen, as the sim does.
            state = recover(compacted(state))
            self._log.rewrite(encode_frame(r) for r in compacted(state))
            self._state = state
            return
        self._log.append(encode_frame(r) for r in batch)
        self._log.sync()
        for record in batch:
            fold(self._state, record)

    def load(self) -> list[Record]:
        """Every durable record in append order (compacted where a snapshot was synced)."""
        return list(self._log.read(decode_frame))

    def close(self) -> None:
        """Release the data directory; unsynced records are dropped, as by a crash."""
        self._pending = []
        self._log.close()

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy(state: DurableState) -> DurableState:
    return DurableState(
        promised=state.promised,
        accepted=dict(state.accepted),
        chosen=dict(state.chosen),
        commit_index=state.commit_index,
        snapshot_index=state.snapshot_index,
        snapshot=state.snapshot,
    )

"""The eventual store's ``Storage`` on disk: ``eventual.records`` frames in a ``DiskLog``.

Durability rule (``eventual.ready``): records passed to ``append`` are durable
once ``sync`` returns, and not before; the driver sends messages and replies
(a write's "ok") only after that. ``sync`` blocks on fsync: call it off the
event loop (``asyncio.to_thread``), from one writer at a time (see
``configsvc.disklog``).

Compaction mirrors the simulated disk (``configsvc.sim.eventual_storage``): a
``SnapshotRecord`` makes every earlier record obsolete except the identity, so
when a synced batch contains one, the log is rewritten (atomically) as the
identity followed by the batch from its last snapshot on. Only the identity
frame is kept in memory; nothing is re-read.

Raises ``configsvc.disklog.CorruptLog`` on open if the log cannot be trusted.
A directory that is missing or empty means a new (or wiped) node: ``load``
returns no identity, and the replica picks a fresh one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from configsvc.disklog import DEFAULT_SEGMENT_BYTES, DiskLog, Recovery
from eventual.records import (
    IdentityRecord,
    Record,
    SnapshotRecord,
    decode_frame,
    encode_frame,
)

__all__ = ["EventualDiskStorage", "decode_frame"]




class EventualDiskStorage:
    """``eventual.storage.Storage`` backed by a data directory.

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
        self._identity: bytes | None = None
        self._pending: list[Record] = []
        try:
            for record in self._log.read(decode_frame):
                if isinstance(record, IdentityRecord):
                    self._identity = encode_frame(record)
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
        frames = [encode_frame(r) for r in batch]
        identity = self._identity
        snapshot_at: int | None = None
        for i, record in enumerate(batch):
            if isinstance(record, IdentityRecord):
                identity = frames[i]
            elif isinstance(record, SnapshotRecord):
                snapshot_at = i
        if snapshot_at is None:
            self._log.append(frames)
            self._log.sync()
        else:
            kept = frames[snapshot_at:]
            if identity is not None and not any(
                isinstance(r, IdentityRecord) for r in batch[snapshot_at:]
            ):
                kept.insert(0, identity)
            self._log.rewrite(kept)
        self._identity = identity

    def load(self) -> list[Record]:
        """Every durable record in append order (compacted where a snapshot was synced)."""
        return list(self._log.read(decode_frame))

    def close(self) -> None:
        """Release the data directory; unsynced records are dropped, as by a crash."""
        self._pending = []
        self._log.close()

    def __enter__(self) -> EventualDiskStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

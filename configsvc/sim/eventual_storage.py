"""A simulated disk for eventual replicas: records survive a crash only once synced.

Records are kept as CRC32C frames (the real encoding, ``eventual.records``)
so every simulated restart also exercises decoding. When a snapshot record
is synced, everything before it (except the identity) is dropped, as the
real storage compacts. ``wipe`` models a lost disk: the node comes back
with nothing, and so with a fresh identity.
"""

from __future__ import annotations

from configsvc.runtime.disk_storage import EVENTUAL_RECORDS
from eventual.records import IdentityRecord, Record, SnapshotRecord


class EventualSimStorage:
    def __init__(self) -> None:
        self._durable: list[bytes] = []
        self._pending: list[bytes] = []
        self._identity: bytes | None = None
        self._snapshot_at: int | None = None
        self.syncs = 0

    def append(self, records: list[Record]) -> None:
        for record in records:
            frame = EVENTUAL_RECORDS.encode(record)
            if isinstance(record, IdentityRecord):
                self._identity = frame
            if isinstance(record, SnapshotRecord):
                self._snapshot_at = len(self._pending)
            self._pending.append(frame)

    def sync(self) -> None:
        self.syncs += 1
        if self._snapshot_at is not None:
            keep = [self._identity] if self._identity is not None else []
            self._durable = keep + self._pending[self._snapshot_at :]
            self._snapshot_at = None
        else:
            self._durable += self._pending
        self._pending = []

    def load(self) -> list[Record]:
        data = b"".join(self._durable)
        records, valid = EVENTUAL_RECORDS.decode_all(data)
        assert valid == len(data), "the simulated disk never tears a synced frame"
        return records

    def crash(self) -> int:
        """Lose everything not synced; return how many records were lost."""
        lost = len(self._pending)
        self._pending = []
        self._snapshot_at = None
        return lost

    def wipe(self) -> None:
        self._durable, self._pending = [], []
        self._identity, self._snapshot_at = None, None

    @property
    def durable_bytes(self) -> int:
        return sum(len(f) for f in self._durable)

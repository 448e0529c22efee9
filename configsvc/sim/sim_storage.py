"""A simulated disk: records survive a crash only once synced.

Records are held as objects while the node runs (encoding every record on the
hot path would dominate simulation time); at every crash the durable records
are encoded into CRC32C frames and decoded back, so every simulated restart
still exercises the real codec. When a snapshot lands, the durable log is
rewritten in compacted form, as the real storage does.
"""

from __future__ import annotations

from configsvc.runtime.disk_storage import STRONG_RECORDS
from strong.records import Record, SnapshotRecord
from strong.storage import compacted, recover


class SimStorage:
    def __init__(self) -> None:
        self._durable: list[Record] = []
        self._pending: list[Record] = []
        self._compact_due = False
        self.syncs = 0

    def append(self, records: list[Record]) -> None:
        for record in records:
            self._pending.append(record)
            if type(record) is SnapshotRecord:
                self._compact_due = True

    def sync(self) -> None:
        self.syncs += 1
        self._durable += self._pending
        self._pending = []
        if self._compact_due:
            self._compact_due = False
            self._durable = compacted(recover(self._durable))

    def load(self) -> list[Record]:
        return list(self._durable)

    def crash(self) -> int:
        """Lose everything not synced; return how many records were lost.

        What survives goes through the on-disk encoding and back.
        """
        lost = len(self._pending)
        self._pending = []
        self._compact_due = False
        data = b"".join(STRONG_RECORDS.encode(r) for r in self._durable)
        records, valid = STRONG_RECORDS.decode_all(data)
        assert valid == len(data), "the simulated disk never tears a synced frame"
        self._durable = records
        return lost

"""A simulated disk: records survive a crash only once synced.

Records are kept as CRC32C frames (the real encoding) so every simulated
restart also exercises decoding. When a snapshot lands, the durable log is
rewritten in compacted form, as the real storage does.
"""

from __future__ import annotations

from strong.records import Record, SnapshotRecord, decode_frames, encode_frame
from strong.storage import compacted, recover


class SimStorage:
    def __init__(self) -> None:
        self._durable: list[bytes] = []
        self._pending: list[bytes] = []
        self._compact_due = False
        self.syncs = 0

    def append(self, records: list[Record]) -> None:
        for record in records:
            self._pending.append(encode_frame(record))
            if isinstance(record, SnapshotRecord):
                self._compact_due = True

    def sync(self) -> None:
        self.syncs += 1
        self._durable += self._pending
        self._pending = []
        if self._compact_due:
            self._compact_due = False
            state = recover(self.load())
            self._durable = [encode_frame(r) for r in compacted(state)]

    def load(self) -> list[Record]:
        data = b"".join(self._durable)
        records, valid = decode_frames(data)
        assert valid == len(data), "the simulated disk never tears a synced frame"
        return records

    def crash(self) -> int:
        """Lose everything not synced; return how many records were lost."""
        lost = len(self._pending)
        self._pending = []
        self._compact_due = False
        return lost

    @property
    def durable_bytes(self) -> int:
        return sum(len(f) for f in self._durable)

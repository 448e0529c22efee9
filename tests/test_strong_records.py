"""Durable records: CRC32C framing, torn tails, corruption, and replay."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsvc.runtime.disk_storage import STRONG_RECORDS
from configsvc.runtime.framing import CorruptRecord
from strong.ballot import Ballot
from strong.records import (
    AcceptRecord,
    ChosenRecord,
    CommitRecord,
    PromiseRecord,
    SnapshotRecord,
)
from strong.storage import compacted, recover

RECORDS = [
    PromiseRecord(Ballot(3, "n1")),
    AcceptRecord(1, Ballot(3, "n1"), (b"a", b"b")),
    AcceptRecord(2, Ballot(3, "n1"), ()),
    ChosenRecord(3, (b"c",)),
    CommitRecord(2),
    SnapshotRecord(1, b"state"),
]


def test_frames_round_trip() -> None:
    data = b"".join(STRONG_RECORDS.encode(r) for r in RECORDS)
    assert STRONG_RECORDS.decode_all(data) == (RECORDS, len(data))


def test_a_torn_tail_is_reported_not_decoded() -> None:
    data = b"".join(STRONG_RECORDS.encode(r) for r in RECORDS)
    last = STRONG_RECORDS.encode(RECORDS[-1])
    torn = data[: len(data) - 3]
    records, valid = STRONG_RECORDS.decode_all(torn)
    assert records == RECORDS[:-1]
    assert valid == len(data) - len(last)


def test_a_flipped_bit_is_corruption_never_skipped() -> None:
    data = bytearray(b"".join(STRONG_RECORDS.encode(r) for r in RECORDS))
    data[12] ^= 0x01
    with pytest.raises(CorruptRecord) as info:
        STRONG_RECORDS.decode_all(bytes(data))
    assert info.value.offset == 0


@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_corrupt_record(blob: bytes) -> None:
    try:
        _records, valid = STRONG_RECORDS.decode_all(blob)
    except CorruptRecord:
        return
    assert 0 <= valid <= len(blob)


def test_recover_replays_in_order_and_a_snapshot_obsoletes_older_slots() -> None:
    state = recover(RECORDS)
    assert state.promised == Ballot(3, "n1")
    assert state.snapshot_index == 1 and state.snapshot == b"state"
    assert 1 not in state.accepted and state.accepted[2] == (Ballot(3, "n1"), ())
    assert state.chosen == {3: (b"c",)}
    assert state.commit_index == 2  # the hint, as far as values are known


def test_commit_hint_is_trusted_only_as_far_as_values_are_known() -> None:
    state = recover([AcceptRecord(1, Ballot(1, "n1"), (b"x",)), CommitRecord(5)])
    assert state.commit_index == 1


def test_promises_never_go_backwards() -> None:
    state = recover([PromiseRecord(Ballot(5, "n2")), PromiseRecord(Ballot(4, "n3"))])
    assert state.promised == Ballot(5, "n2")


def test_compacted_is_equivalent() -> None:
    state = recover(RECORDS)
    assert recover(compacted(state)) == state

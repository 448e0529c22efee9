"""Bits flipped on a stopped node's disk, with real processes (``configsvc.quarantine``).

A byte of a strong log record, or of the snapshot the log was compacted into, is
flipped while the node is stopped. On restart the CRC check finds it; the node
sets the store aside (kept for inspection), never loads or serves that state,
rejoins as a non-voting learner and catches up from its peers.
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import pytest

from configsvc.client import Client
from configsvc.runtime.disk_storage import STRONG_RECORDS
from configsvc.runtime.framing import HEADER
from strong.records import Record, SnapshotRecord
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def frames(segment: Path) -> list[tuple[int, int, Record]]:
    """(offset, length, record) of every frame of a segment."""
    data = segment.read_bytes()
    out: list[tuple[int, int, Record]] = []
    offset = 0
    while offset < len(data):
        length, _ = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        out.append((offset, length, STRONG_RECORDS.decode_one(data[offset:end])))
        offset = end
    return out


def flip(segment: Path, offset: int) -> None:
    data = bytearray(segment.read_bytes())
    data[offset] ^= 0x10
    segment.write_bytes(bytes(data))


def strong_segments(root: Path, nid: str) -> list[Path]:
    return sorted((root / "data" / nid / "strong").glob("log-*.seg"))


def check_rebuilt_from_peers(c: LocalCluster, root: Path, victim: str, keys: dict[str, bytes]) -> None:
    c.start(victim)
    health = wait_for(lambda: (h := c.health(victim))["strong"]["applied_index"] > 0 and h, 60,
                      "the node to start and catch up")
    assert health["strong"]["voting"] is False  # a learner: its votes were lost with the store
    assert any("strong store was corrupt" in r for r in health["repairs"]), health
    quarantined = root / "data" / victim / "quarantine-1"
    assert (quarantined / "strong").is_dir() and "checksum" in (quarantined / "REASON").read_text()
    leader = wait_for(c.leader, 60, "a leader")
    wait_for(lambda: c.health(victim)["strong"]["applied_index"]
             >= c.health(leader)["strong"]["commit_index"] - 5, 60, "the learner to catch up")
    with Client(c.url(victim)) as client:
        for key, value in keys.items():
            assert wait_for(partial(client.get, "app", key, stale=True), 30,
                            f"{key} on the learner") == value
    assert "corrupt" in (root / f"{victim}.log").read_text()


def test_a_flipped_bit_in_a_log_record_is_detected_and_the_node_rebuilds_from_its_peers(
    tmp_path: Path,
) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        keys = {f"k{i}": f"v{i}".encode() for i in range(30)}
        with Client(c.endpoints) as client:
            for key, value in keys.items():
                client.put("app", key, value)
        victim = next(n for n in c.ids if n != c.leader())
        wait_for(lambda: c.health(victim)["strong"]["applied_index"] >= 30, 30, "replicated")
        c.kill(victim, signal.SIGTERM)
        segment = strong_segments(tmp_path, victim)[-1]
        found = frames(segment)
        offset, length, _ = found[len(found) // 2]  # a record in the middle: never a torn tail
        flip(segment, offset + HEADER.size + length // 2)
        check_rebuilt_from_peers(c, tmp_path, victim, keys)
    finally:
        c.stop_all()


def test_a_flipped_bit_in_a_snapshot_is_detected_and_the_node_rebuilds_from_its_peers(
    tmp_path: Path,
) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        big = b"x" * (500 << 10)  # ten of them pass the 4 MiB that triggers a snapshot
        keys = {f"big{i}": big for i in range(12)} | {"small": b"s"}
        with Client(c.endpoints, timeout=30) as client:
            for key, value in keys.items():
                client.put("app", key, value)
        victim = next(n for n in c.ids if n != c.leader())

        def snapshot_on_disk() -> bool:
            return any(isinstance(r, SnapshotRecord)
                       for seg in strong_segments(tmp_path, victim) for _, _, r in frames(seg))
        wait_for(snapshot_on_disk, 60, "a snapshot in the victim's log")
        c.kill(victim, signal.SIGTERM)
        for segment in strong_segments(tmp_path, victim):
            snaps = [(o, n) for o, n, r in frames(segment) if isinstance(r, SnapshotRecord)]
            if snaps:
                offset, length = snaps[-1]
                flip(segment, offset + HEADER.size + length // 2)
                break
        check_rebuilt_from_peers(c, tmp_path, victim, keys)
    finally:
        c.stop_all()

"""Both stores' on-disk Storage: the same answers as the simulated disk, on real files.

The simulated disks (``configsvc.sim.sim_storage``, ``configsvc.sim.eventual_storage``)
are the reference the simulations were validated against; the disk storages
must load exactly what they load after every sync, across reopen and compaction.
Then: corruption refuses to open, a crash inside a compaction leaves the state
before or after the batch, a real eventual replica restarts from disk, and a
strong writer killed with SIGKILL mid-compaction loses nothing it acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.runtime.disk_storage import (
    STRONG_RECORDS,
    DiskStorage,
    eventual_storage,
    strong_storage,
)
from configsvc.runtime.disklog import REWRITE_STEPS, CorruptLog, LogLocked, make_frame
from configsvc.sim.eventual_storage import EventualSimStorage
from configsvc.sim.sim_storage import SimStorage
from eventual import records as ev
from eventual.config import ReplicaConfig
from eventual.messages import Event
from eventual.replica import Replica
from eventual.requests import Put
from eventual.storage import recover as ev_recover
from strong.ballot import Ballot
from strong.records import (
    AcceptRecord,
    ChosenRecord,
    CommitRecord,
    PromiseRecord,
    Record,
    SnapshotRecord,
)
from strong.storage import compacted, recover
from tests.test_disklog import _read_lines_until

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------- strong

ballots = st.builds(Ballot, st.integers(0, 3), st.sampled_from(["n1", "n2"]))
slots = st.integers(1, 12)
values = st.lists(st.binary(max_size=3), max_size=2).map(tuple)
strong_records: st.SearchStrategy[Record] = st.one_of(
    st.builds(PromiseRecord, ballots),
    st.builds(AcceptRecord, slots, ballots, values),
    st.builds(ChosenRecord, slots, values),
    st.builds(CommitRecord, st.integers(0, 12)),
    st.builds(SnapshotRecord, st.integers(0, 12), st.binary(max_size=4)),
)
batches = st.lists(st.lists(strong_records, max_size=5), max_size=8)


@settings(max_examples=25, deadline=None)
@given(history=st.lists(batches, min_size=1, max_size=3))
def test_strong_disk_storage_loads_what_the_simulated_disk_loads(
    history: list[list[list[Record]]],
) -> None:
    """Every sync (plain or compacting), and every reopen, agrees with SimStorage."""
    sim = SimStorage()
    with tempfile.TemporaryDirectory() as d:
        for life in history:  # each life ends with a close (a clean crash) and a reopen
            with strong_storage(d, segment_bytes=64) as disk:
                assert disk.load() == sim.load()
                for batch in life:
                    sim.append(batch)
                    disk.append(batch)
                    sim.sync()
                    disk.sync()
                    assert disk.load() == sim.load()
                disk.append([CommitRecord(99)])  # never synced: lost on close, as in the sim
                sim.append([CommitRecord(99)])
                sim.crash()
        with strong_storage(d) as disk:
            assert disk.load() == sim.load()


def test_the_first_load_after_open_hands_back_the_records_read_at_open(tmp_path: Path) -> None:
    b1 = Ballot(1, "n1")
    records: list[Record] = [PromiseRecord(b1), AcceptRecord(1, b1, (b"v" * 1000,)), CommitRecord(1)]
    with strong_storage(tmp_path) as disk:
        disk.append(records)
        disk.sync()
    with strong_storage(tmp_path) as disk:
        first = disk.load()
        assert first == records == disk.load()  # the second load re-reads the log
        again = disk.load()
        assert isinstance(first[1], AcceptRecord) and isinstance(again[1], AcceptRecord)
        assert first[1].value[0] is not again[1].value[0]  # only the first was kept
    with strong_storage(tmp_path) as disk:  # a sync forgets what open read
        disk.append([CommitRecord(2)])
        disk.sync()
        assert disk.load() == [*records, CommitRecord(2)]


def test_strong_round_trip_reopen_and_compaction(tmp_path: Path) -> None:
    b1, b2 = Ballot(1, "n1"), Ballot(2, "n2")
    records: list[Record] = [
        PromiseRecord(b1),
        AcceptRecord(1, b1, (b"a",)),
        AcceptRecord(2, b1, (b"b",)),
        ChosenRecord(1, (b"a",)),
        CommitRecord(1),
    ]
    with strong_storage(tmp_path) as disk:
        disk.append(records)
        disk.sync()
    with strong_storage(tmp_path) as disk:
        assert disk.recovery.frames == 5 and disk.load() == records
        more: list[Record] = [PromiseRecord(b2), AcceptRecord(3, b2, (b"c",))]
        more += [AcceptRecord(s, b2, (b"x" * 100,)) for s in range(4, 40)]
        disk.append(more)
        disk.sync()
        size_before = disk.disk_log.durable_bytes
        disk.append([SnapshotRecord(38, b"state@38"), CommitRecord(39)])
        disk.sync()
        expected = compacted(
            recover([*records, *more, SnapshotRecord(38, b"state@38"), CommitRecord(39)])
        )
        assert disk.load() == expected
        assert disk.disk_log.durable_bytes < size_before / 4
        assert len(disk.disk_log.segment_paths) == 1
    with strong_storage(tmp_path) as disk:
        assert disk.load() == expected
        state = recover(disk.load())
        assert (state.promised, state.snapshot_index, sorted(state.accepted)) == (b2, 38, [39])


@pytest.mark.parametrize("step", [s for s in REWRITE_STEPS if s != "remove_old"])
def test_a_crash_inside_a_compacting_sync_leaves_the_state_before_or_after_it(
    tmp_path: Path, step: str
) -> None:
    b1 = Ballot(1, "n1")
    before: list[Record] = [PromiseRecord(b1), *(AcceptRecord(s, b1, (b"v",)) for s in range(1, 6))]
    batch: list[Record] = [SnapshotRecord(4, b"s4"), AcceptRecord(6, b1, (b"w",))]

    def crash(name: str) -> None:
        if name == step:
            raise OSError("simulated crash")

    with strong_storage(tmp_path) as disk:
        disk.append(before)
        disk.sync()
    disk = strong_storage(tmp_path, fault_hook=crash)
    disk.append(batch)
    with pytest.raises(OSError):
        disk.sync()
    disk.close()
    with strong_storage(tmp_path) as disk:
        got = recover(disk.load())
    assert got in (recover(before), recover([*before, *batch]))
    assert (got == recover(before)) == (step in ("tmp_written", "tmp_synced"))


def test_corruption_refuses_to_open_and_says_where(tmp_path: Path) -> None:
    with strong_storage(tmp_path) as disk:
        disk.append([PromiseRecord(Ballot(1, "n1")), CommitRecord(0), CommitRecord(0)])
        disk.sync()
        (seg,) = disk.disk_log.segment_paths
    data = bytearray(seg.read_bytes())
    second = len(STRONG_RECORDS.encode(PromiseRecord(Ballot(1, "n1"))))
    data[second + 9] ^= 0x01
    seg.write_bytes(bytes(data))
    for _ in range(2):  # a refused open releases the directory (no LogLocked the second time)
        with pytest.raises(CorruptLog, match="checksum mismatch") as err:
            strong_storage(tmp_path)
        assert (err.value.path, err.value.offset) == (seg, second)


def test_a_frame_with_a_valid_checksum_but_no_record_in_it_is_corruption(tmp_path: Path) -> None:
    with strong_storage(tmp_path) as disk:
        disk.append([CommitRecord(1)])
        disk.sync()
        (seg,) = disk.disk_log.segment_paths
    with open(seg, "ab") as f:
        f.write(make_frame(b"\x92\xa1Zx"))  # well-framed msgpack ["Z", "x"]: no such record
    with pytest.raises(CorruptLog, match="undecodable frame"):
        strong_storage(tmp_path)


def test_one_storage_per_directory(tmp_path: Path) -> None:
    with strong_storage(tmp_path), pytest.raises(LogLocked):
        eventual_storage(tmp_path)


# ---------------------------------------------------------------------- eventual

SNAP = ev.Snapshot((("n1.a", 3),), (), 9, (("n1.a", 1),), ())


def _event(counter: int) -> ev.EventRecord:
    deps = (("n1.a", counter - 1),) if counter > 1 else ()
    key = ("cfg", "kv", f"k{counter % 3}")
    return ev.EventRecord(Event(("n1.a", counter), key, b"v", counter, (), deps))


eventual_records: st.SearchStrategy[ev.Record] = st.one_of(
    st.builds(_event, st.integers(1, 9)),
    st.just(ev.SnapshotRecord(SNAP)),
)


@settings(max_examples=25, deadline=None)
@given(
    lives=st.lists(
        st.lists(st.lists(eventual_records, max_size=4), max_size=6), min_size=1, max_size=3
    )
)
def test_eventual_disk_storage_loads_what_the_simulated_disk_loads(
    lives: list[list[list[ev.Record]]],
) -> None:
    sim = EventualSimStorage()
    with tempfile.TemporaryDirectory() as d:
        for i, life in enumerate(lives):
            with eventual_storage(d, segment_bytes=64) as disk:
                assert disk.load() == sim.load()
                if i == 0:  # the identity, as a new replica writes it
                    life = [[ev.IdentityRecord("n1.a")], *life]
                for batch in life:
                    for storage in (sim, disk):
                        storage.append(batch)
                        storage.sync()
                    assert disk.load() == sim.load()
                sim.crash()
        with eventual_storage(d) as disk:
            assert disk.load() == sim.load()


def _drive(replica: Replica, storage: DiskStorage[ev.Record]) -> None:
    ready = replica.ready()
    storage.append(ready.persist)
    storage.sync()


def test_an_eventual_replica_restarts_from_disk_with_its_identity_and_state(
    tmp_path: Path,
) -> None:
    config = ReplicaConfig("n1", ("n1",), snapshot_every=5)
    with eventual_storage(tmp_path) as storage:
        assert storage.load() == []  # a new node: the replica picks a fresh identity
        replica = Replica(config, ev_recover(storage.load()), 0.0, random.Random(1))
        _drive(replica, storage)
        for i in range(23):
            replica.submit(i, Put("cfg", f"k{i % 4}", f"v{i}".encode()), None, 0.01 * i)
            _drive(replica, storage)
        records = storage.load()
        assert isinstance(records[0], ev.IdentityRecord) and len(records) < 10  # compacted
        identity, store = replica.replica, replica.store
    with eventual_storage(tmp_path) as storage:
        durable = ev_recover(storage.load())
        assert durable.replica == identity and durable.store == store
        again = Replica(config, durable, 1.0, random.Random(2))
        again.submit(99, Put("cfg", "k0", b"after restart"), None, 1.0)
        _drive(again, storage)
    with eventual_storage(tmp_path) as storage:
        assert ev_recover(storage.load()).store == again.store


# ---------------------------------------------------------------------- kill -9

STRONG_WRITER = textwrap.dedent(
    """
    import sys
    from strong.ballot import Ballot
    from strong.records import AcceptRecord, SnapshotRecord
    from strong.storage import recover
        disk = strong_storage(sys.argv[1], segment_bytes=4096)
    state = recover(disk.load())
    slot = max([state.snapshot_index, *state.accepted])
    b = Ballot(1, "n1")
    while True:
        slot += 1
        batch = [AcceptRecord(slot, b, (str(slot).encode(),))]
        if slot % 37 == 0:
            batch.append(SnapshotRecord(slot - 10, b"state"))
        disk.append(batch)
        disk.sync()
        print(slot, flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_during_appends_and_compactions_loses_no_acknowledged_accept(
    tmp_path: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked: set[int] = set()
    for round_ in range(3):
        target = rng.randint(20, 250)
        with subprocess.Popen(
            [sys.executable, "-c", STRONG_WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env
        ) as proc:
            try:
                seen = _read_lines_until(
                    proc, lambda ls, t=target: len(ls) >= t, time.monotonic() + 20
                )
                os.kill(proc.pid, signal.SIGKILL)
                seen += _read_lines_until(proc, lambda ls: False, time.monotonic() + 20)
            finally:
                proc.kill()
        acked |= {int(line) for line in seen}
        with strong_storage(tmp_path) as disk:
            state = recover(disk.load())
        lost = sorted(s for s in acked if s > state.snapshot_index and s not in state.accepted)
        assert not lost, f"seed={seed} round={round_}: acknowledged accepts lost: {lost[:10]}"
        assert all(state.accepted[s][1] == (str(s).encode(),) for s in state.accepted)

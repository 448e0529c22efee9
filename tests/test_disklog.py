"""The durable log engine on real files: group commit, recovery, rewrite, locking, kill -9.

Every test uses a real directory under tmp_path and real fsync. Crashes are
simulated two ways: by editing the files as a crash would leave them (torn
tails at every byte, bit flips), and by a fault hook that raises at each step
of a rewrite; then the directory is reopened. The last test kills a real
writer process with SIGKILL and checks that nothing it acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import selectors
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import configsvc.runtime.disklog as disklog
from configsvc.runtime.disklog import (
    HEADER,
    REWRITE_STEPS,
    CorruptLog,
    DiskLog,
    DiskLogError,
    LogLocked,
    make_frame,
)

ROOT = Path(__file__).resolve().parent.parent


def frames(n: int, start: int = 0) -> list[bytes]:
    return [make_frame(f"record-{i:04d}".encode()) for i in range(start, start + n)]


def payload(frame: bytes) -> bytes:
    return frame[HEADER.size :]


def contents(path: Path, **kwargs: int) -> list[bytes]:
    with DiskLog(path, **kwargs) as log:
        return list(log.read(bytes))


def write_log(path: Path, batches: list[list[bytes]], **kwargs: int) -> None:
    with DiskLog(path, **kwargs) as log:
        for batch in batches:
            log.append(batch)
            log.sync()


def test_public_names() -> None:
    assert sorted(disklog.__all__) == sorted(
        [
            "DEFAULT_SEGMENT_BYTES",
            "HEADER",
            "REWRITE_STEPS",
            "CorruptLog",
            "DiskLog",
            "DiskLogError",
            "LogLocked",
            "Recovery",
            "TornTail",
            "ensure_dir",
            "make_frame",
        ]
    )
    assert issubclass(CorruptLog, DiskLogError) and issubclass(LogLocked, DiskLogError)


def test_frames_round_trip_and_a_batch_costs_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs.append(fd)
        real_fsync(fd)

    with DiskLog(tmp_path / "d") as log:
        assert log.recovery.frames == 0 and log.next_seq == 0
        log.append(frames(1))
        log.sync()  # creates the first segment
        monkeypatch.setattr(disklog.os, "fsync", counting_fsync)
        log.append(frames(50, 1)[:25])
        log.append(frames(50, 1)[25:])
        assert log.pending_frames == 50
        log.sync()
        assert len(fsyncs) == 1  # group commit: one fsync for the whole batch
        log.sync()  # nothing pending: no fsync
        assert len(fsyncs) == 1
        assert list(log.read(bytes)) == frames(51)
        assert log.next_seq == 51 and log.pending_frames == 0
        assert log.durable_bytes == sum(map(len, frames(51)))


def test_reopen_keeps_synced_frames_drops_unsynced_ones_and_appends_after_them(
    tmp_path: Path,
) -> None:
    with DiskLog(tmp_path) as log:
        log.append(frames(3))
        log.sync()
        log.append(frames(1, 3))  # never synced: lost, as in a crash
    with DiskLog(tmp_path) as log:
        assert log.recovery.frames == 3 and log.recovery.torn is None
        assert list(log.read(bytes)) == frames(3)
        log.append(frames(2, 3))
        log.sync()
    assert contents(tmp_path) == frames(5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", f"log-{0:020d}.seg"]


def test_append_rejects_bytes_that_are_not_one_whole_frame(tmp_path: Path) -> None:
    with DiskLog(tmp_path) as log:
        for bad in (b"", b"abc", make_frame(b"x")[:-1], make_frame(b"x") + b"y", make_frame(b"")):
            with pytest.raises(ValueError):
                log.append([bad])
        assert log.pending_frames == 0


def _last_segment(path: Path) -> Path:
    return sorted(path.glob("log-*.seg"))[-1]


def test_a_torn_last_frame_is_truncated_at_every_byte_offset(tmp_path: Path) -> None:
    whole = frames(4)
    last = make_frame(b"the last record, torn" * 3)
    prefix = len(b"".join(whole))
    for cut in range(1, len(last)):
        d = tmp_path / f"cut{cut}"
        write_log(d, [whole, [last]])
        seg = _last_segment(d)
        os.truncate(seg, prefix + cut)
        with DiskLog(d) as log:
            torn = log.recovery.torn
            assert torn is not None and (torn.path, torn.offset, torn.discarded) == (
                seg,
                prefix,
                cut,
            )
            assert list(log.read(bytes)) == whole
            assert seg.stat().st_size == prefix  # truncated on disk, not just skipped
            log.append([last])
            log.sync()
        assert contents(d) == [*whole, last]


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    tail=st.lists(st.integers(1, 40), min_size=1, max_size=8),
    data=st.data(),
)
def test_a_crash_anywhere_in_the_last_batch_keeps_exactly_the_whole_frames_before_it(
    sizes: list[int], tail: list[int], data: st.DataObject
) -> None:
    synced = [make_frame(bytes([65 + i % 26]) * n) for i, n in enumerate(sizes)]
    batch = [make_frame(bytes([97 + i % 26]) * n) for i, n in enumerate(tail)]
    written = b"".join(synced + batch)
    keep = data.draw(st.integers(len(b"".join(synced)), len(written)), label="bytes on disk")
    with tempfile.TemporaryDirectory() as d:
        write_log(Path(d), [synced, batch])
        os.truncate(_last_segment(Path(d)), keep)
        got = contents(Path(d))
    whole: list[bytes] = []
    offset = 0
    for frame in synced + batch:
        if offset + len(frame) > keep:
            break
        whole.append(frame)
        offset += len(frame)
    assert got == whole


def test_a_zero_filled_tail_counts_as_torn(tmp_path: Path) -> None:
    write_log(tmp_path, [frames(3)])
    seg = _last_segment(tmp_path)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(bytes(4096))
    with DiskLog(tmp_path) as log:
        assert log.recovery.torn is not None and log.recovery.torn.offset == size
        assert list(log.read(bytes)) == frames(3)


def test_a_bit_flip_anywhere_in_a_middle_frame_is_corruption_never_a_skip(tmp_path: Path) -> None:
    all_frames = frames(5)
    offset = len(b"".join(all_frames[:2]))
    write_log(tmp_path / "orig", [all_frames])
    original = _last_segment(tmp_path / "orig").read_bytes()
    for byte in range(offset, offset + len(all_frames[2])):
        for bit in (0, 3, 7):
            d = tmp_path / f"flip{byte}-{bit}"
            d.mkdir()
            damaged = bytearray(original)
            damaged[byte] ^= 1 << bit
            (d / f"log-{0:020d}.seg").write_bytes(bytes(damaged))
            with pytest.raises(CorruptLog) as err:
                DiskLog(d)
            assert err.value.offset == offset and err.value.path.parent == d
            assert f"at byte {offset}" in str(err.value)
            with pytest.raises(CorruptLog):  # a refused open released the lock
                DiskLog(d)


def test_corruption_in_an_older_segment_and_gaps_are_reported(tmp_path: Path) -> None:
    batches = [frames(2, i * 2) for i in range(4)]
    write_log(tmp_path / "a", batches, segment_bytes=30)
    segs = sorted((tmp_path / "a").glob("log-*.seg"))
    assert len(segs) == 4
    os.truncate(segs[1], segs[1].stat().st_size - 1)
    with pytest.raises(CorruptLog, match="not the last one") as err:
        DiskLog(tmp_path / "a")
    assert err.value.path == segs[1]

    write_log(tmp_path / "b", batches, segment_bytes=30)
    segs = sorted((tmp_path / "b").glob("log-*.seg"))
    segs[2].unlink()
    with pytest.raises(CorruptLog, match="gap") as err:
        DiskLog(tmp_path / "b")
    assert err.value.path == segs[3]


def test_a_checksum_valid_frame_the_decoder_rejects_is_corruption_with_its_place(
    tmp_path: Path,
) -> None:
    def decode(frame: memoryview) -> str:
        text = bytes(payload(frame)).decode()
        if text == "record-0002":
            raise ValueError("no such record type")
        return text

    write_log(tmp_path, [frames(4)])
    with DiskLog(tmp_path) as log, pytest.raises(CorruptLog, match="no such record type") as err:
        list(log.read(decode))
    assert err.value.offset == len(b"".join(frames(2)))


def test_segments_rotate_by_size_and_are_named_by_their_first_frame(tmp_path: Path) -> None:
    batches = [frames(3, 3 * i) for i in range(10)]
    batch_bytes = len(b"".join(batches[0]))
    write_log(tmp_path, batches, segment_bytes=2 * batch_bytes)
    names = sorted(p.name for p in tmp_path.glob("log-*.seg"))
    assert names == [f"log-{seq:020d}.seg" for seq in range(0, 30, 6)]
    with DiskLog(tmp_path, segment_bytes=2 * batch_bytes) as log:
        assert log.recovery.segments == 5 and log.next_seq == 30
        assert list(log.read(bytes)) == [f for b in batches for f in b]
        big = frames(20, 30)  # a batch larger than a segment is never split
        log.append(big)
        log.sync()
        assert log.segment_paths[-1].name == f"log-{30:020d}.seg"
        assert log.segment_paths[-1].stat().st_size == len(b"".join(big))
    assert len(contents(tmp_path)) == 50


def _old_and_new(path: Path) -> tuple[list[bytes], list[bytes]]:
    old = frames(12)
    write_log(path, [old[i : i + 3] for i in range(0, 12, 3)], segment_bytes=40)
    return old, [make_frame(b"compacted"), *frames(2, 100)]


REWRITE_CRASHES = [
    *((step, 1) for step in REWRITE_STEPS if step != "remove_old"),
    ("remove_old", 1),
    ("remove_old", 2),
    ("remove_old", 4),
]


@pytest.mark.parametrize(("step", "occurrence"), REWRITE_CRASHES)
def test_a_crash_at_any_step_of_a_rewrite_leaves_the_old_or_the_new_log(
    tmp_path: Path, step: str, occurrence: int
) -> None:
    old, new = _old_and_new(tmp_path)
    seen: list[str] = []

    def crash_at(name: str) -> None:
        seen.append(name)
        if name == step and seen.count(step) == occurrence:
            raise OSError(f"simulated crash at {step}")

    log = DiskLog(tmp_path, segment_bytes=40, fault_hook=crash_at)
    assert len(log.segment_paths) == 4
    with pytest.raises(OSError, match="simulated crash"):
        log.rewrite(new)
    with pytest.raises(DiskLogError, match="failed earlier"):
        log.sync()  # a failed log refuses further use
    log.close()

    before_commit = step in ("tmp_written", "tmp_synced")
    with DiskLog(tmp_path, segment_bytes=40) as reopened:
        assert list(reopened.read(bytes)) == (old if before_commit else new)
        assert reopened.recovery.finished_rewrite == (
            step in ("base_renamed", "dir_synced", "remove_old", "old_removed")
        )
        reopened.append(frames(1, 200))
        reopened.sync()
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.startswith(("log-", "LOCK"))]
    assert leftovers == []
    assert contents(tmp_path, segment_bytes=40) == [
        *(old if before_commit else new),
        *frames(1, 200),
    ]


def test_a_crash_before_any_file_operation_of_a_rewrite_leaves_the_old_or_the_new_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finer than the named steps: image the directory before every rename, unlink,
    fsync and ftruncate the rewrite makes, as if the machine stopped right there."""
    d = tmp_path / "d"
    old, new = _old_and_new(d)
    images: list[dict[str, bytes]] = []

    def image() -> None:
        images.append({p.name: p.read_bytes() for p in d.iterdir() if p.name != "LOCK"})

    def imaging(real: Callable[..., object]) -> Callable[..., object]:
        def wrapped(*args: object) -> object:
            image()
            return real(*args)

        return wrapped

    for name in ("rename", "unlink", "fsync", "ftruncate"):
        monkeypatch.setattr(os, name, imaging(getattr(os, name)))
    with DiskLog(d, segment_bytes=40) as log:
        images.clear()
        log.rewrite(new)
    monkeypatch.undo()
    image()
    outcomes = []
    for i, files in enumerate(images):
        crashed = tmp_path / f"crash{i}"
        crashed.mkdir()
        for name, data in files.items():
            (crashed / name).write_bytes(data)
        got = contents(crashed)
        assert got in (old, new), f"a crash before file operation {i} mixes the logs: {files}"
        outcomes.append(got == new)
    assert len(images) >= 8 and outcomes == sorted(outcomes) and outcomes[0] != outcomes[-1]


def test_rewrite_replaces_everything_and_numbering_continues(tmp_path: Path) -> None:
    _, new = _old_and_new(tmp_path)
    with DiskLog(tmp_path, segment_bytes=40) as log:
        log.append(frames(1))
        with pytest.raises(DiskLogError, match="unsynced"):
            log.rewrite(new)
        log.sync()
        log.rewrite(new)
        assert [p.name for p in log.segment_paths] == [f"log-{13:020d}.seg"]
        assert log.next_seq == 13 + len(new)
        log.append(frames(1, 7))
        log.sync()
    assert contents(tmp_path) == [*new, *frames(1, 7)]


def test_a_crash_right_after_starting_a_segment_loses_nothing_synced(tmp_path: Path) -> None:
    def crash(name: str) -> None:
        if name == "segment_created":
            raise OSError("simulated crash")

    write_log(tmp_path, [frames(3)], segment_bytes=40)
    log = DiskLog(tmp_path, segment_bytes=40, fault_hook=crash)
    log.append(frames(3, 3))
    with pytest.raises(OSError):
        log.sync()
    log.close()
    with DiskLog(tmp_path, segment_bytes=40) as log:
        assert log.recovery.segments == 2  # the new, empty segment is harmless
        assert list(log.read(bytes)) == frames(3)


def test_overlapping_calls_are_refused_not_interleaved(tmp_path: Path) -> None:
    log: DiskLog

    def reenter(name: str) -> None:
        log.append(frames(1))  # as another thread would, while sync is running

    log = DiskLog(tmp_path, fault_hook=reenter)
    log.append(frames(1))
    with pytest.raises(DiskLogError, match="one writer"):
        log.sync()
    log.close()


def test_a_second_opener_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with DiskLog(tmp_path) as log:
        with pytest.raises(LogLocked, match=f"in use by pid {os.getpid()}"):
            DiskLog(tmp_path)
        log.append(frames(1))
        log.sync()
    with DiskLog(tmp_path) as log:  # released on close
        assert log.recovery.frames == 1
    with pytest.raises(DiskLogError, match="closed"):
        log.append(frames(1))


def test_sync_runs_off_the_event_loop_as_the_node_driver_calls_it(tmp_path: Path) -> None:
    async def driver() -> list[bytes]:
        with DiskLog(tmp_path) as log:
            for i in range(5):
                log.append(frames(2, 2 * i))  # on the loop: memory only
                await asyncio.to_thread(log.sync)  # disk work on a worker thread
            return list(log.read(bytes))

    assert asyncio.run(driver()) == frames(10)


# ---------------------------------------------------------------------- kill -9

WRITER = textwrap.dedent(
    """
    import random, sys
    from configsvc.runtime.disklog import DiskLog, make_frame
    log = DiskLog(sys.argv[1], segment_bytes=2048)
    kept = [bytes(f) for f in log.read(bytes)]
    rng = random.Random(int(sys.argv[2]))
    seq = len(kept)
    while True:
        batch = [make_frame(str(seq + i).encode()) for i in range(rng.randint(1, 5))]
        log.append(batch)
        log.sync()
        kept += batch
        seq += len(batch)
        print(seq - 1, flush=True)
        if rng.random() < 0.02:
            log.rewrite(kept)  # same records, one new segment: atomic under SIGKILL too
            print("rewrite", flush=True)
    """
)


def _read_lines_until(
    proc: subprocess.Popen[bytes], done: Callable[[list[str]], bool], deadline: float
) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not done(lines):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"writer too slow; saw {len(lines)} lines"
            if not sel.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
            *complete, buf = buf.split(b"\n")
            lines += [c.decode() for c in complete]
    return lines


@pytest.mark.slow
def test_kill_9_never_loses_an_acknowledged_record(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked = -1
    for round_ in range(3):
        target = rng.randint(20, 250)
        with subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(rng.randrange(2**32))],
            stdout=subprocess.PIPE,
            env=env,
        ) as proc:
            try:
                seen = _read_lines_until(
                    proc, lambda ls, t=target: len(ls) >= t, time.monotonic() + 20
                )
                os.kill(proc.pid, signal.SIGKILL)
                # whatever it printed before dying was acknowledged too
                seen += _read_lines_until(proc, lambda ls: False, time.monotonic() + 20)
            finally:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        printed = [int(line) for line in seen if line != "rewrite"]
        acked = max([acked, *printed])
        with DiskLog(tmp_path) as log:  # the dead writer's lock is gone
            got = [int(payload(f)) for f in log.read(bytes)]
        assert got == list(range(len(got))), f"seed={seed} round={round_}: not a contiguous log"
        assert len(got) > acked, (
            f"seed={seed} round={round_}: acknowledged {acked}, found {len(got) - 1}"
        )

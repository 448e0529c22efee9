"""A durable append-only log of CRC32C frames: the storage engine of both stores.

The engine is codec-agnostic. It stores *frames* exactly as a store's
record format produces them (``configsvc.runtime.framing``)::

    u32 length | u32 crc32c(payload) | payload

and hands them back in order; the store's decoder turns them into records
(``read(decode)``). It checks framing and checksums, never payload contents.

Layout of a data directory::

    LOCK                      flock'ed by the one process that owns the directory
    log-<first-seq>.seg       segments, in order of first-seq (the frame number
                              of their first frame); only the last one grows
    base-<first-seq>.seg      a finished rewrite not yet renamed (see rewrite)
    *.tmp                     a rewrite in progress; deleted on open

Durability rules (what a caller may rely on):

- ``append`` only buffers in memory. ``sync`` writes the whole buffer to the
  last segment with one ``write`` and one ``fsync`` (group commit): once it
  returns, every appended frame survives a crash. A batch never spans segments;
  a new segment is started when the current one would pass ``segment_bytes``.
  Every segment but the last was fully fsynced before the next was created.
- Creating, renaming or removing a file is followed by an fsync of the
  directory, so the directory listing is as durable as the data. Creating a
  directory (the log's own, and every missing ancestor) is followed by an
  fsync of its parent (``ensure_dir``), whoever created it.
- ``rewrite(frames)`` replaces the whole log atomically: a crash at any point
  leaves either the old log or the new one, never a mix.
- If ``sync`` or ``rewrite`` fails, the page cache may disagree with the disk
  (a failed fsync is not retryable), so the log refuses further use; the node
  should exit and reopen the directory, which re-reads what is really there.

Recovery on open reads every segment in order:

- A frame running past the end of the *last* segment is a torn tail (a crash
  mid-write, never acknowledged): it is truncated (ftruncate + fsync) and
  reported in ``DiskLog.recovery``; unless a complete, valid frame follows it
  (then its length field is damaged and truncating would drop synced frames).
  Limit of the format (no header checksum): damage to the length of the very
  last frame looks exactly like a torn write and is truncated like one. So is an all-zero tail of the last segment
  (some filesystems show zeros where a crash lost the data of a grown file; a
  real frame never has length 0).
- A complete frame with a bad checksum anywhere, a torn frame in any segment
  but the last, or a gap between segments raises ``CorruptLog`` with the file
  and offset. Nothing is ever skipped: a node must not vote or serve from state
  it cannot trust. What to do then (refuse to start, rebuild from peers) is the
  caller's decision.

Threading contract: ``DiskLog`` is a plain synchronous class; its calls block
on disk. A node running an asyncio loop must call ``sync`` and ``rewrite`` off
the loop (``await asyncio.to_thread(log.sync)`` or a dedicated writer thread).
It supports ONE writer: calls may come from different threads but must not
overlap (await each call before the next). Overlapping calls are detected and
raise ``DiskLogError`` instead of interleaving writes.

Errors::

    DiskLogError            misuse, or the log failed earlier and must be reopened
     ├── CorruptLog         the directory holds data that cannot be trusted
     └── LogLocked          another process has the directory open
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import crc32c

from configsvc.runtime import crash_points

__all__ = [
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

_logger = logging.getLogger(__name__)

R = TypeVar("R")

HEADER = struct.Struct(">II")
DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024

#: The steps of ``rewrite``, in order; ``fault_hook`` is called with each.
#: ``remove_old`` is reported once per removed segment.
REWRITE_STEPS = (
    "tmp_written",
    "tmp_synced",
    "base_renamed",
    "dir_synced",
    "remove_old",
    "old_removed",
    "base_to_log",
    "done",
)

_SEGMENT = re.compile(r"^(log|base)-(\d{20})\.seg$")
_LOCK = "LOCK"


class DiskLogError(Exception):
    """The log cannot be used: misuse, or an earlier failure (reopen the directory)."""


class CorruptLog(DiskLogError):
    """The data directory holds data that cannot be trusted; the node must not serve from it."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(
            f"corrupt log: {path} at byte {offset}: {reason}. Refusing to use this data "
            "directory; it needs an operator (or a rebuild from peers), never a silent skip."
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class LogLocked(DiskLogError):
    """Another process (or another DiskLog in this one) has the data directory open."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"data directory {path} is in use by {holder}; one process per directory")
        self.path = path


@dataclass(frozen=True, slots=True)
class TornTail:
    """A partial write found at the end of the last segment and truncated away."""

    path: Path
    offset: int
    discarded: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """What opening the directory found."""

    segments: int
    frames: int
    torn: TornTail | None
    finished_rewrite: bool


@dataclass(slots=True)
class _Segment:
    path: Path
    first_seq: int
    frames: int
    size: int


def make_frame(payload: bytes) -> bytes:
    """Frame ``payload`` as the stores do: ``u32 length | u32 crc32c | payload``."""
    return HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload


def _segment_name(kind: str, first_seq: int) -> str:
    return f"{kind}-{first_seq:020d}.seg"


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (files created, renamed, removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> None:
    """``mkdir -p path``, durably: each directory created is followed by an fsync of its
    parent, so its entry survives a crash before anything inside it is trusted."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise
        fsync_dir(directory.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_frames(fd: int, frames: list[bytes]) -> None:
    """Write ``frames`` in order, without joining them into one copy first (a
    rewrite holds a snapshot frame as large as the state): ``writev`` of up to 512
    at a time, finishing any partial write."""
    for start in range(0, len(frames), 512):
        group = frames[start : start + 512]
        written = os.writev(fd, group)
        for frame in group:
            if written >= len(frame):
                written -= len(frame)
                continue
            _write_all(fd, memoryview(frame)[written:])  # type: ignore[arg-type]
            written = 0


def _valid_frame_after(data: bytes | memoryview, start: int) -> int | None:
    """The offset of the first complete, checksum-valid frame at or after ``start``, if any.

    A frame that claims to run past the end of the last segment is either a
    torn write (nothing valid after it) or a damaged length field hiding synced
    frames behind it; this tells them apart (up to a 2^-32 checksum collision).
    Costs one header read per byte of the tail: only run at open, on a tail.
    """
    limit = len(data) - HEADER.size
    unpack = HEADER.unpack_from
    for offset in range(start, limit):
        length, crc = unpack(data, offset)
        end = offset + HEADER.size + length
        if (
            length > 0
            and end <= len(data)
            and crc32c.crc32c(data[offset + HEADER.size : end]) == crc
        ):
            return offset
    return None


def _scan(path: Path, data: bytes | memoryview, *, last: bool) -> tuple[int, int]:
    """Validate the frames of one segment; return (frames, valid length).

    A valid length below ``len(data)`` means a torn tail (only allowed if ``last``).
    Raises CorruptLog.
    """
    offset = frames = 0
    while offset < len(data):
        if offset + HEADER.size > len(data):
            break
        length, crc = HEADER.unpack_from(data, offset)
        if length == 0:
            if last and not any(data[offset:]):
                break  # zeros where a crash lost the data of a grown file
            raise CorruptLog(path, offset, "zero-length frame")
        end = offset + HEADER.size + length
        if end > len(data):
            if last and (found := _valid_frame_after(data, offset + 1)) is not None:
                raise CorruptLog(
                    path,
                    offset,
                    f"frame length runs past the end, yet a valid frame follows at byte {found}: "
                    "a damaged length field, not a torn write",
                )
            break
        if crc32c.crc32c(data[offset + HEADER.size : end]) != crc:
            raise CorruptLog(path, offset, "checksum mismatch")
        frames += 1
        offset = end
    if offset < len(data) and not last:
        raise CorruptLog(path, offset, "torn frame in a segment that is not the last one")
    return frames, offset


class DiskLog:
    """The durable log of one data directory. See the module docstring for the rules.

    ``fault_hook`` is a test seam: it is called with the name of each step of
    ``rewrite`` (``REWRITE_STEPS``), with ``"segment_created"`` when a segment
    is started, and with ``"sync_written"`` and ``"sync_fsynced"`` around the
    fsync of ``sync``; raising from it simulates a crash right there. The same
    steps are the named crash points of ``configsvc.runtime.crash_points``.

    Raises LogLocked if the directory is in use, CorruptLog if it cannot be trusted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fault_hook: Callable[[str], None] | None = None,
    ) -> None:
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        self.path = Path(path)
        self.segment_bytes = segment_bytes
        self._hook = fault_hook
        #: a test's named crash point (``configsvc.runtime.crash_points``); None unless armed
        self._crash = crash_points.for_log(self.path)
        self._pending: list[bytes] = []
        self._segments: list[_Segment] = []
        self._fd: int | None = None  # the last segment, open for appending
        self._failed: str | None = None
        self._closed = False
        self._busy = threading.Lock()
        self._lock_fd = self._lock()
        try:
            self.recovery = self._recover()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------ opening

    def _lock(self) -> int:
        ensure_dir(self.path)
        fd = os.open(self.path / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LogLocked(self.path, f"pid {holder}" if holder else "another opener") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _recover(self) -> Recovery:
        logs: dict[int, Path] = {}
        bases: dict[int, Path] = {}
        changed = False
        for entry in sorted(self.path.iterdir()):
            if entry.name.endswith(".tmp"):
                entry.unlink()  # a rewrite that never reached its commit point
                changed = True
            elif match := _SEGMENT.match(entry.name):
                (logs if match[1] == "log" else bases)[int(match[2])] = entry
        finished = bool(bases)
        if bases:
            # A rewrite passed its commit point (base renamed, dir fsynced) but did
            # not finish: the base is the whole log; finish removing what it replaced.
            first = max(bases)
            if any(seq > first for seq in logs):
                raise CorruptLog(bases[first], 0, "segments newer than an unfinished rewrite")
            for stale in [*logs.values(), *(p for s, p in bases.items() if s != first)]:
                stale.unlink()
            fsync_dir(self.path)
            target = self.path / _segment_name("log", first)
            os.rename(bases[first], target)
            logs = {first: target}
            changed = True
        if changed:
            fsync_dir(self.path)

        torn: TornTail | None = None
        order = sorted(logs)
        expected = order[0] if order else 0
        for i, first_seq in enumerate(order):
            path = logs[first_seq]
            if first_seq != expected:
                raise CorruptLog(
                    path, 0, f"segment starts at frame {first_seq}, expected {expected} (gap)"
                )
            data = memoryview(path.read_bytes())  # frames are checked in place, not copied
            last = i == len(order) - 1
            frames, valid = _scan(path, data, last=last)
            if valid < len(data):
                torn = TornTail(path, valid, len(data) - valid)
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, valid)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _logger.warning(
                    "truncated a torn tail of %d bytes at %s offset %d",
                    torn.discarded,
                    path,
                    valid,
                )
            self._segments.append(_Segment(path, first_seq, frames, valid))
            expected = first_seq + frames
        if self._segments:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        return Recovery(
            segments=len(self._segments),
            frames=sum(s.frames for s in self._segments),
            torn=torn,
            finished_rewrite=finished,
        )

    # ------------------------------------------------------------------ state

    @property
    def next_seq(self) -> int:
        """The frame number the next appended frame will get."""
        if not self._segments:
            return 0
        tail = self._segments[-1]
        return tail.first_seq + tail.frames

    @property
    def segment_paths(self) -> list[Path]:
        return [s.path for s in self._segments]

    @property
    def durable_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def pending_frames(self) -> int:
        return len(self._pending)

    def _usable(self) -> None:
        if self._closed:
            raise DiskLogError(f"log {self.path} is closed")
        if self._failed is not None:
            raise DiskLogError(
                f"log {self.path} failed earlier ({self._failed}); exit and reopen the directory"
            )

    def _enter(self) -> None:
        if not self._busy.acquire(blocking=False):
            raise DiskLogError("concurrent calls on one DiskLog: it supports one writer at a time")
        try:
            self._usable()
        except BaseException:
            self._busy.release()
            raise

    def _step(self, name: str) -> None:
        if self._hook is not None:
            self._hook(name)
        if self._crash is not None:
            self._crash.reached(name)

    # ------------------------------------------------------------------ writing

    def append(self, frames: Iterable[bytes]) -> None:
        """Buffer frames (not yet durable). Raises ValueError for bytes that are not one frame."""
        self._enter()
        try:
            batch = list(frames)
            for frame in batch:
                if (
                    len(frame) <= HEADER.size
                    or HEADER.unpack_from(frame)[0] != len(frame) - HEADER.size
                ):
                    raise ValueError(
                        "append expects whole frames (u32 length | u32 crc | non-empty payload)"
                    )
            self._pending += batch
        finally:
            self._busy.release()

    def sync(self) -> None:
        """Write every buffered frame and fsync: one write, one fsync (group commit).

        Raises DiskLogError (and refuses further use) if the disk fails.
        """
        self._enter()
        try:
            if not self._pending:
                return
            data = b"".join(self._pending)
            try:
                tail = self._segments[-1] if self._segments else None
                if tail is None or (tail.size and tail.size + len(data) > self.segment_bytes):
                    tail = self._start_segment()
                assert self._fd is not None
                _write_all(self._fd, data)
                self._step("sync_written")
                os.fsync(self._fd)
                self._step("sync_fsynced")
            except BaseException as exc:
                self._failed = f"sync: {exc!r}"
                raise
            tail.size += len(data)
            tail.frames += len(self._pending)
            self._pending = []
        finally:
            self._busy.release()

    def _start_segment(self) -> _Segment:
        segment = _Segment(self.path / _segment_name("log", self.next_seq), self.next_seq, 0, 0)
        fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        old, self._fd = self._fd, fd
        self._segments.append(segment)
        if old is not None:
            os.close(old)
        fsync_dir(self.path)
        self._step("segment_created")
        return segment

    def rewrite(self, frames: Iterable[bytes]) -> None:
        """Atomically replace the whole log with ``frames`` (compaction).

        Buffered frames must be synced first (DiskLogError otherwise): the new log
        is meant to already contain what they say. Steps: write a temp file,
        fsync it, rename it to ``base-<seq>.seg``, fsync the directory (the
        commit point), remove the old segments, fsync the directory, rename the
        base to ``log-<seq>.seg``, fsync the directory. Open finishes a rewrite
        that crashed after its commit point and discards one that crashed before.

        Raises DiskLogError (and refuses further use) if the disk fails.
        """
        self._enter()
        try:
            if self._pending:
                raise DiskLogError(
                    "rewrite with unsynced frames: sync them or fold them into frames"
                )
            try:
                self._rewrite(list(frames))
            except BaseException as exc:
                self._failed = f"rewrite: {exc!r}"
                raise
        finally:
            self._busy.release()

    def _rewrite(self, frames: list[bytes]) -> None:
        first = self.next_seq
        size = sum(len(frame) for frame in frames)
        tmp = self.path / f"rewrite-{first:020d}.tmp"
        base = self.path / _segment_name("base", first)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_frames(fd, frames)
            self._step("tmp_written")
            os.fsync(fd)
            self._step("tmp_synced")
        finally:
            os.close(fd)
        os.rename(tmp, base)
        self._step("base_renamed")
        fsync_dir(self.path)
        self._step("dir_synced")
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        old, self._segments = self._segments, []
        for segment in old:
            segment.path.unlink()
            self._step("remove_old")
        fsync_dir(self.path)
        self._step("old_removed")
        target = self.path / _segment_name("log", first)
        os.rename(base, target)
        self._step("base_to_log")
        fsync_dir(self.path)
        self._segments = [_Segment(target, first, len(frames), size)]
        self._fd = os.open(target, os.O_WRONLY | os.O_APPEND)
        self._step("done")

    # ------------------------------------------------------------------ reading

    def read(self, decode: Callable[[memoryview], R]) -> Iterator[R]:
        """Yield ``decode(frame)`` for every durable frame, in order (re-reads the files).

        ``decode`` gets one whole frame (header included), a view into the segment
        read (valid only during the call: copy what it keeps), and raises ValueError
        if it cannot decode it; that becomes CorruptLog with the file and offset.
        Buffered, unsynced frames are not included. Meant for startup: do not
        interleave writes with an unfinished iteration.
        """
        self._usable()
        for segment in list(self._segments):
            with open(segment.path, "rb") as f:
                data = memoryview(f.read(segment.size))
            offset = 0
            while offset < len(data):
                (length, crc) = HEADER.unpack_from(data, offset)
                end = offset + HEADER.size + length
                frame = data[offset:end]  # a view: no copy of a large snapshot frame
                if len(frame) != end - offset or crc32c.crc32c(frame[HEADER.size :]) != crc:
                    raise CorruptLog(segment.path, offset, "changed since the log was opened")
                try:
                    record = decode(frame)
                except ValueError as exc:
                    raise CorruptLog(segment.path, offset, f"undecodable frame: {exc}") from exc
                yield record
                offset = end

    # ------------------------------------------------------------------ closing

    def close(self, wait: float = 30.0) -> None:
        """Release the directory. Buffered, unsynced frames are dropped (as by a crash).

        A call still running in another thread (a ``sync`` whose awaiting task was
        cancelled at shutdown) is waited for, up to ``wait`` seconds; then DiskLogError.
        """
        if not self._busy.acquire(timeout=wait):
            raise DiskLogError("close while another call is still running: one writer at a time")
        try:
            if self._closed:
                return
            self._closed = True
            self._pending = []
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._release()
        finally:
            self._busy.release()

    def _release(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)

    def __enter__(self) -> DiskLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

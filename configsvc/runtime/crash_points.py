"""Named crash points: kill this process (SIGKILL) at a precise point of the disk code.

A test seam for the kill -9 tests (``tests/test_crash_points.py``): a real node
process is started with ``CONFIGSVC_CRASH_AT`` naming one point, and dies the
Nth time its storage reaches that point, exactly as if the machine lost power
there (nothing after it runs: no ``finally``, no flush, no reply)::

    CONFIGSVC_CRASH_AT=[LOG/]POINT[@N]

``POINT`` is one of ``POINTS`` below; ``N`` (default 1) counts from the
process's start; ``LOG`` (optional) limits the point to one data directory's
log by its name (``strong`` or ``eventual``, the directories a node keeps its
two stores in). Example: ``strong/snapshot-write:after-rename@2``.

Invariants:

1. Zero cost when unset: the variable is read once, when the first log opens;
   an unarmed log holds ``None`` and never calls in here again.
2. Only the named point, only the Nth time: nothing else changes behaviour.
3. Before dying it writes one line to stderr (``crash point ... reached``) so a
   test can tell this death from any other.

Raises ``ValueError`` (at the first log opening) for a malformed or unknown
point: a misspelt crash point must fail loudly, not silently never fire.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "CONFIGSVC_CRASH_AT"

#: crash point -> the ``DiskLog`` step (``configsvc.runtime.disklog``) it fires at
POINTS: dict[str, str] = {
    # group commit (DiskLog.sync): the batch is written, not yet fsynced (never
    # acknowledged); or fsynced, but its writes not yet acknowledged to anyone
    "group-commit:before-fsync": "sync_written",
    "group-commit:after-fsync": "sync_fsynced",
    # writing the snapshot (a strong SnapshotRecord compacts the log: DiskLog.rewrite
    # writes the new log to a temp file): written but not fsynced; fsynced; renamed
    # to its base name (the commit point is the directory fsync right after)
    "snapshot-write:before-fsync": "tmp_written",
    "snapshot-write:before-rename": "tmp_synced",
    "snapshot-write:after-rename": "base_renamed",
    # log compaction (the rest of DiskLog.rewrite): one old segment removed, all
    # removed, the base renamed to a live segment before the directory fsync
    "compaction:remove-old": "remove_old",
    "compaction:old-removed": "old_removed",
    "compaction:before-final-fsync": "base_to_log",
}


class CrashPoint:
    """One armed point of one log: ``reached(step)`` kills the process the Nth time."""

    def __init__(self, point: str, step: str, nth: int) -> None:
        self.point = point
        self.step = step
        self.nth = nth
        self.count = 0

    def reached(self, step: str) -> None:
        if step != self.step:
            return
        self.count += 1
        if self.count >= self.nth:
            os.write(2, f"crash point {self.point} reached ({self.count}): SIGKILL\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)


_spec: tuple[str | None, str, int] | None = None
_read = False
#: one counter per point and log name, shared by every open of that log in this process
_armed: dict[str, CrashPoint] = {}


def parse(text: str) -> tuple[str | None, str, int]:
    """``[LOG/]POINT[@N]`` -> (log, point, n). Raises ValueError if malformed or unknown."""
    log: str | None = None
    if "/" in text:
        log, text = text.split("/", 1)
    point, _, count = text.partition("@")
    if point not in POINTS:
        raise ValueError(f"{ENV}: unknown crash point {point!r} (known: {', '.join(POINTS)})")
    if count and not (count.isdigit() and int(count) >= 1):
        raise ValueError(f"{ENV}: the count after '@' must be a whole number >= 1, not {count!r}")
    return log, point, int(count or 1)


def for_log(path: Path) -> CrashPoint | None:
    """The crash point armed for the log in ``path``, or None (the usual case).
    Reads ``CONFIGSVC_CRASH_AT`` on the first call only."""
    global _spec, _read
    if not _read:
        _read = True
        text = os.environ.get(ENV, "")
        _spec = parse(text) if text else None
    if _spec is None:
        return None
    log, point, nth = _spec
    if log is not None and log != path.name:
        return None
    return _armed.setdefault(path.name, CrashPoint(point, POINTS[point], nth))

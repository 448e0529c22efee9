"""Corrupt store data: set aside, never served, rebuilt from the peers.

Every record and snapshot on disk carries a CRC32C, checked on every read
(``configsvc.runtime.disklog``: at open, and again by ``DiskLog.read``, which
is how a store loads). A store whose files fail the check raises ``CorruptLog``.
The node then quarantines that store instead of serving from it:

1. The strong store: the node first marks itself a non-voting learner
   (``configsvc.datadir`` marker ``voting: false``, written before anything
   moves, so a crash midway leaves a learner, never a voter with half its
   state), then moves the store's files to ``quarantine-<n>/strong`` (kept for
   inspection, with a ``REASON`` file) and starts with an empty store. It
   catches up from its peers (log or snapshot transfer) and never votes by
   itself: its lost promises and accepts may be part of a quorum
   (``strong.replica`` rule 7); only a membership change (replace) makes it a
   voter again. This is ``configsvc node reset``, done by the node on detection.
2. The eventual store: its files move to ``quarantine-<n>/eventual``; the node
   starts it empty under a fresh replica identity and gets the state back by
   full-state transfer from its peers (``eventual.replica``), as after a wipe.

Nothing corrupt is ever deleted, and nothing is skipped inside a store: a store
is trusted whole or set aside whole.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from configsvc.datadir import STORES, Member, write_marker
from configsvc.runtime.disk_storage import DiskStorage, eventual_storage, strong_storage
from configsvc.runtime.disklog import CorruptLog, ensure_dir, fsync_dir
from eventual.records import Record as EventualRecord
from strong.records import Record as StrongRecord

__all__ = ["corrupt_store", "open_stores", "quarantine"]

log = logging.getLogger("configsvc.quarantine")


def corrupt_store(data_dir: Path, path: Path) -> str:
    """Which store of ``data_dir`` the corrupt file ``path`` belongs to.

    Raises ``ValueError`` if it belongs to none."""
    relative = path.resolve().relative_to(data_dir.resolve())
    if relative.parts and relative.parts[0] in STORES:
        return relative.parts[0]
    raise ValueError(f"{path} is in no store of {data_dir}")


def quarantine(data_dir: Path, store: str, cluster_id: str, node_id: str, reason: str) -> Path:
    """Move ``store``'s files aside (rules 1 and 2); return where they went.

    The store must not be open. Raises ``OSError`` if the files cannot be moved."""
    if store not in STORES:
        raise ValueError(f"no store {store!r}")
    if store == "strong":
        write_marker(data_dir, Member(cluster_id, node_id, voting=False))
    n = 1
    while (data_dir / f"quarantine-{n}").exists():
        n += 1
    target = data_dir / f"quarantine-{n}"
    ensure_dir(target)
    (target / "REASON").write_text(reason + "\n")
    os.rename(data_dir / store, target / store)
    fsync_dir(target)
    fsync_dir(data_dir)
    ensure_dir(data_dir / store)
    return target


def open_stores(
    data_dir: Path, cluster_id: str, node_id: str
) -> tuple[DiskStorage[StrongRecord], DiskStorage[EventualRecord], list[str]]:
    """Open both stores, quarantining one that is corrupt (at most once each).

    Returns the stores and one line per store set aside. Raises ``CorruptLog`` if
    a store is still corrupt after that, ``OSError`` if it cannot be moved."""
    repaired: list[str] = []
    opened: dict[str, object] = {}
    try:
        for store, open_store in (("strong", strong_storage), ("eventual", eventual_storage)):
            try:
                opened[store] = open_store(data_dir / store)
            except CorruptLog as exc:
                if corrupt_store(data_dir, exc.path) != store:
                    raise
                target = quarantine(data_dir, store, cluster_id, node_id, str(exc))
                log.error("%s store corrupt (%s): moved to %s; rebuilding it from the peers",
                          store, exc, target)
                repaired.append(f"{store} store was corrupt ({exc}); set aside in {target.name}, "
                                "rebuilt from the peers"
                                + ("; non-voting until replaced" if store == "strong" else ""))
                opened[store] = open_store(data_dir / store)
    except BaseException:
        for storage in opened.values():
            storage.close()  # type: ignore[attr-defined]
        raise
    return opened["strong"], opened["eventual"], repaired  # type: ignore[return-value]

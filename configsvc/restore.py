"""Offline restore: a node's data directory prepared from a backup file.

``restore(config, node_id, data)`` makes ``config.data_dir(node_id)`` the
directory of a voter of a *new* cluster whose committed state is the backup's:

- the strong store holds one promise (the zero ballot), the backup's state as
  its snapshot at the backup's applied index, wrapped with the configuration
  of the cluster file's voters and their addresses (``strong.membership``
  rule 4), and a commit hint at that index: nothing promised, nothing
  accepted above it. The records are those ``strong.storage.compacted``
  writes for such a state, so the node reads them as it reads a compacted log;
- the eventual store is empty (its contents are not in a backup);
- the ``cluster-member`` marker says voting, for the config's cluster id.

Every node of the new cluster is restored from the same file, so every voter
starts with the same snapshot at the same index and the first leader's
phase 1 runs from the slot above it.

Refusals (``RestoreError``, nothing written): a data directory holding
anything; a file that fails ``decode_backup`` (checksum, truncation, format);
a backup of another cluster id unless ``force_cluster_id``; a state-machine
version above what this binary supports; a node the file does not list, or
one marked ``join`` (a restored cluster starts from its voters; add others
afterwards with ``configsvc member add``).

Atomicity: everything is written into ``<data_dir>.restoring``, fsynced, read
back and checked, then renamed to ``<data_dir>`` and the parent fsynced: a
crash leaves either no data directory or the whole restored one (a stale
``.restoring`` directory is refused on the next attempt, naming it).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from configsvc.backup import Backup, BackupError, decode_backup
from configsvc.config import ClusterConfig, ConfigError
from configsvc.datadir import STORES, Member, write_marker
from configsvc.node_members import bootstrap, member_of
from configsvc.runtime.disk_storage import strong_storage
from configsvc.runtime.disklog import ensure_dir, fsync_dir
from configsvc.upgrade import supported_versions
from strong.membership import Membership, wrap_snapshot
from strong.storage import DurableState, compacted, recover

__all__ = ["RestoreError", "Restored", "restore"]


class RestoreError(Exception):
    """The restore was refused; nothing was written. ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Restored:
    data_dir: Path
    backup: Backup
    voters: tuple[str, ...]


def restore(config: ClusterConfig, node_id: str, data: bytes, *,
            force_cluster_id: bool = False) -> Restored:
    """Prepare ``node_id``'s data directory from the backup file ``data``.

    Raises ``RestoreError`` for every refusal listed in the module docstring
    (nothing written), ``OSError`` if the disk fails midway (the temporary
    directory is removed)."""
    try:
        node = config.node(node_id)
    except ConfigError as exc:
        raise RestoreError(str(exc)) from None
    if node.join:
        raise RestoreError(
            f"node {node_id!r} is marked join in the cluster file: a restored cluster starts "
            "from the file's voters; add it afterwards with `configsvc member add`")
    try:
        backup, _ = decode_backup(data)
    except BackupError as exc:
        raise RestoreError(f"not restoring from this file: {exc}") from None
    if backup.cluster_id != config.cluster_id and not force_cluster_id:
        raise RestoreError(
            f"the backup is of cluster {backup.cluster_id!r}, the cluster file says "
            f"{config.cluster_id!r}; pass --force-cluster-id to restore it as "
            f"{config.cluster_id!r}")
    try:  # the range the node will run under (a cap in the environment narrows it)
        supported = supported_versions()
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    if backup.version not in supported:
        raise RestoreError(
            f"the backup is at state-machine version {backup.version}; this binary supports "
            f"{supported.start}..{supported.stop - 1}: restore with a newer one")
    data_dir = config.data_dir(node_id)
    staging = data_dir.with_name(data_dir.name + ".restoring")
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise RestoreError(
            f"data directory {data_dir} is not empty; a restore only fills an empty or absent "
            "one (move the old one aside first)")
    if staging.exists():
        raise RestoreError(f"{staging} exists (an interrupted restore?): remove it and retry")
    voters, _ = bootstrap(config, node_id)
    membership = Membership(voters, addresses=tuple(
        sorted((member_of(config, v) for v in voters), key=lambda m: m.node_id)))
    _write(staging, backup, membership, Member(config.cluster_id, node_id, voting=True))
    if data_dir.exists():
        data_dir.rmdir()  # empty, checked above
    os.rename(staging, data_dir)
    fsync_dir(data_dir.parent)
    return Restored(data_dir, backup, voters)


def _write(staging: Path, backup: Backup, membership: Membership, member: Member) -> None:
    """The whole restored directory in ``staging``, durable and read back."""
    ensure_dir(staging)
    try:
        index = backup.applied_index
        snapshot = wrap_snapshot(membership, backup.state)
        state = DurableState(commit_index=index, snapshot_index=index, snapshot=snapshot)
        with strong_storage(staging / "strong") as storage:
            storage.append(compacted(state))
            storage.sync()
        with strong_storage(staging / "strong") as storage:  # read back what a node will read
            back = recover(storage.load())
        if (back.snapshot_index, back.commit_index, back.snapshot) != (index, index, snapshot):
            raise OSError(f"{staging}: the restored strong store does not read back as written")
        for store in STORES:
            ensure_dir(staging / store)
        write_marker(staging, member)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""A node's data directory: created durably, and marked once the node is a cluster member.

Layout::

    <data_dir>/cluster-member     the marker (JSON: format, cluster_id, node_id, voting)
    <data_dir>/strong/            the strong store's DiskLog
    <data_dir>/eventual/          the eventual store's DiskLog

Why a marker. A Paxos acceptor's promise and accepted values are part of
every quorum it answered; a node whose directory was wiped and that restarts
as a fresh voter with the same id can help a quorum choose a second value for
a slot (``tests/test_finding7_rejoin.py``). An empty directory alone cannot
tell "the first start of a new cluster" from "a member that lost its disk",
so the operator says which, as with etcd's ``--initial-cluster-state``:

- the marker exists: the node starts as the marker says (``voting`` true, or
  false for a node that was reset: a learner); the
  ``initial_cluster_state`` argument is ignored;
- no marker, no data, ``initial_cluster_state="new"``: the first start of a
  new cluster; the marker is written (voting) before the node can vote;
- no marker, no data, ``"existing"`` (the default): refused with
  ``DataDirError`` naming the two ways out (``new`` for a brand-new cluster,
  ``configsvc node reset`` for a member that lost its disk);
- no marker but a strong log holding records: a directory from before markers
  existed; the marker is written (voting), since its durable state is there.

``reset`` is the deliberate rejoin path: it removes the node's store data and
writes a marker with ``voting: false``; the node then starts as a non-voting
learner (``strong.replica`` rule 7): it catches up, and votes again only
through a membership change.

Durability: every directory created here or by ``configsvc.runtime.disklog`` is
followed by an fsync of its parent (``ensure_dir``); the marker is written to
a temporary file, fsynced, renamed into place, and the directory fsynced.

Raises ``DataDirError`` (a clear message for the operator) for every refusal.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from configsvc.runtime.disklog import ensure_dir, fsync_dir

__all__ = [
    "MARKER",
    "DataDirError",
    "InitialState",
    "Member",
    "open_data_dir",
    "read_marker",
    "reset",
    "write_marker",
]

MARKER = "cluster-member"
_FORMAT = 1
STORES = ("strong", "eventual")

InitialState = Literal["new", "existing"]


class DataDirError(Exception):
    """The data directory must not be used as it is; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Member:
    """What the marker records: whose directory this is, and whether it may vote."""

    cluster_id: str
    node_id: str
    voting: bool


def read_marker(data_dir: Path) -> Member | None:
    """The marker of ``data_dir``, or None if it has none. Raises DataDirError if unreadable."""
    path = data_dir / MARKER
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        if data.get("format") != _FORMAT:
            raise ValueError(f"unknown format {data.get('format')!r}")
        member = Member(str(data["cluster_id"]), str(data["node_id"]), bool(data["voting"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataDirError(f"{path}: unreadable cluster-member marker ({exc}); refusing to start") from None
    return member


def write_marker(data_dir: Path, member: Member) -> None:
    """Durably (re)write the marker: temp file, fsync, rename, fsync the directory."""
    ensure_dir(data_dir)
    body = json.dumps(
        {"format": _FORMAT, "cluster_id": member.cluster_id, "node_id": member.node_id,
         "voting": member.voting},
        sort_keys=True,
    ).encode() + b"\n"
    tmp = data_dir / f"{MARKER}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, data_dir / MARKER)
    fsync_dir(data_dir)


def open_data_dir(
    data_dir: Path, cluster_id: str, node_id: str, initial_state: InitialState = "existing"
) -> Member:
    """Check (or create) ``data_dir`` for this node; return whether it may vote.

    Creates the directory and its store sub-directories durably. Raises
    DataDirError when the directory belongs to another cluster or node, or is
    empty while ``initial_state`` is ``"existing"``.
    """
    if initial_state not in ("new", "existing"):
        raise DataDirError(f"initial cluster state must be 'new' or 'existing', not {initial_state!r}")
    ensure_dir(data_dir)
    member = read_marker(data_dir)
    if member is not None:
        if (member.cluster_id, member.node_id) != (cluster_id, node_id):
            raise DataDirError(
                f"data directory {data_dir} belongs to node {member.node_id!r} of cluster "
                f"{member.cluster_id!r}, not to node {node_id!r} of cluster {cluster_id!r}; "
                "refusing to start"
            )
    elif _holds_strong_records(data_dir):
        member = Member(cluster_id, node_id, voting=True)  # written before markers existed
        write_marker(data_dir, member)
    elif initial_state == "new":
        member = Member(cluster_id, node_id, voting=True)
        write_marker(data_dir, member)
    else:
        raise DataDirError(
            f"data directory {data_dir} is empty, and node {node_id!r} is not marked as a member "
            f"of cluster {cluster_id!r}. If this is the first start of a new cluster, start every "
            "node once with --initial-cluster-state new. If this node was a member and lost its "
            f"data, run `configsvc node reset --config <cluster.yaml> --node {node_id}`: it rejoins "
            "as a non-voting learner that catches up from the others."
        )
    for store in STORES:
        ensure_dir(data_dir / store)
    return member


def reset(data_dir: Path, cluster_id: str, node_id: str) -> None:
    """Wipe this node's store data and mark it a non-voting learner (the rejoin path).

    Refuses (DataDirError) while a process holds the directory open, or if the
    marker names another cluster or node.
    """
    member = read_marker(data_dir)
    if member is not None and (member.cluster_id, member.node_id) != (cluster_id, node_id):
        raise DataDirError(
            f"data directory {data_dir} belongs to node {member.node_id!r} of cluster "
            f"{member.cluster_id!r}; refusing to reset it as {node_id!r} of {cluster_id!r}"
        )
    locks = []
    try:
        for store in STORES:
            lock = data_dir / store / "LOCK"
            if lock.exists():
                fd = os.open(lock, os.O_RDWR)
                locks.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise DataDirError(
                        f"{data_dir / store} is in use: stop node {node_id!r} before resetting it"
                    ) from None
        # The learner marker goes first: a crash mid-reset leaves a learner, never a voter
        # with half its state.
        write_marker(data_dir, Member(cluster_id, node_id, voting=False))
        for store in STORES:
            if (data_dir / store).exists():
                shutil.rmtree(data_dir / store)
        fsync_dir(data_dir)
    finally:
        for fd in locks:
            os.close(fd)
    for store in STORES:
        ensure_dir(data_dir / store)


def _holds_strong_records(data_dir: Path) -> bool:
    strong = data_dir / "strong"
    return strong.is_dir() and any(
        p.suffix == ".seg" and p.stat().st_size > 0 for p in strong.iterdir()
    )

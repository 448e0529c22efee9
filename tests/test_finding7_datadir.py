"""Finding 7 in the runtime: directories are fsynced after creation, and a data
directory is marked once its node is a cluster member (``configsvc.datadir``).

The fsync tests wrap ``os.fsync`` (a unit-test seam) to see which directories
get fsynced, resolving each descriptor to its path through ``/proc/self/fd``.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from configsvc.config import parse_config
from configsvc.datadir import MARKER, DataDirError, Member, open_data_dir, read_marker, reset
from configsvc.node import Node
from configsvc.runtime.disklog import DiskLog, make_frame
from tests.cluster import PEER_SECRET, free_ports


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every path fsynced while the test runs, in order."""
    seen: list[Path] = []
    real = os.fsync

    def recording_fsync(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    yield seen


def _created_dirs_fsynced(root: Path, fsynced: list[Path]) -> list[Path]:
    """Directories under ``root`` whose parent was never fsynced (should be none)."""
    missing = []
    for path in sorted(p for p in root.rglob("*") if p.is_dir()):
        if path.parent.resolve() not in [p.resolve() for p in fsynced]:
            missing.append(path)
    return missing


def test_finding7_disklog_fsyncs_the_parent_of_every_directory_it_creates(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    with DiskLog(tmp_path / "a" / "b" / "c"):
        pass
    assert _created_dirs_fsynced(tmp_path, fsynced) == []


def test_finding7_a_node_fsyncs_every_directory_it_creates(tmp_path: Path, fsynced: list[Path]) -> None:
    api, peer = free_ports(2)
    config = parse_config({
        "cluster_id": "t",
        "data_root": str(tmp_path / "root" / "data"),
        "nodes": [{"id": "n1", "api_port": api, "peer_port": peer}],
        "security": {"peer_secret": PEER_SECRET},
    })

    async def main() -> None:
        node = Node(config, "n1", initial_cluster_state="new")
        await node.start()
        deadline = asyncio.get_running_loop().time() + 10
        while not node.namespaces_ready:  # settle (no sync in flight) before closing
            assert asyncio.get_running_loop().time() < deadline, "no leader in time"
            await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
        await node.close()

    asyncio.run(main())
    made = [p for p in (tmp_path / "root").rglob("*") if p.is_dir()]
    assert {p.name for p in made} >= {"data", "n1", "strong", "eventual"}
    assert _created_dirs_fsynced(tmp_path, fsynced) == []


# ---------------------------------------------------------------- the marker


def test_finding7_an_empty_data_dir_is_refused_unless_the_cluster_is_new(tmp_path: Path) -> None:
    with pytest.raises(DataDirError) as err:
        open_data_dir(tmp_path / "n1", "c", "n1")
    message = str(err.value)
    assert "--initial-cluster-state new" in message and "configsvc node reset" in message
    assert not (tmp_path / "n1" / MARKER).exists()

    member = open_data_dir(tmp_path / "n1", "c", "n1", "new")
    assert member == Member("c", "n1", voting=True) == read_marker(tmp_path / "n1")
    assert json.loads((tmp_path / "n1" / MARKER).read_text())["voting"] is True
    # later starts need no flag, and "new" cannot re-bootstrap a marked directory
    assert open_data_dir(tmp_path / "n1", "c", "n1") == member
    assert open_data_dir(tmp_path / "n1", "c", "n1", "new") == member


def test_finding7_the_marker_is_durable_file_and_directory(tmp_path: Path, fsynced: list[Path]) -> None:
    open_data_dir(tmp_path / "n1", "c", "n1", "new")
    marker = (tmp_path / "n1" / MARKER).resolve()
    tmp_marker = marker.with_name(MARKER + ".tmp")
    assert tmp_marker in fsynced  # the content, before the rename
    after_rename = fsynced[fsynced.index(tmp_marker) + 1 :]
    assert marker.parent in after_rename  # the rename itself


def test_finding7_a_wiped_node_is_refused_and_rejoins_only_through_reset(tmp_path: Path) -> None:
    data = tmp_path / "n1"
    open_data_dir(data, "c", "n1", "new")
    with DiskLog(data / "strong") as log:
        log.append([make_frame(b"promise")])
        log.sync()
    for child in data.iterdir():  # the disk is lost
        if child.is_dir():
            for f in child.iterdir():
                f.unlink()
            child.rmdir()
        else:
            child.unlink()
    with pytest.raises(DataDirError, match="node reset"):
        open_data_dir(data, "c", "n1")
    reset(data, "c", "n1")
    assert open_data_dir(data, "c", "n1") == Member("c", "n1", voting=False)


def test_finding7_reset_removes_the_store_data_and_refuses_while_the_node_runs(tmp_path: Path) -> None:
    data = tmp_path / "n1"
    open_data_dir(data, "c", "n1", "new")
    with DiskLog(data / "strong") as log:
        log.append([make_frame(b"promise")])
        log.sync()
        with pytest.raises(DataDirError, match="stop node"):
            reset(data, "c", "n1")
        assert read_marker(data) == Member("c", "n1", voting=True)  # unchanged
    reset(data, "c", "n1")
    assert read_marker(data) == Member("c", "n1", voting=False)
    assert list((data / "strong").iterdir()) == []


def test_finding7_a_directory_of_another_node_or_cluster_is_refused(tmp_path: Path) -> None:
    open_data_dir(tmp_path / "d", "c", "n1", "new")
    with pytest.raises(DataDirError, match="belongs to node 'n1'"):
        open_data_dir(tmp_path / "d", "c", "n2", "new")
    with pytest.raises(DataDirError, match="cluster 'c'"):
        open_data_dir(tmp_path / "d", "other", "n1")
    (tmp_path / "d" / MARKER).write_text("{not json")
    with pytest.raises(DataDirError, match="unreadable"):
        open_data_dir(tmp_path / "d", "c", "n1")


def test_finding7_a_directory_from_before_markers_is_adopted(tmp_path: Path) -> None:
    data = tmp_path / "n1"
    with DiskLog(data / "strong") as log:
        log.append([make_frame(b"promise")])
        log.sync()
    assert open_data_dir(data, "c", "n1") == Member("c", "n1", voting=True)
    assert read_marker(data) is not None


def test_finding7_reset_is_refused_for_a_directory_held_by_a_lock_file_only(tmp_path: Path) -> None:
    """The lock reset checks is the DiskLog's own flock (one process per directory)."""
    data = tmp_path / "n1"
    open_data_dir(data, "c", "n1", "new")
    (data / "eventual" / "LOCK").write_text("123\n")
    fd = os.open(data / "eventual" / "LOCK", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataDirError, match="in use"):
            reset(data, "c", "n1")
    finally:
        os.close(fd)

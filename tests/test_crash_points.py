"""Nothing acknowledged is lost: kill -9 real nodes at named points of the disk code.

Each test starts a real three-node cluster whose processes carry
``CONFIGSVC_CRASH_AT`` (``configsvc.runtime.crash_points``), so every node
SIGKILLs itself the Nth time its strong log reaches the point, while writer
threads keep many writes in flight. Once a node died there, the test kills -9
whatever still runs (a power cut of the whole cluster), optionally tears the
last record of one node's log, restarts every node unarmed, and checks:

1. every write acknowledged (200) before the crash reads back, linearizably,
   with its value;
2. the replicas agree: once they applied the same index, each node's own
   applied contents of the namespace (a stale read of the whole namespace) are
   identical.

Small ``storage`` thresholds make snapshots and compactions happen within
seconds. The unit tests at the end check the crash-point parser and that an
unarmed or differently-armed log never dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from configsvc.runtime import crash_points
from tests.cluster import LocalCluster, wait_for

NS = "app"


class Writers:
    """``threads`` threads writing unique keys through every node; remembers the acknowledged."""

    def __init__(self, endpoints: list[str], threads: int = 6) -> None:
        self.endpoints = endpoints
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self, t: int) -> None:
        with httpx.Client(timeout=5.0) as http:
            i = 0
            while not self.stop.is_set():
                i += 1
                key, value = f"t{t}-{i}", f"v{t}-{i}-" + "x" * 64
                url = f"{self.endpoints[(t + i) % len(self.endpoints)]}/v1/kv/{NS}/{key}"
                try:
                    r = http.put(url, content=value)
                except httpx.HTTPError:
                    continue  # never acknowledged: may or may not be there
                if r.status_code == 200:
                    with self._lock:
                        self.acked[key] = value

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def _cluster(tmp_path: Path, crash_at: str, storage: dict[str, int] | None = None) -> LocalCluster:
    cluster = LocalCluster(tmp_path, env={crash_points.ENV: crash_at})
    config = yaml.safe_load(cluster.config_path.read_text())
    config["storage"] = storage or {}
    cluster.config_path.write_text(yaml.safe_dump(config))
    return cluster


def _crashed_at_point(cluster: LocalCluster, nid: str, point: str) -> bool:
    p = cluster.procs[nid]
    return p.poll() == -signal.SIGKILL and f"crash point {point} reached" in (
        cluster.root / f"{nid}.log").read_text(errors="replace")


def _crash_under_load(cluster: LocalCluster, point: str) -> tuple[dict[str, str], list[str]]:
    """Start the armed cluster, write until a node dies at ``point``, then kill -9 the
    rest. Returns the acknowledged writes and the nodes that died at the point."""
    cluster.start_all(timeout=90)
    with Writers(cluster.endpoints) as writers:
        wait_for(lambda: any(_crashed_at_point(cluster, n, point) for n in cluster.ids), 90,
                 f"a node killed at {point}")
        # A moment of writes more while the others run on (they may die there too).
        floor = writers.count()
        wait_for(lambda: writers.count() > floor or not any(cluster.alive(n) for n in cluster.ids)
                 or sum(cluster.alive(n) for n in cluster.ids) < 2, 30, "more writes or no quorum")
    died = [n for n in cluster.ids if _crashed_at_point(cluster, n, point)]
    for nid in cluster.ids:
        if cluster.alive(nid):
            cluster.kill(nid)
    assert writers.acked, "no write was acknowledged before the crash"
    return dict(writers.acked), died


def _restart_and_check(cluster: LocalCluster, acked: dict[str, str]) -> None:
    cluster.env = {}
    for nid in cluster.ids:
        cluster.start(nid)
    wait_for(cluster.leader, 90, "a leader after the restart")
    with httpx.Client(timeout=10.0) as http:
        leader = cluster.leader()
        assert leader is not None
        base = f"{cluster.url(leader)}/v1/kv/{NS}"
        lost = {}
        for key, value in acked.items():
            r = http.get(f"{base}/{key}")  # linearizable (the default)
            kv = r.json().get("kv") if r.status_code == 200 else None
            if kv is None or kv["value"] != _b64(value):
                lost[key] = (r.status_code, value)
        assert lost == {}, f"{len(lost)} acknowledged writes lost, e.g. {sorted(lost.items())[:3]}"
        # The replicas agree: each node's applied contents at the same applied index.
        wait_for(lambda: _same_applied_index(cluster), 60, "every node at the same applied index")
        contents = {n: _applied_contents(http, cluster, n) for n in cluster.ids}
    first = contents[cluster.ids[0]]
    assert len(first) >= len(acked)
    assert all(c == first for c in contents.values()), "replicas disagree after the restart"


def _same_applied_index(cluster: LocalCluster) -> bool:
    indexes = {cluster.health(n)["strong"]["applied_index"] for n in cluster.ids}
    return len(indexes) == 1


def _applied_contents(http: httpx.Client, cluster: LocalCluster, nid: str) -> dict[str, Any]:
    r = http.get(f"{cluster.url(nid)}/v1/kv/{NS}", params={"consistency": "stale"})
    assert r.status_code == 200, r.text
    return {kv["key"]: kv["value"] for kv in r.json()["kvs"]}


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def _tear_last_record(data_dir: Path, cut: int = 5) -> int:
    """Truncate the last ``cut`` bytes of the newest strong segment (a torn write)."""
    last = sorted((data_dir / "strong").glob("log-*.seg"))[-1]
    size = last.stat().st_size
    assert size > cut
    os.truncate(last, size - cut)
    return size - cut


@pytest.mark.slow
def test_kill_9_in_group_commit_before_fsync_and_a_torn_record_lose_nothing_acknowledged(
    tmp_path: Path,
) -> None:
    point = "group-commit:before-fsync"
    cluster = _cluster(tmp_path, f"strong/{point}@60")
    try:
        acked, died = _crash_under_load(cluster, point)
        assert died
        # A torn write on one node: its last record cut short by a few bytes.
        victim = died[0]
        _tear_last_record(cluster.root / "data" / victim)
        _restart_and_check(cluster, acked)
        log = (cluster.root / f"{victim}.log").read_text(errors="replace")
        assert "truncated a torn tail" in log, "the torn record was not found and truncated on open"
    finally:
        cluster.stop_all()


def _crash_and_recover(tmp_path: Path, point: str, nth: int, leftovers: tuple[str, ...] = ()) -> None:
    """Crash every node at ``point`` (its ``nth`` time) under load, check that each
    node that died there left files matching ``leftovers``, restart and check."""
    cluster = _cluster(tmp_path, f"strong/{point}@{nth}", {"snapshot_every": 20})
    try:
        acked, died = _crash_under_load(cluster, point)
        assert died
        for pattern in leftovers:
            assert all(_strong_files(cluster, n, pattern) for n in died), f"the crash left no {pattern}"
        _restart_and_check(cluster, acked)
    finally:
        cluster.stop_all()


@pytest.mark.slow
def test_kill_9_while_writing_a_snapshot_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # Killed past the rename: the new log waits as a base, the old one still there.
    _crash_and_recover(tmp_path, "snapshot-write:after-rename", 2, ("base-*.seg", "log-*.seg"))


@pytest.mark.slow
def test_kill_9_while_compacting_the_log_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # Killed after removing one old segment, before the base became the log.
    _crash_and_recover(tmp_path, "compaction:remove-old", 2, ("base-*.seg",))


def _strong_files(cluster: LocalCluster, nid: str, pattern: str) -> list[Path]:
    return sorted((cluster.root / "data" / nid / "strong").glob(pattern))


# ---------------------------------------------------------------- every point (make crash-points)

#: every crash point: ``make crash-points`` (deselected from ``make test``, not skipped)
LONG = pytest.mark.exhaustive
EVERY_POINT = [
    ("group-commit:before-fsync", 60), ("group-commit:after-fsync", 60),
    ("snapshot-write:before-fsync", 2), ("snapshot-write:before-rename", 2),
    ("snapshot-write:after-rename", 1), ("compaction:remove-old", 1),
    ("compaction:old-removed", 2), ("compaction:before-final-fsync", 2),
]


@LONG
@pytest.mark.slow
@pytest.mark.parametrize(("point", "nth"), EVERY_POINT, ids=[p for p, _ in EVERY_POINT])
def test_kill_9_at_every_crash_point_loses_nothing_acknowledged(tmp_path: Path, point: str, nth: int) -> None:
    assert set(crash_points.POINTS) == {p for p, _ in EVERY_POINT}
    _crash_and_recover(tmp_path, point, nth)


@pytest.mark.slow
def test_the_loss_check_fails_when_every_log_loses_acknowledged_records(tmp_path: Path) -> None:
    """The checker can fail: cut the second half of every node's log (what a store
    that acknowledged before its fsync could lose in a power cut) and it reports
    acknowledged writes lost."""
    point = "group-commit:before-fsync"
    cluster = _cluster(tmp_path, f"strong/{point}@60")
    try:
        acked, _ = _crash_under_load(cluster, point)
        for nid in cluster.ids:
            last = _strong_files(cluster, nid, "log-*.seg")[-1]
            os.truncate(last, last.stat().st_size // 2)
        with pytest.raises(AssertionError, match="acknowledged writes lost"):
            _restart_and_check(cluster, acked)
    finally:
        cluster.stop_all()


# ---------------------------------------------------------------- the seam itself


def test_crash_point_specs_parse_and_misspellings_fail_loudly() -> None:
    assert crash_points.parse("compaction:remove-old") == (None, "compaction:remove-old", 1)
    assert crash_points.parse("strong/group-commit:after-fsync@7") == ("strong", "group-commit:after-fsync", 7)
    for bad in ("compaction:remove_old", "group-commit:before-fsync@0", "snapshot-write:after-rename@x"):
        with pytest.raises(ValueError, match=crash_points.ENV):
            crash_points.parse(bad)


_CHILD = """
import sys
from configsvc.runtime.disklog import DiskLog, make_frame
for name in ("eventual", "strong"):
    with DiskLog(sys.argv[1] + "/" + name) as log:
        for i in range(3):
            log.append([make_frame(b"r%d" % i)])
            log.sync()
            print(name, i, flush=True)
"""


def _child(tmp_path: Path, crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != crash_points.ENV}
    if crash_at is not None:
        env[crash_points.ENV] = crash_at
    return subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_a_crash_point_kills_only_its_log_only_the_nth_time(tmp_path: Path) -> None:
    unarmed = _child(tmp_path / "a", None)
    assert unarmed.returncode == 0 and unarmed.stdout.count("\n") == 6
    armed = _child(tmp_path / "b", "strong/group-commit:after-fsync@2")
    assert armed.returncode == -signal.SIGKILL
    # every eventual sync ran; the strong log died right after its second fsync
    assert armed.stdout.splitlines() == ["eventual 0", "eventual 1", "eventual 2", "strong 0"]
    assert "crash point group-commit:after-fsync reached (2)" in armed.stderr

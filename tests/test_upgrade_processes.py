"""A rolling upgrade across two apply-code versions in one real cluster.

Three real processes start as "old binaries" (``$CONFIGSVC_STATE_MACHINE_MAX_VERSION=3``:
they do not have version 5's apply rules) while a client writes without pause.
They are restarted one by one as new binaries (no cap). The group's active version
stays at 3 while any voter still runs the old binary, moves to 5 only after the
last one reports support, and at the end every node holds the same state (equal
state hashes at equal applied index) and every acknowledged write.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from configsvc.client import Client
from configsvc.upgrade import MAX_VERSION_ENV
from strong.state_machine import SERVICES_VERSION, UNREMEMBERED_READS_VERSION
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

OLD, NEW = SERVICES_VERSION, UNREMEMBERED_READS_VERSION


class Writer(threading.Thread):
    """Writes ``w<i>`` keys until stopped; remembers which were acknowledged."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.acked: list[str] = []
        self.stop = threading.Event()

    def wait_for_more(self, n: int) -> None:
        goal = len(self.acked) + n
        wait_for(lambda: len(self.acked) >= goal, 60, f"{n} more acknowledged writes")

    def run(self) -> None:
        with Client(self.endpoints, timeout=5.0) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                try:
                    client.put("app", f"w{i}", f"v{i}")
                except Exception:  # unavailable during a restart, or outcome unknown
                    continue
                self.acked.append(f"w{i}")


def upgrade_status(c: LocalCluster, nid: str) -> dict[str, Any]:
    data: dict[str, Any] = c.http.get(c.url(nid) + "/v1/cluster/upgrade", timeout=5).json()
    return data


def new_range_known(c: LocalCluster, nid: str) -> bool:
    return all((upgrade_status(c, n)["nodes"][nid] or {}).get("supported") == [1, NEW]
               for n in c.ids)


def active_versions(c: LocalCluster) -> set[int]:
    return {upgrade_status(c, n)["active_version"] for n in c.ids}


def test_a_rolling_upgrade_moves_the_version_only_after_the_last_voter_and_nothing_diverges(
    tmp_path: Path,
) -> None:
    c = LocalCluster(tmp_path, nodes=3, env={MAX_VERSION_ENV: str(OLD)})
    writer = Writer(c.endpoints)
    try:
        c.start_all()
        wait_for(lambda: active_versions(c) == {OLD}, 60, f"the group at version {OLD}")
        writer.start()
        writer.wait_for_more(20)
        for i, nid in enumerate(c.ids):
            c.kill(nid, signal.SIGTERM)
            c.env = {}  # the new binary: no cap
            c.start(nid)
            wait_for(partial(new_range_known, c, nid), 60, f"{nid}'s new range known everywhere")
            writer.wait_for_more(20)
            if i < len(c.ids) - 1:
                # A voter still runs the old binary: the version must not move.
                status = upgrade_status(c, c.ids[-1])
                assert status["active_version"] == OLD, status
                assert active_versions(c) == {OLD}
                leader = wait_for(c.leader, 60, "a leader")
                assert c.ids[-1] in upgrade_status(c, leader)["waiting_for"]
        wait_for(lambda: active_versions(c) == {NEW}, 60, f"the group at version {NEW}")
        writer.wait_for_more(20)  # writes flow under version 5
        writer.stop.set()
        writer.join(timeout=30)

        def converged() -> bool:
            states = [upgrade_status(c, n) for n in c.ids]
            return len({(s["applied_index"], s["state_hash"]) for s in states}) == 1
        wait_for(converged, 60, "equal state hashes at equal applied index on every node")
        shown = subprocess.run(
            [sys.executable, "-m", "configsvc.cli", "upgrade", "status", "--endpoint", c.url("n2")],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        assert f"active version: {NEW}" in shown and shown.count(f"1..{NEW}") == 3, shown
        assert not any(upgrade_status(c, n)["halted"] for n in c.ids)
        with Client(c.endpoints) as client:
            listed = {kv["key"] for kv in client.list("app", "w")}
        assert set(writer.acked) <= listed, "an acknowledged write was lost"
        # An old binary started after the switch stops applying, with the reason.
        c.kill("n1", signal.SIGTERM)
        c.env = {MAX_VERSION_ENV: str(OLD)}
        c.start("n1")
        halted = wait_for(lambda: upgrade_status(c, "n1")["halted"], 60, "n1 to stop applying")
        assert f"version {NEW}" in halted and f"this node supports 1..{OLD}" in halted, halted
        assert c.health("n1")["status"] == "unavailable"
        with Client([c.url("n2"), c.url("n3")]) as client:
            client.put("app", "after", "still writable")  # n2 and n3 are a quorum
    finally:
        writer.stop.set()
        c.stop_all()

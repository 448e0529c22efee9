"""Finding 7 with real processes: a wiped node refuses to start until it is reset,
then rejoins as a learner and votes once caught up."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from configsvc.client import Client
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def test_finding7_a_wiped_node_refuses_to_start_until_reset_then_rejoins_as_a_learner(
    tmp_path: Path,
) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        with Client(c.endpoints) as client:
            for i in range(10):
                client.put("app", f"k{i}", f"v{i}")
        victim = next(n for n in c.ids if n != c.leader())
        c.kill(victim, signal.SIGKILL)
        shutil.rmtree(tmp_path / "data" / victim)  # the disk is lost

        c.start(victim)
        assert c.procs[victim].wait(timeout=30) == 2
        log = (tmp_path / f"{victim}.log").read_text()
        assert "is empty" in log and "configsvc node reset" in log

        reset = subprocess.run(
            [sys.executable, "-m", "configsvc.cli", "node", "reset", "--config",
             str(c.config_path), "--node", victim],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert reset.returncode == 0, reset.stderr
        c.start(victim)
        # It catches up as a learner and serves stale reads, but never votes by
        # itself (replica rule 7): only a membership change may make it a voter.
        health = wait_for(
            lambda: (h := c.health(victim))["strong"]["applied_index"] >= 10 and h, 30,
            "the reset node to catch up",
        )
        assert health["strong"]["voting"] is False
        assert '"voting": false' in (tmp_path / "data" / victim / "cluster-member").read_text()
        with Client(c.url(victim)) as client:
            assert client.get("app", "k9", stale=True) == b"v9"
    finally:
        c.stop_all()

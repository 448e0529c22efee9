"""The partition lab end to end: real node processes, a real cut, measured.

Short runs of the ``split`` scenario on three nodes: one must show what the
product promises (the strong namespace refuses the minority and stays
linearizable; the eventual namespaces stay available on both sides and
converge; every checker passes), and so must the same run with real
partitions (``--netns``, root only: skipped elsewhere); with the planted
fault ``stale-follower-reads`` switched on, the linearizability checker must
fail: a checker that cannot fail proves nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from configsvc.lab import netns
from configsvc.lab.report import write_report
from configsvc.lab.run import run_lab

pytestmark = pytest.mark.slow

DURATION = 12.0


def assert_the_promised_verdicts(s: dict[str, Any]) -> None:
    """What a split must show: strong refuses the minority and stays linearizable;
    eventual serves both sides and converges; every checker passes."""
    strong = s["namespaces"]["strong"]["cells"]
    minority, majority = strong["during/minority"], strong["during/majority"]
    assert minority["writes"] > 0 and minority["writes_ok"] == 0, minority
    assert minority["reads"] > 0 and minority["reads_ok"] == 0, minority
    assert majority["writes_ok"] > 0 and majority["reads_ok"] > 0, majority
    for kind in ("eventual", "lww", "svc-eventual"):
        for side in ("majority", "minority"):
            cell = s["namespaces"][kind]["cells"][f"during/{side}"]
            assert cell["ops"] > 0 and cell["success"] >= 0.95, (kind, side, cell)
    assert s["namespaces"]["eventual"]["converged_after_heal_s"] is not None
    assert s["namespaces"]["strong"]["recovered_after_heal_s"] is not None
    assert s["violations"] == {"linearizability": 0, "read_your_writes": 0, "monotonic_reads": 0,
                               "causal": 0, "lost_acked_writes": 0}, s["examples"]
    assert not s["inconclusive"]


def test_split_strong_refuses_the_minority_eventual_serves_both(tmp_path: Path) -> None:
    result = run_lab("split", nodes=3, duration=DURATION)
    assert_the_promised_verdicts(result.summary())
    s = result.summary()
    report = write_report(result, tmp_path / "out")
    assert report.read_text().startswith("<!doctype html>")
    for name in ("success.png", "latency.png", "convergence.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG")
    kept = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert kept["violations"] == s["violations"]
    lines = (tmp_path / "out" / "history.jsonl").read_text().splitlines()
    assert len(lines) == len(result.history.ops) + len(result.history.events)


def test_the_planted_stale_follower_reads_fail_the_linearizability_check() -> None:
    result = run_lab("split", nodes=3, duration=14.0, plant=["stale-follower-reads"])
    s = result.summary()
    assert s["planted"] == ["stale-follower-reads"]
    assert s["violations"]["linearizability"] > 0, s["namespaces"]["strong"]["cells"]
    assert "not linearizable" in s["examples"]["linearizability"][0]


def test_real_partitions_in_network_namespaces_give_the_same_verdicts(tmp_path: Path) -> None:
    """``configsvc lab run --netns``, as a user runs it: nftables drop the packets
    between the sides (root only; CI runs it); the same verdicts as transport cuts."""
    try:
        netns.require()
    except netns.NetnsError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the namespaced lab: {exc}")
        pytest.skip(str(exc))
    out = tmp_path / "netns"
    done = subprocess.run(
        [sys.executable, "-m", "configsvc.cli", "lab", "run", "--scenario", "split", "--nodes", "3",
         "--duration", str(DURATION), "--netns", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["cuts"] == "netns"
    assert_the_promised_verdicts(summary)
    assert json.loads((out / "summary.json").read_text())["violations"] == summary["violations"]

"""A replica whose state diverged is caught by the hash checks and repaired (real processes).

n3 runs with the test seam ``CONFIGSVC_TEST_CORRUPT_KEY=app/victim``: once the key
exists it alters that value in its own memory, as a flipped bit would; its log
stays intact. The leader's periodic ``HashCheck`` makes every replica report its
state hash at the same index; the majority's verdict marks n3 diverged; n3 stops
serving, re-syncs from a peer's snapshot, serves again, and the next checks find
every replica agreeing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from configsvc.client import Client
from configsvc.corruption_seams import CORRUPT_EVENTUAL_ENV, CORRUPT_KEY_ENV
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


def checks(c: LocalCluster, nid: str) -> dict[str, Any]:
    health: dict[str, Any] = c.health(nid)["hash_checks"]
    return health


def test_a_replica_whose_state_hash_disagrees_is_caught_stops_serving_and_is_repaired(
    tmp_path: Path,
) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    config = yaml.safe_load(c.config_path.read_text())
    config["state_machine"] = {"hash_check_interval": 1.0}
    c.config_path.write_text(yaml.safe_dump(config))
    try:
        for nid in c.ids:
            c.env = {CORRUPT_KEY_ENV: "app/victim"} if nid == "n3" else {}
            c.start(nid)
        wait_for(c.leader, 60, "a leader")
        with Client([c.url("n1"), c.url("n2")]) as client:
            for i in range(10):
                client.put("app", f"k{i}", f"v{i}")
            client.put("app", "victim", "good value")
        wait_for(lambda: checks(c, "n3")["repairs"] >= 1, 60, "n3's divergence to be caught")
        log = (tmp_path / "n3.log").read_text()
        assert "TEST SEAM: altered app/victim" in log
        assert "refusing to serve: replicas disagree at index" in log
        # Repaired: serving again, and a later check finds every replica agreeing.
        repaired_at = checks(c, "n3")["last_verdict_index"]

        def agreed_after_repair() -> bool:
            h = checks(c, "n3")
            return (h["diverged"] is None and h["disagreeing"] == []
                    and h["last_verdict_index"] > repaired_at)
        wait_for(agreed_after_repair, 60, "a check after the repair with every replica agreeing")
        with Client(c.url("n3")) as client:
            assert client.get("app", "victim", stale=True) == b"good value"
        assert checks(c, "n3")["repairs"] == 1  # the seam fires once; repaired for good
        assert "re-synced from a peer's snapshot; serving again" in (tmp_path / "n3.log").read_text()
    finally:
        c.stop_all()


def test_an_eventual_replica_corrupted_in_place_is_detected_and_repaired(tmp_path: Path) -> None:
    """n3 brings back, in memory, a value it had overwritten (same version vector as
    its peers, different state). The periodic repair probe compares state hashes
    at equal version vectors; the push-pull full-state exchange removes the stray
    value again, and health names the divergence."""
    c = LocalCluster(tmp_path, nodes=3)
    try:
        for nid in c.ids:
            c.env = {CORRUPT_EVENTUAL_ENV: "disc/victim"} if nid == "n3" else {}
            c.start(nid)
        wait_for(c.leader, 60, "a leader")
        with Client(c.url("n3")) as client:
            client.put("disc", "victim", "first")
            client.put("disc", "victim", "second")
        assert wait_for(lambda: "TEST SEAM: altered disc/victim" in (tmp_path / "n3.log").read_text(),
                        30, "the seam to fire")

        def divergences() -> int:
            return sum(c.health(n)["eventual"]["divergences"] for n in c.ids)
        wait_for(divergences, 60, "the divergence to be detected")
        with Client(c.url("n3")) as client:
            wait_for(lambda: client.siblings("disc", "victim") == [b"second"], 60,
                     "n3 repaired (the stray value gone)")
        reasons = [r for n in c.ids for r in c.health(n)["reasons"]]
        assert any(r["code"] == "eventual_divergence_repaired" for r in reasons), reasons
    finally:
        c.stop_all()

"""Health reasons, eventual digests and the cluster view on real node processes.

A killed node makes its peers ``degraded`` with a reason naming it; a stopped
follower that misses writes is named as lagging by the leader; eventual
replicas that converged report agreeing digests; ``/v1/cluster/status`` shows
every node from any one.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from configsvc.client import Client
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=3)
    config = yaml.safe_load(c.config_path.read_text())
    config["health"] = {"lag_entries": 5, "peer_report_max_age": 0.2}
    c.config_path.write_text(yaml.safe_dump(config))
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def reasons(health: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [r for r in health["reasons"] if r["code"] == code]


def test_a_healthy_cluster_has_no_reason_and_its_eventual_digests_agree(cluster: LocalCluster) -> None:
    with Client(cluster.url("n1")) as client:
        client.put("disc", "web/1", "10.0.0.1")
    n2 = cluster.url("n2")

    def agreed() -> dict[str, Any] | None:
        health = cluster.http.get(n2 + "/v1/cluster/health", timeout=5).json()
        ns = health["eventual"]["digests"]["namespaces"]["disc"]
        return health if ns["agree"] is True and health["eventual"]["namespaces"]["disc"]["keys"] == 1 else None

    health = wait_for(agreed, 20, "n2 to see every replica agree on disc")
    assert health["status"] == "healthy" and health["reasons"] == [], health["reasons"]
    assert set(health["eventual"]["digests"]["namespaces"]["disc"]["peers"]) == {"n1", "n3"}
    local = cluster.http.get(n2 + "/v1/cluster/health?local=true", timeout=5).json()
    assert "digests" not in local["eventual"] and local["eventual"]["namespaces"]["disc"]["keys"] == 1
    bad = cluster.http.get(n2 + "/v1/cluster/health?local=maybe", timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_argument"


def test_a_killed_node_degrades_its_peers_with_a_reason_naming_it(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    victim = next(n for n in cluster.ids if n != leader)
    cluster.kill(victim)

    def degraded() -> dict[str, Any] | None:
        health = cluster.health(leader)  # type: ignore[arg-type]
        return health if health["status"] == "degraded" and reasons(health, "node_unreachable") else None

    health = wait_for(degraded, 20, f"the leader to name {victim} unreachable")
    assert [r["details"] for r in reasons(health, "node_unreachable")] == [{"node": victim}]
    assert reasons(health, "node_unreachable")[0]["message"] == f"node {victim} unreachable"
    assert reasons(health, "one_failure_from_outage")[0]["severity"] == "degraded"

    status = cluster.http.get(cluster.url(leader) + "/v1/cluster/status", timeout=10).json()  # type: ignore[arg-type]
    rows = {row["id"]: row for row in status["nodes"]}
    assert rows[victim]["reachable"] is False and rows[victim]["answered"] is False
    assert all(rows[n]["answered"] and rows[n]["role"] in ("leader", "follower")
               for n in cluster.ids if n != victim)
    assert status["status"] == "degraded"
    merged = next(r for r in status["reasons"] if r["code"] == "node_unreachable")
    assert sorted(merged["reported_by"]) == sorted(n for n in cluster.ids if n != victim)


def test_a_stopped_follower_that_misses_writes_is_named_as_lagging(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.ids if n != leader)
    cluster.kill(follower, signal.SIGSTOP)
    try:
        with Client(cluster.url(leader)) as client:
            for i in range(20):
                client.put("app", f"k{i}", "v")

        def lagging() -> dict[str, Any] | None:
            health = cluster.health(leader)
            lag = [r for r in reasons(health, "replica_lag") if r["details"]["node"] == follower]
            return lag[0] if lag else None

        lag = wait_for(lagging, 20, f"the leader to report {follower} lagging")
        assert lag["details"]["entries"] >= 20 and lag["severity"] == "warning"
        assert lag["message"] == f"replica {follower} lags {lag['details']['entries']:,} entries"
    finally:
        cluster.kill(follower, signal.SIGCONT)
    wait_for(lambda: not reasons(cluster.health(leader), "replica_lag"), 30, "the follower to catch up")
    wait_for(lambda: cluster.health(leader)["status"] == "healthy", 30, "healthy again")

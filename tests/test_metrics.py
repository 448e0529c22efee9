"""``GET /metrics`` scraped from real node processes and parsed by prometheus_client's
own parser: every documented family is there, and the counters moved with the work
the test did (writes through a follower and the leader, eventual writes, errors)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from configsvc.client import Client, ClientError
from configsvc.http.request_metrics import namespace_of
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

#: every family docs/operations.md lists
FAMILIES = {
    "configsvc_strong_commit_seconds", "configsvc_fsync_seconds", "configsvc_fsync_batch_records",
    "configsvc_http_requests", "configsvc_http_errors", "configsvc_http_forwarded_requests",
    "configsvc_strong_leader_changes", "configsvc_strong_lease_expiries",
    "configsvc_strong_snapshots_sent", "configsvc_strong_messages_sent",
    "configsvc_strong_applied_slots", "configsvc_strong_malformed_messages",
    "configsvc_strong_retries_joined", "configsvc_strong_commit_index",
    "configsvc_strong_applied_index", "configsvc_strong_is_leader", "configsvc_strong_lease_valid",
    "configsvc_strong_halted", "configsvc_strong_replica_lag_entries",
    "configsvc_strong_failures_to_outage", "configsvc_loop_fsyncs", "configsvc_loop_records",
    "configsvc_loop_steps", "configsvc_loop_send_failures", "configsvc_transport_frames_out",
    "configsvc_transport_bytes_out", "configsvc_transport_frames_in", "configsvc_transport_bytes_in",
    "configsvc_transport_queue_dropped", "configsvc_transport_connects",
    "configsvc_transport_reconnects", "configsvc_transport_connect_failures",
    "configsvc_transport_auth_failures", "configsvc_transport_bad_frames",
    "configsvc_transport_connected", "configsvc_gossip_peer_lag_events",
    "configsvc_gossip_pending_events", "configsvc_gossip_unstable_events",
    "configsvc_gossip_converged", "configsvc_gossip_divergences", "configsvc_gossip_members",
    "configsvc_eventual_digests_agree", "configsvc_health_status", "configsvc_health_reasons",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("metrics"), nodes=3)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def scrape(cluster: LocalCluster, nid: str) -> dict[str, list[Sample]]:
    response = httpx.get(cluster.url(nid) + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_metrics_parse_and_move_with_the_work_done(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.ids if n != leader)
    before, follower_before = scrape(cluster, leader), scrape(cluster, follower)
    with Client(cluster.url(follower)) as via_follower, Client(cluster.url(leader)) as via_leader:
        for i in range(10):
            via_follower.put("app", f"f{i}", "v")  # proposed there, forwarded by its replica
            via_leader.put("app", f"l{i}", "v")
        via_leader.put("disc", "web/1", "10.0.0.1")
        with pytest.raises(ClientError):
            via_leader.put("no-such-namespace", "k", "v")
    missing = httpx.get(cluster.url(leader) + "/v1/kv/app/missing", timeout=10)
    assert missing.status_code == 404
    after = scrape(cluster, leader)
    assert set(after) >= FAMILIES, sorted(FAMILIES - set(after))

    def moved(family: str, sample: str, **labels: str) -> float:
        return value(after[family], sample, **labels) - value(before[family], sample, **labels)

    # Ten strong writes were proposed on the leader, ten on the follower.
    assert moved("configsvc_strong_commit_seconds", "configsvc_strong_commit_seconds_count") >= 10
    assert moved("configsvc_fsync_seconds", "configsvc_fsync_seconds_count", store="strong") >= 1
    assert moved("configsvc_fsync_seconds", "configsvc_fsync_seconds_count", store="eventual") >= 1
    assert moved("configsvc_fsync_batch_records", "configsvc_fsync_batch_records_sum", store="strong") >= 20
    assert moved("configsvc_http_requests", "configsvc_http_requests_total",
                 face="native", namespace="app", method="PUT", status="200") >= 10
    assert moved("configsvc_http_requests", "configsvc_http_requests_total",
                 namespace="disc", method="PUT") >= 1
    # A namespace that does not exist is counted as 'other', never as its own series.
    assert moved("configsvc_http_requests", "configsvc_http_requests_total", namespace="other") >= 1
    assert not any(s.labels.get("namespace") == "no-such-namespace" for s in after["configsvc_http_requests"])
    assert moved("configsvc_http_errors", "configsvc_http_errors_total",
                 status="404", code="namespace_not_found") >= 1
    assert moved("configsvc_http_errors", "configsvc_http_errors_total",
                 status="404", code="key_not_found") >= 1
    assert moved("configsvc_strong_messages_sent", "configsvc_strong_messages_sent_total",
                 type="Accept") >= 20
    assert value(after["configsvc_strong_leader_changes"], "configsvc_strong_leader_changes_total") >= 1
    assert value(after["configsvc_strong_is_leader"], "configsvc_strong_is_leader") == 1
    assert value(after["configsvc_health_status"], "configsvc_health_status", status="healthy") == 1
    assert value(after["configsvc_transport_connected"], "configsvc_transport_connected") == 2

    on_follower = scrape(cluster, follower)

    def moved_there(family: str, sample: str, **labels: str) -> float:
        return value(on_follower[family], sample, **labels) - value(follower_before[family], sample, **labels)

    assert moved_there("configsvc_strong_commit_seconds", "configsvc_strong_commit_seconds_count") >= 10
    assert moved_there("configsvc_strong_messages_sent", "configsvc_strong_messages_sent_total",
                       type="Forward") >= 1
    assert moved_there("configsvc_http_requests", "configsvc_http_requests_total",
                       namespace="app", method="PUT", status="200") >= 10
    assert value(on_follower["configsvc_strong_is_leader"], "configsvc_strong_is_leader") == 0
    assert value(on_follower["configsvc_strong_applied_index"], "configsvc_strong_applied_index") > 0
    # The eventual write reaches every replica; the digests then agree everywhere.
    wait_for(lambda: value(scrape(cluster, follower)["configsvc_eventual_digests_agree"],
                           "configsvc_eventual_digests_agree", namespace="disc") == 1,
             20, "the follower to report agreeing digests for disc")


def test_namespace_label_comes_from_the_route() -> None:
    assert namespace_of("/v1/kv/app/a/b") == "app"
    assert namespace_of("/v1/txn/app") == "app"
    assert namespace_of("/v1/services/disc/web/1") == "disc"
    assert namespace_of("/v1/namespaces/flags") == "flags"
    assert namespace_of("/v1/kv/") is None
    assert namespace_of("/v1/cluster/health") is None


def test_a_leader_cut_from_its_quorum_counts_a_lease_expiry(cluster: LocalCluster) -> None:
    """Both followers stopped: the leader's lease lapses, and the counter says so."""
    leader = cluster.leader()
    assert leader is not None
    followers = [n for n in cluster.ids if n != leader]

    def expiries() -> float:
        return value(scrape(cluster, leader)["configsvc_strong_lease_expiries"],
                     "configsvc_strong_lease_expiries_total")

    before = expiries()
    for nid in followers:
        cluster.kill(nid, signal.SIGSTOP)
    try:
        wait_for(lambda: expiries() >= before + 1, 20, "the leader to count its lease lapsing")
        assert value(scrape(cluster, leader)["configsvc_strong_lease_valid"], "configsvc_strong_lease_valid") == 0
    finally:
        for nid in followers:
            cluster.kill(nid, signal.SIGCONT)
    wait_for(lambda: all(cluster.health(n)["status"] == "healthy" for n in cluster.ids), 30, "healthy again")

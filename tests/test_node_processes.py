"""Real node processes on loopback: kill -9, SIGSTOP, restart from disk.

These start real OS processes with real sockets and real fsync. They are the
slowest tests of ``make test``; each waits for conditions with deadlines.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from configsvc.client import Client, ClientError
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture(params=[3, 5], ids=["3-nodes", "5-nodes"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=request.param)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


class Writer(threading.Thread):
    """Writes app/w<i> = v<i> in a loop through every endpoint; records what was acknowledged."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = Client(endpoints, timeout=5.0, attempts=20)
        self.acked: dict[str, str] = {}
        self.failed: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            key, value = f"w{i}", f"v{i}"
            try:
                self.client.put("app", key, value)
                self.acked[key] = value
            except ClientError as exc:
                self.failed.append(f"{key}: {exc}")
        self.client.close()


def test_writes_through_any_node_are_read_through_any_other(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints[0]) as a, Client(cluster.endpoints[-1]) as b:
        a.put("app", "greeting", "hello")
        assert b.get("app", "greeting") == b"hello"
        assert b.get("app", "greeting", stale=True) in (b"hello", None)
        with pytest.raises(ClientError) as info:
            a.put("app", "greeting", "x", cas=999)
        assert info.value.code == "cas_failed"


def test_kill_9_of_the_leader_under_write_load_loses_no_acknowledged_write(
    cluster: LocalCluster,
) -> None:
    writer = Writer(cluster.endpoints)
    writer.start()
    wait_for(lambda: len(writer.acked) >= 30, 20, "writes before the kill")
    old = cluster.leader()
    assert old is not None
    cluster.kill(old)
    killed_at = time.monotonic()
    survivors = [n for n in cluster.ids if n != old]
    new = wait_for(lambda: cluster.leader(survivors), 10, "a new leader")
    elected_after = time.monotonic() - killed_at
    before = len(writer.acked)
    wait_for(lambda: len(writer.acked) >= before + 30, 20, "writes served by the new leader")
    writer.stop.set()
    writer.join(timeout=20)
    assert new != old and elected_after < 10
    with Client([cluster.url(n) for n in survivors]) as reader:
        missing = {k: v for k, v in writer.acked.items() if reader.get("app", k) != v.encode()}
    assert missing == {}, f"acknowledged writes lost: {sorted(missing)[:10]}"


def test_restart_from_disk_keeps_everything(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints) as client:
        for i in range(20):
            client.put("app", f"k{i}", f"v{i}")
    for nid in cluster.ids:
        cluster.kill(nid)
    for nid in cluster.ids:
        cluster.start(nid)
    wait_for(cluster.leader, 30, "a leader after the restart")
    with Client(cluster.endpoints) as client:
        assert [client.get("app", f"k{i}") for i in range(20)] == [f"v{i}".encode() for i in range(20)]


def test_sigstop_of_the_leader_elects_another_and_the_old_one_rejoins(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints) as client:
        client.put("app", "before", "1")
        old = cluster.leader()
        assert old is not None
        cluster.kill(old, signal.SIGSTOP)
        others = [n for n in cluster.ids if n != old]
        new = wait_for(lambda: cluster.leader(others), 10, "a leader while the old one is stopped")
        assert new != old
        with Client([cluster.url(n) for n in others]) as live:
            live.put("app", "during", "2")
        cluster.kill(old, signal.SIGCONT)
        wait_for(lambda: cluster.health(old)["strong"]["leader"] == new
                 and cluster.health(old)["strong"]["applied_index"]
                 >= cluster.health(new)["strong"]["commit_index"], 10, "the old leader to catch up")
        with Client(cluster.url(old)) as via_old:
            assert via_old.get("app", "during") == b"2"
            assert via_old.get("app", "before") == b"1"


def test_admin_faults_partition_a_follower_and_heal(tmp_path: Path) -> None:
    token = "t" * 20
    c = LocalCluster(tmp_path, nodes=3, admin_token=token)
    try:
        c.start_all()
        leader = c.leader()
        follower = next(n for n in c.ids if n != leader)
        auth = {"Authorization": f"Bearer {token}"}
        assert c.http.get(c.url(leader) + "/v1/admin/faults").status_code == 401
        for peer in c.ids:
            if peer != follower:
                r = c.http.put(c.url(follower) + f"/v1/admin/faults/{peer}", headers=auth,
                               json={"drop_out": True, "drop_in": True})
                assert r.status_code == 200, r.text
        with Client([c.url(n) for n in c.ids if n != follower]) as client:
            client.put("app", "while-cut", "1")
        wait_for(lambda: c.health(follower)["status"] == "unavailable", 10, "the cut-off node to say so")
        assert c.http.delete(c.url(follower) + "/v1/admin/faults", headers=auth).status_code == 200
        with Client(c.url(follower)) as client:
            assert wait_for(lambda: client.get("app", "while-cut", stale=True) == b"1", 10, "catch-up")
    finally:
        c.stop_all()


def test_eventual_writes_on_every_node_converge(cluster: LocalCluster) -> None:
    for i, nid in enumerate(cluster.ids):
        with Client(cluster.url(nid)) as client:
            client.put("disc", f"from-{nid}", f"v{i}")
    expected = {f"from-{nid}": f"v{i}".encode() for i, nid in enumerate(cluster.ids)}

    def converged() -> bool:
        for nid in cluster.ids:
            with Client(cluster.url(nid)) as client:
                if {k: client.get("disc", k) for k in expected} != expected:
                    return False
        return True

    wait_for(converged, 10, "every node to hold every node's writes")


def test_a_session_reads_its_own_writes_through_another_node(cluster: LocalCluster) -> None:
    first, other = cluster.url(cluster.ids[0]), cluster.url(cluster.ids[-1])
    with Client(first) as session:
        for i in range(20):
            session.put("disc", "counter", str(i))
            session.endpoints = [other if i % 2 else first]  # move between nodes
            assert session.get("disc", "counter") == str(i).encode()


def test_eventual_namespace_stays_writable_on_both_sides_of_a_partition(tmp_path: Path) -> None:
    token = "t" * 20
    c = LocalCluster(tmp_path, nodes=3, admin_token=token)
    try:
        c.start_all()
        auth = {"Authorization": f"Bearer {token}"}
        lonely = c.ids[0]
        for peer in c.ids[1:]:
            for a, b in ((lonely, peer), (peer, lonely)):
                c.http.put(c.url(a) + f"/v1/admin/faults/{b}", headers=auth,
                           json={"drop_out": True, "drop_in": True}).raise_for_status()
        with Client(c.url(lonely)) as minority, Client(c.url(c.ids[1])) as majority:
            minority.put("disc", "svc/a", "minority")  # available while cut off
            majority.put("disc", "svc/b", "majority")
            with pytest.raises(ClientError) as info:
                minority.put("app", "strong-key", "x")  # strong: the minority refuses
            assert info.value.status in (503, 504)
        for nid in c.ids:
            c.http.delete(c.url(nid) + "/v1/admin/faults", headers=auth).raise_for_status()

        def healed() -> bool:
            for nid in c.ids:
                with Client(c.url(nid)) as client:
                    if (client.get("disc", "svc/a"), client.get("disc", "svc/b")) != (b"minority", b"majority"):
                        return False
            return True

        wait_for(healed, 15, "both sides' writes everywhere after the heal")
    finally:
        c.stop_all()


def test_a_corrupt_log_is_set_aside_and_the_node_says_why(tmp_path: Path) -> None:
    """The node never loads the corrupt store: it quarantines it, rejoins as a
    non-voting learner (configsvc.quarantine) and names the repair in health."""
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        with Client(c.endpoints) as client:
            for i in range(20):
                client.put("app", f"k{i}", "x" * 100)
        victim = next(n for n in c.ids if n != c.leader())
        c.kill(victim, signal.SIGTERM)
        segment = sorted((tmp_path / "data" / victim / "strong").glob("*.seg"))[0]
        data = bytearray(segment.read_bytes())
        data[len(data) // 2] ^= 0xFF  # a flipped bit inside a complete, synced record
        segment.write_bytes(bytes(data))
        c.start(victim)
        health = wait_for(lambda: c.health(victim), 20, "the corrupt node to answer")
        assert any(r["code"] == "store_repaired" and "corrupt" in r["message"]
                   for r in health["reasons"]), health
        assert health["strong"]["voting"] is False
        assert (tmp_path / "data" / victim / "quarantine-1" / "strong").is_dir()
        with Client([c.url(n) for n in c.ids if n != victim]) as client:
            client.put("app", "still", "serving")  # the two others keep a quorum
    finally:
        c.stop_all()


def test_sigterm_closes_the_node_cleanly(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        nid = c.ids[0]
        c.kill(nid, signal.SIGTERM)
        assert c.procs[nid].returncode == 0
        assert "Traceback" not in (tmp_path / f"{nid}.log").read_text()
    finally:
        c.stop_all()


def test_a_namespace_created_via_the_leader_is_known_at_once_everywhere(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    followers = [n for n in cluster.ids if n != leader]
    for i in range(10):
        with Client(cluster.url(leader)) as client:
            client.create_namespace(f"fresh{i}")
        for f in followers:  # a follower that has not applied the creation yet forwards
            with Client(cluster.url(f), attempts=1) as client:
                client.put(f"fresh{i}", "k", "v")
                assert client.get(f"fresh{i}", "k") == b"v"


def test_membership_sees_every_node_and_detects_a_dead_one(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, nodes=3)
    try:
        c.start_all()
        first = c.ids[0]
        everyone = sorted(c.ids[1:])
        wait_for(lambda: c.health(first)["eventual"]["membership"]["alive_peers"] == everyone, 15,
                 "SWIM to see every peer")
        victim = c.ids[-1]
        c.kill(victim)
        wait_for(lambda: victim not in c.health(first)["eventual"]["membership"]["alive_peers"], 30,
                 "SWIM to declare the killed node dead")
        c.start(victim)  # a new generation of the same node id
        wait_for(lambda: c.health(first)["eventual"]["membership"]["alive_peers"] == everyone, 30,
                 "the restarted node to be alive again")
    finally:
        c.stop_all()


def test_a_session_write_forwarded_to_a_leader_that_stops_is_handed_to_the_next(
        tmp_path: Path) -> None:
    """A follower forwards a write to the leader, which is stopped before it
    answers: when another leader takes over the follower hands the write to it
    (``StrongDriver._rehand``; safe because the state machine applies a
    client's sequence number once), so the write completes in one attempt, long
    before the request timeout (60 s here) would have answered for it."""
    c = LocalCluster(tmp_path, nodes=3, election_timeout=3.0, request_timeout=60.0)
    try:
        c.start_all()
        with Client(c.endpoints) as client:
            client.put("app", "before", "1")
        leader = c.leader()
        assert leader is not None
        follower = next(n for n in c.ids if n != leader)
        c.kill(leader, signal.SIGSTOP)  # followers keep following it for >= 3 s
        headers = {"X-Client-Id": "rehand-test", "X-Client-Seq": "1"}
        resp = c.http.put(f"{c.url(follower)}/v1/kv/app/during", content=b"2", headers=headers,
                          timeout=45.0)
        assert resp.status_code == 200, resp.text
        metrics = c.http.get(c.url(follower) + "/metrics").text
        rehanded = [line for line in metrics.splitlines()
                    if line.startswith("configsvc_strong_writes_rehanded_total")]
        assert rehanded and float(rehanded[0].split()[-1]) >= 1, rehanded
        c.kill(leader, signal.SIGCONT)
        with Client(c.url(leader)) as via_old:
            wait_for(lambda: via_old.get("app", "during") == b"2", 30, "the old leader to learn it")
    finally:
        c.stop_all()

"""The clients and the HTTP error contract against one real 3-node cluster (real
processes, sockets, fsync): ``AsyncClient`` and ``Client`` (list, delete, siblings,
watch), a genuine ``504 outcome_unknown``, a genuine ``409 causally_behind``, and
the stale-read headers. Faults come from the admin API; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from configsvc.client import AsyncClient, Client, ClientError
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

ADMIN = "surface-admin-token-0123"
TIMING = {"heartbeat_interval": 0.1, "election_timeout": 1.0, "lease_duration": 0.7, "request_timeout": 1.0}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("surface"), nodes=3, admin_token=ADMIN, **TIMING)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def isolate(c: LocalCluster, nid: str) -> None:
    """Cut every link of ``nid`` in both directions (on its side of each link)."""
    for peer in c.ids:
        if peer != nid:
            r = c.http.put(f"{c.url(nid)}/v1/admin/faults/{peer}", json={"drop_out": True, "drop_in": True},
                           headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 200, r.text


def heal(c: LocalCluster) -> None:
    for nid in c.ids:
        r = c.http.delete(f"{c.url(nid)}/v1/admin/faults", headers={"Authorization": f"Bearer {ADMIN}"})
        assert r.status_code == 200, r.text
    wait_for(lambda: all(c.health(n)["status"] == "healthy" for n in c.ids), 20, "healthy after the heal")


def test_async_client_covers_the_api(cluster: LocalCluster) -> None:
    async def main() -> None:
        async with AsyncClient(cluster.endpoints) as c:
            assert (await c.create_namespace("asyncns"))["created"] is True
            # The list is linearizable: any node lists an acknowledged creation at once.
            for endpoint in cluster.endpoints:
                async with AsyncClient([endpoint]) as one:
                    assert {"asyncns", "app", "disc"} <= {ns["name"] for ns in await one.namespaces()}
            watch = c.watch("asyncns", "k/", wait=10)
            assert await anext(watch) == []
            await c.put("asyncns", "k/1", "one")
            assert [(kv["key"], kv["version"]) for kv in await anext(watch)] == [("k/1", 1)]
            assert await c.get("asyncns", "k/1") == b"one"
            assert [kv["key"] for kv in await c.list("asyncns", "k/")] == ["k/1"]
            revision = (await c.get_kv("asyncns", "k/1"))["kv"]["mod_revision"]
            with pytest.raises(ClientError) as info:
                await c.delete("asyncns", "k/1", cas=revision + 100)
            assert (info.value.status, info.value.code) == (412, "cas_failed")
            assert (await c.delete("asyncns", "k/1", cas=revision))["deleted"] == 1
            assert await anext(watch) == []  # the delete reached the watch
            assert await c.get("asyncns", "k/1") is None
            await watch.aclose()

            await c.put("disc", "svc/a", "1")
            await c.request("PUT", c._kv_path("disc", "svc/a"), write=True, content=b"2",
                            params={"blind": "true"})
            assert sorted(await c.siblings("disc", "svc/a")) == [b"1", b"2"]
            assert await c.get("disc", "svc/a") is None  # two values: use siblings
            assert [i["key"] for i in await c.list("disc", "svc/")] == ["svc/a"]
            await c.delete("disc", "svc/a")
            assert await c.siblings("disc", "svc/a") == []
            assert (await c.health())["status"] == "healthy"

    asyncio.run(main())


def test_client_list_delete_siblings_and_a_watch_that_sees_each_change(cluster: LocalCluster) -> None:
    with Client(cluster.endpoints) as c, Client(cluster.endpoints[::-1]) as writer:
        c.put("app", "svc/x", "1")
        watch = c.watch("app", "svc/", wait=10)
        assert [kv["key"] for kv in next(watch)] == ["svc/x"]
        changes = [("put", "svc/y", "2"), ("delete", "svc/x", ""), ("delete", "svc/y", "")]
        expected = [["svc/x", "svc/y"], ["svc/y"], []]
        for (verb, key, value), want in zip(changes, expected, strict=True):
            # The change is made while the watch is (or is about to be) blocked on the
            # server; either way the answer must contain it, and only it.
            t = threading.Thread(target=lambda v=verb, k=key, val=value: (
                writer.put("app", k, val) if v == "put" else writer.delete("app", k)))
            t.start()
            assert [kv["key"] for kv in next(watch)] == want, (verb, key)
            t.join(10)
        watch.close()
        assert c.list("app", "svc/") == []

        c.put("disc", "cfg/a", "1")
        writer.request("PUT", writer._kv_path("disc", "cfg/a"), write=True, content=b"2", params={"blind": "true"})
        c.token = writer.token = None  # no session: read what the node has
        wait_for(lambda: sorted(c.siblings("disc", "cfg/a")) == [b"1", b"2"], 10, "both siblings")
        assert [i["key"] for i in c.list("disc", "cfg/")] == ["cfg/a"]
        c.delete("disc", "cfg/a")
        assert c.get("disc", "cfg/a") is None and c.siblings("disc", "cfg/a") == []


def test_stale_reads_report_their_leader_and_last_contact(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    assert leader is not None
    follower = next(n for n in cluster.ids if n != leader)
    with Client(cluster.url(leader)) as c:
        c.put("app", "stale/k", "v")
    answer = wait_for(lambda: (r := cluster.http.get(f"{cluster.url(follower)}/v1/kv/app/stale/k",
                                                     params={"consistency": "stale"})).status_code == 200 and r,
                      10, "the follower to apply the write")
    assert answer.headers["X-Configsvc-Leader"] == leader
    contact_ms = int(answer.headers["X-Configsvc-Last-Contact-Ms"])
    assert 0 <= contact_ms < 1000 * TIMING["election_timeout"], contact_ms
    assert int(answer.headers["X-Configsvc-Applied-Index"]) >= 1
    linearizable = cluster.http.get(f"{cluster.url(follower)}/v1/kv/app/stale/k")
    assert "X-Configsvc-Last-Contact-Ms" not in linearizable.headers


def test_causally_behind_over_http_and_the_client_moves_on(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    behind = next(n for n in cluster.ids if n != leader)
    ahead = next(n for n in cluster.ids if n not in (leader, behind))
    isolate(cluster, behind)
    try:
        written = cluster.http.put(f"{cluster.url(ahead)}/v1/kv/disc/session/k", content=b"mine")
        assert written.status_code == 200, written.text
        token = written.headers["X-Configsvc-Token"]
        refused = cluster.http.get(f"{cluster.url(behind)}/v1/kv/disc/session/k",
                                   headers={"X-Configsvc-Token": token})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "causally_behind"
        with Client([cluster.url(behind), cluster.url(ahead)]) as c:
            c.token = token
            assert c.get("disc", "session/k") == b"mine"  # 409 from the first node: the next answered

        # the isolated node's stale strong reads say how stale they are
        def stale_contact() -> int:
            r = cluster.http.get(f"{cluster.url(behind)}/v1/kv/app", params={"consistency": "stale"})
            return int(r.headers["X-Configsvc-Last-Contact-Ms"])

        wait_for(lambda: stale_contact() > 2000 * TIMING["election_timeout"], 10, "last contact to grow")
    finally:
        heal(cluster)
    caught_up = wait_for(lambda: (r := cluster.http.get(f"{cluster.url(behind)}/v1/kv/disc/session/k",
                                                        headers={"X-Configsvc-Token": token})).status_code == 200
                         and r, 10, "the healed node to see the session's past")
    assert caught_up.json()["value"] == "bWluZQ=="


def test_a_write_proposed_by_an_isolated_leader_is_504_outcome_unknown_then_settled(
    cluster: LocalCluster,
) -> None:
    leader = cluster.leader()
    assert leader is not None
    session = {"X-Client-Id": "surface-504", "X-Client-Seq": "1"}
    isolate(cluster, leader)
    try:
        # Still leading (it steps down only after an election timeout without a
        # quorum): it proposes, no Accept reaches a peer, the result never comes.
        r = cluster.http.put(f"{cluster.url(leader)}/v1/kv/app/unknown", content=b"once", headers=session)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "outcome_unknown"
        with Client(cluster.url(leader), attempts=1) as c, pytest.raises(ClientError) as info:
            c.put("app", "unknown2", "x")
        assert info.value.status in (503, 504)  # 504 if it still led, 503 once it stepped down
    finally:
        heal(cluster)
    # Retrying with the same session settles the outcome: applied exactly once.
    settled = wait_for(lambda: (r := cluster.http.put(f"{cluster.url(leader)}/v1/kv/app/unknown", content=b"once",
                                                      headers=session)).status_code == 200 and r,
                       20, "the retried write to settle")
    assert settled.json()["revision"] >= 1
    kv = cluster.http.get(f"{cluster.url(leader)}/v1/kv/app/unknown").json()["kv"]
    assert kv["version"] == 1

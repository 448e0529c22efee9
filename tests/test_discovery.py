"""Service discovery against one real 3-node cluster, in a strong and in an eventual
namespace: registration through one node and queries through another, TTL
heartbeats, expiry to critical and removal, the passing filter, blocking queries,
deregistration, and the error contract. Every wait is for a condition with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from configsvc.client import Client
from tests.cluster import LocalCluster
from tests.discovery_support import NAMESPACES, instance, running_cluster, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("discovery")) as c:
        yield c


@pytest.fixture(params=NAMESPACES, ids=["strong", "eventual"])
def ns(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ids(instances: list[dict[str, Any]]) -> list[str]:
    return [i["instance_id"] for i in instances]


def test_register_on_one_node_query_on_another_then_deregister(cluster: LocalCluster, ns: str) -> None:
    with Client(cluster.url("n1")) as a, Client(cluster.url("n3")) as b:
        out = a.register(ns, "web", "web-1", address="10.0.0.1", port=8080, tags=["v1", "blue"],
                         meta={"zone": "a"})
        assert out["changed"] is True
        a.register(ns, "web", "web-2", port=8081)
        b.token = a.token  # the session travels: n3 answers only once it has seen it
        one, two = b.instances(ns, "web")
        assert (one["instance_id"], one["address"], one["port"], one["tags"], one["meta"]) == (
            "web-1", "10.0.0.1", 8080, ["v1", "blue"], {"zone": "a"})
        assert (one["status"], one["node"], one["ttl"], one["check"]) == ("passing", "n1", None, None)
        assert (two["address"], two["port"]) == ("127.0.0.1", 8081)  # the node's host by default
        assert b.services(ns)["web"] == {"tags": ["v1", "blue"], "instances": 2, "passing": 2}
        # Registering again is an upsert.
        a.register(ns, "web", "web-2", port=9090, tags=["v2"])
        b.token = a.token
        assert [i["port"] for i in b.instances(ns, "web")] == [8080, 9090]
        assert a.deregister(ns, "web", "web-1")["changed"] is True
        assert a.deregister(ns, "web", "web-1")["changed"] is False  # idempotent
        a.deregister(ns, "web", "web-2")
        b.token = a.token
        assert b.instances(ns, "web") == []
        assert "web" not in b.services(ns)


def test_heartbeats_keep_it_passing_silence_makes_it_critical_then_removed(
    cluster: LocalCluster, ns: str
) -> None:
    with Client(cluster.endpoints) as c:
        c.register(ns, "ttl", "t1", ttl=1.0, deregister_after=2.0)
        assert instance(c, ns, "ttl", "t1")["status"] == "critical"  # type: ignore[index]
        until = time.monotonic() + 2.5  # well past the TTL
        while time.monotonic() < until:
            c.heartbeat(ns, "ttl", "t1", output="all good")
            found = instance(c, ns, "ttl", "t1")
            assert found is not None and (found["status"], found["output"]) == ("passing", "all good")
            time.sleep(0.2)  # the heartbeat period: what is tested, not a wait
        critical = wait_status(c, ns, "ttl", "t1", "critical")
        assert critical is not None and critical["output"] == "TTL expired"
        wait_status(c, ns, "ttl", "t1", None)
        assert "ttl" not in c.services(ns)


def test_the_passing_filter_keeps_only_passing_instances(cluster: LocalCluster, ns: str) -> None:
    with Client(cluster.endpoints) as c:
        for iid, status in [("p1", "passing"), ("w1", "warning"), ("c1", "critical")]:
            c.register(ns, "filt", iid, status=status)
        assert ids(c.instances(ns, "filt")) == ["c1", "p1", "w1"]
        assert ids(c.instances(ns, "filt", passing=True)) == ["p1"]
        c.check(ns, "filt", "c1", "passing", "recovered")
        assert ids(c.instances(ns, "filt", passing=True)) == ["c1", "p1"]
        assert c.services(ns)["filt"]["passing"] == 2
        for iid in ("p1", "w1", "c1"):
            c.deregister(ns, "filt", iid)


def test_a_blocking_query_wakes_on_a_change_and_otherwise_waits(cluster: LocalCluster, ns: str) -> None:
    with Client(cluster.url("n2")) as watcher, Client(cluster.url("n1")) as writer:
        writer.register(ns, "blk", "b1")
        watcher.token = writer.token
        path = watcher._svc_path(ns, "blk")
        first = watcher.request("GET", path)
        assert ids(first["instances"]) == ["b1"]
        # Nothing changes: the query waits out its wait and answers the same index.
        started = time.monotonic()
        quiet = watcher.request("GET", path, params={"index": first["index"], "wait": 0.5})
        assert time.monotonic() - started >= 0.45
        assert (quiet["index"], ids(quiet["instances"])) == (first["index"], ["b1"])
        # Each change (a registration, a status) reaches a watch blocked on the other node.
        watch = watcher.watch_instances(ns, "blk", wait=20)
        assert ids(next(watch)) == ["b1"]
        for change, expect in [
            (lambda: writer.register(ns, "blk", "b2"), [("b1", "passing"), ("b2", "passing")]),
            (lambda: writer.check(ns, "blk", "b1", "critical"), [("b1", "critical"), ("b2", "passing")]),
            (lambda: writer.deregister(ns, "blk", "b2"), [("b1", "critical")]),
        ]:
            t = threading.Thread(target=change)
            started = time.monotonic()
            t.start()
            assert [(i["instance_id"], i["status"]) for i in next(watch)] == expect
            assert time.monotonic() - started < 10
            t.join(10)
        watch.close()  # type: ignore[attr-defined]  # a generator
        writer.deregister(ns, "blk", "b1")


def test_consistency_modes_say_what_they_were(cluster: LocalCluster, ns: str) -> None:
    with Client(cluster.endpoints) as c:
        c.register(ns, "modes", "m1")
    want = {"default": "leader-lease", "consistent": "consistent", "stale": "stale"}
    for node in cluster.ids:
        for mode, effective in want.items():
            r = cluster.http.get(f"{cluster.url(node)}/v1/services/{ns}/modes", params={"consistency": mode})
            assert r.status_code == 200, r.text
            expected = effective if ns == "app" else "local"
            assert r.headers["X-Configsvc-Effective-Consistency"] == expected == r.json()["consistency"]
            assert int(r.headers["X-Configsvc-Index"]) == r.json()["index"] >= 1
            if mode in ("default", "consistent") and ns == "app":
                assert ids(r.json()["instances"]) == ["m1"]  # linearizable from any node
    stale = cluster.http.get(f"{cluster.url('n3')}/v1/services/app/modes", params={"consistency": "stale"})
    assert stale.headers["X-Configsvc-Leader"] == cluster.leader()
    with Client(cluster.endpoints) as c:
        c.deregister(ns, "modes", "m1")


def _bad(http: httpx.Client, base: str, method: str, path: str, **kw: Any) -> tuple[int, str]:
    r = http.request(method, base + path, **kw)
    assert 400 <= r.status_code < 500, (method, path, kw, r.status_code, r.text)
    return r.status_code, r.json()["error"]["code"]


def test_bad_input_is_a_clear_4xx_and_changes_nothing(cluster: LocalCluster, ns: str) -> None:
    base = cluster.url("n2")
    with Client(base) as c:
        c.register(ns, "bad", "b1", ttl=30.0, status="passing")
        before = c.request("GET", c._svc_path(ns, "bad"))
    reg = f"/v1/services/{ns}/bad/b1"
    bodies: list[Any] = [
        [], {"port": "80"}, {"port": 70000}, {"port": True}, {"tags": "x"}, {"tags": [1]},
        {"meta": []}, {"meta": {"k": 1}}, {"ttl": -1}, {"ttl": 0}, {"ttl": "10s"},
        {"ttl": 1e12}, {"deregister_after": -5}, {"check": "http://x"},
        {"check": {"http": "ftp://x"}}, {"check": {"http": "http://x", "interval": 0}},
        {"check": {"url": "http://x"}}, {"status": "up"}, {"nme": "typo"}, {"address": 5},
        {"tags": ["t"] * 65}, {"meta": {f"k{i}": "v" for i in range(65)}},
    ]
    for body in bodies:
        assert _bad(cluster.http, base, "PUT", reg, json=body) == (400, "invalid_argument"), body
    assert _bad(cluster.http, base, "PUT", reg, content=b"{nope") == (400, "invalid_argument")
    for body in [{}, {"status": "fine"}, {"status": "passing", "extra": 1}, {"status": 1},
                 {"status": "passing", "output": "x" * 5000}, {"status": "passing", "output": 7}]:
        assert _bad(cluster.http, base, "PUT", reg + "/check", json=body) == (400, "invalid_argument"), body
    assert _bad(cluster.http, base, "PUT", f"/v1/services/{ns}/bad/nobody/check",
                json={"status": "passing"}) == (404, "instance_not_found")
    for params in [{"index": "-1"}, {"index": "x"}, {"wait": "soon"}, {"wait": "-1"},
                   {"consistency": "maybe"}, {"passing": "perhaps"}]:
        assert _bad(cluster.http, base, "GET", f"/v1/services/{ns}/bad", params=params) == (
            400, "invalid_argument"), params
    assert _bad(cluster.http, base, "PUT", "/v1/services/nope/bad/b1", json={}) == (404, "namespace_not_found")
    assert _bad(cluster.http, base, "GET", "/v1/services/nope") == (404, "namespace_not_found")
    assert _bad(cluster.http, base, "PATCH", reg) == (405, "method_not_allowed")
    with Client(base) as c:
        after = c.request("GET", c._svc_path(ns, "bad"))
        assert after == before  # nothing changed, not even the index
        c.deregister(ns, "bad", "b1")

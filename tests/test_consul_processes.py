"""The real ``py-consul`` client against a running cluster of real node processes.

Unchanged Consul client code, pointed at a node's ``consul_port``: KV CRUD,
CAS, recurse, keys with a separator, a blocking query that wakes on a change
made through another node, transactions — in a strong namespace (``app``)
and an eventual one (``disc``). Then a partition: on the minority side a
strong namespace refuses writes (503) while an eventual one keeps taking
them, and after the heal every node shows both sides' eventual writes. And
``examples/consul_app.py``, run as a user would.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import consul
import pytest
import yaml

from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

STRONG, EVENTUAL = "app", "disc"
ADMIN = "consul-admin-token-0123"


def client(cluster: LocalCluster, nid: str) -> consul.Consul:
    return consul.Consul(host="127.0.0.1", port=cluster.consul_ports[nid], connections_timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("consul"), nodes=3, admin_token=ADMIN)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


def value(entry: dict[str, Any] | None) -> bytes | None:
    return None if entry is None else entry["Value"]


@pytest.mark.parametrize("ns", [STRONG, EVENTUAL])
def test_kv_crud_cas_recurse_and_keys(cluster: LocalCluster, ns: str) -> None:
    c = client(cluster, "n1")
    assert c.kv.put(f"{ns}/crud/db/url", "pg://a") is True
    index, entry = c.kv.get(f"{ns}/crud/db/url")
    assert value(entry) == b"pg://a" and int(index) >= 1
    # cas=0 creates only; cas=ModifyIndex swaps exactly the version read
    assert c.kv.put(f"{ns}/crud/db/url", "pg://x", cas=0) is False
    assert c.kv.put(f"{ns}/crud/db/url", "pg://b", cas=entry["ModifyIndex"]) is True
    assert c.kv.put(f"{ns}/crud/db/url", "pg://c", cas=entry["ModifyIndex"]) is False
    assert value(c.kv.get(f"{ns}/crud/db/url")[1]) == b"pg://b"
    assert c.kv.put(f"{ns}/crud/new", "1", cas=0) is True
    for key in ("crud/web/a", "crud/web/sub/b", "crud/web/sub/c"):
        c.kv.put(f"{ns}/{key}", key)
    _, listed = c.kv.get(f"{ns}/crud/web/", recurse=True)
    assert [e["Key"] for e in listed] == [f"{ns}/crud/web/a", f"{ns}/crud/web/sub/b", f"{ns}/crud/web/sub/c"]
    _, keys = c.kv.get(f"{ns}/crud/", keys=True, separator="/")
    assert keys == [f"{ns}/crud/db/", f"{ns}/crud/new", f"{ns}/crud/web/"]
    assert c.kv.delete(f"{ns}/crud/web/", recurse=True) is True
    assert c.kv.get(f"{ns}/crud/web/", recurse=True)[1] is None
    assert c.kv.delete(f"{ns}/crud/new") is True
    assert c.kv.get(f"{ns}/crud/new")[1] is None


def test_followers_forward_to_the_leaders_consul_face(cluster: LocalCluster) -> None:
    leader = cluster.leader()
    followers = [n for n in cluster.ids if n != leader]
    for nid in followers:
        c = client(cluster, nid)
        assert c.kv.put(f"{STRONG}/each/{nid}", nid) is True  # Consul's answer, not the native one
        assert c.kv.put(f"{STRONG}/each/{nid}", "again", cas=0) is False
        assert value(c.kv.get(f"{STRONG}/each/{nid}", consistency="consistent")[1]) == nid.encode()
    assert client(cluster, followers[0]).txn.put([{"KV": {"Verb": "get-tree", "Key": f"{STRONG}/each/"}}])[
        "Results"][0]["KV"]["Key"] == f"{STRONG}/each/{followers[0]}"


@pytest.mark.parametrize("ns", [STRONG, EVENTUAL])
def test_a_blocking_query_wakes_on_a_change_made_through_another_node(cluster: LocalCluster, ns: str) -> None:
    watcher, writer = client(cluster, "n1"), client(cluster, "n3")
    writer.kv.put(f"{ns}/watch/a", "1")
    index = wait_for(lambda: (r := watcher.kv.get(f"{ns}/watch/", recurse=True))[1] and r[0], 10,
                     "the first value through the watching node")
    started = time.monotonic()
    idle_index, _ = watcher.kv.get(f"{ns}/watch/", recurse=True, index=index, wait="300ms")
    assert time.monotonic() - started >= 0.25 and idle_index == index  # nothing changed: it waited
    woke: dict[str, Any] = {}

    def block() -> None:
        woke["index"], woke["entries"] = watcher.kv.get(f"{ns}/watch/", recurse=True, index=index, wait="30s")
        woke["at"] = time.monotonic()

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    writer.kv.put(f"{ns}/watch/b", "2")
    wrote = time.monotonic()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the blocking query did not wake on the change"
    assert [e["Key"] for e in woke["entries"]] == [f"{ns}/watch/a", f"{ns}/watch/b"]
    assert int(woke["index"]) > int(index) and woke["at"] - wrote < 10


def test_txn_in_a_strong_namespace_is_all_or_nothing(cluster: LocalCluster) -> None:
    c = client(cluster, "n2")
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    done = c.txn.put([
        {"KV": {"Verb": "set", "Key": f"{STRONG}/txn/a", "Value": b64("1")}},
        {"KV": {"Verb": "cas", "Key": f"{STRONG}/txn/b", "Value": b64("2"), "Index": 0}},
    ])
    assert [r["KV"]["Key"] for r in done["Results"]] == [f"{STRONG}/txn/a", f"{STRONG}/txn/b"]
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put([
            {"KV": {"Verb": "set", "Key": f"{STRONG}/txn/a", "Value": b64("changed")}},
            {"KV": {"Verb": "cas", "Key": f"{STRONG}/txn/b", "Value": b64("x"), "Index": 0}},
        ])
    assert value(c.kv.get(f"{STRONG}/txn/a")[1]) == b"1"  # the set was rolled back


def test_txn_in_an_eventual_namespace_is_all_or_nothing_and_arrives_whole(cluster: LocalCluster) -> None:
    """Served by the node it reaches: its checks and cas judged there, all or
    nothing; its writes reach the other nodes together."""
    c = client(cluster, "n1")
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    done = c.txn.put([
        {"KV": {"Verb": "set", "Key": f"{EVENTUAL}/txn/a", "Value": b64("1")}},
        {"KV": {"Verb": "cas", "Key": f"{EVENTUAL}/txn/b", "Value": b64("2"), "Index": 0}},
        {"KV": {"Verb": "get-tree", "Key": f"{EVENTUAL}/txn/"}},
    ])
    assert [r["KV"]["Key"] for r in done["Results"]] == [f"{EVENTUAL}/txn/a", f"{EVENTUAL}/txn/b",
                                                          f"{EVENTUAL}/txn/a", f"{EVENTUAL}/txn/b"]
    index_a = done["Results"][0]["KV"]["ModifyIndex"]
    with pytest.raises(consul.ConsulException, match="409"):
        c.txn.put([
            {"KV": {"Verb": "set", "Key": f"{EVENTUAL}/txn/a", "Value": b64("changed")}},
            {"KV": {"Verb": "cas", "Key": f"{EVENTUAL}/txn/b", "Value": b64("x"), "Index": 0}},
        ])
    assert value(c.kv.get(f"{EVENTUAL}/txn/a")[1]) == b"1"  # the set was rolled back
    moved = c.txn.put([
        {"KV": {"Verb": "check-index", "Key": f"{EVENTUAL}/txn/a", "Index": index_a}},
        {"KV": {"Verb": "delete-tree", "Key": f"{EVENTUAL}/txn/"}},
        {"KV": {"Verb": "set", "Key": f"{EVENTUAL}/moved/a", "Value": b64("1")}},
        {"KV": {"Verb": "set", "Key": f"{EVENTUAL}/moved/b", "Value": b64("2")}},
    ])
    assert moved["Errors"] is None

    def moved_everywhere() -> bool:
        for nid in cluster.ids:
            keys = client(cluster, nid).kv.get(f"{EVENTUAL}/", keys=True)[1] or []
            mine = [k for k in keys if k.startswith((f"{EVENTUAL}/txn/", f"{EVENTUAL}/moved/"))]
            assert mine in ([], [f"{EVENTUAL}/txn/a", f"{EVENTUAL}/txn/b"],
                            [f"{EVENTUAL}/moved/a", f"{EVENTUAL}/moved/b"]), f"{nid} shows part of a txn: {mine}"
            if mine != [f"{EVENTUAL}/moved/a", f"{EVENTUAL}/moved/b"]:
                return False
        return True

    wait_for(moved_everywhere, 15, "the transaction on every node")


def test_consistency_modes_and_status(cluster: LocalCluster) -> None:
    c = client(cluster, "n3")
    c.kv.put(f"{STRONG}/modes", "v")
    for mode in ("default", "consistent", "stale"):
        stale_ok = consul.Consul(host="127.0.0.1", port=cluster.consul_ports["n3"], consistency=mode)
        assert value(wait_for(lambda s=stale_ok: s.kv.get(f"{STRONG}/modes")[1], 10, mode)) == b"v"
    peers = {n["id"]: f"127.0.0.1:{n['peer_port']}"
             for n in yaml.safe_load(cluster.config_path.read_text())["nodes"]}
    leader = cluster.leader()
    assert leader is not None and c.status.leader() == peers[leader]
    assert c.status.peers() == [peers[n] for n in cluster.ids]
    assert c.agent.self()["Config"]["NodeName"] == "n3"


def services_client(cluster: LocalCluster, nid: str, ns: str | None) -> consul.Consul:
    """A py-consul client for the service endpoints of namespace ``ns`` (None: the
    configured default, ``services``, eventual). py-consul has no namespace option:
    Consul Enterprise's ``?ns=`` goes in as a default parameter of its HTTP session."""
    c = client(cluster, nid)
    if ns is not None:
        c.http.session.params = {"ns": ns}
    return c


@pytest.mark.parametrize("ns", [STRONG, None], ids=["strong", "eventual"])
def test_service_register_ttl_pass_health_passing_and_deregister(cluster: LocalCluster, ns: str | None) -> None:
    agent, other = services_client(cluster, "n1", ns), services_client(cluster, "n2", ns)
    sid = f"web-{ns or 'default'}-1"
    assert agent.agent.service.register("web", service_id=sid, address="10.0.0.1", port=8080, tags=["v1"],
                                        meta={"zone": "a"}, check=consul.Check.ttl("30s")) is True

    def listed() -> tuple[str, list[dict[str, Any]]] | None:
        index, entries = other.health.service("web")
        return (index, entries) if any(e["Service"]["ID"] == sid for e in entries) else None

    index, entries = wait_for(listed, 15, "the registration through the other node")
    [entry] = [e for e in entries if e["Service"]["ID"] == sid]
    assert entry["Service"]["Port"] == 8080 and entry["Service"]["Meta"] == {"zone": "a"}
    assert [c["Status"] for c in entry["Checks"]] == ["critical"]  # Consul: critical until it passes
    assert entry["Node"]["Node"] == "n1"  # the node it registered with
    assert other.health.service("web", passing=True)[1] == []
    woke: dict[str, Any] = {}

    def block() -> None:
        woke["index"], woke["entries"] = other.health.service("web", passing=True, index=index, wait="30s")

    thread = threading.Thread(target=block, daemon=True)
    thread.start()
    assert agent.agent.check.ttl_pass(f"service:{sid}", "all good") is True
    thread.join(timeout=15)
    assert not thread.is_alive(), "the blocking health query did not wake on the check passing"
    if not woke["entries"]:  # woken by another change: the next answer shows it
        woke["entries"] = wait_for(lambda: other.health.service("web", passing=True)[1], 15, "passing")
    [passing] = woke["entries"]
    assert passing["Service"]["ID"] == sid and passing["Checks"][0]["Output"] == "all good"
    assert int(woke["index"]) > int(index)
    assert wait_for(lambda: "web" in other.catalog.services()[1], 15, "the catalog")
    assert other.catalog.services()[1]["web"] == ["v1"]
    assert [e["ServiceID"] for e in other.catalog.service("web")[1]] == [sid]
    assert agent.agent.service.deregister(sid) is True
    wait_for(lambda: other.health.service("web")[1] == [], 15, "the deregistration everywhere")
    assert agent.agent.check.ttl_pass(f"service:{sid}") is False  # py-consul's answer to a 404


def test_the_py_consul_example_runs_unchanged(cluster: LocalCluster) -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "consul_app.py"
    env = {**os.environ, "CONSUL_HTTP_ADDR": f"127.0.0.1:{cluster.consul_ports['n2']}"}
    run = subprocess.run([sys.executable, str(script), "--prefix", f"{STRONG}/example", "--id", "shop-1"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert f"config: {STRONG}/example/features/new-checkout = on" in lines
    assert "feature switched: True" in run.stdout
    assert f"folders: {STRONG}/example/db/, {STRONG}/example/features/" in lines
    assert "healthy: shop-1@127.0.0.1:8080" in lines and lines[-1] == "deregistered"


def test_partition_minority_refuses_strong_writes_and_keeps_eventual_ones(cluster: LocalCluster) -> None:
    """Last in this module: it cuts the shared cluster, and heals it."""
    c, auth = cluster, {"Authorization": f"Bearer {ADMIN}"}
    lonely, majority = c.ids[0], c.ids[1]
    try:
        for peer in c.ids[1:]:
            for a, b in ((lonely, peer), (peer, lonely)):
                c.http.put(c.url(a) + f"/v1/admin/faults/{b}", headers=auth,
                           json={"drop_out": True, "drop_in": True}).raise_for_status()
        wait_for(lambda: c.health(lonely)["status"] == "unavailable" and c.health(lonely)["strong"]["leader"] is None,
                 10, "the cut-off node to know no leader")
        wait_for(lambda: c.leader(c.ids[1:]) not in (None, lonely), 10, "a leader on the majority side")
        minority, rest = client(c, lonely), client(c, majority)
        with pytest.raises(consul.ConsulException, match=r"^503"):
            minority.kv.put(f"{STRONG}/cut", "x")
        assert minority.kv.put(f"{EVENTUAL}/side/minority", "m") is True
        assert rest.kv.put(f"{EVENTUAL}/side/majority", "M") is True
        assert rest.kv.put(f"{STRONG}/cut", "majority") is True
    finally:
        for nid in c.ids:
            c.http.delete(c.url(nid) + "/v1/admin/faults", headers=auth).raise_for_status()

    def both_sides_everywhere() -> bool:
        for nid in c.ids:
            _, entries = client(c, nid).kv.get(f"{EVENTUAL}/side/", recurse=True)
            if [(e["Key"], e["Value"]) for e in entries or []] != [
                (f"{EVENTUAL}/side/majority", b"M"), (f"{EVENTUAL}/side/minority", b"m")
            ]:
                return False
        return True

    wait_for(both_sides_everywhere, 15, "both sides' eventual writes on every node after the heal")
    assert value(wait_for(lambda: client(c, lonely).kv.get(f"{STRONG}/cut")[1], 15, "the strong write")) \
        == b"majority"

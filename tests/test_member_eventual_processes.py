"""Eventual namespaces follow membership changes, on real processes (rung 4).

A 3-node cluster takes eventual writes on every node; a fourth node is added
with ``configsvc member add`` (a fresh node, ``join: true``) and promoted. It
must serve every earlier eventual key (the old nodes now gossip with it and
bring it in by full state) and its own eventual writes must reach the old
nodes. Then a node (a follower; the leader) is removed and stopped: its
eventual writes stay readable on every remaining node, the remaining nodes
stop counting it (no peer lag, rejoining mark or SWIM reason names it),
collection is no longer held back, and their digests agree
(``configsvc.node_members`` rule 4, ``eventual.stability`` rules 1-3).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx
import pytest

from configsvc.client import Client
from tests.cluster import LocalCluster, wait_for
from tests.test_member_processes import member_cli


def holds(c: LocalCluster, nid: str, expected: dict[str, bytes]) -> bool:
    """Whether ``nid`` serves every key of ``expected`` with its value (eventual reads)."""
    with Client(c.url(nid), timeout=5.0) as client:
        return all(client.get("disc", k) == v for k, v in expected.items())


def forgot(c: LocalCluster, nid: str, gone: str) -> bool:
    """Whether ``nid``'s eventual health no longer mentions ``gone`` as a peer."""
    health = c.health(nid)
    eventual = health["eventual"]
    return not (gone in eventual["peer_lag"] or gone in eventual["rejoining"]
                or gone in eventual["membership"]["alive_peers"]
                or any(r["code"].startswith("gossip_") and r["details"].get("node") == gone
                       for r in health["reasons"]))


def collected(c: LocalCluster, nid: str) -> bool:
    """Whether ``nid``'s eventual log is empty: every event stable among its roster."""
    return bool(c.health(nid)["eventual"]["events_not_yet_stable"] == 0)


@pytest.mark.parametrize("remove", ["follower", "leader"])
def test_eventual_data_follows_member_add_and_remove(tmp_path: Path, remove: str) -> None:
    c = LocalCluster(tmp_path, 3)
    try:
        c.start_all()
        expected: dict[str, bytes] = {}
        for nid in ("n1", "n2", "n3"):
            with Client(c.url(nid), timeout=10.0) as client:
                for i in range(5):
                    client.put("disc", f"{nid}/k{i}", f"{nid}-v{i}")
                    expected[f"{nid}/k{i}"] = f"{nid}-v{i}".encode()
        for nid in ("n1", "n2", "n3"):
            wait_for(partial(holds, c, nid, expected), 60, f"{nid} to hold every write")

        leader = c.leader()
        assert leader is not None
        peer, api = c.add_node("n4")
        done = member_cli("add", "n4", "--peer-address", peer, "--api-address", api,
                          "--endpoint", c.url(leader))
        assert done.returncode == 0, done.stdout + done.stderr
        members = httpx.get(c.url(leader) + "/v1/cluster/members", timeout=5).json()
        assert sorted(members["voters"]) == ["n1", "n2", "n3", "n4"]

        # The new node serves every earlier eventual key, and its writes reach the others.
        wait_for(lambda: holds(c, "n4", expected), 120, "n4 to serve every earlier eventual key")
        with Client(c.url("n4"), timeout=10.0) as client:
            client.put("disc", "n4/k0", "n4-v0")
            expected["n4/k0"] = b"n4-v0"
        for nid in ("n1", "n2", "n3"):
            wait_for(partial(holds, c, nid, expected), 60, f"n4's write to reach {nid}")
            assert "n4" in c.health(nid)["eventual"]["peer_lag"]

        # Remove a node (the leader hands leadership off first), then stop it.
        leader = wait_for(c.leader, 60, "a leader")
        gone = leader if remove == "leader" else next(n for n in ("n3", "n2", "n1") if n != leader)
        done = member_cli("remove", gone, "--endpoint", c.url(leader))
        assert done.returncode == 0, done.stdout + done.stderr
        c.kill(gone)
        remaining = [n for n in ("n1", "n2", "n3", "n4") if n != gone]
        with Client(c.url(remaining[0]), timeout=10.0) as client:
            client.put("disc", "after-removal", "x")
            expected["after-removal"] = b"x"

        for nid in remaining:
            # The removed node's writes stay readable; nothing waits for it any more.
            wait_for(partial(holds, c, nid, expected), 60, f"{nid} to hold every write")
            wait_for(partial(forgot, c, nid, gone), 60, f"{nid} to stop counting {gone}")
            wait_for(partial(collected, c, nid), 60, f"{nid} to collect its log without {gone}")

        def agree() -> bool:
            views = [c.health(n)["eventual"] for n in remaining]
            return all((v["vv"], v["namespaces"]) == (views[0]["vv"], views[0]["namespaces"])
                       for v in views[1:])

        wait_for(agree, 60, "the remaining nodes' digests to agree")
    finally:
        c.stop_all()

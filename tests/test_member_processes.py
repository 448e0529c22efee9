"""Membership changes on real processes (rung 4: real sockets, real fsync).

A 3-node cluster takes writes from a client thread; one node is killed and
replaced by a fresh node (new id, empty data directory) with ``configsvc
member replace``; writes go on; every acknowledged write is readable, through
the new node too; the killed node, restarted, is refused at every handshake.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import httpx

from configsvc.client import Client, ClientError
from tests.cluster import LocalCluster, wait_for


class Writer(threading.Thread):
    """Writes k0, k1, ... in order, each retried across endpoints until
    acknowledged or abandoned; records the acknowledged ones."""

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__(daemon=True)
        self.endpoints = endpoints
        self.acked: dict[str, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with Client(self.endpoints, timeout=5.0) as client:
            i = 0
            while not self.stop.is_set():
                key, value = f"k{i}", f"v{i}"
                try:
                    client.put("app", key, value)
                except (ClientError, httpx.HTTPError):
                    continue  # not acknowledged: its fate is unknown, and it is not counted
                self.acked[key] = value
                i += 1


def member_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "configsvc.cli", "member", *args],
                          capture_output=True, text=True, timeout=300)


def test_replace_a_dead_node_while_clients_write(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 3)
    try:
        c.start_all()
        writer = Writer(list(c.endpoints))
        writer.start()
        wait_for(lambda: len(writer.acked) >= 20, 60, "writes before the failure")
        leader = c.leader()
        assert leader is not None
        victim = next(n for n in ("n1", "n2", "n3") if n != leader)
        c.kill(victim)
        survivor = next(n for n in ("n1", "n2", "n3") if n not in (victim,))
        before = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= before + 20, 60, "writes with a node down")

        peer, api = c.add_node("n4")
        done = member_cli("replace", victim, "n4", "--peer-address", peer, "--api-address", api,
                          "--endpoint", c.url(survivor))
        assert done.returncode == 0, done.stdout + done.stderr
        members = httpx.get(c.url(survivor) + "/v1/cluster/members", timeout=5).json()
        assert sorted(members["voters"]) == sorted({"n1", "n2", "n3", "n4"} - {victim})
        assert members["retired"] == [victim]
        # The cluster view follows the configuration: n4 (not in the survivor's
        # cluster file) is asked and answers; the removed node is shown retired.
        def rows() -> dict[str, dict[str, object]] | None:
            status = httpx.get(c.url(survivor) + "/v1/cluster/status", timeout=30).json()
            by_id = {r["id"]: r for r in status["nodes"]}
            return by_id if by_id.get("n4", {}).get("answered") else None

        by_id = wait_for(rows, 60, "n4 in the cluster status")
        assert by_id["n4"]["role"] in ("leader", "follower")
        assert by_id[victim]["role"] == "retired" and not by_id[victim]["answered"]
        # The Consul face's raft peers are the configuration's voters too.
        peers = httpx.get(c.consul_url(survivor) + "/v1/status/peers", timeout=10).json()
        assert peer in peers and len(peers) == 3, peers
        leader_addr = httpx.get(c.consul_url(survivor) + "/v1/status/leader", timeout=10).json()
        assert leader_addr in peers
        # ...and the dashboard's member list.
        ui = httpx.get(c.url(survivor) + "/ui/api/state", timeout=30).json()
        shown = {m["id"]: m for m in ui["members"]}
        assert "n4" in shown and victim not in shown, sorted(shown)
        assert shown["n4"]["api"] == f"http://{api}"

        after = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= after + 20, 60, "writes after the replacement")
        writer.stop.set()
        writer.join(timeout=60)

        # Every acknowledged write is readable (linearizable reads), through n4 too.
        with Client(c.url("n4"), timeout=10.0) as client:
            for key, value in writer.acked.items():
                assert client.get("app", key) == value.encode(), key
        with Client(c.url(survivor), timeout=10.0) as client:
            client.put("app", "after", "x")
            assert client.get("app", "after") == b"x"


        # The removed node comes back: every peer refuses its handshake.
        c.start(victim)
        log = tmp_path / f"{victim}.log"
        wait_for(lambda: "refused by peer: unknown-node" in log.read_text(), 60,
                 f"{victim}'s handshakes refused")
        # ...and it says so: it never received the commit that removed it.
        def removed() -> dict[str, object] | None:
            reasons = c.health(victim)["reasons"]
            return next((r for r in reasons if r["code"] == "removed"), None)

        reason = wait_for(removed, 60, f"{victim}'s health to say it was removed")
        assert "replace it under a new id" in str(reason["message"])
        # It acknowledges no eventual write that nobody else would ever see.
        refused = httpx.put(f"{c.url(victim)}/v1/kv/disc/after-removal", content=b"x", timeout=10)
        assert refused.status_code == 503 and "removed" in refused.text, refused.text
    finally:
        c.stop_all()


def test_a_change_that_would_lose_the_quorum_is_refused(tmp_path: Path) -> None:
    c = LocalCluster(tmp_path, 3)
    try:
        c.start_all()
        leader = c.leader()
        assert leader is not None
        others = [n for n in ("n1", "n2", "n3") if n != leader]
        c.kill(others[0])
        wait_for(lambda: others[0] not in c.health(leader)["strong"]["reachable_voters"], 60,
                 "the leader to notice the dead node")
        # Removing the live follower would leave {leader, dead}: refused once the
        # leader has not heard from the dead node for an election timeout.
        def refusal() -> str | None:
            r = member_cli("remove", others[1], "--endpoint", c.url(leader))
            assert r.returncode == 1, r.stdout + r.stderr  # never done
            return r.stderr if "reachable" in r.stderr else None

        assert "a quorum needs 2" in wait_for(refusal, 60, "the refusal")
        members = httpx.get(c.url(leader) + "/v1/cluster/members", timeout=5).json()
        assert sorted(members["voters"]) == ["n1", "n2", "n3"]
    finally:
        c.stop_all()


def test_leadership_moves_on_request_and_removing_the_leader_hands_off(tmp_path: Path) -> None:
    """``member transfer-leader`` moves leadership to the voter named; removing
    the leader hands it off first (``strong.handoff``), and the successor removes
    it; writes go on throughout and every acknowledged one stays readable."""
    c = LocalCluster(tmp_path, 3)
    try:
        c.start_all()
        writer = Writer(list(c.endpoints))
        writer.start()
        wait_for(lambda: len(writer.acked) >= 20, 60, "writes before the transfer")
        leader = c.leader()
        assert leader is not None
        target = max(n for n in ("n1", "n2", "n3") if n != leader)
        moved = member_cli("transfer-leader", target, "--endpoint", c.url(target))
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert f"from {leader} to {target}" in moved.stdout
        wait_for(lambda: c.leader() == target, 60, f"{target} to lead")

        survivor = next(n for n in ("n1", "n2", "n3") if n not in (leader, target))
        asked = httpx.delete(f"{c.url(target)}/v1/cluster/members/{target}", timeout=30).json()
        assert asked["error"]["code"] == "not_leader", asked  # handed off, nothing proposed
        assert "leadership moved" in asked["error"]["message"]
        assert asked["error"]["leader"] in (leader, survivor)
        assert asked["error"]["leader_api"] == c.url(asked["error"]["leader"]).split("//")[1]
        gone = member_cli("remove", target, "--endpoint", c.url(target))
        assert gone.returncode == 0, gone.stdout + gone.stderr
        members = httpx.get(c.url(survivor) + "/v1/cluster/members", timeout=5).json()
        assert members["retired"] == [target] and target not in members["voters"]
        assert members["leader"] in (leader, survivor)

        before = len(writer.acked)
        wait_for(lambda: len(writer.acked) >= before + 20, 60, "writes after the removal")
        writer.stop.set()
        writer.join(timeout=60)
        with Client(c.url(survivor), timeout=10.0) as client:
            for key, value in writer.acked.items():
                assert client.get("app", key) == value.encode(), key

        refused = member_cli("transfer-leader", "n9", "--endpoint", c.url(survivor))
        assert refused.returncode == 1 and "not a voter" in refused.stderr, refused.stderr
    finally:
        c.stop_all()

"""``make demo``: a real 5-node cluster on this machine, and what each namespace does.

Starts five node processes, creates a strong namespace (``flags``) and an
eventual one (``services``), writes and reads through different nodes, then
kills nodes one by one: the strong namespace keeps serving while a majority
lives and then refuses honestly (``503``); the eventual namespace keeps
accepting reads and writes on every live node. The dead nodes come back,
catch up from their disks and peers, and the demo stops every process.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from configsvc.client import Client, ClientError
from configsvc.localcluster import LocalCluster, wait_for


def _say(text: str, started: float) -> None:
    print(f"[{time.monotonic() - started:5.1f}s] {text}", flush=True)


def _outage(cluster: LocalCluster, nid: str) -> str:
    s = cluster.health(nid)["strong"]
    return f"{cluster.health(nid)['status']}, failures to outage: {s['failures_to_outage']}"


def _no_leader(c: LocalCluster, nodes: list[str]) -> Callable[[], bool]:
    return lambda: all(c.health(n)["strong"]["leader"] is None for n in nodes)


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="configsvc-demo-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=5, namespaces=[
            {"name": "flags", "consistency": "strong"},
            {"name": "services", "consistency": "eventual"},
        ])
        try:
            return _run(cluster, started)
        finally:
            cluster.stop_all()
            _say("stopped every node process", started)


def _run(c: LocalCluster, t0: float) -> int:
    def say(text: str) -> None:
        _say(text, t0)

    say("starting 5 node processes (real sockets, real fsync) ...")
    c.start_all()
    leader = c.leader()
    assert leader is not None
    say(f"cluster up; {leader} leads the strong group; n1 is {_outage(c, 'n1')}")
    say("namespaces: flags (strong, Multi-Paxos), services (eventual, causal gossip)")

    with Client(c.url("n2")) as n2, Client(c.url("n5")) as n5:
        n2.put("flags", "checkout/rollout", "10%")
        say(f"wrote flags/checkout/rollout=10% via n2; read via n5: {n5.get('flags', 'checkout/rollout')!r}")
        n5.put("services", "web/10.0.0.7", "healthy")
        value = wait_for(lambda: Client(c.url("n1")).get("services", "web/10.0.0.7"), 10, "gossip")
        say(f"registered services/web/10.0.0.7 via n5; gossiped to n1: {value!r}")

    victims = [n for n in c.ids if n != "n1"][:3]
    for count, victim in enumerate(victims, start=1):
        c.kill(victim)
        alive = [n for n in c.ids if c.alive(n)]
        say(f"kill -9 {victim} ({count} down, {len(alive)} alive)")
        if len(alive) < 3:
            wait_for(_no_leader(c, alive), 15, "the survivors to notice")
            say(f"  {' and '.join(alive)} report 'unavailable': 2 of 5 voters, a quorum needs 3; no leader")
        else:
            wait_for(c.leader, 15, "a leader among the survivors")
        with Client(c.url("n1"), attempts=1, timeout=8.0) as client:
            try:
                client.put("flags", "checkout/rollout", f"{10 * (count + 1)}%")
                say(f"  strong flags: write accepted (a majority lives); n1 is {_outage(c, 'n1')}")
            except ClientError as exc:
                say(f"  strong flags: refused at once: {exc.status} {exc.code} (safe to retry; "
                    "never a silently stale answer)")
            client.put("services", f"web/10.0.0.{20 + count}", "healthy")
            say(f"  eventual services: write accepted on the survivors ({', '.join(alive)})")

    say("restarting the dead nodes from their disks ...")
    for victim in victims:
        c.start(victim)
    wait_for(c.leader, 30, "a leader again")
    wait_for(lambda: all(Client(c.url(n)).get("services", "web/10.0.0.23") == b"healthy" for n in c.ids),
             30, "eventual convergence")
    with Client(c.url(victims[-1])) as back:
        services = [item["key"] for item in back.list("services", "web/")]
        say(f"every node converged; via {victims[-1]}: flags/checkout/rollout="
            f"{back.get('flags', 'checkout/rollout')!r}; services: {', '.join(services)}")
    wait_for(lambda: all(c.health(n)["status"] == "healthy" for n in c.ids), 30, "a healthy cluster")
    say(f"n1 is {_outage(c, 'n1')}")
    return 0

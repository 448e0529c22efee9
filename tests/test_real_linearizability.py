"""Linearizability of the real system: processes, sockets, fsync, kill -9, partitions.

Client threads issue put/get/compare-and-set on a few keys through random
nodes while a fault thread kills nodes with SIGKILL, restarts them, and cuts
peer links through the admin API. The recorded history (real time, client
side) goes through the same checker as the simulator's. A write that ended in
any error may or may not have taken effect (unknown outcome); a read that
ended in an error is dropped. Afterwards every fault heals and a final read of
every key joins the history, so an acknowledged write that vanished shows up.
"""

from __future__ import annotations

import base64
import contextlib
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from configsvc.client import Client, ClientError
from configsvc.sim.linearizability import UNKNOWN, KVModel, Operation, check
from tests.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.slow

KEYS = ["a", "b", "c", "d", "e", "f"]
TOKEN = "admin-token-for-tests"


class Recorder:
    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.lock = threading.Lock()

    def add(self, client: int, key: str, inp: tuple[Any, ...], out: Any, call: float, ret: float | None) -> None:
        with self.lock:
            self.ops.append(Operation(client, (key, inp), out, call, ret))


def worker(index: int, cluster: LocalCluster, rec: Recorder, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    n = 0
    with Client(cluster.endpoints, timeout=4.0, attempts=3) as client:
        client._current = index  # spread the clients over the nodes
        while not stop.is_set():
            key = rng.choice(KEYS)
            kind = rng.random()
            call = time.monotonic()
            if kind < 0.45:
                try:
                    value = client.get("app", key)
                except ClientError:
                    continue  # a failed read had no effect
                rec.add(index, key, ("get",), value, call, time.monotonic())
                continue
            n += 1
            new = f"c{index}-{n}".encode()
            if kind < 0.8:
                inp: tuple[Any, ...] = ("put", new)
                try:
                    client.put("app", key, new)
                    out: Any = "ok"
                except ClientError:
                    rec.add(index, key, inp, UNKNOWN, call, None)
                    continue
            else:
                try:
                    expected = client.get("app", key, stale=True) if rng.random() < 0.7 else None
                except ClientError:
                    continue
                inp = ("cas", expected, new)
                spec = {"success": [{"op": "put", "key": key, "value": base64.b64encode(new).decode()}],
                        "compare": [{"key": key, "target": "version", "op": "==", "value": 0}]
                        if expected is None else
                        [{"key": key, "target": "value", "op": "==",
                          "value": base64.b64encode(expected).decode()}]}
                try:
                    out = client.request("POST", "/v1/txn/app", write=True, json=spec)["succeeded"]
                except ClientError:
                    rec.add(index, key, inp, UNKNOWN, call, None)
                    continue
            rec.add(index, key, inp, out, call, time.monotonic())


def faults(cluster: LocalCluster, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    while not stop.is_set():
        victim = rng.choice(cluster.ids)
        if rng.random() < 0.5:
            cluster.kill(victim, signal.SIGKILL)
            stop.wait(rng.uniform(0.5, 2.0))  # the fault lasts this long
            cluster.start(victim)
        else:
            for peer in cluster.ids:
                if peer != victim:
                    for a, b in ((victim, peer), (peer, victim)):
                        with contextlib.suppress(Exception):  # a node just killed does not answer
                            cluster.http.put(cluster.url(a) + f"/v1/admin/faults/{b}", headers=auth,
                                             json={"drop_out": True, "drop_in": True}, timeout=1.0)
            stop.wait(rng.uniform(0.5, 2.0))
            for nid in cluster.ids:
                with contextlib.suppress(Exception):
                    cluster.http.delete(cluster.url(nid) + "/v1/admin/faults", headers=auth, timeout=1.0)
        stop.wait(rng.uniform(0.3, 1.0))


def run_history(tmp_path: Path, seed: int, env: dict[str, str] | None = None) -> Any:
    """Run the faulty workload; return the checker's verdict on the history."""
    cluster = LocalCluster(tmp_path, nodes=3, admin_token=TOKEN, env=env, request_timeout=2.0)
    try:
        cluster.start_all()
        rec = Recorder()
        stop, stop_faults = threading.Event(), threading.Event()
        workers = [threading.Thread(target=worker, args=(i, cluster, rec, stop, seed * 100 + i))
                   for i in range(4)]
        chaos = threading.Thread(target=faults, args=(cluster, stop_faults, seed))
        for t in [*workers, chaos]:
            t.start()
        stop_faults.wait(12.0)  # the length of the faulty phase is the point
        stop_faults.set()
        chaos.join(timeout=30)
        for nid in cluster.ids:
            if not cluster.alive(nid):
                cluster.start(nid)
        for nid in cluster.ids:
            wait_for(lambda nid=nid: cluster.http.delete(
                cluster.url(nid) + "/v1/admin/faults", headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=2.0).status_code == 200, 30, f"{nid} to clear its faults")
        wait_for(cluster.leader, 30, "a leader after the faults")
        stop.set()
        for t in workers:
            t.join(timeout=30)
        with Client(cluster.endpoints) as auditor:
            for key in KEYS:
                call = time.monotonic()
                rec.add(99, key, ("get",), auditor.get("app", key), call, time.monotonic())
        writes = [o for o in rec.ops if o.input[1][0] != "get" and o.ret is not None]
        assert len(writes) >= 20, "the test must exercise acknowledged writes"
        return check(KVModel(), rec.ops, budget=20_000_000)
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("seed", [1, 2])
def test_history_under_kills_and_partitions_is_linearizable(tmp_path: Path, seed: int) -> None:
    result = run_history(tmp_path, seed)
    assert result.ok and not result.unknown, (result.explanation, [str(o) for o in result.excerpt][:12])


def test_the_check_catches_a_quorum_that_is_too_small(tmp_path: Path) -> None:
    """The same run with a planted bug (a quorum of n // 2: a cut-off node commits
    alone) must be found not linearizable: the check can fail.

    The planted bug was ``follower_local_reads`` (followers answer linearizable
    reads from their own state) until followers learned each commit at once
    (issue 10): their state is now fresh within a round trip, and those stale
    reads show in about one run in three, so the test would pass by chance.
    ``half_quorum`` was caught in each of the runs tried (seeds 1-3);
    ``follower_local_reads`` stays in
    the simulator's catalogue (tests/test_strong_sim.py), which catches it in
    most seeds."""
    result = run_history(tmp_path, 1, env={"CONFIGSVC_PLANTED_BUGS": "half_quorum"})
    assert not result.ok

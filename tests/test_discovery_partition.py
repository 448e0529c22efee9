"""Discovery across a partition (admin fault API), on real node processes.

An eventual namespace: each side keeps serving the instances it can still hear
from (heartbeats reach its nodes) and judges the others critical; after the
heal every node sees every instance passing again. A strong namespace on the
minority side answers 503 to a registration, at once, while the eventual one
on the same node keeps accepting them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from configsvc.client import Client, ClientError
from tests.cluster import LocalCluster, wait_for
from tests.discovery_support import running_cluster, wait_status
from tests.test_client_surface import heal, isolate

pytestmark = pytest.mark.slow

TTL = 1.5


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("partition")) as c:
        yield c


class Heartbeats(threading.Thread):
    """Registers an instance through one node and heartbeats it there, every TTL/5."""

    def __init__(self, url: str, instance_id: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(url, attempts=1, timeout=2.0)
        self.instance_id = instance_id
        self.stop = threading.Event()
        self.client.register("disc", "part", instance_id, ttl=TTL, status="passing")

    def run(self) -> None:
        while not self.stop.wait(TTL / 5):  # the heartbeat period
            with contextlib.suppress(ClientError):  # the test reads the consequences
                self.client.heartbeat("disc", "part", self.instance_id)

    def close(self) -> None:
        self.stop.set()
        self.join(10)
        self.client.close()


def statuses(url: str) -> dict[str, str]:
    with Client(url, attempts=1) as c:
        return {i["instance_id"]: i["status"] for i in c.instances("disc", "part")}


def sees(c: LocalCluster, nid: str, expected: dict[str, str], timeout: float = 15) -> None:
    wait_for(lambda: statuses(c.url(nid)) == expected, timeout, f"{nid} to see {expected}")


def test_each_side_serves_the_instances_it_can_hear(cluster: LocalCluster) -> None:
    beats = [Heartbeats(cluster.url(n), f"at-{n}") for n in cluster.ids]
    for b in beats:
        b.start()
    try:
        everyone = {f"at-{n}": "passing" for n in cluster.ids}
        for n in cluster.ids:
            sees(cluster, n, everyone)
        isolate(cluster, "n3")
        # The majority side hears n1's and n2's instances; n3's heartbeats no longer reach it.
        majority = {"at-n1": "passing", "at-n2": "passing", "at-n3": "critical"}
        for n in ("n1", "n2"):
            sees(cluster, n, majority)
        # The minority side still serves the one it hears, and keeps accepting registrations.
        wait_for(lambda: statuses(cluster.url("n3")).get("at-n3") == "passing"
                 and statuses(cluster.url("n3"))["at-n1"] == "critical", 15, "n3: its own instance passing")
        # Until n3 notices its leader is gone it forwards strong writes there, and a
        # forward lost in the cut is an honest 504 (the leader may have taken it).
        wait_for(lambda: cluster.health("n3")["strong"]["leader"] is None, 10, "n3 to know no leader")
        with Client(cluster.url("n3"), attempts=1) as c:
            c.register("disc", "part", "late", ttl=30.0, status="passing")
            assert statuses(cluster.url("n3"))["late"] == "passing"
            with pytest.raises(ClientError) as info:
                c.register("app", "part", "late", status="passing")
            assert info.value.status == 503
        heal(cluster)
        after = {**everyone, "late": "passing"}
        for n in cluster.ids:
            sees(cluster, n, after, 20)
    finally:
        for b in beats:
            b.close()
    with Client(cluster.endpoints) as c:
        for iid in [*everyone, "late"]:
            c.deregister("disc", "part", iid)
        wait_status(c, "disc", "part", "late", None)

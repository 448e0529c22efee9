"""HTTP checks against a tiny local HTTP server, run by the node each instance
registered with, in a strong and in an eventual namespace: passing, warning
(429), critical; a steady result writes nothing; the checking node killed turns
the instance critical (nobody checks it), and restarted it finds its checks again.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from configsvc.client import Client
from tests.cluster import LocalCluster, wait_for
from tests.discovery_support import NAMESPACES, CheckTarget, instance, running_cluster, wait_status

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("checks")) as c:
        yield c


@pytest.fixture
def target() -> Iterator[CheckTarget]:
    t = CheckTarget()
    try:
        yield t
    finally:
        t.close()


@pytest.mark.parametrize("ns", NAMESPACES, ids=["strong", "eventual"])
def test_an_http_check_follows_the_answers_of_its_target(
    cluster: LocalCluster, target: CheckTarget, ns: str
) -> None:
    with Client(cluster.url("n2")) as c:
        c.register(ns, "api", "a1", port=8080, check={"http": target.url, "interval": 0.1, "timeout": 1.0})
        found = wait_status(c, ns, "api", "a1", "passing")
        assert found is not None
        assert found["node"] == "n2" and found["check"]["http"] == target.url
        assert found["output"] == f"HTTP GET {target.url}: 200 OK"
        assert found["ttl"] == pytest.approx(1.3)  # implicit: 3 intervals and the timeout
        if ns == "app":
            # A steady result is not written again (only the TTL heartbeat, which is invisible).
            index = found["modify_index"]
            hits = target.hits
            wait_for(lambda: target.hits >= hits + 5, 10, "five more checks")
            assert instance(c, ns, "api", "a1")["modify_index"] == index  # type: ignore[index]
        for code, status in [(500, "critical"), (429, "warning"), (200, "passing")]:
            target.code = code
            found = wait_status(c, ns, "api", "a1", status)
            assert found is not None and str(code) in found["output"]
        target.close()  # nobody answers at all (a check in flight may see the close itself)
        wait_for(lambda: (i := instance(c, ns, "api", "a1")) is not None and i["status"] == "critical"
                 and "ConnectError" in i["output"], 15, "critical: connection refused")
        c.deregister(ns, "api", "a1")


def test_the_checking_node_killed_and_restarted(cluster: LocalCluster, target: CheckTarget) -> None:
    with Client(cluster.url("n3")) as at_n3, Client(cluster.url("n1")) as at_n1:
        for ns in NAMESPACES:
            at_n3.register(ns, "kill", "k1", check={"http": target.url, "interval": 0.2, "timeout": 0.5})
        at_n1.token = at_n3.token
        for ns in NAMESPACES:
            wait_status(at_n1, ns, "kill", "k1", "passing")
        cluster.kill("n3", signal.SIGKILL)
        # Nobody checks it now: within its implicit TTL of silence it is critical everywhere.
        for ns in NAMESPACES:
            found = wait_status(at_n1, ns, "kill", "k1", "critical")
            assert found is not None and found["node"] == "n3"
        cluster.start("n3")
        wait_for(lambda: cluster.health("n3")["status"] == "healthy", 30, "n3 healthy again")
        # n3 finds its instance in its own replicas and checks it again.
        for ns in NAMESPACES:
            wait_status(at_n1, ns, "kill", "k1", "passing")
        target.code = 503
        for ns in NAMESPACES:
            wait_status(at_n1, ns, "kill", "k1", "critical")
            at_n1.deregister(ns, "kill", "k1")

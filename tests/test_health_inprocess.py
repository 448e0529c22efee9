"""Three real nodes in one process (real storage, real peer sockets), their native
APIs in-process: reasons other modules add, a planted eventual divergence caught by
the digest comparison, and one metrics registry per node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from configsvc.config import parse_config
from configsvc.health_report import Reason
from configsvc.http.service import HttpService
from configsvc.node import Node
from eventual.dots import Sibling
from tests.cluster import PEER_SECRET, free_ports

IDS = ("n1", "n2", "n3")


@contextlib.asynccontextmanager
async def three_nodes(root: Path) -> AsyncIterator[dict[str, tuple[HttpService, httpx.AsyncClient]]]:
    ports = free_ports(2 * len(IDS))
    config = parse_config({
        "data_root": str(root),
        "nodes": [{"id": nid, "api_port": ports[i], "peer_port": ports[len(IDS) + i]}
                  for i, nid in enumerate(IDS)],
        "namespaces": [{"name": "app", "consistency": "strong"}, {"name": "ev", "consistency": "eventual"}],
        "health": {"peer_report_max_age": 0.1},
        "security": {"peer_secret": PEER_SECRET},
    })
    services = {nid: HttpService(Node(config, nid, initial_cluster_state="new")) for nid in IDS}
    async with contextlib.AsyncExitStack() as stack:
        for service in services.values():
            await service.start()
            stack.push_async_callback(service.close)
        clients = {}
        for nid, service in services.items():
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=service.app),
                                       base_url=f"http://{nid}", timeout=10)
            stack.push_async_callback(client.aclose)
            clients[nid] = (service, client)
        await until(lambda: all(s.node.namespaces_ready for s in services.values()), "namespaces")
        yield clients


async def until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout}s"
        await asyncio.sleep(0.02)  # polling an in-process condition with a deadline


async def health_until(http: httpx.AsyncClient, accept: Callable[[dict[str, object]], bool],
                       what: str, timeout: float = 30) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        health: dict[str, object] = (await http.get("/v1/cluster/health")).json()
        if accept(health):
            return health
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout}s: {health}"
        await asyncio.sleep(0.05)  # polling with a deadline


def codes(health: dict[str, object]) -> list[str]:
    return [r["code"] for r in health["reasons"]]  # type: ignore[attr-defined, index]


def digest_state(health: dict[str, object], ns: str) -> dict[str, object]:
    return health["eventual"]["digests"]["namespaces"][ns]  # type: ignore[index, no-any-return]


def test_added_reasons_divergence_and_per_node_metrics(tmp_path: Path) -> None:
    async def main() -> None:
        async with three_nodes(tmp_path) as nodes:
            h1, (s2, h2) = nodes["n1"][1], nodes["n2"]
            assert (await h1.put("/v1/kv/ev/web", content=b"10.0.0.1")).status_code == 200
            await health_until(h1, lambda h: digest_state(h, "ev")["agree"] is True
                               and h["status"] == "healthy", "agreeing digests on n1")

            # Another module's reason shows in the report and decides the status.
            s2.node.add_health_reasons(lambda: [Reason(
                "replicas_disagree", "degraded", "replicas disagree at index 500",
                {"index": 500, "nodes": ["n2", "n3"]})])
            health = (await h2.get("/v1/cluster/health")).json()
            assert health["status"] == "degraded"
            assert health["reasons"] == [{"code": "replicas_disagree", "severity": "degraded",
                                          "message": "replicas disagree at index 500",
                                          "details": {"index": 500, "nodes": ["n2", "n3"]}}]
            status = (await h1.get("/v1/cluster/status")).json()
            merged = [r for r in status["reasons"] if r["code"] == "replicas_disagree"]
            assert [r["reported_by"] for r in merged] == [["n2"]] and status["status"] == "degraded"

            # Planted divergence: n2's sibling changes without any event (its version vector
            # and repair-probe hash stay as they were). n1 must see it through the digests.
            store = s2.node.eventual.replica.store
            key = next(k for k in store.entries if k[0] == "ev")
            dot, sibling = next(iter(store.entries[key].items()))
            store.entries[key][dot] = Sibling(b"planted", sibling.hlc, sibling.idem)
            health = await health_until(h1, lambda h: "eventual_digests_disagree" in codes(h),
                                        "n1 to see n2 disagree")
            assert digest_state(health, "ev")["peers"] == {"n2": "disagree", "n3": "same"}
            assert digest_state(health, "ev")["agree"] is False and health["status"] == "degraded"
            reason = next(r for r in health["reasons"] if r["code"] == "eventual_digests_disagree")
            assert reason["details"] == {"namespace": "ev", "nodes": ["n1", "n2"]}

            # Each node its own registry: n1's counters are n1's alone.
            families = {}
            for nid, (_, http) in nodes.items():
                text = (await http.get("/metrics")).text
                families[nid] = {s.name: s for f in text_string_to_metric_families(text)
                                 for s in f.samples if s.name == "configsvc_strong_is_leader"}
            assert sorted(f["configsvc_strong_is_leader"].value for f in families.values()) == [0, 0, 1]
            agree = [s for f in text_string_to_metric_families((await h1.get("/metrics")).text)
                     for s in f.samples if s.name == "configsvc_eventual_digests_agree"]
            assert {s.labels["namespace"]: s.value for s in agree}["ev"] == 0

    asyncio.run(main())

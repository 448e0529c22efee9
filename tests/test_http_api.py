"""The native HTTP API in-process (ASGI), on a real one-node group with real storage.

Checks the error contract: every client mistake is a clear 4xx with a stable
code and changes nothing; nothing a client sends produces a 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from configsvc.config import parse_config
from configsvc.http.service import HttpService
from configsvc.node import Node
from tests.cluster import PEER_SECRET, free_ports

Scenario = Callable[[Node, httpx.AsyncClient], Awaitable[None]]


@contextlib.asynccontextmanager
async def single_service(root: Path, **extra: Any) -> AsyncIterator[tuple[HttpService, httpx.AsyncClient]]:
    """One node with its HTTP service (native API in-process), namespaces ready;
    ``extra``: more top-level configuration (e.g. ``acl``)."""
    api, peer = free_ports(2)
    config = parse_config(extra | {
        "data_root": str(root),
        "nodes": [{"id": "n1", "api_port": api, "peer_port": peer}],
        "limits": {"key_max_bytes": 16, "value_max_bytes": 64, "body_max_bytes": 256},
        "namespaces": [{"name": "app", "consistency": "strong"}, {"name": "ev", "consistency": "eventual"}],
        "security": {"peer_secret": PEER_SECRET},
    })
    node = Node(config, "n1", initial_cluster_state="new")
    service = HttpService(node)
    await service.start()
    try:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://n1") as http:
            deadline = asyncio.get_running_loop().time() + 10
            while not node.namespaces_ready:
                assert asyncio.get_running_loop().time() < deadline, "no leader in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            yield service, http
    finally:
        await service.close()


@contextlib.asynccontextmanager
async def single_node(root: Path) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    async with single_service(root) as (service, http):
        yield service.node, http


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (node, http):
            await scenario(node, http)

    asyncio.run(main())


def error(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_put_get_delete_and_missing_key(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        r = await http.put("/v1/kv/app/a/b", content=b"v1")
        assert r.status_code == 200 and r.json()["prev"] is None
        r = await http.get("/v1/kv/app/a/b")
        kv = r.json()["kv"]
        assert base64.b64decode(kv["value"]) == b"v1" and kv["version"] == 1
        assert (await http.get("/v1/kv/app/a/b", params={"consistency": "stale"})).status_code == 200
        assert (await http.delete("/v1/kv/app/a/b")).json()["deleted"] == 1
        assert error(await http.get("/v1/kv/app/a/b")) == (404, "key_not_found")

    run(tmp_path, scenario)


def test_cas_create_only_and_on_mod_revision(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        assert (await http.put("/v1/kv/app/k", content=b"1", params={"cas": 0})).status_code == 200
        assert error(await http.put("/v1/kv/app/k", content=b"2", params={"cas": 0})) == (412, "cas_failed")
        rev = (await http.get("/v1/kv/app/k")).json()["kv"]["mod_revision"]
        assert (await http.put("/v1/kv/app/k", content=b"3", params={"cas": rev})).status_code == 200
        assert error(await http.put("/v1/kv/app/k", content=b"4", params={"cas": rev})) == (412, "cas_failed")

    run(tmp_path, scenario)


def test_retried_write_with_the_same_session_applies_once(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        headers = {"X-Client-Id": "c1", "X-Client-Seq": "7"}
        first = await http.put("/v1/kv/app/once", content=b"x", headers=headers)
        again = await http.put("/v1/kv/app/once", content=b"x", headers=headers)
        assert first.json() == again.json()
        assert (await http.get("/v1/kv/app/once")).json()["kv"]["version"] == 1

    run(tmp_path, scenario)


def test_bad_input_is_a_clear_4xx_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        applied = node.strong.sm.applied_index
        cases = [
            (http.put("/v1/kv/app/" + "k" * 17, content=b"v"), (400, "key_too_long")),
            (http.put("/v1/kv/app/k", content=b"v" * 65), (413, "value_too_large")),
            (http.put("/v1/kv/app/k", content=b"v", params={"cas": "abc"}), (400, "invalid_argument")),
            (http.put("/v1/kv/app/k", content=b"v", params={"cas": "-1"}), (400, "invalid_argument")),
            (http.get("/v1/kv/app/k", params={"consistency": "maybe"}), (400, "invalid_argument")),
            (http.put("/v1/kv/nope/k", content=b"v"), (404, "namespace_not_found")),
            (http.post("/v1/namespaces", content=b"{not json"), (400, "invalid_argument")),
            (http.post("/v1/namespaces", json={"name": "x", "consistency": "weird"}), (400, "invalid_argument")),
            (http.post("/v1/namespaces", json={"name": "bad name!", "consistency": "strong"}),
             (400, "invalid_argument")),
            (http.post("/v1/namespaces", content=b"x" * 300), (413, "body_too_large")),
            (http.post("/v1/txn/app", json={"compare": [{"key": "k"}]}), (400, "invalid_argument")),
            (http.put("/v1/kv/app/k", content=b"v", headers={"X-Client-Id": "c", "X-Client-Seq": "x"}),
             (400, "invalid_argument")),
            (http.get("/v1/nothing/here"), (404, "not_found")),
            (http.put("/v1/kv/app/k", content=b"v", params={"cas": str(2**64)}), (400, "invalid_argument")),
            (http.put("/v1/kv/app/k", content=b"v", params={"flags": str(2**64)}), (400, "invalid_argument")),
            (http.get("/v1/kv/app", params={"limit": str(2**64)}), (400, "invalid_argument")),
            (http.post("/v1/txn/app", json={"success": [{"op": "put", "key": 1, "value": ""}]}),
             (400, "invalid_argument")),
            (http.post("/v1/namespaces", content=b"[" * 200), (400, "invalid_argument")),
            (http.patch("/v1/kv/app/k"), (405, "method_not_allowed")),
        ]
        for call, expected in cases:
            response = await call
            assert response.status_code == expected[0], (expected, response.text)
            assert error(response) == expected
        assert node.strong.sm.applied_index == applied

    run(tmp_path, scenario)


def test_namespace_lifecycle(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        r = await http.post("/v1/namespaces", json={"name": "flags", "consistency": "strong"})
        assert r.status_code == 201 and r.json()["created"] is True
        again = await http.post("/v1/namespaces", json={"name": "flags", "consistency": "strong"})
        assert again.status_code == 200 and again.json()["created"] is False
        clash = await http.post("/v1/namespaces", json={"name": "flags", "consistency": "eventual"})
        assert error(clash) == (409, "namespace_exists")
        names = [n["name"] for n in (await http.get("/v1/namespaces")).json()["namespaces"]]
        assert names == ["app", "ev", "flags"]
        assert (await http.delete("/v1/namespaces/flags")).status_code == 200
        assert error(await http.get("/v1/namespaces/flags")) == (404, "namespace_not_found")

    run(tmp_path, scenario)


def test_transaction_applies_all_or_nothing(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        b64 = lambda v: base64.b64encode(v).decode()  # noqa: E731
        await http.put("/v1/kv/app/lock", content=b"free")
        spec: dict[str, Any] = {
            "compare": [{"key": "lock", "target": "value", "op": "==", "value": b64(b"free")}],
            "success": [{"op": "put", "key": "lock", "value": b64(b"held")},
                        {"op": "put", "key": "owner", "value": b64(b"me")}],
            "failure": [{"op": "get", "key": "lock"}],
        }
        assert (await http.post("/v1/txn/app", json=spec)).json()["succeeded"] is True
        second = (await http.post("/v1/txn/app", json=spec)).json()
        assert second["succeeded"] is False
        assert base64.b64decode(second["responses"][0]["kv"]["value"]) == b"held"

    run(tmp_path, scenario)


def waiting_probe(monkeypatch: pytest.MonkeyPatch, driver: object) -> asyncio.Event:
    """An event set when a request starts waiting in ``driver.wait_for_change``: proof
    that the server has processed the request up to the point where it blocks."""
    entered = asyncio.Event()
    original = driver.wait_for_change  # type: ignore[attr-defined]

    async def probe(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        return await original(*args, **kwargs)

    monkeypatch.setattr(driver, "wait_for_change", probe)
    return entered


def test_blocking_watch_returns_when_the_key_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await http.put("/v1/kv/app/w", content=b"1")
        rev = (await http.get("/v1/kv/app/w")).json()["kv"]["mod_revision"]
        waiting = waiting_probe(monkeypatch, node.strong)
        watch = asyncio.create_task(http.get("/v1/kv/app/w", params={"index": rev, "wait": 30}))
        await asyncio.wait_for(waiting.wait(), 5)  # the server took the request and blocks
        assert not watch.done()
        await http.put("/v1/kv/app/w", content=b"2")
        # It answers with the change, long before its 30 s bound: the change woke it.
        answer = await asyncio.wait_for(watch, 5)
        assert base64.b64decode(answer.json()["kv"]["value"]) == b"2"
        timed = await http.get("/v1/kv/app/w", params={"index": rev + 1, "wait": 0.05})
        assert timed.status_code == 200  # the wait bound passed: the current state

    run(tmp_path, scenario)


def test_eventual_read_write_siblings_and_blocking_watch(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        first = await http.put("/v1/kv/ev/svc/web", content=b"a")
        token = first.headers["x-configsvc-token"]
        read = await http.get("/v1/kv/ev/svc/web", headers={"X-Configsvc-Token": token})
        body = read.json()
        assert base64.b64decode(body["value"]) == b"a" and len(body["siblings"]) == 1
        await http.put("/v1/kv/ev/svc/web", content=b"b")  # supersedes what the node saw
        assert len((await http.get("/v1/kv/ev/svc/web")).json()["siblings"]) == 1
        await http.put("/v1/kv/ev/svc/web", content=b"c", params={"blind": "true"})
        assert len((await http.get("/v1/kv/ev/svc/web")).json()["siblings"]) == 2  # kept both
        listed = await http.get("/v1/kv/ev", params={"prefix": "svc/"})
        index = listed.json()["index"]
        waiting = waiting_probe(monkeypatch, node.eventual)
        watch = asyncio.create_task(http.get("/v1/kv/ev", params={"prefix": "svc/", "index": index,
                                                                  "wait": 30}))
        await asyncio.wait_for(waiting.wait(), 5)  # the server took the request and blocks
        assert not watch.done()
        await http.put("/v1/kv/ev/svc/db", content=b"d")
        changed = (await asyncio.wait_for(watch, 5)).json()  # the change woke it, not the bound
        assert changed["index"] != index and [i["key"] for i in changed["items"]] == ["svc/db", "svc/web"]
        assert error(await http.get("/v1/kv/ev/nothing")) == (404, "key_not_found")
        # transactions in an eventual namespace: in order, all or nothing at this node
        assert error(await http.post("/v1/txn/ev", json={})) == (400, "invalid_argument")
        assert error(await http.post("/v1/txn/ev", json={"ops": [{"op": "explode"}]})) == (
            400, "invalid_argument")
        b64 = base64.b64encode(b"1").decode()
        done = await http.post("/v1/txn/ev", json={"ops": [
            {"op": "put", "key": "t/a", "value": b64, "if_version": 0},
            {"op": "put", "key": "t/b", "value": b64},
            {"op": "range", "prefix": "t/"}]})
        assert done.status_code == 200 and done.json()["succeeded"], done.text
        tree = done.json()["results"][2]
        assert [r["key"] for r in tree] == ["t/a", "t/b"] and all(r["version"] for r in tree)
        refused = await http.post("/v1/txn/ev", json={"ops": [
            {"op": "delete", "key": "t/b"},
            {"op": "check", "key": "t/a", "version": tree[0]["version"] + 1}]})
        assert refused.status_code == 409 and refused.json()["failed_op"] == 1
        assert (await http.get("/v1/kv/ev/t/b")).status_code == 200  # the delete did not apply

    run(tmp_path, scenario)


def test_health_and_openapi(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        health = (await http.get("/v1/cluster/health")).json()
        assert health["node"] == "n1" and health["strong"]["leader"] == "n1"
        assert health["strong"]["failures_to_outage"] == 0
        assert health["status"] == "degraded"  # one node: one failure from outage
        spec = (await http.get("/v1/openapi.json")).json()
        assert "/v1/kv/{ns}/{key}" in spec["paths"]

    run(tmp_path, scenario)


def test_no_request_is_ever_a_500(tmp_path: Path) -> None:
    """400 seeded random requests (methods, paths, query parameters, bodies)."""
    rng = random.Random(2026)
    alphabet = "abcxyz/%._-~ "
    params_pool = ["cas", "index", "wait", "consistency", "prefix", "limit", "recurse", "flags"]

    def text(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))

    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        for _ in range(400):
            method = rng.choice(["GET", "PUT", "POST", "DELETE", "PATCH"])
            target = rng.choice(["/v1/kv/app/", "/v1/kv/", "/v1/namespaces/", "/v1/txn/", "/v1/"])
            target += text(12)
            params = {rng.choice(params_pool): text(5) for _ in range(rng.randint(0, 3))}
            if "wait" in params:
                params["wait"] = "0.01"
            body = rng.randbytes(rng.randint(0, 80)) if rng.random() < 0.5 else b'{"name": 1}'
            r = await http.request(method, target, params=params, content=body)
            assert r.status_code < 500, (method, target, params, body, r.text)
            if r.status_code >= 400:
                assert r.json()["error"]["code"], r.text

    run(tmp_path, scenario)

"""The Consul-compatible face in-process (ASGI), on a real one-node group with real storage.

Consul's shapes (entries, ``true``/``false``, ``Results``/``Errors``), its
headers, blocking on the strong store, and the error contract: every
malformed or unsupported request is a clear 4xx that changes nothing, never
a 500. (Real processes and the real ``py-consul`` client: test_consul_processes.py.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from configsvc.http.consul import build_consul_app
from configsvc.http.consul.params import parse_duration
from configsvc.http.consul.txn import parse_ops
from configsvc.http.errors import ApiError
from configsvc.node import Node
from tests.test_http_api import error, single_node, waiting_probe

Scenario = Callable[[Node, httpx.AsyncClient], Awaitable[None]]


@contextlib.asynccontextmanager
async def consul_face(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_consul_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://n1") as http:
        yield http


def run(tmp_path: Path, scenario: Scenario) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (node, _), consul_face(node) as http:
            await scenario(node, http)

    asyncio.run(main())


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_kv_put_get_cas_flags_raw_and_delete(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        r = await http.put("/v1/kv/app/db/url", content=b"pg://a", params={"flags": 42})
        assert (r.status_code, r.json()) == (200, True)
        r = await http.get("/v1/kv/app/db/url")
        [entry] = r.json()
        assert entry["Key"] == "app/db/url" and base64.b64decode(entry["Value"]) == b"pg://a"
        assert entry["Flags"] == 42 and entry["LockIndex"] == 0
        assert entry["CreateIndex"] == entry["ModifyIndex"] == int(r.headers["X-Consul-Index"])
        assert r.headers["X-Consul-KnownLeader"] == "true"
        assert r.headers["X-Consul-Effective-Consistency"] == "leader"
        assert r.headers["X-Consul-LastContact"] == "0"
        raw = await http.get("/v1/kv/app/db/url", params={"raw": ""})
        assert raw.content == b"pg://a"
        # cas=0 creates only; cas=<ModifyIndex> swaps only that version
        assert (await http.put("/v1/kv/app/db/url", content=b"x", params={"cas": 0})).json() is False
        stale = entry["ModifyIndex"]
        assert (await http.put("/v1/kv/app/db/url", content=b"pg://b", params={"cas": stale})).json() is True
        assert (await http.put("/v1/kv/app/db/url", content=b"pg://c", params={"cas": stale})).json() is False
        [now] = (await http.get("/v1/kv/app/db/url")).json()
        assert base64.b64decode(now["Value"]) == b"pg://b" and now["CreateIndex"] == entry["CreateIndex"]
        assert (await http.delete("/v1/kv/app/db/url", params={"cas": stale})).json() is False
        assert (await http.delete("/v1/kv/app/db/url", params={"cas": now["ModifyIndex"]})).json() is True
        missing = await http.get("/v1/kv/app/db/url")
        assert missing.status_code == 404 and int(missing.headers["X-Consul-Index"]) >= now["ModifyIndex"]
        nowhere = await http.get("/v1/kv/nope/x")
        assert nowhere.status_code == 404 and "X-Consul-Index" in nowhere.headers

    run(tmp_path, scenario)


def test_recurse_keys_separator_and_delete_tree(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        for key in ("web/a", "web/sub/b", "web/sub/c", "other"):
            assert (await http.put(f"/v1/kv/app/{key}", content=key.encode())).json() is True
        listed = (await http.get("/v1/kv/app/web/", params={"recurse": "1"})).json()
        assert [e["Key"] for e in listed] == ["app/web/a", "app/web/sub/b", "app/web/sub/c"]
        keys = (await http.get("/v1/kv/app/web/", params={"keys": "true", "separator": "/"})).json()
        assert keys == ["app/web/a", "app/web/sub/"]
        every = (await http.get("/v1/kv/app", params={"keys": ""})).json()
        assert every == ["app/other", "app/web/a", "app/web/sub/b", "app/web/sub/c"]
        assert (await http.get("/v1/kv/app/none/", params={"recurse": ""})).status_code == 404
        assert (await http.delete("/v1/kv/app/web/sub/", params={"recurse": ""})).json() is True
        keys = (await http.get("/v1/kv/app/", params={"keys": ""})).json()
        assert keys == ["app/other", "app/web/a"]

    run(tmp_path, scenario)


def test_consistency_modes_say_what_they_were(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await http.put("/v1/kv/app/k", content=b"v")
        for params, effective in (({}, "leader"), ({"consistent": ""}, "consistent"), ({"stale": ""}, "stale")):
            r = await http.get("/v1/kv/app/k", params=params)
            assert r.status_code == 200 and r.headers["X-Consul-Effective-Consistency"] == effective

    run(tmp_path, scenario)


@pytest.mark.parametrize("ns", ["app", "ev"])
def test_a_blocking_get_waits_for_a_change_and_wakes_only_on_one_under_it(
        tmp_path: Path, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        parked = waiting_probe(monkeypatch, node.strong if ns == "app" else node.eventual)
        await http.put(f"/v1/kv/{ns}/cfg/a", content=b"1")
        first = await http.get(f"/v1/kv/{ns}/cfg/", params={"recurse": ""})
        index = first.headers["X-Consul-Index"]
        # Nothing changes: the query answers when its wait ends, with the same index.
        idle = await http.get(f"/v1/kv/{ns}/cfg/", params={"recurse": "", "index": index, "wait": "100ms"})
        assert idle.headers["X-Consul-Index"] == index and idle.json() == first.json()
        # A write elsewhere does not wake it; a write under the prefix does.
        waiting = asyncio.create_task(
            http.get(f"/v1/kv/{ns}/cfg/", params={"recurse": "", "index": index, "wait": "20s"}))
        await asyncio.wait_for(parked.wait(), 10)  # the query is blocking: only now write
        await http.put(f"/v1/kv/{ns}/elsewhere", content=b"x")
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done, "a write outside the prefix woke the query"
        await http.put(f"/v1/kv/{ns}/cfg/b", content=b"2")
        woke = await asyncio.wait_for(waiting, 10)
        assert [e["Key"] for e in woke.json()] == [f"{ns}/cfg/a", f"{ns}/cfg/b"]
        assert int(woke.headers["X-Consul-Index"]) > int(index)

    run(tmp_path, scenario)


@pytest.mark.parametrize("ns", ["app", "ev"])
def test_txn_applies_all_or_nothing_with_consuls_shapes(tmp_path: Path, ns: str) -> None:
    """The same transactions, the same answers, in a strong and an eventual namespace
    (the eventual store keeps no flags; its ModifyIndex is a version stamp)."""
    flags = 7 if ns == "app" else 0

    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        ok = await http.put("/v1/txn", json=[
            {"KV": {"Verb": "set", "Key": f"{ns}/t/a", "Value": b64("1"), "Flags": flags}},
            {"KV": {"Verb": "cas", "Key": f"{ns}/t/b", "Value": b64("2"), "Index": 0}},
            {"KV": {"Verb": "get", "Key": f"{ns}/t/a"}},
        ])
        assert ok.status_code == 200, ok.text
        results = ok.json()["Results"]
        assert [r["KV"]["Key"] for r in results] == [f"{ns}/t/a", f"{ns}/t/b", f"{ns}/t/a"]
        assert results[0]["KV"]["Value"] is None and results[0]["KV"]["Flags"] == flags
        assert base64.b64decode(results[2]["KV"]["Value"]) == b"1"
        index = results[1]["KV"]["ModifyIndex"]
        # a failing check rolls everything back: 409 naming the operation
        bad = await http.put("/v1/txn", json=[
            {"KV": {"Verb": "check-not-exists", "Key": f"{ns}/t/c"}},
            {"KV": {"Verb": "check-index", "Key": f"{ns}/t/b", "Index": index + 1}},
            {"KV": {"Verb": "delete-tree", "Key": f"{ns}/t/"}},
        ])
        assert bad.status_code == 409 and bad.json()["Results"] is None
        assert [e["OpIndex"] for e in bad.json()["Errors"]] == [1]
        cas = await http.put("/v1/txn", json=[
            {"KV": {"Verb": "delete", "Key": f"{ns}/t/a"}},
            {"KV": {"Verb": "cas", "Key": f"{ns}/t/b", "Value": b64("3"), "Index": index + 5}},
        ])
        assert cas.status_code == 409 and [e["OpIndex"] for e in cas.json()["Errors"]] == [1]
        tree = await http.put("/v1/txn", json=[{"KV": {"Verb": "get-tree", "Key": f"{ns}/t/"}}])
        assert [r["KV"]["Key"] for r in tree.json()["Results"]] == [f"{ns}/t/a", f"{ns}/t/b"]
        gone = await http.put("/v1/txn", json=[
            {"KV": {"Verb": "delete-cas", "Key": f"{ns}/t/b", "Index": index}},
            {"KV": {"Verb": "delete-tree", "Key": f"{ns}/t/"}},
        ])
        assert gone.status_code == 200 and gone.json()["Results"] == []
        assert (await http.get(f"/v1/kv/{ns}/t/", params={"recurse": ""})).status_code == 404

    run(tmp_path, scenario)


def test_status_and_agent_self(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        address = f"127.0.0.1:{node.me.peer_port}"
        assert (await http.get("/v1/status/leader")).json() == address
        assert (await http.get("/v1/status/peers")).json() == [address]
        me = (await http.get("/v1/agent/self")).json()
        assert me["Config"]["NodeName"] == "n1" and me["Config"]["Datacenter"] == "dc1"
        assert me["Config"]["Server"] is True and me["Member"]["Addr"] == "127.0.0.1"

    run(tmp_path, scenario)


def test_malformed_and_unsupported_requests_are_clear_4xx_and_change_nothing(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await http.put("/v1/kv/app/k", content=b"v")
        revision = node.strong.sm.revision  # (background commands change no revision)
        key = "/v1/kv/app/k"
        cases = [
            (http.get(key, params={"index": "-1"}), (400, "invalid_argument")),
            (http.get(key, params={"index": str(2**64)}), (400, "invalid_argument")),
            (http.get(key, params={"index": "1e3"}), (400, "invalid_argument")),
            (http.get(key, params={"index": "1", "wait": "-1s"}), (400, "invalid_argument")),
            (http.get(key, params={"index": "1", "wait": "10"}), (400, "invalid_argument")),
            (http.get(key, params={"index": "1", "wait": "soon"}), (400, "invalid_argument")),
            (http.get(key, params={"stale": "", "consistent": ""}), (400, "invalid_argument")),
            (http.get(key, params={"cached": ""}), (400, "unsupported_parameter")),
            (http.get(key, params={"dc": "elsewhere"}), (400, "unknown_datacenter")),
            (http.put(key, content=b"v", params={"acquire": "s1"}), (400, "unsupported")),
            (http.put(key, content=b"v", params={"cas": "-3"}), (400, "invalid_argument")),
            (http.put(key, content=b"v", params={"flags": str(2**64)}), (400, "invalid_argument")),
            (http.put(key, content=b"v" * 65), (413, "value_too_large")),
            (http.put("/v1/kv/app/" + "k" * 17, content=b"v"), (400, "key_too_long")),
            (http.put("/v1/kv/app", content=b"v"), (400, "invalid_argument")),
            (http.put("/v1/kv/", content=b"v"), (400, "invalid_argument")),
            (http.delete(key, params={"recurse": "", "cas": "1"}), (400, "invalid_argument")),
            (http.put("/v1/kv/ev/k", content=b"v", params={"flags": "1"}), (400, "unsupported")),
            (http.put("/v1/txn", content=b"{not json"), (400, "invalid_argument")),
            (http.put("/v1/txn", json={"KV": {}}), (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "app/x", "Value": "***"}}]),
             (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "app/x", "Value": 5}}]),
             (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "explode", "Key": "app/x"}}]), (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "lock", "Key": "app/x", "Session": "s"}}]),
             (400, "unsupported")),
            (http.put("/v1/txn", json=[{"Node": {"Verb": "get"}}]), (400, "unsupported")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "cas", "Key": "app/x", "Index": -1}}]),
             (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "app/x", "Value": ""}},
                                       {"KV": {"Verb": "set", "Key": "ev/x", "Value": ""}}]),
             (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "ev/x", "Value": "", "Flags": 3}}]),
             (400, "unsupported")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "app/x", "Value": ""}},
                                       {"KV": {"Verb": "check-index", "Key": "app/x", "Index": 1}}]),
             (400, "invalid_argument")),
            (http.put("/v1/txn", json=[{"KV": {"Verb": "set", "Key": "nope/x", "Value": ""}}]),
             (404, "namespace_not_found")),
            (http.get("/v1/acl/roles"), (404, "unsupported_endpoint")),
            (http.get("/v1/acl/tokens"), (401, "acl_disabled")),  # ACLs are off here
            (http.post(key), (405, "method_not_allowed")),
        ]
        for call, expected in cases:
            response = await call
            assert error(response) == expected, (expected, response.text)
        assert node.strong.sm.revision == revision

    run(tmp_path, scenario)


def test_a_transaction_holds_at_most_128_operations() -> None:
    ops = [{"KV": {"Verb": "get", "Key": f"app/k{i}"}} for i in range(129)]
    assert len(parse_ops(json.dumps(ops[:128]).encode(), 64, 64)) == 128
    with pytest.raises(ApiError) as info:
        parse_ops(json.dumps(ops).encode(), 64, 64)
    assert (info.value.status, info.value.code) == (413, "too_many_operations")


@pytest.mark.parametrize(("text", "seconds"), [("0", 0.0), ("10s", 10.0), ("1m30s", 90.0),
                                               ("250ms", 0.25), ("1h", 3600.0), ("1.5s", 1.5)])
def test_wait_is_a_go_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "-1s", "1x", "s", "1s2", "1 s", "1e3s"])
def test_wait_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_eventual_kv_shows_one_value_a_version_stamp_and_the_causal_token(tmp_path: Path) -> None:
    async def main() -> None:
        async with single_node(tmp_path) as (node, native), consul_face(node) as http:
            assert (await http.put("/v1/kv/ev/k", content=b"one")).json() is True
            r = await http.get("/v1/kv/ev/k")
            [entry] = r.json()
            assert r.headers["X-Consul-Effective-Consistency"] == "local"
            assert r.headers["X-Consul-LastContact"] == "0" and r.headers["X-Configsvc-Siblings"] == "1"
            token = r.headers["X-Configsvc-Token"]
            assert token.startswith("c1.") and entry["Flags"] == 0
            stamp = entry["ModifyIndex"]
            assert 1 <= stamp <= 2**52 and entry["CreateIndex"] == stamp
            # a concurrent value (a blind native write) becomes a sibling; the face shows one
            await native.put("/v1/kv/ev/k", content=b"two", params={"blind": "true"})
            r = await http.get("/v1/kv/ev/k", headers={"X-Configsvc-Token": token})
            assert r.headers["X-Configsvc-Siblings"] == "2"
            [both] = r.json()
            assert base64.b64decode(both["Value"]) == b"two" and both["ModifyIndex"] != stamp
            # cas names the version seen: the stale stamp fails, the current one supersedes both
            assert (await http.put("/v1/kv/ev/k", content=b"x", params={"cas": stamp})).json() is False
            assert (await http.put("/v1/kv/ev/k", content=b"x", params={"cas": 0})).json() is False
            ok = await http.put("/v1/kv/ev/k", content=b"three", params={"cas": both["ModifyIndex"]})
            assert ok.json() is True and ok.headers["X-Configsvc-Token"].startswith("c1.")
            r = await http.get("/v1/kv/ev/k", params={"consistent": ""})
            assert r.headers["X-Configsvc-Siblings"] == "1" and r.headers["X-Consul-Effective-Consistency"] == "local"
            assert (await http.get("/v1/kv/ev/k", params={"raw": ""})).content == b"three"
            # a token from a past this node never saw: not served (409), never a stale answer
            ahead = "c1." + base64.urlsafe_b64encode(b"\x91\x92\xa2zz\xcd\x03\xe7").decode().rstrip("=")
            behind = await http.get("/v1/kv/ev/k", headers={"X-Configsvc-Token": ahead})
            assert error(behind) == (409, "causally_behind")
            assert (await http.delete("/v1/kv/ev/k", params={"cas": 1})).json() is False
            assert (await http.delete("/v1/kv/ev/k")).json() is True
            assert (await http.get("/v1/kv/ev/k")).status_code == 404

    asyncio.run(main())


def test_malformed_service_requests_are_clear_4xx(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        reg = "/v1/agent/service/register"
        ns = {"ns": "ev"}
        cases = [
            (http.put(reg, params=ns, content=b"{nope"), (400, "invalid_argument")),
            (http.put(reg, params=ns, json=[]), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"ID": "x"}), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "a/b"}), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Port": 70000}), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Connect": {"Native": True}}), (400, "unsupported")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"TCP": "h:1", "Interval": "1s"}}),
             (400, "unsupported")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"TTL": "soon"}}), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"TTL": "-5s"}}), (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"HTTP": "ftp://x", "Interval": "1s"}}),
             (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"HTTP": "http://x"}}),
             (400, "invalid_argument")),
            (http.put(reg, params=ns, json={"Name": "web", "Check": {"TTL": "5s", "CheckID": "mine"}}),
             (400, "unsupported")),
            (http.put(reg, params={"ns": "nope"}, json={"Name": "web"}), (404, "namespace_not_found")),
            (http.put(reg, params={**ns, "bogus": "1"}, json={"Name": "web"}), (400, "unsupported_parameter")),
            (http.put("/v1/agent/service/deregister/ghost", params=ns), (404, "instance_not_found")),
            (http.put("/v1/agent/check/pass/service:ghost", params=ns), (404, "check_not_found")),
            (http.put("/v1/agent/check/pass/ghost", params=ns), (404, "check_not_found")),
            (http.put("/v1/agent/check/update/service:ghost", params=ns, json={"Status": "bad"}),
             (400, "invalid_argument")),
            (http.get("/v1/health/service/web", params={**ns, "index": "-1"}), (400, "invalid_argument")),
            (http.get("/v1/health/service/web", params={**ns, "near": "_agent"}), (400, "unsupported_parameter")),
            (http.get("/v1/catalog/service/web", params={**ns, "filter": "x"}), (400, "unsupported_parameter")),
        ]
        for call, expected in cases:
            response = await call
            assert error(response) == expected, (expected, response.text)
        # Consul's shapes for a registered, TTL-checked instance
        body = {"Name": "web", "ID": "web-1", "Port": 80, "Tags": ["v1"], "Check": {"TTL": "30s"}}
        assert (await http.put(reg, params=ns, json=body)).status_code == 200
        conflict = await http.put(reg, params=ns, json={"Name": "api", "ID": "web-1"})
        assert error(conflict) == (409, "instance_exists")
        [entry] = (await http.get("/v1/health/service/web", params=ns)).json()
        assert entry["Service"]["ID"] == "web-1" and entry["Node"]["Node"] == "n1"
        assert [(c["CheckID"], c["Status"]) for c in entry["Checks"]] == [("service:web-1", "critical")]
        assert (await http.put("/v1/agent/check/warn/service:web-1", params={**ns, "note": "slow"})).status_code == 200
        [check] = (await http.get("/v1/health/service/web", params=ns)).json()[0]["Checks"]
        assert (check["Status"], check["Output"]) == ("warning", "slow")
        assert (await http.get("/v1/health/service/web", params={**ns, "passing": ""})).json() == []
        tagged = await http.get("/v1/catalog/service/web", params=[("ns", "ev"), ("tag", "v2")])
        assert tagged.json() == []

    run(tmp_path, scenario)


def test_an_eventual_retry_under_its_idempotency_key_writes_nothing(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        first = {"Idempotency-Key": "write-1"}
        assert (await http.put("/v1/kv/ev/retry", content=b"v1", headers=first)).json() is True
        assert (await http.put("/v1/kv/ev/retry", content=b"v2")).json() is True
        # the first write's late retry: the node holds it already, so it changes nothing
        assert (await http.put("/v1/kv/ev/retry", content=b"v1", headers=first)).json() is True
        [entry] = (await http.get("/v1/kv/ev/retry")).json()
        assert base64.b64decode(entry["Value"]) == b"v2"
        bad = await http.put("/v1/kv/ev/retry", content=b"x", headers={"Idempotency-Key": "k" * 200})
        assert error(bad) == (400, "invalid_argument")

    run(tmp_path, scenario)

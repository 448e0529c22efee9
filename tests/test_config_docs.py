"""Config documents (``GET /v1/config/{ns}/{prefix}``) on a real one-node group with
real storage, through the ASGI app: JSON and YAML round trips in a strong and an
eventual namespace, ETag and 304, blocking fetches that wake on a change, and
every way a set of keys fails to make one document answered with a clear 4xx.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import yaml

from configsvc.client import AsyncClient
from configsvc.http.app import build_app
from configsvc.http.config_docs import DocumentError, build_document
from configsvc.node import Node
from tests.test_http_api import error, run

KEYS = {"a/b/c": "1", "a/b/d": "true", "a/e": "x: y", "a/f": "é", "ab/z": "outside", "z": "9"}
DOC = {"b": {"c": "1", "d": "true"}, "e": "x: y", "f": "é"}


async def fill(http: httpx.AsyncClient, ns: str, keys: dict[str, str]) -> None:
    for key, value in keys.items():
        assert (await http.put(f"/v1/kv/{ns}/{key}", content=value.encode())).status_code == 200


@pytest.mark.parametrize("ns", ["app", "ev"])
def test_json_and_yaml_round_trip_the_values_stored(tmp_path: Path, ns: str) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await fill(http, ns, KEYS)
        as_json = await http.get(f"/v1/config/{ns}/a")
        assert as_json.headers["content-type"].startswith("application/json")
        assert json.loads(as_json.text) == DOC
        as_yaml = await http.get(f"/v1/config/{ns}/a/", params={"format": "yaml"})
        assert as_yaml.headers["content-type"].startswith("application/yaml")
        assert yaml.safe_load(as_yaml.text) == DOC  # "1" and "true" stay strings
        whole = json.loads((await http.get(f"/v1/config/{ns}")).text)
        assert whole == {"a": DOC, "ab": {"z": "outside"}, "z": "9"}
        assert json.loads((await http.get(f"/v1/config/{ns}/a/b/c")).text) == "1"
        assert json.loads((await http.get(f"/v1/config/{ns}/nothing")).text) == {}
        assert as_json.headers["ETag"] != as_yaml.headers["ETag"]

    run(tmp_path, scenario)


@pytest.mark.parametrize("ns", ["app", "ev"])
def test_an_unchanged_etag_answers_304_and_a_change_a_new_document(tmp_path: Path, ns: str) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await fill(http, ns, {"s/k": "1"})
        first = await http.get(f"/v1/config/{ns}/s")
        etag = first.headers["ETag"]
        same = await http.get(f"/v1/config/{ns}/s", headers={"If-None-Match": etag})
        assert (same.status_code, same.content, same.headers["ETag"]) == (304, b"", etag)
        star = await http.get(f"/v1/config/{ns}/s", headers={"If-None-Match": "*"})
        assert star.status_code == 304
        await fill(http, ns, {"t/k": "other folder"})
        assert (await http.get(f"/v1/config/{ns}/s", headers={"If-None-Match": etag})
                ).status_code == 304
        await fill(http, ns, {"s/k": "2"})
        changed = await http.get(f"/v1/config/{ns}/s", headers={"If-None-Match": etag})
        assert changed.status_code == 200 and json.loads(changed.text) == {"k": "2"}
        assert changed.headers["ETag"] != etag

    run(tmp_path, scenario)


@pytest.mark.parametrize("ns", ["app", "ev"])
def test_a_blocking_fetch_waits_and_wakes_on_a_change(tmp_path: Path, ns: str) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await fill(http, ns, {"w/k": "1"})
        first = await http.get(f"/v1/config/{ns}/w")
        index, etag = first.headers["X-Configsvc-Index"], first.headers["ETag"]
        params = {"index": index, "wait": "0.3"}
        loop = asyncio.get_running_loop()
        started = loop.time()
        idle = await http.get(f"/v1/config/{ns}/w", params=params, headers={"If-None-Match": etag})
        assert idle.status_code == 304 and loop.time() - started >= 0.25  # waited, then 304
        blocked = asyncio.create_task(http.get(f"/v1/config/{ns}/w",
                                               params={"index": index, "wait": "20"}))
        await asyncio.sleep(0.2)  # let it block (what follows must wake it; it is not a wait)
        assert not blocked.done()
        await fill(http, ns, {"w/k": "2"})
        woke = await asyncio.wait_for(blocked, 10)
        assert woke.status_code == 200 and json.loads(woke.text) == {"k": "2"}
        assert loop.time() - started < 10

    run(tmp_path, scenario)


def test_the_async_client_fetches_and_watches_documents(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await fill(http, "app", {"svc/db/url": "postgres://x", "svc/db/pool": "5"})
        transport = httpx.ASGITransport(app=build_app(node))
        async with AsyncClient("http://n1", transport=transport) as client:
            doc = await client.config_get("app", "svc", format="yaml")
            assert doc is not None and doc.data == {"db": {"pool": "5", "url": "postgres://x"}}
            assert await client.config_get("app", "svc", "yaml", etag=doc.etag) is None
            watch = client.config_watch("app", "svc", wait=20)
            assert (await anext(watch)).data == doc.data
            nxt = asyncio.create_task(anext(watch))
            await asyncio.sleep(0.2)  # let it block (the write below must wake it)
            await fill(http, "app", {"svc/db/pool": "6"})
            assert (await asyncio.wait_for(nxt, 10)).data["db"]["pool"] == "6"
            await watch.aclose()

    run(tmp_path, scenario)


def test_keys_that_make_no_single_document_are_a_clear_4xx(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await fill(http, "app", {"c/a": "1", "c/a/b": "2", "ok/k": "v"})
        r = await http.get("/v1/config/app/c")
        assert error(r) == (409, "document_conflict")
        assert r.json()["error"]["keys"] == ["c/a", "c/a/b"]
        assert (await http.put("/v1/kv/app/u/k", content=b"\xff\xfe")).status_code == 200
        r = await http.get("/v1/config/app/u")
        assert error(r) == (422, "not_utf8") and r.json()["error"]["keys"] == ["u/k"]
        for blind in ("a", "b"):
            await http.put("/v1/kv/ev/s/k", content=blind.encode(), params={"blind": "true"})
        r = await http.get("/v1/config/ev/s")
        assert error(r) == (409, "concurrent_values") and r.json()["error"]["keys"] == ["s/k"]
        for path, params, expected in [
            ("/v1/config/app/ok", {"format": "xml"}, (400, "invalid_argument")),
            ("/v1/config/app/ok", {"index": "abc"}, (400, "invalid_argument")),
            ("/v1/config/app/ok", {"index": "1", "wait": "soon"}, (400, "invalid_argument")),
            ("/v1/config/ev/ok", {"wait": "soon", "index": "x"}, (400, "invalid_argument")),
            ("/v1/config/nope/ok", {}, (404, "namespace_not_found")),
        ]:
            assert error(await http.get(path, params=params)) == expected, (path, params)

    run(tmp_path, scenario)


def test_the_document_rules_on_their_own() -> None:
    items = [(b"p/a/b", [b"1"]), (b"p/a/", [b""]), (b"p/c/", [b""]), (b"pq", [b"x"])]
    assert build_document("p/", items) == {"a": {"b": "1"}, "c": {}}
    for bad, code in [
        ([(b"p", [b"1"]), (b"p/a", [b"2"])], "document_conflict"),  # the prefix itself too
        ([(b"p/a", [b"1"]), (b"p/a/", [b""])], "document_conflict"),  # a leaf and a folder
        ([(b"p/a", [b"1", b"2"])], "concurrent_values"),
        ([(b"p/\xff", [b"1"])], "not_utf8"),
    ]:
        with pytest.raises(DocumentError) as info:
            build_document("p", bad)
        assert info.value.code == code
    assert build_document("p", [(b"q/\xff", [b"\xff"])]) == {}  # outside: not judged

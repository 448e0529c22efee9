"""Schemathesis against the OpenAPI description a real node serves (``/v1/openapi.json``).

One node (the shared ``single_node`` fixture: real storage, real Paxos group
of one) behind a real uvicorn server on a loopback port, in a thread of its
own. Schemathesis loads the description at import (its lazy, fixture-loaded
schemas break on pytest 9: ``request.node._nodeid``), and
``test_the_node_serves_this_description`` checks the node serves exactly it. For
every operation it sends requests the description calls valid and requests it calls
invalid (wrong types, values out of range, bodies of the wrong shape). Each
answer must hold to the contract (``configsvc.http.errors``):

- never a 5xx: the node is healthy, so a 5xx can only be the client's input;
- its status, content type and body are ones the description declares;
- a request the description calls invalid is a 4xx;
- a 4xx changed nothing: no key, namespace or instance, in either store.

A short, seeded run is part of ``make test``; ``make fuzz`` runs the same test
longer, from other seeds (docs/simulation.md, "Fuzzing").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from configsvc.http.app import build_app
from configsvc.http.openapi import OPENAPI
from configsvc.node import Node
from eventual.dots import KV_SPACE
from tests.fuzz_runtime import SCALE, SEED
from tests.test_http_api import single_node, single_service

EXAMPLES = 25 * SCALE
#: the fuzzed node runs with ACLs on; every request presents this management token
ROOT = "fuzz-bootstrap-token-0123"
ACL = {"enabled": True, "bootstrap_token": ROOT}
#: a token expiring after this (ms since the epoch) cannot expire during the run
LASTING_MS = int(time.time() * 1000) + 86_400_000
#: a blocking read waits at most this long here (the generated ``wait`` is kept if invalid)
SHORT_WAIT = "0.05"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class Server:
    url: str
    node: Node
    loop: asyncio.AbstractEventLoop
    #: kept-alive connections (a new one per request costs more than most requests)
    http: httpx.Client
    session: requests.Session

    def call(self, fn: Any) -> Any:
        """Run ``fn()`` on the server's loop (the node's state belongs to it)."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


@contextlib.contextmanager
def served(root: Path, build: Callable[[Node], Any] = build_app) -> Iterator[Server]:
    """``single_node`` behind uvicorn (its ``build(node)`` app: the native API by
    default), in a thread with its own event loop."""
    ready: threading.Event = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        async with single_service(root, acl=ACL) as (service, _):
            node = service.node
            # The background writers besides the requests: instance expiry and the HTTP
            # checks of registered instances. Paused, "a 4xx changed nothing" is exact.
            node.instance_expiry_grace = lambda: float("inf")  # type: ignore[method-assign]
            assert service.health_checks is not None
            await service.health_checks.close()
            api = node.me.api_port
            config = uvicorn.Config(build(node), host="127.0.0.1", port=api,
                                    log_level="warning", lifespan="off")
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started:
                assert not task.done(), "uvicorn did not start"
                await asyncio.sleep(0.01)  # polling an in-process condition; the test bounds it
            stop = asyncio.Event()
            url = f"http://127.0.0.1:{api}"
            session = requests.Session()
            session.headers["X-Consul-Token"] = ROOT  # every request through the ACL check
            box.update(server=Server(url, node, asyncio.get_running_loop(),
                                     httpx.Client(base_url=url, timeout=15, headers=dict(session.headers)),
                                     session), stop=stop)
            ready.set()
            await stop.wait()
            server.should_exit = True
            await task

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="fuzz-server", daemon=True)
    thread.start()
    assert ready.wait(30), "the node did not start"
    server: Server = box["server"]
    try:
        with server.http, server.session:
            yield server
    finally:
        server.loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(tmp_path_factory.mktemp("fuzz-api")) as s:
        yield s


def _schema() -> schemathesis.BaseSchema:
    """The description the node serves (``test_the_node_serves_this_description`` checks
    it is the same), loaded at import: schemathesis makes one test per operation."""
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True,
                       "database": "none"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True},
                   "fuzzing": {"enabled": True}, "stateful": {"enabled": False}},
        # Not positive_data_acceptance: valid shapes still meet 404s, 409s and the node's
        # size limits, which no description can foresee.
        "checks": {
            "enabled": False,
            **{name: {"enabled": True} for name in (
                "not_a_server_error", "status_code_conformance", "content_type_conformance",
                "response_schema_conformance", "unsupported_method")},
            "negative_data_rejection": {"enabled": True, "expected-statuses": [
                400, 404, 405, 409, 412, 413, 415, 422]},
        },
    })
    loaded = schemathesis.openapi.from_dict(json.loads(json.dumps(OPENAPI)), config=config)

    @loaded.hook
    def flatmap_path_parameters(ctx: Any, path: dict[str, Any] | None) -> Any:
        """Fuzzing: two calls in three to a namespace that exists. (At generation: a case
        changed afterwards is judged again, and schemathesis's two regex engines can
        disagree about generated path text.)"""
        if not path or not isinstance(path.get("ns"), str) or not _NAME.fullmatch(path["ns"]):
            return st.just(path)
        return st.sampled_from(["app", "ev", path["ns"]]).map(lambda ns: {**path, "ns": ns})

    return loaded


schema = _schema()


def test_the_node_serves_this_description(server: Server) -> None:
    served = server.http.get("/v1/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(OPENAPI))


def _fingerprint(node: Node) -> tuple[object, ...]:
    """What a request could change: the strong state (keys, namespaces, instances:
    not the applied index or the session clock, which move by themselves) and the
    eventual keys (not its instances: the eventual core itself removes one that stayed
    critical past its ``deregister_after``, and the fuzzer registers such instances)."""
    state = node.strong.sm.snapshot_state()
    store = node.eventual.replica.store
    kv = tuple(sorted((key, tuple(sorted(sibs))) for key, sibs in store.entries.items()
                      if key[1] == KV_SPACE and sibs))
    # Tokens that may expire during the run are left out: the leader's periodic
    # ExpireSessions drops them by itself, whatever request is in flight.
    lasting = tuple(t for t in state.acl.tokens if not t.expiration_ms or t.expiration_ms > LASTING_MS)
    return state.revision, state.namespaces, state.services, state.acl.policies, lasting, kv


#: the namespaces calls go to: ``single_node``'s two, and "0", the name the coverage
#: phase uses (else nearly every call is a 404 before any check of the rest)
KINDS = {"app": "strong", "ev": "eventual", "0": "strong"}


def _restore_namespaces(server: Server) -> None:
    present = server.call(lambda: {i.name for i in server.node.strong.sm.namespaces()})
    for name in sorted(set(KINDS) - present):
        created = server.http.post("/v1/namespaces", json={"name": name, "consistency": KINDS[name]})
        assert created.status_code == 201, created.text


def _known_query(case: schemathesis.Case) -> None:
    """Drop query parameters the operation does not declare: the native API ignores
    them (the Consul face refuses them: tests/test_fuzz_consul.py)."""
    if isinstance(case.query, dict):
        declared = {p.name for p in case.operation.query}
        if set(case.query) - declared:
            case.query = {k: v for k, v in case.query.items() if k in declared}


def _short_waits(case: schemathesis.Case) -> None:
    """A blocking read must not hold the run: a valid ``wait`` becomes short. (Repeated,
    the server reads the last one.)"""
    query = case.query if isinstance(case.query, dict) else None
    if query is None or "index" not in query:
        return
    wait = query.get("wait")
    if isinstance(wait, list):
        wait = wait[-1] if wait else None
    try:
        valid = wait is None or float(wait) >= 0
    except (TypeError, ValueError):
        valid = False
    if valid:
        case.query = {**query, "wait": SHORT_WAIT}


@schema.parametrize()
@settings(deadline=None, database=None, max_examples=EXAMPLES,
          suppress_health_check=list(HealthCheck))
def test_the_served_description_holds(case: schemathesis.Case, server: Server) -> None:
    _restore_namespaces(server)
    _known_query(case)
    _short_waits(case)
    before = server.call(lambda: _fingerprint(server.node))
    response = case.call(base_url=server.url, session=server.session, timeout=15)
    case.validate_response(response)
    if 400 <= response.status_code < 500:
        after = server.call(lambda: _fingerprint(server.node))
        assert after == before, (
            f"{case.method} {case.formatted_path} answered {response.status_code} "
            f"{response.text[:200]} but changed the state")


def test_what_the_fuzzer_found_is_a_clear_4xx_that_changes_nothing(tmp_path: Path) -> None:
    """Each of these was accepted (200, often doing something else than asked) or
    answered without what RFC 9110 requires, until the fuzzer found it."""
    async def scenario() -> None:
        async with single_node(tmp_path) as (node, http):
            await http.put("/v1/kv/app/dir/a", content=b"1")
            await http.put("/v1/kv/ev/k", content=b"1")
            before = _fingerprint(node)
            cases = [
                # a negative or non-finite wait, a revision beyond 64 bits: no silent clamping
                (http.get("/v1/kv/app/dir/a", params={"wait": "-5"}), 400),
                (http.get("/v1/kv/app", params={"wait": "nan"}), 400),
                (http.get("/v1/kv/ev/k", params={"wait": "-1"}), 400),
                (http.get("/v1/kv/app/dir/a", params={"index": str(2**64)}), 400),
                # an eventual read's index is an earlier answer's digest: a revision never
                # matches, so a watch loop would spin
                (http.get("/v1/kv/ev/k", params={"index": "42"}), 400),
                (http.get("/v1/kv/ev", params={"consistency": "maybe"}), 400),
                (http.get("/v1/kv/ev", params={"limit": "5"}), 400),
                # a misspelt field must not create a strong namespace
                (http.post("/v1/namespaces", json={"name": "x", "consistancy": "eventual"}), 400),
                # one store's transaction sent to the other kind committed an empty one
                (http.post("/v1/txn/app", json={"ops": [{"op": "delete_prefix", "prefix": ""}]}), 400),
                (http.post("/v1/txn/app", json={"failure": {}}), 400),
                (http.post("/v1/txn/ev", json={"success": [{"op": "delete", "key": "k"}]}), 400),
                (http.post("/v1/txn/ev", json={"ops": {}}), 400),
                # eventual keys have no cas, flags or recurse: each was ignored
                (http.put("/v1/kv/ev/k", content=b"2", params={"cas": "1"}), 400),
                (http.put("/v1/kv/ev/k", content=b"2", params={"flags": str(2**64)}), 400),
                (http.delete("/v1/kv/ev/k", params={"cas": "3"}), 400),
                (http.delete("/v1/kv/ev/k", params={"recurse": "true"}), 400),
                # a mistyped recurse deleted one key; recurse with cas dropped the cas
                (http.delete("/v1/kv/app/dir", params={"recurse": "yes"}), 400),
                (http.delete("/v1/kv/app/dir", params={"recurse": "true", "cas": "1"}), 400),
                (http.put("/v1/kv/app/dir/a", content=b"2", params={"blind": "true"}), 400),
                # a sequence number without a client id: no at-most-once, silently
                (http.put("/v1/kv/app/dir/a", content=b"2", headers={"X-Client-Seq": "1"}), 400),
            ]
            for call, status in cases:
                response = await call
                assert response.status_code == status, (response.request.url, response.text)
                assert response.json()["error"]["code"] == "invalid_argument", response.text
            assert _fingerprint(node) == before
            trace = await http.request("TRACE", "/v1/namespaces")
            assert trace.status_code == 405
            assert trace.headers["Allow"] == "GET, HEAD, POST"

    asyncio.run(scenario())

"""Request limits (docs/limits.md): pure units, then a real ``configsvc serve`` process.

The process runs with small limits so each one is reached in a few requests.
Every test names its own token (the limits count per token the node knows:
the node runs with ACLs on, anonymous requests allowed, and the fixture
creates each token), so the tests do not share buckets. Over-limit requests must answer the documented 4xx and
change nothing; slow clients must not keep a normal client from being served.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from configsvc.config import LimitsConfig
from configsvc.http.errors import ApiError
from configsvc.http.limits import RequestLimits, check_txn_size, client_key
from configsvc.http.token_bucket import Buckets, TokenBucket
from strong.ops import Put
from tests.cluster import LocalCluster, wait_for

# ---------------------------------------------------------------- token buckets (pure)


def test_a_bucket_admits_its_burst_then_says_exactly_how_long_to_wait() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.take(100.0)
    assert wait == pytest.approx(0.5)
    assert bucket.take(100.0) == pytest.approx(0.5)  # a refusal takes nothing
    assert bucket.take(100.0 + wait) == 0.0  # exactly then, one token is back
    assert bucket.take(100.0 + wait) > 0


def test_a_bucket_never_holds_more_than_its_burst_and_a_clock_step_back_adds_nothing() -> None:
    bucket = TokenBucket.full(rate=10.0, burst=2, now=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.take(-50.0) > 0  # time went backwards: no tokens
    assert [bucket.take(1000.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert bucket.tokens >= 0


def test_admissions_over_any_interval_are_bounded_by_burst_plus_rate_times_length() -> None:
    rate, burst = 5.0, 4
    bucket = TokenBucket.full(rate, burst, 0.0)
    admitted = [t / 100 for t in range(1000) if bucket.take(t / 100) == 0.0]  # 10 s, 100 tries/s
    for i, start in enumerate(admitted):
        for end in admitted[i:]:
            assert admitted.index(end) - i + 1 <= burst + rate * (end - start) + 1e-9
    assert len(admitted) == pytest.approx(burst + rate * 9.99, abs=1)


def test_buckets_are_per_client_and_bounded_in_number() -> None:
    buckets = Buckets(rate=1.0, burst=1, max_clients=3)
    assert buckets.take("a", 0.0) == 0.0
    assert buckets.take("a", 0.0) > 0  # a's bucket is empty ...
    assert buckets.take("b", 0.0) == 0.0  # ... b's is its own
    for c in "cdefg":
        buckets.take(c, 0.0)
    assert len(buckets) == 3
    with pytest.raises(ValueError):
        Buckets(rate=0.0, burst=1)


def test_the_client_is_its_token_from_either_header_else_its_address() -> None:
    def scope(*headers: tuple[str, str]) -> dict[str, object]:
        return {"type": "http", "client": ("10.0.0.7", 5000),
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}  # ASGI: lower case

    def known(secret: str) -> bool:
        return secret == "s3cret"

    token = client_key(scope(("X-Consul-Token", "s3cret")), known)
    assert token == client_key(scope(("Authorization", "Bearer s3cret")), known) != "ip:10.0.0.7"
    assert "s3cret" not in token  # hashed
    assert client_key(scope(), known) == "ip:10.0.0.7"
    # A secret the node does not know (or any, with ACLs off) counts against the
    # address: inventing secrets does not buy fresh buckets.
    assert client_key(scope(("X-Consul-Token", "invented")), known) == "ip:10.0.0.7"
    assert client_key(scope(("X-Consul-Token", "s3cret"))) == "ip:10.0.0.7"
    assert client_key(scope(("Authorization", "Basic abc")), known) == "ip:10.0.0.7"
    # ?token= is a token on the Consul face only.
    with_query = {**scope(), "query_string": b"token=s3cret"}
    assert client_key(with_query, known, consul=True) == token
    assert client_key(with_query, known) == "ip:10.0.0.7"


def test_transaction_size_checks_name_the_limit() -> None:
    limits = LimitsConfig(key_max_bytes=4, value_max_bytes=8, txn_max_ops=2)
    check_txn_size(limits, [Put("ns", b"k", b"v"), Put("ns", b"k2", b"v")])
    cases = [([Put("ns", b"k", b"v")] * 3, 413, "too_many_operations"),
             ([Put("ns", b"kkkkk", b"v")], 400, "key_too_long"),
             ([Put("ns", b"k", b"v" * 9)], 413, "value_too_large")]
    for ops, status, code in cases:
        with pytest.raises(ApiError) as info:
            check_txn_size(limits, ops)
        assert (info.value.status, info.value.code) == (status, code)


def test_the_middleware_refuses_past_the_bucket_and_admits_once_time_refilled_it() -> None:
    """``RequestLimits`` in-process with a fake clock: exact Retry-After, nothing run."""
    ran: list[str] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        ran.append("ran")
        return PlainTextResponse("ok")

    now = [0.0]
    limits = RequestLimits(LimitsConfig(rate_per_second=0.5, rate_burst=2), clock=lambda: now[0],
                           known=lambda secret: secret == "other")
    app = limits.wrap(Starlette(routes=[Route("/x", endpoint)]))

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            first = [await http.get("/x") for _ in range(3)]
            now[0] += 1.9
            early = await http.get("/x")
            now[0] += 0.1
            return [*first, early, await http.get("/x"),
                    await http.get("/x", headers={"X-Consul-Token": "other"}),
                    await http.get("/x", headers={"X-Consul-Token": "invented"})]

    answers = asyncio.run(run())
    # A known token has a bucket of its own; an invented one shares the address's.
    assert [r.status_code for r in answers] == [200, 200, 429, 429, 200, 200, 429]
    assert answers[2].headers["Retry-After"] == "2" and answers[2].json()["error"]["code"] == "rate_limited"
    assert answers[3].headers["Retry-After"] == "1"  # 0.1 s left, rounded up
    assert ran == ["ran"] * 4 and limits.refused == {"rate_limited": 3}


# ---------------------------------------------------------------- a real node

LIMITS = {
    "key_max_bytes": 64, "value_max_bytes": 1024, "body_max_bytes": 4096, "txn_max_ops": 4,
    "watchers_per_client": 2, "rate_per_second": 1.0, "rate_burst": 40,
    "connections_per_client": 8, "max_connections": 64,
    "header_timeout": 2.0, "body_timeout": 2.0, "keep_alive_timeout": 2.0,
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("limits"), nodes=1)
    config = yaml.safe_load(cluster.config_path.read_text())
    config["limits"] = LIMITS
    config["acl"] = {"enabled": True, "default_policy": "allow", "bootstrap_token": BOOTSTRAP}
    cluster.config_path.write_text(yaml.safe_dump(config))
    try:
        cluster.start("n1")  # alone it stays "degraded" (no failure to spare): wait for its leadership
        wait_for(cluster.leader, 60, "the node to lead")
        with httpx.Client(timeout=30.0, headers={"X-Consul-Token": BOOTSTRAP}) as admin:
            for name in TOKENS:  # the limits count per token only for tokens the node knows
                wait_for(lambda name=name: admin.post(  # 409 until the group reaches version 4
                    f"{cluster.url('n1')}/v1/acl/tokens",
                    json={"secret": name, "policies": []}).status_code == 201, 60,
                    f"token {name} created")
        yield cluster
    finally:
        cluster.stop_all()


BOOTSTRAP = "limits-bootstrap-token"
TOKENS = ("reader", "sizes", "rate-test", "someone-else", "watch-test", "watch-other", "slow-body")


def _client(token: str) -> httpx.Client:
    return httpx.Client(timeout=10.0, headers={"X-Consul-Token": token})


def _absent(node: LocalCluster, *keys: str) -> bool:
    with _client("reader") as http:
        answers = [http.get(f"{node.url('n1')}/v1/kv/app/{k}") for k in keys]
    return all(r.status_code == 404 and r.json()["error"]["code"] == "key_not_found" for r in answers)


@pytest.mark.slow
def test_oversize_keys_values_bodies_and_transactions_are_refused_and_change_nothing(
    node: LocalCluster,
) -> None:
    api, consul = node.url("n1"), node.consul_url("n1")
    big = "x" * 1025
    with _client("sizes") as http:
        r = http.put(f"{api}/v1/kv/app/{'k' * 65}", content="v")
        assert (r.status_code, r.json()["error"]["code"]) == (400, "key_too_long")
        r = http.put(f"{api}/v1/kv/app/v-native", content=big)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "value_too_large")
        assert "1024 bytes" in r.json()["error"]["message"]
        puts = [{"op": "put", "key": f"t{i}", "value": base64.b64encode(b"v").decode()} for i in range(5)]
        r = http.post(f"{api}/v1/txn/app", json={"success": puts})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_operations")
        big_put = {"op": "put", "key": "t9", "value": base64.b64encode(big.encode()).decode()}
        r = http.post(f"{api}/v1/txn/app", json={"success": [big_put]})
        assert (r.status_code, r.json()["error"]["code"]) == (413, "value_too_large")
        r = http.post(f"{api}/v1/txn/app", content=json.dumps({"success": puts[:1], "pad": "p" * 5000}))
        assert (r.status_code, r.json()["error"]["code"]) == (413, "body_too_large")
        # The Consul face, same limits.
        r = http.put(f"{consul}/v1/kv/app/{'k' * 65}", content="v")
        assert r.status_code == 400
        r = http.put(f"{consul}/v1/kv/app/v-consul", content=big)
        assert r.status_code == 413
        ops = [{"KV": {"Verb": "set", "Key": f"app/c{i}", "Value": "dg=="}} for i in range(5)]
        r = http.put(f"{consul}/v1/txn", json=ops)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_operations")
    assert _absent(node, "v-native", "v-consul", "t9", *(f"t{i}" for i in range(5)), *(f"c{i}" for i in range(5)))


@pytest.mark.slow
def test_the_rate_limit_answers_429_with_retry_after_then_admits_again(node: LocalCluster) -> None:
    api, consul = node.url("n1"), node.consul_url("n1")
    refused = None
    with httpx.Client(timeout=10.0, headers={"Authorization": "Bearer rate-test"}) as http:
        for i in range(2000):
            r = http.put(f"{api}/v1/kv/app/rate{i}", content="v")
            if r.status_code == 429:
                refused = i
                break
            assert r.status_code == 200, r.text
        assert refused is not None, "2000 requests at full speed were never limited"
        assert r.json()["error"]["code"] == "rate_limited"
        retry_after = int(r.headers["Retry-After"])
        assert retry_after >= 1
        # The same token on the other face and header shares the bucket (a separate
        # one would admit a whole burst of 40) ...
        with _client("rate-test") as other:
            admitted = 0
            while other.get(f"{consul}/v1/kv/app/rate0").status_code != 429:
                admitted += 1
                assert admitted <= 5, "the Consul face does not share the token's bucket"
        # ... another client does not.
        with _client("someone-else") as other:
            assert other.get(f"{api}/v1/kv/app/rate0").status_code == 200
        # Admitted again once the bucket refilled; the refused write was not done.
        wait_for(lambda: http.get(f"{api}/v1/kv/app/rate0").status_code == 200, retry_after + 30,
                 "the bucket to refill")
    assert _absent(node, f"rate{refused}")


@pytest.mark.slow
def test_a_client_over_its_watchers_gets_429_and_a_freed_slot_is_reused(node: LocalCluster) -> None:
    api = node.url("n1")
    with _client("watch-test") as http:
        revision = http.get(f"{api}/v1/kv/app", params={"prefix": "watched"}).json()["revision"]
        watch = f"{api}/v1/kv/app?prefix=watched&index={revision}&wait=60"
        answers: list[int] = []

        def block() -> None:  # a blocking read, retried while a probe holds its slot
            with _client("watch-test") as own:
                while (status := own.get(watch).status_code) == 429:
                    pass
                answers.append(status)

        threads = [threading.Thread(target=block) for _ in range(2)]
        for t in threads:
            t.start()
        probe = watch.replace("wait=60", "wait=0")  # admitted, it answers at once
        third = wait_for(lambda: (r := http.get(probe)).status_code == 429 and r, 30,
                         "a third watcher refused")
        assert third.json()["error"]["code"] == "too_many_watchers"
        with _client("watch-other") as other:  # another client's watch is admitted
            assert other.get(f"{api}/v1/kv/app?prefix=watched&index=1&wait=0").status_code == 200
        assert http.put(f"{api}/v1/kv/app/watched", content="v").status_code == 200
        for t in threads:
            t.join(timeout=30)
        assert answers == [200, 200]
        assert http.get(watch, timeout=10.0).status_code == 200  # the slots are free again


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    sock.settimeout(30)
    return sock


def _closed_by_server(sock: socket.socket) -> bytes:
    """Read until the server closes the connection; what it sent (raises on the timeout)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.slow
def test_slowloris_connections_are_capped_and_closed_and_others_are_served(node: LocalCluster) -> None:
    port = node.api["n1"]
    n = 3 * LIMITS["connections_per_client"]  # type: ignore[operator]
    stop = threading.Event()
    slow = [_connect(port) for _ in range(n)]

    def drip(sock: socket.socket) -> None:  # headers one byte at a time, never finished
        for byte in b"GET /v1/cluster/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
            if stop.wait(0.2):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    drippers = [threading.Thread(target=drip, args=(s,), daemon=True) for s in slow[::2]]
    for t in drippers:
        t.start()
    try:
        # A normal client from another address is served within its deadline (10 s).
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10.0) as other:
            assert other.get(f"http://127.0.0.1:{port}/v1/cluster/health").status_code == 200
        # Every slow connection is closed by the node (a recv timeout of 30 s fails
        # the test): those over the cap at once with a 429, the others at the
        # header deadline. (A dripping socket over the cap may see its 429 lost to
        # the reset its next byte provokes: only the quiet ones are counted.)
        answers = [_closed_by_server(s) for s in slow]
        quiet_over_cap = answers[LIMITS["connections_per_client"]:][1::2]  # type: ignore[misc]
        assert all(a.startswith(b"HTTP/1.1 429") for a in quiet_over_cap), quiet_over_cap
        assert all(a == b"" or a.startswith(b"HTTP/1.1 429") for a in answers)
    finally:
        stop.set()
        for s in slow:
            s.close()
    # The node still serves the address that held the slow connections.
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/v1/cluster/health", timeout=5.0).status_code == 200,
             30, "the slow address served again")


@pytest.mark.slow
def test_a_body_slower_than_the_body_timeout_gets_408_and_writes_nothing(node: LocalCluster) -> None:
    port = node.api["n1"]
    sock = _connect(port)
    try:
        sock.sendall(b"PUT /v1/kv/app/slow-body HTTP/1.1\r\nHost: x\r\nX-Consul-Token: slow-body\r\n"
                     b"Content-Length: 100\r\n\r\nab")
        answer = _closed_by_server(sock)  # the node answers and closes; we never send the rest
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request_timeout" in answer
    assert _absent(node, "slow-body")


def test_a_node_that_does_not_serve_knows_only_the_bootstrap_token() -> None:
    """The rate limiter asks ``known_secret`` before anything else: a node whose
    store was found corrupt (no strong driver) must answer, not raise (a 500)."""
    from types import SimpleNamespace

    from configsvc.http.acl import known_secret

    acl = SimpleNamespace(enabled=True, bootstrap_token="bootstrap-token-0123", default_policy="deny")
    node = SimpleNamespace(config=SimpleNamespace(acl=acl), corrupt="refusing to serve: crc", _strong=None)
    assert known_secret(node, "bootstrap-token-0123") is True  # type: ignore[arg-type]
    assert known_secret(node, "anything-else") is False  # type: ignore[arg-type]

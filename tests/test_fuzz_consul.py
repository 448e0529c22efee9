"""The Consul face under hostile input, on a real node behind a real server.

Malformed base64 values, negative, huge and non-decimal indexes, negative
and garbage waits, parameters no endpoint takes and methods no route has:
each is a 4xx with a JSON error naming the problem (``configsvc.http.consul.params``
rules 1-4, Consul's own answers where it has one), never a 5xx, and nothing
changes. Hypothesis draws query strings and transaction bodies from these
shapes; the table below pins the cases the issue names.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsvc.http.consul import build_consul_app
from configsvc.http.consul.params import parse_duration
from tests.fuzz_runtime import fuzz_settings
from tests.test_fuzz_api import Server, _fingerprint, served

FUZZ = fuzz_settings(100)


@pytest.fixture(scope="module")
def consul(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with served(tmp_path_factory.mktemp("fuzz-consul"), build_consul_app) as server:
        for key in ("app/cfg/a", "ev/cfg/a"):
            assert server.http.put(f"/v1/kv/{key}", content=b"1").json() is True
        yield server


def _unchanged(server: Server, before: object) -> None:
    assert server.call(lambda: _fingerprint(server.node)) == before


def _is_error(response: httpx.Response) -> bool:
    """A 4xx with the contract's body: ``{"error": {"code", "message"}}``."""
    if not 400 <= response.status_code < 500:
        return False
    error = response.json()["error"]
    return isinstance(error["code"], str) and isinstance(error["message"], str)


# ---------------------------------------------------------------- the named cases

B64 = base64.b64encode(b"v").decode()


@pytest.mark.parametrize(("method", "path", "params", "body", "status", "code"), [
    ("GET", "/v1/kv/app/cfg/a", {"index": "-1"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"index": "99999999999999999999"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/ev/cfg/a", {"index": str(2**64)}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"index": "0x10"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"index": "１２"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"index": "1", "wait": "-5s"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/ev/cfg/a", {"index": "1", "wait": "abc"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"wait": "-5s"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"wait": "10"}, None, 400, "invalid_argument"),
    ("GET", "/v1/catalog/services", {"index": "-1"}, None, 400, "invalid_argument"),
    ("GET", "/v1/health/service/web", {"wait": "nan"}, None, 400, "invalid_argument"),
    ("GET", "/v1/kv/app/cfg/a", {"frobnicate": "1"}, None, 400, "unsupported_parameter"),
    ("GET", "/v1/status/leader", {"index": "1"}, None, 400, "unsupported_parameter"),
    ("PUT", "/v1/kv/app/cfg/a", {"cas": "-1"}, b"2", 400, "invalid_argument"),
    ("PUT", "/v1/kv/app/cfg/a", {"flags": "99999999999999999999"}, b"2", 400, "invalid_argument"),
    ("DELETE", "/v1/kv/app/cfg/", {"recurse": "", "frobnicate": ""}, None, 400,
     "unsupported_parameter"),
    ("PUT", "/v1/txn", {}, [{"KV": {"Verb": "set", "Key": "app/cfg/a", "Value": "!!!"}}], 400,
     "invalid_argument"),
    ("PUT", "/v1/txn", {}, [{"KV": {"Verb": "set", "Key": "app/cfg/a", "Value": "dg"}}], 400,
     "invalid_argument"),  # no padding
    ("PUT", "/v1/txn", {}, [{"KV": {"Verb": "set", "Key": "ev/cfg/a", "Value": 7}}], 400,
     "invalid_argument"),
    ("PUT", "/v1/txn", {}, [{"KV": {"Verb": "set", "Key": "app/cfg/b", "Value": B64}},
                            {"KV": {"Verb": "set", "Key": "app/cfg/a", "Value": "d\n=="}}], 400,
     "invalid_argument"),  # the valid first op is not applied either
    ("PUT", "/v1/txn", {"index": "1"}, [], 400, "unsupported_parameter"),
    ("POST", "/v1/kv/app/cfg/a", {}, None, 405, "method_not_allowed"),
    ("DELETE", "/v1/status/leader", {}, None, 405, "method_not_allowed"),
    ("GET", "/v1/txn", {}, None, 405, "method_not_allowed"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_named_hostile_requests_are_a_clear_4xx_that_changes_nothing(
    consul: Server, method: str, path: str, params: dict[str, str], body: Any,
    status: int, code: str,
) -> None:
    before = consul.call(lambda: _fingerprint(consul.node))
    kwargs: dict[str, Any] = {"json": body} if isinstance(body, list) else {"content": body}
    r = consul.http.request(method, path, params=params, **kwargs)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    if status == 405:
        assert r.headers["Allow"], "RFC 9110: a 405 names the methods the path takes"
    _unchanged(consul, before)


# ---------------------------------------------------------------- drawn from the shapes

_indexes = st.one_of(
    st.sampled_from(["-1", "0", "1", "99999999999999999999", str(2**64), str(2**64 - 1), "abc",
                     "1.5", " 1", "+1", "1_000", "1e3", "", "１２", "0x10"]),
    st.text(max_size=12), st.integers(-(2**70), 2**70).map(str))
_waits = st.one_of(
    st.sampled_from(["-5s", "abc", "10", "-0s", "0", "1.5.5s", "nan", "infs", "999999999999h",
                     "1m-1s", ".s", "5S", "1µs", "1us1ms", "10ms", "", "1h1h1h1h1h"]),
    st.text(max_size=10))
_params = st.dictionaries(
    st.sampled_from(["index", "wait", "stale", "consistent", "dc", "recurse", "keys", "separator",
                     "raw", "tag", "passing", "token", "cached", "filter", "ns", "near"]),
    st.one_of(_indexes, _waits), max_size=5)
_reads = st.sampled_from(["/v1/kv/app/cfg/a", "/v1/kv/ev/cfg/a", "/v1/kv/app/cfg/",
                          "/v1/kv/ev/cfg/", "/v1/catalog/services", "/v1/catalog/service/web",
                          "/v1/health/service/web", "/v1/status/leader", "/v1/status/peers",
                          "/v1/agent/self", "/v1/kv/nope/x"])


def _blocks(params: dict[str, str]) -> bool:
    """Whether the read would wait (a valid nonzero index): then the wait must be short."""
    try:
        return int(params.get("index", "0")) > 0 and params.get("index", "").isascii()
    except ValueError:
        return False


@FUZZ
@given(_reads, _params)
def test_hostile_query_strings_never_fail_the_node(
    consul: Server, path: str, params: dict[str, str]
) -> None:
    if _blocks(params):
        try:
            valid_wait = parse_duration(params.get("wait", "5m").strip()) >= 0
        except ValueError:
            valid_wait = False
        if valid_wait:
            params = {**params, "wait": "10ms"}
    r = consul.http.get(path, params=params)
    assert r.status_code < 500, (path, params, r.text)
    assert r.status_code in (200, 404) or _is_error(r), (path, params, r.text)


_values = st.one_of(st.text(max_size=12), st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()),
                    st.integers(), st.none(), st.lists(st.integers(), max_size=2))
_kv_ops = st.fixed_dictionaries(
    {"Verb": st.sampled_from(["set", "cas", "get", "delete", "check-index", "get-tree", "lock", "x"]),
     "Key": st.sampled_from(["app/cfg/a", "ev/cfg/a", "app/cfg/b", "", "nope/k"])},
    optional={"Value": _values, "Index": _values, "Flags": _values, "Session": st.text(max_size=3)})


@FUZZ
@given(st.lists(st.one_of(_kv_ops.map(lambda kv: {"KV": kv}), st.dictionaries(st.text(max_size=4), _values)),
                max_size=4))
def test_hostile_transactions_are_all_or_nothing_and_never_a_500(
    consul: Server, ops: list[dict[str, Any]]
) -> None:
    before = consul.call(lambda: _fingerprint(consul.node))
    r = consul.http.put("/v1/txn", json=ops)
    assert r.status_code < 500, (ops, r.text)
    if r.status_code == 409:  # Consul: a failed check rolls the whole transaction back
        assert r.json()["Errors"], r.text
        _unchanged(consul, before)
    elif r.status_code != 200:
        assert _is_error(r), r.text
        _unchanged(consul, before)

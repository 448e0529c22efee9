"""The pieces of discovery that need no cluster: registrations and their limits,
HTTP-check specs, the check verdict, service summaries, and the client's watch
(over ``httpx.MockTransport``)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from configsvc.client import Client
from configsvc.discovery_types import (
    HttpCheck,
    Instance,
    Registration,
    implicit_ttl,
    service_summary,
)
from configsvc.http.health_checks import verdict


def reg(**body: Any) -> Registration:
    return Registration.from_json("web", "web-1", body, default_address="10.9.9.9")


def test_a_registration_reads_its_body_with_consul_defaults() -> None:
    r = reg(port=80, tags=["a", "b", "a"], meta={"z": "1", "a": "2"})
    assert (r.address, r.port, r.tags, r.meta) == ("10.9.9.9", 80, ("a", "b"), (("a", "2"), ("z", "1")))
    assert (r.ttl, r.deregister_after, r.http_check, r.status) == (None, None, None, "passing")
    assert reg(ttl=5).status == "critical"  # checked: critical until the first pass
    checked = reg(check={"http": "http://h/health", "interval": 2})
    assert checked.http_check == HttpCheck("http://h/health", 2.0, 2.0)
    assert (checked.status, checked.ttl, checked.effective_ttl) == ("critical", None, 8.0)
    assert reg(ttl=3, check={"http": "https://h"}).effective_ttl == 3.0
    again = Registration.from_json("web", "web-1", r.to_json(), default_address="elsewhere")
    assert again == r


@pytest.mark.parametrize("body", [
    {"port": -1}, {"port": 65536}, {"port": 1.5}, {"port": False}, {"tags": [""]}, {"tags": "abc"},
    {"meta": {"": "x"}}, {"meta": {"k": "v" * 513}}, {"ttl": 0}, {"ttl": float("inf")}, {"ttl": True},
    {"deregister_after": 0}, {"check": {"http": "http://h", "timeout": -1}}, {"check": {"http": None}},
    {"check": {"http": "http://h", "interval": 0.01}}, {"status": "PASSING"}, {"address": "a" * 257},
    {"surprise": 1},
])
def test_every_bad_field_is_refused_with_its_name(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as info:
        reg(**body)
    field = next(iter(body))
    assert field in str(info.value), info.value


@pytest.mark.parametrize("name", ["", "a/b", "x" * 257, "tab\there"])
def test_service_and_instance_names(name: str) -> None:
    with pytest.raises(ValueError):
        Registration(name, "i", "h")
    with pytest.raises(ValueError):
        Registration("s", name, "h")


def test_http_check_bytes_round_trip_and_unreadable_bytes_are_no_check() -> None:
    check = HttpCheck("http://h:1/x", 0.5, 0.25)
    assert HttpCheck.decode(check.encode()) == check
    assert json.loads(check.encode()) == {"http": "http://h:1/x", "interval": 0.5, "timeout": 0.25}
    for data in [b"", b"{", b"[]", b'{"http": "ftp://x", "interval": 1, "timeout": 1}']:
        assert HttpCheck.decode(data) is None
    assert implicit_ttl(check) == 1.75


def test_consul_verdict() -> None:
    assert [verdict(c) for c in (200, 204, 299, 429, 300, 404, 500, 503)] == [
        "passing", "passing", "passing", "warning", "critical", "critical", "critical", "critical"]


def _instance(service: str, iid: str, status: str, tags: tuple[str, ...]) -> Instance:
    return Instance(service, iid, "h", 1, tags, (), "n1", status, "", None, None, None)


def test_service_summary_unions_tags_and_counts_passing() -> None:
    summary = service_summary([
        _instance("web", "2", "critical", ("b",)), _instance("web", "1", "passing", ("a", "b")),
        _instance("db", "1", "warning", ()),
    ])
    assert list(summary) == ["db", "web"]
    assert (summary["web"].tags, summary["web"].instances, summary["web"].passing) == (["a", "b"], 2, 1)
    assert (summary["db"].instances, summary["db"].passing) == (1, 0)
    one = _instance("web", "1", "passing", ("a",))
    assert Instance.from_json(one.to_json()) == one


def test_watch_instances_yields_changes_only_and_starts_over_when_the_index_goes_back() -> None:
    answers = iter([
        (5, ["a"]), (6, ["a"]), (7, ["a", "b"]),  # a wake-up without a change is not yielded
        (3, ["a", "b"]),  # another node: its index means nothing here
        (4, ["b"]),
    ])
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        index, ids = next(answers)
        instances = [_instance("web", i, "passing", ()).to_json() for i in ids]
        return httpx.Response(200, json={"instances": instances, "index": index, "consistency": "local"})

    with Client("http://test", transport=httpx.MockTransport(handler)) as c:
        watch = c.watch_instances("ns", "web", passing=True, wait=5)
        seen = [[i["instance_id"] for i in next(watch)] for _ in range(3)]
    assert seen == [["a"], ["a", "b"], ["b"]]
    assert [a.get("index") for a in asked] == [None, "5", "6", "7", None]
    assert all(a["passing"] == "true" for a in asked)

"""Retries add nothing: idempotent writes in eventual namespaces (issue item 5).

A put or delete carries the client's idempotency key, the same on every retry
of one logical write. A replica that holds the write answers a retry with its
first dot and writes nothing; attempts that landed on different nodes before
either heard of the other are one write: every replica reads one sibling,
the same one, and a write that supersedes the read removes them all.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgpack
import pytest

from configsvc.client import AsyncClient, Client
from configsvc.node import Node
from configsvc.sim.eventual_net import Net
from eventual.codec import MalformedMessage, decode, encode, event_to_wire
from eventual.dots import Sibling
from eventual.messages import Deltas, Event, FullState
from eventual.recent_writes import RecentWrites
from eventual.requests import BadRequest, Delete, Get, Put, ReadResult, WriteResult
from tests.cluster import LocalCluster, wait_for
from tests.test_http_api import run


def put(net: Net, node: str, value: bytes, idem: str | None = "k-1",
        context: str | None = None) -> WriteResult:
    result = net.call(node, Put("cfg", "x", value, context, idem))
    assert isinstance(result, WriteResult), result
    return result


def read(net: Net, node: str) -> ReadResult:
    result = net.call(node, Get("cfg", "x"))
    assert isinstance(result, ReadResult), result
    return result


def test_a_retry_on_another_node_after_a_lost_answer_shows_one_sibling_after_convergence() -> None:
    net = Net(["a", "b", "c"])
    put(net, "a", b"old", idem=None)
    net.advance(0.5)
    net.isolate("a")
    # each attempt supersedes what its node has seen (as the HTTP API does)
    first = put(net, "a", b"new", context=read(net, "a").context)  # applied; answer lost
    retry = put(net, "b", b"new", context=read(net, "b").context)  # b never heard of it
    assert first.dot != retry.dot and not retry.replayed
    net.heal()
    net.advance(1.0)
    assert net.converged()
    shown = {n: [(s.dot, s.value) for s in read(net, n).siblings] for n in net.ids}
    assert shown["a"] == shown["b"] == shown["c"] == [(min(first.dot, retry.dot, key=lambda d: (
        net.replicas["a"].store.siblings(("cfg", "kv", "x"))[d].hlc, d)), b"new")]
    # both attempts are still in the store, hidden behind one; a write that
    # supersedes the read removes them all
    assert len(net.replicas["c"].store.siblings(("cfg", "kv", "x"))) == 2
    put(net, "c", b"next", idem="k-2", context=read(net, "c").context)
    net.advance(0.5)
    assert all([s.value for s in read(net, n).siblings] == [b"next"] for n in net.ids)
    assert len(net.replicas["a"].store.siblings(("cfg", "kv", "x"))) == 1


def test_without_a_key_the_same_retry_leaves_two_siblings() -> None:
    net = Net(["a", "b"])
    net.isolate("a")
    put(net, "a", b"new", idem=None)
    put(net, "b", b"new", idem=None)
    net.heal()
    net.advance(1.0)
    assert [s.value for s in read(net, "a").siblings] == [b"new", b"new"]


def test_a_retry_on_a_node_that_holds_the_write_is_replayed_and_writes_nothing() -> None:
    net = Net(["a", "b"])
    first = put(net, "a", b"v")
    net.advance(0.5)
    vv = dict(net.replicas["b"].vv)
    for node in ("a", "b"):
        again = put(net, node, b"v")
        assert (again.dot, again.replayed) == (first.dot, True)
    assert net.replicas["b"].vv == vv


def test_a_late_retry_of_a_superseded_write_does_not_undo_its_successor() -> None:
    net = Net(["a"])
    put(net, "a", b"first")
    put(net, "a", b"second", idem="k-2", context=read(net, "a").context)
    late = put(net, "a", b"first")  # the first attempt's answer was lost; retried late
    assert late.replayed
    assert [s.value for s in read(net, "a").siblings] == [b"second"]


def test_a_retried_delete_is_replayed() -> None:
    net = Net(["a"])
    put(net, "a", b"v", idem=None)
    gone = net.call("a", Delete("cfg", "x", None, "d-1"))
    put(net, "a", b"w", idem=None)
    again = net.call("a", Delete("cfg", "x", None, "d-1"))
    assert isinstance(gone, WriteResult) and isinstance(again, WriteResult)
    assert again.replayed and again.dot == gone.dot
    assert [s.value for s in read(net, "a").siblings] == [b"w"]  # the retry removed nothing


@pytest.mark.parametrize("idem", ["", "k" * 129])
def test_a_malformed_key_is_refused(idem: str) -> None:
    assert isinstance(Net(["a"]).call("a", Put("cfg", "x", b"v", None, idem)), BadRequest)


def test_the_key_travels_in_events_and_full_states_and_is_validated() -> None:
    event = Event(("a.1", 1), ("cfg", "kv", "x"), b"v", 5, (), (), "k-1")
    for msg in (Deltas("a.1", (("a.1", 1),), (event,)),
                FullState("a.1", (("a.1", 1),),
                          ((("cfg", "kv", "x"), ((("a.1", 1), Sibling(b"v", 5, "k-1")),)),),
                          5, False)):
        assert decode(encode(msg)) == msg
    old = Event(("a.1", 1), ("cfg", "kv", "x"), b"v", 5, (), ())
    assert len(event_to_wire(old)) == 6  # unset: the event of before
    for bad in ("", "k" * 129, 7, None):
        wire = ["E", "a.1", [["a.1", 1]], [[*event_to_wire(old), bad]]]
        with pytest.raises(MalformedMessage):
            decode(msgpack.packb(wire, use_bin_type=True))


def test_http_put_and_delete_take_an_idempotency_key(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        headers = {"Idempotency-Key": "put-1"}
        first = await http.put("/v1/kv/ev/k", content=b"v", headers=headers)
        again = await http.put("/v1/kv/ev/k", content=b"v", headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.json() == {"dot": first.json()["dot"], "replayed": True}
        assert len((await http.get("/v1/kv/ev/k")).json()["siblings"]) == 1
        for bad in ("", "x" * 129, "tab\there"):
            r = await http.put("/v1/kv/ev/k", content=b"v", headers={"Idempotency-Key": bad})
            assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_argument")
        gone = await http.delete("/v1/kv/ev/k", headers={"Idempotency-Key": "del-1"})
        assert gone.json()["replayed"] is False
        assert (await http.delete("/v1/kv/ev/k", headers={"Idempotency-Key": "del-1"})).json()[
            "replayed"] is True

    run(tmp_path, scenario)


class LoseFirstPutAnswer(httpx.BaseTransport):
    """Sends every request; the first PUT's answer is lost on the way back."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lost: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "PUT" and not self.lost:
            response.read()
            response.close()
            self.lost.append(str(request.url))
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def test_the_client_retries_on_another_node_under_the_same_key(tmp_path: Path) -> None:
    token = "t" * 20
    c = LocalCluster(tmp_path, nodes=3, admin_token=token)
    try:
        c.start_all()
        auth = {"Authorization": f"Bearer {token}"}
        a, b = c.ids[0], c.ids[1]

        def faults(on: bool) -> None:
            for x in c.ids:
                for y in c.ids:
                    if x != y and a in (x, y):
                        if on:
                            c.http.put(c.url(x) + f"/v1/admin/faults/{y}", headers=auth,
                                       json={"drop_out": True, "drop_in": True}
                                       ).raise_for_status()
                        else:
                            c.http.delete(c.url(x) + "/v1/admin/faults",
                                          headers=auth).raise_for_status()

        faults(True)  # a hears nobody: b cannot know of the first attempt
        transport = LoseFirstPutAnswer()
        with Client([c.url(a), c.url(b)], transport=transport) as client:
            client.put("disc", "retried", "once")
        assert transport.lost and transport.lost[0].startswith(c.url(a))
        # the control: two writes without a key, one on each side
        c.http.put(c.url(a) + "/v1/kv/disc/control", content=b"twice").raise_for_status()
        c.http.put(c.url(b) + "/v1/kv/disc/control", content=b"twice").raise_for_status()
        faults(False)

        def siblings(key: str) -> list[list[bytes]]:
            out = []
            for nid in c.ids:
                with Client(c.url(nid)) as reader:
                    out.append(sorted(reader.siblings("disc", key)))
            return out

        wait_for(lambda: siblings("control") == [[b"twice", b"twice"]] * 3, 15,
                 "both control writes everywhere")
        assert siblings("retried") == [[b"once"]] * 3
    finally:
        c.stop_all()


def test_keyed_writes_are_remembered_for_the_horizon_within_the_limit() -> None:
    recent = RecentWrites(horizon=10.0, limit=2)
    key = ("cfg", "kv", "x")
    recent.note(key, "k1", ("a", 1), 0.0)
    recent.note(key, "k1", ("b", 1), 1.0)  # a second attempt: the first stays
    recent.note(key, "k2", ("a", 2), 5.0)
    assert recent.find(key, "k1") == ("a", 1)
    recent.expire(10.5)
    assert recent.find(key, "k1") is None and recent.find(key, "k2") == ("a", 2)
    recent.note(key, "k3", ("a", 3), 11.0)
    recent.note(key, "k4", ("a", 4), 11.0)  # beyond the limit: the oldest goes
    assert recent.find(key, "k2") is None and len(recent) == 2


def test_a_retry_after_collection_and_a_later_write_is_still_replayed() -> None:
    net = Net(["a", "b"], idempotency_horizon=60.0)
    first = put(net, "a", b"first")
    net.advance(1.0)
    assert len(net.replicas["b"].log) == 0  # collected everywhere
    put(net, "b", b"second", idem="k-2", context=read(net, "b").context)
    late = put(net, "b", b"first")
    assert (late.dot, late.replayed) == (first.dot, True)
    assert [s.value for s in read(net, "b").siblings] == [b"second"]


def test_both_clients_send_one_key_per_logical_write_and_reuse_it_on_retries() -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers["Idempotency-Key"]))
        if len(seen) % 2:  # every first attempt: "not done, safe to retry"
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}})
        return httpx.Response(200, json={"dot": ["a", 1]})

    with Client(["http://a", "http://b"], transport=httpx.MockTransport(handler)) as client:
        client.put("ev", "k", "v")
        client.delete("ev", "k")

    async def main() -> None:
        async with AsyncClient(["http://a", "http://b"],
                               transport=httpx.MockTransport(handler)) as client:
            await client.put("ev", "k", "v")
            await client.delete("ev", "k")

    asyncio.run(main())
    keys = [key for _, key in seen]
    assert [m for m, _ in seen] == ["PUT", "PUT", "DELETE", "DELETE"] * 2
    assert all(keys[i] == keys[i + 1] for i in range(0, 8, 2))  # a retry reuses its key
    assert len(set(keys)) == 4  # each logical write has its own

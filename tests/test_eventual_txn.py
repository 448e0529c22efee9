"""Transactions in an eventual namespace (``eventual.txn``): all or nothing at
the serving replica, visible atomically on every replica, never replayed in
part after a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from configsvc.sim.eventual_net import Net
from eventual.codec import MalformedMessage, decode, event_from_wire, event_to_wire
from eventual.config import PlantedBugs
from eventual.messages import MAX_GROUP_EVENTS, Deltas, Event
from eventual.records import EventRecord
from eventual.requests import (
    MAX_TXN_OPS,
    BadRequest,
    Get,
    List,
    ListResult,
    Put,
    ReadResult,
    Txn,
    TxnCheck,
    TxnFailed,
    TxnRead,
    TxnReadPrefix,
    TxnRemovePrefix,
    TxnResult,
    TxnWrite,
    WriteResult,
)
from eventual.storage import recover
from eventual.txn import version_stamp

NS = "cfg"


def txn(net: Net, node: str, *ops: object, idem: str | None = None) -> TxnResult | TxnFailed:
    result = net.call(node, Txn(NS, tuple(ops), idem))  # type: ignore[arg-type]
    assert isinstance(result, TxnResult | TxnFailed), result
    return result


def values(net: Net, node: str, prefix: str = "") -> dict[str, list[bytes]]:
    result = net.call(node, List(NS, prefix))
    assert isinstance(result, ListResult)
    return {key: [s.value for s in sibs] for key, sibs in result.items if sibs}


def version(net: Net, node: str, key: str) -> int:
    result = net.call(node, Get(NS, key))
    assert isinstance(result, ReadResult)
    return version_stamp(s.dot for s in result.siblings)


def test_writes_apply_together_and_reads_see_the_state_before_them() -> None:
    net = Net(["a", "b"])
    net.call("a", Put(NS, "app/old", b"1"))
    result = txn(net, "a", TxnRead("app/old"), TxnWrite("app/x", b"X"), TxnWrite("app/y", b"Y"),
                 TxnReadPrefix("app/"), TxnWrite("app/old", None))
    assert isinstance(result, TxnResult)
    read_old, wrote_x, wrote_y, tree, deleted = result.results
    assert [(k, [s.value for s in v]) for k, v in read_old] == [("app/old", [b"1"])]
    assert [k for k, _ in wrote_x] == ["app/x"] and wrote_x[0][1][0].value == b"X"
    assert wrote_y[0][1][0].dot[1] == wrote_x[0][1][0].dot[1] + 1  # one group: consecutive dots
    # a read later in the transaction sees its earlier writes (operations run in order)
    assert [(k, [s.value for s in v]) for k, v in tree] == [
        ("app/old", [b"1"]), ("app/x", [b"X"]), ("app/y", [b"Y"])]
    assert deleted == ()
    net.advance(1.0)
    for node in ("a", "b"):
        assert values(net, node) == {"app/x": [b"X"], "app/y": [b"Y"]}
    # the new sibling's dot is the one the transaction reported
    assert version(net, "b", "app/x") == version_stamp([wrote_x[0][1][0].dot])


def test_a_failed_check_writes_nothing_and_names_the_operation() -> None:
    net = Net(["a", "b"])
    net.call("a", Put(NS, "k", b"1"))
    vv = dict(net.replicas["a"].vv)
    stale = version(net, "a", "k") + 1
    for ops, failing in (
        ((TxnWrite("x", b"X"), TxnCheck("k", stale)), 1),
        ((TxnWrite("x", b"X"), TxnCheck("k", 0)), 1),  # must not exist
        ((TxnCheck("missing"), TxnWrite("x", b"X")), 0),  # must exist
        ((TxnWrite("x", b"X"), TxnWrite("k", b"2", if_version=0)), 1),  # create only
        ((TxnWrite("k", None, if_version=stale),), 0),  # delete-cas
    ):
        result = txn(net, "a", *ops)
        assert isinstance(result, TxnFailed) and result.op == failing, (ops, result)
        assert net.replicas["a"].vv == vv, "a failed transaction made an event"
    assert values(net, "a") == {"k": [b"1"]}
    ok = txn(net, "a", TxnCheck("k", version(net, "a", "k")), TxnWrite("k", b"2",
             if_version=version(net, "a", "k")), TxnWrite("new", b"N", if_version=0))
    assert isinstance(ok, TxnResult)
    assert values(net, "a") == {"k": [b"2"], "new": [b"N"]}


def test_checks_see_earlier_writes_of_the_same_transaction() -> None:
    net = Net(["a"])
    result = txn(net, "a", TxnWrite("k", b"1"), TxnCheck("k"), TxnWrite("k", None),
                 TxnCheck("k", 0), TxnWrite("k", b"2", if_version=0))
    assert isinstance(result, TxnResult), result
    assert values(net, "a") == {"k": [b"2"]}
    # one key written three times in one group: the last write supersedes the others
    assert len(net.replicas["a"].store.siblings((NS, "kv", "k"))) == 1


def test_a_write_supersedes_every_sibling_the_node_has_seen() -> None:
    net = Net(["a", "b"])
    net.split(["a"], ["b"])
    net.call("a", Put(NS, "k", b"from-a"))
    net.call("b", Put(NS, "k", b"from-b"))
    net.heal()
    net.advance(1.0)
    assert sorted(values(net, "a")["k"]) == [b"from-a", b"from-b"]
    two = version(net, "a", "k")
    result = txn(net, "a", TxnWrite("k", b"one", if_version=two))
    assert isinstance(result, TxnResult)
    net.advance(1.0)
    assert values(net, "b") == {"k": [b"one"]}


def test_remove_prefix_removes_what_the_node_holds_under_it_at_once() -> None:
    net = Net(["a", "b"])
    for i in range(5):
        net.call("a", Put(NS, f"old/{i}", b"v"))
    net.call("a", Put(NS, "keep", b"v"))
    result = txn(net, "a", TxnRemovePrefix("old/"), TxnWrite("old/new", b"n"))
    assert isinstance(result, TxnResult)
    net.advance(1.0)
    assert values(net, "b") == {"keep": [b"v"], "old/new": [b"n"]}


def _deliver_one_by_one(net: Net, check: Callable[[], None]) -> int:
    """Deliver queued messages one at a time, calling ``check`` after each; returns
    how many Deltas reaching "b" carried events."""
    parts = 0
    while net.queue:
        src, dst, data = net.queue.popleft()
        message = decode(data)
        parts += dst == "b" and isinstance(message, Deltas) and bool(message.events)
        net.replicas[dst].step(src, message, net.now)
        net._flush(dst)
        check()
    return parts


@pytest.mark.parametrize("bug", [False, True], ids=["grouped", "planted-ungrouped"])
def test_no_replica_ever_shows_part_of_a_transaction(bug: bool) -> None:
    """Deltas of one event each (the size cap cut the group): the receiver holds
    the members back until it has them all. The planted bug (members applied as
    they come) must be caught by the same check: it proves the check can fail."""
    net = Net(["a", "b"], max_delta_events=1, eager_push=False,
              bugs=PlantedBugs(ungrouped_delivery=bug))
    keys = [f"pair/{i}" for i in range(4)]
    seen_partial: list[dict[str, list[bytes]]] = []

    def check() -> None:
        shown = {k: v for k, v in net.replicas["b"].store.entries.items() if k[2] in keys}
        if shown and len(shown) != len(keys):
            seen_partial.append({k[2]: [s.value for s in v.values()] for k, v in shown.items()})

    result = txn(net, "a", *(TxnWrite(k, b"T1") for k in keys))
    assert isinstance(result, TxnResult)
    parts = 0
    for _ in range(20):
        net.now += net.replicas["a"].config.gossip_interval
        for n, r in net.replicas.items():
            r.tick(net.now)
            net._flush(n)
        parts += _deliver_one_by_one(net, check)
    assert values(net, "b", "pair/") == {k: [b"T1"] for k in keys}
    assert parts >= len(keys), "the group never arrived in parts: the test exercised nothing"
    if bug:
        assert seen_partial, "the planted bug went unnoticed"
    else:
        assert seen_partial == []


def test_a_torn_group_is_dropped_whole_on_recovery() -> None:
    net = Net(["a"])
    net.call("a", Put(NS, "before", b"b"))
    assert isinstance(txn(net, "a", TxnWrite("x", b"X"), TxnWrite("y", b"Y"), TxnWrite("z", b"Z")),
                      TxnResult)
    records = net.storage["a"].load()
    events = [r for r in records if isinstance(r, EventRecord)]
    assert [e.event.group_end for e in events] == [0, 4, 4, 4]
    whole = recover(records)
    assert {k[2] for k in whole.store.entries} == {"before", "x", "y", "z"}
    torn = recover(records[: records.index(events[-1])])  # the last member never became durable
    assert {k[2] for k in torn.store.entries} == {"before"}
    assert [e.dot for e in torn.log] == [events[0].event.dot]


def test_a_restart_after_the_transaction_keeps_it() -> None:
    net = Net(["a", "b"])
    assert isinstance(txn(net, "a", TxnWrite("x", b"X"), TxnWrite("y", b"Y")), TxnResult)
    net.crash("a")
    net.restart("a")
    assert values(net, "a") == {"x": [b"X"], "y": [b"Y"]}
    result = net.call("a", Put(NS, "z", b"Z"))
    assert isinstance(result, WriteResult) and result.dot[1] == 3  # after the group, not inside it


def test_a_retry_under_the_same_key_is_replayed() -> None:
    net = Net(["a"])
    first = txn(net, "a", TxnWrite("x", b"X", if_version=0), TxnWrite("y", b"Y"), idem="t-1")
    assert isinstance(first, TxnResult) and not first.replayed
    vv = dict(net.replicas["a"].vv)
    retry = txn(net, "a", TxnWrite("x", b"X", if_version=0), TxnWrite("y", b"Y"), idem="t-1")
    assert isinstance(retry, TxnResult) and retry.replayed
    assert net.replicas["a"].vv == vv


def test_limits_are_refused_with_a_reason() -> None:
    net = Net(["a"])
    too_many = tuple(TxnRead(f"k{i}") for i in range(MAX_TXN_OPS + 1))
    assert isinstance(net.call("a", Txn(NS, too_many)), BadRequest)
    assert isinstance(net.call("a", Txn(NS, ())), BadRequest)
    for i in range(MAX_GROUP_EVENTS + 1):
        net.call("a", Put(NS, f"big/{i}", b""))
    vv = dict(net.replicas["a"].vv)
    refused = net.call("a", Txn(NS, (TxnRemovePrefix("big/"),)))
    assert isinstance(refused, BadRequest) and str(MAX_GROUP_EVENTS) in refused.reason
    assert net.replicas["a"].vv == vv


def test_group_end_travels_and_is_validated() -> None:
    e = Event(("a", 2), (NS, "kv", "x"), b"v", 7, (), (("a", 1),), None, 3)
    assert event_from_wire(event_to_wire(e)) == e
    keyed = Event(("a", 2), (NS, "kv", "x"), b"v", 7, (), (("a", 1),), "idem", 2)
    assert event_from_wire(event_to_wire(keyed)) == keyed
    plain = Event(("a", 2), (NS, "kv", "x"), b"v", 7, (), (("a", 1),))
    assert len(event_to_wire(plain)) == 6  # no group: the old encoding
    for bad in (1, 0, 2 + MAX_GROUP_EVENTS, -1, True, "3"):
        wire = [*event_to_wire(plain), None, bad]
        with pytest.raises(MalformedMessage):
            event_from_wire(wire)

"""One eventual replica (and a few over a quiet network), fed by hand.

Rung 1 of the ladder: writes, reads, siblings and contexts, deletes that
remove only what they observed, last-writer-wins namespaces, service
instances with heartbeats and local expiry, session tokens, bad input,
durability before the acknowledgement, recovery and identities.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.sim.eventual_net import Net
from eventual.config import ReplicaConfig
from eventual.dots import vv_to_wire
from eventual.instances import InstanceInfo
from eventual.messages import Deltas, Digest, Event, FullState, RepairProbe
from eventual.records import EventRecord, IdentityRecord
from eventual.replica import Replica
from eventual.requests import (
    BadRequest,
    CausallyBehind,
    Delete,
    Deregister,
    Get,
    Heartbeat,
    Instances,
    InstancesResult,
    List,
    ListResult,
    NotFound,
    Put,
    ReadResult,
    Register,
    WriteResult,
)
from eventual.storage import DurableState, recover
from eventual.token import decode_vv

INFO = InstanceInfo(address="10.0.0.1", port=80, ttl=1.0, deregister_after=3.0)


def read(net: Net, node: str, key: str, ns: str = "cfg", token: str | None = None) -> ReadResult:
    result = net.call(node, Get(ns, key), token)
    assert isinstance(result, ReadResult), result
    return result


def write(net: Net, node: str, request: Put | Delete | Register | Heartbeat | Deregister,
          token: str | None = None) -> WriteResult:
    result = net.call(node, request, token)
    assert isinstance(result, WriteResult), result
    return result


def values(r: ReadResult) -> list[bytes]:
    return [s.value for s in r.siblings]


def test_put_then_get_returns_the_value_its_context_and_a_covering_token() -> None:
    net = Net(["n1"])
    w = write(net, "n1", Put("cfg", "k", b"v1"))
    r = read(net, "n1", "k", token=w.token)
    assert values(r) == [b"v1"]
    assert decode_vv(r.context) == {w.dot[0]: w.dot[1]}
    assert decode_vv(r.token)[w.dot[0]] >= w.dot[1]


def test_concurrent_writes_become_siblings_and_a_write_with_context_resolves_them() -> None:
    net = Net(["n1", "n2"])
    net.isolate("n1")
    write(net, "n1", Put("cfg", "k", b"left"))
    write(net, "n2", Put("cfg", "k", b"right"))
    net.heal()
    net.advance(1.0)
    r = read(net, "n2", "k")
    assert sorted(values(r)) == [b"left", b"right"]
    write(net, "n1", Put("cfg", "k", b"merged", r.context), r.token)
    net.advance(1.0)
    assert values(read(net, "n2", "k")) == [b"merged"]


def test_a_blind_write_does_not_supersede_what_it_did_not_see() -> None:
    net = Net(["n1"])
    write(net, "n1", Put("cfg", "k", b"a"))
    write(net, "n1", Put("cfg", "k", b"b"))
    assert sorted(values(read(net, "n1", "k"))) == [b"a", b"b"]


def test_delete_removes_only_what_it_observed_add_wins() -> None:
    net = Net(["n1", "n2"])
    write(net, "n1", Put("cfg", "k", b"old"))
    net.advance(0.5)
    seen = read(net, "n1", "k")
    net.isolate("n1")
    write(net, "n2", Put("cfg", "k", b"concurrent"))
    write(net, "n1", Delete("cfg", "k", seen.context))
    assert values(read(net, "n1", "k")) == []
    net.heal()
    net.advance(1.0)
    assert values(read(net, "n1", "k")) == [b"concurrent"]
    assert net.converged()


def test_delete_without_context_removes_what_this_replica_has_seen() -> None:
    net = Net(["n1"])
    write(net, "n1", Put("cfg", "k", b"a"))
    write(net, "n1", Put("cfg", "k", b"b"))
    write(net, "n1", Delete("cfg", "k"))
    assert values(read(net, "n1", "k")) == []
    assert ("cfg", "kv", "k") not in net.replicas["n1"].store.entries  # no per-key tombstone


def test_list_by_prefix_shows_live_keys_only() -> None:
    net = Net(["n1"])
    for key in ("app/a", "app/b", "other"):
        write(net, "n1", Put("cfg", key, key.encode()))
    write(net, "n1", Delete("cfg", "app/b"))
    result = net.call("n1", List("cfg", "app/"))
    assert isinstance(result, ListResult)
    assert [k for k, _ in result.items] == ["app/a"]


def test_lww_namespace_keeps_one_winner_and_a_causally_later_write_always_wins() -> None:
    net = Net(["n1", "n2"], namespaces={"flags": "lww"})
    net.isolate("n1")
    write(net, "n1", Put("flags", "f", b"one"))
    write(net, "n2", Put("flags", "f", b"two"))
    net.heal()
    net.advance(1.0)
    winner = read(net, "n1", "f", "flags")
    assert len(winner.siblings) == 1
    assert winner.siblings == read(net, "n2", "f", "flags").siblings


def test_lww_a_causally_later_write_wins_even_from_a_slow_clock() -> None:
    config = {"namespaces": {"flags": "lww"}}
    fast = Replica(ReplicaConfig("n1", ("n1", "n2"), **config), DurableState(), 1000.0,  # type: ignore[arg-type]
                   random.Random(1))
    slow = Replica(ReplicaConfig("n2", ("n1", "n2"), **config), DurableState(), 5.0,  # type: ignore[arg-type]
                   random.Random(2))
    fast.put(1, "flags", "f", b"fast", now=1000.0)
    for env in fast.ready().messages:
        slow.step("n1", env.message, 5.0)
    slow.put(2, "flags", "f", b"slow-but-later", now=5.0)
    ready = slow.ready()
    later = next(r.result for r in ready.replies if r.request_id == 2)
    for env in ready.messages:
        fast.step("n2", env.message, 1000.1)
    fast.get(3, "flags", "f", now=1000.2)
    (reply,) = fast.ready().replies
    assert isinstance(later, WriteResult) and isinstance(reply.result, ReadResult)
    assert [(s.value, s.dot) for s in reply.result.siblings] == [(b"slow-but-later", later.dot)]


def test_finding8_concurrent_lww_writes_are_ordered_by_wall_time_not_uptime() -> None:
    # n1's host has been up 10 s, n2's 10,000 s; n1 writes later in wall time.
    config = {"namespaces": {"flags": "lww"}}
    young = Replica(ReplicaConfig("n1", ("n1", "n2"), **config), DurableState(), 10.0,  # type: ignore[arg-type]
                    random.Random(1))
    old = Replica(ReplicaConfig("n2", ("n1", "n2"), **config), DurableState(), 10_000.0,  # type: ignore[arg-type]
                  random.Random(2))
    old.submit(1, Put("flags", "f", b"earlier"), None, 10_000.0, wall=1_700_000_000.0)
    young.submit(2, Put("flags", "f", b"later"), None, 10.0, wall=1_700_000_005.0)
    for env in old.ready().messages:
        young.step("n2", env.message, 10.1, wall=1_700_000_005.1)
    young.ready()
    young.submit(3, Get("flags", "f"), None, 10.2, wall=1_700_000_005.2)
    (reply,) = young.ready().replies
    assert isinstance(reply.result, ReadResult)
    assert [s.value for s in reply.result.siblings] == [b"later"]


def test_a_request_waits_for_its_token_then_is_served() -> None:
    net = Net(["n1", "n2"], token_wait=0.3, eager_push=False)
    net.isolate("n2")
    w = write(net, "n1", Put("cfg", "k", b"v"))
    rid = net.submit("n2", Get("cfg", "k"), w.token)
    assert rid not in net.replies  # parked: n2 has not seen the client's write
    net.heal()
    net.advance(0.25)
    result = net.replies.pop(rid)
    assert isinstance(result, ReadResult) and values(result) == [b"v"]


def test_a_request_the_replica_cannot_cover_in_time_is_causally_behind() -> None:
    net = Net(["n1", "n2"], token_wait=0.3)
    net.isolate("n2")
    w = write(net, "n1", Put("cfg", "k", b"v"))
    rid = net.submit("n2", Put("cfg", "k", b"w"), w.token)
    net.advance(0.4)
    result = net.replies.pop(rid)
    assert isinstance(result, CausallyBehind)
    assert decode_vv(result.missing) == {w.dot[0]: w.dot[1]}
    assert values(read(net, "n2", "k")) == []  # nothing happened


def test_bad_input_is_refused_and_changes_nothing() -> None:
    net = Net(["n1"])
    before = len(net.storage["n1"].load())
    for request, token in [
        (Get("cfg", "k"), "not-a-token"),
        (Put("cfg", "k", b"v", "c1.@@@"), None),
        (Put("", "k", b"v"), None),
        (Put("cfg", "k" * 5000, b"v"), None),
        (Register("svc", "a/b", "i", INFO), None),
        (Heartbeat("svc", "api", ""), None),
    ]:
        assert isinstance(net.call("n1", request, token), BadRequest)
    assert len(net.storage["n1"].load()) == before


def test_the_write_record_is_in_the_same_ready_as_its_acknowledgement() -> None:
    replica = Replica(ReplicaConfig("n1", ("n1",)), DurableState(), 0.0, random.Random(1))
    replica.ready()
    replica.put(7, "cfg", "k", b"v", now=0.1)
    ready = replica.ready()
    assert [r.request_id for r in ready.replies] == [7]
    (record,) = [r for r in ready.persist if isinstance(r, EventRecord)]
    assert record.event.value == b"v"


def test_instances_register_heartbeat_deregister_and_local_health() -> None:
    net = Net(["n1", "n2"])
    assert isinstance(net.call("n1", Heartbeat("svc", "api", "i1")), NotFound)
    write(net, "n1", Register("svc", "api", "i1", INFO))
    net.advance(0.5)
    listed = net.call("n2", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult)
    assert [(v.instance_id, v.status, v.info.port) for v in listed.instances] == [("i1", "passing", 80)]
    net.advance(1.2)  # silent beyond ttl: critical, but still listed
    listed = net.call("n2", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult) and listed.instances[0].status == "critical"
    hb = write(net, "n2", Heartbeat("svc", "api", "i1"))
    net.advance(0.2)
    listed = net.call("n1", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult) and listed.instances[0].status == "passing"
    assert listed.instances[0].heartbeat_hlc == net.replicas["n1"].store.siblings(
        ("svc", "svc", "api/i1"))[hb.dot].hlc
    write(net, "n1", Deregister("svc", "api", "i1"))
    net.advance(0.5)
    listed = net.call("n2", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult) and listed.instances == ()


def test_silent_instances_are_removed_once_critical_for_deregister_after() -> None:
    net = Net(["n1", "n2"])
    write(net, "n1", Register("svc", "api", "i1", INFO))
    net.advance(3.5)  # silent since 1.0 (its ttl): critical for 2.5 s, not yet 3
    listed = net.call("n2", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult)
    assert [v.status for v in listed.instances] == ["critical"]
    net.advance(1.0)
    listed = net.call("n2", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult) and listed.instances == ()
    assert net.converged()


def test_a_deregistration_loses_to_a_heartbeat_it_did_not_see() -> None:
    net = Net(["n1", "n2"])
    write(net, "n1", Register("svc", "api", "i1", INFO))
    net.advance(0.3)
    net.isolate("n1")
    write(net, "n1", Deregister("svc", "api", "i1"))
    write(net, "n2", Heartbeat("svc", "api", "i1"))
    net.heal()
    net.advance(0.5)
    listed = net.call("n1", Instances("svc", "api"))
    assert isinstance(listed, InstancesResult) and [v.instance_id for v in listed.instances] == ["i1"]


def test_restart_recovers_state_and_identity_and_a_wiped_node_gets_a_fresh_one() -> None:
    net = Net(["n1", "n2"])
    w = write(net, "n1", Put("cfg", "k", b"v"))
    identity = net.replicas["n1"].replica
    net.crash("n1")
    net.restart("n1")
    assert net.replicas["n1"].replica == identity
    assert values(read(net, "n1", "k")) == [b"v"]
    net.crash("n1")
    net.restart("n1", wipe=True)
    fresh = net.replicas["n1"].replica
    assert fresh != identity and fresh.startswith("n1.")
    net.advance(1.0)  # peers see a new life of n1 and bring it back
    assert values(read(net, "n1", "k", token=w.token)) == [b"v"]
    w2 = write(net, "n1", Put("cfg", "k", b"v2", read(net, "n1", "k").context))
    assert w2.dot == (fresh, 1)


def test_snapshots_replace_the_event_records_and_recover_the_same_state() -> None:
    net = Net(["n1"], snapshot_every=5)
    for i in range(12):
        write(net, "n1", Put("cfg", f"k{i % 4}", f"v{i}".encode()))
    net.advance(0.1)
    records = net.storage["n1"].load()
    assert isinstance(records[0], IdentityRecord) and len(records) < 12
    assert recover(records).store == net.replicas["n1"].store


def test_messages_from_strangers_or_from_itself_are_ignored() -> None:
    replica = Replica(ReplicaConfig("n1", ("n1", "n2")), DurableState(), 0.0, random.Random(1))
    replica.ready()
    e = Event(("x", 1), ("cfg", "kv", "k"), b"v", 1, (), ())
    replica.step("mallory", Deltas("x", (("x", 1),), (e,)), 0.1)
    replica.step("n2", Deltas(replica.replica, (("x", 1),), (e,)), 0.1)
    assert replica.vv == {} and replica.ready().empty()


names = st.sampled_from(["a", "b", "n2.x"])
small_vv = st.dictionaries(names, st.integers(1, 4), max_size=3).map(vv_to_wire)


@st.composite
def odd_events(draw: st.DrawFn) -> Event:
    actor, n = draw(names), draw(st.integers(1, 4))
    deps = dict(draw(small_vv))
    deps[actor] = n - 1
    deps = {a: c for a, c in deps.items() if c > 0}
    covers = {a: c for a, c in deps.items() if draw(st.booleans())}
    value = draw(st.none() | st.binary(max_size=3))
    return Event((actor, n), ("cfg", "kv", draw(st.sampled_from("kl"))), value,
                 draw(st.integers(0, 2**40)), vv_to_wire(covers), vv_to_wire(deps))


messages = st.one_of(
    st.builds(Digest, names, small_vv, st.booleans()),
    st.builds(Deltas, names, small_vv, st.lists(odd_events(), max_size=4).map(tuple)),
    st.builds(RepairProbe, names, small_vv, st.integers(0, 2**64 - 1)),
    st.builds(lambda r: FullState(r, (), (), 0, True), names),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=12))
def test_any_valid_message_sequence_never_crashes_a_replica(msgs: list[object]) -> None:
    replica = Replica(ReplicaConfig("n1", ("n1", "n2")), DurableState(), 0.0, random.Random(1))
    for i, msg in enumerate(msgs):
        replica.step("n2", msg, 0.1 * i)  # type: ignore[arg-type]
        replica.tick(0.1 * i + 0.05)
        replica.ready()
    assert replica.store.context.is_compact_vv()

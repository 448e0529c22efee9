"""Eventual replicas over an in-memory network: cut, isolate, heal (rung 2).

Causal delivery, Scuttlebutt digests with size caps, causal-stability
garbage collection, the long-absent replica's rejoin by full state (and no
resurrection), and what the planted premature collection breaks.
"""

from __future__ import annotations

from configsvc.sim.eventual_net import Net
from eventual.codec import encode
from eventual.config import PlantedBugs
from eventual.dots import Sibling
from eventual.messages import Deltas, Digest, FullState
from eventual.ormap import sibling_hash
from eventual.requests import Delete, Get, Put, ReadResult, WriteResult


def put(net: Net, node: str, key: str, value: bytes, context: str | None = None,
        token: str | None = None) -> WriteResult:
    result = net.call(node, Put("cfg", key, value, context), token)
    assert isinstance(result, WriteResult), result
    return result


def get(net: Net, node: str, key: str) -> ReadResult:
    result = net.call(node, Get("cfg", key))
    assert isinstance(result, ReadResult), result
    return result


def test_a_remote_update_stays_invisible_until_its_causal_past_arrives() -> None:
    net = Net(["n1", "n2", "n3"], eager_push=False)
    net.isolate("n3")
    a = put(net, "n1", "a", b"A")
    net.split(["n1", "n2"], ["n3"])
    net.advance(0.5)  # n2 gets a by digest
    b = put(net, "n2", "b", b"B", token=a.token)  # b depends on a
    # hand n3 only b, as a reordering network would
    r2, r3 = net.replicas["n2"], net.replicas["n3"]
    b_event = next(e for e in r2.log.events() if e.dot == b.dot)
    r3.step("n2", Deltas(r2.replica, (), (b_event,)), net.now)
    assert len(r3.buffer) == 1
    assert get(net, "n3", "b").siblings == ()  # not visible without its past
    net.heal()
    net.advance(1.0)
    assert [s.value for s in get(net, "n3", "b").siblings] == [b"B"]
    assert [s.value for s in get(net, "n3", "a").siblings] == [b"A"]
    assert len(r3.buffer) == 0 and net.converged()


def test_the_planted_bug_shows_an_update_before_its_causal_past() -> None:
    net = Net(["n1", "n2", "n3"], eager_push=False,
              bugs=PlantedBugs(deliver_before_causal_past=True))
    net.isolate("n3")
    a = put(net, "n1", "a", b"A")
    net.split(["n1", "n2"], ["n3"])
    net.advance(0.5)
    b = put(net, "n2", "b", b"B", token=a.token)
    r2, r3 = net.replicas["n2"], net.replicas["n3"]
    r3.step("n2", Deltas(r2.replica, (), tuple(e for e in r2.log.events() if e.dot == b.dot)),
            net.now)
    assert [s.value for s in get(net, "n3", "b").siblings] == [b"B"]
    assert get(net, "n3", "a").siblings == ()  # b without a: causality broken


def test_digests_send_only_what_the_peer_lacks_in_origin_order_within_the_cap() -> None:
    net = Net(["n1", "n2"], eager_push=False, max_delta_events=10, max_delta_bytes=4096)
    net.isolate("n2")
    for i in range(45):
        put(net, "n1", f"k{i}", b"x" * 100)
    net.heal()
    net.sent.clear()
    net.advance(2.0)
    deltas = [e.message for e in net.sent if isinstance(e.message, Deltas)]
    assert deltas and all(len(d.events) <= 10 for d in deltas)
    assert all(len(encode(d)) <= 4096 + 512 for d in deltas)
    counters = [ev.dot[1] for d in deltas for ev in d.events]
    assert counters == sorted(counters)  # origin order, no event sent twice
    assert len(counters) == len(set(counters)) == 45
    assert net.converged()


def test_the_log_is_collected_only_once_every_member_has_the_events() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0)
    net.isolate("n3")
    for i in range(5):
        put(net, "n1", f"k{i}", b"v")
    net.advance(1.0)  # n3 is away but within the horizon: nothing n3 lacks is collected
    assert len(net.replicas["n1"].log) == 5
    net.heal()
    net.advance(1.0)
    assert all(len(r.log) == 0 for r in net.replicas.values())
    assert not any(isinstance(e.message, FullState) for e in net.sent)


def test_a_replica_away_beyond_the_horizon_rejoins_by_full_state_without_resurrection() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0)
    old = put(net, "n1", "k", b"old")
    net.advance(0.5)
    assert [s.value for s in get(net, "n3", "k").siblings] == [b"old"]
    net.isolate("n3")
    put(net, "n3", "mine", b"written while away")
    ctx = get(net, "n1", "k").context
    net.call("n1", Delete("cfg", "k", ctx), old.token)
    net.advance(3.0)  # beyond the horizon: n1 and n2 collect the delete's event
    assert len(net.replicas["n1"].log) == 0
    assert net.replicas["n1"].stability.peers["n3"].rejoining
    net.heal()
    net.sent.clear()
    net.advance(1.5)
    full = [e for e in net.sent if isinstance(e.message, FullState)]
    assert {e.dst for e in full} == {"n3"} or {e.dst for e in full} >= {"n3"}
    assert all(e.dst == "n3" or e.src == "n3" for e in full)
    assert get(net, "n3", "k").siblings == ()  # the old value did not come back
    assert [s.value for s in get(net, "n1", "mine").siblings] == [b"written while away"]
    assert net.converged()


def test_premature_collection_strands_a_replica_that_was_briefly_away() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0, eager_push=False,
              bugs=PlantedBugs(gc_before_stability=True))
    net.isolate("n3")
    put(net, "n1", "k", b"v")
    net.advance(0.6)  # well within the horizon
    net.heal()
    net.sent.clear()
    net.advance(3.0)
    # Nobody can serve n3 the collected event by deltas: the log floor check sends
    # it a full state, a transfer to a replica that was never away beyond the
    # horizon (the simulation's full-state checker rejects exactly that).
    assert any(isinstance(e.message, FullState) and e.dst == "n3" for e in net.sent)


def test_a_correct_replica_brings_a_briefly_away_one_back_by_deltas_only() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0, eager_push=False)
    net.isolate("n3")
    put(net, "n1", "k", b"v")
    net.advance(0.6)
    net.heal()
    net.sent.clear()
    net.advance(3.0)
    assert net.converged()
    assert not any(isinstance(e.message, FullState) for e in net.sent)


def test_equal_version_vectors_with_different_states_are_repaired_by_push_pull() -> None:
    net = Net(["n1", "n2"], repair_interval=0.5)
    old = put(net, "n1", "k", b"old")
    put(net, "n1", "k", b"new", get(net, "n1", "k").context)
    net.advance(0.3)
    r1, r2 = net.replicas["n1"], net.replicas["n2"]
    # A defect resurrects the superseded value at n2 behind the protocol's back:
    # same version vector, different state. Only the periodic probe can notice.
    key, stray = ("cfg", "kv", "k"), Sibling(b"old", 0)
    r2.store.entries[key][old.dot] = stray
    r2.state_hash ^= sibling_hash(key, old.dot, stray)
    assert r1.vv == r2.vv and not net.converged()
    net.advance(1.5)
    assert r1.divergences + r2.divergences >= 1
    assert any(isinstance(e.message, FullState) for e in net.sent)
    assert r1.store == r2.store and [s.value for s in get(net, "n2", "k").siblings] == [b"new"]


def test_digests_reach_every_peer_round_robin() -> None:
    net = Net(["n1", "n2", "n3", "n4", "n5", "n6"], fanout=2)
    net.sent.clear()
    net.advance(0.6)  # three rounds
    targets = {e.dst for e in net.sent if e.src == "n1" and isinstance(e.message, Digest)
               and e.message.reply}
    assert targets == {"n2", "n3", "n4", "n5", "n6"}


def test_events_that_arrived_by_full_state_stay_servable_to_peers_that_lack_them() -> None:
    # Found by the simulation (seed 723): n3 came back from a long absence and got
    # n1's full state; n1 then lost its disk; n2 (down briefly, never beyond the
    # horizon) still lacked n1's last write, which only n3 held.
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0, eager_push=False)
    net.crash("n3")
    net.advance(2.5)  # n3 is down beyond the horizon
    put(net, "n1", "x", b"collected")
    net.advance(0.5)  # stable among n1 and n2: collected, so n3 must come back by full state
    assert len(net.replicas["n1"].log) == 0
    net.crash("n2")
    w = put(net, "n1", "k", b"v")
    net.restart("n3")  # a fresh view: n3 counts n2 as present
    net.advance(0.5)  # n1 brings n3 back by full state, which carries n1's log
    assert [s.value for s in get(net, "n3", "k").siblings] == [b"v"]
    net.crash("n1")
    net.restart("n1", wipe=True)
    net.restart("n2")
    net.advance(1.0)
    assert [s.value for s in get(net, "n2", "k").siblings] == [b"v"]
    assert net.replicas["n2"].vv.get(w.dot[0], 0) >= w.dot[1]
    assert net.converged()


def test_a_full_state_passes_on_whom_its_sender_no_longer_counts() -> None:
    # s alone is up beyond the horizon for both r and m and collects its log; r comes
    # back by full state; s loses its disk; m comes back. Only r holds what m lacks,
    # without its log: r must bring m back by full state too, not wait for deltas.
    net = Net(["s", "r", "m"], gc_horizon=2.0, eager_push=False)
    net.crash("r")
    net.crash("m")
    net.advance(2.5)
    put(net, "s", "k", b"v")
    net.advance(0.5)
    assert len(net.replicas["s"].log) == 0
    net.restart("r")
    net.advance(0.5)
    assert "m" in net.replicas["r"].stability.rejoining()
    net.crash("s")
    net.restart("s", wipe=True)
    net.restart("m")
    net.advance(1.5)
    assert [s.value for s in get(net, "m", "k").siblings] == [b"v"]
    assert net.converged()


def test_a_member_added_later_is_brought_in_by_full_state_and_a_removed_one_stops_gc_waiting() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0)
    net.crash("n3")  # n3 is in the roster but not yet running
    put(net, "n1", "k", b"v")
    net.advance(1.0)
    assert len(net.replicas["n1"].log) == 1  # n3 still counts: nothing collected
    for r in net.replicas.values():
        r.set_members(["n1", "n2"], ["n2"], net.now)  # n3 leaves the roster
    net.advance(0.5)
    assert len(net.replicas["n1"].log) == 0
    for r in net.replicas.values():
        r.set_members(["n1", "n2", "n3"], [], net.now)  # n3 (re)joins, empty
    net.restart("n3", wipe=True)
    net.advance(1.0)
    assert [s.value for s in get(net, "n3", "k").siblings] == [b"v"]
    assert any(isinstance(e.message, FullState) and e.dst == "n3" for e in net.sent)
    assert net.converged()


def _restart_with_floor_and_wipe_peer(**config: object) -> Net:
    net = Net(["n1", "n2"], gc_horizon=2.0, snapshot_every=1, **config)
    for i in range(3):
        put(net, "n1", f"k{i}", b"v")
    net.advance(1.0)  # stable at both: collected
    put(net, "n1", "k3", b"v")  # its snapshot records the raised floor
    net.advance(1.0)
    net.crash("n1")
    net.crash("n2")
    net.restart("n1")
    assert net.replicas["n1"].log.floor != {}
    net.restart("n2", wipe=True)
    net.advance(2.0)
    return net


def test_finding6_a_restarted_replica_with_a_log_floor_brings_a_wiped_peer_back() -> None:
    # Issue 7, finding 6: n1 restarts with a non-zero log floor (its rejoining marks
    # are not durable), n2 comes back wiped. n1 cannot serve n2 by deltas (the events
    # are below its floor) and must send a full state; before the fix it answered
    # digests with digests only, n2 never caught up and collection stalled.
    net = _restart_with_floor_and_wipe_peer()
    assert [s.value for s in get(net, "n2", "k0").siblings] == [b"v"]
    assert net.converged()
    put(net, "n2", "after", b"v")
    net.advance(1.0)
    assert all(len(r.log) == 0 for r in net.replicas.values())  # collection runs again


def test_finding6_replanted_the_wiped_peer_is_stranded() -> None:
    net = _restart_with_floor_and_wipe_peer(bugs=PlantedBugs(ignore_can_serve=True))
    assert get(net, "n2", "k0").siblings == ()
    assert not net.converged()


def test_a_capped_catch_up_pulls_the_next_piece_at_once_not_a_round_later() -> None:
    # Found by swarm testing: with one event per Deltas, a peer 30 events behind
    # took 30 gossip rounds to catch up; now each piece asks for the next.
    net = Net(["n1", "n2"], max_delta_events=1, eager_push=False)
    net.isolate("n2")
    for i in range(30):
        put(net, "n1", f"k{i}", b"v")
    net.heal()
    net.advance(0.25)  # about one gossip round
    assert net.converged()

"""The Multi-Paxos replica, first fed by hand, then over an in-memory network."""

from __future__ import annotations

import random

from strong.ballot import Ballot
from strong.config import ReplicaConfig
from strong.lease import old_leases_expired_at
from strong.messages import (
    Accept,
    Accepted,
    Forward,
    Heartbeat,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    Refused,
    SlotValue,
)
from strong.ready import ReadState, RejectReason, Role
from strong.records import AcceptRecord, PromiseRecord
from strong.replica import Replica
from strong.sm_snapshot import snapshot_decodes
from strong.storage import DurableState, recover
from tests.strong_network import Network
from tests.strong_snapshots import encoded_snapshot

VOTERS = ("n1", "n2", "n3")


def replica(node: str = "n1", durable: DurableState | None = None, **kw: object) -> Replica:
    config = ReplicaConfig(node, VOTERS, snapshot_valid=snapshot_decodes, **kw)  # type: ignore[arg-type]
    return Replica(config, durable or DurableState(), 0.0, random.Random(1))


def campaign(r: Replica, now: float) -> Ballot:
    """Let ``r``'s election timeout pass and n2 grant its pre-vote: phase 1 starts.
    Returns the ballot of its Prepare."""
    r.tick(now)
    [pre] = {e.message for e in r.ready().outbox()}
    assert isinstance(pre, PreVote)
    r.step("n2", PreVoteReply(pre.ballot, True), now)
    prepares = [e.message for e in r.ready().outbox() if isinstance(e.message, Prepare)]
    assert prepares and prepares[0].ballot == pre.ballot
    return prepares[0].ballot


# ---------------------------------------------------------------- by hand


def test_acceptor_persists_its_promise_in_the_same_ready_as_the_reply() -> None:
    r = replica("n2")
    r.step("n1", Prepare(Ballot(1, "n1"), 1), 0.1)
    ready = r.ready()
    assert PromiseRecord(Ballot(1, "n1")) in ready.persist
    [env] = ready.outbox()
    assert isinstance(env.message, Promise) and env.dst == "n1"


def test_acceptor_refuses_a_lower_ballot_with_a_nack() -> None:
    r = replica("n2")
    r.step("n1", Prepare(Ballot(5, "n1"), 1), 0.1)
    r.ready()
    r.step("n3", Accept(Ballot(4, "n3"), 1, (b"x",), 0), 0.2)
    ready = r.ready()
    assert ready.persist == []
    [env] = ready.outbox()
    assert env.message == Nack(Ballot(4, "n3"), Ballot(5, "n1"))


def test_accept_is_durable_before_the_accepted_reply() -> None:
    r = replica("n2")
    r.step("n1", Accept(Ballot(1, "n1"), 1, (b"x",), 0), 0.1)
    ready = r.ready()
    assert AcceptRecord(1, Ballot(1, "n1"), (b"x",)) in ready.persist
    assert any(isinstance(e.message, Accepted) for e in ready.outbox())


def test_promise_reports_accepted_slots_and_time_since_leader_contact() -> None:
    r = replica("n2")
    r.step("n1", Accept(Ballot(1, "n1"), 1, (b"x",), 0), 1.0)
    r.ready()
    r.step("n3", Prepare(Ballot(2, "n3"), 1), 1.25)
    [env] = r.ready().outbox()
    promise = env.message
    assert isinstance(promise, Promise)
    assert promise.accepted == (SlotValue(1, Ballot(1, "n1"), (b"x",), False),)
    assert promise.since_leader_contact == 0.25


def test_phase1_adopts_the_highest_ballot_value_and_fills_holes_with_noops() -> None:
    r = replica("n1", lease_duration=0.0)
    b = campaign(r, 10.0)  # election timeout passed: pre-vote, then phase 1
    r.step(
        "n2",
        Promise(
            b,
            1,
            (
                SlotValue(1, Ballot(1, "n3"), (b"old",), False),
                SlotValue(3, Ballot(1, "n3"), (b"three",), False),
            ),
            1,
            0,
            100.0,
        ),
        10.01,
    )
    assert r.role is Role.LEADER
    lead = r.leadership
    assert lead is not None and lead.active
    values = {slot: e.value for slot, e in lead.inflight.items()}
    assert values == {1: (b"old",), 2: (), 3: (b"three",)}


def test_a_reported_chosen_value_wins_over_a_higher_ballot() -> None:
    r = replica("n1", lease_duration=0.0)
    b = campaign(r, 10.0)
    r.step("n2", Promise(b, 1, (SlotValue(1, Ballot(1, "n2"), (b"c",), True),), 1, 0, 9.0), 10.01)
    r.step("n3", Promise(b, 1, (SlotValue(1, Ballot(2, "n3"), (b"x",), False),), 1, 0, 9.0), 10.02)
    assert r.leadership is not None
    assert r.leadership.inflight[1].value == (b"c",)


def test_new_leader_waits_out_an_old_lease_before_proposing() -> None:
    r = replica("n1")
    b = campaign(r, 10.0)
    # n2 acknowledged the old leader 0.05 s before promising.
    r.step("n2", Promise(b, 1, (), 1, 0, 0.05), 10.01)
    lead = r.leadership
    assert lead is not None and not lead.active
    expected = old_leases_expired_at(10.01, 0.05, r.config.lease_duration, r.config.max_drift)
    assert lead.active_at == expected > 10.01 + r.config.lease_duration - 0.05
    r.propose(1, b"cmd", 10.02)
    assert not any(isinstance(e.message, Accept) for e in r.ready().outbox())
    r.tick(expected + 0.001)
    accepts = [e.message for e in r.ready().outbox() if isinstance(e.message, Accept)]
    assert {a.value for a in accepts} == {(b"cmd",)}


def test_planted_bug_skips_the_lease_wait() -> None:
    from strong.config import PlantedBugs

    r = replica("n1", bugs=PlantedBugs(skip_lease_wait=True))
    b = campaign(r, 10.0)
    r.step("n2", Promise(b, 1, (), 1, 0, 0.05), 10.01)
    assert r.leadership is not None and r.leadership.active


def test_a_follower_hands_proposals_and_reads_to_the_leader_it_follows() -> None:
    # Rules 5 and 9: one Forward and one ReadIndexRequest per Ready, sent first,
    # naming this process life; nothing is rejected and nothing answered yet.
    r = replica("n2")
    b = Ballot(1, "n1")
    r.step("n1", Heartbeat(b, 1, 0), 0.1)
    r.propose(7, b"x", 0.2)
    r.propose(8, b"y", 0.2)
    r.read_index(9, 0.2)
    r.read_index(10, 0.2, quorum=True)
    ready = r.ready()
    assert ready.rejected == [] and ready.reads == []
    assert all(env.dst == "n1" for env in ready.send_first)
    sent = {type(env.message): env.message for env in ready.send_first}
    assert sent[Forward] == Forward(b, r.incarnation, (7, 8), (b"x", b"y"))
    asks = [env.message for env in ready.send_first if isinstance(env.message, ReadIndexRequest)]
    assert asks == [ReadIndexRequest(b, r.incarnation, (9,), False),
                    ReadIndexRequest(b, r.incarnation, (10,), True)]


def test_a_follower_that_knows_no_leader_rejects_at_once() -> None:
    r = replica("n2")
    r.propose(7, b"x", 0.2)
    r.read_index(8, 0.2)
    ready = r.ready()
    assert [(x.request_id, x.reason, x.leader_hint) for x in ready.rejected] == [
        (7, RejectReason.NOT_LEADER, None),
        (8, RejectReason.NOT_LEADER, None),
    ]
    assert ready.outbox() == []


def test_replies_to_a_follower_count_only_for_its_own_process_life() -> None:
    r = replica("n2")
    b = Ballot(1, "n1")
    r.step("n1", Heartbeat(b, 1, 0), 0.1)
    r.read_index(1, 0.15)
    r.propose(2, b"x", 0.15)
    r.ready()
    other_life = r.incarnation + 1
    r.step("n1", ReadIndexReply(b, other_life, 5, (1,)), 0.2)
    r.step("n1", Refused(b, other_life, (2,)), 0.2)
    ready = r.ready()  # request ids restart with a process: never trust old replies
    assert ready.reads == [] and ready.rejected == []
    r.step("n1", ReadIndexReply(b, r.incarnation, 5, (1,)), 0.3)
    r.step("n3", Refused(b, r.incarnation, (2,)), 0.3)
    ready = r.ready()
    assert ready.reads == [ReadState(1, 5)]
    assert [(x.request_id, x.reason, x.leader_hint) for x in ready.rejected] == [
        (2, RejectReason.NOT_LEADER, "n1"),
    ]


def test_a_read_index_request_nobody_answers_is_refused_after_an_election_timeout() -> None:
    r = replica("n2")
    r.step("n1", Heartbeat(Ballot(1, "n1"), 1, 0), 0.1)
    r.read_index(8, 0.2)
    r.ready()
    r.tick(0.2 + r.config.election_timeout / 2)
    assert r.ready().rejected == []
    r.tick(0.21 + r.config.election_timeout)
    assert [(x.request_id, x.reason) for x in r.ready().rejected] == [(8, RejectReason.NOT_LEADER)]
    r.step("n1", ReadIndexReply(Ballot(1, "n1"), r.incarnation, 3, (8,)), 2.0)
    assert r.ready().reads == []  # refused already: a late answer answers nothing


def test_a_non_leader_refuses_forwarded_requests() -> None:
    r = replica("n3")
    b = Ballot(1, "n1")
    r.step("n2", Forward(b, 42, (7,), (b"x",)), 0.1)
    r.step("n2", ReadIndexRequest(b, 42, (8,), False), 0.1)
    assert [e.message for e in r.ready().outbox()] == [Refused(b, 42, (7,)), Refused(b, 42, (8,))]


def test_forwarded_writes_and_reads_through_the_network() -> None:
    net = Network(3)
    leader = net.elect()
    follower = next(n for n in net.ids if n != leader)
    net.propose(follower, 1, b"from-a-follower")
    net.tick(0.1)
    for node in net.ids:  # chosen, and applied by the follower itself
        assert [c for _, batch in net.applied[node] for c in batch][-1] == b"from-a-follower"
    net.replicas[follower].read_index(2, net.now)
    net.deliver_all()
    [state] = net.reads[follower]
    assert state.request_id == 2 and state.index == net.replicas[leader].commit_index
    assert net.rejected[follower] == []


def test_a_leader_queues_a_forwarded_copy_of_a_command_it_holds_once() -> None:
    net = Network(3)
    leader = net.elect()
    lead = net.replicas[leader].leadership
    assert lead is not None
    lead.active = False  # hold proposals back so the copies would pile up
    lead.active_at = float("inf")
    net.replicas[leader].propose(1, b"cmd", net.now)
    for follower in (n for n in net.ids if n != leader):
        net.replicas[leader].step(follower, Forward(lead.ballot, 9, (2, 3), (b"cmd", b"cmd")),
                                  net.now)
        net.replicas[leader].step(follower, Forward(lead.ballot, 9, (4,), (b"other",)), net.now)
    assert [cmd for _, cmd, _ in lead.pending] == [b"cmd", b"other"]


def test_a_leader_that_steps_down_refuses_what_followers_forwarded() -> None:
    r = replica("n1")
    b = campaign(r, 10.0)
    r.step("n2", Promise(b, 1, (), 1, 0, 0.05), 10.01)  # leads, waiting out n2's old lease
    assert r.leadership is not None and not r.leadership.active
    r.step("n3", Forward(b, 42, (7, 8), (b"x", b"y")), 10.02)
    r.step("n3", ReadIndexRequest(b, 42, (9,), False), 10.02)
    r.ready()
    higher = Ballot(b.round + 1, "n3")
    r.step("n3", Prepare(higher, 1), 10.03)  # a higher ballot: it steps down
    assert r.leadership is None
    refused = [e.message for e in r.ready().outbox() if isinstance(e.message, Refused)]
    assert refused == [Refused(b, 42, (7, 8, 9))]


def test_messages_from_itself_are_ignored_and_strangers_count_for_nothing() -> None:
    r = replica("n2")
    r.step("n2", Prepare(Ballot(9, "n2"), 1), 0.1)
    assert r.ready().empty()
    # A stranger may lead a configuration this replica has not learned yet
    # (membership): it is answered as an acceptor answers anyone, but grants,
    # promises and acknowledgements count only from voters.
    r.step("mallory", PreVote(Ballot(9, "mallory"), 0), 5.0)
    assert [e.message for e in r.ready().outbox()] == [PreVoteReply(Ballot(9, "mallory"), False)]


def test_config_rejects_an_unsafe_lease() -> None:
    import pytest

    with pytest.raises(ValueError, match="lease_duration"):
        ReplicaConfig("n1", VOTERS, election_timeout=0.5, lease_duration=0.5)


# ---------------------------------------------------------------- in-memory network


def test_three_replicas_elect_one_leader_and_commit_in_order() -> None:
    net = Network(3)
    leader = net.elect()
    for i in range(5):
        net.propose(leader, i, f"cmd{i}".encode())
    net.tick(0.2)
    # commands in the order applied, whatever the batching: proposal order
    logs = {n: [c for _, b in net.applied[n] for c in b] for n in net.ids}
    assert logs[leader] == [f"cmd{i}".encode() for i in range(5)]
    assert all(log == logs[leader] for log in logs.values())


def test_an_isolated_leader_steps_down_and_the_majority_elects_another() -> None:
    net = Network(3)
    old = net.elect()
    net.isolate(old)
    net.tick(3.0)
    assert net.replicas[old].role is not Role.LEADER  # check-quorum
    others = [n for n in net.ids if n != old]
    assert any(net.replicas[n].role is Role.LEADER for n in others)
    net.replicas[old].propose(99, b"late", net.now)
    net.deliver_all()
    assert any(r.request_id == 99 for r in net.rejected[old])


def test_a_lagging_replica_catches_up_after_the_partition_heals() -> None:
    net = Network(3)
    leader = net.elect()
    lagging = next(n for n in net.ids if n != leader)
    net.isolate(lagging)
    for i in range(10):
        net.propose(leader, i, f"v{i}".encode())
    net.tick(0.3)
    net.heal()
    net.tick(1.0)
    assert net.replicas[lagging].commit_index == net.replicas[leader].commit_index


def test_snapshot_transfer_to_a_replica_behind_compaction() -> None:
    net = Network(3)
    leader = net.elect()
    lagging = next(n for n in net.ids if n != leader)
    net.isolate(lagging)
    for i in range(10):
        net.propose(leader, i, f"v{i}".encode())
    net.tick(0.3)
    for nid in net.ids:
        if nid != lagging:
            r = net.replicas[nid]
            r.compact(r.commit_index, encoded_snapshot(100, str(r.commit_index).encode()))
    net.heal()
    net.tick(1.0)
    lag = net.replicas[lagging]
    assert lag.snapshot_index > 0
    assert lag.commit_index == net.replicas[leader].commit_index
    assert net.applied[lagging][0][1] == (b"<snapshot>",)


def test_restart_recovers_promise_and_accepted_values_from_disk() -> None:
    net = Network(3)
    leader = net.elect()
    net.propose(leader, 1, b"durable")
    net.tick(0.2)
    follower = next(n for n in net.ids if n != leader)
    before = net.replicas[follower].promised
    net.restart(follower)
    state = recover(net.disk[follower])
    assert state.promised == before
    assert net.replicas[follower].promised == before
    net.tick(1.0)
    assert any(b == (b"durable",) for _, b in net.applied[follower])


def test_lease_read_is_immediate_and_read_index_needs_a_round() -> None:
    net = Network(3)
    leader = net.elect()
    net.tick(0.2)  # heartbeats acknowledged: lease held
    r = net.replicas[leader]
    r.read_index(1, net.now)
    assert [x.request_id for x in r.ready().reads] == [1]

    net2 = Network(3, lease_duration=0.0)
    leader2 = net2.elect()
    r2 = net2.replicas[leader2]
    r2.read_index(2, net2.now)
    net2.collect(leader2)
    assert net2.reads[leader2] == []  # no lease: waits for a quorum round
    net2.deliver_all()
    assert [x.request_id for x in net2.reads[leader2]] == [2]


def test_a_group_of_one_commits_and_confirms_reads_by_itself() -> None:
    r = Replica(ReplicaConfig("solo", ("solo",)), DurableState(), 0.0, random.Random(1))
    r.tick(10.0)
    assert r.role is Role.LEADER
    r.propose(1, b"x", 10.0)
    assert r.ready().committed == [(1, (b"x",))]
    r.read_index(2, 10.01)
    assert [x.request_id for x in r.ready().reads] == [2]

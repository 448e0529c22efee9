"""Membership changes through the log (``strong.replica`` rules 10-15), on the
in-memory network: learners, promotion, removal, replacement, refusals,
restart and snapshot recovery of the configuration, and phase 1 asking a
revealed configuration's voters."""

from __future__ import annotations

import pytest

from strong.ballot import Ballot
from strong.config import PlantedBugs
from strong.member_log import ChangeKind, ChangeStatus, MemberLog, MembershipChange
from strong.membership import (
    Member,
    Membership,
    MembershipError,
    membership_of,
    membership_value,
    unwrap_snapshot,
    wrap_snapshot,
)
from strong.messages import Accept, Accepted, CatchUpReply, Envelope, TimeoutNow
from tests.strong_network import Network


def change(kind: ChangeKind, nid: str) -> MembershipChange:
    return MembershipChange(kind, Member(nid, f"{nid}:7000", f"{nid}:8000"))


def request(net: Network, kind: ChangeKind, nid: str, rid: int) -> ChangeStatus:
    leader = net.leader()
    assert leader is not None
    net.replicas[leader].request_change(rid, change(kind, nid), net.now)
    net.tick(1.0)
    outcomes = [c for c in net.changes[leader] if c.request_id == rid]
    assert len(outcomes) == 1, outcomes
    return outcomes[0].status


def write(net: Network, node: str, rid: int, data: bytes) -> None:
    net.propose(node, rid, data)
    net.tick(0.3)


def commands(net: Network, nid: str) -> list[bytes]:
    return [c for _, b in net.applied[nid] for c in b if membership_of(b) is None]


# ---------------------------------------------------------------- pure parts


def test_membership_changes_are_single_server_and_ids_are_never_reused() -> None:
    m = Membership(("a", "b", "c"))
    m2 = m.add_learner(Member("d"))
    assert m2.learners == ("d",) and m2.quorum == 2
    m3 = m2.promote("d")
    assert m3.voters == ("a", "b", "c", "d") and m3.quorum == 3
    m4 = m3.remove("a")
    assert m4.voters == ("b", "c", "d") and m4.retired == ("a",)
    with pytest.raises(MembershipError, match="never reused"):
        m4.add_learner(Member("a"))
    with pytest.raises(MembershipError, match="not a learner"):
        m.promote("z")
    with pytest.raises(MembershipError, match="already a member"):
        m.add_learner(Member("b"))
    with pytest.raises(MembershipError, match="last voter"):
        Membership(("a",)).remove("a")
    assert m.refusal(m.remove("c"), {"a"}) is not None
    assert m.refusal(m.remove("c"), {"a", "b"}) is None


def test_configuration_values_and_snapshots_round_trip() -> None:
    m = Membership(("a", "b"), ("c",), ("x",), (Member("c", "h:1", "h:2"),))
    assert membership_of(membership_value(m)) == m
    assert membership_of((b"\x94plain command",)) is None
    assert membership_of(membership_value(m) * 2) is None  # one value per slot
    assert membership_of((membership_value(m)[0][:-3],)) is None  # undecodable: no change
    assert unwrap_snapshot(wrap_snapshot(m, b"state")) == (m, b"state")
    assert unwrap_snapshot(b"legacy state") == (None, b"legacy state")


def test_member_log_answers_for_any_index_from_its_snapshot_on() -> None:
    c0, c1 = Membership(("a", "b", "c")), Membership(("a", "b", "c", "d"))
    values = {5: membership_value(c1)}
    log = MemberLog(c0, 0)
    assert log.advance(10, values.get)
    assert log.at(4) == c0 and log.at(5) == c1 and log.current == c1
    log.compact(3)
    assert log.at(3) == c0 and log.current == c1
    log.compact(7)
    assert log.at(7) == c1


# ---------------------------------------------------------------- on the network


def grown(net: Network, nid: str, rid: int = 1) -> None:
    """Join ``nid`` as a learner and promote it."""
    net.join(nid, tuple(net.replicas[net.ids[0]].members.voters))
    assert request(net, ChangeKind.ADD_LEARNER, nid, rid) is ChangeStatus.DONE
    assert request(net, ChangeKind.PROMOTE, nid, rid + 1) is ChangeStatus.DONE


def test_a_learner_catches_up_and_counts_in_no_quorum() -> None:
    net = Network(3)
    leader = net.elect()
    for i in range(5):
        write(net, leader, i, b"before%d" % i)
    net.join("n4", ("n1", "n2", "n3"))
    assert request(net, ChangeKind.ADD_LEARNER, "n4", 100) is ChangeStatus.DONE
    assert commands(net, "n4") == commands(net, leader)  # caught up by the log
    assert net.replicas["n4"].members.learners == ("n4",)
    # Only the leader and the learner remain connected: no quorum of voters.
    for other in ("n1", "n2", "n3"):
        if other != leader:
            net.isolate(other)
    write(net, leader, 50, b"no quorum")
    assert b"no quorum" not in commands(net, leader)
    # Planted: the learner's acknowledgement completes the "quorum".
    bad = Network(3, bugs=PlantedBugs(learner_in_quorum=True))
    lead = bad.elect()
    bad.join("n4", ("n1", "n2", "n3"))
    assert request(bad, ChangeKind.ADD_LEARNER, "n4", 100) is ChangeStatus.DONE
    for other in ("n1", "n2", "n3"):
        if other != lead:
            bad.isolate(other)
    write(bad, lead, 50, b"no quorum")
    assert b"no quorum" in commands(bad, lead)


def test_promotion_waits_for_the_learner_to_catch_up() -> None:
    net = Network(3, promote_max_lag=2)
    leader = net.elect()
    net.join("n4", ("n1", "n2", "n3"))
    assert request(net, ChangeKind.ADD_LEARNER, "n4", 1) is ChangeStatus.DONE
    net.isolate("n4")
    for i in range(6):
        write(net, leader, 10 + i, b"w%d" % i)
    net.heal()
    net.cut("n4", leader)  # alive, but not caught up
    net.replicas[leader].request_change(2, change(ChangeKind.PROMOTE, "n4"), net.now)
    net.deliver_all()
    refused = [c for c in net.changes[leader] if c.request_id == 2]
    assert refused and refused[0].status is ChangeStatus.REFUSED
    assert "n4" not in net.replicas[leader].members.voters
    net.heal()
    net.tick(1.0)
    assert request(net, ChangeKind.PROMOTE, "n4", 3) is ChangeStatus.DONE
    assert net.replicas[leader].members.voters == ("n1", "n2", "n3", "n4")


def test_replacing_a_dead_node_keeps_every_write_and_retires_its_id() -> None:
    net = Network(3)
    leader = net.elect()
    dead = next(n for n in net.ids if n != leader)
    write(net, leader, 1, b"a")
    net.isolate(dead)  # the machine is gone
    write(net, leader, 2, b"b")
    grown(net, "n4", 10)
    assert request(net, ChangeKind.REMOVE, dead, 12) is ChangeStatus.DONE
    write(net, leader, 3, b"c")
    for nid in ("n4", leader):
        assert commands(net, nid) == [b"a", b"b", b"c"]
    assert net.replicas[leader].members.voters == tuple(
        n for n in ("n1", "n2", "n3", "n4") if n != dead)
    assert net.replicas[leader].members.retired == (dead,)
    # The removed node comes back: nobody hears it any more.
    net.heal()
    before = net.replicas[leader].promised
    net.tick(3.0)
    assert net.replicas[leader].leadership is not None and net.replicas[leader].promised == before
    assert request(net, ChangeKind.ADD_LEARNER, dead, 13) is ChangeStatus.REFUSED


def test_a_change_that_would_lose_the_quorum_is_refused_with_the_reason() -> None:
    net = Network(3)
    leader = net.elect()
    a, b = (n for n in net.ids if n != leader)
    net.isolate(a)
    net.isolate(b)
    net.cut(leader, a)
    # The leader hears nobody: removing b would leave {leader, a}, a unreachable.
    net.now += 1.0  # the others' acknowledgements grow old
    net.replicas[leader].request_change(7, change(ChangeKind.REMOVE, b), net.now)
    net.deliver_all()
    outcome = [c for c in net.changes[leader] if c.request_id == 7]
    assert outcome and outcome[0].status is ChangeStatus.REFUSED
    assert "reachable" in outcome[0].detail
    assert net.replicas[leader].members.voters == ("n1", "n2", "n3")


def test_only_one_change_at_a_time() -> None:
    net = Network(3)
    leader = net.elect()
    net.join("n4", ("n1", "n2", "n3"))
    net.join("n5", ("n1", "n2", "n3"))
    r = net.replicas[leader]
    r.request_change(1, change(ChangeKind.ADD_LEARNER, "n4"), net.now)
    r.request_change(2, change(ChangeKind.ADD_LEARNER, "n5"), net.now)
    net.tick(1.0)
    by_id = {c.request_id: c.status for c in net.changes[leader]}
    assert by_id == {1: ChangeStatus.DONE, 2: ChangeStatus.REFUSED}


def test_removing_the_leader_hands_leadership_off_first() -> None:
    """Rule 17: the leader hands off to a caught-up voter, which then removes it
    as an ordinary member; nothing waits for an election timeout."""
    net = Network(3)
    leader = net.elect()
    write(net, leader, 1, b"a")
    r = net.replicas[leader]
    r.request_change(5, change(ChangeKind.REMOVE, leader), net.now)
    net.tick(0.2)  # well inside one election timeout (0.5 s)
    outcome = [c for c in net.changes[leader] if c.request_id == 5]
    assert [c.status for c in outcome] == [ChangeStatus.HANDED_OFF]
    successor = outcome[0].leader_hint
    assert successor is not None and successor != leader
    assert r.leadership is None and leader in r.members.voters  # nothing proposed
    net.tick(1.0)  # the successor waits out the old lease (rule 4), then leads
    assert net.leader() == successor
    assert request(net, ChangeKind.REMOVE, leader, 6) is ChangeStatus.DONE
    write(net, successor, 2, b"b")
    assert commands(net, successor) == [b"a", b"b"]
    assert leader not in net.replicas[successor].members.members


def test_a_hand_off_nobody_takes_falls_back_to_committing_the_removal() -> None:
    """A target that ignores TimeoutNow (an old binary, a lost message): after an
    election timeout the leader commits its own removal as a lame duck (rule 14)."""
    net = Network(3)
    leader = net.elect()
    write(net, leader, 1, b"a")
    net.drop = lambda env: isinstance(env.message, TimeoutNow)
    assert request(net, ChangeKind.REMOVE, leader, 5) is ChangeStatus.DONE
    assert net.replicas[leader].leadership is None
    net.tick(3.0)
    successor = net.leader()
    assert successor is not None and successor != leader
    assert leader not in net.replicas[successor].members.members


def test_transfer_leadership_moves_it_to_the_named_voter_and_refuses_others() -> None:
    net = Network(5)
    leader = net.elect()
    write(net, leader, 1, b"a")
    r = net.replicas[leader]
    others = [n for n in net.ids if n != leader]
    for rid, target, why in [(7, leader, "already leads"), (8, "n9", "not a voter")]:
        r.transfer_leadership(rid, target, net.now)
        net.collect(leader)
        assert net.changes[leader][-1].status is ChangeStatus.REFUSED
        assert why in net.changes[leader][-1].detail
    net.isolate(others[0])
    net.tick(1.0)  # others[0] is silent for an election timeout
    r.transfer_leadership(9, others[0], net.now)
    net.collect(leader)
    assert "not heard from lately" in net.changes[leader][-1].detail
    net.heal()
    net.tick(0.2)
    target = others[-1]
    r.transfer_leadership(10, target, net.now)
    r.propose(11, b"queued during the hand-off", net.now)
    net.tick(0.3)
    done = [c for c in net.changes[leader] if c.request_id == 10]
    assert [(c.status, c.leader_hint) for c in done] == [(ChangeStatus.HANDED_OFF, target)]
    # the command queued while handing off was never proposed: refused, safe to retry
    assert [x.request_id for x in net.rejected[leader]] == [11]
    net.tick(1.0)
    assert net.leader() == target
    write(net, target, 12, b"b")
    assert commands(net, target) == [b"a", b"b"]


def test_timeout_now_is_taken_only_from_the_leader_followed() -> None:
    net = Network(3)
    leader = net.elect()
    follower = next(n for n in net.ids if n != leader)
    other = next(n for n in net.ids if n not in (leader, follower))
    f = net.replicas[follower]
    ballot = f.leader_ballot
    f.step(other, TimeoutNow(ballot), net.now)  # not from the leader
    f.step(leader, TimeoutNow(Ballot(ballot.round - 1, leader)), net.now)  # stale
    f.step(other, TimeoutNow(Ballot(ballot.round + 5, other)), net.now)  # not followed
    assert f.candidacy is None and f.promised == ballot
    f.step(leader, TimeoutNow(ballot), net.now)
    assert f.candidacy is not None


def test_the_configuration_survives_restarts_and_compaction() -> None:
    net = Network(3)
    leader = net.elect()
    grown(net, "n4")
    follower = next(n for n in ("n1", "n2", "n3") if n != leader)
    net.restart(follower)  # recovered from the log
    assert net.replicas[follower].members.voters == ("n1", "n2", "n3", "n4")
    r = net.replicas[follower]
    net.collect(follower)  # applied (a compaction covers applied slots only)
    r.compact(r.commit_index, b"state")
    net.collect(follower)
    assert unwrap_snapshot(r.snapshot or b"")[0] == r.members
    net.restart(follower)  # recovered from the snapshot
    assert net.replicas[follower].members.voters == ("n1", "n2", "n3", "n4")


def test_phase1_asks_the_voters_of_a_revealed_configuration() -> None:
    """n2 accepted "n4 becomes a voter" at slot 2 (ballot 1); n3, at commit
    index 0 (configuration {n1,n2,n3}), campaigns with n1 gone: the promises of
    {n2, n3} reveal {n1..n4}, whose quorum also needs n4 (rule 13). n3 asks
    n4, whose promise never comes back: n3 must not lead. Planted: it leads."""
    for bugs, leads in ((PlantedBugs(), False), (PlantedBugs(candidate_ignores_config=True), True)):
        net = Network(3, bugs=bugs)
        c1 = Membership(("n1", "n2", "n3")).add_learner(Member("n4")).promote("n4")
        b1 = Ballot(1, "n1")
        n2 = net.replicas["n2"]
        n2.promised = b1
        n2.accepted = {1: (b1, ()), 2: (b1, membership_value(c1))}
        n2.stand_down()  # n3 is the only candidate
        net.isolate("n1")
        net.join("n4", ("n1", "n2", "n3"))
        net.cut_links.add(("n4", "n3"))  # n4 hears n3; n3 never hears n4
        n3, led = net.replicas["n3"], False
        for _ in range(100):
            net.tick(0.05)
            led = led or n3.leadership is not None
        assert led is leads
        if not leads:
            assert net.replicas["n4"].promised.node_id == "n3"  # it was asked


def test_two_changes_at_once_lose_a_chosen_value() -> None:
    """Why rule 12b-c. With ``concurrent_changes`` planted, the leader puts
    "promote n4" (j1), "promote n5" (j2) and a write s in flight together. The
    acknowledgements of j1 and j2 are late, so s is counted in the first
    configuration (quorum 2 of 3): the leader and one follower choose it. n3,
    n4 and n5 accept j1 and j2, never see s, and learn the commit index: cut
    off from the other two they are a quorum of {n1..n5} and choose another
    value for s's slot. Without the bug the second promotion is refused and
    s waits for j1, so the three cannot elect."""
    for bugs, disagree in ((PlantedBugs(concurrent_changes=True), True), (PlantedBugs(), False)):
        net = Network(3, bugs=bugs)
        leader = net.elect()
        for i, nid in enumerate(("n4", "n5")):
            net.join(nid, ("n1", "n2", "n3"))
            assert request(net, ChangeKind.ADD_LEARNER, nid, 10 + i) is ChangeStatus.DONE
        lead = net.replicas[leader]
        second = next(n for n in ("n1", "n2", "n3") if n != leader)
        rest = [n for n in net.ids if n not in (leader, second)]
        assert lead.leadership is not None
        start = lead.leadership.next_slot

        def hidden(env: Envelope, late: bool, rest: list[str] = rest, start: int = start) -> bool:
            m = env.message
            if late and isinstance(m, Accepted) and m.slot < start + 2:
                return True  # the acknowledgements of j1 and j2 are late
            return env.dst in rest and (isinstance(m, CatchUpReply) or (
                isinstance(m, Accept) and m.slot >= start and membership_of(m.value) is None))

        net.drop = lambda env: hidden(env, True)
        lead.request_change(20, change(ChangeKind.PROMOTE, "n4"), net.now)
        lead.request_change(21, change(ChangeKind.PROMOTE, "n5"), net.now)
        lead.propose(22, b"s", net.now)
        net.deliver_all()
        net.drop = lambda env: hidden(env, False)
        net.tick(0.5)
        for nid in (leader, second):
            net.isolate(nid)
        net.drop = lambda env: False
        net.tick(5.0)
        successor = next((n for n in rest if net.replicas[n].leadership is not None), None)
        if successor is not None:
            write(net, successor, 30, b"other")
        net.heal()
        net.tick(2.0)
        slots: dict[int, set[tuple[bytes, ...]]] = {}
        for nid in net.ids:
            for slot, batch in net.applied[nid]:
                slots.setdefault(slot, set()).add(batch)
        assert any(len(v) > 1 for v in slots.values()) is disagree, slots


def test_recovered_values_above_a_configuration_slot_are_proposed_once_it_is_chosen() -> None:
    """A new leader's phase 1 finds a configuration value at slot 2 and a
    command at slot 3 (accepted at ballot 1, never committed). Slot 3 is held
    until slot 2 is chosen (rule 12c), then proposed: every replica applies
    both. (A leader once kept such a slot held for good: found by the
    simulator as a liveness failure.)"""
    net = Network(3)
    c1 = Membership(("n1", "n2", "n3")).add_learner(Member("n4"))
    b1 = Ballot(1, "n1")
    for nid in ("n2", "n3"):
        r = net.replicas[nid]
        r.promised = b1
        r.accepted = {1: (b1, ()), 2: (b1, membership_value(c1)), 3: (b1, (b"held",))}
    net.join("n4", ("n1", "n2", "n3"))
    leader = net.elect()
    net.tick(1.0)
    for nid in net.ids:
        assert [b for _, b in net.applied[nid]][1:3] == [membership_value(c1), (b"held",)], nid
    assert net.replicas[leader].members == c1


@pytest.mark.parametrize("planted", [False, True])
def test_a_handed_off_leader_waits_out_the_old_lease(planted: bool) -> None:
    """Rule 17 leaves rule 4 alone: the successor waits until the old leader's
    lease must have expired, because the old leader answers lease reads until
    it meets the higher ballot (here it never does: the successor's messages to
    it are lost). With ``handoff_skips_lease_wait`` planted both serve at once."""
    net = Network(3, bugs=PlantedBugs(handoff_skips_lease_wait=planted))
    old = net.elect()
    write(net, old, 1, b"a")
    target, _ = (n for n in net.ids if n != old)
    net.drop = lambda env: env.src == target and env.dst == old
    net.replicas[old].transfer_leadership(2, target, net.now)
    overlap = False
    for _ in range(100):
        net.tick(0.01)
        new, was = net.replicas[target].leadership, net.replicas[old].leadership
        if (new is not None and new.active and was is not None
                and was.rounds.lease_valid(net.now)):
            overlap = True
    assert net.replicas[target].leadership is not None
    assert overlap is planted

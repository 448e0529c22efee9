"""Hash checks: the replicated verdict (``strong.hash_check``), the state machine's
events (``strong.state_machine`` rule 12), the replica's resync (``strong.replica``
rule 10), and a diverged node refusing to serve."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from configsvc.http.errors import ApiError
from configsvc.http.node_requests import check_serving
from strong.commands import Command, MalformedCommand, decode_command, encode_command
from strong.hash_check import HashChecks
from strong.ops import CreateNamespace, HashCheck, HashReport, Noop, Put
from strong.results import NoopResult
from strong.state_machine import StateMachine
from tests.strong_network import Network
from tests.strong_snapshots import encoded_snapshot

VOTERS = ("n1", "n2", "n3")
A, B, C = b"a" * 32, b"b" * 32, b"c" * 32


def test_the_verdict_is_the_first_hash_a_majority_reports_and_names_the_minority() -> None:
    checks = HashChecks("n3", VOTERS)
    check = checks.observe(10, 7, "", B)  # n3's own hash at slot 10
    assert check is not None and check.index == 10
    assert checks.observe(11, 7, "n1", A) is None  # one report: no majority
    assert checks.observe(11, 7, "n3", B) is None
    decided = checks.observe(12, 7, "n2", A)
    assert decided is not None
    verdict = checks.verdict(decided)
    assert verdict is not None and verdict.digest == A and verdict.index == 10
    assert verdict.agreed == ("n1", "n2") and verdict.disagreed == ("n3",)
    assert decided.own != verdict.digest  # n3 is the diverged one
    assert checks.latest() == verdict


def test_a_checks_voters_are_those_of_the_configuration_governing_its_slot() -> None:
    """After n3 was replaced by n4 (a configuration value at slot 20), a check at
    slot 30 counts n4's report and ignores n3's; one at slot 10 the reverse."""
    def voters_at(slot: int) -> tuple[str, ...]:
        return ("n1", "n2", "n4") if slot > 20 else VOTERS

    checks = HashChecks("n1", voters_at)
    old = checks.observe(10, 1, "", A)
    new = checks.observe(30, 2, "", A)
    assert old is not None and new is not None and new.voters == ("n1", "n2", "n4")
    assert checks.observe(31, 2, "n3", B) is None  # no longer a voter at slot 30
    assert checks.observe(31, 1, "n4", B) is None  # not yet a voter at slot 10
    decided = checks.observe(32, 2, "n4", B)
    assert decided is None  # B: n4 only
    assert checks.observe(33, 2, "n2", B) is new  # B: n2, n4 -> a majority of n1, n2, n4
    verdict = checks.verdict(new)
    assert verdict is not None and verdict.digest == B and verdict.agreed == ("n2", "n4")
    assert checks.verdict(old) is None


def test_reports_count_once_per_voter_and_only_for_checks_seen() -> None:
    checks = HashChecks("n1", VOTERS)
    assert checks.observe(5, 1, "n2", A) is None  # a check this replica never saw
    checks.observe(6, 2, "", A)
    assert checks.observe(7, 2, "n2", B) is None
    assert checks.observe(7, 2, "n2", A) is None  # a second report of n2 does not count
    assert checks.observe(7, 2, "n9", B) is None  # not a voter
    assert checks.observe(8, 2, "n3", A) is None  # A: n3 only; B: n2 only
    assert checks.pending()[0].check_id == 2 and checks.latest() is None  # rule 5: no verdict
    assert checks.observe(9, 2, "n1", A) is not None  # A: n1, n3 -> majority


def test_every_replica_reaches_the_same_verdict_from_the_same_log() -> None:
    log = [(3, 1, "n1", A), (3, 1, "n2", A), (4, 1, "n3", C)]
    verdicts = []
    for node, own in (("n1", A), ("n2", A), ("n3", C)):
        checks = HashChecks(node, VOTERS)
        checks.observe(2, 1, "", own)
        for event in log:
            checks.observe(*event)
        verdicts.append(checks.latest())
    assert verdicts[0] == verdicts[1] == verdicts[2] is not None
    assert verdicts[0].disagreed == ("n3",)  # type: ignore[union-attr]


def test_the_state_machine_hashes_at_the_end_of_the_check_slot_and_changes_nothing() -> None:
    sm = StateMachine()
    sm.apply(1, (encode_command(Command("", 0, CreateNamespace("app", "strong"))),))
    before = sm.snapshot_state()
    check = encode_command(Command("", 0, HashCheck(9)))
    put = encode_command(Command("", 0, Put("app", b"k", b"v")))
    applied = sm.apply(2, (check, put))  # the put of the same slot is in the hash
    assert applied[0].result == NoopResult()
    [(slot, check_id, node, digest)] = sm.take_hash_events()
    assert (slot, check_id, node) == (2, 9, "")
    assert digest == hashlib.sha256(sm.snapshot()).digest()
    report = encode_command(Command("", 0, HashReport(9, "n2", digest)))
    sm.apply(3, (report,))
    assert sm.take_hash_events() == [(3, 9, "n2", digest)] and sm.take_hash_events() == []
    other = StateMachine()
    other.apply(1, (encode_command(Command("", 0, CreateNamespace("app", "strong"))),))
    other.apply(2, (put,))
    other.apply(3, (encode_command(Command("", 0, Noop())),))
    assert before.revision + 1 == sm.revision
    assert sm.state_hash() == other.state_hash()  # the check and the report changed nothing


def test_hash_ops_round_trip_and_bad_ones_are_refused() -> None:
    for op in (HashCheck(3), HashReport(3, "n1", A)):
        assert decode_command(encode_command(Command("", 0, op))).op == op
    with pytest.raises(ValueError):
        HashReport(3, "n1", b"short")
    with pytest.raises(ValueError):
        HashReport(3, "", A)
    with pytest.raises(MalformedCommand):
        decode_command(encode_command(Command("", 0, HashCheck(3)))[:-1])


def _ten_slots_committed() -> tuple[Network, str, str]:
    """Three replicas that committed ten slots: (the network, a follower to re-sync,
    the other follower)."""
    net = Network(3)
    leader = net.elect()
    for i in range(10):
        net.propose(leader, i, f"v{i}".encode())
    net.tick(0.3)
    victim = next(n for n in net.ids if n != leader)
    return net, victim, next(n for n in net.ids if n not in (leader, victim))


def test_resync_installs_a_peers_snapshot_although_not_behind_and_reapplies_the_log() -> None:
    net, victim, healthy = _ten_slots_committed()
    commit = net.replicas[victim].commit_index
    assert commit >= 10
    # the healthy peer compacts at slot 5; the victim never did
    snapshot = encoded_snapshot(100, b"H")
    net.replicas[healthy].compact(5, snapshot)
    net.deliver_all()
    net.applied[victim].clear()
    net.replicas[victim].resync(healthy)
    net.tick(0.5)
    replica = net.replicas[victim]
    assert replica.resync_from is None and replica.state_snapshot == snapshot
    assert replica.snapshot_index == 5 and replica.commit_index >= commit  # never lowered
    applied = net.applied[victim]
    assert applied[0] == (5, (b"<snapshot>",))
    assert [slot for slot, _ in applied[1:]] == list(range(6, replica.commit_index + 1))
    assert net.leader() is not None


def test_resync_refuses_a_snapshot_older_than_its_own() -> None:
    net, victim, healthy = _ten_slots_committed()
    net.replicas[victim].compact(8, encoded_snapshot(100, b"V"))
    net.replicas[healthy].compact(5, encoded_snapshot(100, b"H"))
    net.deliver_all()
    net.replicas[victim].resync(healthy)
    net.tick(0.3)
    assert net.replicas[victim].snapshot_index == 8 and net.replicas[victim].resync_from == healthy


def test_a_diverged_node_answers_503_with_the_reason() -> None:
    reason = "refusing to serve: replicas disagree at index 16"
    node = SimpleNamespace(refusal=lambda: reason)
    with pytest.raises(ApiError) as caught:
        check_serving(node)  # type: ignore[arg-type]
    assert caught.value.status == 503 and reason in str(caught.value.message)
    check_serving(SimpleNamespace(refusal=lambda: None))  # type: ignore[arg-type]

"""Findings of the safety review of the strong core (issue 7), each as the exact
interleaving that broke it, replayed message by message.

S1 and S2 chose two values for one slot; S3 answered a linearizable read that
missed an acknowledged write. Each test failed before its fix (replica rules 7
and 8 say what the fix is).
"""

from __future__ import annotations

import pytest

from strong.ballot import Ballot
from strong.config import MAX_WINDOW, PlantedBugs
from strong.messages import Accept, Accepted, CatchUpRequest, Prepare, PreVote
from strong.ready import Role
from strong.wire import MAX_ROUND, MalformedMessage, decode_message, encode_message
from tests.strong_scripted import Scripted


@pytest.mark.parametrize("planted", [False, True], ids=["fixed", "replanted"])
def test_review_s1_a_leader_takes_no_catchup_reply_from_another_ballot(planted: bool) -> None:
    """n1 leads at (2,n1) with v accepted by n2 at slot 2, while n5 chose w there at
    (3,n5). A delayed catch-up reply carrying w reached n1, still leader, and
    raised its commit index; n1's next heartbeat under (2,n1) then made n2
    commit v (rule 3 covers only what n1's own ballot chose)."""
    s = Scripted(5, bugs=PlantedBugs(leader_takes_catchup=planted))
    assert s.elect("n4", 1.0) is Role.LEADER
    s.hold = lambda e: (
        ((e.src, e.dst) == ("n4", "n1") and isinstance(e.message, Accept))
        or ((e.src, e.dst) == ("n1", "n4") and isinstance(e.message, CatchUpRequest))
    )
    s.r["n4"].propose(1, b"a", 1.0)
    s.pump(1.0)
    s.tick("n4", 1.05)
    [request] = [e for e in s.held if isinstance(e.message, CatchUpRequest)]
    s.held.clear()
    s.restart("n4", 1.06)
    s.blocked |= {("n1", "n4"), ("n4", "n1"), ("n1", "n5"), ("n5", "n1")}
    s.hold = lambda e: (e.src, e.dst) == ("n1", "n3") and not isinstance(
        e.message, PreVote | Prepare
    )
    assert s.elect("n1", 1.6) is Role.LEADER
    s.r["n1"].propose(2, b"v", 1.61)
    s.pump(1.61)
    for a, b in [("n2", x) for x in ("n3", "n4", "n5")]:
        s.blocked |= {(a, b), (b, a)}
    assert s.elect("n5", 2.0) is Role.LEADER
    s.r["n5"].propose(3, b"w", 2.0)
    s.pump(2.0)
    s.tick("n5", 2.05)
    s.blocked.discard(("n4", "n1"))
    s.deliver(request, 2.1)
    s.pump(2.1)
    s.blocked.add(("n4", "n1"))
    s.tick("n1", 2.11)  # a heartbeat from n1, if it still leads
    assert s.applied["n4"].get(2) == (b"w",)
    if planted:
        assert s.applied["n2"].get(2) == (b"v",)  # the finding, re-planted
    else:
        assert s.applied["n2"].get(2) in (None, (b"w",)), "n2 committed a value nobody chose"


def test_review_s2_a_wiped_replica_never_votes_again_by_itself() -> None:
    """n2 accepted v at slot 1 and lost its disk while its Accepted was in flight.
    It used to vote again once it reached the first commit index announced to
    it (0 here); the old Accepted then chose v with n1, and n3 was elected with
    n2's vote and chose w for the same slot."""
    s = Scripted(3)
    assert s.elect("n1", 1.0) is Role.LEADER
    s.blocked.add(("n1", "n3"))
    s.hold = lambda e: isinstance(e.message, Accepted) and e.src == "n2"
    s.r["n1"].propose(1, b"v", 1.1)
    s.pump(1.1)
    s.wipe("n2", 1.12)
    s.hold = lambda e: False
    s.tick("n1", 1.15)
    for env in s.held:
        s.deliver(env, 1.16)
    s.held.clear()
    s.pump(1.16)
    assert s.applied["n1"].get(1) == (b"v",)
    s.isolate("n1")
    s.elect("n3", 2.0)
    s.r["n3"].propose(2, b"w", 2.05)
    s.pump(2.05)
    s.tick("n3", 2.2)
    assert not s.r["n2"].voting
    assert s.r["n3"].role is not Role.LEADER  # no quorum without n1 or a voting n2
    assert s.applied["n3"].get(1) in (None, (b"v",))


@pytest.mark.parametrize("planted", [False, True], ids=["fixed", "replanted"])
def test_review_s3_a_non_voter_does_not_acknowledge_heartbeats(planted: bool) -> None:
    """n1 is cut off and deposed by n3, which commits w. n2 loses its disk and
    reaches only n1: its acknowledgements used to confirm n1's read round, so
    n1 answered a linearizable read at an index missing w."""
    s = Scripted(3, bugs=PlantedBugs(nonvoter_acks=planted))
    assert s.elect("n1", 1.0) is Role.LEADER
    s.r["n1"].propose(1, b"a", 1.0)
    s.pump(1.0)
    s.tick("n1", 1.2)
    s.isolate("n1")
    s.tick("n1", 1.5)
    assert s.elect("n3", 1.7) is Role.LEADER
    s.r["n3"].propose(2, b"w", 1.7)
    s.pump(1.7)
    s.tick("n3", 1.71)
    assert s.applied["n3"].get(2) == (b"w",)
    s.wipe("n2", 1.72)
    s.blocked.clear()
    s.isolate("n3")
    s.tick("n1", 1.72)
    s.r["n1"].read_index(99, 1.73)
    s.pump(1.73)
    for t in (1.75, 1.9, 2.1, 2.4):
        s.tick("n1", t)
    answered = [r for r in s.reads["n1"] if r.request_id == 99]
    if planted:
        assert answered and answered[0].index < 2  # the finding: a read that misses w
        return
    assert answered == [], "a stale read was answered"
    assert s.r["n1"].role is not Role.LEADER  # check-quorum: a non-voter is not heard


def test_review_r1_a_round_whose_successor_cannot_encode_is_refused() -> None:
    """A decodable Prepare at round 2**64-1 used to be promised durably; every
    ballot the replica issued afterwards failed to encode and halted it."""
    with pytest.raises(MalformedMessage, match="round"):
        decode_message(encode_message(Prepare(Ballot(2**64 - 1, "n3"), 1)))
    s = Scripted(3)
    top = decode_message(encode_message(Prepare(Ballot(MAX_ROUND, "n3"), 1)))
    s.r["n1"].step("n3", top, 1.0)
    s.r["n1"].ready()
    s.r["n1"].election_deadline = 2.0
    s.r["n1"].tick(2.0)
    sent = [e.message for e in s.r["n1"].ready().outbox()]
    assert sent and all(isinstance(m, PreVote) and m.ballot.round == MAX_ROUND + 1 for m in sent)
    for message in sent:  # its successor still encodes (a peer refuses it, no one halts)
        assert encode_message(message)


def test_review_r2_an_accept_beyond_any_window_is_ignored() -> None:
    """A slot no leader can propose (far above the commit index it carries) is not
    stored: phase 1 would otherwise recover (and broadcast) every slot up to it."""
    s = Scripted(3)
    far = Accept(Ballot(1, "n1"), MAX_WINDOW + 10, (b"x",), 5)
    s.r["n2"].step("n1", far, 1.0)
    ready = s.r["n2"].ready()
    assert ready.persist == [] and ready.outbox() == []
    near = Accept(Ballot(1, "n1"), MAX_WINDOW + 5, (b"x",), 5)
    s.r["n2"].step("n1", near, 1.0)
    assert any(isinstance(e.message, Accepted) for e in s.r["n2"].ready().outbox())

"""Finding 7 in the pure core: a replica that lost its disk must not vote.

An acceptor's promise and accepted values are what makes a chosen value stay
chosen (replica rule 1). A node whose data directory was wiped restarts with
``promised = 0`` and nothing accepted; if it votes, it can form a quorum with a
node that never saw a chosen value, and that quorum chooses another value for
the same slot. The runtime therefore restarts such a node with
``voting=False``: it answers no Prepare, Accept or Heartbeat and learns by
catch-up; it votes again only through a membership change (replica rule 7).

Scenario (3 nodes, on the in-memory network): the leader L chooses X at slot s
with the help of W only (B is cut off from L); W's disk is wiped; L is
isolated; B and W are left alone together.
"""

from __future__ import annotations

import random

from strong.messages import Batch
from strong.replica import Replica
from strong.storage import DurableState
from tests.strong_network import Network


def _choose_with_one_follower() -> tuple[Network, str, str, str, int]:
    """L chooses X at slot s with W's help only; returns (net, L, W, B, s)."""
    net = Network(3, seed=7)
    leader = net.elect()
    wiped, other = [n for n in net.ids if n != leader]
    net.cut(leader, other)
    net.propose(leader, 1, b"X")
    net.tick(0.05)
    slot = max(s for s, batch in net.applied[leader] if batch == (b"X",))
    assert net.replicas[leader].commit_index >= slot
    assert all(batch != (b"X",) for _, batch in net.applied[other])
    return net, leader, wiped, other, slot


def _wipe(net: Network, node: str, *, voting: bool) -> None:
    """The node's disk is lost; it restarts empty (as the runtime would start it)."""
    net.disk[node] = []
    net.replicas[node] = Replica(
        net.configs[node], DurableState(), net.now, random.Random(99), voting=voting
    )
    net.applied[node] = []


def _chosen_at(net: Network, node: str, slot: int) -> Batch | None:
    for s, batch in net.applied[node]:
        if s == slot:
            return batch
    return None


def _alone_together(net: Network, leader: str, other: str) -> None:
    """Isolate the old leader; let the other two run, then propose Y there."""
    net.isolate(leader)
    net.tick(3.0)
    new = [n for n in net.ids if n != leader and net.replicas[n].leadership is not None]
    if new:
        net.propose(new[0], 2, b"Y")
    net.tick(1.0)


def test_finding7_control_a_wiped_acceptor_that_votes_helps_a_quorum_forget_a_chosen_value() -> None:
    """The hazard is real: with the old restart (a voter with amnesia) slot s gets two values.

    (A control: proves the scenario below can fail.)"""
    net, leader, wiped, other, slot = _choose_with_one_follower()
    _wipe(net, wiped, voting=True)
    _alone_together(net, leader, other)
    assert _chosen_at(net, leader, slot) == (b"X",)
    assert _chosen_at(net, other, slot) not in (None, (b"X",))


def test_finding7_a_wiped_acceptor_learns_but_does_not_vote() -> None:
    net, leader, wiped, other, slot = _choose_with_one_follower()
    _wipe(net, wiped, voting=False)
    _alone_together(net, leader, other)
    # No quorum without the old leader: nothing new chosen, and X is not forgotten.
    assert not net.replicas[wiped].voting
    assert _chosen_at(net, other, slot) is None
    assert all(net.replicas[n].leadership is None for n in (wiped, other))

    net.heal()
    net.elect()
    net.tick(1.0)
    for node in net.ids:
        assert _chosen_at(net, node, slot) in ((b"X",), (b"<snapshot>",), None)
    assert _chosen_at(net, other, slot) == (b"X",)
    assert _chosen_at(net, wiped, slot) == (b"X",)  # it learns...
    assert not net.replicas[wiped].voting  # ...but never votes by itself (rule 7)


def test_finding7_a_non_voter_sends_no_promise_and_no_accepted_and_starts_no_election() -> None:
    from strong.ballot import Ballot
    from strong.config import ReplicaConfig
    from strong.messages import Accept, Accepted, Prepare, Promise

    config = ReplicaConfig("n2", ("n1", "n2", "n3"))
    r = Replica(config, DurableState(), 0.0, random.Random(1), voting=False)
    r.step("n1", Prepare(Ballot(1, "n1"), 1), 0.1)
    r.step("n1", Accept(Ballot(1, "n1"), 1, (b"x",), 5), 0.2)
    r.tick(10.0)
    ready = r.ready()
    sent = [env.message for env in ready.outbox()]
    assert not any(isinstance(m, Promise | Accepted | Prepare) for m in sent)
    assert 1 not in r.accepted and r.leadership is None and r.candidacy is None
    assert not r.voting

"""The read behind the Consul face's ``?consistent``: a quorum round even under a lease.

``default`` reads may be answered from the leader's lease; ``consistent`` ones
must wait for a heartbeat round a quorum acknowledged, and a leader cut off
from its quorum must never answer one, lease or not.
"""

from __future__ import annotations

from tests.strong_network import Network


def test_a_quorum_read_waits_for_a_round_while_a_lease_read_does_not() -> None:
    net = Network(3)
    leader = net.elect()
    net.tick(0.2)  # heartbeats acknowledged: the lease is held
    r = net.replicas[leader]
    r.read_index(1, net.now)
    r.read_index(2, net.now, quorum=True)
    net.collect(leader)
    assert [x.request_id for x in net.reads[leader]] == [1]  # the lease answers 1 only
    net.deliver_all()
    assert [x.request_id for x in net.reads[leader]] == [1, 2]  # 2 after the round


def test_a_cut_off_leader_answers_no_quorum_read_while_its_lease_lasts() -> None:
    net = Network(3)
    leader = net.elect()
    net.tick(0.2)
    net.isolate(leader)
    r = net.replicas[leader]
    r.read_index(1, net.now)
    r.read_index(2, net.now, quorum=True)
    net.deliver_all()
    assert [x.request_id for x in net.reads[leader]] == [1]  # still within its lease
    net.tick(0.1)
    assert [x.request_id for x in net.reads[leader]] == [1]

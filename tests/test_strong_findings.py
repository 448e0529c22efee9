"""Issue 7's review findings in the strong core, each as the test that failed before its fix.

Every test here is named after its finding and drives a replica by hand (rung 1
of the ladder) with exactly the messages of the reported sequence. The
simulator reaches the same paths with randomised configurations
(``configsvc.sim.strong_swarm``); these tests pin the sequence down.
"""

from __future__ import annotations

import random

from strong.ballot import Ballot
from strong.config import PlantedBugs, ReplicaConfig
from strong.messages import Accept, CatchUpReply, Prepare, Promise, payload_bytes
from strong.ready import Role
from strong.replica import Replica
from strong.storage import DurableState
from tests.strong_network import Network

FIVE = ("n1", "n2", "n3", "n4", "n5")


def _replica(node: str, voters: tuple[str, ...] = FIVE, **kw: object) -> Replica:
    config = ReplicaConfig(node, voters, **kw)  # type: ignore[arg-type]
    return Replica(config, DurableState(), 0.0, random.Random(1))


def _finding1(bugs: PlantedBugs) -> tuple[int, list[int], bool]:
    """(commit index, slots committed, X reported chosen) after the sequence below."""
    c = _replica("n3", catchup_max_slots=2, bugs=bugs)
    b1 = Ballot(1, "n1")
    values = [(b"v1",), (b"v2",), (b"v3",), (b"v4",), (b"X",)]
    for slot, value in enumerate(values, start=1):
        c.step("n1", Accept(b1, slot, value, 0), 0.1)
    c.ready()
    reply = CatchUpReply(Ballot(2, "n2"), 1, ((b"v1",), (b"v2",)), 5)
    c.step("n1", reply, 0.2)
    c.step("n1", reply, 0.21)  # a duplicate, or the answer to a resent request
    committed = [slot for slot, _ in c.ready().committed]
    c.step("n4", Prepare(Ballot(3, "n4"), 3), 0.3)
    [promise] = [e.message for e in c.ready().messages if isinstance(e.message, Promise)]
    x = next(v for v in promise.accepted if v.slot == 5)
    return c.commit_index, committed, x.chosen


def test_finding1_catchup_reply_commits_only_the_values_it_carries() -> None:
    """Old leader A=n1 (ballot b1) had C=n3 accept slots 1..5, the last one (X)
    never chosen. B=n2 (ballot b2) chose Y at slot 5 and A caught up from B.
    A answers C's catch-up with a reply cut short at ``catchup_max_slots`` (2
    slots) but carrying B's commit index 5, and the reply arrives twice. C
    must not commit slots 3..5 from its own b1 entries: B's commit index says
    nothing about values accepted at b1 (rule 3 covers only the commit index
    announced by the leader of the ballot the value was accepted at)."""
    assert _finding1(PlantedBugs()) == (2, [1, 2], False)
    # Re-planted (the commit index taken from the reply): X is committed and
    # reported chosen, which is what let a later leader choose it a second time.
    assert _finding1(PlantedBugs(catchup_commits_uncarried=True)) == (5, [1, 2, 3, 4, 5], True)


def _run_delayed(
    replicas: dict[str, Replica],
    queue: list[tuple[float, str, str, object]],
    now: float,
    delay: float,
    reads_done: list[int],
) -> None:
    """Deliver what is due at ``now``; everything sent is delivered ``delay`` later."""
    due = [m for m in queue if m[0] <= now]
    queue[:] = [m for m in queue if m[0] > now]
    for _, src, dst, message in due:
        replicas[dst].step(src, message, now)  # type: ignore[arg-type]
    for nid, r in replicas.items():
        r.tick(now)
        ready = r.ready()
        reads_done.extend(rs.request_id for rs in ready.reads)
        queue.extend((now + delay, e.src, e.dst, e.message) for e in ready.messages)
        del nid


def _finding3(bugs: PlantedBugs) -> tuple[bool, int]:
    """Links of 150 ms, no lease, and a linearizable read arriving at the leader
    every millisecond, each on its own pass of the driver loop. Returns (every
    read issued four link delays before the end was answered, heartbeat rounds
    the leader remembers at the end)."""
    voters = ("n1", "n2", "n3")
    delay = 0.15
    replicas = {
        n: _replica(n, voters, lease_duration=0.0, election_timeout=2.0, heartbeat_interval=0.5,
                    bugs=bugs)
        for n in voters
    }
    queue: list[tuple[float, str, str, object]] = []
    done: list[int] = []
    now = 2.0  # one election timeout after boot: pre-votes are granted
    for nid, r in replicas.items():
        r.election_deadline = now + 0.001 if nid == "n1" else 100.0  # n1 campaigns
    while replicas["n1"].leadership is None or not replicas["n1"].leadership.active:
        now = round(now + 0.001, 6)
        _run_delayed(replicas, queue, now, delay, done)
        assert now < 4.0, "no leader"
    leader = replicas["n1"]
    issued = 0
    end = now + 2.0
    while now < end:
        now = round(now + 0.001, 6)
        issued += 1
        leader.read_index(issued, now)
        _run_delayed(replicas, queue, now, delay, done)
    answered = set(done)
    old_enough = range(1, issued - int(4 * delay / 0.001))
    assert leader.leadership is not None
    return all(i in answered for i in old_enough), len(leader.leadership.rounds)


def test_finding3_heartbeat_rounds_coalesce_under_read_load_on_slow_links() -> None:
    """Before the fix every pass started a heartbeat round and only the last 64
    were remembered: by the time a round's acknowledgements arrived it was
    forgotten, no round reached a quorum, the lease never renewed and no read
    was answered while the node stayed leader."""
    healthy, rounds = _finding3(PlantedBugs())
    assert healthy and rounds <= 4
    assert _finding3(PlantedBugs(exact_round_acks=True))[0] is False


def _finding4_returning_node(bugs: PlantedBugs) -> tuple[Ballot, Ballot]:
    """A follower cut off for ten election timeouts comes back. Returns the
    leader's ballot before and after."""
    net = Network(3, bugs=bugs)
    leader = net.elect()
    before = net.replicas[leader].promised
    away = next(n for n in net.ids if n != leader)
    net.isolate(away)
    net.tick(5.0)
    net.heal()
    net.tick(2.0)
    now_leader = net.leader()
    assert now_leader is not None
    return before, net.replicas[now_leader].promised


def test_finding4_a_returning_partitioned_node_does_not_depose_the_leader() -> None:
    before, after = _finding4_returning_node(PlantedBugs())
    assert after == before
    before, after = _finding4_returning_node(PlantedBugs(no_prevote=True))
    assert after > before  # re-planted: the returning node's ballot wins


def test_finding4_a_replica_that_stood_down_never_campaigns() -> None:
    """A replica whose state machine halted (unsupported version) stands down:
    as leader it steps down; it still votes, but never starts an election."""
    net = Network(3)
    leader = net.elect()
    net.replicas[leader].stand_down()
    net.tick(3.0)
    new = net.elect()
    assert new != leader
    ballot = net.replicas[new].promised
    halted = net.replicas[leader]
    others = [n for n in net.ids if n not in (leader, new)]
    net.isolate(new)  # the leader dies: only the halted node and one other remain
    net.tick(5.0)
    assert halted.role is not Role.LEADER and halted.candidacy is None
    assert halted.promised.node_id != leader, "the halted replica campaigned"
    # the remaining healthy node can still be elected with the halted one's vote
    assert net.replicas[others[0]].role is Role.LEADER and net.replicas[others[0]].promised > ballot


def _finding2(bugs: PlantedBugs) -> tuple[int, int]:
    """40 puts of 512 KiB proposed at once, over links that refuse any message
    carrying more than 16 MiB (as a receiver's frame cap does), then a replica
    that was away catches up. Returns (slots committed everywhere, largest
    payload sent)."""
    cap = 16 << 20
    net = Network(3, bugs=bugs)
    leader = net.elect()
    away = next(n for n in net.ids if n != leader)
    largest = 0

    net.isolate(away)
    for i in range(40):
        net.replicas[leader].propose(100 + i, bytes([i]) * (512 << 10), net.now)
    for _ in range(60):
        net.now = round(net.now + 0.05, 6)
        for nid in net.ids:
            net.replicas[nid].tick(net.now)
        for nid in net.ids:
            net.collect(nid)
        while net.queue:
            env = net.queue.popleft()
            size = payload_bytes(env.message)
            largest = max(largest, size)
            if (env.src, env.dst) in net.cut_links or size > cap:
                continue
            net.replicas[env.dst].step(env.src, env.message, net.now)
            net.collect(env.dst)
        if net.cut_links and net.replicas[leader].commit_index >= 20:
            net.heal()
    applied = min(sum(len(b) for _, b in net.applied[n]) for n in net.ids)
    return applied, largest


def test_finding2_batches_and_catchup_replies_are_bounded_in_bytes() -> None:
    committed, largest = _finding2(PlantedBugs())
    assert committed == 40
    assert largest <= 8 << 20  # catch-up replies stay under catchup_max_bytes
    committed, largest = _finding2(PlantedBugs(unbounded_bytes=True))
    assert largest > 16 << 20  # re-planted: one ~20 MiB batch that nobody accepts
    assert committed == 0

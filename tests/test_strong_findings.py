"""Issue 7's review findings in the strong core, each as the test that failed before its fix.

Every test here is named after its finding and drives a replica by hand (rung 1
of the ladder) with exactly the messages of the reported sequence. The
simulator reaches the same paths with randomised configurations
(``configsvc.sim.strong_swarm``); these tests pin the sequence down.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import crc32c

from configsvc.runtime.strong_driver import StrongDriver
from strong.ballot import Ballot
from strong.config import PlantedBugs, ReplicaConfig
from strong.messages import (
    Accept,
    CatchUpReply,
    CatchUpRequest,
    InstallSnapshot,
    Message,
    Prepare,
    Promise,
    payload_bytes,
)
from strong.ready import Role
from strong.replica import Replica
from strong.sm_snapshot import snapshot_decodes
from strong.snapshot_transfer import Offer, SnapshotReceiver, SnapshotSender
from strong.storage import DurableState
from tests.strong_network import Network
from tests.strong_snapshots import encoded_snapshot
from tests.test_strong_driver import MemoryStorage

FIVE = ("n1", "n2", "n3", "n4", "n5")


def _replica(node: str, voters: tuple[str, ...] = FIVE, **kw: object) -> Replica:
    config = ReplicaConfig(node, voters, snapshot_valid=snapshot_decodes, **kw)  # type: ignore[arg-type]
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
    [promise] = [e.message for e in c.ready().outbox() if isinstance(e.message, Promise)]
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
        queue.extend((now + delay, e.src, e.dst, e.message) for e in ready.outbox())
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
    sent: list[Message] = []
    net.isolate(away)
    for i in range(40):
        net.replicas[leader].propose(100 + i, bytes([i]) * (512 << 10), net.now)
    for _ in range(60):
        _tick_capped(net, 0.05, cap, sent)
        if net.cut_links and net.replicas[leader].commit_index >= 20:
            net.heal()
    largest = max(map(payload_bytes, sent))
    applied = min(sum(len(b) for _, b in net.applied[n]) for n in net.ids)
    return applied, largest


def test_finding2_batches_and_catchup_replies_are_bounded_in_bytes() -> None:
    committed, largest = _finding2(PlantedBugs())
    assert committed == 40
    assert largest <= 8 << 20  # catch-up replies stay under catchup_max_bytes
    committed, largest = _finding2(PlantedBugs(unbounded_bytes=True))
    assert largest > 16 << 20  # re-planted: one ~20 MiB batch that nobody accepts
    assert committed == 0


# ---------------------------------------------------------------- finding 2: snapshots and promises


def _tick_capped(net: Network, seconds: float, cap: int, sent: list[Message],
                 drop: Callable[[Message], bool] = lambda m: False) -> None:
    """``net.tick``, over links that refuse any message carrying more than ``cap``
    bytes (a receiver's frame cap) and lose the messages ``drop`` picks.
    Every message offered to the links is appended to ``sent``."""
    end = net.now + seconds
    while net.now < end:
        net.now = round(net.now + 0.01, 6)
        for nid in net.ids:
            net.replicas[nid].tick(net.now)
        for nid in net.ids:
            net.collect(nid)
        while net.queue:
            env = net.queue.popleft()
            sent.append(env.message)
            if (env.src, env.dst) in net.cut_links or payload_bytes(env.message) > cap:
                continue
            if drop(env.message):
                continue
            net.replicas[env.dst].step(env.src, env.message, net.now)
            net.collect(env.dst)


SNAPSHOT = encoded_snapshot(100 << 10)  # 100 KiB of state


def _lagging_replica_installs_a_snapshot(
    bugs: PlantedBugs, drop: Callable[[Message], bool] = lambda m: False
) -> tuple[Replica, Replica, list[Message]]:
    """A replica away while the others commit 30 slots and compact them into a
    100 KiB snapshot, then back, over links that refuse more than 32 KiB per
    message. Returns (the leader, the replica that was away, every message sent)."""
    cap = 32 << 10
    net = Network(3, catchup_max_bytes=16 << 10, max_batch_bytes=4 << 10, bugs=bugs)
    sent: list[Message] = []
    leader = net.elect()
    away = next(n for n in net.ids if n != leader)
    net.isolate(away)
    for i in range(30):
        net.propose(leader, 100 + i, bytes([i]) * 1024)
    _tick_capped(net, 0.5, cap, sent)
    index = net.replicas[leader].commit_index
    assert index >= 30
    for nid in net.ids:
        if nid != away:
            net.replicas[nid].compact(index, SNAPSHOT)
    net.heal()
    _tick_capped(net, 5.0, cap, sent, drop)
    return net.replicas[leader], net.replicas[away], sent


def test_finding2_snapshots_travel_in_chunks_over_a_small_frame_cap() -> None:
    """Before the fix a snapshot travelled whole: one larger than the frame cap
    was refused every time and the lagging replica never caught up."""
    leader, away, sent = _lagging_replica_installs_a_snapshot(PlantedBugs())
    assert away.state_snapshot == SNAPSHOT and away.snapshot_index == leader.snapshot_index
    assert away.commit_index == leader.commit_index
    chunks = [m for m in sent if isinstance(m, InstallSnapshot)]
    assert len(chunks) >= len(SNAPSHOT) // (16 << 10)
    assert max(payload_bytes(m) for m in sent) <= 16 << 10
    # Re-planted: the snapshot goes whole, is refused, and the replica stays behind.
    leader, away, sent = _lagging_replica_installs_a_snapshot(PlantedBugs(unchunked_snapshots=True))
    assert away.snapshot is None and away.commit_index < leader.commit_index


def test_finding2_a_snapshot_transfer_resumes_after_a_lost_chunk() -> None:
    """The first copy of every chunk past the first is lost: the receiver asks
    again from the offset it holds; nothing restarts from offset 0."""
    seen: set[int] = set()

    def lose_first_copy(m: Message) -> bool:
        if not isinstance(m, InstallSnapshot) or m.offset == 0 or m.offset in seen:
            return False
        seen.add(m.offset)
        return True

    leader, away, sent = _lagging_replica_installs_a_snapshot(PlantedBugs(), lose_first_copy)
    assert away.state_snapshot == SNAPSHOT and away.commit_index == leader.commit_index
    assert len(seen) >= 5
    assert sum(1 for m in sent if isinstance(m, InstallSnapshot) and m.offset == 0) == 1


def _chunks(index: int, data: bytes, size: int, crc: int | None = None) -> list[InstallSnapshot]:
    crc = crc32c.crc32c(data) if crc is None else crc
    return [InstallSnapshot(Ballot(1, "n1"), index, off, len(data), crc, data[off : off + size])
            for off in range(0, len(data), size)]


def _installed(r: Replica) -> bytes | None:
    ready = r.ready()
    return ready.snapshot.data if ready.snapshot is not None else None


def test_finding2_a_partial_corrupted_or_mixed_snapshot_is_never_installed() -> None:
    """The receiver installs only a complete snapshot whose CRC32C matches, never
    appends a chunk of another snapshot, and a newer snapshot restarts it."""
    a, b = encoded_snapshot(2500, b"A"), encoded_snapshot(2500, b"B")
    r = _replica("n3", ("n1", "n2", "n3"))
    s = _chunks(10, a, 1000)
    t = _chunks(12, b, 1000)
    # partial: two chunks of three
    r.step("n1", s[0], 1.0)
    r.step("n1", s[1], 1.0)
    assert _installed(r) is None and r.snapshot is None and r.commit_index == 0
    # mixed: the next chunk of another snapshot at the expected offset is not appended
    r.step("n1", t[2], 1.0)
    assert _installed(r) is None and r.snapshot is None
    r.step("n1", s[2], 1.0)
    assert _installed(r) == a and r.snapshot_index == 10 and r.commit_index == 10
    # corrupted: every chunk names a checksum the bytes do not have
    r = _replica("n3", ("n1", "n2", "n3"))
    for c in _chunks(10, a, 1000, crc=crc32c.crc32c(a) ^ 1):
        r.step("n1", c, 1.0)
    assert _installed(r) is None and r.snapshot is None and r.commit_index == 0
    # a newer snapshot restarts the transfer; its data never mixes with the older one's
    r = _replica("n3", ("n1", "n2", "n3"))
    r.step("n1", s[0], 1.0)
    for c in t:
        r.step("n1", c, 1.0)
    r.step("n1", s[1], 1.0)
    r.step("n1", s[2], 1.0)
    assert _installed(r) == b and r.snapshot_index == 12
    # the receiver asks for the next chunk at the offset it holds
    r = _replica("n3", ("n1", "n2", "n3"))
    r.step("n1", s[0], 1.0)
    asks = [e.message for e in r.ready().outbox() if isinstance(e.message, CatchUpRequest)]
    assert asks == [CatchUpRequest(r.promised, 1, 10, 1000)]


def _candidate_behind(
    bugs: PlantedBugs, drop: Callable[[Message], bool] = lambda m: False
) -> tuple[Network, str, int, list[Message]]:
    """n3 is away while n1 commits 40 slots of 4 KiB (no compaction); then n1
    is cut off and n3 campaigns: n2's Promise reports all 40 slots (160 KiB)
    over links that refuse more than 32 KiB per message. Returns (the network,
    the candidate, the commit index n1 reached, every message sent)."""
    cap = 32 << 10
    net = Network(3, catchup_max_bytes=16 << 10, max_batch_bytes=4 << 10, bugs=bugs)
    sent: list[Message] = []
    leader = net.elect()
    others = [n for n in net.ids if n != leader]
    candidate, helper = others
    net.isolate(candidate)
    for i in range(40):
        net.propose(leader, 100 + i, bytes([i]) * (4 << 10))
    _tick_capped(net, 0.5, cap, sent)
    committed = net.replicas[leader].commit_index
    assert committed >= 40 and net.replicas[helper].commit_index >= 40
    net.heal()
    net.isolate(leader)
    net.replicas[helper].election_deadline = float("inf")  # only the candidate campaigns
    net.replicas[helper].campaigning = False
    _tick_capped(net, 5.0, cap, sent, drop)
    return net, candidate, committed, sent


def test_finding2_a_promise_is_bounded_in_bytes() -> None:
    """Before the fix a Promise reported every accepted slot at once: a
    candidate behind by more than a frame's worth never received a quorum of
    promises and no leader was elected. Now the acceptor reports up to a byte
    budget and says where it stopped; the candidate asks for the rest before
    it may activate (phase 1 still covers every slot above its commit index)."""
    net, candidate, committed, sent = _candidate_behind(PlantedBugs())
    r = net.replicas[candidate]
    assert r.leadership is not None and r.leadership.active
    assert r.commit_index >= committed  # it re-proposed every chosen slot
    assert max(payload_bytes(m) for m in sent) <= 16 << 10
    parts = [m for m in sent if isinstance(m, Promise) and m.truncated]
    assert parts, "the Promise was never split"
    # Re-planted: the whole report in one Promise, refused by the frame cap.
    net, candidate, _, _ = _candidate_behind(PlantedBugs(unbounded_bytes=True))
    assert net.replicas[candidate].leadership is None


def test_finding2_a_snapshot_of_the_same_index_with_other_bytes_restarts_the_transfer() -> None:
    """Two senders whose snapshots at one index differ in bytes: a chunk of the
    other one mid-transfer drops the transfer (asking it for our offset again
    would loop forever), and the next request starts at offset 0."""
    a, other = encoded_snapshot(2500, b"A"), encoded_snapshot(2500, b"a")
    r = _replica("n3", ("n1", "n2", "n3"))
    r.step("n1", _chunks(10, a, 1000)[0], 1.0)
    r.ready()
    r.step("n2", _chunks(10, other, 1000)[1], 1.0)
    assert r.receiver.position(r.commit_index) == (0, 0)
    for c in _chunks(10, other, 1000):
        r.step("n2", c, 1.0)
    assert _installed(r) == other


def test_finding2_a_transfer_completes_while_the_sender_compacts() -> None:
    """The sender compacts after every chunk it sends (a newer snapshot each
    time): the receiver's transfer stays pinned to the snapshot it started on
    and completes, instead of restarting forever; an idle pin is dropped."""
    sender = SnapshotSender(idle=1.0)
    receiver = SnapshotReceiver()
    snapshots = {i: bytes([i]) * 2500 for i in range(10, 20)}
    ballot = Ballot(1, "n1")
    outcome, got, now, index = Offer.APPENDED, b"", 0.0, 10
    while outcome is Offer.APPENDED:
        assert index in snapshots, "the transfer never completed"
        at, offset = receiver.position(0)
        current = (index, snapshots[index], crc32c.crc32c(snapshots[index]))
        outcome, got = receiver.offer(
            sender.answer("n3", CatchUpRequest(ballot, 1, at, offset), ballot, current, 1000, now)
        )
        index += 1  # compacted again
        now += 0.1
    assert outcome is Offer.COMPLETE and got == snapshots[10]
    # idle for longer than ``idle``: the pin is gone, a request starts on the current snapshot
    current = (19, snapshots[19], crc32c.crc32c(snapshots[19]))
    chunk = sender.answer("n3", CatchUpRequest(ballot, 1, 10, 1000), ballot, current, 1000, now + 2)
    assert (chunk.index, chunk.offset) == (19, 0)


def test_finding2_a_send_the_transport_refuses_is_counted() -> None:
    """The transport's ``send`` returns False when it cannot queue a message;
    the driver counted nothing before. The core resends whatever matters (see
    ``configsvc.runtime.strong_driver``), so the driver only counts it: here a replica of three
    whose every send is refused campaigns (pre-votes) and counts each refusal."""
    async def main() -> tuple[int, int]:
        offered: list[str] = []

        def refuse(dst: str, payload: bytes) -> bool:
            offered.append(dst)
            return False

        config = ReplicaConfig("n1", ("n1", "n2", "n3"), election_timeout=0.2,
                               heartbeat_interval=0.05, lease_duration=0.1)
        driver = StrongDriver(config, MemoryStorage(), refuse, rng=random.Random(1))
        await driver.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while len(offered) < 4:
                assert asyncio.get_running_loop().time() < deadline, "nothing was sent"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            return len(offered), driver.loop.stats.send_failures
        finally:
            await driver.close()

    offered, refused = asyncio.run(main())
    assert refused == offered >= 4


def test_finding2_a_lost_promise_part_is_asked_for_again() -> None:
    """The first copy of every continuation Prepare and every Promise part
    after the first is lost, in every election: the candidate asks again
    (every ``retransmit_interval``) and still wins with a complete phase 1."""
    seen: set[tuple[str, Ballot, int]] = set()

    def lose_first_copy(m: Message) -> bool:
        if isinstance(m, Prepare | Promise) and m.from_slot > 1:
            key = (type(m).__name__, m.ballot, m.from_slot)
            if key not in seen:
                seen.add(key)
                return True
        return False

    net, candidate, committed, _ = _candidate_behind(PlantedBugs(), lose_first_copy)
    r = net.replicas[candidate]
    assert seen and r.leadership is not None and r.leadership.active
    assert r.commit_index >= committed


def test_finding2_a_promise_part_is_bounded_in_slots_too() -> None:
    """No-ops weigh no bytes: a report of many no-op slots is still cut at
    ``promise_max_slots`` (receivers refuse more than ``WireLimits.max_slots``)."""
    r = _replica("n2", ("n1", "n2", "n3"), promise_max_slots=3)
    for slot in range(1, 11):
        r.step("n1", Accept(Ballot(1, "n1"), slot, (), 0), 0.1)
    r.ready()
    r.step("n3", Prepare(Ballot(2, "n3"), 1), 0.2)
    [promise] = [e.message for e in r.ready().outbox() if isinstance(e.message, Promise)]
    assert [v.slot for v in promise.accepted] == [1, 2, 3] and promise.truncated
    r.step("n3", Prepare(Ballot(2, "n3"), 10), 0.3)
    [promise] = [e.message for e in r.ready().outbox() if isinstance(e.message, Promise)]
    assert [v.slot for v in promise.accepted] == [10] and not promise.truncated

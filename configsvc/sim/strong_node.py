"""One strong-store node under simulation: the replica core driven like production.

The driver contract, exactly as the asyncio driver obeys it: take ``Ready``,
send its ``send_first`` (the leader's Accepts), append its records, fsync (here: a simulated disk latency during which the
node handles nothing and a crash loses the records), then send its messages,
then install/apply, then answer clients. Inputs that arrive while the node is
busy queue up and are all handled before the next ``Ready``: group commit.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from configsvc.sim.sim_storage import SimStorage
from configsvc.sim.world import World
from strong.ballot import Ballot
from strong.config import ReplicaConfig
from strong.member_log import ChangeOutcome
from strong.messages import Batch, Envelope, Message, payload_bytes
from strong.ops import Get
from strong.ready import Ready
from strong.replica import Replica
from strong.results import Applied, Result
from strong.state_machine import StateMachine
from strong.storage import recover


@dataclass(frozen=True, slots=True)
class ClientRequest:
    op_id: int
    client_id: str
    seq: int
    #: encoded Command for writes; a Get for linearizable reads
    write: bytes | None = None
    read: Get | None = None


@dataclass(frozen=True, slots=True)
class ClientResponse:
    op_id: int
    #: "ok" (result), "not_leader" (safe to retry elsewhere)
    status: str
    result: Result | None = None
    leader_hint: str | None = None


#: (node, slot, batch) for every applied slot; (node, index, hash) for sampled state hashes
ApplyObserver = Callable[[str, int, Batch], None]
HashObserver = Callable[[str, int, str], None]


class SimStrongNode:
    def __init__(
        self,
        world: World,
        config: ReplicaConfig,
        *,
        fsync_latency: tuple[float, float] = (0.0005, 0.005),
        max_message_bytes: int = 64 << 20,
        tick_interval: float = 0.01,
        rehand: bool = False,
        snapshot_every: int = 40,
        hash_every: int = 20,
        on_apply: ApplyObserver | None = None,
        on_hash: HashObserver | None = None,
        make_state_machine: Callable[[], StateMachine] = StateMachine,
    ) -> None:
        self.world = world
        self.id = config.node_id
        self.config = config
        self.storage = SimStorage()
        #: False once the disk was wiped (the runtime's reset: a learner from then on)
        self.voting = True
        #: planted bug: a wiped node comes back as a voter with empty state
        self.wiped_votes = False
        #: taken out of service for good (a replaced node): never restarts
        self.decommissioned = False
        #: outcomes of membership changes this node answered (``Ready.changes``)
        self.change_outcomes: list[ChangeOutcome] = []
        self.fsync_latency = fsync_latency
        self.max_message_bytes = max_message_bytes
        #: messages the receiver would refuse for their size (never sent)
        self.oversize = 0
        self.tick_interval = tick_interval
        self.rehand = rehand
        #: session writes handed again to a new leader (``_rehand``)
        self.rehanded = 0
        self.snapshot_every = snapshot_every
        self.hash_every = hash_every
        self.on_apply = on_apply
        self.on_hash = on_hash
        self.make_state_machine = make_state_machine
        self.clock = world.clocks[self.id]
        self.up = False
        self.epoch = 0
        self.restarts = 0
        #: fault: crash right after next sending this kind of reply, then restart
        #: after the given seconds
        self.crash_after_send: dict[type, float] = {}
        world.register(self.id, self._receive)
        self._boot()

    # ------------------------------------------------------------------ lifecycle

    def _boot(self) -> None:
        self.epoch += 1
        self.up = True
        self.world.down.discard(self.id)
        durable = recover(self.storage.load())
        rng = random.Random(self.world.rng.getrandbits(64))
        self.replica = Replica(self.config, durable, self._now(), rng, voting=self.voting)
        self.sm = self.make_state_machine()
        self.busy = False
        self.inbox: list[tuple[str, Any]] = []
        self.next_request = 0
        self.writes: dict[tuple[str, int], tuple[str, int]] = {}
        #: (client_id, seq) -> the ballot of the leadership it was proposed under
        self.proposed: dict[tuple[str, int], Ballot] = {}
        #: session writes given to the replica and not answered: key -> (request id,
        #: command, the ballot of the leader followed when handed)
        self.unanswered: dict[tuple[str, int], tuple[int, bytes, Ballot | None]] = {}
        self.rehanded_at: Ballot | None = None
        #: request ids handed more than once: a refusal may be an old copy's
        self.copies: set[int] = set()
        self.requests: dict[int, tuple[str, int, tuple[str, int]]] = {}
        self.reads: dict[int, tuple[str, int, Get]] = {}
        self.ready_reads: list[tuple[int, int]] = []
        self.world.after(self.tick_interval, self._tick, self.epoch)
        self._process()

    def crash(self) -> None:
        if not self.up:
            return
        self.up = False
        self.epoch += 1
        self.world.down.add(self.id)
        self.storage.crash()
        self.inbox = []

    def wipe(self) -> None:
        """The disk is lost: crash, and come back empty as a learner (replica rule 7),
        as ``configsvc node reset`` makes it (or, planted bug, as a voter)."""
        self.crash()
        self.storage = SimStorage()
        self.voting = self.wiped_votes

    def restart(self) -> None:
        if self.up or self.decommissioned:
            return
        self.restarts += 1
        self._boot()

    def _now(self) -> float:
        return self.clock.offset + self.clock.rate * self.world.now

    # ------------------------------------------------------------------ inputs

    def _receive(self, src: str, message: Any) -> None:
        if not self.up:
            return
        if self.busy:
            self.inbox.append((src, message))
            return
        self._handle(src, message)
        self._process()

    def _tick(self, epoch: int) -> None:
        if epoch != self.epoch:
            return
        self.world.after(self.tick_interval, self._tick, epoch)
        if self.busy:
            return
        self.replica.tick(self._now())
        if self.unanswered:
            self._rehand()
        self._process()

    def _handle(self, src: str, message: Any) -> None:
        now = self._now()
        if isinstance(message, ClientRequest):
            self._client_request(src, message, now)
        else:
            msg: Message = message
            self.replica.step(src, msg, now)

    def _client_request(self, client: str, req: ClientRequest, now: float) -> None:
        self.next_request += 1
        rid = self.next_request
        if req.write is not None:
            key = (req.client_id, req.seq)
            self.writes[key] = (client, req.op_id)
            lead = self.replica.leadership
            if req.seq and lead is not None and self.proposed.get(key) == lead.ballot:
                # A retry of a command this leadership already holds: it will be
                # applied (or this node steps down), so proposing it again only
                # queues a duplicate behind it (a retry storm under load).
                return
            self.requests[rid] = (client, req.op_id, key)
            if lead is not None:
                self.proposed[key] = lead.ballot
            if self.rehand and req.seq:
                self.unanswered[key] = (rid, req.write, self.replica.followed_ballot)
            self.replica.propose(rid, req.write, now)
        elif req.read is not None:
            self.reads[rid] = (client, req.op_id, req.read)
            self.replica.read_index(rid, now)

    # ------------------------------------------------------------------ Ready

    def _process(self) -> None:
        # One Ready at a time: the next is taken only after this one completes.
        assert not self.busy, "a Ready was taken while the previous one was in flight"
        ready = self.replica.ready()
        if ready.empty():
            return
        self._send_all(ready.send_first)  # the leader's Accepts: before its own fsync
        self.storage.append(ready.persist)
        if not ready.persist:
            self._complete(ready)
            return
        self.busy = True
        lo, hi = self.fsync_latency
        latency = lo + (hi - lo) * self.world.rng.random()  # rng.uniform(lo, hi), inlined
        self.world.after(latency, self._synced, self.epoch, ready)

    def _synced(self, epoch: int, ready: Ready) -> None:
        if epoch != self.epoch:
            return  # crashed during the fsync: the records were lost with it
        self.storage.sync()
        self.busy = False
        self._complete(ready)
        while self.inbox and not self.busy and epoch == self.epoch:
            batch, self.inbox = self.inbox, []
            for src, message in batch:
                self._handle(src, message)
            self._process()

    def _send_all(self, envelopes: list[Envelope]) -> None:
        send = self.world.send
        cap = self.max_message_bytes
        for env in envelopes:
            # Every message, snapshot chunks included, is bounded by its sender
            # (issue 7, finding 2); one that is not is refused by the receiver.
            if payload_bytes(env.message) > cap:
                self.oversize += 1  # the receiver's frame cap refuses it
                continue
            send(env.src, env.dst, env.message)

    def _complete(self, ready: Ready) -> None:
        self._send_all(ready.messages)
        if self.crash_after_send and self._crash_after_reply(ready):
            return
        if ready.snapshot is not None and ready.snapshot.index > self.sm.applied_index:
            self.sm = type(self.sm).restore(ready.snapshot.data)
        for slot, batch in ready.committed:
            if slot <= self.sm.applied_index:
                continue
            for applied in self.sm.apply(slot, batch):
                self._answer_write(applied)
            if self.on_apply is not None:
                self.on_apply(self.id, slot, batch)
            if self.on_hash is not None and slot % self.hash_every == 0:
                self.on_hash(self.id, slot, self.sm.state_hash())
        for rs in ready.reads:
            self.ready_reads.append((rs.index, rs.request_id))
        if self.ready_reads:
            self._serve_reads()
        self.change_outcomes.extend(ready.changes)
        for rej in ready.rejected:
            target = self._rejected_target(rej.request_id)
            if target is not None:
                client, op_id = target
                self._respond(client, ClientResponse(op_id, "not_leader", None, rej.leader_hint))
        if self.sm.applied_index - self.replica.snapshot_index >= self.snapshot_every:
            self.replica.compact(self.sm.applied_index, self.sm.snapshot())

    def _crash_after_reply(self, ready: Ready) -> bool:
        fired = [k for k in self.crash_after_send if any(isinstance(e.message, k) for e in ready.messages)]
        if not fired:
            return False
        # Power loss right after an acceptor's reply: whatever the core has
        # not yet asked to persist (nothing, if it obeys its contract) is gone.
        restart_after = self.crash_after_send.pop(fired[0])
        self.crash()
        self.world.after(restart_after, self.restart)
        return True

    def _rehand(self) -> None:
        """Another leader took over: hand it every session write still unanswered,
        as the production driver does (``StrongDriver._rehand``; a copy applies
        once, the state machine remembering each client's sequence numbers)."""
        ballot = self.replica.followed_ballot
        if ballot is None or ballot == self.rehanded_at:
            return
        self.rehanded_at = ballot
        now = self._now()
        lead = self.replica.leadership
        for key, (rid, command, handed_at) in list(self.unanswered.items()):
            if handed_at == ballot or rid not in self.requests:
                continue
            self.unanswered[key] = (rid, command, ballot)
            if lead is not None:
                self.proposed[key] = lead.ballot
            self.rehanded += 1
            self.copies.add(rid)
            self.replica.propose(rid, command, now)

    def _rejected_target(self, rid: int) -> tuple[str, int] | None:
        if rid in self.copies:
            return None  # one copy refused; another may be chosen: no "not the leader"
        write = self.requests.pop(rid, None)
        if write is not None:
            self.unanswered.pop(write[2], None)
            self.writes.pop(write[2], None)
            self.proposed.pop(write[2], None)
            return write[0], write[1]
        read = self.reads.pop(rid, None)
        return (read[0], read[1]) if read else None

    def _answer_write(self, applied: Applied) -> None:
        self.proposed.pop((applied.client_id, applied.seq), None)
        handed = self.unanswered.pop((applied.client_id, applied.seq), None)
        if handed is not None:
            self.copies.discard(handed[0])
        target = self.writes.pop((applied.client_id, applied.seq), None)
        if target is not None:
            client, op_id = target
            self._respond(client, ClientResponse(op_id, "ok", applied.result))

    def _serve_reads(self) -> None:
        waiting = []
        for index, rid in self.ready_reads:
            if index > self.sm.applied_index:
                waiting.append((index, rid))
                continue
            read = self.reads.pop(rid, None)
            if read is not None:
                client, op_id, get = read
                self._respond(client, ClientResponse(op_id, "ok", self.sm.read(get)))
        self.ready_reads = waiting

    def _respond(self, client: str, response: ClientResponse) -> None:
        self.world.send(self.id, client, response)

"""The strong-group replica in the runtime: its adapter to the one driver loop.

The loop (``configsvc.runtime.loop``) persists, fsyncs, sends, then runs this
adapter's ``then``: install a snapshot, apply committed slots to the state
machine, resolve the futures of writes and reads. Only the loop task touches
the replica and the state machine's mutating methods; client coroutines
submit inputs and await futures.

The core survives every message the transport refuses (``LoopStats.send_failures``),
because every message whose loss matters is resent by the core itself --
Accept every ``retransmit_interval`` until acknowledged (which re-sends the
Accepted too); Heartbeat every ``heartbeat_interval`` (and a read's round
again after ``retransmit_interval``); a missing Promise part every
``retransmit_interval``; Prepare/Promise and PreVote/PreVoteReply by the next
election; CatchUpRequest on the next Accept or Heartbeat that shows the gap
(at most once per ``retransmit_interval``), which re-asks a lost CatchUpReply
or snapshot chunk from the offset held; a Nack again on the next outranked
message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from configsvc.runtime.loop import CoreLoop, Step
from strong.ballot import Ballot
from strong.commands import MalformedCommand, decode_command
from strong.config import ReplicaConfig
from strong.member_log import ChangeOutcome, MembershipChange
from strong.membership import Membership
from strong.messages import Envelope, InstallSnapshot
from strong.ops import ReadOp
from strong.ready import Ready, RejectReason, Role
from strong.records import CommitRecord
from strong.replica import Replica, ReplicaStatus
from strong.results import ErrorResult, GetResult, InstancesResult, RangeResult, Result
from strong.sm_snapshot import SnapshotState, snapshot_decodes
from strong.state_machine import SUPPORTED_VERSIONS, StateMachine, UnsupportedVersion
from strong.storage import Storage, recover
from strong.wire import MalformedMessage, decode_message, encode_message

log = logging.getLogger("configsvc.strong")

#: the transport channel of the strong group
CHANNEL = "strong"


class NotLeader(Exception):
    """This replica does not lead; nothing was proposed (safe to retry elsewhere)."""

    def __init__(self, leader_hint: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader_hint or 'unknown'})")
        self.leader_hint = leader_hint


class OutcomeUnknown(Exception):
    """The command may have been proposed and no result arrived: it may or may not apply."""


class Halted(Exception):
    """The replica stopped applying (unsupported state-machine version or corrupt state).

    Raised for a write only if the replica never saw it: nothing was proposed."""


@dataclass
class DriverStats:
    """The strong adapter's counters (the loop's own are ``CoreLoop.stats``)."""

    malformed_messages: int = 0
    applied_slots: int = 0
    #: retries that joined a proposal their leadership already held
    retries_joined: int = 0
    #: session writes handed again to a new leader (``StrongDriver._rehand``)
    rehanded: int = 0
    #: times this node saw a new leader (a new leader id or ballot; the first one too)
    leader_changes: int = 0
    #: times this node's lease lapsed while it led (or it stopped leading with one)
    lease_expiries: int = 0
    #: snapshot transfers begun (an ``InstallSnapshot`` at offset 0 sent)
    snapshots_sent: int = 0
    #: messages sent, by type name (``CatchUpReply``, ``InstallSnapshot``, ``Forward``, ...)
    sent: dict[str, int] = field(default_factory=dict)


class StrongDriver:
    def __init__(
        self,
        config: ReplicaConfig,
        storage: Storage,
        send: Callable[[str, bytes], bool | None],
        *,
        tick_interval: float = 0.01,
        snapshot_every: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        voting: bool = True,
        versions: range = SUPPORTED_VERSIONS,
    ) -> None:
        """``voting=False``: this node lost its disk and was reset; it learns but does not
        vote (``strong.replica`` rule 7). ``versions``: the state-machine versions this
        node applies under (capped in tests and while pinning, ``configsvc.upgrade``)."""
        if config.snapshot_valid is None:  # never persist a snapshot it cannot restore
            config = replace(config, snapshot_valid=snapshot_decodes)
        self.config = config
        self.loop = CoreLoop(self, storage, send, tick_interval=tick_interval, clock=clock,
                             name=f"strong-driver-{config.node_id}")
        self.snapshot_every = snapshot_every
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = DriverStats()
        self.halted: str | None = None
        durable = recover(storage.load())
        self.versions = versions
        self.sm = StateMachine(versions)
        #: ``sm.applied_bytes`` when the last compaction began (compaction by bytes)
        self._compacted_bytes = 0
        self.replica = Replica(config, durable, clock(), self.rng, voting=voting)
        self._next_request = 0
        #: request id -> its future; (client_id, seq) -> the request ids proposing it
        self._writes: dict[int, asyncio.Future[Result]] = {}
        #: request ids of writes handed to the replica: from then on they may be in a slot
        self._handed: set[int] = set()
        self._by_command: dict[tuple[str, int], set[int]] = {}
        #: retry dedup, valid for one leadership: (client_id, seq) -> the request id
        #: whose proposal this leadership holds; that request id -> retries joined to it
        self._proposed: dict[tuple[str, int], int] = {}
        self._held: dict[int, tuple[str, int]] = {}
        self._proposed_ballot: Ballot | None = None
        self._joined: dict[int, set[int]] = {}
        #: writes with a client session (seq > 0) handed to the replica and not yet
        #: answered: request id -> (key, command, the leader's ballot when handed).
        #: Handed again when another leader takes over (``_rehand``)
        self._unanswered: dict[int, tuple[tuple[str, int], bytes, Ballot | None]] = {}
        self._rehanded_at: Ballot | None = None
        #: request ids handed more than once: a refusal may be an old copy's
        self._copies: set[int] = set()
        self._reads: dict[int, asyncio.Future[Any]] = {}
        #: the snapshot being encoded in a worker thread, if any
        self._snapshotting: asyncio.Task[None] | None = None
        #: called with the seconds from propose to applied of each write proposed here (metrics)
        self.on_commit: Callable[[float], None] | None = None
        #: the leader last seen and whether this node's lease was valid (``_observe``)
        self._seen_leader: tuple[str, Ballot] | None = None
        self._lease_held = False
        #: hash-check events of applied slots go here (``strong.hash_check``); the driver
        #: also compacts at every check slot, so that every replica holds a snapshot at
        #: a checked index for a diverged one to re-sync from
        self.on_hash_events: Callable[[list[tuple[int, int, str, bytes]]], None] | None = None
        #: set by ``resync`` until the peer's snapshot replaced the state machine
        self.resyncing = False
        #: state machines replaced by a snapshot (a compaction encoded from an older one
        #: is dropped)
        self._restores = 0
        #: membership change requests awaiting their outcome
        self._changes: dict[int, asyncio.Future[ChangeOutcome]] = {}
        #: called from the loop task whenever the configuration changes
        self.on_members: Callable[[Membership], None] | None = None
        self._members_seen = self.replica.members

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.loop.start()

    async def close(self) -> None:
        if self._snapshotting is not None:
            self._snapshotting.cancel()
        await self.loop.close()
        for fut in list(self._writes.values()) + list(self._reads.values()):
            if not fut.done():
                fut.cancel()

    # ------------------------------------------------------------------ inputs

    def deliver(self, src: str, payload: bytes) -> None:
        """A peer's message from the transport. Malformed input is counted and dropped."""
        if self.halted:
            return
        try:
            message = decode_message(payload)
        except MalformedMessage as exc:
            self.stats.malformed_messages += 1
            log.warning("dropped a malformed message from %s: %s", src, exc)
            return
        self.loop.submit(lambda: self.replica.step(src, message, self.clock()))

    async def propose(self, command: bytes, timeout: float) -> Result:
        """Propose an encoded Command; return its result once applied here.

        Raises NotLeader (not proposed), OutcomeUnknown (proposed, no result in
        time), Halted.
        """
        self._check_running()
        try:
            cmd = decode_command(command)
        except MalformedCommand as exc:
            raise ValueError(str(exc)) from exc
        key = (cmd.client_id, cmd.seq)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        self._next_request += 1
        rid = self._next_request
        self._writes[rid] = fut
        self._by_command.setdefault(key, set()).add(rid)
        self.loop.submit(lambda: self._hand(rid, key, command))
        started = self.clock()
        try:
            async with asyncio.timeout(timeout):
                result = await asyncio.shield(fut)
            if self.on_commit is not None:
                self.on_commit(self.clock() - started)
            return result
        except TimeoutError:
            if rid not in self._handed:
                self._check_running()
            raise OutcomeUnknown(f"no result within {timeout}s") from None
        finally:
            del self._writes[rid]
            self._handed.discard(rid)
            self._unanswered.pop(rid, None)
            self._copies.discard(rid)
            rids = self._by_command.get(key)
            if rids is not None:
                rids.discard(rid)
                if not rids:
                    del self._by_command[key]

    async def read(self, op: ReadOp, timeout: float) -> Result:
        """A linearizable read (``Get``, ``Range`` or ``ListInstances``).

        Raises NotLeader, TimeoutError (safe to retry), Halted."""
        await self.barrier(timeout)
        return self.sm.read(op)

    async def barrier(self, timeout: float, *, quorum: bool = False) -> None:
        """Return once the local state machine reflects every write acknowledged before
        the call (the linearizable read path, without reading). Raises like ``read``.
        ``quorum``: confirm leadership by a quorum round even while the lease is valid."""
        self._check_running()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._next_request += 1
        rid = self._next_request
        self._reads[rid] = fut
        self.loop.submit(lambda: self.replica.read_index(rid, self.clock(), quorum=quorum))
        try:
            async with asyncio.timeout(timeout):
                index = await fut
            await self.wait_applied(index, timeout)
        finally:
            self._reads.pop(rid, None)

    def read_stale(self, op: ReadOp) -> GetResult | RangeResult | InstancesResult | ErrorResult:
        """A read of this replica's applied state, however stale (any ``ReadOp``)."""
        return self.sm.read(op)

    async def wait_applied(self, index: int, timeout: float) -> None:
        """Return once slot ``index`` is applied here; TimeoutError, Halted."""
        if self.sm.applied_index >= index and not self.halted:
            return  # the common case of a read: nothing to wait for
        if not await self.loop.wait_for(
            lambda: self.sm.applied_index >= index or bool(self.halted), timeout
        ):
            raise TimeoutError(f"slot {index} not applied within {timeout}s")
        self._check_running()

    async def wait_for_change(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after some apply; False on timeout (watches)."""
        return await self.loop.wait_for(predicate, timeout)

    async def change_members(self, change: MembershipChange, timeout: float) -> ChangeOutcome:
        """Ask this replica (which must lead) to change the configuration by one
        server; the outcome once chosen or refused. Raises OutcomeUnknown (no
        outcome in time: read the configuration), Halted."""
        return await self._outcome(
            lambda rid: self.replica.request_change(rid, change, self.clock()), timeout)

    async def transfer_leadership(self, target: str | None, timeout: float) -> ChangeOutcome:
        """Ask this replica (which must lead) to hand leadership to ``target``
        (None: the most caught-up live voter; ``strong.handoff``). Raises
        OutcomeUnknown, Halted."""
        return await self._outcome(
            lambda rid: self.replica.transfer_leadership(rid, target, self.clock()), timeout)

    async def _outcome(self, ask: Callable[[int], None], timeout: float) -> ChangeOutcome:
        """Submit ``ask(request_id)`` to the replica and await its ``ChangeOutcome``."""
        self._check_running()
        fut: asyncio.Future[ChangeOutcome] = asyncio.get_running_loop().create_future()
        self._next_request += 1
        rid = self._next_request
        self._changes[rid] = fut
        self.loop.submit(lambda: ask(rid))
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(fut)
        except TimeoutError:
            raise OutcomeUnknown(f"no outcome within {timeout}s") from None
        finally:
            self._changes.pop(rid, None)

    @property
    def members(self) -> Membership:
        return self.replica.members

    def status(self) -> ReplicaStatus:
        return self.replica.status(self.clock())

    @property
    def is_leader(self) -> bool:
        return self.replica.role is Role.LEADER

    def _hand(self, rid: int, key: tuple[str, int], command: bytes) -> None:
        """Give a write to the replica: from here on it may be placed in a slot.

        A retry of a command (same client_id and seq > 0) that this leadership
        already holds joins that proposal instead of queueing a copy behind it:
        within one leadership a held command is applied or rejected, and under
        load copies only lengthen the queue (a retry storm). A new leadership
        forgets every hold (its predecessor's slots may have become no-ops)."""
        self._handed.add(rid)
        lead = self.replica.leadership
        if key[1]:
            self._unanswered[rid] = (key, command, self.replica.followed_ballot)
        if lead is None or self._proposed_ballot != lead.ballot:
            self._proposed.clear()
            self._held.clear()
            self._joined.clear()
            self._proposed_ballot = lead.ballot if lead is not None else None
        if key[1] and lead is not None:
            holder = self._proposed.get(key)
            if holder is not None:
                self._joined.setdefault(holder, set()).add(rid)
                self.stats.retries_joined += 1
                return
            self._proposed[key] = rid
            self._held[rid] = key
        self.replica.propose(rid, command, self.clock())

    def _rehand(self) -> None:
        """Another leader took over: hand it every session write still unanswered.

        Without this, a write forwarded to (or proposed by) a leader that died or
        stepped down before answering for it waits until the request timeout: its
        fate is unknown until it applies. A copy is safe because the state machine
        applies a client's sequence number once (a second copy is a no-op that
        answers with the first one's result); anonymous writes (seq 0) have no
        such guard and are never handed twice. Once handed twice, a refusal no
        longer answers the write (``_reject``): it names one copy only."""
        ballot = self.replica.followed_ballot
        if ballot is None or ballot == self._rehanded_at:
            return
        self._rehanded_at = ballot
        for rid, (key, command, handed_at) in list(self._unanswered.items()):
            fut = self._writes.get(rid)
            if fut is None or fut.done():
                self._unanswered.pop(rid, None)
            elif handed_at != ballot:
                self.stats.rehanded += 1
                self._copies.add(rid)
                self._hand(rid, key, command)

    def _check_running(self) -> None:
        if self.halted:
            raise Halted(self.halted)

    def _halt(self, reason: str) -> None:
        """Fail-stop: stop applying and answering; every waiter learns why.

        A write the replica has seen may already sit in a slot whose Accept reached a
        peer or the disk, and be chosen after this replica stops: its outcome is
        unknown, never "safe to retry" (an anonymous write retried would apply twice).
        Only writes still queued for the replica, and reads, fail as Halted."""
        self.halted = reason
        log.error("strong replica halted: %s", reason)
        # It still votes (the quorum keeps its size) but must not depose the
        # leader of replicas that can apply the log (issue 7, finding 4).
        self.replica.stand_down()
        for rid, fut in self._writes.items():
            if not fut.done():
                fut.set_exception(OutcomeUnknown(f"the replica halted after the write was "
                                                 f"proposed ({reason})") if rid in self._handed
                                  else Halted(reason))
        for read in self._reads.values():
            if not read.done():
                read.set_exception(Halted(reason))

    # ------------------------------------------------------------------ the loop's core

    def tick(self, now: float) -> None:
        self.replica.tick(now)
        self._observe(now)

    def _observe(self, now: float) -> None:
        """Count leader changes and lease expiries (metrics), once per tick."""
        r = self.replica
        lead = r.leadership
        if r.leader is not None:
            seen = (r.leader, lead.ballot if lead is not None else r.leader_ballot)
            if seen != self._seen_leader:
                self._seen_leader = seen
                self.stats.leader_changes += 1
        if self._unanswered and not self.halted:
            self._rehand()
        held = bool(lead and lead.active and lead.rounds.lease_valid(now))
        if self._lease_held and not held:
            self.stats.lease_expiries += 1
        self._lease_held = held

    def failed(self, exc: Exception) -> None:
        """A disk error, a state it cannot restore: stop, loudly."""
        self._halt(f"{type(exc).__name__}: {exc}")

    def ready(self) -> Step | None:
        ready = self.replica.ready()
        if ready.empty():
            return None
        # Only commit-index hints: recovery never trusts them beyond the values it
        # holds, so they need no fsync of their own; they become durable with the
        # next synced batch.
        hints_only = all(type(r) is CommitRecord for r in ready.persist)
        return Step(
            first=self._encode(ready.send_first),
            records=ready.persist,
            sync=not hints_only,
            messages=self._encode(ready.messages),
            then=lambda: self._apply(ready),
        )

    def _encode(self, envelopes: list[Envelope]) -> list[tuple[str, bytes]]:
        """(destination, wire bytes) of each envelope, counted by message type."""
        sent = self.stats.sent
        out = []
        for env in envelopes:
            message = env.message
            kind = type(message).__name__
            sent[kind] = sent.get(kind, 0) + 1
            if isinstance(message, InstallSnapshot) and message.offset == 0:
                self.stats.snapshots_sent += 1
            out.append((env.dst, encode_message(message)))
        return out

    def _apply(self, ready: Ready) -> bool:
        """After the records are durable and the messages sent: install, apply, answer."""
        if ready.snapshot is not None and (ready.snapshot.index > self.sm.applied_index
                                           or self.resyncing):
            self.sm = StateMachine.restore(ready.snapshot.data, self.versions)
            self._compacted_bytes = 0
            self._restores += 1
            self.resyncing = False
        for slot, batch in ready.committed:
            if slot <= self.sm.applied_index or self.halted:
                continue
            try:
                applied = self.sm.apply(slot, batch)
            except UnsupportedVersion as exc:
                self._halt(f"stopped applying at slot {slot}: {exc}")
                break
            self.stats.applied_slots += 1
            if self.sm.hash_events:
                self._hash_events(slot)
            for a in applied:
                holder = self._proposed.pop((a.client_id, a.seq), None)
                if holder is not None:
                    self._held.pop(holder, None)
                    self._joined.pop(holder, None)
                for rid in self._by_command.get((a.client_id, a.seq), ()):
                    fut = self._writes.get(rid)
                    if fut is not None and not fut.done():
                        fut.set_result(a.result)
        for rs in ready.reads:
            read = self._reads.get(rs.request_id)
            if read is not None and not read.done():
                read.set_result(rs.index)
        for rej in ready.rejected:
            self._reject(rej.request_id, rej.reason, rej.leader_hint)
        for outcome in ready.changes:
            change = self._changes.get(outcome.request_id)
            if change is not None and not change.done():
                change.set_result(outcome)
        if self.replica.members is not self._members_seen:
            self._members_seen = self.replica.members
            if self.on_members is not None:
                self.on_members(self._members_seen)
        behind = self.sm.applied_index - self.replica.snapshot_index
        if self._snapshotting is None and behind > 0 and (
            behind >= self.snapshot_every
            or self.config.compaction_due(self.sm.applied_bytes - self._compacted_bytes,
                                          len(self.replica.snapshot or b""))
        ):
            self._compacted_bytes = self.sm.applied_bytes
            # A consistent copy now, encoded off the event loop, compacted from the loop task.
            index, state = self.sm.applied_index, self.sm.snapshot_state()
            self._snapshotting = asyncio.create_task(self._encode_snapshot(index, state))
        return True

    def _hash_events(self, slot: int) -> None:
        events = self.sm.take_hash_events()
        if any(not node for _, _, node, _ in events) and not self.resyncing:
            self.replica.compact(slot, self.sm.snapshot())  # encoded already, for the hash
            self._compacted_bytes = self.sm.applied_bytes
        if self.on_hash_events is not None:
            self.on_hash_events(events)

    def resync(self, peer: str) -> None:
        """Replace the state machine by ``peer``'s snapshot and re-apply the log above it
        (``strong.replica`` rule 16): this replica's applied state disagreed with the
        majority's. ``resyncing`` is True until the snapshot is installed."""
        self.resyncing = True
        self.loop.submit(lambda: self.replica.resync(peer))

    async def _encode_snapshot(self, index: int, state: SnapshotState) -> None:
        restores = self._restores
        try:
            data = await asyncio.to_thread(StateMachine.encode, state)
        except Exception as exc:
            failure = exc

            def fail() -> None:
                raise failure

            self.loop.submit(fail)
            return

        def compact() -> None:
            self._snapshotting = None
            if restores != self._restores or self.resyncing:
                return  # encoded from a state machine that was replaced (or is being)
            self.replica.compact(index, data)  # ignored if a newer snapshot arrived meanwhile
            self.sm.adopt_snapshot(index, data)

        self.loop.submit(compact)

    def _reject(self, rid: int, reason: RejectReason, hint: str | None) -> None:
        if rid in self._copies:
            # A refusal names one copy; another may still be chosen, so "never
            # proposed, safe to retry" would not be true: the write waits for its
            # result, a later leader (``_rehand``), or the timeout (outcome unknown).
            return
        for joined in self._joined.pop(rid, ()):  # they were never proposed on their own
            fut = self._writes.get(joined)
            if fut is not None and not fut.done():
                fut.set_exception(NotLeader(hint))
        held = self._held.pop(rid, None)
        if held is not None:
            self._proposed.pop(held, None)
        fut = self._writes.get(rid) or self._reads.get(rid)
        if fut is not None and not fut.done():
            fut.set_exception(NotLeader(hint))

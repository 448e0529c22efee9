"""An eventual (causal+) replica as a pure state machine.

Inputs: ``step(src, message, now)``, ``tick(now)``, client calls (``get``,
``put``, ``delete``, ``list``, ``register``, ``heartbeat``, ``deregister``,
``instances``, or ``submit`` with a request object), ``set_members``.
Every input takes ``now`` (this node's monotonic clock: timers, horizons) and
optionally ``wall`` (its wall clock, the physical part of the hybrid logical
clock; defaults to ``now``, which suits a simulator whose clocks are both).
Output: ``ready()`` -> ``Ready`` (see ``eventual.ready`` for the driver's
contract: persist and sync, then send, then reply). Time enters only as
``now`` and ``wall``; randomness only through the injected random source.

Rules this module obeys (each one is what a guarantee rests on):

1. Durability. Every applied event (local or remote) emits its record in
   the same Ready as any reply or message that depends on it; a full-state
   merge emits a snapshot record. A write is acknowledged only through Ready.
2. Causal delivery. A remote event is applied only when deliverable
   (``eventual.delivery``); until then it waits in a bounded buffer. Hence the
   state is always causally closed and its context a compact version vector.
3. Sessions. A request is served only once the version vector covers its
   token (and, for writes, its read context); it waits up to ``token_wait``,
   else the answer is ``CausallyBehind``. Every answer carries the new token.
   A write's deps are the whole version vector, so later writes of a session
   are applied after its earlier writes and reads everywhere.
4. Garbage collection. The log drops an event only once it is causally
   stable among members heard from within ``gc_horizon``
   (``eventual.stability``). The members are the roster, which may change
   (``set_members``): messages from a node outside it are ignored, while the
   events it wrote stay valid (they are delivered and served like any other:
   delivery and the log follow dots, not the roster). A peer that was away beyond it, comes back with
   a new identity, or is simply below the log floor (``log.can_serve``: the
   rejoining marks are not durable) is sent the full state, never deltas it
   cannot use. A full state travels in byte-bounded chunks and is merged
   only whole (``eventual.full_state``).
5. Identity. A replica without a durable identity (new or wiped) takes a
   fresh random one, so its dots never collide with an earlier life's.
6. Change index. Every visible change (``_account``, ``_silence``) bumps the
   per-node change index (``eventual.change_index``), whose reservation
   record goes into the same Ready as the change: the index never goes
   backwards on this node, across restarts too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from eventual.change_index import ChangeIndex
from eventual.client import ClientCalls
from eventual.codec import state_entries
from eventual.config import RandomSource, ReplicaConfig
from eventual.context import CausalContext
from eventual.delivery import CausalBuffer, deliverable, starts_group
from eventual.dots import (
    SVC_SPACE,
    VV,
    Key,
    vv_join,
    vv_leq,
    vv_missing,
    vv_of_dots,
    vv_to_wire,
)
from eventual.full_state import FullStateAssembly, split_full_state
from eventual.health import InstanceHealth
from eventual.hlc import hlc_recv, hlc_send
from eventual.instances import InstanceInfo, decode_info, resolve_instance
from eventual.log import EventLog
from eventual.lww import resolve
from eventual.messages import (
    Deltas,
    Digest,
    Envelope,
    Event,
    FullState,
    Message,
    RepairProbe,
)
from eventual.ormap import Change, ORMap, sibling_hash
from eventual.ready import EventualStatus, Ready
from eventual.recent_writes import RecentWrites
from eventual.records import EventRecord, IdentityRecord, Record, Snapshot, SnapshotRecord
from eventual.requests import (
    BadRequest,
    CausallyBehind,
    Delete,
    NotFound,
    Put,
    Reply,
    Request,
    Result,
    SiblingView,
    Txn,
    TxnFailed,
    TxnResult,
    WriteResult,
    invalid,
)
from eventual.serve import Replayed, answer_read, plan_write
from eventual.stability import Stability
from eventual.storage import DurableState
from eventual.token import BadToken, decode_vv, encode_vv
from eventual.txn import Failed, plan

__all__ = ["EventualStatus", "RandomSource", "Replica"]


@dataclass
class _Parked:
    request_id: int
    request: Request
    need: VV
    deadline: float


class Replica(ClientCalls):
    def __init__(
        self, config: ReplicaConfig, durable: DurableState, now: float, rng: RandomSource,
        wall: float | None = None,
    ) -> None:
        self.config = config
        self.node = config.node_id
        self.rng = rng
        self.bugs = config.bugs
        self.now = now
        #: wall-clock seconds: only the hybrid logical clock reads it (never host uptime,
        #: or LWW winners would depend on how long each host has been up)
        self.wall = now if wall is None else wall
        self._persist: list[Record] = []
        self._messages: list[Envelope] = []
        self._replies: list[Reply] = []
        if durable.replica is None:
            self.replica = f"{self.node}.{rng.getrandbits(40):010x}"
            self._persist.append(IdentityRecord(self.replica))
        else:
            self.replica = durable.replica
        self.store = durable.store
        self.hlc = durable.hlc
        self.log = EventLog(durable.log, durable.floor)
        self.buffer = CausalBuffer(config.max_pending)
        self.stability = Stability(self.node, config.peers, config.gc_horizon, now)
        self.state_hash = 0
        #: local instance health (``eventual.health``): a restart counts as hearing them all
        self.health = InstanceHealth(config.self_preservation)
        for key, sibs in self.store.entries.items():
            for dot, sib in sibs.items():
                self.state_hash ^= sibling_hash(key, dot, sib)
            current = resolve_instance(sibs) if key[1] == SVC_SPACE else None
            if current is not None:
                self.health.update(key, current[0], now, heard=True)
        self.index = ChangeIndex(durable.change_limit, config.index_block)
        #: keyed writes applied recently (idempotent retries: ``eventual.recent_writes``)
        self.recent = RecentWrites(config.idempotency_horizon, config.idempotency_limit)
        self.parked: list[_Parked] = []
        self.full_state_sent: dict[str, float] = {}
        self.assembly = FullStateAssembly()
        self._gossip_order: list[str] = []
        self._in_flight: dict[str, tuple[VV, float]] = {}
        #: times a probe found equal version vectors but different states
        self.divergences = 0
        self.since_snapshot = 0
        self.next_gossip = now + rng.random() * config.gossip_interval
        self.next_repair = now + (0.5 + rng.random()) * config.repair_interval

    @property
    def vv(self) -> VV:
        return self.store.context.vv

    @property
    def change_index(self) -> int:
        """The per-node change index (``eventual.change_index``; not yet durable:
        the driver shows at most its durable reservation)."""
        return self.index.value

    @property
    def change_limit(self) -> int:
        """The highest change-index reservation this replica has emitted."""
        return self.index.limit

    def namespace_index(self, namespace: str) -> int:
        """The change index of the last visible change in ``namespace``."""
        return self.index.of(namespace)

    @property
    def roster(self) -> list[str]:
        """The other members (initially ``config.nodes``; then ``set_members``)."""
        return list(self.stability.peers)

    # ------------------------------------------------------------------ inputs

    def _clock(self, now: float, wall: float | None) -> None:
        self.now = now
        self.wall = now if wall is None else wall

    def step(self, src: str, message: Message, now: float, wall: float | None = None) -> None:
        """Handle one message from node ``src``. Never raises on odd input."""
        self._clock(now, wall)
        if src not in self.stability.peers or message.replica == self.replica:
            return
        self.stability.heard(src, message.replica, dict(message.vv), now)
        match message:
            case Digest():
                self._on_digest(src, message)
            case Deltas():
                self._receive(message.events)
                if message.events and not vv_leq(dict(message.vv), self.vv):
                    # A capped answer: ask for the next piece now rather than a round later,
                    # so catching up takes round trips, not gossip rounds, per piece.
                    self._send(src, Digest(self.replica, vv_to_wire(self.vv), False))
            case FullState():
                whole = message if self.bugs.merge_chunks_alone else self.assembly.add(src, message)
                if whole is not None:
                    self._on_full_state(src, whole)
            case RepairProbe():
                self._on_probe(src, message)
        self._release_parked()

    def tick(self, now: float, wall: float | None = None) -> None:
        self._clock(now, wall)
        if now >= self.next_gossip:
            self.next_gossip = now + self.config.gossip_interval * (0.9 + 0.2 * self.rng.random())
            self._gossip_round()
        if now >= self.next_repair:
            self.next_repair = now + self.config.repair_interval * (0.9 + 0.2 * self.rng.random())
            roster = self.roster
            peer = self.rng.sample(roster, 1) if roster else []
            for p in peer:
                self._send(p, RepairProbe(self.replica, vv_to_wire(self.vv), self.state_hash))
        self._release_parked()

    def set_members(self, members: Iterable[str], alive: Iterable[str], now: float) -> None:
        """The roster and the members the failure detector reports alive
        (``eventual.stability`` rules 1-3). A removed member is forgotten here
        too (its staged chunks, its sending memos), never its dots."""
        self.now = now
        for gone in self.stability.set_members(members, alive, now):
            self.assembly.forget(gone)
            self.full_state_sent.pop(gone, None)
            self._in_flight.pop(gone, None)
        self._gossip_order = [p for p in self._gossip_order if p in self.stability.peers]

    def submit(self, request_id: int, request: Request, token: str | None, now: float,
               wall: float | None = None) -> None:
        """Queue a client request; its answer comes in ``Ready.replies``."""
        self._clock(now, wall)
        reason = invalid(request)
        if reason is not None:
            self._reply(request_id, BadRequest(reason))
            return
        try:
            need = decode_vv(token)
            if isinstance(request, Put | Delete):
                need = vv_join(need, decode_vv(request.context))
        except BadToken as exc:
            self._reply(request_id, BadRequest(str(exc)))
            return
        if self.bugs.serve_uncovered_token or vv_leq(need, self.vv):
            self._execute(request_id, request)
        else:
            self.parked.append(_Parked(request_id, request, need, now + self.config.token_wait))

    # ------------------------------------------------------------------ outputs

    def ready(self) -> Ready:
        if self.since_snapshot >= self.config.snapshot_every:
            self._persist.append(SnapshotRecord(self.snapshot()))
            self.since_snapshot = 0
        ready = Ready(self._persist, self._messages, self._replies)
        self._persist, self._messages, self._replies = [], [], []
        return ready

    def snapshot(self) -> Snapshot:
        return Snapshot(vv_to_wire(self.vv), state_entries(self.store), self.hlc,
                        vv_to_wire(self.log.floor), tuple(self.log.events()), self.index.limit)

    def status(self, now: float) -> EventualStatus:
        return EventualStatus(
            node_id=self.node, replica=self.replica, vv=dict(self.vv),
            log_events=len(self.log), pending=len(self.buffer),
            peer_lag=self.stability.lag(self.vv),
            rejoining=self.stability.rejoining(),
            state_hash=self.state_hash,
            divergences=self.divergences,
            self_preservation=self.health.report(now),
        )

    # ------------------------------------------------------------------ clients

    def _reply(self, request_id: int, result: Result) -> None:
        self._replies.append(Reply(request_id, result))

    def _release_parked(self) -> None:
        if not self.parked:
            return
        waiting = []
        for p in self.parked:
            if vv_leq(p.need, self.vv):
                self._execute(p.request_id, p.request)
            elif self.now >= p.deadline:
                self._reply(p.request_id, CausallyBehind(encode_vv(vv_missing(p.need, self.vv))))
            else:
                waiting.append(p)
        self.parked = waiting

    def _execute(self, request_id: int, request: Request) -> None:
        if isinstance(request, Txn):
            self._reply(request_id, self._transact(request))
            return
        result: Result | None = answer_read(self.store, self.config, request, self.health,
                                            self.now, self.index.of(request.namespace))
        if result is None:
            plan = plan_write(self.store, self.config, request, self.recent, self.log)
            if isinstance(plan, NotFound):
                result = plan
            elif isinstance(plan, Replayed):
                result = WriteResult(plan.dot, encode_vv(self.vv), replayed=True)
            else:
                e = self._local_event(plan.key, plan.value, plan.covers, plan.idem)
                result = WriteResult(e.dot, encode_vv(self.vv))
        self._reply(request_id, result)

    def _transact(self, txn: Txn) -> Result:
        """``eventual.txn``: plan against this replica's state, then make the
        group's events one after another in this step (nothing interleaves)."""
        base = self.vv.get(self.replica, 0) + 1
        planned = plan(self.store, self.config, txn, self.replica, base, self.recent, self.log)
        if isinstance(planned, Failed):
            return TxnFailed(planned.op, planned.reason, encode_vv(self.vv))
        if isinstance(planned, Replayed):
            return TxnResult((), encode_vv(self.vv), self.index.of(txn.namespace), replayed=True)
        if isinstance(planned, BadRequest):
            return planned
        end = base + len(planned.writes) - 1 if len(planned.writes) > 1 else 0
        events = [self._local_event(key, value, self.store.key_vv(key), txn.idempotency_key,
                                    group_end=end, push=False)
                  for key, value in planned.writes]
        self._push(events)

        def view(seen: tuple[SiblingView, ...] | int) -> tuple[SiblingView, ...]:
            if isinstance(seen, tuple):
                return seen
            e = events[seen]
            return () if e.value is None else (SiblingView(e.value, e.dot, e.hlc),)

        results = tuple(tuple((name, view(seen)) for name, seen in op) for op in planned.seen)
        return TxnResult(results, encode_vv(self.vv), self.index.of(txn.namespace))

    def _local_event(self, key: Key, value: bytes | None, covers: Mapping[str, int],
                     idem: str | None = None, *, group_end: int = 0, push: bool = True) -> Event:
        vv = self.vv
        self.hlc = hlc_send(self.hlc, self.wall)
        clamped = {a: min(n, vv.get(a, 0)) for a, n in covers.items()}
        e = Event((self.replica, vv.get(self.replica, 0) + 1), key, value, self.hlc,
                  vv_to_wire(clamped), vv_to_wire(vv), idem, group_end)
        self._apply(e)
        if push:
            self._push([e])
        return e

    def _push(self, events: list[Event]) -> None:
        """Eager push of fresh local events to ``fanout`` peers (anti-entropy
        delivers them anyway; a group larger than one Deltas waits for it)."""
        roster = self.roster
        if not (self.config.eager_push and roster and events):
            return
        if len(events) > 1 and sum(len(e.value or b"") for e in events) > self.config.max_delta_bytes:
            return
        for peer in self.rng.sample(roster, min(self.config.fanout, len(roster))):
            self._send(peer, Deltas(self.replica, vv_to_wire(self.vv), tuple(events)))

    # ------------------------------------------------------------------ applying

    def _apply(self, e: Event) -> None:
        change = self.store.apply_event(
            e, ignore_seen=self.bugs.non_idempotent_merge,
            drop_siblings=self.bugs.merge_drops_siblings and e.dot[0] != self.replica)
        if change is None:
            return
        self._account(change)
        if e.idem is not None:
            self.recent.note(e.key, e.idem, e.dot, self.now)
        self.hlc = hlc_recv(self.hlc, e.hlc, self.wall)
        if e.dot[1] > self.log.top(e.dot[0]):
            self.log.append(e)
        self._persist.append(EventRecord(e))
        self.since_snapshot += 1

    def _account(self, change: Change) -> None:
        for dot, sib in change.removed:
            self.state_hash ^= sibling_hash(change.key, dot, sib)
        for dot, sib in change.added:
            self.state_hash ^= sibling_hash(change.key, dot, sib)
        key = change.key
        if key[1] != SVC_SPACE:
            if change.added or change.removed:
                self._bump(key[0])
            return
        # An instance shows its current record (the last writer) and its health: a
        # heartbeat that only moves the heartbeat time is no visible change.
        after = self.store.siblings(key)
        added = {d for d, _ in change.added}
        before = {d: s for d, s in after.items() if d not in added} | dict(change.removed)
        was, now = resolve(before), resolve(after)
        visible = (None if was is None else was[1].value) != (None if now is None else now[1].value)
        if now is None:
            self.health.forget(key)
        elif self.health.update(key, decode_info(now[1].value), self.now,
                                heard=bool(change.added)):
            visible = True  # heard again after going silent
        if visible:
            self._bump(key[0])

    def _bump(self, namespace: str) -> None:
        reservation = self.index.bump(namespace)
        if reservation is not None:
            self._persist.append(reservation)

    def _receive(self, events: Iterable[Event]) -> None:
        ignore_deps = self.bugs.deliver_before_causal_past
        ungrouped = self.bugs.ungrouped_delivery
        for e in events:
            if self.store.context.contains(e.dot):
                if self.bugs.non_idempotent_merge:
                    self._apply(e)
            elif deliverable(e, self.vv, ignore_deps=ignore_deps) and (
                    ungrouped or not starts_group(e)):
                self._apply(e)
            else:  # out of causal order, or a group's first event: wait for the rest
                self.buffer.add(e, self.now)
        self._drain()

    def _drain(self) -> None:
        if len(self.buffer):
            self.buffer.drain(self.vv, self._apply, ignore_deps=self.bugs.deliver_before_causal_past,
                              ungrouped=self.bugs.ungrouped_delivery)

    # ------------------------------------------------------------------ anti-entropy

    def _send(self, dst: str, message: Message) -> None:
        self._messages.append(Envelope(self.node, dst, message))

    def _gossip_round(self) -> None:
        self.stability.refresh(self.now)
        digest = Digest(self.replica, vv_to_wire(self.vv), True)
        for peer in self._gossip_targets():
            self._send(peer, digest)
        stable = dict(self.vv) if self.bugs.gc_before_stability else self.stability.stable(self.vv)
        self.log.prune(stable)
        self.buffer.expire(self.now, self.config.gc_horizon)
        self.recent.expire(self.now)
        self._expire_instances()

    def _gossip_targets(self) -> list[str]:
        """The next ``fanout`` peers of a shuffled round-robin order: every peer
        gets a digest at least every ``ceil(peers / fanout) + 1`` rounds."""
        peers = self.roster
        targets: list[str] = []
        while len(targets) < min(self.config.fanout, len(peers)):
            if not self._gossip_order:
                self._gossip_order = self.rng.sample(peers, len(peers))
            peer = self._gossip_order.pop()
            if peer not in targets and peer in self.stability.peers:
                targets.append(peer)
        return targets

    def _on_digest(self, src: str, msg: Digest) -> None:
        peer_vv = dict(msg.vv)
        if self.stability.needs_full_state(src, self.log.floor) or not self._can_serve(src, peer_vv):
            self._send_full_state(src, reply=False)
        else:
            # Count what we sent this peer moments ago as in flight: answering two
            # digests in one round does not resend a chunk, it sends the next one.
            base = peer_vv
            memo = self._in_flight.get(src)
            if memo is not None and self.now - memo[1] < self.config.gossip_interval:
                base = vv_join(peer_vv, memo[0])
            events = self.log.missing(base, self.config.max_delta_bytes,
                                      self.config.max_delta_events)
            if events:
                self._send(src, Deltas(self.replica, vv_to_wire(self.vv), tuple(events)))
                self._in_flight[src] = (vv_join(base, vv_of_dots(e.dot for e in events)),
                                        self.now)
        if msg.reply and not vv_leq(peer_vv, self.vv):
            self._send(src, Digest(self.replica, vv_to_wire(self.vv), False))

    def _can_serve(self, src: str, peer_vv: VV) -> bool:
        """Rule 4: whether deltas from this log can bring ``src`` up to date. What
        we know of ``src`` (its digests joined, so a stale, reordered digest does
        not count) is checked against the log floor, not only the rejoining marks:
        those are not durable, so a replica restarted with a raised floor must
        still notice a peer (say, a wiped one) that lacks collected events."""
        if self.bugs.ignore_can_serve:
            return True
        view = self.stability.peers.get(src)
        return self.log.can_serve(vv_join(peer_vv, view.vv) if view is not None else peer_vv)

    def _send_full_state(self, dst: str, *, reply: bool) -> None:
        last = self.full_state_sent.get(dst)
        if last is not None and self.now - last < self.config.full_state_cooldown:
            return
        self.full_state_sent[dst] = self.now
        whole = FullState(self.replica, vv_to_wire(self.vv), state_entries(self.store), self.hlc,
                          reply, tuple(self.log.events()), self.stability.rejoining())
        for chunk in split_full_state(whole, self.config.max_full_state_bytes):
            self._send(dst, chunk)

    def _on_full_state(self, src: str, msg: FullState) -> None:
        other = ORMap.model_construct(
            entries={key: dict(sibs) for key, sibs in msg.entries},
            context=CausalContext.of(dict(msg.vv)),
        )
        before = dict(self.vv)
        changes = self.store.join_into(other, ignore_seen=self.bugs.non_idempotent_merge)
        for change in changes:
            self._account(change)
            for dot, sib in change.added:
                if sib.idem is not None:
                    self.recent.note(change.key, sib.idem, dot, self.now)
        self.hlc = hlc_recv(self.hlc, msg.hlc, self.wall)
        self.log.absorb(before, self.vv, msg.log)
        self.stability.inherit((n for n in msg.rejoining if n != self.node), self.log.floor)
        if changes or self.vv != before:  # durable before anything that depends on it
            self._persist.append(SnapshotRecord(self.snapshot()))
            self.since_snapshot = 0
        self._drain()
        if msg.reply:
            self.full_state_sent.pop(src, None)
            self._send_full_state(src, reply=False)

    def _on_probe(self, src: str, msg: RepairProbe) -> None:
        if dict(msg.vv) == self.vv:
            if msg.state_hash != self.state_hash:
                # Divergence a correct replica never shows (equal contexts must mean equal
                # stores): push-pull full states so both converge on their join, and count it.
                self.divergences += 1
                self._send_full_state(src, reply=True)
            return
        self._on_digest(src, Digest(msg.replica, msg.vv, True))

    def _expire_instances(self) -> None:
        """Local health (``eventual.health``): an instance going silent is a visible
        change; one critical beyond ``deregister_after`` is removed by a local event,
        unless self-preservation holds and it is only silent."""
        def current(key: Key) -> InstanceInfo | None:
            found = resolve_instance(self.store.siblings(key))
            return None if found is None else found[0]

        newly_silent, remove = self.health.evaluate(current, self.now)
        for key in newly_silent:
            self._bump(key[0])
        for key in remove:
            self._local_event(key, None, self.store.key_vv(key))

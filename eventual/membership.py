"""SWIM membership with Lifeguard's refinements, as a pure (sans-IO) state machine.

Inputs: ``step(src, message, now)``, ``tick(now)``, ``join(seeds, now)``,
``leave(now)``. Output: ``ready()`` -> ``MembershipReady`` (envelopes to send,
membership events). ``src``/``dst`` are opaque member addresses; ``now`` is this
node's local clock; randomness comes only from the injected ``Rng``
(a ``random.Random``). Nothing here is durable: a restarted process joins again
under a new ``generation``.

Rules this module obeys:

1. Probing (SWIM §3, §4.3). Each protocol period the node pings the next
   member of a shuffled round-robin list (new members are inserted at a random
   position; the list is reshuffled after each pass). Without an ``Ack`` after
   ``probe_timeout`` it sends ``PingReq`` to ``indirect_checks`` (k) alive
   members; without any ``Ack`` by the end of the period the target becomes
   *suspect*.
2. Dissemination (SWIM §4.1). Every state change this node applies is queued
   and piggybacked on pings, acks and ping-reqs, newest and least-sent first,
   at most ``retransmit_mult * ceil(log10(N + 1))`` times (λ·log N).
3. Precedence. For one ``(id, generation)`` a record replaces another only if
   ``(incarnation, state rank)`` is higher (``Member.outranks``): views only
   move up a lattice, so gossip order does not matter. Only a member raises
   its own incarnation: hearing that it is suspect, dead or left, it refutes
   with ``Alive(incarnation + 1)``.
4. Generations. A different generation of a known id replaces the record only
   when the old one is dead or left; the old generation is then retired and
   ignored forever. A node that hears of an older generation of its own id
   tombstones it (``RETIRED_INCARNATION``) so its successor can take over.
5. Suspicion (Lifeguard §4.2). A suspicion started when N members are live
   lasts between ``min = α·max(1, log10 N)·probe_interval`` and ``max = β·min``:
   ``max(min, max - (max - min)·log(C + 1)/log(K + 1))`` for C independent
   confirmations (suspicions of the same incarnation from other members),
   ``K = min(suspicion_k, N - 2)``. When it expires the member is dead.
6. Local health (Lifeguard §4.1). A health score in ``[0, max_health]`` rises on
   a failed probe (by the number of missed ``Nack``s when indirect probes were
   sent), on refuting a suspicion of itself, and falls on each successful
   probe; the interval and timeout of this node's own round-robin probes are
   multiplied by ``score + 1``. Nothing else is: acks, relays, refutations and
   buddy pings (rule 7) go out at once, so a slow node slows only its judgement
   of others, never its defence of itself.
7. Buddy system (Lifeguard §4.3). A ping to a member this node suspects
   always carries that suspicion, so the member can refute at once. While the
   suspicion lasts this node also pings the suspect itself, outside the
   round-robin, every ``probe_interval`` (the first one at once when the
   suspicion came from someone else). A suspect that hears of its suspicion
   refutes at once and answers whoever told it with its new ``Alive``: in the
   ``Ack`` (piggybacked first, as the newest update) or in a ``Gossip``. So a
   suspect that becomes reachable again refutes to every suspector within one
   ``probe_interval``, well inside the minimum suspicion timeout
   ``α·probe_interval`` (rule 5), instead of waiting for gossip or for its
   turn in anyone's round-robin. A buddy ping that goes unanswered counts for
   nothing: only round-robin probes raise suspicion and health.
8. Push-pull. ``join`` and every ``push_pull_interval`` exchange full member
   lists (``Sync``); every ``reconnect_interval`` a ``Sync`` goes to a random
   dead member, which heals partitions after both sides declared each other
   dead. A ``dead`` learnt by ``Sync`` is applied as ``suspect``: this node
   checks for itself before declaring anyone dead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from eventual.membership_config import (
    MembershipBugs,
    MembershipConfig,
    Rng,
    retransmit_limit,
    suspicion_bounds,
    suspicion_timeout,
)
from eventual.membership_messages import (
    RETIRED_INCARNATION,
    Ack,
    Envelope,
    Gossip,
    Member,
    MemberState,
    Message,
    Nack,
    Ping,
    PingReq,
    Sync,
    Update,
)

__all__ = [
    "EventKind",
    "MemberEvent",
    "Membership",
    "MembershipBugs",
    "MembershipConfig",
    "MembershipReady",
    "MembershipStatus",
    "Rng",
    "retransmit_limit",
    "suspicion_bounds",
    "suspicion_timeout",
]

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)


class EventKind(Enum):
    JOINED = "joined"
    SUSPECTED = "suspected"
    #: alive again after suspicion or death (a refutation)
    RECOVERED = "recovered"
    FAILED = "failed"
    LEFT = "left"
    #: alive member changed address
    UPDATED = "updated"


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: EventKind
    #: the member's record after the change
    member: Member
    #: local time of the change
    at: float


@dataclass
class MembershipReady:
    messages: list[Envelope] = field(default_factory=list)
    events: list[MemberEvent] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.messages or self.events)


@dataclass(frozen=True)
class MembershipStatus:
    """Counts include this node. ``health_score`` 0 is healthy (Lifeguard LHA)."""

    node_id: str
    incarnation: int
    alive: int
    suspect: int
    dead: int
    left: int
    health_score: int
    probe_interval: float
    probes: int
    failed_probes: int
    suspicions: int
    refutations: int
    conflicts: int


@dataclass
class _Suspicion:
    started: float
    #: the member whose suspicion we heard first; confirmations are the others
    first: str
    low: float
    high: float
    k: int
    #: when this node next pings the suspect directly (rule 7)
    next_ping: float
    confirmations: set[str] = field(default_factory=set)

    def deadline(self, use_confirmations: bool) -> float:
        if not use_confirmations:
            return self.started + self.high
        c = len(self.confirmations)
        return self.started + suspicion_timeout(self.low, self.high, self.k, c)


@dataclass
class _Entry:
    member: Member
    #: local time of the last state change
    since: float
    suspicion: _Suspicion | None = None


@dataclass
class _Probe:
    seq: int
    target: Member
    indirect_at: float
    ends_at: float
    acked: bool = False
    indirect_sent: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    """An indirect probe we run for ``requester`` (their sequence number ``seq``)."""

    requester: str
    seq: int
    nack_at: float


@dataclass
class _Broadcast:
    update: Update
    order: int
    transmits: int = 0


class Membership:
    """One node's SWIM/Lifeguard view of the group (itself included).

    Drive it with ``step``/``tick`` (and ``join``/``leave``), then drain ``ready()``;
    ``next_deadline()`` says when ``tick`` next has work. Query ``members(now)``,
    ``live_members()``, ``member(id)`` and ``status(now)`` at any time. Nothing is
    durable and nothing raises on peer input: a message is applied or ignored.
    """

    def __init__(self, config: MembershipConfig, now: float, rng: Rng) -> None:
        self.config = config
        self.id = config.node_id
        self.rng = rng
        self.now = now
        self.incarnation = 0
        self.health = 0
        self.left = False
        me = Member(self.id, config.generation, config.address, 0, ALIVE)
        self._members: dict[str, _Entry] = {self.id: _Entry(me, now)}
        #: superseded generations per id: news about them is ignored
        self._retired: dict[str, set[str]] = {}
        self._probe_order: list[str] = []
        self._probe_index = 0
        self._probe: _Probe | None = None
        #: a random phase, so members do not probe in lockstep
        self._next_probe_at = now + config.probe_interval * rng.random()
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self._queue: dict[tuple[str, str], _Broadcast] = {}
        self._order = 0
        self._seeds: tuple[str, ...] = ()
        self._joined = True
        self._next_join_at = math.inf
        self._next_push_pull = now + config.push_pull_interval
        self._next_reconnect = now + config.reconnect_interval
        self._messages: list[Envelope] = []
        self._events: list[MemberEvent] = []
        self.probes = self.failed_probes = self.suspicions = 0
        self.refutations = self.conflicts = 0
        #: raised each time this node refutes or re-announces its Alive (rule 7)
        self._announcements = 0
        self._enqueue(Update(me, self.id))

    # ------------------------------------------------------------------ inputs

    def join(self, seeds: Sequence[str], now: float) -> None:
        """Push-pull with every seed address, retried until some ``Sync`` arrives."""
        self.now = now
        self._seeds = tuple(s for s in seeds if s != self.config.address)
        self._joined = not self._seeds
        self._next_join_at = now
        self._tick_sync()

    def leave(self, now: float) -> None:
        """Graceful leave: announce ``Left`` to every live member, then go quiet."""
        if self.left:
            return
        self.now = now
        self.incarnation += 1
        me = self._set_self(LEFT)
        for member in self.live_members():
            self._send(member.address, Gossip((Update(me, self.id),)))
        self._events.append(MemberEvent(EventKind.LEFT, me, now))
        self.left = True
        self._probe = None
        self._queue.clear()

    def step(self, src: str, message: Message, now: float) -> None:
        """Handle one message from address ``src``. Never raises on odd input."""
        self.now = now
        if self.left:
            return
        announcements = self._announcements
        match message:
            case Ping():
                self._apply_all(message.updates)
                self._on_ping(src, message)
            case Ack():
                self._apply_all(message.updates)
                self._on_ack(message)
            case Nack():
                if self._probe is not None and message.seq == self._probe.seq:
                    self._probe.nacks += 1
            case PingReq():
                self._apply_all(message.updates)
                self._on_ping_req(src, message)
            case Sync():
                self._on_sync(src, message)
            case Gossip():
                self._apply_all(message.updates)
        if self._announcements != announcements and not isinstance(message, Ping | Sync):
            # Rule 7: whoever told us we are suspect may hold the timer; answer it directly
            # (a Ping's Ack and a Sync's reply already carry our Alive).
            self._send(src, Gossip((Update(self.me, self.id),)))

    def tick(self, now: float) -> None:
        self.now = now
        if self.left:
            return
        self._tick_probe()
        self._tick_buddies()
        for seq, relay in list(self._relays.items()):
            if now >= relay.nack_at:
                del self._relays[seq]
                self._send(relay.requester, Nack(relay.seq))
        use_confirmations = self.config.suspicion_confirmations
        for entry in list(self._members.values()):
            s = entry.suspicion
            if s is not None and now >= s.deadline(use_confirmations):
                self._transition(entry, replace(entry.member, state=DEAD), self.id)
        self._tick_sync()
        for member_id, entry in list(self._members.items()):
            if not entry.member.state.live and now - entry.since >= self.config.reap_after:
                del self._members[member_id]

    def ready(self) -> MembershipReady:
        """Drain the outputs: send ``messages`` (any order), report ``events`` (in order)."""
        out = MembershipReady(self._messages, self._events)
        self._messages, self._events = [], []
        return out

    # ----------------------------------------------------------------- queries

    @property
    def me(self) -> Member:
        return self._members[self.id].member

    def members(self, now: float) -> list[Member]:
        """Every member known at ``now`` (this node included), by id; dead and left
        members until ``reap_after`` has passed since they changed."""
        reap = self.config.reap_after
        return [
            e.member
            for _, e in sorted(self._members.items())
            if e.member.state.live or now - e.since < reap
        ]

    def live_members(self) -> list[Member]:
        """Other members that are alive or suspect (a suspect may still refute), by id."""
        return [
            e.member
            for member_id, e in sorted(self._members.items())
            if member_id != self.id and e.member.state.live
        ]

    def member(self, member_id: str) -> Member | None:
        entry = self._members.get(member_id)
        return entry.member if entry is not None else None

    def status(self, now: float) -> MembershipStatus:
        counts = dict.fromkeys(MemberState, 0)
        for m in self.members(now):
            counts[m.state] += 1
        return MembershipStatus(
            node_id=self.id,
            incarnation=self.incarnation,
            alive=counts[ALIVE],
            suspect=counts[SUSPECT],
            dead=counts[DEAD],
            left=counts[LEFT],
            health_score=self.health,
            probe_interval=self.config.probe_interval * (self.health + 1),
            probes=self.probes,
            failed_probes=self.failed_probes,
            suspicions=self.suspicions,
            refutations=self.refutations,
            conflicts=self.conflicts,
        )

    def next_deadline(self) -> float:
        """The earliest local time at which ``tick`` has something to do."""
        times = [self._next_probe_at, self._next_push_pull, self._next_reconnect]
        if not self._joined:
            times.append(self._next_join_at)
        if self._probe is not None:
            times.append(self._probe.ends_at)
            if not self._probe.indirect_sent:
                times.append(self._probe.indirect_at)
        times += [r.nack_at for r in self._relays.values()]
        use_confirmations = self.config.suspicion_confirmations
        for e in self._members.values():
            if e.suspicion is not None:
                times += [e.suspicion.deadline(use_confirmations), e.suspicion.next_ping]
        return min(times)

    # ----------------------------------------------------------------- probing

    def _tick_probe(self) -> None:
        probe = self._probe
        if probe is not None:
            if not probe.acked and not probe.indirect_sent and self.now >= probe.indirect_at:
                self._send_indirect(probe)
            if self.now >= probe.ends_at:
                self._probe = None
                self._finish_probe(probe)
        if self._probe is None and self.now >= self._next_probe_at:
            self._start_probe()

    def _start_probe(self) -> None:
        scale = self.health + 1
        self._next_probe_at = self.now + self.config.probe_interval * scale
        target = self._next_target()
        if target is None:
            return
        self._seq += 1
        self.probes += 1
        self._probe = _Probe(
            self._seq, target, self.now + self.config.probe_timeout * scale, self._next_probe_at
        )
        ping = Ping(self._seq, target.id, target.generation, self._piggyback(target))
        self._send(target.address, ping)
        suspicion = self._members[target.id].suspicion
        if suspicion is not None:  # this ping is also this period's buddy ping
            suspicion.next_ping = self.now + self.config.probe_interval

    def _tick_buddies(self) -> None:
        """Rule 7: ping each suspect directly, on the unscaled interval, carrying the suspicion.

        The ping carries nothing else, so it spends no retransmissions on a member that
        may be dead; its ``Ack`` is handled like any other (updates applied, seq unknown)."""
        for entry in self._members.values():
            s = entry.suspicion
            if s is None or self.now < s.next_ping:
                continue
            s.next_ping = self.now + self.config.probe_interval
            target = entry.member
            self._seq += 1
            buddy = (Update(target, s.first),)
            self._send(target.address, Ping(self._seq, target.id, target.generation, buddy))

    def _next_target(self) -> Member | None:
        for _ in range(len(self._probe_order) + 1):
            if self._probe_index >= len(self._probe_order):
                self._probe_order = [m.id for m in self.live_members()]
                self.rng.shuffle(self._probe_order)
                self._probe_index = 0
                if not self._probe_order:
                    return None
            entry = self._members.get(self._probe_order[self._probe_index])
            self._probe_index += 1
            if entry is not None and entry.member.state.live and entry.member.id != self.id:
                return entry.member
        return None

    def _add_probe_target(self, member_id: str) -> None:
        if member_id in self._probe_order:
            return
        position = self.rng.randrange(len(self._probe_order) + 1)
        self._probe_order.insert(position, member_id)
        if position < self._probe_index:
            self._probe_index += 1

    def _send_indirect(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        if self.config.bugs.no_indirect_probes:
            return
        helpers = [m for m in self.live_members() if m.state is ALIVE and m.id != probe.target.id]
        self.rng.shuffle(helpers)
        helpers = helpers[: self.config.indirect_checks]
        probe.expected_nacks = len(helpers)
        for helper in helpers:
            self._send(helper.address, PingReq(probe.seq, probe.target, self._piggyback()))

    def _finish_probe(self, probe: _Probe) -> None:
        if probe.acked:
            self.health = max(0, self.health - 1)
            return
        self.failed_probes += 1
        missed = probe.expected_nacks - probe.nacks if probe.expected_nacks else 1
        self.health = min(self.config.max_health, self.health + max(0, missed))
        entry = self._members.get(probe.target.id)
        if entry is None or entry.member.generation != probe.target.generation:
            return
        if entry.member.state is ALIVE:
            self.suspicions += 1
            self._transition(entry, replace(entry.member, state=SUSPECT), self.id)
        elif entry.member.state is SUSPECT:
            self._confirm(entry, self.id)

    def _on_ping(self, src: str, ping: Ping) -> None:
        if ping.target_id != self.id:
            return
        if ping.target_generation != self.config.generation:
            # A ping for a previous life of this id: that process is gone.
            old = Member(self.id, ping.target_generation, self.config.address, 0, DEAD)
            tombstone, alive = self._retire_generation(old)
            self._send(src, Gossip((tombstone, alive)))
            return
        self._send(src, Ack(ping.seq, self._piggyback()))

    def _on_ack(self, ack: Ack) -> None:
        probe = self._probe
        if probe is not None and ack.seq == probe.seq:
            probe.acked = probe.acked or self.now <= probe.ends_at
            return
        relay = self._relays.pop(ack.seq, None)
        if relay is not None:
            self._send(relay.requester, Ack(relay.seq, self._piggyback()))

    def _on_ping_req(self, src: str, req: PingReq) -> None:
        self._seq += 1
        nack_at = self.now + self.config.probe_timeout * self.config.nack_fraction
        self._relays[self._seq] = _Relay(src, req.seq, nack_at)
        target = req.target
        ping = Ping(self._seq, target.id, target.generation, self._piggyback(target))
        self._send(target.address, ping)

    # ------------------------------------------------------------- push-pull

    def _tick_sync(self) -> None:
        now = self.now
        if not self._joined and now >= self._next_join_at:
            self._next_join_at = now + self.config.join_retry_interval
            for seed in self._seeds:
                self._send(seed, self._sync(reply=True))
        if now >= self._next_push_pull:
            self._next_push_pull = now + self.config.push_pull_interval
            self._sync_with_random(self.live_members())
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            dead = [e.member for _, e in sorted(self._members.items()) if e.member.state is DEAD]
            self._sync_with_random([m for m in dead if m.incarnation != RETIRED_INCARNATION])

    def _sync_with_random(self, candidates: list[Member]) -> None:
        if candidates:
            target = candidates[self.rng.randrange(len(candidates))]
            self._send(target.address, self._sync(reply=True))

    def _sync(self, reply: bool) -> Sync:
        return Sync(self.id, tuple(e.member for _, e in sorted(self._members.items())), reply)

    def _on_sync(self, src: str, sync: Sync) -> None:
        self._joined = True
        updates = []
        for m in sync.members:
            known = self._members.get(m.id)
            if (
                m.state is DEAD
                and m.id != self.id
                and m.incarnation != RETIRED_INCARNATION
                and known is not None
                and known.member.state.live
            ):
                m = replace(m, state=SUSPECT)  # rule 8: check it ourselves
            updates.append(Update(m, sync.source_id))
        self._apply_all(updates)
        if sync.reply:
            self._send(src, self._sync(reply=False))

    # ---------------------------------------------------------- dissemination

    def _apply_all(self, updates: Sequence[Update]) -> None:
        # Tombstones first: an older generation's death must land before its successor's Alive.
        for update in sorted(updates, key=lambda u: u.member.state is ALIVE):
            self._apply(update)

    def _apply(self, update: Update) -> None:
        m = update.member
        if m.id == self.id:
            self._about_me(m)
            return
        if m.generation in self._retired.get(m.id, ()):
            return
        entry = self._members.get(m.id)
        if entry is None:
            if m.state.live and m.incarnation != RETIRED_INCARNATION:
                self._admit(update)
            return
        current = entry.member
        if m.generation != current.generation:
            if m.state is ALIVE and not current.state.live:  # rule 4: a successor
                self._retired.setdefault(m.id, set()).add(current.generation)
                del self._members[m.id]
                self._admit(update)
            else:
                self.conflicts += 1
            return
        if m.outranks(current):
            self._transition(entry, m, update.source)
        elif (
            m.state is SUSPECT and current.state is SUSPECT and m.incarnation == current.incarnation
        ):
            self._confirm(entry, update.source)

    def _about_me(self, m: Member) -> None:
        if m.generation != self.config.generation:
            if m.state.live or m.incarnation != RETIRED_INCARNATION:
                self._retire_generation(m)
            return
        if m.state is ALIVE:
            if m.incarnation > self.incarnation:  # someone holds a newer Alive of ours: outbid it
                self._refute(m.incarnation)
            return
        if self.config.bugs.no_refutation or m.incarnation >= RETIRED_INCARNATION - 1:
            return
        if m.incarnation < self.incarnation:  # stale news: spread our current Alive again
            self._announcements += 1
            self._enqueue(Update(self.me, self.id))
            return
        self._refute(m.incarnation)
        self.health = min(self.config.max_health, self.health + 1)

    def _refute(self, incarnation: int) -> None:
        self.incarnation = incarnation + 1
        self.refutations += 1
        self._announcements += 1
        self._enqueue(Update(self._set_self(ALIVE), self.id))

    def _retire_generation(self, old: Member) -> tuple[Update, Update]:
        tomb = Update(replace(old, incarnation=RETIRED_INCARNATION, state=DEAD), self.id)
        alive = Update(self.me, self.id)
        self._enqueue(tomb)
        self._enqueue(alive)  # queued after the tombstone, so it is sent after it
        return tomb, alive

    def _admit(self, update: Update) -> None:
        m = update.member
        entry = _Entry(m, self.now)
        self._members[m.id] = entry
        if m.state is SUSPECT:
            entry.suspicion = self._new_suspicion(update.source)
        self._events.append(MemberEvent(EventKind.JOINED, m, self.now))
        self._add_probe_target(m.id)
        self._enqueue(update)

    def _transition(self, entry: _Entry, m: Member, source: str) -> None:
        old = entry.member
        entry.member, entry.since = m, self.now
        entry.suspicion = self._new_suspicion(source) if m.state is SUSPECT else None
        kind: EventKind | None = None
        match m.state:
            case MemberState.ALIVE if old.state in (SUSPECT, DEAD):
                kind = EventKind.RECOVERED
            case MemberState.ALIVE if old.state is LEFT:
                kind = EventKind.JOINED
            case MemberState.ALIVE if old.address != m.address:
                kind = EventKind.UPDATED
            case MemberState.SUSPECT if old.state is not SUSPECT:
                kind = EventKind.SUSPECTED
            case MemberState.DEAD:
                kind = EventKind.FAILED
            case MemberState.LEFT:
                kind = EventKind.LEFT
        if kind is not None:
            self._events.append(MemberEvent(kind, m, self.now))
        if m.state.live:
            self._add_probe_target(m.id)
        self._enqueue(Update(m, source))

    def _new_suspicion(self, first: str) -> _Suspicion:
        n = sum(1 for e in self._members.values() if e.member.state.live)
        low, high = suspicion_bounds(n, self.config)
        k = max(0, min(self.config.suspicion_k, n - 2))
        # Our own failed probe just pinged it; news from others is checked at once.
        next_ping = self.now + (self.config.probe_interval if first == self.id else 0.0)
        return _Suspicion(self.now, first, low, high, k, next_ping)

    def _confirm(self, entry: _Entry, source: str) -> None:
        s = entry.suspicion
        if s is None or source == s.first or source in s.confirmations:
            return
        s.confirmations.add(source)
        if len(s.confirmations) <= s.k:  # pass independent suspicions on while they still count
            self._enqueue(Update(entry.member, source))

    def _set_self(self, state: MemberState) -> Member:
        entry = self._members[self.id]
        entry.member = replace(entry.member, incarnation=self.incarnation, state=state)
        entry.since = self.now
        return entry.member

    def _enqueue(self, update: Update) -> None:
        self._order += 1
        key = (update.member.id, update.member.generation)
        self._queue[key] = _Broadcast(update, self._order)

    def _piggyback(self, target: Member | None = None) -> tuple[Update, ...]:
        """Updates for one outgoing message; a suspected ``target`` hears of it first (rule 7)."""
        out: list[Update] = []
        buddy_key: tuple[str, str] | None = None
        if target is not None:
            entry = self._members.get(target.id)
            suspicion = entry.suspicion if entry is not None else None
            if (
                entry is not None
                and suspicion is not None
                and entry.member.generation == target.generation
            ):
                out.append(Update(entry.member, suspicion.first))
                buddy_key = (target.id, target.generation)
        live = sum(1 for e in self._members.values() if e.member.state.live)
        limit = retransmit_limit(live, self.config.retransmit_mult)
        queued = sorted(self._queue.items(), key=lambda kv: (kv[1].transmits, -kv[1].order))
        for key, broadcast in queued[: self.config.max_piggyback]:
            if key != buddy_key:
                out.append(broadcast.update)
            broadcast.transmits += 1
            if broadcast.transmits >= limit:
                del self._queue[key]
        return tuple(out)

    def _send(self, dst: str, message: Message) -> None:
        self._messages.append(Envelope(dst, message))

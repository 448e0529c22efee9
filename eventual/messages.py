"""Every message eventual replicas exchange, as small frozen dataclasses.

Vocabulary (see ``eventual.dots``): an *event* is one update named by its
dot; its *covers* is the causal context it supersedes on its key (the
dots it removes), its *deps* the creating replica's version vector just
before it (its causal past). Invariants every event satisfies (the codec
rejects any event that does not):

- ``deps`` contains exactly the creator's earlier events: ``deps[actor] == counter - 1``;
- ``covers <= deps``: an event only supersedes what its creator had seen.

Protocol (Scuttlebutt-style anti-entropy, van Renesse et al. 2008, over
events rather than key versions):

- ``Digest``: "per origin, the highest dot I have" (my version vector).
  The receiver answers with ``Deltas`` holding what the sender lacks, in
  causal (hence per-origin) order and within a size cap, and, if ``reply``
  and it lacks something itself, with its own ``Digest``.
- ``Deltas``: events, oldest first. Receivers apply each one only when its
  causal past is applied (causal delivery) and buffer it until then.
- ``FullState``: the whole dot store and causal context (plus the sender's
  uncollected log and whom it no longer counts). Used only for a replica
  that was away beyond the garbage-collection horizon (its missing events
  were collected) and for repair; merged with the state join. Sent in
  byte-bounded chunks, merged once reassembled (``eventual.full_state``).
- ``RepairProbe``: periodic push-pull check: same version vector but a
  different state hash means divergence, repaired by exchanging ``FullState``.

Every message names the sender's replica *identity* (``replica``), which
changes when a node is wiped, so peers never confuse two lives of one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventual.dots import Dot, Key, Sibling, WireVV

__all__ = [
    "MAX_GROUP_EVENTS",
    "Deltas",
    "Digest",
    "Envelope",
    "Event",
    "FullState",
    "Message",
    "RepairProbe",
    "StateEntry",
]


#: the most events one group (one transaction) may hold: far below a
#: receiver's causal buffer (``ReplicaConfig.max_pending``), so a group always fits
MAX_GROUP_EVENTS = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One update. ``value is None`` is a removal (delete, deregister)."""

    dot: Dot
    key: Key
    value: bytes | None
    #: hybrid logical clock of the creator at creation (``eventual.hlc``)
    hlc: int
    covers: WireVV
    deps: WireVV
    #: the client's idempotency key: events with the same key on the same key
    #: are attempts of one write (``eventual.serve``: reads show one sibling)
    idem: str | None = None
    #: 0, or the counter of the last event of this event's *group*: the
    #: consecutive events of one transaction (``eventual.txn``), which every
    #: replica applies together or not at all (``eventual.delivery``);
    #: ``counter <= group_end < counter + MAX_GROUP_EVENTS``
    group_end: int = 0


@dataclass(frozen=True, slots=True)
class Digest:
    replica: str
    vv: WireVV
    #: answer with your own Digest if you lack something I have
    reply: bool


@dataclass(frozen=True, slots=True)
class Deltas:
    replica: str
    #: the sender's version vector (keeps the receiver's stability view fresh)
    vv: WireVV
    #: in causal order (a linearization of the sender's apply order)
    events: tuple[Event, ...]


#: one key of a full state: its siblings, sorted by dot
StateEntry = tuple[Key, tuple[tuple[Dot, Sibling], ...]]


@dataclass(frozen=True, slots=True)
class FullState:
    replica: str
    #: the sender's causal context (always a compact version vector)
    vv: WireVV
    #: every key with at least one sibling, sorted by key
    entries: tuple[StateEntry, ...]
    hlc: int
    #: push-pull: answer with your own FullState
    reply: bool
    #: the sender's event log (events not yet causally stable), in apply order, so
    #: the receiver can serve them to peers that still lack them
    log: tuple[Event, ...] = ()
    #: the nodes the sender no longer counts (away beyond its horizon, or a new
    #: identity): it may have collected events they lack, so the receiver, which
    #: now holds those events without their log, must bring them back by full state
    rejoining: tuple[str, ...] = ()
    #: this message is chunk ``part`` of ``parts`` of one transfer (``eventual.full_state``):
    #: a receiver merges only once it holds every chunk
    part: int = 0
    parts: int = 1


@dataclass(frozen=True, slots=True)
class RepairProbe:
    replica: str
    vv: WireVV
    #: order-independent hash of the dot store (``eventual.ormap.sibling_hash``)
    state_hash: int


Message = Digest | Deltas | FullState | RepairProbe


@dataclass(frozen=True, slots=True)
class Envelope:
    src: str
    dst: str
    message: Message

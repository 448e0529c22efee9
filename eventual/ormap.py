"""The dot store of a replica: an add-wins observed-remove map of multi-value
registers sharing one causal context (delta-state ORMap, Almeida et al.).

``entries`` maps each key to its siblings (dot -> value); ``context`` holds
every dot the replica has seen. Invariants:

- a key with no siblings is absent (deleted keys leave no record);
- every sibling's dot is in ``context``; a dot in ``context`` with no sibling
  was removed — this is the only tombstone, summarised by the context;
- under causal delivery the context is a compact version vector (empty cloud).

Updates arrive as events (``eventual.messages.Event``). ``apply_event`` is
the delta join of the event's delta (``delta_of``) done in place; the tests
check it equals ``join(state, delta_of(event))``. An event removes the
siblings of its key whose dots its ``covers`` holds (observed remove: a
concurrent add, unseen by the remover, survives: add wins) and adds its own
sibling unless it is a removal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from eventual.context import CausalContext
from eventual.dots import VV, Dot, Key, Sibling, vv_covers, vv_of_dots
from eventual.messages import Event
from eventual.mvr import dotfun_join

__all__ = ["Change", "ORMap", "sibling_hash"]


def sibling_hash(key: Key, dot: Dot, sibling: Sibling) -> int:
    """A 64-bit hash of one sibling; the state hash is the XOR over all siblings
    (order-independent, maintained incrementally)."""
    h = hashlib.blake2b(digest_size=8)
    h.update("\x00".join((*key, dot[0], str(dot[1]), str(sibling.hlc))).encode())
    h.update(b"\x00")
    h.update(sibling.value)
    if sibling.idem is not None:
        h.update(b"\x00" + sibling.idem.encode())
    return int.from_bytes(h.digest(), "big")


@dataclass
class Change:
    """What one update did to one key."""

    key: Key
    removed: list[tuple[Dot, Sibling]] = field(default_factory=list)
    added: list[tuple[Dot, Sibling]] = field(default_factory=list)


class ORMap(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: dict[Key, dict[Dot, Sibling]] = Field(default_factory=dict)
    context: CausalContext = Field(default_factory=CausalContext)

    # ------------------------------------------------------------------ reads

    def siblings(self, key: Key) -> dict[Dot, Sibling]:
        return self.entries.get(key, {})

    def key_vv(self, key: Key) -> VV:
        """The read context of ``key``: the version vector of its sibling dots."""
        return vv_of_dots(self.entries.get(key, ()))

    def copy_state(self) -> ORMap:
        return ORMap.model_construct(
            entries={k: dict(s) for k, s in self.entries.items()},
            context=CausalContext.of(self.context.vv, self.context.cloud),
        )

    # ------------------------------------------------------------------ joins

    def join(self, other: ORMap, *, ignore_seen: bool = False) -> ORMap:
        """Least upper bound (pure). ``ignore_seen``: the planted merge bug."""
        out = self.copy_state()
        out.join_into(other, ignore_seen=ignore_seen)
        return out

    def join_into(self, other: ORMap, *, ignore_seen: bool = False) -> list[Change]:
        """``self := self ⊔ other`` in place; returns the changed keys."""
        changes: list[Change] = []
        # In a deterministic order (never a set's): the changes drive instance expiry
        # timers, so a hash-seed-dependent order would break replay across processes.
        keys = [*self.entries, *(k for k in other.entries if k not in self.entries)]
        for key in keys:
            mine = self.entries.get(key, {})
            theirs = other.entries.get(key, {})
            merged = dotfun_join(
                mine, self.context, theirs, other.context, ignore_seen=ignore_seen
            )
            if merged == mine:
                continue
            change = Change(key)
            change.removed = [(d, s) for d, s in mine.items() if d not in merged]
            change.added = [(d, s) for d, s in merged.items() if d not in mine]
            changes.append(change)
            if merged:
                self.entries[key] = merged
            else:
                self.entries.pop(key, None)
        self.context = self.context.join(other.context)
        return changes

    def delta_of(self, event: Event) -> ORMap:
        """The delta-state of ``event`` relative to this state: its sibling, and a
        context of its dot plus the dots of ``key`` that ``covers`` removes."""
        covers = dict(event.covers)
        removed = [d for d in self.entries.get(event.key, ()) if vv_covers(covers, d)]
        entries = {} if event.value is None else {
            event.key: {event.dot: Sibling(event.value, event.hlc, event.idem)}}
        return ORMap.model_construct(
            entries=entries, context=CausalContext.of(dots=[event.dot, *removed])
        )

    def apply_event(self, event: Event, *, ignore_seen: bool = False,
                    drop_siblings: bool = False) -> Change | None:
        """The delta join of ``event`` in place. An event already seen is a no-op
        (idempotence) unless ``ignore_seen``; ``drop_siblings`` removes what the event
        does not cover too (both planted bugs). Returns the change."""
        if not ignore_seen and self.context.contains(event.dot):
            return None
        change = Change(event.key)
        sibs = self.entries.get(event.key)
        if sibs and (event.covers or drop_siblings):
            covers = dict(event.covers)
            for dot in [d for d in sibs if drop_siblings or vv_covers(covers, d)]:
                change.removed.append((dot, sibs.pop(dot)))
        if event.value is not None:
            if sibs is None:
                sibs = self.entries[event.key] = {}
            if event.dot not in sibs:
                sibling = Sibling(event.value, event.hlc, event.idem)
                sibs[event.dot] = sibling
                change.added.append((event.dot, sibling))
        if sibs is not None and not sibs:
            del self.entries[event.key]
        self.context.add(event.dot)
        return change

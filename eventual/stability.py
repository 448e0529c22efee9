"""Causal stability: what every member has, and who no longer counts.

A replica learns each peer's version vector from the peer's own messages
(digests, deltas, full states). Those vectors are durable at the peer (the
driver syncs before it sends), so they only grow — unless the peer's
*identity* changes (it was wiped and came back fresh), which resets what we
know of it.

An event is *causally stable* when every counted member has it; the stable
vector is the pointwise minimum over this replica and every counted peer.
A peer counts unless it has been silent for longer than ``horizon`` (local
seconds): an absent member must not hold garbage collection back forever.
Such a peer is marked *rejoining*; so is a node that comes back with a new
identity, and so is a node the sender of a merged full state no longer
counted (``inherit``: we now hold, without their log, events it may lack). A rejoining peer is brought back by full state transfer, never by
delta merge (the events it lacks may be collected), and stops rejoining
once its version vector reaches this replica's log floor.

Membership (SWIM, ``eventual.membership``) enters through ``set_members``:
the roster, and which members the failure detector currently thinks alive
(alive counts as heard from).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from eventual.dots import VV, vv_join_into, vv_leq

__all__ = ["PeerView", "Stability"]


@dataclass
class PeerView:
    replica: str | None = None
    vv: VV = field(default_factory=dict)
    last_heard: float = 0.0
    rejoining: bool = False


class Stability:
    def __init__(self, me: str, peers: Iterable[str], horizon: float, now: float) -> None:
        self.me = me
        self.horizon = horizon
        #: booting counts as contact: a fresh replica never collects what a peer may lack
        self.peers: dict[str, PeerView] = {p: PeerView(last_heard=now) for p in peers if p != me}

    def heard(self, node: str, replica: str, vv: Mapping[str, int], now: float) -> None:
        peer = self.peers.get(node)
        if peer is None:
            return
        if peer.replica != replica:
            if peer.replica is not None:
                peer.rejoining = True  # a new life of this node: it starts from nothing
            peer.replica = replica
            peer.vv = {}
        vv_join_into(peer.vv, vv)
        peer.last_heard = max(peer.last_heard, now)

    def set_members(self, members: Iterable[str], alive: Iterable[str], now: float) -> None:
        """The roster (new members are added, removed ones forgotten) and the
        members the failure detector currently reports alive."""
        roster = {m for m in members if m != self.me}
        for gone in sorted(set(self.peers) - roster):
            del self.peers[gone]
        for m in sorted(roster - set(self.peers)):
            # A member added later starts empty: what it lacks may already be collected.
            self.peers[m] = PeerView(last_heard=now, rejoining=True)
        for m in alive:
            if m in self.peers:
                self.peers[m].last_heard = max(self.peers[m].last_heard, now)

    def refresh(self, now: float) -> None:
        """Mark peers silent beyond the horizon as rejoining."""
        for peer in self.peers.values():
            if now - peer.last_heard > self.horizon:
                peer.rejoining = True

    def counted(self) -> list[str]:
        return [n for n, p in self.peers.items() if not p.rejoining]

    def stable(self, own: Mapping[str, int]) -> VV:
        """The pointwise minimum of ``own`` and every counted peer's vector."""
        out = dict(own)
        for peer in self.peers.values():
            if peer.rejoining:
                continue
            for actor in list(out):
                have = peer.vv.get(actor, 0)
                if have < out[actor]:
                    out[actor] = have
        return out

    def rejoining(self) -> tuple[str, ...]:
        return tuple(n for n, p in self.peers.items() if p.rejoining)

    def inherit(self, nodes: Iterable[str], floor: Mapping[str, int]) -> None:
        """A full state from a replica that no longer counts ``nodes`` was merged:
        this replica now holds events it cannot serve (below ``floor``) that
        those nodes may lack. Any of them not known to be past the floor is
        rejoining here too, so it is brought back by full state from here as well."""
        for node in nodes:
            peer = self.peers.get(node)
            if peer is not None and not vv_leq(floor, peer.vv):
                peer.rejoining = True

    def needs_full_state(self, node: str, floor: Mapping[str, int]) -> bool:
        """True iff ``node`` is rejoining and still below this replica's log floor."""
        peer = self.peers.get(node)
        if peer is None or not peer.rejoining:
            return False
        if vv_leq(floor, peer.vv):
            peer.rejoining = False
            return False
        return True

    def lag(self, own: Mapping[str, int]) -> dict[str, int]:
        """Per peer, how many of this replica's events it is not known to have."""
        return {
            n: sum(max(0, c - p.vv.get(a, 0)) for a, c in own.items())
            for n, p in self.peers.items()
        }

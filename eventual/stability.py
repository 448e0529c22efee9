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

Membership enters through ``set_members``: the *roster* (the replicas that
gossip and count; in a node, the strong group's committed configuration,
``configsvc.node_members``), and which members the failure detector (SWIM,
``eventual.membership``) currently thinks alive (alive counts as heard from).
The roster may grow and shrink; the rules that keep collection safe:

1. A member enters the roster rejoining: it may lack events this replica
   has already collected, so it is brought up by full state, never by
   deltas it cannot use. Only ``needs_full_state`` clears the mark, and only
   once what is known of the member (its messages' vectors, joined) reaches
   this replica's log floor: its first digest, or any later message, does
   not count it earlier. A member added before anything was collected (an
   empty floor) is counted at its first digest, and then holds collection
   back like any other.
2. A member leaves the roster whole: its view is forgotten, it holds nothing
   back, and its messages are ignored (``Replica.step``). What it wrote stays:
   the stable vector is taken over *this replica's* version vector, whose
   entries (the removed member's included) are never dropped, so its events
   already applied stay in the state and the context, and its events still
   in other replicas' logs are collected only once every counted member has
   them (the minimum over the counted members, which no longer include it).
3. Shrinking the roster only lets collection go further; it cannot strand a
   member that stays: every member in the roster is either counted (the
   stable vector waits for it) or rejoining (a full state brings it up).
   Growing it cannot strand the newcomer (rule 1). A member that is in the
   roster of some replicas and not yet of others (each learns the
   configuration at its own pace) is counted where it is known; where it is
   not, collection may pass it, and when it arrives there it arrives
   rejoining. Every holder also checks its log floor before answering a
   digest with deltas (``Replica._can_serve``), whatever the marks say.
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

    def set_members(self, members: Iterable[str], alive: Iterable[str], now: float) -> list[str]:
        """The roster (new members are added rejoining, rule 1; removed ones
        forgotten, rule 2) and the members the failure detector currently
        reports alive (only members of the roster count). Returns the removed."""
        roster = {m for m in members if m != self.me}
        removed = sorted(set(self.peers) - roster)
        for gone in removed:
            del self.peers[gone]
        for m in sorted(roster - set(self.peers)):
            # A member added later starts empty: what it lacks may already be collected.
            self.peers[m] = PeerView(last_heard=now, rejoining=True)
        for m in alive:
            if m in self.peers:
                self.peers[m].last_heard = max(self.peers[m].last_heard, now)
        return removed

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

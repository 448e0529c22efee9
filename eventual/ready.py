"""What a replica hands out: the ``Ready`` batch (what the driver must do, in
order) and the ``EventualStatus`` health report.

Driver contract (etcd-raft's): append ``persist`` to storage and sync it;
then send ``messages``; then deliver ``replies`` to clients. A reply may
acknowledge a write whose record is in ``persist``: syncing first is what
makes "acknowledged" mean "durable". Messages may carry a version vector
that includes events in ``persist``: syncing first keeps peers from
counting on events this replica could still lose (garbage collection
relies on it).

The status is what eventual namespaces report for health: per peer, how
many of this replica's events the peer is not known to have (``peer_lag``:
gossip lag and divergence); how many remote events wait for their causal
past (``pending``); which peers are away beyond the collection horizon or
back with a new identity (``rejoining``); how often a repair probe found
two replicas with the same version vector but different states
(``divergences``, always 0 in a correct cluster); and whether the replica is
in self-preservation (``eventual.health``: silent instances stay listed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventual.dots import VV
from eventual.health import PreservationReport
from eventual.messages import Envelope
from eventual.records import Record
from eventual.requests import Reply

__all__ = ["EventualStatus", "Ready"]


@dataclass
class Ready:
    persist: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.persist or self.messages or self.replies)


@dataclass(frozen=True)
class EventualStatus:
    node_id: str
    #: the replica identity (changes only when the node's disk is lost)
    replica: str
    vv: VV
    #: events kept for anti-entropy (not yet causally stable)
    log_events: int
    pending: int
    peer_lag: dict[str, int]
    rejoining: tuple[str, ...]
    state_hash: int
    divergences: int
    #: whether silence has stopped removing instances, and for how long
    #: (``eventual.health`` rule 4: most heartbeats stopped at once)
    self_preservation: PreservationReport = field(default_factory=PreservationReport)

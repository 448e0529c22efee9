"""What a replica reports about itself, for health and the dashboard.

Eventual namespaces report gossip lag and divergence: per peer, how many of
this replica's events the peer is not known to have (``peer_lag``); how
many remote events wait for their causal past (``pending``); which peers
are away beyond the collection horizon or back with a new identity
(``rejoining``); and how often a repair probe found two replicas with the
same version vector but different states (``divergences``, always 0 in a
correct cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventual.dots import VV

__all__ = ["EventualStatus"]


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

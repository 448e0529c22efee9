"""What an eventual replica is given: timing and sizing, namespace options,
the random source, and the planted bugs the simulator must catch.

Garbage collection rests on one rule: an event leaves the log only once it
is causally stable (every member not away beyond ``gc_horizon`` has it). A
member silent for longer than ``gc_horizon`` (local seconds) stops holding
collection back and must rejoin by full state transfer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from eventual.health import SelfPreservation

__all__ = ["LWW", "MVR", "Merge", "PlantedBugs", "ReplicaConfig"]

Merge = Literal["mvr", "lww"]
MVR: Merge = "mvr"
LWW: Merge = "lww"


class RandomSource(Protocol):
    """What a replica needs of ``random.Random``: injected, never imported, so a
    seeded instance replays a run exactly."""

    def random(self) -> float: ...

    def getrandbits(self, k: int, /) -> int: ...

    def sample(self, population: Sequence[str], k: int) -> list[str]: ...


@dataclass(frozen=True)
class PlantedBugs:
    """Deliberate defects, all off in production. Each exists so a test can
    prove the simulator's checkers catch it (a checker that cannot fail is a defect)."""

    #: apply a remote event as soon as it is next from its origin, ignoring its other deps
    deliver_before_causal_past: bool = False
    #: collect the event log at this replica's own version vector, not the stable one
    gc_before_stability: bool = False
    #: merges do not consult the receiver's causal context (re-merging a delta changes state)
    non_idempotent_merge: bool = False
    #: answer a request at once even if this replica does not cover its token
    serve_uncovered_token: bool = False
    #: answer a digest by deltas even when the log floor is above the peer's vector
    #: (issue 7, finding 6: only the non-durable rejoining marks decide on full state)
    ignore_can_serve: bool = False
    #: a remote event removes every sibling of its key, not only those it covers
    #: (concurrent writes are lost, and which one survives depends on delivery order)
    merge_drops_siblings: bool = False
    #: merge each full state chunk on its own, with the transfer's whole context
    #: (issue 7, finding 2: keys held by other chunks look deleted)
    merge_chunks_alone: bool = False
    #: apply a transaction's events one by one as they arrive, not as a group
    #: (a reader sees part of a transaction)
    ungrouped_delivery: bool = False

    def any(self) -> bool:
        return any(vars(self).values())


@dataclass(frozen=True)
class ReplicaConfig:
    #: this node's network name (its replica *identity* is separate and durable)
    node_id: str
    #: every member's network name, including this node
    nodes: tuple[str, ...]
    #: merge mode per namespace; namespaces not listed use ``default_merge``
    namespaces: Mapping[str, Merge] = field(default_factory=dict)
    default_merge: Merge = MVR
    gossip_interval: float = 0.2
    fanout: int = 3
    #: push each new local event to ``fanout`` peers at once (else only by digest)
    eager_push: bool = True
    repair_interval: float = 5.0
    #: a member silent this long (local seconds) no longer holds back collection
    gc_horizon: float = 5.0
    #: how long a request waits for this replica to cover its token
    token_wait: float = 0.3
    #: size cap of one Deltas message (estimated encoded bytes) and its event count
    max_delta_bytes: int = 128 * 1024
    max_delta_events: int = 4096
    #: size cap of one full state chunk (estimated encoded bytes), well below the
    #: transport's frame cap, so a state of any size can be transferred
    max_full_state_bytes: int = 4 * 1024 * 1024
    #: at most one full state per peer per this many seconds
    full_state_cooldown: float = 1.0
    #: events buffered while waiting for their causal past
    max_pending: int = 100_000
    #: write a snapshot record after this many event records
    snapshot_every: int = 20_000
    #: change-index values reserved per ``IndexRecord`` (``eventual.change_index``)
    index_block: int = 1024
    #: how long (local seconds) and how many keyed writes a replica remembers for
    #: idempotent retries (``eventual.recent_writes``)
    idempotency_horizon: float = 600.0
    idempotency_limit: int = 100_000
    #: when silence stops removing instances (``eventual.health`` rule 4)
    self_preservation: SelfPreservation = field(default_factory=SelfPreservation)
    bugs: PlantedBugs = field(default_factory=PlantedBugs)

    def __post_init__(self) -> None:
        if self.node_id not in self.nodes:
            raise ValueError(f"node {self.node_id!r} is not among the members {self.nodes}")
        if len(set(self.nodes)) != len(self.nodes):
            raise ValueError("members must be distinct")
        if self.fanout < 1 or self.max_delta_events < 1 or self.max_delta_bytes < 1024:
            raise ValueError("fanout, max_delta_events and max_delta_bytes must be positive")
        if self.index_block < 1:
            raise ValueError("index_block must be positive")
        if self.max_full_state_bytes < 1024:
            raise ValueError("max_full_state_bytes must be at least 1024")
        if self.gc_horizon <= 4 * self.gossip_interval:
            raise ValueError("gc_horizon must exceed four gossip intervals")
        for ns, merge in self.namespaces.items():
            if merge not in (MVR, LWW):
                raise ValueError(f"namespace {ns!r}: merge must be 'mvr' or 'lww'")

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if n != self.node_id)

    def merge_of(self, namespace: str) -> Merge:
        return self.namespaces.get(namespace, self.default_merge)

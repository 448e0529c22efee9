"""The output batch of a replica: what the driver must do, in order.

Driver contract (etcd-raft's): append ``persist`` to storage and sync it; then
send ``messages``; then install ``snapshot`` (if any) and apply ``committed``
in order; then answer ``reads`` once the state machine has applied at least
their index, and answer ``rejected`` requests with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from strong.messages import Batch, Envelope
from strong.records import Record


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


class RejectReason(Enum):
    #: this replica is not the leader; ``leader_hint`` may name one. Never proposed: safe to retry.
    NOT_LEADER = "not_leader"
    #: the leader stepped down before proposing it. Never proposed: safe to retry.
    STEPPED_DOWN = "stepped_down"


@dataclass(frozen=True, slots=True)
class Rejection:
    request_id: int
    reason: RejectReason
    leader_hint: str | None


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be answered from the state machine once it has
    applied slot ``index``."""

    request_id: int
    index: int


@dataclass(frozen=True, slots=True)
class SnapshotInstall:
    index: int
    data: bytes


@dataclass
class Ready:
    persist: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    snapshot: SnapshotInstall | None = None
    committed: list[tuple[int, Batch]] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def empty(self) -> bool:
        return not (
            self.persist
            or self.messages
            or self.snapshot
            or self.committed
            or self.reads
            or self.rejected
        )

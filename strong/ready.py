"""The output batch of a replica: what the driver must do, in order.

Driver contract (etcd-raft's): send ``send_first`` at once; append ``persist``
to storage and sync it; then send ``messages``; then install ``snapshot`` (if
any) and apply ``committed`` in order; then answer ``reads`` once the state
machine has applied at least their index, and answer ``rejected`` requests
with their reason. The driver takes no input (no message, no request) between
taking a Ready and finishing its sync.

``send_first`` holds a follower's requests to its leader (``Forward``,
``ReadIndexRequest``: they assert nothing) and the leader's Accepts (the
leader writes its own log while the followers write theirs, as etcd-raft's
leader does). The Accepts are safe because nothing they say waits on this
Ready's records: its ballot was
promised durably before phase 1 began (the Prepare went out only after the
PromiseRecord was synced), so a leader that crashes before the sync can never
reuse the ballot for another value; the leader's own accept counts toward a
quorum only through ``persist``, and the Accepted replies that complete that
quorum are handled after the sync (no input between Ready and sync); and the
commit index it carries is a fact learned from replies already handled.
Every acceptor's reply (Promise, Accepted, HeartbeatAck) stays in
``messages``, after its record is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from strong.member_log import ChangeOutcome
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
    #: the leader's Accepts: sent before ``persist`` is synced (see the module docstring)
    send_first: list[Envelope] = field(default_factory=list)
    persist: list[Record] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    snapshot: SnapshotInstall | None = None
    committed: list[tuple[int, Batch]] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: outcomes of membership change requests (``Replica.request_change``)
    changes: list[ChangeOutcome] = field(default_factory=list)

    def outbox(self) -> list[Envelope]:
        """Every message of this Ready, ``send_first`` first (for observers and tests)."""
        return self.send_first + self.messages

    def empty(self) -> bool:
        return not (
            self.send_first
            or self.persist
            or self.messages
            or self.snapshot
            or self.committed
            or self.reads
            or self.rejected
            or self.changes
        )

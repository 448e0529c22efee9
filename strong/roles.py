"""The volatile state of a replica's roles: candidate (phase 1) and leader (phase 2).

Nothing here is durable: a crash forgets all of it, and ``strong.replica``'s
rules make that safe (a restarted replica is a follower with its promise and
accepted values from disk). Plain data; the transitions live in the replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strong.ballot import Ballot
from strong.handoff import Transfer
from strong.member_log import MembershipChange
from strong.messages import Batch, Promise, SlotValue
from strong.rounds import HeartbeatRounds


@dataclass(slots=True)
class InFlight:
    value: Batch
    acks: set[str]
    sent_at: float


@dataclass(slots=True)
class PendingRead:
    request_id: int
    index: int
    #: a heartbeat round at least this high must be acknowledged by a quorum
    round: int
    #: answer only after that round, even while the lease is valid
    quorum: bool = False
    #: a follower's read (``ReadIndexRequest``): (node, its incarnation); None: ours
    origin: tuple[str, int] | None = None


@dataclass(slots=True)
class Leadership:
    """Volatile state of a leader (phase 2)."""

    ballot: Ballot
    next_slot: int
    recovery_end: int
    active_at: float
    active: bool = False
    inflight: dict[int, InFlight] = field(default_factory=dict)
    #: commands to propose: (request id, command, origin); origin as in ``PendingRead``
    pending: list[tuple[int, bytes, tuple[str, int] | None]] = field(default_factory=list)
    #: every command in ``pending`` or in flight: a forwarded copy of one is dropped
    queued: set[bytes] = field(default_factory=set)
    #: heartbeat rounds: leadership confirmation, the lease (``strong.rounds``)
    rounds: HeartbeatRounds = field(default_factory=lambda: HeartbeatRounds("", 1, 0.0))
    reads: list[PendingRead] = field(default_factory=list)
    round_wanted: bool = False
    last_ack: dict[str, float] = field(default_factory=dict)
    peer_commit: dict[str, int] = field(default_factory=dict)
    next_heartbeat: float = float("-inf")
    quorum_check_at: float = 0.0
    #: recovered values above a configuration slot not yet chosen (membership
    #: rule 12): proposed once the commit index reaches that slot
    held: dict[int, Batch] = field(default_factory=dict)
    #: a value was chosen at this ballot (rule 12a: only then may a change be proposed)
    own_commit: bool = False
    #: the slot of the configuration value in flight (0: none) and its request
    change_slot: int = 0
    change_request: int | None = None
    #: the leader committed its own removal (membership rule 14)
    lame_duck: bool = False
    #: a change waiting for ``own_commit``: (request id, change)
    change_waiting: tuple[int, MembershipChange] | None = None
    #: a leadership hand-off in progress (``strong.handoff``)
    transfer: Transfer | None = None
    #: the hand-off for this leadership's removal was tried: fall back to rule 14
    handoff_failed: bool = False


@dataclass(slots=True)
class PreCandidacy:
    ballot: Ballot
    grants: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Promised:
    """One acceptor's promise of the candidacy's ballot, reported in parts."""

    first: Promise
    received: float
    accepted: list[SlotValue]
    #: the slot the next part starts at; None once the report is complete
    next_part: int | None
    #: a later part's acceptor had compacted slots it had not reported yet
    behind: bool = False


@dataclass(slots=True)
class Candidacy:
    ballot: Ballot
    from_slot: int
    promises: dict[str, Promised] = field(default_factory=dict)
    deadline: float = 0.0
    parts_sent_at: float = float("-inf")
    #: voters of revealed configurations asked for a promise (membership rule 13)
    asked: set[str] = field(default_factory=set)
    #: started by the leader's ``TimeoutNow`` (rule 17)
    handed: bool = False

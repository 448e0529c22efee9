"""Timing and sizing of a replica, and the planted bugs the simulator must catch.

Lease safety rests on one inequality (checked in ``__post_init__``): a lease
granted by a heartbeat round sent at local time ``t`` lasts until
``t + lease_duration``; a new leader waits until every old lease must have
expired, measured conservatively under a clock-rate error of at most
``max_drift`` on every node (see ``strong.lease``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PlantedBugs:
    """Deliberate defects, all off in production. Each exists so a test can
    prove the simulator's checkers catch it (a checker that cannot fail is a defect)."""

    #: phase 1 ignores values other acceptors accepted (fills with no-ops instead)
    phase1_ignores_accepted: bool = False
    #: the acceptor's durable record is only emitted one Ready later than its reply
    reply_before_durable: bool = False
    #: a new leader does not wait out the previous leader's lease
    skip_lease_wait: bool = False
    #: a follower answers linearizable reads from its own state
    follower_local_reads: bool = False
    #: finding 1: a catch-up reply's commit index (from any ballot) commits the
    #: receiver's own accepted entries of its leader's ballot
    catchup_commits_uncarried: bool = False
    #: finding 3: a heartbeat round per read pass, acknowledgements count only for
    #: the round they name, and only the last 64 rounds are remembered
    exact_round_acks: bool = False
    #: finding 2: batches, catch-up replies and promises have no byte bound
    unbounded_bytes: bool = False
    #: finding 2: a snapshot travels whole, in one InstallSnapshot
    unchunked_snapshots: bool = False
    #: finding 4: an election starts without a pre-vote (a returning node deposes the leader)
    no_prevote: bool = False
    #: a lease runs from the quorum's acknowledgement instead of the round's send time
    lease_from_ack: bool = False
    #: phase 1 adopts the value with the lowest accepted ballot instead of the highest
    phase1_lowest_ballot: bool = False
    #: a quorum is n // 2 replicas instead of n // 2 + 1
    half_quorum: bool = False
    #: review S1 (rule 8): a leader or candidate takes catch-up replies and snapshots
    leader_takes_catchup: bool = False
    #: review S3 (rule 7): a non-voter acknowledges heartbeats
    nonvoter_acks: bool = False
    #: membership rule 12b-c: a leader proposes a change while another is pending
    #: (building on the pending one) and proposes beyond a configuration slot not
    #: yet chosen, counting quorums in its current configuration
    concurrent_changes: bool = False
    #: membership rule 13: phase 1 ignores the configurations its promises reveal
    candidate_ignores_config: bool = False
    #: membership rule 11: a learner's (or removed node's) Accepted and HeartbeatAck
    #: count toward quorums
    learner_in_quorum: bool = False
    #: rule 17: a candidate started by ``TimeoutNow`` does not wait out the old
    #: leader's lease ("it consented") -- but it still answers reads from it until
    #: it meets the higher ballot
    handoff_skips_lease_wait: bool = False

    def any(self) -> bool:
        return any(vars(self).values())


#: the widest window a leader may use; an acceptor refuses an Accept further than
#: this above the commit index it carries (a slot no honest leader proposes)
MAX_WINDOW = 1 << 16


@dataclass(frozen=True)
class ReplicaConfig:
    node_id: str
    #: every voter of the bootstrap configuration (including this node unless it
    #: joins as a learner); the log's configuration values supersede it
    voters: tuple[str, ...]
    heartbeat_interval: float = 0.05
    #: followers start an election after a random timeout in [t, 2t)
    election_timeout: float = 0.5
    #: bound on every clock's rate error (0.01 = 1%)
    max_drift: float = 0.01
    #: lease granted by one acknowledged heartbeat round; 0 disables lease reads
    lease_duration: float = 0.35
    #: slots in flight at once (phase 2 pipelining)
    window: int = 32
    #: commands packed into one slot (group commit)
    max_batch: int = 128
    retransmit_interval: float = 0.1
    #: chosen values sent in one catch-up reply
    catchup_max_slots: int = 128
    #: command bytes packed into one slot (a larger single command goes alone);
    #: with ``window`` it bounds an Accept and a Promise in bytes (finding 2)
    max_batch_bytes: int = 1 << 20
    #: command bytes in one catch-up reply and in one part of a Promise (at
    #: least one slot is always sent); no catch-up message carries more
    catchup_max_bytes: int = 8 << 20
    #: slots in one part of a Promise (no-ops weigh no bytes; receivers refuse
    #: more than ``WireLimits.max_slots``, 65536 by default)
    promise_max_slots: int = 4096
    #: snapshot bytes in one InstallSnapshot chunk; capped by ``catchup_max_bytes``
    #: (see ``snapshot_chunk``)
    snapshot_chunk_bytes: int = 4 << 20
    #: compact (snapshot the state machine) once the commands applied since the last
    #: snapshot weigh this many bytes, or a quarter of the last snapshot's size if
    #: that is more (``StateMachine.applied_bytes``; a driver also compacts every
    #: ``snapshot_every`` slots). It bounds what the log holds twice (in the log and in
    #: the state) and what a restart replays (replaying a byte costs about twice
    #: restoring one); the quarter-snapshot floor keeps the cost of snapshotting a
    #: large state at O(1) per byte written (four bytes encoded per byte applied).
    snapshot_log_bytes: int = 4 << 20
    #: whether a complete, CRC-valid snapshot received from a peer is one this node's
    #: state machine can decode (the driver injects the decoder; the core treats
    #: snapshots as opaque bytes). A snapshot it refuses is dropped before it is
    #: persisted and asked for again, like one whose CRC does not match: persisted,
    #: it would stop this node at every restart. ``None`` accepts any bytes.
    snapshot_valid: Callable[[bytes], bool] | None = field(default=None, compare=False)
    bugs: PlantedBugs = field(default_factory=PlantedBugs)
    #: learners of the bootstrap configuration (a node joining names itself here)
    learners: tuple[str, ...] = ()
    #: a learner is promoted only once its commit index is within this many
    #: slots of the leader's (``strong.replica`` rule 14)
    promote_max_lag: int = 64

    def __post_init__(self) -> None:
        if self.node_id not in self.voters and self.node_id not in self.learners:
            raise ValueError(f"node {self.node_id!r} is not among the voters {self.voters}")
        if not self.voters or set(self.voters) & set(self.learners):
            raise ValueError("need a voter, and no node both voter and learner")
        if len(set(self.voters)) != len(self.voters):
            raise ValueError("voters must be distinct")
        if not 0 <= self.max_drift < 0.5:
            raise ValueError("max_drift must be in [0, 0.5)")
        if self.heartbeat_interval * 2 >= self.election_timeout:
            raise ValueError("election_timeout must exceed two heartbeat intervals")
        if self.lease_duration >= self.election_timeout * (1 - self.max_drift):
            raise ValueError("lease_duration must be < election_timeout * (1 - max_drift)")
        if self.window < 1 or self.max_batch < 1 or self.catchup_max_slots < 1:
            raise ValueError("window, max_batch and catchup_max_slots must be >= 1")
        if self.window > MAX_WINDOW:
            raise ValueError(f"window must be <= {MAX_WINDOW}")
        if self.max_batch_bytes < 1 or self.catchup_max_bytes < self.max_batch_bytes:
            raise ValueError("need 1 <= max_batch_bytes <= catchup_max_bytes")
        if self.snapshot_chunk_bytes < 1 or self.promise_max_slots < 1:
            raise ValueError("snapshot_chunk_bytes and promise_max_slots must be >= 1")
        if self.snapshot_log_bytes < 1:
            raise ValueError("snapshot_log_bytes must be >= 1")

    def compaction_due(self, log_bytes: int, snapshot_bytes: int) -> bool:
        """Whether ``log_bytes`` of commands applied since the last snapshot (of
        ``snapshot_bytes``; 0 if none) call for a new one (``snapshot_log_bytes``)."""
        return log_bytes >= max(self.snapshot_log_bytes, snapshot_bytes // 4)

    @property
    def snapshot_chunk(self) -> int:
        """Bytes per snapshot chunk: ``snapshot_chunk_bytes``, never more than
        ``catchup_max_bytes`` (the bound on every message of the catch-up path,
        which an operator sets below the receivers' frame cap)."""
        return min(self.snapshot_chunk_bytes, self.catchup_max_bytes)

    @property
    def quorum(self) -> int:
        if self.bugs.half_quorum:
            return max(1, len(self.voters) // 2)
        return len(self.voters) // 2 + 1

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(v for v in self.voters if v != self.node_id)

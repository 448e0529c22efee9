"""Every message replicas exchange, as small frozen dataclasses.

Phase names follow "Paxos Made Simple": Prepare/Promise is phase 1 (1a/1b),
Accept/Accepted is phase 2 (2a/2b). Everything else is Multi-Paxos plumbing:
heartbeats (commit propagation, leases, read confirmation), catch-up of chosen
slots, snapshot transfer for replicas that fell behind compaction, and the
requests a follower hands to its leader (commands to propose, read indexes).

Every message is bounded in bytes by its sender (issue 7, finding 2): a batch
by ``ReplicaConfig.max_batch_bytes``, a catch-up reply, a Promise and a
snapshot chunk by ``catchup_max_bytes`` (at least one slot per reply or
Promise part, so each always progresses). A receiver refuses a frame above
its cap, so an unbounded message would be refused and resent forever.

A slot's value is a batch of opaque command bytes; the empty batch is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.ballot import Ballot

Batch = tuple[bytes, ...]
NOOP: Batch = ()


@dataclass(frozen=True, slots=True)
class SlotValue:
    """What an acceptor reports for one slot in a Promise."""

    slot: int
    ballot: Ballot
    value: Batch
    chosen: bool


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a: ask for a promise on every slot ``>= from_slot``."""

    ballot: Ballot
    from_slot: int


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b. ``log_start`` is the first slot this acceptor still holds
    (everything below is chosen and compacted into its snapshot).
    ``since_leader_contact`` is the local time elapsed since this acceptor last
    acknowledged any leader (or since it booted): the new leader uses it to wait
    out the old leader's lease.

    ``truncated``: the report reached the acceptor's byte budget and stops at
    ``accepted[-1].slot`` (never empty then); the candidate asks for the rest
    with another Prepare of the same ballot from the next slot, and is not
    done with phase 1 until every part arrived."""

    ballot: Ballot
    from_slot: int
    accepted: tuple[SlotValue, ...]
    log_start: int
    commit_index: int
    since_leader_contact: float
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for one slot; carries the leader's commit index."""

    ballot: Ballot
    slot: int
    value: Batch
    commit_index: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b."""

    ballot: Ballot
    slot: int


@dataclass(frozen=True, slots=True)
class Nack:
    """A refusal: the sender has promised ``promised``, which outranks the request."""

    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Leader liveness, commit propagation, and one round of lease/read confirmation."""

    ballot: Ballot
    round: int
    commit_index: int


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    ballot: Ballot
    round: int
    commit_index: int


@dataclass(frozen=True, slots=True)
class PreVote:
    """Before phase 1: "would you promise ``ballot`` now?" Changes nothing at the
    receiver. Granted only by a replica that has not heard from a leader for an
    election timeout, so a node returning from a partition cannot depose a
    leader the majority still follows (Ongaro's thesis, section 9.6)."""

    ballot: Ballot
    commit_index: int


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    ballot: Ballot
    granted: bool


@dataclass(frozen=True, slots=True)
class CatchUpRequest:
    """A replica asks for chosen values of slots ``>= from_slot``.

    ``snapshot_index``/``snapshot_offset``: the snapshot transfer it has in
    progress and how many of its bytes it holds (0, 0 for none). A sender
    whose snapshot is at that index resumes there; otherwise it starts its
    own snapshot at offset 0."""

    ballot: Ballot
    from_slot: int
    snapshot_index: int = 0
    snapshot_offset: int = 0


@dataclass(frozen=True, slots=True)
class CatchUpReply:
    """Chosen values, contiguous from ``from_slot``."""

    ballot: Ballot
    from_slot: int
    values: tuple[Batch, ...]
    commit_index: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of the applied state at ``index`` (every slot ``<= index`` is
    chosen): ``data`` is bytes ``offset .. offset + len(data)`` of a snapshot
    of ``total`` bytes whose CRC32C is ``crc`` (``strong.snapshot_transfer``)."""

    ballot: Ballot
    index: int
    offset: int
    total: int
    crc: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    """A follower hands client commands to the leader of ``ballot``, which proposes
    them as its own (batched: one message per Ready). ``request_ids`` are the
    follower's, one per command; the follower answers when it applies them."""

    ballot: Ballot
    #: the follower's process life (replies name it: ids restart with a process)
    incarnation: int
    request_ids: tuple[int, ...]
    commands: Batch


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """A follower asks the leader of ``ballot`` for the index a linearizable read
    may be answered at (ReadIndex on a follower); ``quorum`` as in ``read_index``."""

    ballot: Ballot
    incarnation: int
    request_ids: tuple[int, ...]
    quorum: bool


@dataclass(frozen=True, slots=True)
class ReadIndexReply:
    """The leader of ``ballot`` confirmed its leadership after the requests arrived:
    the follower may answer them once it has applied slot ``index``."""

    ballot: Ballot
    incarnation: int
    index: int
    request_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Refused:
    """The receiver of a Forward or ReadIndexRequest will not act on these requests
    (it does not lead, or stepped down first): never proposed, safe to retry."""

    ballot: Ballot
    incarnation: int
    request_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """A leader hands leadership to the receiver: "start phase 1 now, without
    waiting for an election timeout or a pre-vote". Sent only to a voter that
    has committed everything the leader committed. Acted on only by a follower
    of exactly ``ballot``'s leader: a stale or forged one changes nothing.
    Safety never rests on it (phase 1 is phase 1); it saves an election timeout
    when the leader is removed or an operator moves leadership."""

    ballot: Ballot


Message = (
    Prepare
    | Promise
    | Accept
    | Accepted
    | Nack
    | Heartbeat
    | HeartbeatAck
    | PreVote
    | PreVoteReply
    | CatchUpRequest
    | CatchUpReply
    | InstallSnapshot
    | Forward
    | ReadIndexRequest
    | ReadIndexReply
    | Refused
    | TimeoutNow
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message on the wire between two replicas."""

    src: str
    dst: str
    message: Message


def payload_bytes(message: Message) -> int:
    """Command bytes a message carries (what its encoded size grows with).

    Senders bound this (``ReplicaConfig.max_batch_bytes``,
    ``catchup_max_bytes``, ``snapshot_chunk``) because receivers refuse frames above their cap: an
    unbounded message would be refused forever and retried forever."""
    match message:
        case Accept():
            return sum(map(len, message.value))
        case CatchUpReply():
            return sum(len(c) for v in message.values for c in v)
        case Promise():
            return sum(len(c) for v in message.accepted for c in v.value)
        case InstallSnapshot():
            return len(message.data)
        case _:
            return 0

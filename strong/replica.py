"""A Multi-Paxos replica as a pure state machine (acceptor, proposer and learner in one).

Inputs: ``step(src, message, now)``, ``tick(now)``, ``propose``, ``read_index``,
``compact``. Output: ``ready()`` -> ``Ready`` (see ``strong.ready`` for the
driver's contract). Time enters only as ``now`` (this node's local clock);
randomness only through the injected ``random.Random``.

One class holds the acceptor, the proposer and the learner because their
rules interlock: a promise steps a proposer down (rule 1), a commit folds
configurations that re-target quorums and heartbeat rounds (rule 10), a
leader's own commit decides when it may change them (rule 12). Parts with
state or reasoning of their own live beside it: ``strong.phase1`` (recovery
values), ``strong.lease``, ``strong.rounds`` (heartbeat rounds, leases,
reads), ``strong.leader_requests`` (a follower's requests to its leader),
``strong.snapshot_transfer``, ``strong.membership`` and ``strong.member_log``
(configurations), ``strong.handoff`` (choosing a successor).

Rules this module obeys (each one is what safety rests on):

1. Acceptor. A Prepare or Accept with a ballot below ``promised`` is refused
   with a Nack. Raising ``promised`` or accepting a value emits its durable
   record in the *same* Ready as the reply, so the driver persists it first.
2. Phase 1 runs once per leadership over every slot above the candidate's
   commit index. For each slot the leader re-proposes a value reported chosen,
   else the value with the highest accepted ballot, else a no-op. A Promise
   larger than the acceptor's byte budget comes in parts (``truncated``); an
   acceptor's promise counts toward the quorum only once every part arrived,
   so the report still covers every slot (parts are disjoint slot ranges, and
   after promising the acceptor accepts nothing at a lower ballot).
3. A leader proposes at most one value per slot per ballot. Therefore an
   acceptor that accepted at ballot ``b`` holds the chosen value of every slot
   at or below the commit index announced by the leader of ``b`` -- and only
   that leader's: ``leader_commit`` is learned from Accepts and Heartbeats of
   ``leader_ballot`` alone and forgotten when ``leader_ballot`` changes. A
   catch-up reply commits exactly the values it carries (its sender's commit
   index may come from a later ballot that chose other values).
4. A new leader neither proposes nor answers reads until every old lease must
   have expired (``strong.lease``), and answers reads only at an index at or
   above the end of its recovery (the slots phase 1 found).
5. Reads: with a valid lease the leader answers at its commit index; otherwise
   it waits for a heartbeat round sent after the request to be acknowledged by
   a quorum (ReadIndex). A follower never answers a linearizable read from its
   own commit index: it asks the leader (``ReadIndexRequest``), which answers
   by the same rule at the time the request arrived, and the follower's
   driver serves the read once it has applied that index. Replies name the
   follower's incarnation (drawn at boot): a reply to a previous process life,
   whose request ids are reused, is ignored.
9. Forwarding: a follower that knows a leader hands it client commands
   (``Forward``, batched per Ready) instead of refusing them; the leader
   proposes them as its own, or answers ``Refused`` if it does not lead (or
   steps down before proposing them), which the follower reports as "not
   the leader" (never proposed). A forwarded command the leader already
   holds, byte for byte, pending or in flight (a client's retry through
   another node) is not queued again: a copy could only apply as a no-op
   (the state machine deduplicates by client and sequence), and under load
   copies crowd out new work (a retry storm). The follower learns a forwarded command's
   outcome by applying it, like any other replica. A leader announces every
   commit at once (a heartbeat when no Accept carries it), so followers apply
   without waiting for the next heartbeat.
6. Chosen values learned from any replica (catch-up, snapshots) are chosen:
   they never disagree with what a leader would propose. A snapshot is
   installed only whole and verified (``strong.snapshot_transfer``).
7. A replica that lost its durable state (``voting=False``) answers no Prepare,
   no Accept and no Heartbeat, grants no pre-vote and starts no election (its
   forgotten promises and accepts may be part of a quorum, and an
   acknowledgement from it cannot vouch for a lease); it learns by catch-up.
   It never becomes a voter by itself: knowing when its forgotten votes can
   no longer matter needs the other replicas' promises and accepted slots,
   which is the job of a membership change, not of a timer or a commit index.
8. Only a follower learns from catch-up replies and snapshots. A leader's (or
   candidate's) commit index grows only with values its own ballot chose or
   recovered in phase 1, because it announces that index under its ballot and
   rule 3 lets followers commit their own entries of that ballot up to it.

Membership (``strong.membership``, ``strong.member_log``; docs/strong.md):

10. The configuration is in the log. A slot whose value is a configuration
    value sets the voters and learners of every slot above it; the *current*
    configuration (as of the commit index) changes only when such a slot is
    committed, and a snapshot records the one as of its index. Quorums,
    peers, heartbeat rounds and pre-votes all use the current configuration.
11. Only voters count. A learner (or a removed node) is an acceptor like any
    other -- it was never part of a quorum, so it has nothing to forget --
    but its Accepted, HeartbeatAck, Promise and PreVote grant count toward
    nothing, and a learner never campaigns.
12. One change at a time, single-server (any majority of C and of C +/- one
    voter intersect). A leader proposes a change only (a) after a value was
    chosen at its own ballot (proposing a no-op if need be), which needs a
    quorum of the current configuration to have promised that ballot, so no
    leader of a lower ballot can still win a quorum there; (b) when no other
    change is pending; and (c) it proposes nothing above the change's slot
    until its commit index reaches it. Hence every slot a leader has in
    flight is governed by its current configuration, and a value accepted
    above a configuration slot at any ballot means that slot was chosen.
13. Phase 1 starts with a quorum of the candidate's current configuration;
    every configuration value it will re-propose at slot ``j`` governs the
    slots above ``j``, so before proposing above ``j`` it also holds complete
    promises from a quorum of that configuration's voters (asking them, a
    Prepare each, recursively). Extra reports are harmless: any value
    accepted at a ballot between the chosen one's and ours is the chosen one.
    The lease wait takes every promise received; recovered values above an
    unchosen configuration slot are held back by rule 12c.
14. A leader that commits its own removal becomes a lame duck: it proposes
    nothing more, answers no read, and heartbeats until a quorum of the new
    configuration acknowledged a commit index at or above the change; then it
    steps down and the remaining voters elect a successor (they must know
    the change, or they would still count it as a voter). A learner is promoted only when its commit
    index is within ``promote_max_lag`` of the leader's, and a change that
    would leave fewer live voters (heard within an election timeout) than a
    quorum of the new configuration is refused with the reason.
15. A removed id is retired for good: messages from it are ignored and it is
    never added again; pre-votes are granted only to current voters. A
    replica reset under rule 7 rejoins under a new id (``replace``), never as
    itself: only a fresh id has provably voted for nothing.

16. Resync. A replica told to ``resync(peer)`` (its state machine disagreed with
   the majority's state hash, ``strong.hash_check``: its log is intact, its applied
   state is not) steps down, campaigns not until done, and installs ``peer``'s
   snapshot although it is not behind, if that snapshot is at or above its own.
   Its commit index never decreases; the slots above the snapshot are applied
   again from its own log (it holds them: above its own snapshot, at or below its
   commit index). Safe: the snapshot is the applied state of chosen values
   (rule 6), and the acceptor state (``promised``, ``accepted``) is untouched,
   so every promise and vote it gave stays kept.

17. Hand-off (``strong.handoff``). A leader asked to remove itself first hands
    leadership to a caught-up voter (``TimeoutNow``) and answers the request
    ``HANDED_OFF``: the removal is then an ordinary one at the successor.
    While handing off it proposes nothing new; a follower acts on
    ``TimeoutNow`` only from the leader of the ballot it follows, by starting
    phase 1 at once (no pre-vote: the leader consented). If nobody took over
    within an election timeout the leader resumes, and a removal of itself
    falls back to rule 14.

Liveness (not safety) rests on two more: an election starts only after a
pre-vote that a quorum granted, and a replica grants one only if it has not
heard from a leader for an election timeout (a returning node cannot depose a
leader the majority follows); a replica told to ``stand_down`` (its state
machine cannot apply the log) never campaigns again in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from strong.ballot import ZERO, Ballot
from strong.config import MAX_WINDOW, ReplicaConfig
from strong.handoff import Transfer, handoff_target
from strong.leader_requests import LeaderRequests
from strong.lease import old_leases_expired_at
from strong.member_log import ChangeKind, ChangeOutcome, ChangeStatus, MemberLog, MembershipChange
from strong.membership import (
    SNAPSHOT_MAGIC,
    Membership,
    MembershipError,
    membership_of,
    membership_value,
    unwrap_snapshot,
    wrap_snapshot,
)
from strong.messages import (
    NOOP,
    Accept,
    Accepted,
    Batch,
    CatchUpReply,
    CatchUpRequest,
    Envelope,
    Forward,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    Refused,
    SlotValue,
    TimeoutNow,
)
from strong.phase1 import recovery_values
from strong.ready import (
    ReadState,
    Ready,
    Rejection,
    RejectReason,
    Role,
    SnapshotInstall,
)
from strong.records import (
    AcceptRecord,
    ChosenRecord,
    CommitRecord,
    PromiseRecord,
    Record,
    SnapshotRecord,
)
from strong.roles import Candidacy, InFlight, Leadership, PendingRead, PreCandidacy, Promised
from strong.rounds import HeartbeatRounds
from strong.snapshot_transfer import Offer, SnapshotReceiver, SnapshotSender, checksum, chunk_at
from strong.storage import DurableState


class Rng(Protocol):
    """The randomness a replica needs (a ``random.Random`` is one); injected, never global."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class ReplicaStatus:
    node_id: str
    role: Role
    ballot: Ballot
    leader: str | None
    commit_index: int
    snapshot_index: int
    #: local seconds since this node last heard from a leader (followers) or a quorum (leader)
    since_leader_contact: float
    lease_valid: bool
    #: for a leader: the commit index each peer last reported
    peer_commit: dict[str, int]
    #: for a leader: local seconds since each peer last acknowledged
    peer_silence: dict[str, float]


class Replica:
    def __init__(
        self, config: ReplicaConfig, durable: DurableState, now: float, rng: Rng,
        *, voting: bool = True,
    ) -> None:
        self.config = config
        self.id = config.node_id
        self.rng = rng
        # Derived from the current configuration (rule 10): on every message's path.
        self.peers = config.peers
        self.quorum = config.quorum
        self.members = self.bootstrap = Membership(config.voters, config.learners)
        # Durable (mirrors storage; every change emits a record).
        self.promised = durable.promised
        self.accepted = dict(durable.accepted)
        self.chosen = dict(durable.chosen)
        self.snapshot_index = durable.snapshot_index
        self.snapshot = durable.snapshot
        self.snapshot_crc = checksum(self.snapshot) if self.snapshot is not None else 0
        #: the snapshot transfer in progress (volatile: a restart starts over)
        self.receiver = SnapshotReceiver()
        #: rule 16: the peer whose snapshot replaces our applied state (volatile)
        self.resync_from: str | None = None
        #: the snapshot each peer's transfer from us is pinned to (volatile)
        self.sender = SnapshotSender(idle=config.election_timeout)
        self.commit_index = durable.commit_index
        #: rules 10-15: the configuration of each committed slot
        recorded = unwrap_snapshot(self.snapshot)[0] if self.snapshot is not None else None
        self.member_log = MemberLog(recorded or self.members, self.snapshot_index)
        self.member_log.advance(self.commit_index, self._known_chosen)
        self._members_changed()
        self._changes: list[ChangeOutcome] = []
        #: rule 7: False after a reset (until a membership change makes it a voter again)
        self.voting = voting
        # Volatile.
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.leader_ballot = ZERO
        self.leader_commit = 0
        self.max_round = max(self.promised.round, 0)
        #: booting counts as leader contact: we may have acknowledged one before the crash
        self.last_leader_contact = now
        self.election_deadline = now + self._election_timeout()
        self.catchup_sent_at = float("-inf")
        self.now = now
        self.leadership: Leadership | None = None
        self.candidacy: Candidacy | None = None
        self.prevote: PreCandidacy | None = None
        #: False once told to stand down: it stays an acceptor but never campaigns
        self.campaigning = True
        # Output accumulators.
        self._persist: list[Record] = []
        self._deferred: list[Record] = []
        self._messages: list[Envelope] = []
        #: the leader's Accepts, sent before the Ready's records are synced (``strong.ready``)
        self._early: list[Envelope] = []
        #: requests for the leader (rules 5, 9): this process life's, named by its incarnation
        self.requests = LeaderRequests(int(rng.random() * 2**53))
        #: the commit index the followers were last told (an Accept or a Heartbeat)
        self._announced_commit = self.commit_index
        self._reads: list[ReadState] = []
        self._rejected: list[Rejection] = []
        self._install: SnapshotInstall | None = None
        #: highest slot handed to the driver for applying
        self._emitted = self.snapshot_index
        if self.snapshot is not None:
            self._install = SnapshotInstall(self.snapshot_index, unwrap_snapshot(self.snapshot)[1])

    # ------------------------------------------------------------------ inputs

    def step(self, src: str, message: Message, now: float) -> None:
        """Handle one message from replica ``src``. Never raises on odd input."""
        self.now = now
        if src == self.id or src in self.members.retired:
            return  # rule 15: a removed node is heard no more
        # A node this replica never heard of may lead a configuration it has not
        # learned yet: it is heard, and counted only where it votes (rule 11).
        match message:
            case Prepare():
                self._on_prepare(src, message)
            case Promise():
                self._on_promise(src, message)
            case Accept():
                self._on_accept(src, message)
            case Accepted():
                self._on_accepted(src, message)
            case Nack():
                self._on_nack(message)
            case Heartbeat():
                self._on_heartbeat(src, message)
            case HeartbeatAck():
                self._on_heartbeat_ack(src, message)
            case PreVote():
                self._on_prevote(src, message)
            case PreVoteReply():
                self._on_prevote_reply(src, message)
            case CatchUpRequest():
                self._on_catchup_request(src, message)
            case CatchUpReply():
                self._on_catchup_reply(src, message)
            case InstallSnapshot():
                self._on_install_snapshot(src, message)
            case Forward():
                self._on_forward(src, message)
            case ReadIndexRequest():
                self._on_read_index_request(src, message)
            case ReadIndexReply():
                self._reads.extend(self.requests.answered(message))
            case Refused():
                hint = self.leader if self.leader != src else None
                self._rejected.extend(Rejection(r, RejectReason.NOT_LEADER, hint)
                                      for r in self.requests.refused(message))
            case TimeoutNow():
                self._on_timeout_now(src, message)

    def tick(self, now: float) -> None:
        self.now = now
        if self.requests.asked:
            # rule 5: a read unanswered for an election timeout is refused (safe to retry)
            for rid in self.requests.expired(now, self.config.election_timeout):
                self._rejected.append(Rejection(rid, RejectReason.NOT_LEADER, self.leader))
        lead = self.leadership
        if lead is None:
            if self.candidacy is not None:
                self._resend_parts(self.candidacy)
            if self.resync_from is not None:
                self._request_resync()
            if now >= self.election_deadline:
                if (not self.campaigning or not self.voting or self.resync_from is not None
                        or self.id not in self.members.voters):
                    self.election_deadline = now + self._election_timeout()
                elif self.config.bugs.no_prevote:
                    self._start_election()
                else:
                    self._start_prevote()
            return
        if not lead.active and now >= lead.active_at:
            self._activate(lead)
        if now >= lead.next_heartbeat:
            self._heartbeat_round(lead)
        if lead.active:
            self._retransmit(lead)
        if lead.transfer is not None:
            self._advance_transfer(lead)
            if self.leadership is not lead:
                return
        if now >= lead.quorum_check_at:
            self._check_quorum(lead)
            return
        self._release_reads(lead)

    def propose(self, request_id: int, command: bytes, now: float) -> None:
        """Queue a command. A follower hands it to the leader it follows (rule 9);
        knowing no leader, it is rejected at once (safe to retry elsewhere)."""
        self.now = now
        lead = self.leadership
        if lead is None:
            if self._knows_leader():
                self.requests.forward.append((request_id, command))
                return
            self._rejected.append(Rejection(request_id, RejectReason.NOT_LEADER, self.leader))
            return
        lead.pending.append((request_id, command, None))
        lead.queued.add(command)

    def read_index(self, request_id: int, now: float, *, quorum: bool = False) -> None:
        """Ask for a linearizable read; answered by a ReadState or a Rejection.

        ``quorum``: confirm leadership with a heartbeat round a quorum
        acknowledges even while the lease would answer at once."""
        self.now = now
        lead = self.leadership
        if lead is None:
            if self.config.bugs.follower_local_reads and self.leader is not None:
                self._reads.append(ReadState(request_id, self.commit_index))
                return
            if self._knows_leader():
                self.requests.reads[quorum].append(request_id)  # rule 5: the leader's read index
                return
            self._rejected.append(Rejection(request_id, RejectReason.NOT_LEADER, self.leader))
            return
        self._add_read(lead, request_id, quorum, None)
        self._release_reads(lead)

    def _add_read(self, lead: Leadership, request_id: int, quorum: bool,
                  origin: tuple[str, int] | None) -> None:
        index = max(self.commit_index, lead.recovery_end)
        lead.reads.append(PendingRead(request_id, index, lead.rounds.round + 1, quorum, origin))
        lead.round_wanted = True

    @property
    def followed_ballot(self) -> Ballot | None:
        """The ballot of the leader this replica is or follows (None: it knows none);
        drivers hand unanswered writes again when it changes."""
        if self.leadership is not None:
            return self.leadership.ballot
        return self.leader_ballot if self.leader is not None else None

    @property
    def incarnation(self) -> int:
        """This process life, named in requests to the leader (``strong.leader_requests``)."""
        return self.requests.incarnation

    @property
    def state_snapshot(self) -> bytes | None:
        """The state machine's bytes of the snapshot held (``snapshot`` also
        records the configuration at its index: ``strong.membership`` rule 4)."""
        return None if self.snapshot is None else unwrap_snapshot(self.snapshot)[1]

    def stand_down(self) -> None:
        """Stop leading and never campaign again (this process cannot apply the
        log, e.g. an unsupported state-machine version): it stays an acceptor,
        which keeps the quorum's availability without deposing anybody."""
        self.campaigning = False
        if self.leadership is not None or self.candidacy is not None:
            self._step_down()
        self.prevote = None

    def resync(self, peer: str) -> None:
        """Rule 10: replace this replica's applied state by ``peer``'s snapshot."""
        if self.leadership is not None or self.candidacy is not None:
            self._step_down()
        self.prevote = None
        self.resync_from = peer
        self.receiver = SnapshotReceiver()
        self.catchup_sent_at = float("-inf")
        self._request_resync()

    def _request_resync(self) -> None:
        """Ask ``resync_from`` for its snapshot (from slot 1: a replica with a
        snapshot answers with it), at most once per retransmit interval."""
        assert self.resync_from is not None
        if self.now - self.catchup_sent_at < self.config.retransmit_interval:
            return
        self.catchup_sent_at = self.now
        index, offset = self.receiver.position(self.snapshot_index)
        self._send(self.resync_from, CatchUpRequest(self.promised, 1, index, offset))

    def compact(self, index: int, snapshot: bytes) -> None:
        """The state machine's snapshot at ``index`` (<= applied) replaces slots <= index."""
        if index <= self.snapshot_index or index > self._emitted:
            return
        self.member_log.compact(index)
        snapshot = wrap_snapshot(self.member_log.at(index), snapshot)  # membership rule 4
        self.snapshot_index = index
        self.snapshot = snapshot
        self.snapshot_crc = checksum(snapshot)
        self.accepted = {s: v for s, v in self.accepted.items() if s > index}
        self.chosen = {s: v for s, v in self.chosen.items() if s > index}
        self._persist.append(SnapshotRecord(index, snapshot))

    def ready(self) -> Ready:
        """Drain the outputs (after packing queued proposals into slots)."""
        if self.requests.waiting():
            self._send_to_leader()
        lead = self.leadership
        if lead is not None:
            if lead.pending:
                self._fill_window(lead)
            if self._read_round_due(lead):
                self._heartbeat_round(lead)
            elif lead.active and self.commit_index > self._announced_commit:
                self._heartbeat_round(lead)  # rule 9: announce the commit now
        committed = self._take_committed() if self._emitted < self.commit_index else []
        ready = Ready(
            send_first=self._early,
            persist=self._persist,
            messages=self._messages,
            snapshot=self._install,
            committed=committed,
            reads=self._reads,
            rejected=self._rejected,
            changes=self._changes,
        )
        self._persist = self._deferred
        self._deferred = []
        self._messages, self._reads, self._rejected, self._early = [], [], [], []
        self._changes = []
        self._install = None
        return ready

    def status(self, now: float) -> ReplicaStatus:
        lead = self.leadership
        if lead is not None:
            acks = sorted((now - t for t in lead.last_ack.values()), reverse=False)
            need = self.quorum - 1
            contact = acks[need - 1] if need and len(acks) >= need else 0.0
        else:
            contact = now - self.last_leader_contact
        return ReplicaStatus(
            node_id=self.id,
            role=self.role,
            ballot=lead.ballot if lead else self.promised,
            leader=self.id if lead else self.leader,
            commit_index=self.commit_index,
            snapshot_index=self.snapshot_index,
            since_leader_contact=contact,
            lease_valid=bool(lead and lead.active and lead.rounds.lease_valid(now)),
            peer_commit=dict(lead.peer_commit) if lead else {},
            peer_silence={p: now - t for p, t in lead.last_ack.items()} if lead else {},
        )

    # ------------------------------------------------------------------ acceptor

    def _raise_promise(self, ballot: Ballot) -> None:
        """Promise ``ballot`` (> promised); a proposer with a lower ballot steps down."""
        self.promised = ballot
        self.max_round = max(self.max_round, ballot.round)
        self._durable(PromiseRecord(ballot))
        if (self.leadership and self.leadership.ballot < ballot) or (
            self.candidacy and self.candidacy.ballot < ballot
        ):
            self._step_down()

    def _durable(self, record: Record) -> None:
        if self.config.bugs.reply_before_durable:
            self._deferred.append(record)
        else:
            self._persist.append(record)

    def _send(self, dst: str, message: Message) -> None:
        self._messages.append(Envelope(self.id, dst, message))

    def _broadcast(self, message: Message) -> None:
        for peer in self.peers:
            self._send(peer, message)

    def _on_prepare(self, src: str, msg: Prepare) -> None:
        if not self.voting:
            return  # rule 7
        if msg.ballot < self.promised:
            self._send(src, Nack(msg.ballot, self.promised))
            return
        if msg.ballot > self.promised:
            self._raise_promise(msg.ballot)
        self.election_deadline = self.now + self._election_timeout()
        if self.config.bugs.unbounded_bytes:
            budget = None
        else:
            budget = (self.config.catchup_max_bytes, self.config.promise_max_slots)
        self._send(src, self._promise_for(msg.ballot, msg.from_slot, budget))

    def _promise_for(
        self, ballot: Ballot, from_slot: int, budget: tuple[int, int] | None
    ) -> Promise:
        """Every accepted or chosen slot ``>= from_slot``, in slot order, up to
        ``budget`` (command bytes, slots; at least one slot): ``truncated`` if
        cut short."""
        reported: dict[int, SlotValue] = {}
        for slot, (b, value) in self.accepted.items():
            if slot >= from_slot:
                reported[slot] = SlotValue(slot, b, value, slot <= self.commit_index)
        for slot, value in self.chosen.items():
            if slot >= from_slot:
                b = self.accepted.get(slot, (ZERO, NOOP))[0]
                reported[slot] = SlotValue(slot, b, value, True)
        part: list[SlotValue] = []
        size = 0
        truncated = False
        for s in sorted(reported):
            size += sum(map(len, reported[s].value))
            if part and budget is not None and (size > budget[0] or len(part) >= budget[1]):
                truncated = True
                break
            part.append(reported[s])
        return Promise(
            ballot=ballot,
            from_slot=from_slot,
            accepted=tuple(part),
            log_start=self.snapshot_index + 1,
            commit_index=self.commit_index,
            since_leader_contact=self.now - self.last_leader_contact,
            truncated=truncated,
        )

    def _follow(self, src: str, ballot: Ballot) -> bool:
        """Common part of Accept and Heartbeat: False (and a Nack) if outranked."""
        if ballot < self.promised:
            self._send(src, Nack(ballot, self.promised))
            return False
        if ballot > self.promised:
            self._raise_promise(ballot)
        if self.leadership is None:
            if ballot != self.leader_ballot:
                self.leader_commit = 0  # rule 3: learned anew from this leader
            self.leader = ballot.node_id
            self.leader_ballot = ballot
            self.last_leader_contact = self.now
            self.election_deadline = self.now + self._election_timeout()
            self.candidacy = None
            self.prevote = None
            self.role = Role.FOLLOWER
        return True

    def _on_accept(self, src: str, msg: Accept) -> None:
        if msg.slot > msg.commit_index + MAX_WINDOW:
            return  # no leader proposes beyond its window: a broken peer; ignore it
        if not self._follow(src, msg.ballot):
            return
        if not self.voting:  # rule 7: learn the commit index, accept nothing
            self._learn_commit(src, msg.ballot, msg.commit_index)
            return
        if msg.slot > self.commit_index and msg.slot not in self.chosen:
            self.accepted[msg.slot] = (msg.ballot, msg.value)
            self._durable(AcceptRecord(msg.slot, msg.ballot, msg.value))
        # else: already chosen here, and a leader only re-proposes chosen values.
        self._send(src, Accepted(msg.ballot, msg.slot))
        self._learn_commit(src, msg.ballot, msg.commit_index)

    def _on_heartbeat(self, src: str, msg: Heartbeat) -> None:
        if not self._follow(src, msg.ballot):
            return
        self._learn_commit(src, msg.ballot, msg.commit_index)
        if self.voting or self.config.bugs.nonvoter_acks:  # rule 7: a non-voter's ack
            # would vouch for a lease it cannot
            self._send(src, HeartbeatAck(msg.ballot, msg.round, self.commit_index))

    # ------------------------------------------------------------------ learner

    def _value_if_chosen(self, slot: int, ballot: Ballot) -> Batch | None:
        """The chosen value of ``slot`` if known, given a leader of ``ballot`` committed it."""
        if slot in self.chosen:
            return self.chosen[slot]
        accepted = self.accepted.get(slot)
        if accepted is not None and accepted[0] == ballot:
            return accepted[1]
        return None

    def _learn_commit(self, src: str, ballot: Ballot, leader_commit: int) -> None:
        self.leader_commit = max(self.leader_commit, leader_commit)
        start = self.commit_index
        while self.commit_index < leader_commit:
            if self._value_if_chosen(self.commit_index + 1, ballot) is None:
                break
            self.commit_index += 1
        if self.commit_index > start:
            self._persist.append(CommitRecord(self.commit_index))
            self._advance_members()
        if self.commit_index < leader_commit:
            self._request_catchup(src)

    def _request_catchup(self, src: str) -> None:
        if self.now - self.catchup_sent_at >= self.config.retransmit_interval:
            self._send_catchup_request(src, self.promised)

    def _send_catchup_request(self, dst: str, ballot: Ballot) -> None:
        """Ask ``dst`` for what follows our commit index, naming the snapshot
        transfer in progress so that it resumes where it stopped."""
        self.catchup_sent_at = self.now
        floor = self.snapshot_index if self.resync_from is not None else self.commit_index
        index, offset = self.receiver.position(floor)
        self._send(dst, CatchUpRequest(ballot, self.commit_index + 1, index, offset))

    def _on_catchup_request(self, src: str, msg: CatchUpRequest) -> None:
        if msg.from_slot <= self.snapshot_index:
            if self.snapshot is None:
                return
            current = (self.snapshot_index, self.snapshot, self.snapshot_crc)
            if self.config.bugs.unchunked_snapshots:
                self._send(src, chunk_at(self.promised, *current, 0, len(self.snapshot)))
            else:
                self._send(src, self.sender.answer(src, msg, self.promised, current,
                                                   self.config.snapshot_chunk, self.now))
            return
        values: list[Batch] = []
        slot = msg.from_slot
        size = 0
        byte_cap = None if self.config.bugs.unbounded_bytes else self.config.catchup_max_bytes
        while slot <= self.commit_index and len(values) < self.config.catchup_max_slots:
            value = self._known_chosen(slot)
            if value is None:
                break
            size += sum(map(len, value))
            if values and byte_cap is not None and size > byte_cap:
                break  # at least one slot per reply, so a catch-up always progresses
            values.append(value)
            slot += 1
        if values:
            self._send(src, CatchUpReply(self.promised, msg.from_slot, tuple(values), self.commit_index))

    def _known_chosen(self, slot: int) -> Batch | None:
        if slot in self.chosen:
            return self.chosen[slot]
        if slot <= self.commit_index and slot in self.accepted:
            return self.accepted[slot][1]
        return None

    def _learns_from_others(self, ballot: Ballot) -> bool:
        """Rule 8: only a follower takes catch-up replies and snapshots. A leader or
        candidate that meets a higher ballot steps down and then takes them."""
        if self.leadership is None and self.candidacy is None:
            return True
        if self.config.bugs.leader_takes_catchup:
            return True
        if ballot > self.promised:
            self.max_round = max(self.max_round, ballot.round)
            self._step_down()
            return True
        return False

    def _on_catchup_reply(self, src: str, msg: CatchUpReply) -> None:
        if not self._learns_from_others(msg.ballot):
            return
        for offset, value in enumerate(msg.values):
            slot = msg.from_slot + offset
            if slot > self.commit_index and slot not in self.chosen:
                self.chosen[slot] = value
                self._persist.append(ChosenRecord(slot, value))
        if self.config.bugs.catchup_commits_uncarried:
            self.leader_commit = max(self.leader_commit, msg.commit_index)
        self._advance_commit_over_chosen()
        self.catchup_sent_at = float("-inf")
        if self.commit_index < max(self.leader_commit, msg.commit_index):
            # Still behind: ask the same replica for the next part at once, so a
            # catch-up runs at one round trip per reply, not one per heartbeat.
            self._request_catchup(src)

    def _on_install_snapshot(self, src: str, msg: InstallSnapshot) -> None:
        """One chunk; the snapshot is installed only once complete and verified."""
        resync = src == self.resync_from and msg.index >= self.snapshot_index  # rule 16
        if (msg.index <= self.commit_index and not resync) or not self._learns_from_others(msg.ballot):
            return
        outcome, data = self.receiver.offer(msg)
        if outcome is Offer.APPENDED:
            if resync:
                self.catchup_sent_at = float("-inf")
                self._request_resync()
            else:
                self._send_catchup_request(src, self.promised)  # the next chunk, at once
        elif outcome is Offer.COMPLETE:
            if not self._snapshot_valid(data):
                return  # like a CRC mismatch (rule 6): dropped whole, asked for again
            self._install_snapshot(msg.index, data)

    def _snapshot_valid(self, data: bytes) -> bool:
        """Whether a transferred snapshot can be installed: its configuration
        record (if it has one) decodes, and so does the state machine's part."""
        recorded, state = unwrap_snapshot(data)
        if recorded is None and data.startswith(SNAPSHOT_MAGIC):
            return False
        valid = self.config.snapshot_valid
        return valid is None or valid(state)

    def _install_snapshot(self, index: int, data: bytes) -> None:
        self.snapshot_index = index
        self.snapshot = data
        self.snapshot_crc = checksum(data)
        self.commit_index = max(self.commit_index, index)  # below it only by a resync (rule 16)
        self.resync_from = None
        self.accepted = {s: v for s, v in self.accepted.items() if s > index}
        self.chosen = {s: v for s, v in self.chosen.items() if s > index}
        self._persist.append(SnapshotRecord(index, data))
        recorded, state = unwrap_snapshot(data)
        self.member_log.reset(recorded or self.bootstrap, index)
        self._members_changed()
        self._install = SnapshotInstall(index, state)
        self._emitted = index
        self.catchup_sent_at = float("-inf")
        self._advance_commit_over_chosen()

    def _advance_commit_over_chosen(self) -> None:
        start = self.commit_index
        while self.commit_index + 1 in self.chosen:
            self.commit_index += 1
        if self.leader_ballot != ZERO:
            while self.commit_index < self.leader_commit and (
                self._value_if_chosen(self.commit_index + 1, self.leader_ballot) is not None
            ):
                self.commit_index += 1
        if self.commit_index > start:
            self._persist.append(CommitRecord(self.commit_index))
            self._advance_members()

    def _take_committed(self) -> list[tuple[int, Batch]]:
        out: list[tuple[int, Batch]] = []
        while self._emitted < self.commit_index:
            slot = self._emitted + 1
            value = self._known_chosen(slot)
            if value is None:  # pragma: no cover - commit_index only covers known values
                raise AssertionError(f"slot {slot} committed without a known value")
            out.append((slot, value))
            self._emitted = slot
        return out

    # ------------------------------------------------------------------ election (phase 1)

    def _election_timeout(self) -> float:
        t = self.config.election_timeout
        return t + self.rng.random() * t

    def _start_prevote(self) -> None:
        ballot = Ballot(max(self.max_round, self.promised.round) + 1, self.id)
        self.prevote = PreCandidacy(ballot, {self.id})
        self.candidacy = None  # an election that found no quorum starts over here
        self.role = Role.FOLLOWER
        self.leader = None
        self.election_deadline = self.now + self._election_timeout()
        self._broadcast(PreVote(ballot, self.commit_index))
        self._maybe_prevoted()

    def _on_prevote(self, src: str, msg: PreVote) -> None:
        """Grant iff ``msg.ballot`` would be promised and no leader was heard from
        for an election timeout. Changes no state: nothing to persist."""
        granted = (
            self.voting
            and src in self.members.voters  # rule 15
            and msg.ballot > self.promised
            and self.leadership is None
            and self.now - self.last_leader_contact >= self.config.election_timeout
        )
        self._send(src, PreVoteReply(msg.ballot, granted))

    def _on_prevote_reply(self, src: str, msg: PreVoteReply) -> None:
        pv = self.prevote
        if pv is None or msg.ballot != pv.ballot or not msg.granted:
            return
        pv.grants.add(src)
        self._maybe_prevoted()

    def _maybe_prevoted(self) -> None:
        pv = self.prevote
        if pv is not None and self.members.count(pv.grants) >= self.quorum and self.leadership is None:
            self.prevote = None
            self._start_election()

    def _start_election(self, *, handed: bool = False) -> None:
        ballot = Ballot(max(self.max_round, self.promised.round) + 1, self.id)
        self.max_round = ballot.round
        self.prevote = None
        self.role = Role.CANDIDATE
        self.leader = None
        from_slot = self.commit_index + 1
        self.candidacy = Candidacy(ballot, from_slot, deadline=self.now + self._election_timeout(),
                                   handed=handed)
        self.election_deadline = self.candidacy.deadline
        self._raise_promise(ballot)
        own = self._promise_for(ballot, from_slot, None)
        self.candidacy.promises[self.id] = Promised(own, self.now, list(own.accepted), None)
        self._broadcast(Prepare(ballot, from_slot))
        self._maybe_win()

    def _on_promise(self, src: str, msg: Promise) -> None:
        """A promise, or the next part of one (rule 2): parts are taken in slot
        order only; a duplicate or a part not asked for is ignored."""
        cand = self.candidacy
        if cand is None or msg.ballot != cand.ballot:
            return
        got = cand.promises.get(src)
        if got is None:
            if msg.from_slot != cand.from_slot:
                return
            got = cand.promises[src] = Promised(msg, self.now, list(msg.accepted), None)
        elif got.next_part is None or msg.from_slot != got.next_part:
            return
        else:
            got.accepted.extend(msg.accepted)
            got.behind = got.behind or msg.log_start > msg.from_slot
            # Phase 1 is progressing: the candidacy lives one more election
            # timeout (a report in many parts may take longer than one).
            cand.deadline = self.election_deadline = self.now + self._election_timeout()
        got.next_part = msg.accepted[-1].slot + 1 if msg.truncated and msg.accepted else None
        if got.next_part is not None:
            cand.parts_sent_at = self.now
            self._send(src, Prepare(cand.ballot, got.next_part))
        self._maybe_win()

    def _resend_parts(self, cand: Candidacy) -> None:
        """Ask again for promise parts that did not arrive (a lost Prepare or Promise)."""
        if self.now - cand.parts_sent_at < self.config.retransmit_interval:
            return
        if cand.asked:  # rule 13: Prepares to a revealed configuration's voters
            cand.parts_sent_at = self.now
            for node in cand.asked:
                if node not in cand.promises:
                    self._send(node, Prepare(cand.ballot, cand.from_slot))
        for src, got in cand.promises.items():
            if got.next_part is not None:
                cand.parts_sent_at = self.now
                self._send(src, Prepare(cand.ballot, got.next_part))

    def _maybe_win(self) -> None:
        cand = self.candidacy
        if cand is None:
            return
        complete = {src: p for src, p in cand.promises.items() if p.next_part is None}
        if self.members.count(complete) < self.quorum:
            return
        behind = [
            src for src, p in complete.items()
            if p.behind or p.first.log_start > self.commit_index + 1
        ]
        if behind:
            # Slots we lack were compacted away there: fetch its snapshot, retry later.
            self.candidacy = None
            self.role = Role.FOLLOWER
            self._send_catchup_request(behind[0], cand.ballot)
            return
        end, values = recovery_values(
            ((src, p.accepted) for src, p in complete.items()),
            self.id,
            self.commit_index + 1,
            ignore_others=self.config.bugs.phase1_ignores_accepted,
            lowest_ballot=self.config.bugs.phase1_lowest_ballot,
        )
        if not self._revealed_quorums(cand, complete, values):
            return
        if self.config.bugs.skip_lease_wait or (cand.handed and self.config.bugs.handoff_skips_lease_wait):
            active_at = self.now
        else:
            active_at = max(
                old_leases_expired_at(
                    p.received,
                    p.first.since_leader_contact,
                    self.config.lease_duration,
                    self.config.max_drift,
                )
                for p in cand.promises.values()
            )
        cfg = self.config
        lead = Leadership(
            ballot=cand.ballot, next_slot=end + 1, recovery_end=end, active_at=active_at,
            rounds=HeartbeatRounds(self.id, self.quorum, cfg.lease_duration,
                                   exact_round_acks=cfg.bugs.exact_round_acks,
                                   lease_from_ack=cfg.bugs.lease_from_ack,
                                   voters=self._counted_voters()),
        )
        for slot, value in values.items():
            if lead.held or (slot > self.commit_index + 1 and membership_of(values[slot - 1])
                             and not cfg.bugs.concurrent_changes):
                lead.held[slot] = value  # rule 12: above a configuration not yet chosen
            else:
                lead.inflight[slot] = InFlight(value, set(), float("-inf"))
        lead.change_slot = max((s for s in lead.inflight if membership_of(lead.inflight[s].value)),
                               default=0)
        self.candidacy = None
        self.leadership = lead
        self.role = Role.LEADER
        self.leader = self.id
        self.leader_ballot = cand.ballot
        lead.quorum_check_at = self.now + self.config.election_timeout
        lead.last_ack = {p: self.now for p in self.peers}
        self._heartbeat_round(lead)
        if self.now >= active_at:
            self._activate(lead)

    def _revealed_quorums(self, cand: Candidacy, complete: dict[str, Promised],
                          values: dict[int, Batch]) -> bool:
        """Rule 13: every configuration value phase 1 will re-propose governs the
        slots above it, so a quorum of its voters must have promised too; the
        ones not asked yet are sent the Prepare now. False while one is missing."""
        if self.config.bugs.candidate_ignores_config:
            return True
        for slot in sorted(values):
            revealed = membership_of(values[slot])
            if revealed is None or revealed.count(complete) >= revealed.quorum:
                continue
            for node in revealed.voters:
                if node != self.id and node not in cand.promises and node not in cand.asked:
                    cand.asked.add(node)
                    self._send(node, Prepare(cand.ballot, cand.from_slot))
            return False
        return True

    def _on_nack(self, msg: Nack) -> None:
        self.max_round = max(self.max_round, msg.promised.round)
        mine = (self.leadership and self.leadership.ballot) or (
            self.candidacy and self.candidacy.ballot
        )
        if mine and msg.ballot == mine and msg.promised > mine:
            self._step_down()

    def _step_down(self) -> None:
        lead = self.leadership
        if lead is not None:
            refused: dict[tuple[str, int], list[int]] = {}
            for request_id, _, origin in lead.pending:
                if origin is None:
                    self._rejected.append(Rejection(request_id, RejectReason.STEPPED_DOWN, None))
                else:
                    refused.setdefault(origin, []).append(request_id)
            for read in lead.reads:
                if read.origin is None:
                    self._rejected.append(Rejection(read.request_id, RejectReason.STEPPED_DOWN, None))
                else:
                    refused.setdefault(read.origin, []).append(read.request_id)
            for (node, incarnation), ids in refused.items():
                self._send(node, Refused(lead.ballot, incarnation, tuple(ids)))
            if lead.transfer is not None:
                self._end_transfer(lead, lead.transfer, leading=False)
            self._abandon_change(lead)
        self.leadership = None
        self.candidacy = None
        self.role = Role.FOLLOWER
        self.leader = None
        self.last_leader_contact = self.now
        self.election_deadline = self.now + self._election_timeout()

    # ------------------------------------------------------------------ follower -> leader

    def _knows_leader(self) -> bool:
        return self.role is Role.FOLLOWER and self.leader is not None and self.leader != self.id

    def _send_to_leader(self) -> None:
        """Hand the requests gathered since the last Ready to the leader (rules 5, 9;
        ``strong.leader_requests``). They assert nothing about this replica's
        records, so they go out first."""
        forward, reads = self.requests.take()
        lead = self.leadership
        if lead is not None:  # this replica leads now: the requests are its own
            lead.pending.extend((rid, cmd, None) for rid, cmd in forward)
            lead.queued.update(cmd for _, cmd in forward)
            for quorum, ids in reads.items():
                for rid in ids:
                    self._add_read(lead, rid, quorum, None)
            self._release_reads(lead)
            return
        if not self._knows_leader():
            for rid in [r for r, _ in forward] + reads[False] + reads[True]:
                self._rejected.append(Rejection(rid, RejectReason.NOT_LEADER, self.leader))
            return
        assert self.leader is not None
        self._early.extend(self.requests.envelopes(
            self.id, self.leader, self.leader_ballot, forward, reads, self.config.max_batch,
            self.config.max_batch_bytes, self.now))

    def _on_forward(self, src: str, msg: Forward) -> None:
        lead = self.leadership
        if lead is None:
            self._send(src, Refused(msg.ballot, msg.incarnation, msg.request_ids))
            return
        origin = (src, msg.incarnation)
        for rid, cmd in zip(msg.request_ids, msg.commands, strict=True):
            if cmd not in lead.queued:  # rule 9: a retry's copy
                lead.queued.add(cmd)
                lead.pending.append((rid, cmd, origin))

    def _on_read_index_request(self, src: str, msg: ReadIndexRequest) -> None:
        lead = self.leadership
        if lead is None:
            self._send(src, Refused(msg.ballot, msg.incarnation, msg.request_ids))
            return
        for rid in msg.request_ids:
            self._add_read(lead, rid, msg.quorum, (src, msg.incarnation))
        self._release_reads(lead)

    # ------------------------------------------------------------------ leader (phase 2)

    def _activate(self, lead: Leadership) -> None:
        """The old leases have expired: start proposing (recovery first)."""
        lead.active = True
        for slot in sorted(lead.inflight):
            if self.leadership is not lead or slot not in lead.inflight:
                return  # a group of one chose it and the change removed us (rule 14)
            self._propose_slot(lead, slot, lead.inflight[slot].value)
        self._try_change(lead)

    def _propose_slot(self, lead: Leadership, slot: int, value: Batch) -> None:
        entry = InFlight(value, {self.id}, self.now)
        lead.inflight[slot] = entry
        self.accepted[slot] = (lead.ballot, value)
        self._durable(AcceptRecord(slot, lead.ballot, value))
        accept = Accept(lead.ballot, slot, value, self.commit_index)
        self._announced_commit = self.commit_index
        self._early.extend(Envelope(self.id, peer, accept) for peer in self.peers)
        self._maybe_chosen(lead, slot)

    def _fill_window(self, lead: Leadership) -> None:
        if not lead.active or self._change_blocks(lead):
            return
        cfg = self.config
        byte_cap = None if cfg.bugs.unbounded_bytes else cfg.max_batch_bytes
        while (lead.pending and lead.next_slot - 1 - self.commit_index < cfg.window
               and self.leadership is lead and not self._change_blocks(lead)):
            take, size = 0, 0
            for _, cmd, _ in lead.pending[: cfg.max_batch]:
                if take and byte_cap is not None and size + len(cmd) > byte_cap:
                    break
                take += 1
                size += len(cmd)
            batch = lead.pending[:take]
            del lead.pending[:take]
            slot = lead.next_slot
            lead.next_slot += 1
            self._propose_slot(lead, slot, tuple(cmd for _, cmd, _ in batch))

    def _on_accepted(self, src: str, msg: Accepted) -> None:
        lead = self.leadership
        if lead is None or msg.ballot != lead.ballot:
            return
        lead.last_ack[src] = self.now
        entry = lead.inflight.get(msg.slot)
        if entry is not None:
            entry.acks.add(src)
            self._maybe_chosen(lead, msg.slot)

    def _maybe_chosen(self, lead: Leadership, slot: int) -> None:
        entry = lead.inflight.get(slot)
        if entry is None:
            return
        # rule 11: only the voters of the slot's configuration (the current one:
        # rule 12 keeps every slot in flight under it) make a quorum
        votes = len(entry.acks) if self.config.bugs.learner_in_quorum else self.members.count(entry.acks)
        if votes < self.quorum:
            return
        del lead.inflight[slot]
        lead.own_commit = True
        self.chosen[slot] = entry.value
        lead.queued.difference_update(entry.value)
        start = self.commit_index
        while self.commit_index + 1 in self.chosen:
            self.commit_index += 1
            # the leader's own accepted entry is the chosen value; keep one copy
            self.accepted.pop(self.commit_index, None)
        if self.commit_index > start:
            self._persist.append(CommitRecord(self.commit_index))
            self._advance_members()
            if self.leadership is lead:
                self._release_reads(lead)

    def _retransmit(self, lead: Leadership) -> None:
        for slot, entry in lead.inflight.items():
            if self.now - entry.sent_at >= self.config.retransmit_interval:
                entry.sent_at = self.now
                message = Accept(lead.ballot, slot, entry.value, self.commit_index)
                for peer in self.peers:
                    if peer not in entry.acks:
                        self._send(peer, message)

    def _heartbeat_round(self, lead: Leadership) -> None:
        number = lead.rounds.start(self.now)
        lead.round_wanted = False
        lead.next_heartbeat = self.now + self.config.heartbeat_interval
        self._broadcast(Heartbeat(lead.ballot, number, self.commit_index))
        self._announced_commit = self.commit_index
        self._confirm_reads(lead)

    def _read_round_due(self, lead: Leadership) -> bool:
        """Reads waiting for a round get one, coalesced (``strong.rounds`` rule 3)."""
        if not lead.round_wanted or not lead.active:
            return False
        return lead.rounds.read_round_due(self.now, self.config.retransmit_interval)

    def _on_heartbeat_ack(self, src: str, msg: HeartbeatAck) -> None:
        lead = self.leadership
        if lead is None or msg.ballot != lead.ballot:
            return
        lead.last_ack[src] = self.now
        lead.peer_commit[src] = msg.commit_index
        if lead.lame_duck:
            knows = [p for p, c in lead.peer_commit.items() if c >= self.commit_index]
            if self.members.count(knows) >= self.quorum:
                self._step_down()  # rule 14: the new configuration knows it
            return
        if lead.transfer is not None and src == lead.transfer.target:
            self._advance_transfer(lead)
        if lead.rounds.ack(src, msg.round, self.now):
            self._confirm_reads(lead)
        if self._read_round_due(lead):
            self._heartbeat_round(lead)
        self._release_reads(lead)

    def _confirm_reads(self, lead: Leadership) -> None:
        """Reads that waited for a round at or below the confirmed one may be answered."""
        confirmed = lead.rounds.confirmed
        for read in lead.reads:
            if read.round <= confirmed:
                read.round = 0  # confirmed

    def _release_reads(self, lead: Leadership) -> None:
        if not lead.active or not lead.reads or lead.lame_duck:
            return
        lease = lead.rounds.lease_valid(self.now)
        keep: list[PendingRead] = []
        answered: dict[tuple[str, int, int], list[int]] = {}
        for read in lead.reads:
            if read.round == 0 or (lease and not read.quorum):
                if read.origin is None:
                    self._reads.append(ReadState(read.request_id, read.index))
                else:
                    answered.setdefault((*read.origin, read.index), []).append(read.request_id)
            else:
                keep.append(read)
        lead.reads = keep
        for (node, incarnation, index), ids in answered.items():
            self._send(node, ReadIndexReply(lead.ballot, incarnation, index, tuple(ids)))

    def _check_quorum(self, lead: Leadership) -> None:
        """Step down if a quorum has been silent for an election timeout (check quorum)."""
        horizon = self.now - self.config.election_timeout
        heard = 1 + sum(1 for p, t in lead.last_ack.items() if t >= horizon and p in self.members.voters)
        if heard < self.quorum:
            self._step_down()
            return
        lead.quorum_check_at = self.now + self.config.election_timeout / 2
        self._release_reads(lead)

    # ------------------------------------------------------------------ membership (rules 10-15)

    def request_change(self, request_id: int, change: MembershipChange, now: float) -> None:
        """Ask the leader to change the configuration by one server (rule 12).
        Answered by a ``ChangeOutcome`` in a later Ready: DONE once chosen,
        REFUSED (nothing changed) or UNKNOWN (proposed, then the leader stepped down)."""
        self.now = now
        lead = self.leadership
        if lead is None:
            self._refuse_change(request_id, "not the leader")
        elif lead.transfer is not None:
            self._refuse_change(request_id, "a leadership transfer is in progress")
        elif lead.change_waiting or self._change_blocks(lead):
            self._refuse_change(request_id, "another membership change is in progress")
        else:
            lead.change_waiting = (request_id, change)
            self._try_change(lead)

    def _refuse_change(self, request_id: int, why: str) -> None:
        self._changes.append(ChangeOutcome(request_id, ChangeStatus.REFUSED, why, 0, self.leader))

    def _try_change(self, lead: Leadership) -> None:
        """Refuse the waiting change if it makes no sense or would lose the quorum
        (rule 14); else propose it once rule 12's conditions hold."""
        waiting = lead.change_waiting
        if waiting is None or not lead.active or self._change_blocks(lead):
            return
        request_id, change = waiting
        base = self.members
        pending = lead.inflight.get(lead.change_slot)
        if self.config.bugs.concurrent_changes and pending is not None:
            base = membership_of(pending.value) or base  # builds on the pending change
        why: str | None
        try:
            new = change.apply(base)
        except MembershipError as exc:
            new, why = self.members, str(exc)
        else:
            why = self._change_refusal(lead, change, new)
        if why is not None:
            lead.change_waiting = None
            self._refuse_change(request_id, why)
            return
        if (change.kind is ChangeKind.REMOVE and change.member.node_id == self.id
                and not lead.handoff_failed and len(self.members.voters) > 1):
            lead.change_waiting = None  # rule 17: hand leadership off first
            why = self._start_handoff(lead, None, None, (request_id, change))
            if why is None:
                return
            lead.handoff_failed = True  # nobody to hand off to: rule 14
            lead.change_waiting = (request_id, change)
        if not lead.own_commit:  # rule 12a: a value chosen at our ballot first
            if not lead.inflight and not lead.pending:
                lead.next_slot += 1
                self._propose_slot(lead, lead.next_slot - 1, NOOP)
            return
        lead.change_waiting = None
        lead.change_slot, lead.change_request = lead.next_slot, request_id
        lead.next_slot += 1
        self._propose_slot(lead, lead.change_slot, membership_value(new))

    def _change_refusal(self, lead: Leadership, change: MembershipChange,
                        new: Membership) -> str | None:
        horizon = self.now - self.config.election_timeout
        live = {self.id} | {p for p, t in lead.last_ack.items() if t >= horizon}
        target = change.member.node_id
        if change.kind is ChangeKind.PROMOTE:
            at = lead.peer_commit.get(target, 0)
            if target not in live:
                return f"learner {target!r} is behind: not heard from lately"
            if at < self.commit_index - self.config.promote_max_lag:
                return f"learner {target!r} is behind: at slot {at} of {self.commit_index}"
        return self.members.refusal(new, live)

    def _abandon_change(self, lead: Leadership) -> None:
        if lead.change_waiting is not None:
            self._refuse_change(lead.change_waiting[0], "the leader stepped down")
        if lead.change_request is not None and lead.change_slot > self.commit_index:
            self._changes.append(ChangeOutcome(
                lead.change_request, ChangeStatus.UNKNOWN,
                "the leader stepped down before the change was chosen", lead.change_slot))
        lead.change_waiting = lead.change_request = None


    def _members_changed(self) -> None:
        m = self.members = self.member_log.current
        self.quorum = max(1, len(m.voters) // 2) if self.config.bugs.half_quorum else m.quorum
        self.peers = tuple(n for n in m.members if n != self.id)

    def _counted_voters(self) -> frozenset[str] | None:
        return None if self.config.bugs.learner_in_quorum else frozenset(self.members.voters)

    def _change_blocks(self, lead: Leadership) -> bool:
        """Rule 12c: nothing new is proposed above a configuration slot not yet chosen."""
        if lead.lame_duck or lead.transfer is not None:
            return True  # rule 17: nothing new while handing off
        if self.config.bugs.concurrent_changes:
            return False
        return bool(lead.held) or lead.change_slot > self.commit_index

    def _advance_members(self) -> None:
        """The commit index grew: fold configuration values (rule 10), and as a
        leader finish the change, release held slots, or step down if removed."""
        if self.member_log.advance(self.commit_index, self._known_chosen):
            self._members_changed()
            lead = self.leadership
            if lead is not None:
                lead.rounds.set_voters(self._counted_voters(), self.quorum)
                for peer in self.peers:
                    lead.last_ack.setdefault(peer, self.now)
        lead = self.leadership
        if lead is None:
            return
        if lead.change_slot and self.commit_index >= lead.change_slot:
            if lead.change_request is not None:
                self._changes.append(ChangeOutcome(
                    lead.change_request, ChangeStatus.DONE, "", lead.change_slot))
            lead.change_slot, lead.change_request = 0, None
        if self.id not in self.members.voters:
            if not lead.lame_duck:  # rule 14: announce the removal, then hand over
                lead.lame_duck = True
                self._heartbeat_round(lead)
            return
        self._release_held(lead)
        if self.leadership is lead:
            self._try_change(lead)

    def _release_held(self, lead: Leadership) -> None:
        """Propose recovered values held above a configuration slot, up to the next one."""
        while (lead.held and lead.active and self.leadership is lead and not lead.lame_duck
               and not lead.change_slot > self.commit_index):
            slot = min(lead.held)
            value = lead.held.pop(slot)
            if membership_of(value) is not None:
                lead.change_slot = slot
            self._propose_slot(lead, slot, value)

    # ------------------------------------------------------------------ hand-off (rule 17)

    def transfer_leadership(self, request_id: int, target: str | None, now: float) -> None:
        """Hand leadership to ``target`` (None: the most caught-up live voter).
        Answered by a ``ChangeOutcome``: HANDED_OFF (``leader_hint`` leads or
        campaigns now) or REFUSED with the reason; nothing else changes."""
        self.now = now
        lead = self.leadership
        if lead is None:
            self._refuse_change(request_id, "not the leader")
        elif lead.lame_duck:
            self._refuse_change(request_id, "the leader is being removed")
        elif lead.transfer is not None or lead.change_waiting is not None:
            self._refuse_change(request_id, "a leadership transfer or membership change is in progress")
        else:
            why = self._start_handoff(lead, request_id, target, None)
            if why is not None:
                self._refuse_change(request_id, why)

    def _start_handoff(self, lead: Leadership, request_id: int | None, wanted: str | None,
                       then: tuple[int, MembershipChange] | None) -> str | None:
        """Begin a hand-off (``strong.handoff`` rule 1); the reason if there is no target."""
        horizon = self.now - self.config.election_timeout
        target, why = handoff_target(self.id, self.members.voters, lead.last_ack,
                                     lead.peer_commit, horizon, wanted)
        if target is None:
            return why
        lead.transfer = Transfer(target, self.now + self.config.election_timeout, request_id, then)
        self._advance_transfer(lead)
        return None

    def _advance_transfer(self, lead: Leadership) -> None:
        """``strong.handoff`` rules 3-4: send ``TimeoutNow`` once the target is
        caught up; give up after an election timeout."""
        t = lead.transfer
        assert t is not None
        if self.now >= t.deadline:
            self._end_transfer(lead, t, leading=True)
            return
        if lead.inflight or lead.peer_commit.get(t.target, -1) < self.commit_index:
            return
        if self.now - t.sent_at >= self.config.retransmit_interval:
            t.sent_at = self.now
            self._send(t.target, TimeoutNow(lead.ballot))

    def _end_transfer(self, lead: Leadership, t: Transfer, *, leading: bool) -> None:
        """Report how the hand-off ended: leadership moved (a higher ballot was
        promised) or it did not (``leading``: we still lead, and a removal of
        ourselves goes on as rule 14)."""
        lead.transfer = None
        successor = self.promised.node_id if self.promised > lead.ballot else None
        pending = [t.request_id] if t.request_id is not None else []
        if t.then is not None:
            if successor is None and leading:
                lead.handoff_failed = True
                lead.change_waiting = t.then
                self._try_change(lead)
            else:
                pending.append(t.then[0])
        for rid in pending:
            if successor is not None:
                self._changes.append(ChangeOutcome(
                    rid, ChangeStatus.HANDED_OFF, f"leadership moved to {successor!r}", 0, successor))
            elif leading:
                self._refuse_change(rid, f"voter {t.target!r} did not take over within an "
                                         "election timeout")
            else:
                self._refuse_change(rid, "the leader stepped down")

    def _on_timeout_now(self, src: str, msg: TimeoutNow) -> None:
        """Rule 17: the leader we follow hands over: campaign at once."""
        if (src != msg.ballot.node_id or src != self.leader or msg.ballot != self.leader_ballot
                or msg.ballot != self.promised or self.leadership is not None
                or self.candidacy is not None or not self.voting or not self.campaigning
                or self.resync_from is not None or self.id not in self.members.voters):
            return
        self._start_election(handed=True)

"""A follower's requests to its leader (rules 5 and 9 of ``strong.replica``).

A follower that knows a leader hands it client commands (``Forward``) and
linearizable reads (``ReadIndexRequest``) instead of refusing them; the
replica decides where requests go, this keeps what was asked:

1. Requests gathered between two Readies go out together: a ``Forward`` per
   batch's worth of commands (at most ``max_batch`` commands and, beyond the
   first, ``max_batch_bytes``) and a ``ReadIndexRequest`` per ``max_batch``
   reads of each kind (lease or quorum).
2. Every request names this process life (``incarnation``, drawn at boot); a
   reply naming another life is ignored, because request ids start over with
   every process.
3. A read asked and not answered within an election timeout is refused ("not
   the leader"): a read changes nothing, so a retry is always safe. Forwarded
   commands are not tracked here: a follower learns their outcome by applying
   them, like any other replica (or a ``Refused`` says they were never
   proposed).
"""

from __future__ import annotations

from strong.ballot import Ballot
from strong.messages import Envelope, Forward, ReadIndexReply, ReadIndexRequest, Refused
from strong.ready import ReadState


class LeaderRequests:
    __slots__ = ("asked", "forward", "incarnation", "reads")

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation
        #: commands to forward: (request id, command)
        self.forward: list[tuple[int, bytes]] = []
        #: reads to ask for, by kind (True: confirmed by a quorum round)
        self.reads: dict[bool, list[int]] = {False: [], True: []}
        #: read-index requests sent and not yet answered: request id -> sent at
        self.asked: dict[int, float] = {}

    def waiting(self) -> bool:
        """Anything gathered since the last Ready?"""
        return bool(self.forward or self.reads[False] or self.reads[True])

    def take(self) -> tuple[list[tuple[int, bytes]], dict[bool, list[int]]]:
        """What was gathered since the last Ready (and forget it)."""
        forward, self.forward = self.forward, []
        reads, self.reads = self.reads, {False: [], True: []}
        return forward, reads

    def envelopes(self, me: str, leader: str, ballot: Ballot, forward: list[tuple[int, bytes]],
                  reads: dict[bool, list[int]], max_batch: int, max_batch_bytes: int,
                  now: float) -> list[Envelope]:
        """Rule 1: the messages that hand ``forward`` and ``reads`` to ``leader``."""
        out: list[Envelope] = []
        start = 0
        while start < len(forward):
            take, size = 0, 0
            for _, cmd in forward[start : start + max_batch]:
                if take and size + len(cmd) > max_batch_bytes:
                    break
                take += 1
                size += len(cmd)
            chunk = forward[start : start + take]
            start += take
            out.append(Envelope(me, leader, Forward(
                ballot, self.incarnation, tuple(r for r, _ in chunk), tuple(c for _, c in chunk))))
        for quorum, ids in reads.items():
            self.asked.update(dict.fromkeys(ids, now))
            for i in range(0, len(ids), max_batch):
                out.append(Envelope(me, leader, ReadIndexRequest(
                    ballot, self.incarnation, tuple(ids[i : i + max_batch]), quorum)))
        return out

    def answered(self, msg: ReadIndexReply) -> list[ReadState]:
        """The reads a leader answered (rule 2: only this life's, each once)."""
        if msg.incarnation != self.incarnation:
            return []
        return [ReadState(r, msg.index) for r in msg.request_ids
                if self.asked.pop(r, None) is not None]

    def refused(self, msg: Refused) -> tuple[int, ...]:
        """The requests a leader refused (never proposed or answered): this life's."""
        if msg.incarnation != self.incarnation:
            return ()
        for r in msg.request_ids:
            self.asked.pop(r, None)
        return msg.request_ids

    def expired(self, now: float, timeout: float) -> list[int]:
        """Rule 3: reads unanswered for ``timeout`` (forgotten; the caller refuses them)."""
        horizon = now - timeout
        late = [r for r, sent in self.asked.items() if sent <= horizon]
        for r in late:
            del self.asked[r]
        return late

"""A leader's heartbeat rounds: what confirms leadership, grants leases, releases reads.

A round is one Heartbeat broadcast, numbered within a leadership. Rules:

1. A peer that acknowledges round ``r'`` still followed this ballot after
   every round ``r <= r'`` was sent. So round ``r`` is *confirmed* once a
   quorum (this leader included) acknowledged ``r`` or a later round; only
   the highest round each peer acknowledged is kept.
2. Confirming round ``r`` extends the lease to ``sent_at(r) + lease_duration``:
   from the round's *send* time, never from an acknowledgement's arrival
   (an acknowledgement may arrive late; the followers' clocks started
   counting at the send).
3. Reads coalesce: while a read-driven round is unconfirmed, later reads
   wait for the next round, which starts when the one in flight is confirmed
   or after a retransmit interval. However many reads arrive per round trip,
   few rounds are in flight, so acknowledgements always find their round
   (issue 7, finding 3).

4. Only voters of the leader's current configuration count (membership
   rule 11): ``set_voters`` forgets the acknowledgements of a node that is
   no longer one, so a removed node never vouches for a lease.

Memory: send times are kept only for rounds above the confirmed one.
"""

from __future__ import annotations


class HeartbeatRounds:
    __slots__ = (
        "_exact",
        "_exact_acks",
        "_sent_at",
        "acked",
        "confirmed",
        "lease_duration",
        "lease_from_ack",
        "lease_until",
        "node_id",
        "quorum",
        "round",
        "voters",
    )

    def __init__(
        self,
        node_id: str,
        quorum: int,
        lease_duration: float,
        *,
        exact_round_acks: bool = False,
        lease_from_ack: bool = False,
        voters: frozenset[str] | None = None,
    ) -> None:
        self.node_id = node_id
        #: whose acknowledgements count (None: everybody's, as before configurations)
        self.voters = voters
        self.quorum = quorum
        self.lease_duration = lease_duration
        #: the latest round sent, and the highest one a quorum acknowledged
        self.round = 0
        self.confirmed = 0
        self.lease_until = float("-inf")
        #: the highest round each peer acknowledged
        self.acked: dict[str, int] = {}
        self._sent_at: dict[int, float] = {}
        #: planted bugs: acknowledgements count only for the round they name and
        #: only the last 64 rounds are remembered; the lease runs from the ack
        self._exact = exact_round_acks
        self._exact_acks: dict[int, set[str]] = {}
        self.lease_from_ack = lease_from_ack

    def __len__(self) -> int:
        """Rounds remembered (sent and not yet superseded by a confirmed one)."""
        return len(self._sent_at)

    def start(self, now: float) -> int:
        """A new round is sent at ``now``; returns its number."""
        self.round += 1
        self._sent_at[self.round] = now
        if self._exact:
            self._exact_acks[self.round] = {self.node_id}
            for old in [r for r in self._sent_at if r < self.round - 64]:
                del self._sent_at[old]
                self._exact_acks.pop(old, None)
        self._confirm(now)  # a group of one is its own quorum
        return self.round

    def ack(self, src: str, number: int, now: float) -> bool:
        """``src`` acknowledged round ``number``; True if that confirmed a new round."""
        if number > self.round:
            return False  # not a round this leadership sent
        if self.voters is not None and src not in self.voters:
            return False  # rule 4
        if self._exact:
            acks = self._exact_acks.get(number)
            if acks is None:
                return False
            acks.add(src)
            if len(acks) >= self.quorum:
                self.acked = {p: max(self.acked.get(p, 0), number) for p in acks}
        elif number > self.acked.get(src, 0):
            self.acked[src] = number
        return self._confirm(now)

    def set_voters(self, voters: frozenset[str] | None, quorum: int) -> None:
        """The configuration changed (rule 4): count only ``voters`` from now on."""
        self.voters = voters
        self.quorum = quorum
        if voters is not None:
            self.acked = {p: r for p, r in self.acked.items() if p in voters}

    def read_round_due(self, now: float, retransmit_interval: float) -> bool:
        """May a round start for reads that wait (rule 3)?"""
        if self._exact or self.confirmed == self.round:
            return True
        return now - self._sent_at[self.round] >= retransmit_interval

    def lease_valid(self, now: float) -> bool:
        return now < self.lease_until

    def _confirm(self, now: float) -> bool:
        acked = sorted(self.acked.values(), reverse=True)
        need = self.quorum - 1  # this node acknowledges every round it sends
        confirmed = self.round if need == 0 else (acked[need - 1] if len(acked) >= need else 0)
        if confirmed <= self.confirmed:
            return False
        self.confirmed = confirmed
        sent_at = now if self.lease_from_ack else self._sent_at[confirmed]
        self.lease_until = max(self.lease_until, sent_at + self.lease_duration)
        for old in [r for r in self._sent_at if r < confirmed]:
            del self._sent_at[old]
        return True

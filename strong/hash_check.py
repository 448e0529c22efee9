"""Cross-replica state-hash checks through the log, and their replicated verdict.

A replica's log can be intact while its applied state is not (a bit flipped in
memory, a defect in one binary's apply code, a disk that returned other bytes
than were checksummed). Replicas compare their states at the same applied index
through the log itself:

1. The leader proposes ``HashCheck(id)`` now and then. Every replica, once it
   has applied the slot ``s`` holding it, records the SHA-256 of its state at
   ``s`` (``strong.state_machine`` rule 13) and proposes
   ``HashReport(id, itself, hash)``.
2. Reports are counted in log order, the first one of each voter per check;
   reports of non-voters, and of checks this replica did not see, are ignored.
   A check's voters are those of the configuration governing its slot
   (``strong.membership``: a function of the log below it, so the same on every
   replica), fixed when the check is recorded.
3. The verdict of a check is the first hash that a majority of the voters
   reported. Every replica applying the log reaches the same verdict at the same
   slot (the one holding the deciding report): it is as replicated as the log.
   A majority of correct replicas always agrees, so a minority cannot impose
   its hash.
4. Once a verdict exists, a voter whose counted report differs *disagrees*:
   every replica knows it (health on any node names it). A replica whose own
   hash differs is *diverged*: it must stop serving and re-sync its state from
   a replica that agreed (``strong.replica`` rule 16).
5. Without a majority of equal reports (say, a three-way split) there is no
   verdict: nothing is repaired automatically, and the check reports that.

Pure: no IO, no clock; fed the state machine's events in log order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Check", "HashChecks", "Verdict"]

#: checks remembered (older ones are dropped: their reports no longer matter)
KEEP = 16


@dataclass(frozen=True)
class Verdict:
    check_id: int
    #: the slot whose state was hashed
    index: int
    digest: bytes
    #: voters whose report agreed with the majority, sorted
    agreed: tuple[str, ...]
    #: voters whose report differed, sorted (rule 4)
    disagreed: tuple[str, ...]


@dataclass
class Check:
    check_id: int
    index: int
    #: this replica's own hash at ``index``
    own: bytes
    #: the voters of the configuration governing ``index`` (rule 2)
    voters: tuple[str, ...] = ()
    #: voter -> its first report (rule 2)
    reports: dict[str, bytes] = field(default_factory=dict)
    verdict: bytes | None = None


class HashChecks:
    """The checks this replica saw and their reports (rules 2-5)."""

    def __init__(self, node: str, voters: tuple[str, ...] | Callable[[int], tuple[str, ...]]) -> None:
        """``voters``: the voters, or a function of a slot returning the voters of
        the configuration governing it (rule 2)."""
        self.node = node
        if callable(voters):
            self.voters_at = voters
        else:
            fixed = voters
            self.voters_at = lambda slot: fixed
        self._checks: dict[int, Check] = {}

    def observe(self, slot: int, check_id: int, node: str, digest: bytes) -> Check | None:
        """One state-machine event (``take_hash_events``), in log order.

        ``node == ""``: this replica hashed its state at ``slot`` for a new check;
        returns the check (its report is due). Otherwise a report; returns the check
        if this report decided its verdict or came after it (a new disagreement may
        show), else None."""
        if not node:
            if check_id in self._checks:
                return None  # a duplicate check id: the first one counts
            self._checks[check_id] = Check(check_id, slot, digest, self.voters_at(slot))
            for old in sorted(self._checks)[:-KEEP]:
                del self._checks[old]
            return self._checks[check_id]
        check = self._checks.get(check_id)
        if check is None or node not in check.voters or node in check.reports:
            return None
        check.reports[node] = digest
        if check.verdict is None:
            counts: dict[bytes, int] = {}
            for d in check.reports.values():
                counts[d] = counts.get(d, 0) + 1
            if counts[digest] >= len(check.voters) // 2 + 1:
                check.verdict = digest
        return check if check.verdict is not None else None

    def verdict(self, check: Check) -> Verdict | None:
        """Rule 4 for ``check``, or None before it has a verdict."""
        if check.verdict is None:
            return None
        agreed = tuple(sorted(n for n, d in check.reports.items() if d == check.verdict))
        disagreed = tuple(sorted(n for n, d in check.reports.items() if d != check.verdict))
        return Verdict(check.check_id, check.index, check.verdict, agreed, disagreed)

    def latest(self) -> Verdict | None:
        """The verdict of the newest check that has one."""
        for check_id in sorted(self._checks, reverse=True):
            found = self.verdict(self._checks[check_id])
            if found is not None:
                return found
        return None

    def pending(self) -> list[Check]:
        """Checks without a verdict yet, oldest first (rule 5 shows here)."""
        return [self._checks[i] for i in sorted(self._checks) if self._checks[i].verdict is None]

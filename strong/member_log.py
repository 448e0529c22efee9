"""Which configuration governs which slot: a replica's view, from its committed log.

The configuration governing slot ``s`` is the one set by the last
configuration value (``strong.membership``) chosen at a slot below ``s``, or
the one its snapshot recorded. A replica knows it for every slot up to its
commit index + 1 (its *current* configuration). Rules:

1. ``advance`` folds committed slots in order, exactly once each; nothing
   uncommitted ever changes the current configuration (a value accepted but
   not chosen may still be replaced by another).
2. ``at(index)`` answers for any index from the snapshot's on, so a
   compaction records the configuration as of its own index
   (``strong.membership`` rule 4), not the current one.
3. ``reset`` replaces everything when a snapshot is installed: its recorded
   configuration is the base, and the slots above it are folded anew.

Also here: the requests an operator makes (``MembershipChange``) and their
outcomes (``ChangeOutcome``), which the replica reports in its ``Ready``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from strong.membership import Member, Membership, membership_of
from strong.messages import Batch


class ChangeKind(Enum):
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@dataclass(frozen=True, slots=True)
class MembershipChange:
    kind: ChangeKind
    member: Member

    def apply(self, current: Membership) -> Membership:
        """The configuration after this change; raises ``MembershipError``."""
        match self.kind:
            case ChangeKind.ADD_LEARNER:
                return current.add_learner(self.member)
            case ChangeKind.PROMOTE:
                return current.promote(self.member.node_id)
            case ChangeKind.REMOVE:
                return current.remove(self.member.node_id)


class ChangeStatus(Enum):
    #: chosen: the configuration after ``slot`` is the requested one
    DONE = "done"
    #: never proposed (not the leader, refused, another change pending): nothing changed
    REFUSED = "refused"
    #: proposed, and the leader stepped down before learning the outcome: it may
    #: still be chosen; read the configuration to know
    UNKNOWN = "unknown"
    #: leadership moved (to ``leader_hint``) before anything was proposed: ask
    #: there. A removal of the leader itself hands leadership off first
    #: (``strong.handoff``); a leadership transfer ends this way when it succeeds
    HANDED_OFF = "handed_off"


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    request_id: int
    status: ChangeStatus
    detail: str
    slot: int = 0
    leader_hint: str | None = None


class MemberLog:
    """The configurations of a replica's committed log (see the module docstring)."""

    __slots__ = ("_base", "_base_index", "_history", "_scanned")

    def __init__(self, base: Membership, base_index: int) -> None:
        self._base = base
        self._base_index = base_index
        #: (slot, configuration set by that slot), ascending, slots > base_index
        self._history: list[tuple[int, Membership]] = []
        #: every slot up to here was folded
        self._scanned = base_index

    @property
    def current(self) -> Membership:
        return self._history[-1][1] if self._history else self._base

    @property
    def changed_at(self) -> int:
        """The slot of the value that set the current configuration (or the base's index)."""
        return self._history[-1][0] if self._history else self._base_index

    def at(self, index: int) -> Membership:
        """The configuration as of ``index`` (governing ``index + 1``)."""
        out = self._base
        for slot, m in self._history:
            if slot > index:
                break
            out = m
        return out

    def advance(self, commit_index: int, value_of: Callable[[int], Batch | None]) -> bool:
        """Fold committed slots up to ``commit_index``; True if the configuration changed."""
        changed = False
        while self._scanned < commit_index:
            self._scanned += 1
            value = value_of(self._scanned)
            m = membership_of(value) if value is not None else None
            if m is not None:
                self._history.append((self._scanned, m))
                changed = True
        return changed

    def compact(self, index: int) -> None:
        """Slots up to ``index`` are in a snapshot now."""
        if index <= self._base_index:
            return
        self._base = self.at(index)
        self._base_index = index
        self._history = [(s, m) for s, m in self._history if s > index]
        self._scanned = max(self._scanned, index)

    def reset(self, base: Membership, index: int) -> None:
        self._base, self._base_index = base, index
        self._history = []
        self._scanned = index

"""The strong group's configuration: who votes, who learns, and how it changes.

The configuration is part of the replicated log. A *configuration value* is a
slot's batch holding exactly one ``MembershipValue`` (bytes starting with
``MAGIC``, which no encoded command starts with: 0xc1 is never a msgpack
byte, so the state machine applies such a slot as a no-op). The replica, not
the state machine, interprets it (``strong.replica`` rules 10-15). Rules of
this module:

1. A ``Membership`` names the voters (counted in quorums), the learners
   (replicated to, counted in nothing) and every id ever removed (``retired``):
   an id is never reused, so a removed node's history (its ballots, the dots
   of its eventual writes) can never be confused with a newcomer's.
2. Changes are single-server: ``add_learner``, ``promote``, ``remove``, each a
   pure function of the configuration it changes, each raising
   ``MembershipError`` with a reason on a change that makes no sense. Any
   majority of ``C`` and any majority of ``C`` plus or minus one voter
   intersect, which is what every argument in ``strong.replica`` rests on.
3. ``refusal`` refuses a change that would leave the group without a quorum
   of live voters (the leader's view of who answered lately).
4. A snapshot records the configuration as of its index (``wrap_snapshot``):
   the log below it is gone, so it is the only place left saying who votes.
   Bytes without the wrapper are a snapshot from before configurations lived
   in the log: their configuration is the bootstrap one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from strong.canonical import WireError, pack, read_list, read_str, unpack
from strong.messages import Batch

#: first bytes of a configuration value (0xc1 is never the start of msgpack)
MAGIC = b"\xc1members1"
#: first bytes of a snapshot that records its configuration
SNAPSHOT_MAGIC = b"\xc1snapcfg1"


class MembershipError(ValueError):
    """A membership change that is refused; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Member:
    """A node's identity and where to reach it (peer and client API addresses;
    empty where the simulator has no addresses)."""

    node_id: str
    peer_address: str = ""
    api_address: str = ""


@dataclass(frozen=True, slots=True)
class Membership:
    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()
    retired: tuple[str, ...] = ()
    #: addresses of voters and learners, sorted by id (those known)
    addresses: tuple[Member, ...] = field(default=())

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners

    def is_voter(self, node_id: str) -> bool:
        return node_id in self.voters

    def count(self, nodes: Iterable[str]) -> int:
        """How many of ``nodes`` are voters."""
        return sum(1 for n in nodes if n in self.voters)

    def has_quorum(self, nodes: Iterable[str]) -> bool:
        return self.count(nodes) >= self.quorum

    def address(self, node_id: str) -> Member | None:
        return next((m for m in self.addresses if m.node_id == node_id), None)

    # ---------------------------------------------------------------- changes (rule 2)

    def add_learner(self, member: Member) -> Membership:
        nid = member.node_id
        if not nid or not isinstance(nid, str):
            raise MembershipError("a node id must be a non-empty string")
        if nid in self.retired:
            raise MembershipError(f"node id {nid!r} was removed before: ids are never reused")
        if nid in self.members:
            raise MembershipError(f"node {nid!r} is already a member")
        addresses = tuple(sorted((*self.addresses, member), key=lambda m: m.node_id))
        return replace(self, learners=(*self.learners, nid), addresses=addresses)

    def promote(self, node_id: str) -> Membership:
        if node_id not in self.learners:
            raise MembershipError(f"node {node_id!r} is not a learner")
        return replace(
            self,
            voters=(*self.voters, node_id),
            learners=tuple(n for n in self.learners if n != node_id),
        )

    def remove(self, node_id: str) -> Membership:
        if node_id not in self.members:
            raise MembershipError(f"node {node_id!r} is not a member")
        if self.voters == (node_id,):
            raise MembershipError("cannot remove the last voter")
        return replace(
            self,
            voters=tuple(n for n in self.voters if n != node_id),
            learners=tuple(n for n in self.learners if n != node_id),
            retired=tuple(sorted((*self.retired, node_id))),
            addresses=tuple(m for m in self.addresses if m.node_id != node_id),
        )

    def refusal(self, new: Membership, live: set[str]) -> str | None:
        """Rule 3: why ``new`` would leave no quorum of live voters, or None."""
        alive = new.count(live)
        if alive < new.quorum:
            return (
                f"refused: only {alive} of the {len(new.voters)} voters of the new "
                f"configuration are reachable; a quorum needs {new.quorum}"
            )
        return None

    # ---------------------------------------------------------------- encoding

    def fields(self) -> list[object]:
        return [
            list(self.voters),
            list(self.learners),
            list(self.retired),
            [[m.node_id, m.peer_address, m.api_address] for m in self.addresses],
        ]

    @staticmethod
    def from_fields(obj: object) -> Membership:
        """Raises ``WireError`` for anything ``fields`` cannot have made."""
        voters, learners, retired, addresses = read_list(obj, "membership", 4)
        ids = [read_str(v, "voter") for v in read_list(voters, "voters")]
        if not ids:
            raise WireError("a membership needs a voter")
        members = tuple(
            Member(*(read_str(x, "address") for x in read_list(a, "member", 3)))
            for a in read_list(addresses, "addresses")
        )
        out = Membership(
            tuple(ids),
            tuple(read_str(v, "learner") for v in read_list(learners, "learners")),
            tuple(read_str(v, "retired") for v in read_list(retired, "retired")),
            members,
        )
        if len(set(out.members)) != len(out.members):
            raise WireError("a node is listed twice in a membership")
        return out


def membership_value(membership: Membership) -> Batch:
    """The slot value that makes ``membership`` the configuration after its slot."""
    return (MAGIC + pack(membership.fields()),)


def membership_of(value: Batch) -> Membership | None:
    """The configuration a slot's value sets, or None if it is not a
    configuration value (an undecodable one is None too: it changes nothing,
    everywhere alike)."""
    if len(value) != 1 or not value[0].startswith(MAGIC):
        return None
    try:
        return Membership.from_fields(unpack(value[0][len(MAGIC):]))
    except (WireError, TypeError):
        return None


def wrap_snapshot(membership: Membership, state: bytes) -> bytes:
    """Rule 4: the state machine's snapshot with the configuration at its index."""
    head = pack(membership.fields())
    return SNAPSHOT_MAGIC + struct.pack(">I", len(head)) + head + state


def unwrap_snapshot(data: bytes) -> tuple[Membership | None, bytes]:
    """(the configuration, the state machine's bytes); None for a snapshot
    without one (or with an undecodable one: the bootstrap configuration applies)."""
    if not data.startswith(SNAPSHOT_MAGIC):
        return None, data
    at = len(SNAPSHOT_MAGIC)
    if len(data) < at + 4:
        return None, data
    (size,) = struct.unpack_from(">I", data, at)
    head, state = data[at + 4 : at + 4 + size], data[at + 4 + size :]
    try:
        return Membership.from_fields(unpack(head)), state
    except (WireError, TypeError):
        return None, state

"""Membership values and the messages SWIM members exchange, with their wire encoding.

Names follow SWIM (Das, Gupta, Motivala 2002) and Lifeguard (Dadgar et al. 2018):
``Ping``/``Ack`` are the direct probe, ``PingReq`` asks a member to probe a
target on our behalf (indirect probe), ``Nack`` is Lifeguard's "I asked, the
target did not answer" (it lets the requester blame the target rather than its
own slowness). ``Update`` is one piggybacked dissemination record (SWIM's
Alive / Suspect / Confirm, plus Left). ``Sync`` is a full member-list
push-pull (used on join and periodically); ``Gossip`` carries updates without a
probe (graceful leave, generation conflicts).

Invariants:

- A member is identified by ``id`` *and* ``generation``: ids are never reused
  for a different process; a restarted process picks a new, unique
  ``generation`` (a uuid), so news about an older generation never applies to
  the newer one.
- For one ``(id, generation)``, ``(incarnation, state.rank)`` only grows
  (``MemberState`` orders alive < suspect < dead < left at equal incarnation);
  only the member itself creates a higher incarnation (refutation).
- ``RETIRED_INCARNATION`` marks a generation superseded by a newer one of the
  same id: nothing outranks it, so it can never come back.
- Encoding is a tagged msgpack list. ``decode_message`` raises
  ``MalformedMessage`` (a ``ValueError``) and nothing else for bytes that are
  not such an encoding; a decoded message passed the same checks as a
  constructed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import msgpack  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "MAX_UINT",
    "RETIRED_INCARNATION",
    "Ack",
    "Envelope",
    "Gossip",
    "MalformedMessage",
    "Member",
    "MemberState",
    "Message",
    "Nack",
    "Ping",
    "PingReq",
    "Sync",
    "Update",
    "decode_message",
    "encode_message",
]

MAX_UINT = 2**64 - 1
RETIRED_INCARNATION = MAX_UINT
#: limits on decoded input (a peer cannot make us allocate without bound)
MAX_TEXT = 1024
MAX_ITEMS = 65536


class MalformedMessage(ValueError):
    """Bytes that are not the encoding of a membership message."""


class MemberState(Enum):
    """A member's state as one node sees it. ``rank`` orders states at equal incarnation."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3

    @property
    def rank(self) -> int:
        return self.value

    @property
    def live(self) -> bool:
        """Alive or suspected: still a member (a suspect may refute)."""
        return self in (MemberState.ALIVE, MemberState.SUSPECT)


@dataclass(frozen=True, slots=True)
class Member:
    """One member as seen by one node. ``address`` is opaque to membership."""

    id: str
    generation: str
    address: str
    incarnation: int
    state: MemberState

    def __post_init__(self) -> None:
        for what, text in (("id", self.id), ("generation", self.generation)):
            if not text or len(text) > MAX_TEXT:
                raise ValueError(f"member {what} must be 1..{MAX_TEXT} characters")
        if len(self.address) > MAX_TEXT:
            raise ValueError(f"member address longer than {MAX_TEXT}")
        if not 0 <= self.incarnation <= MAX_UINT:
            raise ValueError("incarnation must be an unsigned 64-bit int")

    def outranks(self, other: Member) -> bool:
        """True if this record is newer news than ``other`` (same id and generation)."""
        return (self.incarnation, self.state.rank) > (other.incarnation, other.state.rank)


@dataclass(frozen=True, slots=True)
class Update:
    """A piggybacked state change. ``source`` is the id of the member that asserted
    it (for Suspect: the suspector, which Lifeguard counts as a confirmation)."""

    member: Member
    source: str


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe of ``target_id`` (of ``target_generation``); answered by ``Ack(seq)``."""

    seq: int
    target_id: str
    target_generation: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """Sent by an indirect prober whose ping to the target went unanswered."""

    seq: int


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to ping ``target`` and relay its ``Ack(seq)`` (or a ``Nack``)."""

    seq: int
    target: Member
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Sync:
    """Push-pull: the sender's whole member list. ``reply`` asks for the receiver's."""

    source_id: str
    members: tuple[Member, ...]
    reply: bool


@dataclass(frozen=True, slots=True)
class Gossip:
    updates: tuple[Update, ...]


Message = Ping | Ack | Nack | PingReq | Sync | Gossip


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message to send to the member at address ``dst``."""

    dst: str
    message: Message


# ---------------------------------------------------------------- encoding

_PING, _ACK, _NACK, _PING_REQ, _SYNC, _GOSSIP = range(1, 7)


def _member_out(m: Member) -> list[object]:
    return [m.id, m.generation, m.address, m.incarnation, m.state.value]


def _updates_out(updates: tuple[Update, ...]) -> list[object]:
    return [[*_member_out(u.member), u.source] for u in updates]


def encode_message(message: Message) -> bytes:
    """The one msgpack encoding of ``message``."""
    obj: list[object]
    match message:
        case Ping():
            obj = [
                _PING,
                message.seq,
                message.target_id,
                message.target_generation,
                _updates_out(message.updates),
            ]
        case Ack():
            obj = [_ACK, message.seq, _updates_out(message.updates)]
        case Nack():
            obj = [_NACK, message.seq]
        case PingReq():
            obj = [
                _PING_REQ,
                message.seq,
                _member_out(message.target),
                _updates_out(message.updates),
            ]
        case Sync():
            obj = [
                _SYNC,
                message.source_id,
                [_member_out(m) for m in message.members],
                message.reply,
            ]
        case Gossip():
            obj = [_GOSSIP, _updates_out(message.updates)]
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def decode_message(data: bytes) -> Message:
    """Decode one message. Raises ``MalformedMessage`` (only) on anything invalid."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    try:
        obj: object = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise MalformedMessage(f"not a msgpack value: {exc!r:.200}") from exc
    items = _list(obj, "message")
    if not items:
        raise MalformedMessage("empty message")
    tag, body = items[0], items[1:]
    if type(tag) is not int:
        raise MalformedMessage("message tag must be an int")
    try:
        return _decode_body(tag, body)
    except ValueError as exc:  # a constructor's own check (e.g. empty id)
        if isinstance(exc, MalformedMessage):
            raise
        raise MalformedMessage(str(exc)) from exc


def _decode_body(tag: int, body: list[object]) -> Message:
    if tag == _PING:
        _arity(body, 4, "Ping")
        return Ping(
            _uint(body[0], "seq"),
            _text(body[1], "target_id"),
            _text(body[2], "target_generation"),
            _updates(body[3]),
        )
    if tag == _ACK:
        _arity(body, 2, "Ack")
        return Ack(_uint(body[0], "seq"), _updates(body[1]))
    if tag == _NACK:
        _arity(body, 1, "Nack")
        return Nack(_uint(body[0], "seq"))
    if tag == _PING_REQ:
        _arity(body, 3, "PingReq")
        return PingReq(_uint(body[0], "seq"), _member(body[1]), _updates(body[2]))
    if tag == _SYNC:
        _arity(body, 3, "Sync")
        members = tuple(_member(m) for m in _list(body[1], "members"))
        if type(body[2]) is not bool:
            raise MalformedMessage("Sync.reply must be a bool")
        return Sync(_text(body[0], "source_id"), members, body[2])
    if tag == _GOSSIP:
        _arity(body, 1, "Gossip")
        return Gossip(_updates(body[0]))
    raise MalformedMessage(f"unknown message tag {tag}")


def _arity(body: list[object], n: int, what: str) -> None:
    if len(body) != n:
        raise MalformedMessage(f"{what}: expected {n} fields, got {len(body)}")


def _list(obj: object, what: str) -> list[object]:
    if not isinstance(obj, list):
        raise MalformedMessage(f"{what}: expected a list, got {type(obj).__name__}")
    if len(obj) > MAX_ITEMS:
        raise MalformedMessage(f"{what}: more than {MAX_ITEMS} items")
    return obj


def _uint(obj: object, what: str) -> int:
    if type(obj) is not int or not 0 <= obj <= MAX_UINT:
        raise MalformedMessage(f"{what}: expected an unsigned 64-bit int")
    return obj


def _text(obj: object, what: str) -> str:
    if type(obj) is not str or len(obj) > MAX_TEXT:
        raise MalformedMessage(f"{what}: expected a string of at most {MAX_TEXT} characters")
    return obj


def _member_fields(items: list[object]) -> Member:
    state = _uint(items[4], "state")
    if state > MemberState.LEFT.value:
        raise MalformedMessage(f"unknown member state {state}")
    return Member(
        _text(items[0], "id"),
        _text(items[1], "generation"),
        _text(items[2], "address"),
        _uint(items[3], "incarnation"),
        MemberState(state),
    )


def _member(obj: object) -> Member:
    items = _list(obj, "member")
    _arity(items, 5, "member")
    return _member_fields(items)


def _updates(obj: object) -> tuple[Update, ...]:
    out = []
    for raw in _list(obj, "updates"):
        items = _list(raw, "update")
        _arity(items, 6, "update")
        out.append(Update(_member_fields(items), _text(items[5], "source")))
    return tuple(out)

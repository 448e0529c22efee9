"""Wire encoding of the strong replica's messages (``strong.messages``).

Pure: bytes in, message out (and back); no IO. The transport carries the
result as an opaque payload on its "strong" channel and supplies the sender's
node id, so only the ``Message`` is encoded, never the ``Envelope``.

Rules:

1. A message is a msgpack list ``[tag, field, ...]``; a ``Ballot`` is
   ``[round, node_id]``; a batch is a list of ``bin``; ``SlotValue`` is
   ``[slot, ballot, batch, chosen]``. Never pickle: the decoder builds only
   the dataclasses below from ints, strings, bytes, bools and one float.
2. ``decode_message`` raises ``MalformedMessage`` (a ``ValueError``) and
   nothing else for bytes that are not exactly such an encoding, so a
   malformed peer message never crashes a node. A decoded message passed
   every check below, so the replica may trust its shape:

   - integers (rounds, slots, indexes, heartbeat rounds) are unsigned 64-bit;
     ``bool`` is never accepted as an ``int``;
   - a ballot's node id is a string of at most ``max_node_id`` characters,
     empty only in ``ZERO`` (round 0): real node ids are non-empty;
   - ``Promise.accepted`` slots are strictly increasing and ``>= from_slot``;
     ``since_leader_contact`` is a finite float ``>= 0`` (a peer must not be
     able to make a new leader skip the lease wait with ``inf``); a
     ``truncated`` Promise reports at least one slot (it says where it stopped);
   - an ``InstallSnapshot`` chunk lies within its snapshot
     (``offset + len(data) <= total``), is non-empty unless the snapshot is,
     and names a 32-bit ``crc``; ``total`` is at most ``max_snapshot_total``;
   - ``Forward`` carries one request id per command, and ``Forward``,
     ``ReadIndexRequest``, ``ReadIndexReply`` and ``Refused`` name at least one
     request id and at most a batch's worth;
   - ``CatchUpReply`` names slots ``from_slot .. from_slot + len - 1``, all
     within 64 bits;
   - sizes stay within ``WireLimits``: the whole message, commands per batch,
     bytes per command and per batch, slots per message, snapshot bytes per
     chunk and per snapshot.

3. ``encode_message`` does not enforce the limits: the sender's configuration
   (``ReplicaConfig.max_batch``, ``catchup_max_slots``) must fit within the
   receivers' limits, and a message that does not is refused by the receiver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import msgpack  # type: ignore[import-untyped, unused-ignore]

from strong.ballot import Ballot
from strong.messages import (
    Accept,
    Accepted,
    Batch,
    CatchUpReply,
    CatchUpRequest,
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

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_ROUND",
    "MAX_UINT",
    "MalformedMessage",
    "WireLimits",
    "decode_message",
    "encode_message",
]

MAX_UINT = 2**64 - 1
#: the highest ballot round a peer may send: far beyond any real election count,
#: and low enough that ``round + 1`` always encodes (a round of 2**64 - 1 would
#: make every replica that promised it fail to encode its next ballot)
MAX_ROUND = 2**62
_MIB = 2**20


class MalformedMessage(ValueError):
    """Bytes that are not the encoding of a strong message (within the limits)."""


@dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds on decoded input: a peer cannot make us allocate without bound."""

    #: the whole encoded message (checked before unpacking anything)
    max_message_bytes: int = 64 * _MIB
    max_node_id: int = 256
    #: commands in one slot's batch
    max_batch_commands: int = 4096
    max_command_bytes: int = 4 * _MIB
    #: sum of the command sizes of one batch
    max_batch_bytes: int = 16 * _MIB
    #: entries of ``Promise.accepted`` and of ``CatchUpReply.values``
    max_slots: int = 65536
    #: snapshot bytes in one ``InstallSnapshot`` chunk
    max_snapshot_bytes: int = 60 * _MIB
    #: a whole snapshot (what a receiver may assemble in memory for one transfer)
    max_snapshot_total: int = 4096 * _MIB

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"WireLimits.{f.name} must be >= 1")


DEFAULT_LIMITS = WireLimits()

(
    _PREPARE,
    _PROMISE,
    _ACCEPT,
    _ACCEPTED,
    _NACK,
    _HEARTBEAT,
    _HEARTBEAT_ACK,
    _CATCH_UP_REQUEST,
    _CATCH_UP_REPLY,
    _INSTALL_SNAPSHOT,
    _PRE_VOTE,
    _PRE_VOTE_REPLY,
    _FORWARD,
    _READ_INDEX_REQUEST,
    _READ_INDEX_REPLY,
    _REFUSED,
    _TIMEOUT_NOW,
) = range(1, 18)


# ---------------------------------------------------------------- encoding


def _ballot_out(b: Ballot) -> list[object]:
    return [b.round, b.node_id]


def _batch_out(batch: Batch) -> list[bytes]:
    return list(batch)


def encode_message(message: Message) -> bytes:
    """The one msgpack encoding of ``message``.

    Raises ``TypeError`` if ``message`` is not a strong message (a programming
    error, not bad input).
    """
    obj: list[object]
    match message:
        case Prepare():
            obj = [_PREPARE, _ballot_out(message.ballot), message.from_slot]
        case Promise():
            obj = [
                _PROMISE,
                _ballot_out(message.ballot),
                message.from_slot,
                [
                    [v.slot, _ballot_out(v.ballot), _batch_out(v.value), v.chosen]
                    for v in message.accepted
                ],
                message.log_start,
                message.commit_index,
                float(message.since_leader_contact),
                message.truncated,
            ]
        case Accept():
            obj = [
                _ACCEPT,
                _ballot_out(message.ballot),
                message.slot,
                _batch_out(message.value),
                message.commit_index,
            ]
        case Accepted():
            obj = [_ACCEPTED, _ballot_out(message.ballot), message.slot]
        case Nack():
            obj = [_NACK, _ballot_out(message.ballot), _ballot_out(message.promised)]
        case Heartbeat():
            obj = [_HEARTBEAT, _ballot_out(message.ballot), message.round, message.commit_index]
        case HeartbeatAck():
            obj = [
                _HEARTBEAT_ACK,
                _ballot_out(message.ballot),
                message.round,
                message.commit_index,
            ]
        case CatchUpRequest():
            obj = [
                _CATCH_UP_REQUEST,
                _ballot_out(message.ballot),
                message.from_slot,
                message.snapshot_index,
                message.snapshot_offset,
            ]
        case CatchUpReply():
            obj = [
                _CATCH_UP_REPLY,
                _ballot_out(message.ballot),
                message.from_slot,
                [_batch_out(v) for v in message.values],
                message.commit_index,
            ]
        case InstallSnapshot():
            obj = [
                _INSTALL_SNAPSHOT,
                _ballot_out(message.ballot),
                message.index,
                message.offset,
                message.total,
                message.crc,
                message.data,
            ]
        case PreVote():
            obj = [_PRE_VOTE, _ballot_out(message.ballot), message.commit_index]
        case PreVoteReply():
            obj = [_PRE_VOTE_REPLY, _ballot_out(message.ballot), message.granted]
        case Forward():
            obj = [_FORWARD, _ballot_out(message.ballot), message.incarnation,
                   list(message.request_ids), _batch_out(message.commands)]
        case ReadIndexRequest():
            obj = [_READ_INDEX_REQUEST, _ballot_out(message.ballot), message.incarnation,
                   list(message.request_ids), message.quorum]
        case ReadIndexReply():
            obj = [_READ_INDEX_REPLY, _ballot_out(message.ballot), message.incarnation,
                   message.index, list(message.request_ids)]
        case Refused():
            obj = [_REFUSED, _ballot_out(message.ballot), message.incarnation,
                   list(message.request_ids)]
        case TimeoutNow():
            obj = [_TIMEOUT_NOW, _ballot_out(message.ballot)]
        case _:
            raise TypeError(f"not a strong message: {type(message).__name__}")
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


# ---------------------------------------------------------------- decoding


def decode_message(data: bytes, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Decode one message; raises ``MalformedMessage`` (only) on anything invalid."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_message_bytes:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {limits.max_message_bytes}")
    try:
        obj: object = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise MalformedMessage(f"not a msgpack value: {exc!r:.200}") from exc
    items = _list(obj, "message", 8)
    if not items:
        raise MalformedMessage("empty message")
    tag, body = items[0], items[1:]
    if type(tag) is not int:
        raise MalformedMessage("message tag must be an int")
    return _Reader(limits).body(tag, body)


class _Reader:
    """Field readers bound to one set of limits; each raises ``MalformedMessage``."""

    def __init__(self, limits: WireLimits) -> None:
        self.limits = limits

    def body(self, tag: int, body: list[object]) -> Message:
        if tag == _PREPARE:
            _arity(body, 2, "Prepare")
            return Prepare(self.ballot(body[0], "ballot"), _uint(body[1], "from_slot"))
        if tag == _PROMISE:
            _arity(body, 7, "Promise")
            from_slot = _uint(body[1], "from_slot")
            accepted = self.slot_values(body[2], from_slot)
            truncated = body[6]
            if type(truncated) is not bool:
                raise MalformedMessage("Promise.truncated: expected a bool")
            if truncated and not accepted:
                raise MalformedMessage("Promise: truncated without a reported slot")
            return Promise(
                ballot=self.ballot(body[0], "ballot"),
                from_slot=from_slot,
                accepted=accepted,
                log_start=_uint(body[3], "log_start"),
                commit_index=_uint(body[4], "commit_index"),
                since_leader_contact=_duration(body[5], "since_leader_contact"),
                truncated=truncated,
            )
        if tag == _ACCEPT:
            _arity(body, 4, "Accept")
            return Accept(
                self.ballot(body[0], "ballot"),
                _uint(body[1], "slot"),
                self.batch(body[2], "value"),
                _uint(body[3], "commit_index"),
            )
        if tag == _ACCEPTED:
            _arity(body, 2, "Accepted")
            return Accepted(self.ballot(body[0], "ballot"), _uint(body[1], "slot"))
        if tag == _NACK:
            _arity(body, 2, "Nack")
            return Nack(self.ballot(body[0], "ballot"), self.ballot(body[1], "promised"))
        if tag in (_HEARTBEAT, _HEARTBEAT_ACK):
            kind = Heartbeat if tag == _HEARTBEAT else HeartbeatAck
            _arity(body, 3, kind.__name__)
            return kind(
                self.ballot(body[0], "ballot"),
                _uint(body[1], "round"),
                _uint(body[2], "commit_index"),
            )
        if tag == _CATCH_UP_REQUEST:
            _arity(body, 4, "CatchUpRequest")
            return CatchUpRequest(
                self.ballot(body[0], "ballot"),
                _uint(body[1], "from_slot"),
                _uint(body[2], "snapshot_index"),
                _uint(body[3], "snapshot_offset"),
            )
        if tag == _CATCH_UP_REPLY:
            _arity(body, 4, "CatchUpReply")
            from_slot = _uint(body[1], "from_slot")
            raw = _list(body[2], "values", self.limits.max_slots)
            if raw and from_slot + len(raw) - 1 > MAX_UINT:
                raise MalformedMessage("CatchUpReply: slots beyond 64 bits")
            return CatchUpReply(
                self.ballot(body[0], "ballot"),
                from_slot,
                tuple(self.batch(v, "values[]") for v in raw),
                _uint(body[3], "commit_index"),
            )
        if tag == _INSTALL_SNAPSHOT:
            return self.install_snapshot(body)
        if tag == _PRE_VOTE:
            _arity(body, 2, "PreVote")
            return PreVote(self.ballot(body[0], "ballot"), _uint(body[1], "commit_index"))
        if tag == _PRE_VOTE_REPLY:
            _arity(body, 2, "PreVoteReply")
            if type(body[1]) is not bool:
                raise MalformedMessage("PreVoteReply.granted: expected a bool")
            return PreVoteReply(self.ballot(body[0], "ballot"), body[1])
        if tag == _FORWARD:
            _arity(body, 4, "Forward")
            ids = self.request_ids(body[2])
            commands = self.batch(body[3], "commands")
            if len(ids) != len(commands):
                raise MalformedMessage("Forward: one request id per command")
            return Forward(self.ballot(body[0], "ballot"), _uint(body[1], "incarnation"), ids,
                           commands)
        if tag == _READ_INDEX_REQUEST:
            _arity(body, 4, "ReadIndexRequest")
            if type(body[3]) is not bool:
                raise MalformedMessage("ReadIndexRequest.quorum: expected a bool")
            return ReadIndexRequest(self.ballot(body[0], "ballot"), _uint(body[1], "incarnation"),
                                    self.request_ids(body[2]), body[3])
        if tag == _READ_INDEX_REPLY:
            _arity(body, 4, "ReadIndexReply")
            return ReadIndexReply(self.ballot(body[0], "ballot"), _uint(body[1], "incarnation"),
                                  _uint(body[2], "index"), self.request_ids(body[3]))
        if tag == _REFUSED:
            _arity(body, 3, "Refused")
            return Refused(self.ballot(body[0], "ballot"), _uint(body[1], "incarnation"),
                           self.request_ids(body[2]))
        if tag == _TIMEOUT_NOW:
            _arity(body, 1, "TimeoutNow")
            return TimeoutNow(self.ballot(body[0], "ballot"))
        raise MalformedMessage(f"unknown message tag {tag}")

    def request_ids(self, obj: object) -> tuple[int, ...]:
        """A non-empty list of request ids (at most a batch's worth)."""
        ids = tuple(_uint(i, "request_ids[]")
                    for i in _list(obj, "request_ids", self.limits.max_batch_commands))
        if not ids:
            raise MalformedMessage("request_ids: empty")
        return ids

    def install_snapshot(self, body: list[object]) -> InstallSnapshot:
        _arity(body, 6, "InstallSnapshot")
        offset = _uint(body[2], "offset")
        total = _uint(body[3], "total")
        crc = _uint(body[4], "crc")
        data = body[5]
        if type(data) is not bytes:
            raise MalformedMessage("InstallSnapshot.data: expected bytes")
        if len(data) > self.limits.max_snapshot_bytes:
            raise MalformedMessage(
                f"snapshot chunk of {len(data)} bytes exceeds {self.limits.max_snapshot_bytes}"
            )
        if total > self.limits.max_snapshot_total:
            raise MalformedMessage(
                f"snapshot of {total} bytes exceeds {self.limits.max_snapshot_total}"
            )
        if crc > 0xFFFFFFFF:
            raise MalformedMessage("InstallSnapshot.crc: expected a 32-bit checksum")
        if offset + len(data) > total or (not data and total):
            raise MalformedMessage("InstallSnapshot: the chunk is empty or outside its snapshot")
        return InstallSnapshot(
            self.ballot(body[0], "ballot"), _uint(body[1], "index"), offset, total, crc, data
        )

    def ballot(self, obj: object, what: str) -> Ballot:
        pair = _list(obj, what, 2)
        _arity(pair, 2, what)
        rnd = _uint(pair[0], f"{what}.round")
        if rnd > MAX_ROUND:
            raise MalformedMessage(f"{what}.round: above {MAX_ROUND}")
        node = pair[1]
        if type(node) is not str or len(node) > self.limits.max_node_id:
            raise MalformedMessage(
                f"{what}.node_id: expected a string of at most {self.limits.max_node_id} characters"
            )
        if not node and rnd != 0:
            raise MalformedMessage(f"{what}: only the zero ballot has an empty node id")
        return Ballot(rnd, node)

    def batch(self, obj: object, what: str) -> Batch:
        commands: list[bytes] = []
        total = 0
        for c in _list(obj, what, self.limits.max_batch_commands):
            if type(c) is not bytes:
                raise MalformedMessage(f"{what}: commands must be bytes")
            if len(c) > self.limits.max_command_bytes:
                raise MalformedMessage(
                    f"{what}: command of {len(c)} bytes exceeds {self.limits.max_command_bytes}"
                )
            total += len(c)
            commands.append(c)
        if total > self.limits.max_batch_bytes:
            raise MalformedMessage(
                f"{what}: batch of {total} bytes exceeds {self.limits.max_batch_bytes}"
            )
        return tuple(commands)

    def slot_values(self, obj: object, from_slot: int) -> tuple[SlotValue, ...]:
        out: list[SlotValue] = []
        for raw in _list(obj, "accepted", self.limits.max_slots):
            items = _list(raw, "accepted[]", 4)
            _arity(items, 4, "accepted[]")
            slot = _uint(items[0], "accepted[].slot")
            if slot < from_slot or (out and slot <= out[-1].slot):
                raise MalformedMessage(
                    "Promise.accepted: slots must be >= from_slot and strictly increasing"
                )
            chosen = items[3]
            if type(chosen) is not bool:
                raise MalformedMessage("accepted[].chosen: expected a bool")
            out.append(
                SlotValue(
                    slot,
                    self.ballot(items[1], "accepted[].ballot"),
                    self.batch(items[2], "accepted[].value"),
                    chosen,
                )
            )
        return tuple(out)


def _arity(body: list[object], n: int, what: str) -> None:
    if len(body) != n:
        raise MalformedMessage(f"{what}: expected {n} fields, got {len(body)}")


def _list(obj: object, what: str, max_items: int) -> list[object]:
    if not isinstance(obj, list):
        raise MalformedMessage(f"{what}: expected a list, got {type(obj).__name__}")
    if len(obj) > max_items:
        raise MalformedMessage(f"{what}: more than {max_items} items")
    return obj


def _uint(obj: object, what: str) -> int:
    if type(obj) is not int or not 0 <= obj <= MAX_UINT:
        raise MalformedMessage(f"{what}: expected an unsigned 64-bit int, got {obj!r:.40}")
    return obj


def _duration(obj: object, what: str) -> float:
    if type(obj) is not float or not math.isfinite(obj) or obj < 0:
        raise MalformedMessage(f"{what}: expected a finite float >= 0, got {obj!r:.40}")
    return obj

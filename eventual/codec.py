"""Wire encoding of eventual messages: msgpack of lists, and a strict decoder.

Rules:

1. One value, one encoding: version vectors are sorted pairs, full-state
   entries are sorted by key and siblings by dot (``canonical_state`` is how
   the simulator compares replicas).
2. ``decode`` / ``message_from_wire`` raise ``MalformedMessage`` (a
   ``ValueError``) for anything that is not exactly a valid message, and
   nothing else: a malformed peer message never crashes a node. Beyond shape
   and types it checks the invariants of ``eventual.messages`` (an event's
   ``deps`` hold exactly its creator's earlier events, ``covers <= deps``;
   a full state's siblings are inside its context; instance values decode).
3. Integers are unsigned 64-bit; ``bool`` is never accepted as an ``int``.
4. Optional trailing fields are absent when unset (an event's and a sibling's
   idempotency key: a non-empty string of at most ``MAX_IDEMPOTENCY_KEY``
   characters; after it, an event's ``group_end``, with the key nil when the
   event has a group but no key), so what older replicas wrote still decodes,
   and they still read whatever carries neither.
"""

from __future__ import annotations

import msgpack

from eventual.dots import KV_SPACE, SVC_SPACE, Dot, Key, Sibling, WireVV, vv_covers, vv_leq
from eventual.instances import decode_info
from eventual.messages import (
    MAX_GROUP_EVENTS,
    Deltas,
    Digest,
    Event,
    FullState,
    Message,
    RepairProbe,
    StateEntry,
)
from eventual.ormap import ORMap

__all__ = [
    "MalformedMessage",
    "canonical_state",
    "decode",
    "encode",
    "entries_from_wire",
    "entries_to_wire",
    "event_from_wire",
    "event_to_wire",
    "message_from_wire",
    "message_to_wire",
    "read_idem",
    "read_list",
    "read_str",
    "read_uint",
    "read_vv",
    "state_entries",
]

MAX_UINT = 2**64 - 1
MAX_NAME = 4096
#: the longest idempotency key an event or sibling may carry
MAX_IDEMPOTENCY_KEY = 128
#: chunks of one full state transfer (``eventual.full_state``)
MAX_PARTS = 1 << 20


class MalformedMessage(ValueError):
    """Bytes or values that are not a valid eventual message."""


# ---------------------------------------------------------------------- readers


def read_list(obj: object, what: str, length: int | None = None) -> list[object]:
    if not isinstance(obj, list):
        raise MalformedMessage(f"{what}: expected a list, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise MalformedMessage(f"{what}: expected {length} items, got {len(obj)}")
    return obj


def read_uint(obj: object, what: str) -> int:
    if type(obj) is not int or not 0 <= obj <= MAX_UINT:
        raise MalformedMessage(f"{what}: expected an unsigned 64-bit int, got {obj!r:.40}")
    return obj


def read_str(obj: object, what: str, *, nonempty: bool = False) -> str:
    if type(obj) is not str or len(obj) > MAX_NAME or (nonempty and not obj):
        raise MalformedMessage(f"{what}: expected a{' non-empty' if nonempty else ''} string")
    return obj


def _bool(obj: object, what: str) -> bool:
    if type(obj) is not bool:
        raise MalformedMessage(f"{what}: expected a bool")
    return obj


def _bytes(obj: object, what: str) -> bytes:
    if type(obj) is not bytes:
        raise MalformedMessage(f"{what}: expected bytes")
    return obj


def read_idem(obj: object, what: str) -> str:
    if type(obj) is not str or not 0 < len(obj) <= MAX_IDEMPOTENCY_KEY:
        raise MalformedMessage(f"{what}: expected a string of 1-{MAX_IDEMPOTENCY_KEY} characters")
    return obj


def read_vv(obj: object, what: str) -> WireVV:
    """Sorted ``[actor, counter]`` pairs, actors strictly increasing, counters >= 1."""
    out: list[tuple[str, int]] = []
    for item in read_list(obj, what):
        pair = read_list(item, what, 2)
        actor = read_str(pair[0], f"{what} actor", nonempty=True)
        n = read_uint(pair[1], f"{what} counter")
        if n == 0 or (out and out[-1][0] >= actor):
            raise MalformedMessage(f"{what}: counters must be >= 1, actors sorted and distinct")
        out.append((actor, n))
    return tuple(out)


def _dot(obj: object, what: str) -> Dot:
    pair = read_list(obj, what, 2)
    actor = read_str(pair[0], f"{what} actor", nonempty=True)
    n = read_uint(pair[1], f"{what} counter")
    if n == 0:
        raise MalformedMessage(f"{what}: counters start at 1")
    return (actor, n)


def _key(obj: object, what: str) -> Key:
    parts = read_list(obj, what, 3)
    ns = read_str(parts[0], f"{what} namespace", nonempty=True)
    space = read_str(parts[1], f"{what} space")
    if space not in (KV_SPACE, SVC_SPACE):
        raise MalformedMessage(f"{what}: unknown space {space!r:.20}")
    return (ns, space, read_str(parts[2], f"{what} name"))


def _value(key: Key, raw: bytes, what: str) -> bytes:
    if key[1] == SVC_SPACE:
        try:
            decode_info(raw)
        except ValueError as exc:
            raise MalformedMessage(f"{what}: bad instance record: {exc}") from exc
    return raw


# ---------------------------------------------------------------------- events


def event_to_wire(e: Event) -> list[object]:
    wire: list[object] = [list(e.dot), list(e.key), e.value, e.hlc, [list(p) for p in e.covers],
                          [list(p) for p in e.deps]]
    if e.group_end:
        return [*wire, e.idem, e.group_end]
    return wire if e.idem is None else [*wire, e.idem]


def event_from_wire(obj: object) -> Event:
    f = read_list(obj, "event")
    if len(f) not in (6, 7, 8):
        raise MalformedMessage(f"event: expected 6 to 8 items, got {len(f)}")
    dot = _dot(f[0], "event dot")
    key = _key(f[1], "event key")
    value = None if f[2] is None else _value(key, _bytes(f[2], "event value"), "event value")
    hlc = read_uint(f[3], "event hlc")
    covers = read_vv(f[4], "event covers")
    deps = read_vv(f[5], "event deps")
    deps_map = dict(deps)
    if deps_map.get(dot[0], 0) != dot[1] - 1:
        raise MalformedMessage("event deps must hold exactly its creator's earlier events")
    if not vv_leq(dict(covers), deps_map):
        raise MalformedMessage("event covers must be within its deps")
    idem = None
    if len(f) == 7 or (len(f) == 8 and f[6] is not None):
        idem = read_idem(f[6], "event idempotency key")
    group_end = 0
    if len(f) == 8:
        group_end = read_uint(f[7], "event group end")
        if not dot[1] <= group_end < dot[1] + MAX_GROUP_EVENTS:
            raise MalformedMessage(f"event group end must be within {MAX_GROUP_EVENTS} events "
                                   "from the event, at or after it")
    return Event(dot, key, value, hlc, covers, deps, idem, group_end)


# ---------------------------------------------------------------------- state


def state_entries(store: ORMap) -> tuple[StateEntry, ...]:
    """The dot store as sorted entries (the canonical order)."""
    return tuple(
        (key, tuple(sorted(sibs.items())))
        for key, sibs in sorted(store.entries.items())
        if sibs
    )


def entries_to_wire(entries: tuple[StateEntry, ...]) -> list[object]:
    return [
        [list(key), [[list(d), s.value, s.hlc] + ([] if s.idem is None else [s.idem])
                     for d, s in sibs]]
        for key, sibs in entries
    ]


def entries_from_wire(obj: object, vv: WireVV) -> tuple[StateEntry, ...]:
    context = dict(vv)
    out: list[StateEntry] = []
    for item in read_list(obj, "state entries"):
        pair = read_list(item, "state entry", 2)
        key = _key(pair[0], "state key")
        if out and out[-1][0] >= key:
            raise MalformedMessage("state keys must be sorted and distinct")
        sibs: list[tuple[Dot, Sibling]] = []
        for raw in read_list(pair[1], "siblings"):
            f = read_list(raw, "sibling")
            if len(f) not in (3, 4):
                raise MalformedMessage(f"sibling: expected 3 or 4 items, got {len(f)}")
            dot = _dot(f[0], "sibling dot")
            if sibs and sibs[-1][0] >= dot:
                raise MalformedMessage("siblings must be sorted by dot and distinct")
            if not vv_covers(context, dot):
                raise MalformedMessage("sibling dot outside the state's context")
            value = _value(key, _bytes(f[1], "sibling value"), "sibling value")
            idem = read_idem(f[3], "sibling idempotency key") if len(f) == 4 else None
            sibs.append((dot, Sibling(value, read_uint(f[2], "sibling hlc"), idem)))
        if not sibs:
            raise MalformedMessage("a state entry must have siblings")
        out.append((key, tuple(sibs)))
    return tuple(out)


def canonical_state(store: ORMap) -> bytes:
    """One byte string per state: equal iff the dot stores and contexts are equal."""
    cloud = sorted(store.context.cloud)
    data: bytes = msgpack.packb(
        [[list(p) for p in sorted(store.context.vv.items()) if p[1] > 0],
         [list(d) for d in cloud], entries_to_wire(state_entries(store))],
        use_bin_type=True,
    )
    return data


# ---------------------------------------------------------------------- messages


def message_to_wire(msg: Message) -> list[object]:
    match msg:
        case Digest(replica, vv, reply):
            return ["D", replica, [list(p) for p in vv], reply]
        case Deltas(replica, vv, events):
            return ["E", replica, [list(p) for p in vv], [event_to_wire(e) for e in events]]
        case FullState(replica, vv, entries, hlc, reply, log, rejoining, part, parts):
            wire: list[object] = ["F", replica, [list(p) for p in vv], entries_to_wire(entries),
                                  hlc, reply, [event_to_wire(e) for e in log], list(rejoining)]
            # one piece: the unchunked form, which replicas without chunking also read
            return wire if parts == 1 else [*wire, part, parts]
        case RepairProbe(replica, vv, state_hash):
            return ["R", replica, [list(p) for p in vv], state_hash]


def message_from_wire(obj: object) -> Message:
    f = read_list(obj, "message")
    if not f:
        raise MalformedMessage("empty message")
    tag, rest = f[0], f[1:]
    match tag, len(rest):
        case "D", 3:
            return Digest(read_str(rest[0], "replica", nonempty=True), read_vv(rest[1], "vv"),
                          _bool(rest[2], "reply"))
        case "E", 3:
            events = tuple(event_from_wire(e) for e in read_list(rest[2], "events"))
            return Deltas(read_str(rest[0], "replica", nonempty=True), read_vv(rest[1], "vv"),
                          events)
        case "F", 7 | 9:
            part, parts = 0, 1
            if len(rest) == 9:
                part, parts = read_uint(rest[7], "part"), read_uint(rest[8], "parts")
                if not 0 <= part < parts <= MAX_PARTS:
                    raise MalformedMessage(f"full state chunk {part} of {parts} is out of range")
            vv = read_vv(rest[1], "vv")
            log = tuple(event_from_wire(e) for e in read_list(rest[5], "log"))
            if not all(vv_covers(dict(vv), e.dot) for e in log):
                raise MalformedMessage("full state log holds an event outside its context")
            rejoining = tuple(read_str(n, "node", nonempty=True)
                              for n in read_list(rest[6], "rejoining"))
            return FullState(read_str(rest[0], "replica", nonempty=True), vv,
                             entries_from_wire(rest[2], vv), read_uint(rest[3], "hlc"),
                             _bool(rest[4], "reply"), log, rejoining, part, parts)
        case "R", 3:
            return RepairProbe(read_str(rest[0], "replica", nonempty=True), read_vv(rest[1], "vv"),
                               read_uint(rest[2], "state hash"))
    raise MalformedMessage(f"unknown message {tag!r:.20}/{len(rest)}")


def encode(msg: Message) -> bytes:
    data: bytes = msgpack.packb(message_to_wire(msg), use_bin_type=True)
    return data


def decode(data: bytes) -> Message:
    """Raises ``MalformedMessage`` for anything but one valid encoded message."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage("expected bytes")
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failures are not a closed set
        raise MalformedMessage(f"not msgpack: {exc!r:.80}") from exc
    return message_from_wire(obj)

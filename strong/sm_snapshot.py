"""The state machine's snapshot: one canonical byte string for the whole state.

Layout (a msgpack list, no maps). State-machine version 1 (format 1)::

    [1, applied_index, version, revision,
     [[namespace, kvs | nil], ...]      # sorted by name; kvs nil iff eventual
     [[client_id, seq, result], ...]]   # sorted by client_id

Version 2 and later (format 2) add the session clock (the leader time of the
last ``ExpireSessions``, ms) and each session's last activity on that clock::

    [2, applied_index, version, revision, clock,
     [[namespace, kvs | nil], ...],
     [[client_id, seq, result, last_seen], ...],
     [[client_id, expired_at], ...]]    # expired sessions' ids, sorted

Version 3 and later (format 3) add, per strong namespace, its service table
(``strong.services``)::

    [3, applied_index, version, revision, clock,
     [[namespace, kvs | nil], ...],
     [[client_id, seq, result, last_seen], ...],
     [[client_id, expired_at], ...],
     [[name, floor, services_clock,    # one per strong namespace, sorted by name
       [instance, ...],                # sorted by (service, instance_id)
       [[service, index], ...]], ...]] # sorted by service

Version 4 and later (format 4) add the ACL table (``strong.acl``)::

    [4, ..., services,                 # as format 3
     [[policy, ...], [token, ...]]]     # sorted by name / accessor id

with each ``kvs`` a list sorted by key. The format follows the version, so a
version-1 or -2 state encodes exactly as before (old and new code hash it alike).
Invariants:

- ``encode_snapshot`` emits exactly this canonical form, so equal states give
  equal bytes (the basis of ``state_hash``);
- ``decode_snapshot`` accepts only that form — unsorted or duplicate names,
  keys or clients, a strong namespace without a table (or, from format 3,
  without a service table), an instance breaking a registration limit or
  ``strong.services``' invariants, garbage of any kind —
  and raises ``MalformedSnapshot`` (and nothing else) otherwise. Hence
  ``encode_snapshot(decode_snapshot(b)) == b`` whenever decoding succeeds.

CRC32C framing belongs to storage; this is the payload it protects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped, unused-ignore]

from strong.acl import ACL_VERSION, AclState, decode_acl_state, encode_acl_state
from strong.canonical import (
    MAX_UINT,
    WireError,
    read_list,
    read_str,
    read_uint,
    unpack,
)
from strong.ops import CONSISTENCIES, STRONG
from strong.results import (
    KeyValue,
    NamespaceInfo,
    Result,
    decode_instance,
    decode_kv,
    decode_namespace,
    decode_result,
    encode_instance,
    encode_namespace,
    encode_result,
)
from strong.services import ServiceTableState, check_table_state

__all__ = [
    "CLOCK_VERSION",
    "SERVICES_VERSION",
    "SNAPSHOT_FORMAT",
    "MalformedSnapshot",
    "SnapshotState",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_decodes",
]

SNAPSHOT_FORMAT = 4
#: the state-machine version from which snapshots carry the session clock (format 2)
CLOCK_VERSION = 2
#: the state-machine version from which snapshots carry service tables (format 3)
SERVICES_VERSION = 3


class MalformedSnapshot(ValueError):
    """Bytes that ``encode_snapshot`` cannot have produced."""


@dataclass(frozen=True)
class SnapshotState:
    """The state machine's whole state as plain sorted values."""

    applied_index: int
    version: int
    revision: int
    namespaces: tuple[tuple[NamespaceInfo, tuple[KeyValue, ...] | None], ...]
    #: (client_id, seq, result, last_seen): last_seen on ``clock``; all 0 below CLOCK_VERSION
    sessions: tuple[tuple[str, int, Result, int], ...]
    #: leader time (ms) of the last ExpireSessions; 0 below CLOCK_VERSION
    clock: int = 0
    #: (client_id, clock at expiry) of expired sessions, sorted; empty below CLOCK_VERSION
    expired: tuple[tuple[str, int], ...] = ()
    #: (namespace, its service table), sorted: one per strong namespace from
    #: SERVICES_VERSION, none below
    services: tuple[tuple[str, ServiceTableState], ...] = ()
    #: tokens and policies; empty below ACL_VERSION
    acl: AclState = dataclasses.field(default_factory=AclState)


def _format(version: int) -> int:
    """The snapshot format a state at state-machine ``version`` encodes as."""
    if version >= ACL_VERSION:
        return 4
    if version >= SERVICES_VERSION:
        return 3
    return 2 if version >= CLOCK_VERSION else 1


def encode_snapshot(state: SnapshotState) -> bytes:
    """Canonical bytes of ``state`` (its tuples must already be sorted).

    Below ``CLOCK_VERSION`` the clock and every ``last_seen`` must be 0 (format 1);
    below ``SERVICES_VERSION`` there are no service tables.
    """
    namespaces = _Tables(state.namespaces)
    head: list[object] = [state.applied_index, state.version, state.revision]
    if state.version < CLOCK_VERSION:
        if state.clock or state.expired or any(seen for *_, seen in state.sessions):
            raise ValueError("a session clock below state-machine version 2")
        sessions = [[c, seq, encode_result(r)] for c, seq, r, _ in state.sessions]
        return _pack([1, *head, namespaces, sessions])
    sessions = [[c, seq, encode_result(r), seen] for c, seq, r, seen in state.sessions]
    expired = [[client_id, at] for client_id, at in state.expired]
    if state.version < SERVICES_VERSION:
        if state.services:
            raise ValueError("service tables below state-machine version 3")
        return _pack([2, *head, state.clock, namespaces, sessions, expired])
    services = [
        [
            name,
            table.floor,
            table.clock,
            [encode_instance(record) for record in table.instances],
            [[service, index] for service, index in table.indexes],
        ]
        for name, table in state.services
    ]
    if state.version < ACL_VERSION:
        if state.acl != AclState():
            raise ValueError("ACL tokens or policies below state-machine version 4")
        return _pack([3, *head, state.clock, namespaces, sessions, expired, services])
    acl = encode_acl_state(state.acl)
    return _pack([4, *head, state.clock, namespaces, sessions, expired, services, acl])


def decode_snapshot(data: bytes) -> SnapshotState:
    """Parse ``encode_snapshot`` output; raises ``MalformedSnapshot`` otherwise."""
    try:
        return _decode(data)
    except WireError as exc:
        raise MalformedSnapshot(str(exc)) from exc


def snapshot_decodes(data: bytes) -> bool:
    """Whether ``data`` is a snapshot ``decode_snapshot`` accepts (a replica's
    ``ReplicaConfig.snapshot_valid``: an undecodable snapshot is never persisted)."""
    try:
        decode_snapshot(data)
    except MalformedSnapshot:
        return False
    return True


def _decode(data: bytes) -> SnapshotState:
    fields = _unpack_streaming(data)
    if fields is None:
        fields = read_list(unpack(data), "snapshot")
    fmt = read_uint(fields[0], "snapshot format") if fields else None
    if fmt == 1:
        _, applied_index, version, revision, namespaces, sessions = read_list(fields, "snapshot", 6)
        clock: object = 0
        expired: object = []
        services: object = []
        acl: object = None
    elif fmt == 2:
        _, applied_index, version, revision, clock, namespaces, sessions, expired = read_list(
            fields, "snapshot", 8
        )
        services = []
        acl = None
    elif fmt == 3:
        (_, applied_index, version, revision, clock, namespaces, sessions, expired,
         services) = read_list(fields, "snapshot", 9)  # fmt: skip
        acl = None
    elif fmt == 4:
        (_, applied_index, version, revision, clock, namespaces, sessions, expired,
         services, acl) = read_list(fields, "snapshot", 10)  # fmt: skip
    else:
        raise WireError(f"unknown snapshot format {fmt!r}")
    if _format(read_uint(version, "version")) != fmt:
        raise WireError(f"snapshot format {fmt} does not match state-machine version {version}")
    decoded_namespaces = []
    for item in read_list(namespaces, "namespaces"):
        info_obj, kvs_obj = read_list(item, "namespace entry", 2)
        info = decode_namespace(info_obj)
        if info.consistency not in CONSISTENCIES:
            raise WireError(f"namespace {info.name!r}: unknown consistency")
        if list(info.options) != sorted(set(info.options)):
            raise WireError(f"namespace {info.name!r}: options not sorted")
        kvs: tuple[KeyValue, ...] | None = None
        if isinstance(kvs_obj, _DecodedKvs):
            kvs = kvs_obj.kvs
        elif kvs_obj is not None:
            kvs = _decode_kvs(read_list(kvs_obj, "kvs"), info.name)
        if (kvs is not None) != (info.consistency == STRONG):
            raise WireError(f"namespace {info.name!r}: a table iff strong")
        decoded_namespaces.append((info, kvs))
    _strictly_increasing([info.name for info, _ in decoded_namespaces], "namespace names")
    decoded_sessions = []
    for item in read_list(sessions, "sessions"):
        if fmt == 1:
            client_obj, seq_obj, result_obj = read_list(item, "session", 3)
            seen = 0
        else:
            client_obj, seq_obj, result_obj, seen_obj = read_list(item, "session", 4)
            seen = read_uint(seen_obj, "last_seen")
        seq = read_uint(seq_obj, "seq")
        if seq == 0:
            raise WireError("a session with seq 0")
        decoded_sessions.append(
            (read_str(client_obj, "client_id"), seq, decode_result(result_obj), seen)
        )
    _strictly_increasing([session[0] for session in decoded_sessions], "client ids")
    decoded_expired = []
    for item in read_list(expired, "expired"):
        client_obj, at_obj = read_list(item, "expired session", 2)
        decoded_expired.append((read_str(client_obj, "client_id"), read_uint(at_obj, "expired_at")))
    _strictly_increasing([client for client, _ in decoded_expired], "expired client ids")
    decoded_services = tuple(_service_table(item) for item in read_list(services, "services"))
    if fmt >= 3:
        strong = [info.name for info, _ in decoded_namespaces if info.consistency == STRONG]
        if [name for name, _ in decoded_services] != strong:
            raise WireError("service tables are not exactly one per strong namespace, sorted")
    return SnapshotState(
        read_uint(applied_index, "applied_index"),
        read_uint(version, "version"),
        read_uint(revision, "revision"),
        tuple(decoded_namespaces),
        tuple(decoded_sessions),
        read_uint(clock, "clock"),
        tuple(decoded_expired),
        decoded_services,
        AclState() if acl is None else decode_acl_state(acl),
    )


def _service_table(obj: object) -> tuple[str, ServiceTableState]:
    name, floor, clock, instances, indexes = read_list(obj, "service table", 5)
    pairs = []
    for pair in read_list(indexes, "service indexes"):
        service, index = read_list(pair, "service index", 2)
        pairs.append((read_str(service, "service"), read_uint(index, "index")))
    state = ServiceTableState(
        read_uint(floor, "floor"),
        read_uint(clock, "services clock"),
        tuple(decode_instance(item) for item in read_list(instances, "instances")),
        tuple(pairs),
    )
    try:
        check_table_state(state)
    except ValueError as exc:
        raise WireError(f"service table of {name!r:.60}: {exc}") from exc
    return read_str(name, "namespace name"), state


class _Tables:
    """The namespaces field of a snapshot, packed by ``_pack`` as it walks the keys."""

    __slots__ = ("namespaces",)

    def __init__(self, namespaces: tuple[tuple[NamespaceInfo, tuple[KeyValue, ...] | None], ...]):
        self.namespaces = namespaces


#: keys packed between two flushes of ``_pack``'s buffer (~0.7 MB of 128-byte values)
_FLUSH_KEYS = 4096


def _pack(fields: list[object]) -> bytes:
    """``pack(fields)`` with the key tables (``_Tables``) written key by key, byte for
    byte what ``pack`` of ``[[encode_namespace(info), [encode_kv(kv), ...] | None], ...]``
    gives (msgpack's array headers are the same either way), without first building
    one list per key: that transient nested list was the size of the state again, in
    small objects whose arenas the allocator keeps."""
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    chunks: list[bytes] = []
    packer.pack_array_header(len(fields))
    for field in fields:
        if not isinstance(field, _Tables):
            packer.pack(field)
            continue
        packer.pack_array_header(len(field.namespaces))
        for info, kvs in field.namespaces:
            packer.pack_array_header(2)
            packer.pack(encode_namespace(info))
            if kvs is None:
                packer.pack(None)
                continue
            packer.pack_array_header(len(kvs))
            for i, kv in enumerate(kvs, 1):
                packer.pack([kv.key, kv.value, kv.create_revision, kv.mod_revision,
                             kv.version, kv.flags])
                if i % _FLUSH_KEYS == 0:
                    chunks.append(packer.bytes())
                    packer.reset()
    chunks.append(packer.bytes())
    return b"".join(chunks)


def _plain_kv(item: object) -> KeyValue | None:
    """The entry if it is a well-formed ``[key, value, create, mod, version, flags]``
    (``_kv``'s checks, inlined for the common case: a restart decodes every key);
    None for anything else (``_kv`` then names what is wrong)."""
    if type(item) is not list or len(item) != 6:
        return None
    key, value, create, mod, version, flags = item
    if (
        type(key) is bytes
        and type(value) is bytes
        and type(create) is int
        and type(mod) is int
        and type(version) is int
        and type(flags) is int
        and 0 <= create <= MAX_UINT
        and 0 <= mod <= MAX_UINT
        and 0 <= version <= MAX_UINT
        and 0 <= flags <= MAX_UINT
    ):
        return KeyValue(key, value, create, mod, version, flags)
    return None


def _decode_kvs(items: list[object], namespace: str) -> tuple[KeyValue, ...]:
    """``_kv`` of each item, keys strictly increasing: the checks of ``decode_kv``
    inlined for the common, well-formed entry (a restart decodes every key); any
    other entry goes through ``_kv``, which names what is wrong."""
    decoded: list[KeyValue] = []
    previous = b""
    for i, item in enumerate(items):
        kv = _plain_kv(item) or _kv(item)
        if i and not previous < kv.key:
            raise WireError(f"keys of {namespace!r} not strictly increasing")
        previous = kv.key
        decoded.append(kv)
    return tuple(decoded)


class _DecodedKvs:
    """A key table ``_unpack_streaming`` already decoded and checked (well-formed,
    strictly increasing keys): never produced by msgpack, so never ambiguous."""

    __slots__ = ("kvs",)

    def __init__(self, kvs: tuple[KeyValue, ...]) -> None:
        self.kvs = kvs


#: the first byte of a msgpack array (fixarray, array 16, array 32) and of nil
_ARRAY_START = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}
_NIL = 0xC0


def _unpack_streaming(data: bytes) -> list[object] | None:
    """``unpack(data)`` with each key table decoded key by key into a ``_DecodedKvs``
    (a list per key, freed before the next: unpacking 1,000,000 keys whole first
    left a state's worth of freed small lists in the allocator's arenas).

    Only for a well-formed snapshot: at anything else (a key that fails
    ``decode_kv``'s checks, keys out of order, bytes that are not msgpack, a
    format it does not know) it returns None and the caller decodes ``data`` the
    plain way, which names the fault."""
    try:
        unpacker = msgpack.Unpacker(raw=False, use_list=True, strict_map_key=True,
                                    max_buffer_size=max(len(data), 1))
        unpacker.feed(data)
        view = memoryview(data)
        if view[0] not in _ARRAY_START:
            return None
        length = unpacker.read_array_header()
        fmt = unpacker.unpack()
        at = 4 if fmt == 1 else 5  # the namespaces field
        if type(fmt) is not int or fmt not in (1, 2, 3, 4) or length <= at:
            return None
        fields: list[object] = [fmt, *(unpacker.unpack() for _ in range(at - 1))]
        if view[unpacker.tell()] not in _ARRAY_START:
            return None
        namespaces: list[object] = []
        for _ in range(unpacker.read_array_header()):
            if view[unpacker.tell()] not in _ARRAY_START or unpacker.read_array_header() != 2:
                return None
            info = unpacker.unpack()
            if view[unpacker.tell()] == _NIL:
                namespaces.append([info, unpacker.unpack()])
                continue
            if view[unpacker.tell()] not in _ARRAY_START:
                return None
            kvs = _stream_kvs(unpacker, unpacker.read_array_header())
            if kvs is None:
                return None
            namespaces.append([info, _DecodedKvs(kvs)])
        fields.append(namespaces)
        fields += [unpacker.unpack() for _ in range(length - at - 1)]
        if unpacker.tell() != len(data):
            return None
        return fields
    except Exception:  # the unpacker's failure modes are not a closed set
        return None


def _stream_kvs(unpacker: msgpack.Unpacker, count: int) -> tuple[KeyValue, ...] | None:
    """``count`` well-formed, strictly increasing entries, or None (see ``_decode_kvs``)."""
    decoded: list[KeyValue] = []
    previous = b""
    for i in range(count):
        kv = _plain_kv(unpacker.unpack())
        if kv is None or (i and not previous < kv.key):
            return None
        decoded.append(kv)
        previous = kv.key
    return tuple(decoded)


def _kv(obj: object) -> KeyValue:
    kv = decode_kv(obj)
    if kv is None:
        raise WireError("nil in a key table")
    return kv


def _strictly_increasing(items: Sequence[str] | Sequence[bytes], what: str) -> None:
    for i in range(1, len(items)):
        if not items[i - 1] < items[i]:  # type: ignore[operator]  # homogeneous sequence
            raise WireError(f"{what} not strictly increasing")

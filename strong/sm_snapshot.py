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

with each ``kvs`` a list sorted by key. The format follows the version, so a
version-1 state encodes exactly as before (old and new code hash it alike).
Invariants:

- ``encode_snapshot`` emits exactly this canonical form, so equal states give
  equal bytes (the basis of ``state_hash``);
- ``decode_snapshot`` accepts only that form — unsorted or duplicate names,
  keys or clients, a strong namespace without a table, garbage of any kind —
  and raises ``MalformedSnapshot`` (and nothing else) otherwise. Hence
  ``encode_snapshot(decode_snapshot(b)) == b`` whenever decoding succeeds.

CRC32C framing belongs to storage; this is the payload it protects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from strong.canonical import (
    WireError,
    pack,
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
    decode_kv,
    decode_namespace,
    decode_result,
    encode_kv,
    encode_namespace,
    encode_result,
)

__all__ = [
    "SNAPSHOT_FORMAT",
    "MalformedSnapshot",
    "SnapshotState",
    "decode_snapshot",
    "encode_snapshot",
]

SNAPSHOT_FORMAT = 2
#: the state-machine version from which snapshots carry the session clock (format 2)
CLOCK_VERSION = 2


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


def encode_snapshot(state: SnapshotState) -> bytes:
    """Canonical bytes of ``state`` (its tuples must already be sorted).

    Below ``CLOCK_VERSION`` the clock and every ``last_seen`` must be 0 (format 1).
    """
    namespaces = [
        [encode_namespace(info), None if kvs is None else [encode_kv(kv) for kv in kvs]]
        for info, kvs in state.namespaces
    ]
    head: list[object] = [state.applied_index, state.version, state.revision]
    if state.version < CLOCK_VERSION:
        if state.clock or state.expired or any(seen for *_, seen in state.sessions):
            raise ValueError("a session clock below state-machine version 2")
        sessions = [[c, seq, encode_result(r)] for c, seq, r, _ in state.sessions]
        return pack([1, *head, namespaces, sessions])
    sessions = [[c, seq, encode_result(r), seen] for c, seq, r, seen in state.sessions]
    expired = [[client_id, at] for client_id, at in state.expired]
    return pack([2, *head, state.clock, namespaces, sessions, expired])


def decode_snapshot(data: bytes) -> SnapshotState:
    """Parse ``encode_snapshot`` output; raises ``MalformedSnapshot`` otherwise."""
    try:
        return _decode(data)
    except WireError as exc:
        raise MalformedSnapshot(str(exc)) from exc


def _decode(data: bytes) -> SnapshotState:
    fields = read_list(unpack(data), "snapshot")
    fmt = read_uint(fields[0], "snapshot format") if fields else None
    if fmt == 1:
        _, applied_index, version, revision, namespaces, sessions = read_list(fields, "snapshot", 6)
        clock: object = 0
        expired: object = []
    elif fmt == 2:
        _, applied_index, version, revision, clock, namespaces, sessions, expired = read_list(
            fields, "snapshot", 8
        )
    else:
        raise WireError(f"unknown snapshot format {fmt!r}")
    if (read_uint(version, "version") >= CLOCK_VERSION) != (fmt == 2):
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
        if kvs_obj is not None:
            kvs = tuple(_kv(obj) for obj in read_list(kvs_obj, "kvs"))
            _strictly_increasing([kv.key for kv in kvs], f"keys of {info.name!r}")
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
    return SnapshotState(
        read_uint(applied_index, "applied_index"),
        read_uint(version, "version"),
        read_uint(revision, "revision"),
        tuple(decoded_namespaces),
        tuple(decoded_sessions),
        read_uint(clock, "clock"),
        tuple(decoded_expired),
    )


def _kv(obj: object) -> KeyValue:
    kv = decode_kv(obj)
    if kv is None:
        raise WireError("nil in a key table")
    return kv


def _strictly_increasing(items: Sequence[str] | Sequence[bytes], what: str) -> None:
    for i in range(1, len(items)):
        if not items[i - 1] < items[i]:  # type: ignore[operator]  # homogeneous sequence
            raise WireError(f"{what} not strictly increasing")

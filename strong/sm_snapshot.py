"""The state machine's snapshot: one canonical byte string for the whole state.

Layout (a msgpack list, no maps)::

    [SNAPSHOT_FORMAT, applied_index, version, revision,
     [[namespace, kvs | nil], ...]      # sorted by name; kvs nil iff eventual
     [[client_id, seq, result], ...]]   # sorted by client_id

with each ``kvs`` a list sorted by key. Invariants:

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

SNAPSHOT_FORMAT = 1


class MalformedSnapshot(ValueError):
    """Bytes that ``encode_snapshot`` cannot have produced."""


@dataclass(frozen=True)
class SnapshotState:
    """The state machine's whole state as plain sorted values."""

    applied_index: int
    version: int
    revision: int
    namespaces: tuple[tuple[NamespaceInfo, tuple[KeyValue, ...] | None], ...]
    sessions: tuple[tuple[str, int, Result], ...]


def encode_snapshot(state: SnapshotState) -> bytes:
    """Canonical bytes of ``state`` (its tuples must already be sorted)."""
    return pack(
        [
            SNAPSHOT_FORMAT,
            state.applied_index,
            state.version,
            state.revision,
            [
                [encode_namespace(info), None if kvs is None else [encode_kv(kv) for kv in kvs]]
                for info, kvs in state.namespaces
            ],
            [[client_id, seq, encode_result(result)] for client_id, seq, result in state.sessions],
        ]
    )


def decode_snapshot(data: bytes) -> SnapshotState:
    """Parse ``encode_snapshot`` output; raises ``MalformedSnapshot`` otherwise."""
    try:
        return _decode(data)
    except WireError as exc:
        raise MalformedSnapshot(str(exc)) from exc


def _decode(data: bytes) -> SnapshotState:
    fmt, applied_index, version, revision, namespaces, sessions = read_list(
        unpack(data), "snapshot", 6
    )
    if read_uint(fmt, "snapshot format") != SNAPSHOT_FORMAT:
        raise WireError(f"unknown snapshot format {fmt!r}")
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
        client_obj, seq_obj, result_obj = read_list(item, "session", 3)
        seq = read_uint(seq_obj, "seq")
        if seq == 0:
            raise WireError("a session with seq 0")
        decoded_sessions.append((read_str(client_obj, "client_id"), seq, decode_result(result_obj)))
    _strictly_increasing([client for client, _, _ in decoded_sessions], "client ids")
    return SnapshotState(
        read_uint(applied_index, "applied_index"),
        read_uint(version, "version"),
        read_uint(revision, "revision"),
        tuple(decoded_namespaces),
        tuple(decoded_sessions),
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

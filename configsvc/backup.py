"""The backup file: one strong state machine snapshot, self-describing and checksummed.

Layout (``docs/backup.md``)::

    MAGIC                 b"CSVCBAK\\x01" (8 bytes)
    u32 header_length     big-endian
    header                msgpack list [format, cluster_id, node_id, applied_index,
                                        version, taken_at_ms, state_length]
    state                 the state machine's canonical snapshot bytes
                          (``strong.sm_snapshot.encode_snapshot``), state_length bytes
    sha256                32 bytes: SHA-256 of everything above

Invariants:

1. The state is exactly what ``StateMachine.encode`` emits for the state at
   ``applied_index`` (no second encoding of the state machine exists): a
   restore hands it to the strong store as its snapshot unchanged.
2. ``decode_backup`` accepts a file only if the checksum matches, the header
   is well formed, the state decodes (``decode_snapshot``), and the state's own
   applied index and version equal the header's. Anything else raises
   ``BackupError`` with a reason an operator can act on; nothing else is raised.
3. ``encode_backup(b) -> decode_backup`` round-trips every field.

What is not in the file: the contents of eventual namespaces (their registry
entries are strong state and are in it), the Paxos log above the snapshot
(uncommitted or unapplied slots), and any node's promise or accepted values.
"""

from __future__ import annotations

import hashlib
import struct
from collections import Counter
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped, unused-ignore]

from strong.ops import STRONG
from strong.sm_snapshot import MalformedSnapshot, SnapshotState, decode_snapshot

__all__ = [
    "FORMAT",
    "MAGIC",
    "Backup",
    "BackupError",
    "counts",
    "decode_backup",
    "encode_backup",
    "file_digest",
]

MAGIC = b"CSVCBAK\x01"
FORMAT = 1
_LENGTH = struct.Struct(">I")
_DIGEST = 32
#: a header is a few short strings and integers; anything longer is not ours
_MAX_HEADER = 64 * 1024


class BackupError(ValueError):
    """A file that is not a whole, intact backup; ``str()`` says what is wrong."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A decoded backup: where and when it was taken, and the state bytes."""

    cluster_id: str
    #: the node that answered the save (any node: the state is the group's)
    node_id: str
    applied_index: int
    #: the active state-machine version of the state
    version: int
    #: wall-clock time of the save, ms since the epoch
    taken_at_ms: int
    #: ``encode_snapshot`` bytes of the state machine at ``applied_index``
    state: bytes


def encode_backup(backup: Backup) -> bytes:
    """The file's bytes (``MAGIC`` ... ``sha256``)."""
    header = msgpack.packb(
        [FORMAT, backup.cluster_id, backup.node_id, backup.applied_index, backup.version,
         backup.taken_at_ms, len(backup.state)],
        use_bin_type=True,
    )
    body = b"".join((MAGIC, _LENGTH.pack(len(header)), header, backup.state))
    return body + hashlib.sha256(body).digest()


def file_digest(data: bytes) -> str:
    """The hex SHA-256 a backup file ends with (no checks)."""
    return data[-_DIGEST:].hex()


def decode_backup(data: bytes) -> tuple[Backup, SnapshotState]:
    """The backup and its decoded state. Raises ``BackupError`` (rule 2)."""
    if not data.startswith(MAGIC):
        raise BackupError("not a configsvc backup file (wrong magic bytes)")
    if len(data) < len(MAGIC) + _LENGTH.size + _DIGEST:
        raise BackupError(f"truncated: {len(data)} bytes is shorter than any backup")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise BackupError("checksum mismatch: the file is truncated or damaged (SHA-256 "
                          "over its contents differs from the one it ends with)")
    (size,) = _LENGTH.unpack_from(body, len(MAGIC))
    start = len(MAGIC) + _LENGTH.size
    if size > _MAX_HEADER or start + size > len(body):
        raise BackupError(f"header length {size} does not fit the file")
    try:
        header = msgpack.unpackb(body[start:start + size], raw=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise BackupError(f"unreadable header: {exc}") from None
    if not isinstance(header, list) or not header or header[0] != FORMAT:
        fmt = header[0] if isinstance(header, list) and header else header
        raise BackupError(f"unknown backup format {fmt!r:.40}; this binary reads format {FORMAT}")
    if len(header) != 7:
        raise BackupError("malformed header: expected 7 fields")
    _, cluster_id, node_id, index, version, taken_at, state_length = header
    if not (isinstance(cluster_id, str) and isinstance(node_id, str)
            and all(type(v) is int and v >= 0 for v in (index, version, taken_at, state_length))):
        raise BackupError("malformed header: wrong field types")
    state = body[start + size:]
    if len(state) != state_length:
        raise BackupError(f"state is {len(state)} bytes, the header says {state_length}")
    try:
        decoded = decode_snapshot(state)
    except MalformedSnapshot as exc:
        raise BackupError(f"the state does not decode: {exc}") from None
    if (decoded.applied_index, decoded.version) != (index, version):
        raise BackupError(
            f"the header says index {index}, version {version}; the state is at index "
            f"{decoded.applied_index}, version {decoded.version}")
    return Backup(cluster_id, node_id, index, version, taken_at, state), decoded


def counts(state: SnapshotState) -> dict[str, int]:
    """What a backup holds, counted (``configsvc snapshot inspect``)."""
    strong = [kvs for info, kvs in state.namespaces if info.consistency == STRONG]
    services: Counter[tuple[str, str]] = Counter()
    for name, table in state.services:
        for record in table.instances:
            services[(name, record.service)] += 1
    return {
        "namespaces": len(state.namespaces),
        "strong_namespaces": len(strong),
        "eventual_namespaces": len(state.namespaces) - len(strong),
        "keys": sum(len(kvs or ()) for kvs in strong),
        "services": len(services),
        "instances": sum(services.values()),
        "sessions": len(state.sessions),
        "acl_policies": len(state.acl.policies),
        "acl_tokens": len(state.acl.tokens),
    }

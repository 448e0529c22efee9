"""What applying a command returns: frozen dataclasses, and their wire form.

Invariants:

- Results are values: frozen, compared by field, and a pure function of the
  state before the command and the command — so every replica returns the
  same result for the same slot, and a deduplicated retry returns exactly the
  result the first attempt got (the client table stores them; a snapshot
  carries them, hence ``encode_result``/``decode_result``).
- ``revision`` in a result is the store revision after the command (for a
  read: the revision the read observed).
- Failures that are the client's business are results, not exceptions:
  ``ErrorResult(code, message)`` with ``code`` one of ``ErrorCode``'s stable
  strings, and ``CasFailed`` for a failed ``if_mod_revision``. A failed command
  changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.canonical import (
    WireError,
    read_bool,
    read_bytes,
    read_list,
    read_str,
    read_uint,
)

__all__ = [
    "Applied",
    "CasFailed",
    "DeleteResult",
    "ErrorCode",
    "ErrorResult",
    "GetResult",
    "InstanceRecord",
    "InstancesResult",
    "KeyValue",
    "NamespaceDeleted",
    "NamespaceInfo",
    "NamespaceResult",
    "NoopResult",
    "PutResult",
    "RangeResult",
    "Result",
    "ServiceWriteResult",
    "TxnResponse",
    "TxnResult",
    "VersionResult",
    "decode_instance",
    "decode_result",
    "encode_instance",
    "encode_result",
]


class ErrorCode:
    """Stable ``ErrorResult.code`` strings (the HTTP layer maps them to 4xx)."""

    MALFORMED_COMMAND = "malformed_command"
    NAMESPACE_NOT_FOUND = "namespace_not_found"
    WRONG_CONSISTENCY = "wrong_consistency"
    NAMESPACE_EXISTS = "namespace_exists"
    STALE_SEQUENCE = "stale_sequence"
    TXN_OP_FAILED = "txn_op_failed"
    VERSION_DOWNGRADE = "version_downgrade"
    #: a seq > 1 from a client the table does not know: its session expired (or never began)
    SESSION_EXPIRED = "session_expired"
    #: an op the current state-machine version does not apply (changes nothing)
    UNSUPPORTED_IN_VERSION = "unsupported_in_version"
    #: ``UpdateCheck`` of an instance the namespace does not hold
    INSTANCE_NOT_FOUND = "instance_not_found"
    #: ACL ops (``strong.acl``, version >= 4): no such token/policy; a token's
    #: accessor id or secret clashes; an expiration not in the future
    ACL_NOT_FOUND = "acl_not_found"
    ACL_CONFLICT = "acl_conflict"
    ACL_INVALID = "acl_invalid"
    ALL = (
        MALFORMED_COMMAND,
        NAMESPACE_NOT_FOUND,
        WRONG_CONSISTENCY,
        NAMESPACE_EXISTS,
        STALE_SEQUENCE,
        TXN_OP_FAILED,
        VERSION_DOWNGRADE,
        SESSION_EXPIRED,
        UNSUPPORTED_IN_VERSION,
        INSTANCE_NOT_FOUND,
        ACL_NOT_FOUND,
        ACL_CONFLICT,
        ACL_INVALID,
    )


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key of a strong namespace.

    ``version`` counts puts since the key was (re)created (first put: 1);
    ``create_revision`` / ``mod_revision`` are store revisions.
    """

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """A registered namespace; ``options`` sorted by key."""

    name: str
    consistency: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """``deleted_keys`` lists what went, in sorted order; ``prev`` only for ``Delete``."""

    revision: int
    deleted: int
    prev: KeyValue | None
    deleted_keys: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class CasFailed:
    """``if_mod_revision`` did not match; ``current`` is the key as it is."""

    current: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class GetResult:
    kv: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    """``kvs`` in key order; ``more`` = the limit cut further matches off."""

    kvs: tuple[KeyValue, ...]
    revision: int
    more: bool


TxnResponse = PutResult | DeleteResult | GetResult | RangeResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``succeeded`` = the compares held (``success`` ran, else ``failure``)."""

    succeeded: bool
    responses: tuple[TxnResponse, ...]
    revision: int


@dataclass(frozen=True, slots=True)
class NamespaceResult:
    """The namespace exists as ``info`` (``created`` False: it already did)."""

    info: NamespaceInfo
    created: bool
    revision: int


@dataclass(frozen=True, slots=True)
class NamespaceDeleted:
    name: str
    deleted_keys: int
    revision: int


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One service instance of a strong namespace (``strong.services``).

    ``last_heartbeat_ms`` / ``status_since_ms`` are leader wall times carried by
    commands (never a replica's clock); ``create_revision`` / ``mod_revision``
    are store revisions of its registration and of its last visible change.
    """

    service: str
    instance_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    node: str
    check: bytes
    ttl_ms: int
    deregister_after_ms: int
    status: str
    output: str
    last_heartbeat_ms: int
    status_since_ms: int
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class InstancesResult:
    """``instances`` sorted by (service, instance_id).

    ``index`` is the highest revision at which anything the query covers changed
    (registration, status or output change, deregistration, expiry): a blocking
    query "until index > I" wakes exactly on a change.
    """

    instances: tuple[InstanceRecord, ...]
    revision: int
    index: int


@dataclass(frozen=True, slots=True)
class ServiceWriteResult:
    """``changed``: something visible changed (then ``revision`` is its revision)."""

    revision: int
    changed: bool


@dataclass(frozen=True, slots=True)
class VersionResult:
    version: int


@dataclass(frozen=True, slots=True)
class NoopResult:
    pass


@dataclass(frozen=True, slots=True)
class ErrorResult:
    code: str
    message: str


Result = (
    PutResult
    | DeleteResult
    | CasFailed
    | GetResult
    | RangeResult
    | TxnResult
    | NamespaceResult
    | NamespaceDeleted
    | VersionResult
    | NoopResult
    | InstancesResult
    | ServiceWriteResult
    | ErrorResult
)


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of one command of a slot, for the client that sent it.

    A malformed command has ``client_id == ""`` and ``seq == 0``: nobody to tell.
    """

    client_id: str
    seq: int
    result: Result


# --- wire form (snapshots): tagged lists, field order = dataclass field order ---


def encode_kv(kv: KeyValue | None) -> list[object] | None:
    if kv is None:
        return None
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.flags]


def decode_kv(obj: object) -> KeyValue | None:
    if obj is None:
        return None
    key, value, create, mod, version, flags = read_list(obj, "kv", 6)
    return KeyValue(
        read_bytes(key, "key"),
        read_bytes(value, "value"),
        read_uint(create, "create_revision"),
        read_uint(mod, "mod_revision"),
        read_uint(version, "version"),
        read_uint(flags, "flags"),
    )


def _some_kv(obj: object) -> KeyValue:
    kv = decode_kv(obj)
    if kv is None:
        raise WireError("expected a key-value, got nil")
    return kv


def encode_namespace(info: NamespaceInfo) -> list[object]:
    return [info.name, info.consistency, [[k, v] for k, v in info.options]]


def decode_namespace(obj: object) -> NamespaceInfo:
    name, consistency, options = read_list(obj, "namespace", 3)
    pairs = []
    for pair in read_list(options, "options"):
        key, value = read_list(pair, "option", 2)
        pairs.append((read_str(key, "option key"), read_str(value, "option value")))
    return NamespaceInfo(read_str(name, "name"), read_str(consistency, "consistency"), tuple(pairs))


def encode_instance(rec: InstanceRecord) -> list[object]:
    return [
        rec.service, rec.instance_id, rec.address, rec.port, list(rec.tags),
        [[k, v] for k, v in rec.meta], rec.node, rec.check, rec.ttl_ms,
        rec.deregister_after_ms, rec.status, rec.output, rec.last_heartbeat_ms,
        rec.status_since_ms, rec.create_revision, rec.mod_revision,
    ]  # fmt: skip


def decode_instance(obj: object) -> InstanceRecord:
    """Inverse of ``encode_instance`` (shape and types; the snapshot checks limits)."""
    (service, instance_id, address, port, tags, meta, node, check, ttl, dereg, status, output,
     heartbeat, since, create, mod) = read_list(obj, "instance", 16)  # fmt: skip
    pairs = []
    for pair in read_list(meta, "meta"):
        key, value = read_list(pair, "meta pair", 2)
        pairs.append((read_str(key, "meta key"), read_str(value, "meta value")))
    return InstanceRecord(
        read_str(service, "service"),
        read_str(instance_id, "instance_id"),
        read_str(address, "address"),
        read_uint(port, "port"),
        tuple(read_str(tag, "tag") for tag in read_list(tags, "tags")),
        tuple(pairs),
        read_str(node, "node"),
        read_bytes(check, "check"),
        read_uint(ttl, "ttl_ms"),
        read_uint(dereg, "deregister_after_ms"),
        read_str(status, "status"),
        read_str(output, "output"),
        read_uint(heartbeat, "last_heartbeat_ms"),
        read_uint(since, "status_since_ms"),
        read_uint(create, "create_revision"),
        read_uint(mod, "mod_revision"),
    )


def encode_result(result: Result) -> list[object]:
    """The wire list of ``result`` (first item: its tag)."""
    match result:
        case PutResult(revision, prev):
            return ["put", revision, encode_kv(prev)]
        case DeleteResult(revision, deleted, prev, keys):
            return ["del", revision, deleted, encode_kv(prev), list(keys)]
        case CasFailed(current, revision):
            return ["cas", encode_kv(current), revision]
        case GetResult(kv, revision):
            return ["get", encode_kv(kv), revision]
        case RangeResult(kvs, revision, more):
            return ["range", [encode_kv(kv) for kv in kvs], revision, more]
        case TxnResult(succeeded, responses, revision):
            return ["txn", succeeded, [encode_result(r) for r in responses], revision]
        case NamespaceResult(info, created, revision):
            return ["ns+", encode_namespace(info), created, revision]
        case NamespaceDeleted(name, deleted, revision):
            return ["ns-", name, deleted, revision]
        case VersionResult(version):
            return ["ver", version]
        case NoopResult():
            return ["noop"]
        case InstancesResult(instances, revision, index):
            return ["insts", [encode_instance(i) for i in instances], revision, index]
        case ServiceWriteResult(revision, changed):
            return ["svc", revision, changed]
        case ErrorResult(code, message):
            return ["err", code, message]


def decode_result(obj: object) -> Result:
    """Inverse of ``encode_result``; raises ``WireError`` on any mismatch."""
    fields = read_list(obj, "result")
    tag = read_str(fields[0], "result tag") if fields else ""
    n = len(fields) - 1
    match tag, fields[1:]:
        case "put", [revision, prev]:
            return PutResult(read_uint(revision, "revision"), decode_kv(prev))
        case "del", [revision, deleted, prev, keys]:
            return DeleteResult(
                read_uint(revision, "revision"),
                read_uint(deleted, "deleted"),
                decode_kv(prev),
                tuple(read_bytes(k, "key") for k in read_list(keys, "deleted_keys")),
            )
        case "cas", [current, revision]:
            return CasFailed(decode_kv(current), read_uint(revision, "revision"))
        case "get", [kv, revision]:
            return GetResult(decode_kv(kv), read_uint(revision, "revision"))
        case "range", [kvs, revision, more]:
            return RangeResult(
                tuple(_some_kv(kv) for kv in read_list(kvs, "kvs")),
                read_uint(revision, "revision"),
                read_bool(more, "more"),
            )
        case "txn", [succeeded, responses, revision]:
            return TxnResult(
                read_bool(succeeded, "succeeded"),
                tuple(_txn_response(r) for r in read_list(responses, "responses")),
                read_uint(revision, "revision"),
            )
        case "ns+", [info, created, revision]:
            return NamespaceResult(
                decode_namespace(info), read_bool(created, "created"), read_uint(revision, "rev")
            )
        case "ns-", [name, deleted, revision]:
            return NamespaceDeleted(
                read_str(name, "name"), read_uint(deleted, "deleted"), read_uint(revision, "rev")
            )
        case "ver", [version]:
            return VersionResult(read_uint(version, "version"))
        case "noop", []:
            return NoopResult()
        case "insts", [instances, revision, index]:
            return InstancesResult(
                tuple(decode_instance(i) for i in read_list(instances, "instances")),
                read_uint(revision, "revision"),
                read_uint(index, "index"),
            )
        case "svc", [revision, changed]:
            return ServiceWriteResult(read_uint(revision, "revision"), read_bool(changed, "changed"))
        case "err", [code, message]:
            return ErrorResult(read_str(code, "code"), read_str(message, "message"))
        case _:
            raise WireError(f"unknown result {tag!r:.40} with {n} fields")


def _txn_response(obj: object) -> TxnResponse:
    result = decode_result(obj)
    if not isinstance(result, PutResult | DeleteResult | GetResult | RangeResult):
        raise WireError(f"{type(result).__name__} cannot be a txn response")
    return result

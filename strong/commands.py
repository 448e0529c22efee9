"""Commands the strong state machine applies, and their one wire encoding.

A Paxos slot carries ``tuple[bytes, ...]``: opaque command bytes, decoded only
here. Invariants:

- Every op is a small frozen dataclass whose ``__post_init__`` rejects values
  the state machine could not apply the same way everywhere (bad names,
  negative or >64-bit integers, a ``Compare`` whose operand type does not match
  its target). So a constructed op is always encodable, and a decoded op has
  passed the same checks as a constructed one.
- ``encode_command`` is canonical: a command has exactly one encoding (tagged
  lists, no maps; ``CreateNamespace.options`` and ``RegisterInstance.meta``
  are normalised to sorted order),
  so ``encode_command(decode_command(b)) == b`` for every ``b`` it produced.
- ``decode_command`` raises ``MalformedCommand`` — and nothing else — for any
  byte string that is not such an encoding.
- ``Command.seq == 0`` means "no deduplication" (internal commands); client
  commands number from 1 per ``client_id``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from strong.acl import (
    ACL_TAGS,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
    decode_acl_op,
    encode_acl_op,
)
from strong.canonical import (
    MAX_UINT,
    WireError,
    pack,
    read_bytes,
    read_list,
    read_optional_uint,
    read_str,
    read_uint,
    unpack,
)
from strong.ops import (
    CONSISTENCIES,
    EVENTUAL,
    STRONG,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    DeregisterInstance,
    ExpireInstances,
    ExpireSessions,
    Get,
    HashCheck,
    HashReport,
    ListInstances,
    Noop,
    Op,
    Put,
    Range,
    ReadOp,
    RegisterInstance,
    ServiceOp,
    SetVersion,
    Txn,
    TxnOp,
    UpdateCheck,
)

__all__ = [
    "COMMAND_FORMAT",
    "CONSISTENCIES",
    "EVENTUAL",
    "STRONG",
    "Command",
    "Compare",
    "CreateNamespace",
    "Delete",
    "DeleteNamespace",
    "DeletePrefix",
    "DeregisterInstance",
    "ExpireInstances",
    "ExpireSessions",
    "Get",
    "HashCheck",
    "HashReport",
    "ListInstances",
    "MalformedCommand",
    "Noop",
    "Op",
    "Put",
    "Range",
    "ReadOp",
    "RegisterInstance",
    "ServiceOp",
    "SetVersion",
    "Txn",
    "TxnOp",
    "UpdateCheck",
    "decode_command",
    "encode_command",
]

COMMAND_FORMAT = 1
"""First element of every encoded command; a future layout gets a new number."""


class MalformedCommand(ValueError):
    """Bytes that are not a valid encoded ``Command``."""


@dataclass(frozen=True, slots=True)
class Command:
    """One client (or internal) request: ``op`` tagged for idempotent retries.

    The state machine remembers, per ``client_id``, the last ``seq`` applied and
    its result; ``seq == 0`` bypasses that table.
    """

    client_id: str
    seq: int
    op: Op

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, str):
            raise ValueError("client_id must be a str")
        if type(self.seq) is not int or not 0 <= self.seq <= MAX_UINT:
            raise ValueError(f"seq must be an unsigned 64-bit int, got {self.seq!r}")


def encode_command(cmd: Command) -> bytes:
    """The canonical bytes of ``cmd``."""
    return pack([COMMAND_FORMAT, cmd.client_id, cmd.seq, encode_op(cmd.op)])


#: commands this large are decoded afresh each time: a bulk transaction (1,000
#: puts: ~160 KB) would otherwise stay alive in the cache, bytes and decoded ops,
#: long after the log that held it was compacted
UNCACHED_COMMAND_BYTES = 16 << 10


def decode_command(data: bytes) -> Command:
    """Parse bytes produced by ``encode_command``.

    Cached below ``UNCACHED_COMMAND_BYTES``: every replica decodes the same
    chosen bytes, and a ``Command`` is immutable. (A ``MalformedCommand`` is
    raised afresh each time: exceptions are not cached.)

    Raises ``MalformedCommand`` like ``_decode_command``.
    """
    if len(data) < UNCACHED_COMMAND_BYTES:
        return _decode_cached(data)
    return _decode_command(data)


def _decode_command(data: bytes) -> Command:
    """Parse bytes produced by ``encode_command`` (uncached).

    Raises ``MalformedCommand`` for anything else (wrong format number, unknown
    op tag, wrong field types, values an op's constructor rejects, trailing
    bytes, non-msgpack input).
    """
    try:
        fields = read_list(unpack(data), "command", 4)
        if read_uint(fields[0], "command format") != COMMAND_FORMAT:
            raise WireError(f"unknown command format {fields[0]!r}")
        client_id = read_str(fields[1], "client_id")
        seq = read_uint(fields[2], "seq")
        return Command(client_id, seq, decode_op(fields[3]))
    except ValueError as exc:  # WireError, or a constructor's own check
        raise MalformedCommand(str(exc)) from exc


_decode_cached = functools.lru_cache(maxsize=8192)(_decode_command)


# --- op codec: one tagged list per op; field order = dataclass field order ---


def encode_op(op: Op) -> list[object]:
    """The wire list of ``op`` (first item: its tag)."""
    match op:
        case CreateNamespace(name, consistency, options):
            return ["ns+", name, consistency, [[k, v] for k, v in options]]
        case DeleteNamespace(name):
            return ["ns-", name]
        case Txn(compares, success, failure):
            return [
                "txn",
                [[c.ns, c.key, c.target, c.op, c.operand] for c in compares],
                [encode_op(o) for o in success],
                [encode_op(o) for o in failure],
            ]
        case SetVersion(version):
            return ["ver", version]
        case ExpireSessions(now_ms, ttl_ms):
            return ["exp", now_ms, ttl_ms]
        case Noop():
            return ["noop"]
        case HashCheck(check_id):
            return ["hchk", check_id]
        case HashReport(check_id, node, digest):
            return ["hrep", check_id, node, digest]
        case SetAclPolicy() | DeleteAclPolicy() | SetAclToken() | DeleteAclToken():
            return encode_acl_op(op)
        case (
            RegisterInstance()
            | UpdateCheck()
            | DeregisterInstance()
            | ExpireInstances()
            | ListInstances()
        ):
            return _encode_service_op(op)
        case _:
            return _encode_txn_op(op)


def _encode_service_op(op: ServiceOp) -> list[object]:
    match op:
        case RegisterInstance():
            return [
                "inst+", op.ns, op.service, op.instance_id, op.address, op.port,
                list(op.tags), [[k, v] for k, v in op.meta], op.node, op.check, op.ttl_ms,
                op.deregister_after_ms, op.status, op.output, op.now_ms,
            ]  # fmt: skip
        case UpdateCheck(ns, service, instance_id, status, output, now_ms):
            return ["check", ns, service, instance_id, status, output, now_ms]
        case DeregisterInstance(ns, service, instance_id):
            return ["inst-", ns, service, instance_id]
        case ExpireInstances(now_ms):
            return ["instx", now_ms]
        case ListInstances(ns, service):
            return ["insts", ns, service]


def _encode_txn_op(op: TxnOp) -> list[object]:
    match op:
        case Put(ns, key, value, flags, if_mod_revision):
            return ["put", ns, key, value, flags, if_mod_revision]
        case Delete(ns, key, if_mod_revision):
            return ["del", ns, key, if_mod_revision]
        case DeletePrefix(ns, prefix):
            return ["delp", ns, prefix]
        case Get(ns, key):
            return ["get", ns, key]
        case Range(ns, prefix, limit):
            return ["range", ns, prefix, limit]


def decode_op(obj: object) -> Op:
    """Inverse of ``encode_op``; raises ``WireError`` or ``ValueError``."""
    fields = read_list(obj, "op")
    if not fields:
        raise WireError("op: empty list")
    tag = read_str(fields[0], "op tag")
    args = fields[1:]
    match tag:
        case "ns+":
            name, consistency, options = _arity(tag, args, 3)
            pairs = tuple(_option(item) for item in read_list(options, "options"))
            return CreateNamespace(
                read_str(name, "name"), read_str(consistency, "consistency"), pairs
            )
        case "ns-":
            (name,) = _arity(tag, args, 1)
            return DeleteNamespace(read_str(name, "name"))
        case "txn":
            compares, success, failure = _arity(tag, args, 3)
            return Txn(
                tuple(_compare(c) for c in read_list(compares, "compares")),
                tuple(_decode_txn_op(o) for o in read_list(success, "success")),
                tuple(_decode_txn_op(o) for o in read_list(failure, "failure")),
            )
        case "ver":
            (version,) = _arity(tag, args, 1)
            return SetVersion(read_uint(version, "version"))
        case "exp":
            now_ms, ttl_ms = _arity(tag, args, 2)
            return ExpireSessions(read_uint(now_ms, "now_ms"), read_uint(ttl_ms, "ttl_ms"))
        case "noop":
            _arity(tag, args, 0)
            return Noop()
        case "hchk":
            (check_id,) = _arity(tag, args, 1)
            return HashCheck(read_uint(check_id, "check_id"))
        case "hrep":
            check_id, node, digest = _arity(tag, args, 3)
            return HashReport(read_uint(check_id, "check_id"), read_str(node, "node"),
                              read_bytes(digest, "digest"))
        case "inst+" | "check" | "inst-" | "instx" | "insts":
            return _decode_service_op(tag, args)
        case _ if tag in ACL_TAGS:
            return decode_acl_op(tag, args)
        case _:
            return _decode_txn_op(obj)


def _decode_service_op(tag: str, args: list[object]) -> ServiceOp:
    match tag:
        case "inst+":
            (ns, service, instance_id, address, port, tags, meta, node, check, ttl, dereg,
             status, output, now_ms) = _arity(tag, args, 14)  # fmt: skip
            return RegisterInstance(
                read_str(ns, "ns"),
                read_str(service, "service"),
                read_str(instance_id, "instance_id"),
                read_str(address, "address"),
                read_uint(port, "port"),
                tuple(read_str(t, "tag") for t in read_list(tags, "tags")),
                tuple(_option(item) for item in read_list(meta, "meta")),
                read_str(node, "node"),
                read_bytes(check, "check"),
                read_uint(ttl, "ttl_ms"),
                read_uint(dereg, "deregister_after_ms"),
                read_str(status, "status"),
                read_str(output, "output"),
                read_uint(now_ms, "now_ms"),
            )
        case "check":
            ns, service, instance_id, status, output, now_ms = _arity(tag, args, 6)
            return UpdateCheck(
                read_str(ns, "ns"),
                read_str(service, "service"),
                read_str(instance_id, "instance_id"),
                read_str(status, "status"),
                read_str(output, "output"),
                read_uint(now_ms, "now_ms"),
            )
        case "inst-":
            ns, service, instance_id = _arity(tag, args, 3)
            return DeregisterInstance(
                read_str(ns, "ns"), read_str(service, "service"), read_str(instance_id, "id")
            )
        case "instx":
            (now_ms,) = _arity(tag, args, 1)
            return ExpireInstances(read_uint(now_ms, "now_ms"))
        case _:
            ns, service = _arity(tag, args, 2)
            return ListInstances(read_str(ns, "ns"), read_str(service, "service"))


def _decode_txn_op(obj: object) -> TxnOp:
    fields = read_list(obj, "txn op")
    if not fields:
        raise WireError("txn op: empty list")
    tag = read_str(fields[0], "op tag")
    args = fields[1:]
    match tag:
        case "put":
            ns, key, value, flags, if_mod = _arity(tag, args, 5)
            return Put(
                read_str(ns, "ns"),
                read_bytes(key, "key"),
                read_bytes(value, "value"),
                read_uint(flags, "flags"),
                read_optional_uint(if_mod, "if_mod_revision"),
            )
        case "del":
            ns, key, if_mod = _arity(tag, args, 3)
            return Delete(
                read_str(ns, "ns"),
                read_bytes(key, "key"),
                read_optional_uint(if_mod, "if_mod_revision"),
            )
        case "delp":
            ns, prefix = _arity(tag, args, 2)
            return DeletePrefix(read_str(ns, "ns"), read_bytes(prefix, "prefix"))
        case "get":
            ns, key = _arity(tag, args, 2)
            return Get(read_str(ns, "ns"), read_bytes(key, "key"))
        case "range":
            ns, prefix, limit = _arity(tag, args, 3)
            return Range(
                read_str(ns, "ns"), read_bytes(prefix, "prefix"), read_uint(limit, "limit")
            )
        case _:
            raise WireError(f"unknown op tag {tag!r:.40}")


def _arity(tag: str, args: list[object], n: int) -> list[object]:
    if len(args) != n:
        raise WireError(f"op {tag!r}: expected {n} fields, got {len(args)}")
    return args


def _option(obj: object) -> tuple[str, str]:
    key, value = read_list(obj, "option", 2)
    return read_str(key, "option key"), read_str(value, "option value")


def _compare(obj: object) -> Compare:
    ns, key, target, op, operand = read_list(obj, "compare", 5)
    value: bytes | int = (
        read_bytes(operand, "operand") if type(operand) is bytes else read_uint(operand, "operand")
    )
    return Compare(
        read_str(ns, "ns"),
        read_bytes(key, "key"),
        read_str(target, "target"),
        read_str(op, "op"),
        value,
    )

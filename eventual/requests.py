"""The client surface of a replica: requests, their results, and replies.

Every client call carries a ``request_id`` and optionally a session
``token``; its answer arrives in ``Ready.replies`` as ``Reply(request_id,
result)``. Every successful result carries the new session token (the
replica's version vector when it answered); every read result carries the
``index`` of its namespace when it answered (``eventual.change_index``: the
per-node change index of the namespace's last visible change). Results:

- ``ReadResult``: a key's siblings (all of them under ``merge: mvr``; the one
  last writer under ``merge: lww``) and the read ``context`` to hand back with
  a write or delete that should supersede exactly what this read saw;
- ``ListResult``: the keys under a prefix, with their siblings;
- ``WriteResult``: the dot of the new event (put, delete, register, heartbeat,
  deregister); sent only after its record is durable. A put or delete
  retried under an idempotency key this replica already holds (as a sibling
  or in its event log) is answered with the first attempt's dot
  (``replayed``) and writes nothing;
- ``InstancesResult``: the instances of a service with local health;
- ``TxnResult`` / ``TxnFailed``: a transaction (``Txn``, ``eventual.txn``)
  applied whole, or refused whole by the operation that did not hold;
- ``CausallyBehind``: this replica did not cover the token (or context)
  within ``token_wait``; nothing happened, try another replica;
- ``NotFound``: heartbeat or deregister of an instance this replica does
  not hold (re-register); ``BadRequest``: malformed input, nothing happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventual.codec import MAX_IDEMPOTENCY_KEY
from eventual.dots import Dot
from eventual.instances import MAX_OUTPUT, PASSING, STATUSES, InstanceInfo, InstanceView, Status

__all__ = [
    "BadRequest",
    "CausallyBehind",
    "Delete",
    "Deregister",
    "Get",
    "Heartbeat",
    "Instances",
    "InstancesResult",
    "List",
    "ListResult",
    "NotFound",
    "Put",
    "ReadResult",
    "Register",
    "Reply",
    "Request",
    "Result",
    "SiblingView",
    "Txn",
    "TxnCheck",
    "TxnFailed",
    "TxnOp",
    "TxnRead",
    "TxnReadPrefix",
    "TxnRemovePrefix",
    "TxnResult",
    "TxnWrite",
    "WriteResult",
    "invalid",
]


@dataclass(frozen=True, slots=True)
class Get:
    namespace: str
    key: str


@dataclass(frozen=True, slots=True)
class Put:
    namespace: str
    key: str
    value: bytes
    #: read context (``eventual.token``) of what this write supersedes; None: blind write
    context: str | None = None
    #: the client's key for this logical write: its retries, on any node, are the same
    #: write (a replica that has it answers its dot; siblings with it show as one)
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    namespace: str
    key: str
    #: read context of what to remove; None: everything this replica has seen of the key
    context: str | None = None
    #: as ``Put.idempotency_key``: a retry of a delete this replica has logged does nothing
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class List:
    namespace: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Register:
    namespace: str
    service: str
    instance_id: str
    info: InstanceInfo


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A TTL heartbeat or a check result: the instance is alive and reports
    ``status`` (``output``: the check's text); it supersedes its current record."""

    namespace: str
    service: str
    instance_id: str
    status: Status = PASSING
    output: str = ""


@dataclass(frozen=True, slots=True)
class Deregister:
    namespace: str
    service: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class Instances:
    namespace: str
    service: str




@dataclass(frozen=True, slots=True)
class TxnCheck:
    """The key must exist (``version`` None), be absent (0), or be at ``version``
    (its version stamp, ``eventual.txn.version_stamp``)."""

    key: str
    version: int | None = None


@dataclass(frozen=True, slots=True)
class TxnRead:
    """The key's siblings (none if absent); never fails."""

    key: str


@dataclass(frozen=True, slots=True)
class TxnReadPrefix:
    prefix: str


@dataclass(frozen=True, slots=True)
class TxnWrite:
    """Put ``value`` (None: delete), superseding every sibling this replica has
    seen of the key; with ``if_version``, only if the key is at that version
    (0: only if absent), else the whole transaction fails."""

    key: str
    value: bytes | None
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class TxnRemovePrefix:
    prefix: str


TxnOp = TxnCheck | TxnRead | TxnReadPrefix | TxnWrite | TxnRemovePrefix


@dataclass(frozen=True, slots=True)
class Txn:
    """Operations on keys of one namespace, executed in order, all or nothing,
    visible atomically everywhere (``eventual.txn``)."""

    namespace: str
    ops: tuple[TxnOp, ...]
    #: as ``Put.idempotency_key``: a retry this replica has applied writes nothing
    idempotency_key: str | None = None


Request = Get | Put | Delete | List | Register | Heartbeat | Deregister | Instances | Txn


@dataclass(frozen=True, slots=True)
class SiblingView:
    value: bytes
    dot: Dot
    hlc: int


@dataclass(frozen=True, slots=True)
class ReadResult:
    siblings: tuple[SiblingView, ...]
    context: str
    token: str
    #: the namespace's change index as of this answer (``eventual.change_index``)
    index: int = 0


@dataclass(frozen=True, slots=True)
class ListResult:
    #: (key, siblings), sorted by key
    items: tuple[tuple[str, tuple[SiblingView, ...]], ...]
    token: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    dot: Dot
    token: str
    #: True: a retry under an idempotency key this replica already had; ``dot`` is
    #: that of the first attempt, and nothing new was written
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class InstancesResult:
    instances: tuple[InstanceView, ...]
    token: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class TxnResult:
    #: per operation, the keys it saw with their siblings: a check or read, the
    #: state at that point of the transaction; a write, the key's new sibling
    #: (none for a delete); a prefix removal, nothing
    results: tuple[tuple[tuple[str, tuple[SiblingView, ...]], ...], ...]
    token: str
    index: int = 0
    #: a retry under an idempotency key this replica already applied: nothing
    #: was written and ``results`` is empty
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class TxnFailed:
    """Nothing was written: operation ``op`` (a check or a conditional write) did not hold."""

    op: int
    reason: str
    token: str


@dataclass(frozen=True, slots=True)
class CausallyBehind:
    #: the part of the token this replica had not seen (``eventual.token`` format)
    missing: str


@dataclass(frozen=True, slots=True)
class NotFound:
    what: str
    token: str


@dataclass(frozen=True, slots=True)
class BadRequest:
    reason: str


Result = (
    ReadResult | ListResult | WriteResult | InstancesResult | TxnResult | TxnFailed
    | CausallyBehind | NotFound | BadRequest
)


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: int
    result: Result


MAX_NAME = 1024
MAX_VALUE = 512 * 1024
#: a transaction's operations (Consul's limit), and the bytes of all its values
MAX_TXN_OPS = 128
MAX_TXN_BYTES = 4 * 1024 * 1024


def invalid(request: Request) -> str | None:
    """Why ``request`` must be refused (``BadRequest``), or None. Names obey the
    wire format's rules, so a request can never create an event peers reject."""
    names: list[tuple[str, object]] = [("namespace", request.namespace)]
    match request:
        case Get(_, key) | Put(_, key) | Delete(_, key):
            names.append(("key", key))
        case List(_, prefix):
            names.append(("prefix", prefix))
        case (Register(_, service, iid) | Heartbeat(_, service, iid)
              | Deregister(_, service, iid)):
            names += [("service", service), ("instance id", iid)]
        case Instances(_, service):
            names.append(("service", service))
        case Txn(_, ops):
            if not isinstance(ops, tuple) or not 0 < len(ops) <= MAX_TXN_OPS:
                return f"a transaction holds 1-{MAX_TXN_OPS} operations"
            total = 0
            for i, op in enumerate(ops):
                match op:
                    case TxnCheck(k, version) | TxnWrite(k, _, version):
                        names.append((f"operation {i} key", k))
                        if version is not None and (isinstance(version, bool) or not isinstance(
                                version, int) or version < 0):
                            return f"operation {i}: a version is a non-negative integer"
                    case TxnRead(k):
                        names.append((f"operation {i} key", k))
                    case TxnReadPrefix(k) | TxnRemovePrefix(k):
                        names.append((f"operation {i} prefix", k))
                if isinstance(op, TxnWrite) and op.value is not None:
                    if not isinstance(op.value, bytes) or len(op.value) > MAX_VALUE:
                        return f"operation {i}: value must be bytes of at most {MAX_VALUE} bytes"
                    total += len(op.value)
            if total > MAX_TXN_BYTES:
                return f"a transaction's values are at most {MAX_TXN_BYTES} bytes in all"
    for what, name in names:
        if not isinstance(name, str) or len(name) > MAX_NAME:
            return f"{what} must be a string of at most {MAX_NAME} characters"
        if what in ("namespace", "service", "instance id") and not name:
            return f"{what} must not be empty"
        if what == "service" and "/" in name:
            return "service names must not contain '/'"
    if isinstance(request, Put) and (not isinstance(request.value, bytes)
                                     or len(request.value) > MAX_VALUE):
        return f"value must be bytes of at most {MAX_VALUE} bytes"
    if isinstance(request, Put | Delete | Txn) and request.idempotency_key is not None:
        idem = request.idempotency_key
        if not isinstance(idem, str) or not 0 < len(idem) <= MAX_IDEMPOTENCY_KEY:
            return f"idempotency key must be 1-{MAX_IDEMPOTENCY_KEY} characters"
    if isinstance(request, Heartbeat):
        if request.status not in STATUSES:
            return f"status must be one of {', '.join(STATUSES)}"
        if not isinstance(request.output, str) or len(request.output) > MAX_OUTPUT:
            return f"output must be a string of at most {MAX_OUTPUT} characters"
    return None

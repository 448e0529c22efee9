"""The operations of the strong state machine: small frozen dataclasses.

Re-exported by ``strong.commands``; import them from there. Invariants every
constructor enforces (so a decoded op is as valid as a constructed one):

- names (namespaces, option keys) are non-empty ``str``; keys are non-empty
  ``bytes``; prefixes are ``bytes`` (empty = every key);
- integers are exact ``int`` (not ``bool``) in ``[0, 2**64)``;
- ``CreateNamespace.options`` is stored sorted by key with no duplicate keys,
  so two requests meaning the same namespace compare (and encode) equal;
- a ``Compare`` on ``"value"`` has a ``bytes`` operand, on any other target an
  ``int`` operand;
- a ``Txn`` branch holds only ``TxnOp``s (no namespace ops, no nested ``Txn``);
- service-instance ops (``RegisterInstance`` and friends) hold bounded values:
  see "Service instances" below.

``Put.if_mod_revision`` / ``Delete.if_mod_revision``: ``None`` = unconditional;
``n`` = only if the key's current ``mod_revision`` is ``n``, where an absent key
counts as ``0`` — so ``Put(..., if_mod_revision=0)`` is "create only".

Service instances (state-machine version >= 3; ``strong.services``). The limits
keep one registration small enough for a slot and a snapshot, and match what
Consul enforces where it has a limit (meta, check output):

- ``service``, ``instance_id``: non-empty ``str`` of at most ``MAX_NAME_BYTES``
  UTF-8 bytes; ``address`` and ``node`` the same but may be empty;
- ``port`` in ``[0, 65535]``;
- ``tags``: at most ``MAX_TAGS`` strings of at most ``MAX_TAG_BYTES`` bytes, kept
  in the given order (duplicates too: they are the client's);
- ``meta``: at most ``MAX_META`` pairs, keys non-empty and at most
  ``MAX_META_KEY_BYTES``, values at most ``MAX_META_VALUE_BYTES``; stored sorted
  by key, no duplicate keys (like ``CreateNamespace.options``);
- ``check``: opaque ``bytes`` (a JSON HTTP-check spec read by configsvc only),
  at most ``MAX_CHECK_BYTES``; ``output`` at most ``MAX_OUTPUT_BYTES``;
- ``status`` one of ``STATUSES``; ``ttl_ms`` 0 = no TTL check,
  ``deregister_after_ms`` 0 = never; ``now_ms`` is the proposing leader's wall
  time (ms since the epoch) — time enters the state machine only as such data.
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.acl import AclOp
from strong.canonical import check_text as _check_text
from strong.canonical import check_uint as _check_uint

__all__ = [
    "COMPARE_OPS",
    "COMPARE_TARGETS",
    "CONSISTENCIES",
    "CRITICAL",
    "EVENTUAL",
    "MAX_CHECK_BYTES",
    "MAX_META",
    "MAX_META_KEY_BYTES",
    "MAX_META_VALUE_BYTES",
    "MAX_NAME_BYTES",
    "MAX_OUTPUT_BYTES",
    "MAX_TAGS",
    "MAX_TAG_BYTES",
    "PASSING",
    "STATUSES",
    "STRONG",
    "WARNING",
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
    "check_instance_fields",
]

STRONG = "strong"
EVENTUAL = "eventual"
CONSISTENCIES = (STRONG, EVENTUAL)
COMPARE_TARGETS = ("value", "mod_revision", "create_revision", "version")
COMPARE_OPS = ("==", "!=", "<", ">")
PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
STATUSES = (PASSING, WARNING, CRITICAL)

MAX_NAME_BYTES = 256
MAX_TAGS = 64
MAX_TAG_BYTES = 256
MAX_META = 64
MAX_META_KEY_BYTES = 128
MAX_META_VALUE_BYTES = 512
MAX_CHECK_BYTES = 4096
MAX_OUTPUT_BYTES = 4096
MAX_PORT = 65535


def _check_name(value: object, what: str) -> None:
    if type(value) is not str or not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r:.60}")


def _check_key(value: object, what: str = "key") -> None:
    if type(value) is not bytes or not value:
        raise ValueError(f"{what} must be non-empty bytes, got {value!r:.60}")


def _check_bytes(value: object, what: str) -> None:
    if type(value) is not bytes:
        raise ValueError(f"{what} must be bytes, got {type(value).__name__}")



def _check_status(value: object) -> None:
    if type(value) is not str or value not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {value!r:.60}")


def _sorted_meta(meta: object) -> tuple[tuple[str, str], ...]:
    """``meta`` checked and sorted by key (``RegisterInstance`` stores it so)."""
    if not isinstance(meta, tuple):
        raise ValueError("meta must be a tuple of (key, value) pairs")
    if len(meta) > MAX_META:
        raise ValueError(f"meta is limited to {MAX_META} pairs, got {len(meta)}")
    for pair in meta:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"meta item {pair!r:.60} is not a (key, value) pair")
        _check_text(pair[0], "meta key", MAX_META_KEY_BYTES, empty=False)
        _check_text(pair[1], f"meta value of {pair[0]!r}", MAX_META_VALUE_BYTES)
    ordered: tuple[tuple[str, str], ...] = tuple(sorted(meta))
    if len({key for key, _ in ordered}) != len(ordered):
        raise ValueError("duplicate meta key")
    return ordered


def _check_instance_key(service: object, instance_id: object) -> None:
    _check_text(service, "service", MAX_NAME_BYTES, empty=False)
    _check_text(instance_id, "instance_id", MAX_NAME_BYTES, empty=False)


def check_instance_fields(
    service: object,
    instance_id: object,
    address: object,
    port: object,
    tags: object,
    meta: object,
    node: object,
    check: object,
    ttl_ms: object,
    deregister_after_ms: object,
    status: object,
    output: object,
) -> None:
    """Raise ``ValueError`` unless these are a valid registration (``meta`` sorted).

    Shared by ``RegisterInstance`` and the snapshot decoder, so a restored
    instance obeys exactly the limits a registered one does.
    """
    _check_instance_key(service, instance_id)
    _check_text(address, "address", MAX_NAME_BYTES)
    if type(port) is not int or not 0 <= port <= MAX_PORT:
        raise ValueError(f"port must be an int in [0, {MAX_PORT}], got {port!r:.60}")
    if not isinstance(tags, tuple):
        raise ValueError("tags must be a tuple of str")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"tags are limited to {MAX_TAGS}, got {len(tags)}")
    for tag in tags:
        _check_text(tag, "tag", MAX_TAG_BYTES)
    if _sorted_meta(meta) != meta:
        raise ValueError("meta must be sorted by key")
    _check_text(node, "node", MAX_NAME_BYTES)
    if type(check) is not bytes or len(check) > MAX_CHECK_BYTES:
        raise ValueError(f"check must be bytes, at most {MAX_CHECK_BYTES} of them")
    _check_uint(ttl_ms, "ttl_ms")
    _check_uint(deregister_after_ms, "deregister_after_ms")
    _check_status(status)
    _check_text(output, "output", MAX_OUTPUT_BYTES)


@dataclass(frozen=True)
class CreateNamespace:
    """Register a namespace; ``options`` are opaque string pairs (e.g. merge=lww)."""

    name: str
    consistency: str
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name, "namespace name")
        if self.consistency not in CONSISTENCIES:
            raise ValueError(
                f"consistency must be one of {CONSISTENCIES}, got {self.consistency!r}"
            )
        if not isinstance(self.options, tuple):
            raise ValueError("options must be a tuple of (key, value) pairs")
        for pair in self.options:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError(f"option {pair!r:.60} is not a (key, value) pair")
            _check_name(pair[0], "option key")
            if type(pair[1]) is not str:
                raise ValueError(f"option {pair[0]!r} value must be a str")
        ordered = tuple(sorted(self.options))
        if len({key for key, _ in ordered}) != len(ordered):
            raise ValueError("duplicate option key")
        object.__setattr__(self, "options", ordered)


@dataclass(frozen=True)
class DeleteNamespace:
    """Remove a namespace and, if strong, every key in it."""

    name: str

    def __post_init__(self) -> None:
        _check_name(self.name, "namespace name")


@dataclass(frozen=True)
class Put:
    """Set ``key`` to ``value``; conditional on ``if_mod_revision`` when given."""

    ns: str
    key: bytes
    value: bytes
    flags: int = 0
    if_mod_revision: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_key(self.key)
        _check_bytes(self.value, "value")
        _check_uint(self.flags, "flags")
        if self.if_mod_revision is not None:
            _check_uint(self.if_mod_revision, "if_mod_revision")


@dataclass(frozen=True)
class Delete:
    """Remove ``key``; conditional on ``if_mod_revision`` when given."""

    ns: str
    key: bytes
    if_mod_revision: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_key(self.key)
        if self.if_mod_revision is not None:
            _check_uint(self.if_mod_revision, "if_mod_revision")


@dataclass(frozen=True)
class DeletePrefix:
    """Remove every key starting with ``prefix`` (in sorted key order)."""

    ns: str
    prefix: bytes

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_bytes(self.prefix, "prefix")


@dataclass(frozen=True)
class Get:
    """Read one key."""

    ns: str
    key: bytes

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_key(self.key)


@dataclass(frozen=True)
class Range:
    """Read keys starting with ``prefix`` in key order; ``limit == 0`` = no limit."""

    ns: str
    prefix: bytes
    limit: int = 0

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_bytes(self.prefix, "prefix")
        _check_uint(self.limit, "limit")


@dataclass(frozen=True)
class Compare:
    """``<key's target> <op> operand``; an absent key has value ``b""`` and 0s."""

    ns: str
    key: bytes
    target: str
    op: str
    operand: bytes | int

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_key(self.key)
        if self.target not in COMPARE_TARGETS:
            raise ValueError(f"compare target must be one of {COMPARE_TARGETS}")
        if self.op not in COMPARE_OPS:
            raise ValueError(f"compare op must be one of {COMPARE_OPS}")
        if self.target == "value":
            _check_bytes(self.operand, "operand of a value compare")
        else:
            _check_uint(self.operand, f"operand of a {self.target} compare")


TxnOp = Put | Delete | DeletePrefix | Get | Range
_TXN_OP_TYPES = (Put, Delete, DeletePrefix, Get, Range)


@dataclass(frozen=True)
class Txn:
    """If every compare holds, apply ``success``, else ``failure`` — all or nothing."""

    compares: tuple[Compare, ...]
    success: tuple[TxnOp, ...] = ()
    failure: tuple[TxnOp, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.compares, tuple) or not all(
            isinstance(c, Compare) for c in self.compares
        ):
            raise ValueError("compares must be a tuple of Compare")
        for branch in (self.success, self.failure):
            if not isinstance(branch, tuple) or not all(
                isinstance(op, _TXN_OP_TYPES) for op in branch
            ):
                raise ValueError(
                    "a txn branch must be a tuple of Put/Delete/DeletePrefix/Get/Range"
                )


@dataclass(frozen=True)
class SetVersion:
    """Switch the state machine to ``version`` (an upgrade gate through the log)."""

    version: int

    def __post_init__(self) -> None:
        _check_uint(self.version, "version")


@dataclass(frozen=True)
class ExpireSessions:
    """Drop client sessions idle for more than ``ttl_ms`` as of ``now_ms``.

    Proposed by the leader, with its wall-clock time (ms since the epoch) as
    data: every replica expires the same sessions from these numbers, never
    from its own clock. Applies only under state-machine version >= 2.
    """

    now_ms: int
    ttl_ms: int

    def __post_init__(self) -> None:
        _check_uint(self.now_ms, "now_ms")
        _check_uint(self.ttl_ms, "ttl_ms")
        if self.now_ms == 0 or self.ttl_ms == 0:
            raise ValueError("now_ms and ttl_ms must be positive")


@dataclass(frozen=True)
class RegisterInstance:
    """Upsert one instance of ``service`` in strong namespace ``ns`` (version >= 3).

    Heard at ``now_ms`` (leader wall time): that is its heartbeat time. ``node``
    is the node the instance registered with (it runs the HTTP check ``check``
    describes). Limits: the module docstring.
    """

    ns: str
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
    now_ms: int

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        object.__setattr__(self, "meta", _sorted_meta(self.meta))
        check_instance_fields(
            self.service, self.instance_id, self.address, self.port, self.tags, self.meta,
            self.node, self.check, self.ttl_ms, self.deregister_after_ms, self.status,
            self.output,
        )  # fmt: skip
        _check_uint(self.now_ms, "now_ms")


@dataclass(frozen=True)
class UpdateCheck:
    """A TTL heartbeat or check result: set ``status``/``output``, heard at ``now_ms``."""

    ns: str
    service: str
    instance_id: str
    status: str
    output: str
    now_ms: int

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_instance_key(self.service, self.instance_id)
        _check_status(self.status)
        _check_text(self.output, "output", MAX_OUTPUT_BYTES)
        _check_uint(self.now_ms, "now_ms")


@dataclass(frozen=True)
class DeregisterInstance:
    """Remove one instance (absent: changes nothing)."""

    ns: str
    service: str
    instance_id: str

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_instance_key(self.service, self.instance_id)


@dataclass(frozen=True)
class ExpireInstances:
    """Apply TTL expiry and deregister-after to every strong namespace as of ``now_ms``.

    Proposed by the leader with its wall time (``strong.services`` rule 4).
    """

    now_ms: int

    def __post_init__(self) -> None:
        _check_uint(self.now_ms, "now_ms")
        if self.now_ms == 0:
            raise ValueError("now_ms must be positive")


@dataclass(frozen=True)
class ListInstances:
    """Read the instances of ``service`` in ``ns`` (``""`` = every service)."""

    ns: str
    service: str = ""

    def __post_init__(self) -> None:
        _check_name(self.ns, "namespace")
        _check_text(self.service, "service", MAX_NAME_BYTES)


@dataclass(frozen=True)
class Noop:
    """Does nothing; still goes through dedup like any command."""


@dataclass(frozen=True)
class HashCheck:
    """Every replica records its state hash at the end of this command's slot
    (``strong.hash_check``); changes nothing in the state."""

    check_id: int

    def __post_init__(self) -> None:
        _check_uint(self.check_id, "check_id")


@dataclass(frozen=True)
class HashReport:
    """``node``'s state hash for check ``check_id`` (``strong.hash_check``); changes
    nothing in the state."""

    check_id: int
    node: str
    digest: bytes

    def __post_init__(self) -> None:
        _check_uint(self.check_id, "check_id")
        _check_text(self.node, "node", MAX_NAME_BYTES, empty=False)
        if type(self.digest) is not bytes or len(self.digest) != 32:
            raise ValueError("digest must be 32 bytes (SHA-256)")


ReadOp = Get | Range | ListInstances
"""What ``StateMachine.read`` (and so a linearizable or stale read) serves."""
ServiceOp = RegisterInstance | UpdateCheck | DeregisterInstance | ExpireInstances | ListInstances

Op = (
    CreateNamespace
    | DeleteNamespace
    | Put
    | Delete
    | DeletePrefix
    | Txn
    | Get
    | Range
    | SetVersion
    | ExpireSessions
    | RegisterInstance
    | UpdateCheck
    | DeregisterInstance
    | ExpireInstances
    | ListInstances
    | Noop
    | AclOp
    | HashCheck
    | HashReport
)

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
- a ``Txn`` branch holds only ``TxnOp``s (no namespace ops, no nested ``Txn``).

``Put.if_mod_revision`` / ``Delete.if_mod_revision``: ``None`` = unconditional;
``n`` = only if the key's current ``mod_revision`` is ``n``, where an absent key
counts as ``0`` — so ``Put(..., if_mod_revision=0)`` is "create only".
"""

from __future__ import annotations

from dataclasses import dataclass

from strong.canonical import MAX_UINT

__all__ = [
    "COMPARE_OPS",
    "COMPARE_TARGETS",
    "CONSISTENCIES",
    "EVENTUAL",
    "STRONG",
    "Compare",
    "CreateNamespace",
    "Delete",
    "DeleteNamespace",
    "DeletePrefix",
    "ExpireSessions",
    "Get",
    "Noop",
    "Op",
    "Put",
    "Range",
    "ReadOp",
    "SetVersion",
    "Txn",
    "TxnOp",
]

STRONG = "strong"
EVENTUAL = "eventual"
CONSISTENCIES = (STRONG, EVENTUAL)
COMPARE_TARGETS = ("value", "mod_revision", "create_revision", "version")
COMPARE_OPS = ("==", "!=", "<", ">")


def _check_uint(value: object, what: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise ValueError(f"{what} must be an int in [0, 2**64), got {value!r:.60}")


def _check_name(value: object, what: str) -> None:
    if type(value) is not str or not value:
        raise ValueError(f"{what} must be a non-empty str, got {value!r:.60}")


def _check_key(value: object, what: str = "key") -> None:
    if type(value) is not bytes or not value:
        raise ValueError(f"{what} must be non-empty bytes, got {value!r:.60}")


def _check_bytes(value: object, what: str) -> None:
    if type(value) is not bytes:
        raise ValueError(f"{what} must be bytes, got {type(value).__name__}")


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
ReadOp = Get | Range
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
class Noop:
    """Does nothing; still goes through dedup like any command."""


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
    | Noop
)

"""Canonical msgpack for the state machine's commands, results and snapshots.

Rules this module obeys, and every caller relies on:

1. One value has one encoding. Callers hand ``pack`` only lists/tuples, exact
   ``int``, ``str``, ``bytes``, ``bool`` and ``None`` — never a dict, whose byte
   order would follow insertion order — and anything keyed is emitted as a
   list sorted by key. Two replicas with equal state therefore produce equal
   bytes, which is what ``StateMachine.state_hash`` compares.
2. ``unpack`` accepts exactly one complete msgpack object and turns every
   failure of the unpacker into ``WireError``; the ``read_*`` helpers turn every
   shape or type mismatch into ``WireError`` too. Garbage therefore surfaces as
   one exception type that callers rename (``MalformedCommand``,
   ``MalformedSnapshot``); nothing else escapes.
3. Integers on the wire are unsigned 64-bit: ``0 <= n < 2**64``. ``bool`` is
   not accepted where an ``int`` is expected (msgpack keeps them apart; so do we).
"""

from __future__ import annotations

import msgpack  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "MAX_UINT",
    "WireError",
    "check_text",
    "check_uint",
    "pack",
    "read_bool",
    "read_bytes",
    "read_list",
    "read_optional_uint",
    "read_str",
    "read_uint",
    "unpack",
]

MAX_UINT = 2**64 - 1


class WireError(ValueError):
    """Bytes that are not the canonical encoding of the expected shape."""


def check_uint(value: object, what: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an exact ``int`` in ``[0, 2**64)``."""
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise ValueError(f"{what} must be an int in [0, 2**64), got {value!r:.60}")


def check_text(value: object, what: str, limit: int, *, empty: bool = True) -> None:
    """Raise ``ValueError`` unless ``value`` is a ``str`` of at most ``limit`` UTF-8
    bytes (non-empty unless ``empty``): text every replica encodes alike."""
    if type(value) is not str or (not empty and not value):
        kind = "a str" if empty else "a non-empty str"
        raise ValueError(f"{what} must be {kind}, got {value!r:.60}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text") from None
    if size > limit:
        raise ValueError(f"{what} is limited to {limit} bytes of UTF-8, got {size}")


def pack(obj: object) -> bytes:
    """Encode ``obj`` (lists, tuples, int, str, bytes, bool, None only).

    Raises ``TypeError`` for any other type — a programming error, not bad input.
    """
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes) -> object:
    """Decode exactly one msgpack object; raises ``WireError`` on anything else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"expected bytes, got {type(data).__name__}")
    try:
        obj: object = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise WireError(f"not a msgpack value: {exc!r}") from exc
    return obj


def read_list(obj: object, what: str, length: int | None = None) -> list[object]:
    """``obj`` as a list (of exactly ``length`` items when given)."""
    if not isinstance(obj, list):
        raise WireError(f"{what}: expected a list, got {type(obj).__name__}")
    if length is not None and len(obj) != length:
        raise WireError(f"{what}: expected {length} items, got {len(obj)}")
    return obj


def read_uint(obj: object, what: str) -> int:
    """``obj`` as an unsigned 64-bit int (``bool`` rejected)."""
    if type(obj) is not int or not 0 <= obj <= MAX_UINT:
        raise WireError(f"{what}: expected an unsigned 64-bit int, got {obj!r:.60}")
    return obj


def read_optional_uint(obj: object, what: str) -> int | None:
    """``obj`` as ``None`` or an unsigned 64-bit int."""
    return None if obj is None else read_uint(obj, what)


def read_str(obj: object, what: str) -> str:
    """``obj`` as a ``str`` (msgpack raw strings decode as UTF-8 or fail)."""
    if type(obj) is not str:
        raise WireError(f"{what}: expected a string, got {type(obj).__name__}")
    return obj


def read_bytes(obj: object, what: str) -> bytes:
    """``obj`` as ``bytes`` (msgpack bin)."""
    if type(obj) is not bytes:
        raise WireError(f"{what}: expected bytes, got {type(obj).__name__}")
    return obj


def read_bool(obj: object, what: str) -> bool:
    """``obj`` as a ``bool``."""
    if type(obj) is not bool:
        raise WireError(f"{what}: expected a bool, got {type(obj).__name__}")
    return obj

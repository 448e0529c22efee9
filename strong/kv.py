"""The key table of one strong namespace: a sorted map ``bytes -> KeyValue``.

Invariants:

- ``_keys`` is strictly increasing and holds exactly the keys of ``_items``;
  every walk over keys (``scan``, ``items``) goes through ``_keys``, so the
  order is the bytes order and never the dict's insertion order — a table
  rebuilt from a snapshot iterates exactly like the original.
- The table stores what it is given; revisions and versions are the state
  machine's business.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from strong.ops import Compare
from strong.results import KeyValue

__all__ = ["KVTable", "compare_holds"]


class KVTable:
    """Sorted key-value table (see the module invariants)."""

    def __init__(self) -> None:
        self._items: dict[bytes, KeyValue] = {}
        self._keys: list[bytes] = []

    @classmethod
    def from_sorted(cls, kvs: tuple[KeyValue, ...] | list[KeyValue]) -> KVTable:
        """A table of ``kvs``, whose keys the caller guarantees strictly increasing
        (a decoded snapshot checked them): built in one pass, no insort per key."""
        table = cls()
        table._keys = [kv.key for kv in kvs]
        table._items = {kv.key: kv for kv in kvs}
        return table

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: bytes) -> KeyValue | None:
        return self._items.get(key)

    def set(self, kv: KeyValue) -> None:
        """Insert or replace ``kv.key``."""
        if kv.key not in self._items:
            insort(self._keys, kv.key)
        self._items[kv.key] = kv

    def remove(self, key: bytes) -> KeyValue | None:
        """Remove ``key``; returns what was there."""
        kv = self._items.pop(key, None)
        if kv is not None:
            del self._keys[bisect_left(self._keys, key)]
        return kv

    def scan(self, prefix: bytes, limit: int = 0) -> tuple[list[KeyValue], bool]:
        """Keys starting with ``prefix`` in order, at most ``limit`` (0 = all).

        Returns ``(kvs, more)``: ``more`` is True when the limit cut matches off.
        """
        found: list[KeyValue] = []
        i = bisect_left(self._keys, prefix)
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            if limit and len(found) == limit:
                return found, True
            found.append(self._items[self._keys[i]])
            i += 1
        return found, False

    def items(self) -> Iterator[KeyValue]:
        """Every entry in key order."""
        for key in self._keys:
            yield self._items[key]


def compare_holds(kv: KeyValue | None, compare: Compare) -> bool:
    """Whether ``compare`` holds for ``kv`` (an absent key: ``b""`` and zeros)."""
    operand = compare.operand
    # Compare's constructor ties the operand type to the target.
    if isinstance(operand, bytes):
        value = kv.value if kv is not None else b""
        sign = (value > operand) - (value < operand)
    else:
        actual = 0
        if kv is not None:
            match compare.target:
                case "mod_revision":
                    actual = kv.mod_revision
                case "create_revision":
                    actual = kv.create_revision
                case _:
                    actual = kv.version
        sign = (actual > operand) - (actual < operand)
    match compare.op:
        case "==":
            return sign == 0
        case "!=":
            return sign != 0
        case "<":
            return sign < 0
        case _:
            return sign > 0

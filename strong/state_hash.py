"""The state machine's state hash: SHA-256 over its canonical snapshot bytes.

Rules this module obeys:

1. One function, ``state_hash(sm) -> bytes`` (32 bytes), used by everything
   that compares replicas (the determinism guard, cross-replica checks).
   ``StateMachine.state_hash()`` is its hex form.
2. It hashes ``sm.snapshot()``, whose encoding is canonical
   (``strong.sm_snapshot``: equal states give equal bytes, sorted lists, no
   maps), so two replicas at the same ``applied_index`` with equal state have
   equal hashes, in any process and under any ``PYTHONHASHSEED``.
3. The hash covers exactly what a snapshot covers (``applied_index``, version,
   revision, namespaces, keys, sessions, service tables) and nothing volatile
   (``applied_bytes``, caches).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = ["Snapshottable", "state_hash"]


class Snapshottable(Protocol):
    def snapshot(self) -> bytes:
        """The canonical bytes of the whole state."""


def state_hash(sm: Snapshottable) -> bytes:
    """SHA-256 (32 bytes) of ``sm.snapshot()``; raises what ``snapshot`` raises."""
    return hashlib.sha256(sm.snapshot()).digest()

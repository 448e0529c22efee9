"""The per-node change index: a counter that never goes backwards on one node.

Blocking queries (Consul's ``X-Consul-Index``, the native API's watches) need
a number that grows whenever what a query shows may have changed. The eventual
store has no global order, so the index is per node: ``value`` grows by one
per *visible* change this replica applies — a local write, a remote event, a
full-state merge (one per changed key), a local expiry, an instance going
silent (critical) or heard again — and ``of(ns)`` is the value of the last
change in namespace ``ns``. A change that shows nothing new (a heartbeat that
only moves the heartbeat time, a removal of something absent) is not counted.

Rules (what "never backwards, across restarts too" rests on):

1. Reservation. The index is never shown above a *durable reservation*: when
   a change takes ``value`` past ``limit``, ``bump`` returns an
   ``IndexRecord(limit')`` with ``limit' = value + block`` that the replica
   persists in the same Ready. Replay (``eventual.storage.recover``) keeps
   the highest reservation; a snapshot carries it (compaction drops earlier
   records). So one record per ``block`` changes, not one per change.
2. Restart. A replica resumes with ``value = base =`` the recovered
   reservation, and every namespace's index at ``base`` (``of`` answers
   ``base`` for a namespace with no change since the restart). Everything
   shown before the restart was at most the durable reservation, hence at
   most ``base``: a restart may wake blocking queries once, never moves an
   index back. A new node (no records) starts at 0.
3. Publication. Between a change and the fsync of its reservation the
   in-memory value may exceed the durable one; a crash then would restart
   lower. So the driver shows ``min(value, durable limit)``
   (``EventualDriver.change_index``), and read results carry the index as of
   the answer, which is delivered only after its Ready is synced.
4. Identity. A node whose disk is lost comes back with a new replica identity
   and starts at 0: it is a new node, for the index as for dots. Clients that
   see an index go backwards reset (as Consul documents for its own index).

Readers must take the index no later than the content it describes (read the
index, then the content; or use a result's ``index``): an index newer than
its content could hide the change in between from a blocking client.
"""

from __future__ import annotations

from eventual.records import IndexRecord

__all__ = ["ChangeIndex"]


class ChangeIndex:
    def __init__(self, base: int, block: int) -> None:
        if block < 1:
            raise ValueError("the reservation block must be positive")
        #: the index every namespace had at the start of this life (rule 2)
        self.base = base
        self.value = base
        #: the highest reservation emitted (durable once its Ready is synced)
        self.limit = base
        self.block = block
        self._namespaces: dict[str, int] = {}

    def bump(self, namespace: str) -> IndexRecord | None:
        """Count one visible change in ``namespace``; the reservation to persist, if any."""
        self.value += 1
        self._namespaces[namespace] = self.value
        if self.value <= self.limit:
            return None
        self.limit = self.value + self.block
        return IndexRecord(self.limit)

    def of(self, namespace: str) -> int:
        """The index of the last change in ``namespace`` (``base`` if none since the start)."""
        return self._namespaces.get(namespace, self.base)

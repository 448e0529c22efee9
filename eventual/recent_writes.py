"""Keyed writes a replica applied recently: the memory behind idempotent retries.

A retry of a write (same idempotency key, same key) that this replica
already applied must do nothing (``eventual.serve``, idempotent writes,
rule 1). The write may no longer be visible — superseded by a later write,
or a delete that removed nothing new — and its event may have left the log
(collected once causally stable, often before a client retries). So every
applied event that carries an idempotency key (local, remote, or a sibling
brought by a full-state merge) is remembered here for ``horizon`` local
seconds, at most ``limit`` of them (the oldest go first).

The memory is local and not durable: a restarted replica still finds the
write among the siblings and in its log; beyond those, a retry later than the
horizon is a new write. Clients retry within seconds; the horizon is minutes.
"""

from __future__ import annotations

from collections import OrderedDict

from eventual.dots import Dot, Key

__all__ = ["RecentWrites"]


class RecentWrites:
    def __init__(self, horizon: float, limit: int) -> None:
        self.horizon = horizon
        self.limit = limit
        self._seen: OrderedDict[tuple[Key, str], tuple[Dot, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def note(self, key: Key, idem: str, dot: Dot, now: float) -> None:
        """Remember an applied write; the first attempt stays the one remembered."""
        if (key, idem) not in self._seen:
            self._seen[(key, idem)] = (dot, now)
            if len(self._seen) > self.limit:
                self._seen.popitem(last=False)

    def find(self, key: Key, idem: str) -> Dot | None:
        found = self._seen.get((key, idem))
        return None if found is None else found[0]

    def expire(self, now: float) -> None:
        while self._seen:
            _, (_, at) = next(iter(self._seen.items()))
            if now - at <= self.horizon:
                return
            self._seen.popitem(last=False)

"""Causal delivery: remote events wait here until their causal past is applied.

An event is *deliverable* at a replica with version vector ``vv`` when it is
the next event of its origin (``vv[origin] == counter - 1``) and its ``deps``
are covered (``deps <= vv``). Applying only deliverable events keeps the
replica's state causally closed: a client never sees an update without
everything it depends on, and the causal context stays a compact version
vector.

A *group* (the events of one transaction, ``Event.group_end``) is
delivered whole: its first event is deliverable only once every member is
buffered, and then the members are applied one after another with nothing
between them, so no reader sees part of a transaction (the members'
causal past is the first one's plus the members before them). ``ungrouped``
is the planted bug that applies members one by one as they arrive.

The buffer is bounded (``limit``): beyond it new events are dropped, and
events waiting longer than a horizon are dropped too (``expire``: e.g. the
last events of a wiped identity whose predecessors nobody kept). Both are
safe: anti-entropy offers any event again that some replica can deliver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from eventual.messages import Event

__all__ = ["CausalBuffer", "deliverable", "starts_group"]


def deliverable(e: Event, vv: Mapping[str, int], *, ignore_deps: bool = False) -> bool:
    """``ignore_deps`` is the planted bug: only per-origin order is respected.
    (For the first event of a group this is necessary, not sufficient: its
    members must be at hand too, see ``CausalBuffer.drain``.)"""
    origin, n = e.dot
    if vv.get(origin, 0) != n - 1:
        return False
    return ignore_deps or all(vv.get(a, 0) >= c for a, c in e.deps)


def starts_group(e: Event) -> bool:
    """Whether ``e`` is followed by more members of its group."""
    return e.group_end > e.dot[1]


class CausalBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: dict[str, dict[int, Event]] = {}
        self._added: dict[tuple[str, int], float] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, e: Event, now: float) -> bool:
        """Buffer ``e``; False if the buffer is full or already holds it."""
        origin, n = e.dot
        run = self._pending.setdefault(origin, {})
        if n in run or self._size >= self.limit:
            return False
        run[n] = e
        self._added[e.dot] = now
        self._size += 1
        return True

    def _remove(self, origin: str, n: int) -> Event:
        e = self._pending[origin].pop(n)
        self._added.pop(e.dot, None)
        self._size -= 1
        return e

    def expire(self, now: float, age: float) -> int:
        """Drop events buffered for longer than ``age``; returns how many."""
        old = [dot for dot, t in self._added.items() if now - t > age]
        for origin, n in old:
            self._remove(origin, n)
            if not self._pending[origin]:
                del self._pending[origin]
        return len(old)

    def drain(
        self, vv: Mapping[str, int], apply: Callable[[Event], None], *, ignore_deps: bool = False,
        ungrouped: bool = False,
    ) -> int:
        """Apply every buffered event that is (or becomes) deliverable, in causal
        order, a group only whole; ``apply`` must advance ``vv``. Drops events
        ``vv`` already covers."""
        applied = 0
        progress = True
        while progress and self._size:
            progress = False
            for origin in list(self._pending):
                run = self._pending[origin]
                have = vv.get(origin, 0)
                for n in [n for n in run if n <= have]:
                    self._remove(origin, n)
                while (e := run.get(vv.get(origin, 0) + 1)) is not None and deliverable(
                    e, vv, ignore_deps=ignore_deps
                ):
                    n = e.dot[1]
                    last = n if ungrouped or not starts_group(e) else e.group_end
                    if any(m not in run for m in range(n + 1, last + 1)):
                        break  # a member is still missing: the group waits whole
                    for m in range(n, last + 1):
                        apply(self._remove(origin, m))
                        applied += 1
                    progress = True
                if not run:
                    del self._pending[origin]
        return applied

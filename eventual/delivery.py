"""Causal delivery: remote events wait here until their causal past is applied.

An event is *deliverable* at a replica with version vector ``vv`` when it is
the next event of its origin (``vv[origin] == counter - 1``) and its ``deps``
are covered (``deps <= vv``). Applying only deliverable events keeps the
replica's state causally closed: a client never sees an update without
everything it depends on, and the causal context stays a compact version
vector.

The buffer is bounded (``limit``): beyond it new events are dropped, which
is safe — anti-entropy will offer them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from eventual.messages import Event

__all__ = ["CausalBuffer", "deliverable"]


def deliverable(e: Event, vv: Mapping[str, int], *, ignore_deps: bool = False) -> bool:
    """``ignore_deps`` is the planted bug: only per-origin order is respected."""
    origin, n = e.dot
    if vv.get(origin, 0) != n - 1:
        return False
    return ignore_deps or all(vv.get(a, 0) >= c for a, c in e.deps)


class CausalBuffer:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: dict[str, dict[int, Event]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, e: Event) -> bool:
        """Buffer ``e``; False if the buffer is full or already holds it."""
        origin, n = e.dot
        run = self._pending.setdefault(origin, {})
        if n in run or self._size >= self.limit:
            return False
        run[n] = e
        self._size += 1
        return True

    def drain(
        self, vv: Mapping[str, int], apply: Callable[[Event], None], *, ignore_deps: bool = False
    ) -> int:
        """Apply every buffered event that is (or becomes) deliverable, in causal
        order; ``apply`` must advance ``vv``. Drops events ``vv`` already covers."""
        applied = 0
        progress = True
        while progress and self._size:
            progress = False
            for origin in list(self._pending):
                run = self._pending[origin]
                have = vv.get(origin, 0)
                for n in [n for n in run if n <= have]:
                    del run[n]
                    self._size -= 1
                while (e := run.get(vv.get(origin, 0) + 1)) is not None and deliverable(
                    e, vv, ignore_deps=ignore_deps
                ):
                    del run[e.dot[1]]
                    self._size -= 1
                    apply(e)
                    applied += 1
                    progress = True
                if not run:
                    del self._pending[origin]
        return applied

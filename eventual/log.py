"""The event log: applied events kept for anti-entropy until causally stable.

For each origin the log holds a contiguous run of that origin's events,
counters ``floor[origin] + 1 .. vv[origin]``; ``floor[origin]`` is the highest
counter the log can no longer serve. The floor rises in two ways:

- ``prune(stable)``: garbage collection. ``stable`` must be the causally
  stable vector (every member not away beyond the horizon has these events);
  then no such member ever needs what was dropped. Deletions are events
  too, so this is where tombstones are collected, never earlier.
- ``absorb``: a full-state merge brought events this replica never saw one by
  one. It adopts the ones the sender's log still held (a full state carries
  it) and the floor jumps past the rest.

Invariant this keeps (and the simulation checks end to end): an event that
some member lacks, and that member is counted by a replica holding the
event, is in that replica's log. So a member within the horizon of anyone
who has what it lacks is always served by deltas; a member nobody counts
is brought back by full state.

``missing(peer_vv)`` returns, Scuttlebutt-style, what a peer lacks in the
order this replica applied it (a linearization of causal order, hence also
per-origin order), skipping origins the peer cannot be served from here,
within a byte and count cap.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping

from eventual.dots import VV, Key
from eventual.messages import Event

__all__ = ["EventLog", "event_size"]


def event_size(e: Event) -> int:
    """An upper bound on an event's msgpack encoding in bytes (each string or
    binary with a 5-byte header, each integer 9 bytes, each list 5)."""
    text = len(e.dot[0].encode()) + sum(len(p.encode()) for p in e.key)
    pairs = sum(len(a.encode()) + 15 for a, _ in e.deps) + sum(
        len(a.encode()) + 15 for a, _ in e.covers)
    value = len(e.value) + 5 if e.value is not None else 1
    idem = len(e.idem.encode()) + 5 if e.idem is not None else 0
    return 60 + text + pairs + value + idem


class EventLog:
    def __init__(self, events: Iterable[Event] = (), floor: Mapping[str, int] | None = None) -> None:
        self.floor: VV = dict(floor or {})
        #: origin -> [(apply sequence number, event)], counters contiguous above the floor
        self._runs: dict[str, list[tuple[int, Event]]] = {}
        self._seq = 0
        for e in events:
            self.append(e)

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs.values())

    def append(self, e: Event) -> None:
        origin, n = e.dot
        run = self._runs.setdefault(origin, [])
        expected = self.floor.get(origin, 0) + len(run) + 1
        if n != expected:
            # Not contiguous (only after an absorbed full state): restart the run here.
            run.clear()
            self.floor[origin] = n - 1
        self._seq += 1
        run.append((self._seq, e))

    def events(self) -> list[Event]:
        """Every logged event in apply order."""
        merged = heapq.merge(*self._runs.values())
        return [e for _, e in merged]

    def find(self, key: Key, idem: str) -> Event | None:
        """A logged event on ``key`` carrying idempotency key ``idem`` (a scan)."""
        for run in self._runs.values():
            for _, e in run:
                if e.idem == idem and e.key == key:
                    return e
        return None

    def top(self, origin: str) -> int:
        return self.floor.get(origin, 0) + len(self._runs.get(origin, ()))

    def can_serve(self, peer_vv: Mapping[str, int]) -> bool:
        """True iff every event this log knows of beyond ``peer_vv`` can still be sent."""
        return all(
            peer_vv.get(o, 0) >= f for o, f in self.floor.items() if self.top(o) > peer_vv.get(o, 0)
        )

    def missing(self, peer_vv: Mapping[str, int], max_bytes: int, max_events: int) -> list[Event]:
        """What ``peer_vv`` lacks, in apply order, capped. Origins whose next needed
        event is below the floor are skipped (this replica cannot serve them)."""
        iters: list[Iterator[tuple[int, Event]]] = []
        for origin, run in self._runs.items():
            have = peer_vv.get(origin, 0)
            base = self.floor.get(origin, 0)
            if have < base or have >= base + len(run):
                continue
            iters.append(iter(run[have - base :]))
        out: list[Event] = []
        budget = max_bytes
        for _, e in heapq.merge(*iters):
            size = event_size(e)
            if out and (size > budget or len(out) >= max_events):
                break
            out.append(e)
            budget -= size
        return out

    def prune(self, stable: Mapping[str, int]) -> int:
        """Drop every event at or below ``stable``; returns how many were dropped."""
        dropped = 0
        for origin, run in self._runs.items():
            base = self.floor.get(origin, 0)
            cut = min(stable.get(origin, 0) - base, len(run))
            if cut > 0:
                del run[:cut]
                self.floor[origin] = base + cut
                dropped += cut
        return dropped

    def absorb(self, before: Mapping[str, int], after: Mapping[str, int],
               offered: Iterable[Event] = ()) -> None:
        """A state merge advanced the version vector from ``before`` to ``after``.
        For each origin that advanced, keep the longest contiguous run ending at
        ``after[origin]`` that this log and ``offered`` (the sender's log, sent
        with its full state) hold together; the floor rises below that run.
        Carrying the sender's log keeps every not-yet-stable event servable
        by every replica that holds it, whichever way it arrived."""
        # sorted, never a set's order: sequence numbers decide what ``missing`` and a
        # full state's log offer first, and a replay must not depend on the hash seed
        advanced = sorted(o for o, n in after.items() if n > before.get(o, 0))
        if not advanced:
            return
        pool: dict[str, dict[int, Event]] = {o: {} for o in advanced}
        for o in advanced:
            for _, e in self._runs.pop(o, []):
                pool[o][e.dot[1]] = e
        extra = [e for e in offered if e.dot[0] in advanced and e.dot[1] <= after[e.dot[0]]]
        for e in extra:
            pool[e.dot[0]].setdefault(e.dot[1], e)
        for o in advanced:
            low = after[o]
            while low in pool[o]:
                low -= 1
            self.floor[o] = low
            self._runs[o] = []
        # Fresh sequence numbers, origin by origin: ``missing`` may then offer these
        # out of causal order across origins, which a receiver buffers and drains.
        for o in advanced:
            for n in range(self.floor[o] + 1, after[o] + 1):
                self._seq += 1
                self._runs[o].append((self._seq, pool[o][n]))

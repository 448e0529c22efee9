"""The simulated world shared by every simulation: time, clocks, network, faults.

Determinism: everything random comes from one ``random.Random(seed)``; events
are ordered by (time, sequence number), so the same seed replays the same run.

- ``World.now`` is real (simulated) time in seconds. Each node sees its own
  clock, running at a rate within ``1 ± max_drift`` of real time.
- The network delivers a message after a random delay (so messages reorder),
  may drop or duplicate it, and never delivers across a cut link. Links are
  directed; a partition is a set of cut links.
- Crashes are the business of each simulation (which state is lost differs);
  the world only refuses to deliver to a node marked down.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from math import log
from typing import Any


@dataclass(frozen=True)
class NetworkFaults:
    """Per-message fault probabilities and the delay distribution (seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay_min: float = 0.0005
    delay_mean: float = 0.002
    #: probability that a message takes a long detour (reordering behind later ones)
    slow: float = 0.0
    slow_delay: float = 0.05

    @staticmethod
    def none() -> NetworkFaults:
        return NetworkFaults()


@dataclass
class Clock:
    """A node's local clock: ``offset + rate * real``."""

    rate: float
    offset: float

    def local(self, real: float) -> float:
        return self.offset + self.rate * real

    def real_after(self, real_now: float, local_delay: float) -> float:
        """The real time at which ``local_delay`` local seconds will have passed."""
        return real_now + local_delay / self.rate


class World:
    def __init__(self, seed: int, nodes: Iterable[str], max_drift: float = 0.0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes = list(nodes)
        self.clocks = {
            n: Clock(
                rate=1 + self.rng.uniform(-max_drift, max_drift),
                offset=self.rng.uniform(0, 1000),
            )
            for n in self.nodes
        }
        self.faults = NetworkFaults.none()
        self.cut: set[tuple[str, str]] = set()
        #: extra delay on a directed link (congestion, bufferbloat)
        self.slow_links: dict[tuple[str, str], float] = {}
        self.down: set[str] = set()
        #: one-shot drops: each returns True to drop a message (and is then removed)
        self.drop_once: list[Callable[[str, str, Any], bool]] = []
        #: standing drops: each returns True to drop a message (until ``heal``)
        self.drop_if: list[Callable[[str, str, Any], bool]] = []
        #: (time, sequence, function, arguments): the sequence breaks ties deterministically
        self._queue: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._handlers: dict[str, Callable[[str, Any], None]] = {}
        self.messages_sent = 0
        self.messages_dropped = 0

    # -------------------------------------------------------------- scheduling

    def at(self, time: float, action: Callable[..., None], *args: Any) -> None:
        """Call ``action(*args)`` at ``time`` (never in the past)."""
        self._seq += 1
        now = self.now
        heapq.heappush(self._queue, (time if time > now else now, self._seq, action, args))

    def after(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        """Call ``action(*args)`` after ``delay`` simulated seconds."""
        self._seq += 1
        now = self.now
        time = now + delay
        heapq.heappush(self._queue, (time if time > now else now, self._seq, action, args))

    def run_until(self, until: float, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to time ``until``; return True if ``stop()`` became true first."""
        queue = self._queue
        pop = heapq.heappop
        while queue and queue[0][0] <= until:
            self.now, _, action, args = pop(queue)
            action(*args)
            if stop is not None and stop():
                return True
        self.now = max(self.now, until)
        return stop is not None and stop()

    def local_time(self, node: str) -> float:
        clock = self.clocks[node]
        return clock.offset + clock.rate * self.now

    # -------------------------------------------------------------- network

    def register(self, endpoint: str, handler: Callable[[str, Any], None]) -> None:
        """``handler(src, message)`` is called on delivery to ``endpoint``."""
        self._handlers[endpoint] = handler

    def send(self, src: str, dst: str, message: Any) -> None:
        # The hot path of every simulation: the draws are exactly those of
        # ``rng.expovariate`` and ``rng.uniform``, inlined.
        self.messages_sent += 1
        f, rng = self.faults, self.rng
        if (
            (self.cut and (src, dst) in self.cut)
            or src in self.down
            or (f.drop and rng.random() < f.drop)
            or (self.drop_once and self._dropped_once(src, dst, message))
            or (self.drop_if and any(f(src, dst, message) for f in self.drop_if))
        ):
            self.messages_dropped += 1
            return
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        lambd = 1 / max(f.delay_mean, 1e-9)
        queue, now = self._queue, self.now
        for _ in range(copies):
            delay = f.delay_min + -log(1.0 - rng.random()) / lambd
            if f.slow and rng.random() < f.slow:
                delay += f.slow_delay * rng.random()
            if self.slow_links:
                delay += self.slow_links.get((src, dst), 0.0)
            self._seq += 1
            heapq.heappush(queue, (now + delay, self._seq, self._deliver, (src, dst, message)))

    def _dropped_once(self, src: str, dst: str, message: Any) -> bool:
        for i, matches in enumerate(self.drop_once):
            if matches(src, dst, message):
                del self.drop_once[i]
                return True
        return False

    def _deliver(self, src: str, dst: str, message: Any) -> None:
        # A link cut while the message was in flight loses it too.
        if dst in self.down or (self.cut and (src, dst) in self.cut):
            self.messages_dropped += 1
            return
        handler = self._handlers.get(dst)
        if handler is not None:
            handler(src, message)

    # -------------------------------------------------------------- partitions

    def heal(self) -> None:
        self.cut.clear()
        self.slow_links.clear()
        self.drop_once.clear()
        self.drop_if.clear()

    def split(self, groups: list[list[str]], others: Iterable[str] = ()) -> None:
        """Cut every link between different groups. ``others`` (clients) reach
        only the group listed first for them by the caller; by default they are
        left connected to everyone."""
        self.cut.clear()
        member = {n: i for i, g in enumerate(groups) for n in g}
        for a in self.nodes:
            for b in self.nodes:
                if a != b and member.get(a) != member.get(b):
                    self.cut.add((a, b))

    def add_node(self, node: str, max_drift: float) -> None:
        """A node joins mid-run (a membership change): its own drifting clock."""
        self.nodes.append(node)
        self.clocks[node] = Clock(rate=1 + self.rng.uniform(-max_drift, max_drift),
                                  offset=self.rng.uniform(0, 1000))

    def isolate(self, node: str) -> None:
        self.split([[node], [n for n in self.nodes if n != node]])

    def bridge(self, bridge_node: str) -> None:
        """Two halves that cannot talk, except through ``bridge_node``, which reaches both."""
        rest = [n for n in self.nodes if n != bridge_node]
        self.rng.shuffle(rest)
        half = len(rest) // 2
        left, right = rest[:half], rest[half:]
        self.cut.clear()
        for a in left:
            for b in right:
                self.cut.add((a, b))
                self.cut.add((b, a))

    def random_split(self) -> list[list[str]]:
        nodes = list(self.nodes)
        self.rng.shuffle(nodes)
        k = self.rng.randint(1, len(nodes) - 1)
        groups = [nodes[:k], nodes[k:]]
        self.split(groups)
        return groups

    def one_way(self, src: str, dst: str) -> None:
        """Messages from ``src`` to ``dst`` are lost; the reverse direction works."""
        self.cut.add((src, dst))

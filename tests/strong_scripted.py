"""Replicas driven message by message with holds and cuts, for exact interleavings.

Like ``tests/strong_network.py``, but any delivery can be held back (a delayed
request, an acknowledgement still in flight across a crash) and delivered
later by hand. ``elect`` fires a node's election timer at a chosen time, which
is what the random draw landing there would do.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from strong.config import ReplicaConfig
from strong.messages import Batch, Envelope
from strong.ready import ReadState, Role
from strong.records import Record
from strong.replica import Replica
from strong.sm_snapshot import snapshot_decodes
from strong.storage import DurableState, recover


class Scripted:
    def __init__(self, n: int = 3, **config: object) -> None:
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.config = config
        self.now = 0.0
        self.disk: dict[str, list[Record]] = {i: [] for i in self.ids}
        self.r = {i: self.boot(i) for i in self.ids}
        self.applied: dict[str, dict[int, Batch]] = {i: {} for i in self.ids}
        self.reads: dict[str, list[ReadState]] = {i: [] for i in self.ids}
        #: deliveries held back by ``hold``, to be delivered by hand
        self.held: list[Envelope] = []
        #: directed links whose messages are lost
        self.blocked: set[tuple[str, str]] = set()
        self.hold: Callable[[Envelope], bool] = lambda env: False

    def boot(self, node: str, durable: DurableState | None = None, *, voting: bool = True) -> Replica:
        cfg = ReplicaConfig(node, tuple(self.ids), snapshot_valid=snapshot_decodes, **self.config)  # type: ignore[arg-type]
        return Replica(cfg, durable or DurableState(), self.now, random.Random(7), voting=voting)

    def restart(self, node: str, now: float) -> None:
        """Crash and restart with the disk intact."""
        self.now = now
        self.r[node] = self.boot(node, recover(self.disk[node]))

    def wipe(self, node: str, now: float) -> None:
        """The node's disk is lost; it restarts empty, as a non-voter (rule 7)."""
        self.now = now
        self.disk[node] = []
        self.r[node] = self.boot(node, DurableState(), voting=False)

    def _collect(self, node: str, out: list[Envelope]) -> None:
        ready = self.r[node].ready()
        self.disk[node].extend(ready.persist)
        for slot, batch in ready.committed:
            self.applied[node][slot] = batch
        self.reads[node].extend(ready.reads)
        out.extend(ready.outbox())

    def pump(self, now: float | None = None) -> None:
        """Deliver until quiet (minus blocked links and held messages)."""
        if now is not None:
            self.now = now
        queue: list[Envelope] = []
        for node in self.ids:
            self._collect(node, queue)
        for _ in range(100_000):
            if not queue:
                return
            env = queue.pop(0)
            if (env.src, env.dst) in self.blocked:
                continue
            if self.hold(env):
                self.held.append(env)
                continue
            self.r[env.dst].step(env.src, env.message, self.now)
            self._collect(env.dst, queue)
        raise AssertionError("the network never went quiet")

    def deliver(self, env: Envelope, now: float) -> None:
        self.now = now
        self.r[env.dst].step(env.src, env.message, now)

    def tick(self, node: str, now: float) -> None:
        self.now = now
        self.r[node].tick(now)
        self.pump(now)

    def isolate(self, node: str) -> None:
        for other in self.ids:
            if other != node:
                self.blocked |= {(node, other), (other, node)}

    def elect(self, node: str, now: float) -> Role:
        """Fire ``node``'s election timer at ``now`` (pre-vote, phase 1) and pump."""
        self.now = now
        self.r[node].election_deadline = now
        self.tick(node, now)
        return self.r[node].role

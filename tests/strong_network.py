"""N replicas over an in-memory network, for tests (rung 2 of the testing ladder).

Like etcd-raft's test ``network``: messages are delivered synchronously until
the cluster is quiet; ``cut``, ``isolate`` and ``heal`` drop traffic. Every
Ready is "persisted" into a per-node record list before its messages move,
and committed batches are collected per node.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from strong.config import ReplicaConfig
from strong.member_log import ChangeOutcome
from strong.messages import Batch, Envelope
from strong.ready import ReadState, Rejection
from strong.records import Record
from strong.replica import Replica
from strong.sm_snapshot import snapshot_decodes
from strong.storage import recover


class Network:
    def __init__(self, n: int = 3, seed: int = 0, **config: object) -> None:
        self.ids = [f"n{i + 1}" for i in range(n)]
        self.configs = {
            nid: ReplicaConfig(nid, tuple(self.ids), snapshot_valid=snapshot_decodes, **config)  # type: ignore[arg-type]
            for nid in self.ids
        }
        self.rng = random.Random(seed)
        self.now = 0.0
        self.disk: dict[str, list[Record]] = {nid: [] for nid in self.ids}
        self.replicas = {nid: self._boot(nid) for nid in self.ids}
        self.applied: dict[str, list[tuple[int, Batch]]] = {nid: [] for nid in self.ids}
        self.reads: dict[str, list[ReadState]] = {nid: [] for nid in self.ids}
        self.rejected: dict[str, list[Rejection]] = {nid: [] for nid in self.ids}
        self.changes: dict[str, list[ChangeOutcome]] = {nid: [] for nid in self.ids}
        self.options = config
        self.cut_links: set[tuple[str, str]] = set()
        #: drops a message when it returns True (scripted schedules)
        self.drop: Callable[[Envelope], bool] = lambda env: False
        self.queue: deque[Envelope] = deque()

    def _boot(self, nid: str) -> Replica:
        durable = recover(self.disk[nid])
        return Replica(self.configs[nid], durable, self.now, random.Random(self.rng.random()))

    # ---------------------------------------------------------------- faults

    def cut(self, a: str, b: str) -> None:
        self.cut_links |= {(a, b), (b, a)}

    def isolate(self, node: str) -> None:
        for other in self.ids:
            if other != node:
                self.cut(node, other)

    def heal(self) -> None:
        self.cut_links.clear()

    def join(self, nid: str, voters: tuple[str, ...]) -> None:
        """A fresh node (empty disk) that knows the voters and itself as a learner."""
        self.ids.append(nid)
        self.configs[nid] = ReplicaConfig(nid, voters, learners=(nid,), **self.options)  # type: ignore[arg-type]
        self.disk[nid] = []
        for table in (self.applied, self.reads, self.rejected, self.changes):
            table[nid] = []
        self.replicas[nid] = self._boot(nid)

    def restart(self, node: str) -> None:
        """Crash (volatile state lost; the disk here is always synced) and restart."""
        self.replicas[node] = self._boot(node)
        self.applied[node] = []

    # ---------------------------------------------------------------- driving

    def collect(self, nid: str) -> None:
        ready = self.replicas[nid].ready()
        self.disk[nid].extend(ready.persist)
        self.queue.extend(ready.outbox())
        if ready.snapshot is not None:
            self.applied[nid] = [(ready.snapshot.index, (b"<snapshot>",))]
        self.applied[nid].extend(ready.committed)
        self.reads[nid].extend(ready.reads)
        self.rejected[nid].extend(ready.rejected)
        self.changes[nid].extend(ready.changes)

    def deliver_all(self, limit: int = 100_000) -> None:
        for nid in self.ids:
            self.collect(nid)
        steps = 0
        while self.queue:
            steps += 1
            assert steps < limit, "the network never went quiet"
            env = self.queue.popleft()
            if (env.src, env.dst) in self.cut_links or self.drop(env):
                continue
            self.replicas[env.dst].step(env.src, env.message, self.now)
            self.collect(env.dst)

    def tick(self, seconds: float, step: float = 0.01) -> None:
        """Advance time in small steps, ticking every replica and delivering everything."""
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + step, 6)
            for nid in self.ids:
                self.replicas[nid].tick(self.now)
            self.deliver_all()

    def leader(self) -> str | None:
        leaders = [n for n, r in self.replicas.items() if r.leadership is not None]
        return leaders[0] if len(leaders) == 1 else None

    def elect(self, within: float = 5.0) -> str:
        end = self.now + within
        while self.now < end:
            self.tick(0.05)
            leader = self.leader()
            if leader is not None and self.replicas[leader].leadership.active:  # type: ignore[union-attr]
                return leader
        raise AssertionError("no active leader elected in time")

    def propose(self, node: str, request_id: int, command: bytes) -> None:
        self.replicas[node].propose(request_id, command, self.now)
        self.deliver_all()

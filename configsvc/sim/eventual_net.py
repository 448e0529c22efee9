"""N eventual replicas over an in-memory network (rung 2 of the testing ladder).

No randomness in delivery and no latency: ``pump`` delivers every queued
message in FIFO order (encoded and decoded, as on the wire) until the
network is quiet, obeying the driver contract (persist and sync, then send,
then reply). Links can be cut (``cut``, ``isolate``, ``split``) and
restored (``heal``); a cut link loses its messages. Time advances only
through ``advance``, which ticks every replica. Replicas can crash (losing
nothing synced: every Ready is synced before its messages leave), restart,
or restart wiped (fresh identity).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

from configsvc.sim.eventual_storage import EventualSimStorage
from eventual.codec import decode, encode
from eventual.config import ReplicaConfig
from eventual.messages import Envelope
from eventual.replica import Replica
from eventual.requests import Request, Result
from eventual.storage import recover


class Net:
    def __init__(self, nodes: Iterable[str], seed: int = 0, **config: object) -> None:
        self.ids = list(nodes)
        self.config = config
        self.now = 0.0
        self.rng = random.Random(seed)
        self.storage = {n: EventualSimStorage() for n in self.ids}
        self.replicas: dict[str, Replica] = {}
        self.down: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        self.queue: deque[tuple[str, str, bytes]] = deque()
        self.replies: dict[int, Result] = {}
        self.delivered = 0
        self.sent: list[Envelope] = []
        self._next_request = 0
        for n in self.ids:
            self._boot(n)

    def _boot(self, node: str) -> None:
        cfg = ReplicaConfig(node, tuple(self.ids), **self.config)  # type: ignore[arg-type]
        durable = recover(self.storage[node].load())
        self.replicas[node] = Replica(cfg, durable, self.now, random.Random(self.rng.random()))
        self.down.discard(node)
        self._flush(node)

    # ------------------------------------------------------------------ faults

    def isolate(self, node: str) -> None:
        self.split([node], [n for n in self.ids if n != node])

    def split(self, *groups: list[str]) -> None:
        side = {n: i for i, g in enumerate(groups) for n in g}
        self.cut = {(a, b) for a in self.ids for b in self.ids
                    if a != b and side.get(a) != side.get(b)}

    def heal(self) -> None:
        self.cut.clear()

    def crash(self, node: str) -> None:
        self.down.add(node)
        self.storage[node].crash()
        del self.replicas[node]

    def restart(self, node: str, *, wipe: bool = False) -> None:
        if wipe:
            self.storage[node].wipe()
        self._boot(node)

    # ------------------------------------------------------------------ driving

    def _flush(self, node: str) -> None:
        ready = self.replicas[node].ready()
        self.storage[node].append(ready.persist)
        self.storage[node].sync()
        for env in ready.messages:
            self.sent.append(env)
            self.queue.append((env.src, env.dst, encode(env.message)))
        for reply in ready.replies:
            self.replies[reply.request_id] = reply.result

    def pump(self, limit: int = 1_000_000) -> None:
        """Deliver until quiet."""
        for _ in range(limit):
            if not self.queue:
                return
            src, dst, data = self.queue.popleft()
            if dst in self.down or (src, dst) in self.cut:
                continue
            self.delivered += 1
            self.replicas[dst].step(src, decode(data), self.now)
            self._flush(dst)
        raise AssertionError("the network never went quiet")

    def advance(self, seconds: float, step: float = 0.05) -> None:
        """Move time forward, ticking every live replica and pumping after each tick."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(end, self.now + step)
            for n, r in self.replicas.items():
                r.tick(self.now)
                self._flush(n)
            self.pump()

    def submit(self, node: str, request: Request, token: str | None = None) -> int:
        """Submit a client request at ``node`` and pump; its answer lands in ``replies``."""
        self._next_request += 1
        rid = self._next_request
        self.replicas[node].submit(rid, request, token, self.now)
        self._flush(node)
        self.pump()
        return rid

    def call(self, node: str, request: Request, token: str | None = None) -> Result | None:
        """Submit and return the answer, or None if the request is waiting."""
        return self.replies.pop(self.submit(node, request, token), None)

    def converged(self) -> bool:
        reps = list(self.replicas.values())
        return all(r.vv == reps[0].vv and r.state_hash == reps[0].state_hash for r in reps[1:])

"""Convergence benchmark: how long after a heal until every replica is identical.

Five nodes, fanout 3, 200 ms gossip, split 2 | 3. Each side takes writes to
its own keys (``keys`` in total, so that many keys diverge), settles, and
then the partition heals; we measure simulated seconds from the heal until
every replica holds the same canonical state. Two variants:

- ``within``: the partition is shorter than the collection horizon, so the
  sides reconcile by delta anti-entropy (Scuttlebutt digests, capped Deltas);
- ``beyond``: the partition outlasts the horizon, so the sides collected
  their logs and reconcile by full state transfer.

Run: ``python -m configsvc.sim.eventual_bench [--keys 10000] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from configsvc.sim.eventual_node import ClientRequest, SimEventualNode
from configsvc.sim.world import World
from eventual.codec import canonical_state, decode
from eventual.config import ReplicaConfig
from eventual.messages import Deltas, FullState
from eventual.requests import Put


@dataclass
class BenchResult:
    variant: str
    keys: int
    convergence_s: float
    #: peer messages sent from the heal until convergence, and their total / largest size
    messages: int
    bytes: int
    largest_message: int
    wall_s: float
    #: of those, the Deltas and FullState (chunk) messages: how many, and the largest
    deltas: int = 0
    largest_delta: int = 0
    full_states: int = 0
    largest_full_state: int = 0


class _MeasuredWorld(World):
    """Counts the encoded size of every peer message after ``measuring`` is set."""

    measuring = False
    sent_bytes = 0
    largest = 0
    #: per message type: [count, largest encoding]
    by_type: dict[type, list[int]]

    def send(self, src: str, dst: str, message: Any) -> None:
        if self.measuring and isinstance(message, bytes):
            self.sent_bytes += len(message)
            self.largest = max(self.largest, len(message))
            seen = self.by_type.setdefault(type(decode(message)), [0, 0])
            seen[0] += 1
            seen[1] = max(seen[1], len(message))
        super().send(src, dst, message)


def run(keys: int = 10_000, seed: int = 1, beyond_horizon: bool = False,
        gc_horizon: float = 5.0, bound: float = 30.0,
        max_full_state_bytes: int = 4 * 1024 * 1024) -> BenchResult:
    started = time.perf_counter()
    ids = [f"n{i}" for i in range(1, 6)]
    world = _MeasuredWorld(seed, ids, max_drift=0.01)
    world.by_type = {}
    nodes = {
        n: SimEventualNode(world, ReplicaConfig(n, tuple(ids), gossip_interval=0.2, fanout=3,
                                                gc_horizon=gc_horizon,
                                                max_full_state_bytes=max_full_state_bytes),
                                 on_event=lambda *_: None)
        for n in ids
    }
    world.register("bench", lambda src, msg: None)
    left, right = ids[:2], ids[2:]
    world.split([left, right])
    write_window = 1.0

    def sender(node: str, req: ClientRequest) -> Callable[[], None]:
        return lambda: world.send("bench", node, req)

    for i in range(keys):
        side = left if i % 2 == 0 else right
        node = side[(i // 2) % len(side)]
        req = ClientRequest(i, Put("bench", f"key/{i:06d}", f"value-{i}".encode()), None)
        world.at(0.05 + write_window * i / keys, sender(node, req))
    heal_at = (gc_horizon * 1.6 + 2.0) if beyond_horizon else (write_window + 1.5)
    world.run_until(heal_at)
    sent_before = world.messages_sent
    world.measuring = True
    world.heal()

    def converged() -> bool:
        reps = [n.replica for n in nodes.values()]
        if any(n.busy or n.inbox for n in nodes.values()):
            return False
        return all(r.vv == reps[0].vv and r.state_hash == reps[0].state_hash for r in reps[1:])

    t = heal_at
    while t < heal_at + bound and not converged():
        t += 0.01
        world.run_until(t)
    states = {canonical_state(n.replica.store) for n in nodes.values()}
    if len(states) != 1 or len(next(iter(nodes.values())).replica.store.entries) != keys:
        raise AssertionError("replicas did not converge to the union of both sides")
    return BenchResult("beyond" if beyond_horizon else "within", keys, round(t - heal_at, 3),
                       world.messages_sent - sent_before, world.sent_bytes, world.largest,
                       round(time.perf_counter() - started, 2),
                       *world.by_type.get(Deltas, [0, 0]), *world.by_type.get(FullState, [0, 0]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for beyond in (False, True):
        print(json.dumps(vars(run(args.keys, args.seed, beyond_horizon=beyond))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

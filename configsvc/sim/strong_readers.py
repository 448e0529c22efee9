"""Open-loop linearizable readers: many independent clients, as behind a load balancer.

The simulated clients (``strong_client``) are closed-loop: each waits for its
answer before asking again, so when reads stall the load stalls with them and
the cluster recovers by itself. Independent HTTP clients do not wait for each
other. This load issues reads at a fixed rate whatever happens to earlier
ones, follows "not leader" hints, and records when each was invoked and
answered. It feeds liveness only: a read has no effect, so the
linearizability checker does not need these (the closed-loop clients' reads
are checked).
"""

from __future__ import annotations

import random
from typing import Any

from configsvc.sim.strong_node import ClientRequest, ClientResponse
from configsvc.sim.world import World
from strong.ops import Get

ENDPOINT = "open-loop-readers"


class OpenLoopReaders:
    def __init__(
        self, world: World, nodes: list[str], rate: float, namespace: str, rng: random.Random
    ) -> None:
        self.world = world
        self.nodes = nodes
        self.interval = 1.0 / rate
        self.rng = rng
        self.get = Get(namespace, b"k0")
        self.running = False
        self.next_id = 0
        #: op id -> (invoked at, answered at or None)
        self.reads: dict[int, tuple[float, float | None]] = {}
        self.target = rng.choice(nodes)
        world.register(ENDPOINT, self._receive)

    def start(self) -> None:
        self.running = True
        self.world.after(self.interval, self._issue)

    def stop(self) -> None:
        self.running = False

    def _issue(self) -> None:
        if not self.running:
            return
        self.next_id += 1
        self.reads[self.next_id] = (self.world.now, None)
        self._send(self.next_id, self.target)
        self.world.after(self.interval, self._issue)

    def _send(self, op_id: int, node: str) -> None:
        self.world.send(ENDPOINT, node, ClientRequest(op_id, "open-loop", 0, read=self.get))

    def _receive(self, src: str, response: Any) -> None:
        if not isinstance(response, ClientResponse) or response.op_id not in self.reads:
            return
        invoked, answered = self.reads[response.op_id]
        if answered is not None:
            return
        if response.status == "not_leader":
            hint = response.leader_hint
            self.target = hint if hint in self.nodes else self.rng.choice(self.nodes)
            self.world.after(0.001, self._send, response.op_id, self.target)
            return
        self.reads[response.op_id] = (invoked, self.world.now)

    def late(self, since: float, bound: float) -> int:
        """Reads invoked at or after ``since`` not answered within ``bound`` (by now)."""
        now = self.world.now
        return sum(
            1
            for invoked, answered in self.reads.values()
            if invoked >= since
            and ((answered is None and now - invoked > bound)
                 or (answered is not None and answered - invoked > bound))
        )

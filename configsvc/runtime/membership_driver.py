"""SWIM/Lifeguard membership (``eventual.membership``) in the runtime: its adapter
to the one driver loop (``configsvc.runtime.loop``; it persists nothing).

Members are addressed by node id over the peer transport (channel
``membership``). Every process start is a new *generation*, so a restarted
node is never confused with its previous life.

1. The peers are the roster: the strong group's committed configuration
   (``configsvc.node_members``, ``set_peers``), not SWIM's own view. A peer
   that enters it is joined at once (a ``Sync``), so the failure detector
   learns of it even before the peer's own join reaches this node; a peer
   that leaves it (retired) is no longer reported, whatever SWIM still
   remembers of it until its record is reaped.
2. Whenever the view or the roster changes the driver reports which peers
   are alive (``on_alive``). Failure detection informs, it never shrinks the
   roster: garbage collection waits for every member of the committed
   configuration that was heard from lately (``eventual.stability``), and
   only a change of configuration adds or removes one.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence

from configsvc.runtime.loop import CoreLoop, Step
from eventual.membership import Membership, MembershipStatus
from eventual.membership_config import MembershipConfig
from eventual.membership_messages import MalformedMessage, Member, decode_message, encode_message

log = logging.getLogger("configsvc.membership")

CHANNEL = "membership"


class MembershipDriver:
    def __init__(
        self,
        node_id: str,
        peers: Sequence[str],
        send: Callable[[str, bytes], object],
        on_alive: Callable[[list[str]], None],
        *,
        tick_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.peers = list(peers)
        self._on_alive = on_alive
        self.loop = CoreLoop(self, None, send, tick_interval=tick_interval, clock=clock,
                             name="membership")
        self.clock = clock
        config = MembershipConfig(node_id=node_id, address=node_id, generation=uuid.uuid4().hex)
        self.membership = Membership(config, clock(), rng or random.Random())
        self.malformed = 0
        self.alive: list[str] = []

    async def start(self) -> None:
        self.membership.join(self.peers, self.clock())
        await self.loop.start()

    async def close(self) -> None:
        await self.loop.close()

    def deliver(self, src: str, payload: bytes) -> None:
        try:
            message = decode_message(payload)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("dropped a malformed membership message from %s: %s", src, exc)
            return
        self.loop.submit(lambda: self.membership.step(src, message, self.clock()))

    def status(self) -> MembershipStatus:
        return self.membership.status(self.clock())

    def set_peers(self, peers: Sequence[str]) -> None:
        """The roster changed (rule 1): join the new peers, stop reporting the removed."""
        new = [p for p in peers if p not in self.peers]
        self.peers = list(peers)
        if new:
            # Every peer is a seed again (``join`` replaces the seeds): an earlier join
            # that no peer has answered yet keeps being retried with the others.
            seeds = list(self.peers)
            self.loop.submit(lambda: self.membership.join(seeds, self.clock()))
        self._report_alive()

    def peer_states(self) -> list[Member]:
        """SWIM's records of the peers in the roster (a retired node is not one)."""
        return [m for m in self.membership.members(self.clock()) if m.id in self.peers]

    # ------------------------------------------------------------------ the loop's core

    def tick(self, now: float) -> None:
        self.membership.tick(now)

    def failed(self, exc: Exception) -> None:
        log.error("membership stopped: %s: %s", type(exc).__name__, exc)

    def ready(self) -> Step | None:
        ready = self.membership.ready()
        if not ready.messages and not ready.events:
            return None
        return Step(
            messages=[(env.dst, encode_message(env.message)) for env in ready.messages],
            then=self._report_alive if ready.events else None,
        )

    def _report_alive(self) -> bool:
        alive = sorted(m.id for m in self.membership.live_members() if m.id in self.peers)
        if alive != self.alive:
            self.alive = alive
            self._on_alive(alive)
        return False

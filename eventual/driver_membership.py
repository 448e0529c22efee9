"""The asyncio driver of SWIM/Lifeguard membership (``eventual.membership``).

Members are addressed by node id over the peer transport (channel
``membership``). Every process start is a new *generation*, so a restarted
node is never confused with its previous life. Whenever the view changes the
driver reports which configured members are alive; the roster itself stays
the configured one (garbage collection must wait for every configured
replica, so failure detection informs, it does not shrink the roster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence

from eventual.membership import Membership, MembershipStatus
from eventual.membership_config import MembershipConfig
from eventual.membership_messages import MalformedMessage, decode_message, encode_message

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
        self._send = send
        self._on_alive = on_alive
        self.tick_interval = tick_interval
        self.clock = clock
        config = MembershipConfig(node_id=node_id, address=node_id, generation=uuid.uuid4().hex)
        self.membership = Membership(config, clock(), rng or random.Random())
        self._inbox: asyncio.Queue[Callable[[], None]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.malformed = 0
        self.alive: list[str] = []

    async def start(self) -> None:
        self.membership.join(self.peers, self.clock())
        self._task = asyncio.create_task(self._run(), name="membership")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def deliver(self, src: str, payload: bytes) -> None:
        try:
            message = decode_message(payload)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("dropped a malformed membership message from %s: %s", src, exc)
            return
        self._inbox.put_nowait(lambda: self.membership.step(src, message, self.clock()))

    def status(self) -> MembershipStatus:
        return self.membership.status(self.clock())

    async def _run(self) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._inbox.get(), self.tick_interval)
                first()
            except TimeoutError:
                pass
            while not self._inbox.empty():
                self._inbox.get_nowait()()
            self.membership.tick(self.clock())
            ready = self.membership.ready()
            for env in ready.messages:
                self._send(env.dst, encode_message(env.message))
            if ready.events:
                alive = sorted(m.id for m in self.membership.live_members() if m.id in self.peers)
                if alive != self.alive:
                    self.alive = alive
                    self._on_alive(alive)

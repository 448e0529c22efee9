"""The eventual replica in the runtime: its adapter to the one driver loop.

Contract (``eventual.ready``, kept by ``configsvc.runtime.loop``): append
``persist`` and fsync it (in a worker thread, off the event loop), then send
``messages``, then deliver ``replies`` — so "acknowledged" means "durable",
and peers never count on events this replica could still lose. Inputs
arriving during an fsync are all handed to the core before the next Ready
(group commit).

The change index it shows (``change_index``, ``namespace_index``) is the
core's, but never above the reservation already fsynced
(``eventual.change_index`` rule 3), so no crash can make it go backwards.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from configsvc.runtime.loop import CoreLoop, Step
from eventual.codec import MalformedMessage, decode, encode
from eventual.config import ReplicaConfig
from eventual.ready import EventualStatus, Ready
from eventual.replica import Replica
from eventual.requests import Request, Result
from eventual.storage import Storage, recover

log = logging.getLogger("configsvc.eventual")

#: the transport channel of the eventual store
CHANNEL = "eventual"


class Halted(Exception):
    """The replica stopped (a disk error): it answers nothing until restarted."""


class OutcomeUnknown(Halted):
    """The replica stopped after this request reached the core: a write may be in
    a persist batch whose fsync failed, so it may be durable (and gossiped after a
    restart) or not. Never "safe to retry" without care."""


@dataclass
class DriverStats:
    """The eventual adapter's counters (the loop's own are ``CoreLoop.stats``)."""

    malformed_messages: int = 0


class EventualDriver:
    def __init__(
        self,
        config: ReplicaConfig,
        storage: Storage,
        send: Callable[[str, bytes], object],
        *,
        tick_interval: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.loop = CoreLoop(self, storage, send, tick_interval=tick_interval, clock=clock,
                             name=f"eventual-driver-{config.node_id}")
        self.clock = clock
        #: wall time for the hybrid logical clock (LWW order must not follow host uptime)
        self.wall_clock = wall_clock
        self.stats = DriverStats()
        self.halted: str | None = None
        self.replica = Replica(config, recover(storage.load()), clock(), rng or random.Random(),
                               wall_clock())
        self._next_request = 0
        self._replies: dict[int, asyncio.Future[Result]] = {}
        #: requests handed to the core: if the driver halts, their outcome is unknown
        self._submitted: set[int] = set()
        #: the change-index reservation known durable (recovered, or fsynced since)
        self._durable_limit = self.replica.change_limit
        self._announced = self.change_index
        #: the replicas that gossip (``set_roster``; initially the configured ones)
        self.roster: tuple[str, ...] = config.nodes
        #: the members the failure detector last reported alive
        self._alive: list[str] = []
        #: why requests are refused for good: this node was removed (``retire``)
        self.retired: str | None = None

    async def start(self) -> None:
        await self.loop.start()

    async def close(self) -> None:
        await self.loop.close()
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()

    def deliver(self, src: str, payload: bytes) -> None:
        """A peer's message from the transport. Malformed input is counted and dropped."""
        if self.halted:
            return
        try:
            message = decode(payload)
        except MalformedMessage as exc:
            self.stats.malformed_messages += 1
            log.warning("dropped a malformed message from %s: %s", src, exc)
            return
        self.loop.submit(lambda: self.replica.step(src, message, self.clock(), self.wall_clock()))

    async def request(self, request: Request, token: str | None, timeout: float) -> Result:
        """Submit a client request; the result comes once durable (writes) or covered (reads).

        Raises TimeoutError if no answer came in time (a write may then still apply);
        OutcomeUnknown if the replica stopped after the request reached it (a write
        may be durable); Halted if it stopped before, or this node was removed from
        the cluster (nothing happened).
        """
        if self.halted or self.retired:
            raise Halted(self.halted or self.retired)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        self._next_request += 1
        rid = self._next_request
        self._replies[rid] = fut

        def submit() -> None:
            self._submitted.add(rid)
            self.replica.submit(rid, request, token, self.clock(),
                                self.wall_clock())

        self.loop.submit(submit)
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._replies.pop(rid, None)
            self._submitted.discard(rid)

    def status(self) -> EventualStatus:
        return self.replica.status(self.clock())

    @property
    def change_index(self) -> int:
        """This node's change index (``eventual.change_index``): never backwards,
        across restarts too. Read it before the content it should describe."""
        return min(self.replica.change_index, self._durable_limit)

    def namespace_index(self, namespace: str) -> int:
        """The change index of ``namespace``'s last visible change on this node
        (at most ``change_index``; after a restart, at least the restart's base)."""
        return min(self.replica.namespace_index(namespace), self._durable_limit)

    def set_alive(self, alive: list[str]) -> None:
        """The failure detector's view: which members of the roster are alive now."""
        self._alive = list(alive)
        members = list(self.roster)
        self.loop.submit(lambda: self.replica.set_members(members, alive, self.clock()))

    def set_roster(self, members: Sequence[str]) -> None:
        """The replicas that gossip and count for causal stability (the strong
        group's committed configuration, ``configsvc.node_members``): a new one
        is brought in by full state, a removed one is ignored from now on and
        its dots stay valid (``eventual.stability`` rules 1-3)."""
        self.roster = tuple(members)
        alive = [m for m in self._alive if m in self.roster]
        roster = list(self.roster)
        self.loop.submit(lambda: self.replica.set_members(roster, alive, self.clock()))

    def retire(self) -> None:
        """This node was removed from the cluster: the others ignore its messages
        from now on, so it must not acknowledge a write nobody else will see (nor
        answer reads from a state that no longer follows the cluster's)."""
        self.retired = "this node was removed from the cluster"

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait until the replica next persists something or its change index moves
        (a local or remote change, an instance going silent); False on timeout."""
        return await self.loop.wait_next(timeout)

    # ------------------------------------------------------------------ the loop's core

    def tick(self, now: float) -> None:
        self.replica.tick(now, self.wall_clock())

    def failed(self, exc: Exception) -> None:
        """Fail-stop: a disk error must not go unnoticed."""
        self.halted = f"{type(exc).__name__}: {exc}"
        log.error("eventual replica halted: %s", self.halted)
        for rid, fut in self._replies.items():
            if not fut.done():
                kind = OutcomeUnknown if rid in self._submitted else Halted
                fut.set_exception(kind(self.halted))

    def ready(self) -> Step | None:
        ready = self.replica.ready()
        # every reservation up to this limit is in ``ready.persist`` or already durable
        limit = self.replica.change_limit
        if ready.empty():
            if self.change_index == self._announced:
                return None
            return Step(then=self._announce)  # the index moved (e.g. an instance went silent)
        return Step(
            records=ready.persist,
            messages=[(env.dst, encode(env.message)) for env in ready.messages],
            then=lambda: self._answer(ready, limit),
        )

    def _answer(self, ready: Ready, limit: int) -> bool:
        """After ``persist`` is durable and the messages sent: reply; wake blocking reads
        if anything was persisted or the change index moved."""
        self._durable_limit = limit
        for reply in ready.replies:
            fut = self._replies.get(reply.request_id)
            if fut is not None and not fut.done():
                fut.set_result(reply.result)
        return self._announce() or bool(ready.persist)

    def _announce(self) -> bool:
        moved = self.change_index != self._announced
        self._announced = self.change_index
        return moved

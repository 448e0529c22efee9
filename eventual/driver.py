"""The asyncio driver of the eventual replica: the thin loop around the pure core.

Contract (``eventual.ready``): append ``persist`` and fsync it (in a worker
thread, off the event loop), then send ``messages``, then deliver
``replies`` — so "acknowledged" means "durable", and peers never count on
events this replica could still lose. Inputs arriving during an fsync are all
handed to the core before the next Ready (group commit).

The change index it shows (``change_index``, ``namespace_index``) is the
core's, but never above the reservation already fsynced
(``eventual.change_index`` rule 3), so no crash can make it go backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from eventual.codec import MalformedMessage, decode, encode
from eventual.config import ReplicaConfig
from eventual.ready import EventualStatus, Ready
from eventual.records import Record
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
    readies: int = 0
    fsyncs: int = 0
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
        self.storage = storage
        self._send = send
        self.tick_interval = tick_interval
        self.clock = clock
        #: wall time for the hybrid logical clock (LWW order must not follow host uptime)
        self.wall_clock = wall_clock
        self.stats = DriverStats()
        self.halted: str | None = None
        self.replica = Replica(config, recover(storage.load()), clock(), rng or random.Random(),
                               wall_clock())
        self._inbox: asyncio.Queue[Callable[[], None]] = asyncio.Queue()
        self._next_request = 0
        self._replies: dict[int, asyncio.Future[Result]] = {}
        #: requests handed to the core: if the driver halts, their outcome is unknown
        self._submitted: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        #: notified after every Ready that changed anything (blocking reads wait on it)
        self._changed = asyncio.Condition()
        #: the change-index reservation known durable (recovered, or fsynced since)
        self._durable_limit = self.replica.change_limit
        self._announced = self.change_index

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"eventual-driver-{self.config.node_id}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
        self._inbox.put_nowait(lambda: self.replica.step(src, message, self.clock(), self.wall_clock()))

    async def request(self, request: Request, token: str | None, timeout: float) -> Result:
        """Submit a client request; the result comes once durable (writes) or covered (reads).

        Raises TimeoutError if no answer came in time (a write may then still apply);
        OutcomeUnknown if the replica stopped after the request reached it (a write
        may be durable); Halted if it stopped before (nothing happened).
        """
        if self.halted:
            raise Halted(self.halted)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Result] = loop.create_future()
        self._next_request += 1
        rid = self._next_request
        self._replies[rid] = fut

        def submit() -> None:
            self._submitted.add(rid)
            self.replica.submit(rid, request, token, self.clock(),
                                self.wall_clock())

        self._inbox.put_nowait(submit)
        try:
            return await asyncio.wait_for(fut, timeout)
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
        """The failure detector's view: which configured members are alive now."""
        members = list(self.config.nodes)
        self._inbox.put_nowait(lambda: self.replica.set_members(members, alive, self.clock()))

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait until the replica next persists something or its change index moves
        (a local or remote change, an instance going silent); False on timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
                return True
            except TimeoutError:
                return False

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # fail-stop: a disk error must not go unnoticed
            self.halted = f"{type(exc).__name__}: {exc}"
            log.error("eventual replica halted: %s", self.halted)
            for rid, fut in self._replies.items():
                if not fut.done():
                    kind = OutcomeUnknown if rid in self._submitted else Halted
                    fut.set_exception(kind(self.halted))

    async def _loop(self) -> None:
        next_tick = self.clock()
        while True:
            timeout = max(0.0, next_tick - self.clock())
            try:
                first = await asyncio.wait_for(self._inbox.get(), timeout)
                first()
            except TimeoutError:
                pass
            while not self._inbox.empty():
                self._inbox.get_nowait()()
            now = self.clock()
            if now >= next_tick:
                self.replica.tick(now, self.wall_clock())
                next_tick = now + self.tick_interval
            ready = self.replica.ready()
            # every reservation up to this limit is in ``ready.persist`` or already durable
            limit = self.replica.change_limit
            if not ready.empty():
                await self._handle(ready, limit)
            if ready.persist or self.change_index != self._announced:
                self._announced = self.change_index
                async with self._changed:
                    self._changed.notify_all()

    async def _handle(self, ready: Ready, limit: int) -> None:
        self.stats.readies += 1
        if ready.persist:
            await asyncio.to_thread(self._persist, ready.persist)
            self.stats.fsyncs += 1
        self._durable_limit = limit
        for env in ready.messages:
            self._send(env.dst, encode(env.message))
        for reply in ready.replies:
            fut = self._replies.get(reply.request_id)
            if fut is not None and not fut.done():
                fut.set_result(reply.result)

    def _persist(self, records: list[Record]) -> None:
        self.storage.append(records)
        self.storage.sync()

"""The one driver loop beneath every pure core (strong replica, eventual replica, SWIM).

A core is a deterministic object: inputs in (``submit``), ``tick(now)``, and a
batch of work out (``ready``). This loop is the only place that turns that
into IO, the way httpcore drives h11. Its contract is etcd-raft's, for every
``Step`` a core hands out, in this order:

0. send its ``first`` messages, which a core vouches depend on nothing in
   this step's records (the strong leader's Accepts: it writes its own log
   while the followers write theirs, as etcd-raft's leader does);
1. **persist**: append the step's records and fsync them (in the loop's own
   disk thread, so the event loop keeps serving HTTP and peers meanwhile, and
   the storage has exactly one writer);
2. **send** its messages (already encoded for the wire);
3. **then**: apply, install, answer clients: only now may anything learn of
   the records' effects.

Group commit: every input that arrives while an fsync runs is handed to the
core before the next ``ready``, so one fsync covers all of them.

Invariants:
- Only the loop task calls into the core. Client coroutines and the transport
  ``submit`` closures and await futures the core's adapter resolves.
- No input reaches the core between its ``ready`` and the end of that step's
  fsync: inputs submitted meanwhile wait in the inbox. (The strong leader's
  early Accepts rely on it: the replies they bring are counted only after
  the leader's own accept is durable.)
- A step's messages leave only after its records are durable, and its
  ``then`` runs only after its messages were handed to the transport. A step
  may say ``sync=False``: its records are hints recovery never trusts alone
  (e.g. a commit index), appended without an fsync of their own; they become
  durable with the next synced step.
- A send the transport refuses (``send`` returns False: queue full, frame too
  large, peer unknown) is counted in ``LoopStats.send_failures`` and dropped,
  like a message lost on the network: every core resends what matters.
- If anything in the loop raises (a disk error, a state that cannot be
  restored), the loop stops for good and the core's ``failed`` tells every
  waiter why (fail-stop): nothing is applied or answered after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger("configsvc.runtime")


@dataclass(slots=True)
class Step:
    """What one ``ready()`` of a core asks of the runtime, done in field order."""

    #: (destination, encoded message) sent at once, before the records are durable
    first: list[tuple[str, bytes]] = field(default_factory=list)
    #: records to make durable before anything after them
    records: list[Any] = field(default_factory=list)
    #: False: the records need no fsync of their own (hints; durable with the next sync)
    sync: bool = True
    #: (destination, encoded message), sent once the records are durable
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    #: applies and answers after the sends; returns whether waiters should be woken
    then: Callable[[], bool] | None = None


class Core(Protocol):
    """A pure core, adapted to the loop (``strong_driver``, ``eventual_driver``, ...)."""

    def tick(self, now: float) -> None: ...

    def ready(self) -> Step | None:
        """The next step, or None when there is nothing to do."""

    def failed(self, exc: Exception) -> None:
        """The loop stopped for good because of ``exc``: fail every waiter."""


class Storage(Protocol):
    def append(self, records: list[Any]) -> None: ...

    def sync(self) -> None: ...


@dataclass
class LoopStats:
    #: steps handled (a step is one core ``ready``)
    readies: int = 0
    #: fsyncs (one per synced step: group commit)
    fsyncs: int = 0
    #: records made durable
    records: int = 0
    #: messages the transport refused to queue
    send_failures: int = 0


class CoreLoop:
    """Drives one core: ``start``, ``submit`` inputs, ``wait_for`` conditions, ``close``."""

    def __init__(
        self,
        core: Core,
        storage: Storage | None,
        send: Callable[[str, bytes], object],
        *,
        tick_interval: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "core",
    ) -> None:
        self.core = core
        self.storage = storage
        self._send = send
        self.tick_interval = tick_interval
        self.clock = clock
        self.name = name
        self.stats = LoopStats()
        #: called after each fsync with its seconds and the records it made durable (metrics)
        self.on_fsync: Callable[[float, int], None] | None = None
        #: set once the loop stopped for good
        self.failure: Exception | None = None
        self._inbox: deque[Callable[[], None]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        #: the one thread that writes this core's storage
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-disk")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # An fsync may still run: the storage's own close waits for it.
        self._disk.shutdown(wait=False)

    @property
    def pending_inputs(self) -> int:
        """Inputs submitted and not yet handed to the core."""
        return len(self._inbox)

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (an input to the core) on the loop task, before its next ``ready``."""
        self._inbox.append(fn)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checked whenever a step woke waiters
        (and when the loop stops); False on timeout."""
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), timeout)
                return True
            except TimeoutError:
                return False

    async def wait_next(self, timeout: float) -> bool:
        """Wait until the next step that wakes waiters; False on timeout."""
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
            self.failure = exc
            log.error("%s stopped: %s: %s", self.name, type(exc).__name__, exc)
            self.core.failed(exc)
            await self._wake_waiters()

    async def _loop(self) -> None:
        next_tick = self.clock()
        inbox = self._inbox
        while True:
            if not inbox:
                await self._input_or_timeout(next_tick - self.clock())
            while inbox:
                inbox.popleft()()
            now = self.clock()
            if now >= next_tick:
                self.core.tick(now)
                next_tick = now + self.tick_interval
            step = self.core.ready()
            if step is not None:
                await self._handle(step)

    async def _input_or_timeout(self, timeout: float) -> None:
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _handle(self, step: Step) -> None:
        self.stats.readies += 1
        send = self._send
        for dst, payload in step.first:
            if send(dst, payload) is False:
                self.stats.send_failures += 1
        if step.records:
            assert self.storage is not None, "a core without storage asked to persist"
            if step.sync:
                loop = asyncio.get_running_loop()
                took = await loop.run_in_executor(self._disk, self._persist, step.records)
                self.stats.fsyncs += 1
                if self.on_fsync is not None:
                    self.on_fsync(took, len(step.records))
            else:
                self.storage.append(step.records)
            self.stats.records += len(step.records)
        for dst, payload in step.messages:
            if send(dst, payload) is False:
                self.stats.send_failures += 1
        if step.then is not None and step.then():
            await self._wake_waiters()

    def _persist(self, records: list[Any]) -> float:
        """Append and fsync ``records``; the seconds the fsync took."""
        assert self.storage is not None
        self.storage.append(records)
        started = time.perf_counter()
        self.storage.sync()
        return time.perf_counter() - started

    async def _wake_waiters(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)

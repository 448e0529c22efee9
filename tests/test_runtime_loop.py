"""The one driver loop (``configsvc.runtime.loop``): its ordering contract, by hand.

A fake core hands out scripted steps; a storage whose fsync blocks until the
test releases it shows what has left the node at each point.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from configsvc.runtime.loop import CoreLoop, Step


class HeldSync:
    """A storage whose ``sync`` blocks (in the loop's worker thread) until released."""

    def __init__(self) -> None:
        self.appended: list[Any] = []
        self.synced: list[Any] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, records: list[Any]) -> None:
        self.appended += records

    def sync(self) -> None:
        self.entered.set()
        self.release.wait(10)
        self.synced += self.appended


class Scripted:
    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.inputs: list[str] = []
        self.failure: Exception | None = None

    def tick(self, now: float) -> None:
        pass

    def ready(self) -> Step | None:
        return self.steps.pop(0) if self.steps else None

    def failed(self, exc: Exception) -> None:
        self.failure = exc


async def _until(condition: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)  # polling an in-process condition with a deadline


def test_first_leaves_before_the_sync_messages_after_it_and_then_last() -> None:
    async def main() -> None:
        sent: list[str] = []
        applied: list[list[str]] = []
        storage = HeldSync()
        core = Scripted([Step(first=[("n2", b"accept")], records=["A"],
                              messages=[("n2", b"accepted")],
                              then=lambda: applied.append(list(sent)) is None)])
        loop = CoreLoop(core, storage, lambda dst, p: sent.append(p.decode()), tick_interval=1.0)
        await loop.start()
        try:
            await _until(storage.entered.is_set, "the sync to start")
            assert sent == ["accept"]  # the early message left; the reply waits for the disk
            loop.submit(lambda: core.inputs.append("late"))
            await asyncio.sleep(0.01)  # give the loop a chance it must not take
            assert core.inputs == []  # no input reaches the core during its sync
            storage.release.set()
            await _until(lambda: applied, "the step to complete")
            assert storage.synced == ["A"]
            assert applied == [["accept", "accepted"]]
            await _until(lambda: core.inputs == ["late"], "the queued input")
        finally:
            storage.release.set()
            await loop.close()

    asyncio.run(main())


def test_hint_records_are_appended_without_a_sync_and_refused_sends_are_counted() -> None:
    async def main() -> None:
        storage = HeldSync()
        storage.release.set()
        core = Scripted([Step(records=["hint"], sync=False, messages=[("n9", b"x")])])
        loop = CoreLoop(core, storage, lambda dst, p: False, tick_interval=1.0)
        await loop.start()
        try:
            await _until(lambda: loop.stats.readies == 1, "the step")
            assert storage.appended == ["hint"] and not storage.entered.is_set()
            assert loop.stats.fsyncs == 0 and loop.stats.send_failures == 1
        finally:
            await loop.close()

    asyncio.run(main())


def test_a_failing_sync_stops_the_loop_for_good_and_tells_the_core() -> None:
    class Broken(HeldSync):
        def sync(self) -> None:
            raise OSError(5, "Input/output error")

    async def main() -> None:
        sent: list[bytes] = []
        core = Scripted([Step(records=["A"], messages=[("n2", b"never")]),
                         Step(messages=[("n2", b"never either")])])
        loop = CoreLoop(core, Broken(), lambda dst, p: sent.append(p), tick_interval=1.0)
        await loop.start()
        try:
            await _until(lambda: core.failure is not None, "the failure")
            assert isinstance(loop.failure, OSError) and sent == []
            assert await loop.wait_for(lambda: False, 0.01) is False
        finally:
            await loop.close()

    asyncio.run(main())

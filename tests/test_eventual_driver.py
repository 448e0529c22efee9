"""The eventual driver and its HTTP edge when the disk fails (issue 7, finding 5).

A write handed to the core may already be in the persist batch when the
fsync fails or the driver halts: it may be durable (and gossiped after a
restart) after all, so its answer is ``504 outcome_unknown``, never ``503``
"safe to retry". A request arriving once the driver has halted never
reached the core: that one is ``503``.
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import httpx
import pytest

from configsvc.node import Node
from configsvc.runtime.eventual_driver import EventualDriver, Halted, OutcomeUnknown
from configsvc.sim.eventual_storage import EventualSimStorage
from eventual.config import ReplicaConfig
from eventual.hlc import hlc_physical
from eventual.records import Record
from eventual.requests import Get, Put, ReadResult
from eventual.storage import Storage
from tests.test_http_api import error, run


class FailingSync:
    """A storage whose fsync fails once ``fail`` is set: records are appended
    (they may reach the disk), the sync reports an I/O error."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.fail = False

    def append(self, records: list[Record]) -> None:
        self.inner.append(records)

    def sync(self) -> None:
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        self.inner.sync()

    def load(self) -> list[Record]:
        return self.inner.load()


def test_finding5_a_write_in_a_failed_fsync_is_outcome_unknown_later_ones_halted() -> None:
    async def main() -> None:
        storage = FailingSync(EventualSimStorage())
        driver = EventualDriver(ReplicaConfig("n1", ("n1",)), storage, lambda dst, data: None)
        await driver.start()
        try:
            await driver.request(Put("ev", "k", b"v"), None, timeout=5)
            storage.fail = True
            with pytest.raises(OutcomeUnknown, match="Input/output error"):
                await driver.request(Put("ev", "k", b"w"), None, timeout=5)
            assert driver.halted is not None
            with pytest.raises(Halted) as refused:
                await driver.request(Get("ev", "k"), None, timeout=5)
            assert not isinstance(refused.value, OutcomeUnknown)
        finally:
            await driver.close()

    asyncio.run(main())


def test_finding5_http_answers_504_for_the_write_in_flight_and_503_after(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        assert (await http.put("/v1/kv/ev/k", content=b"v")).status_code == 200
        assert node.event_storage is not None
        failing = FailingSync(node.event_storage)
        node.eventual.loop.storage = failing
        failing.fail = True
        assert error(await http.put("/v1/kv/ev/k", content=b"w")) == (504, "outcome_unknown")
        assert error(await http.put("/v1/kv/ev/k", content=b"x")) == (503, "unavailable")
        assert error(await http.get("/v1/kv/ev/k")) == (503, "unavailable")

    run(tmp_path, scenario)


def test_finding8_hlc_timestamps_follow_wall_time_not_host_uptime() -> None:
    # Issue 7, finding 8: the HLC read the monotonic clock (host uptime), so which
    # concurrent LWW write won depended on how long each host had been up.
    async def main() -> None:
        driver = EventualDriver(ReplicaConfig("n1", ("n1",)), EventualSimStorage(),
                                lambda dst, data: None)
        await driver.start()
        try:
            before = time.time()
            await driver.request(Put("ev", "k", b"v"), None, timeout=5)
            read = await driver.request(Get("ev", "k"), None, timeout=5)
            assert isinstance(read, ReadResult)
            stamp_s = hlc_physical(read.siblings[0].hlc) / 1000
            assert before - 1.0 <= stamp_s <= time.time() + 1.0
        finally:
            await driver.close()

    asyncio.run(main())

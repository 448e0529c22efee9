"""The asyncio strong driver around a one-voter group, with a storage that can fail."""

from __future__ import annotations

import asyncio
import random

import pytest

from configsvc.runtime.strong_driver import Halted, OutcomeUnknown, StrongDriver
from strong.commands import Command, encode_command
from strong.config import ReplicaConfig
from strong.ops import CreateNamespace, Get, Put
from strong.records import AcceptRecord, Record
from strong.results import GetResult, PutResult


class MemoryStorage:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.pending: list[Record] = []
        self.fail = False
        self.syncs = 0

    def append(self, records: list[Record]) -> None:
        self.pending += records

    def sync(self) -> None:
        if self.fail:
            raise OSError(5, "Input/output error")
        self.syncs += 1
        self.records += self.pending
        self.pending = []

    def load(self) -> list[Record]:
        return list(self.records)


def cmd(seq: int, op: object) -> bytes:
    return encode_command(Command("t", seq, op))  # type: ignore[arg-type]


async def started(storage: MemoryStorage) -> StrongDriver:
    driver = StrongDriver(ReplicaConfig("solo", ("solo",)), storage, lambda dst, p: None,
                          rng=random.Random(1))
    await driver.start()
    deadline = asyncio.get_running_loop().time() + 10
    while not (driver.is_leader and driver.replica.leadership and driver.replica.leadership.active):
        assert asyncio.get_running_loop().time() < deadline, "no leader in time"
        await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
    return driver


def test_writes_are_durable_before_they_are_answered_and_reads_see_them() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        driver = await started(storage)
        try:
            await driver.propose(cmd(1, CreateNamespace("ns", "strong", ())), timeout=10)
            result = await driver.propose(cmd(2, Put("ns", b"k", b"v")), timeout=10)
            assert isinstance(result, PutResult)
            assert storage.pending == [] or all(type(r).__name__ == "CommitRecord" for r in storage.pending)
            read = await driver.read(Get("ns", b"k"), timeout=10)
            assert isinstance(read, GetResult) and read.kv is not None and read.kv.value == b"v"
        finally:
            await driver.close()

    asyncio.run(main())


def test_a_failing_disk_halts_the_replica_and_every_waiter_learns_why() -> None:
    async def main() -> None:
        storage = MemoryStorage()
        driver = await started(storage)
        try:
            await driver.propose(cmd(1, CreateNamespace("ns", "strong", ())), timeout=10)
            storage.fail = True
            # in a slot when the fsync failed: it may still be chosen (finding 5)
            with pytest.raises(OutcomeUnknown, match="Input/output error"):
                await driver.propose(cmd(2, Put("ns", b"k", b"v")), timeout=10)
            assert driver.halted is not None
            with pytest.raises(Halted):
                await driver.propose(cmd(3, Put("ns", b"k", b"w")), timeout=10)
            with pytest.raises(Halted):
                await driver.read(Get("ns", b"k"), timeout=10)
        finally:
            await driver.close()

    asyncio.run(main())


def test_a_retry_joins_the_proposal_its_leadership_already_holds() -> None:
    """The retry storm the simulator found: a client retrying a slow write must
    not queue a second copy behind the first (both answers come from one slot)."""

    async def main() -> None:
        storage = MemoryStorage()
        driver = await started(storage)
        try:
            await driver.propose(cmd(1, CreateNamespace("ns", "strong", ())), timeout=10)
            put = cmd(2, Put("ns", b"k", b"v"))
            first, retry = await asyncio.gather(
                driver.propose(put, timeout=10), driver.propose(put, timeout=10)
            )
            assert first == retry and isinstance(first, PutResult)
            copies = [r for r in storage.records if isinstance(r, AcceptRecord) and put in r.value]
            assert len(copies) == 1
            assert driver.stats.retries_joined == 1
            # a new seq is a new command, proposed on its own
            await driver.propose(cmd(3, Put("ns", b"k", b"w")), timeout=10)
            assert driver.stats.retries_joined == 1
        finally:
            await driver.close()

    asyncio.run(main())

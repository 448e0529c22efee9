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


def test_the_driver_counts_leaders_and_the_catch_up_and_snapshot_it_sends() -> None:
    """Three drivers over an in-memory link; c is cut off while a and b commit past a
    compaction, then reconnected: the leader must send it a snapshot, and counts it
    (metrics read these counters: ``configsvc.metrics``)."""
    ids = ("a", "b", "c")
    up = {"c": False}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        drivers: dict[str, StrongDriver] = {}

        def sender(src: str) -> object:
            def send(dst: str, payload: bytes) -> bool:
                if up.get(src, True) and up.get(dst, True):
                    loop.call_soon(drivers[dst].deliver, src, payload)
                return True
            return send

        for nid in ids:
            drivers[nid] = StrongDriver(ReplicaConfig(nid, ids), MemoryStorage(), sender(nid),  # type: ignore[arg-type]
                                        rng=random.Random(ids.index(nid)), snapshot_every=5)
        for d in drivers.values():
            await d.start()
        try:
            deadline = loop.time() + 20

            def leader() -> StrongDriver | None:
                return next((d for d in drivers.values() if d.is_leader and d.replica.leadership
                             and d.replica.leadership.active), None)

            while leader() is None:
                assert loop.time() < deadline, "no leader in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            lead = leader()
            assert lead is not None and lead.config.node_id != "c"
            await lead.propose(cmd(1, CreateNamespace("ns", "strong", ())), timeout=10)
            for i in range(12):
                await lead.propose(cmd(i + 2, Put("ns", b"k", b"v%d" % i)), timeout=10)
            while lead.replica.snapshot_index == 0:
                assert loop.time() < deadline, "no compaction in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            assert lead.stats.snapshots_sent == 0
            up["c"] = True
            c = drivers["c"]
            while c.sm.applied_index < lead.sm.applied_index:
                assert loop.time() < deadline, "c did not catch up in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            assert lead.stats.snapshots_sent >= 1 and lead.stats.sent["InstallSnapshot"] >= 1
            assert lead.stats.sent["Accept"] >= 13
            assert all(d.stats.leader_changes >= 1 for d in drivers.values())
            assert c.stats.sent.get("InstallSnapshot", 0) == 0
        finally:
            for d in drivers.values():
                await d.close()

    asyncio.run(main())

"""Finding 5: once a write may have been proposed, its outcome is unknown (``504``), never
"safe to retry" (``503``) — and the client reports the most uncertain outcome it saw.

Unit tests: the strong driver over an in-memory storage whose fsync can be held and
failed, and the clients over ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import random
import threading

import httpx
import pytest

from configsvc.client import AsyncClient, Client, ClientError
from configsvc.runtime.strong_driver import Halted, NotLeader, OutcomeUnknown, StrongDriver
from strong.config import ReplicaConfig
from strong.ops import CreateNamespace, Put
from tests.test_strong_driver import MemoryStorage, cmd, started


class HeldStorage(MemoryStorage):
    """A storage whose next fsync waits until released, then fails if told to."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def sync(self) -> None:
        if self.hold:
            self.entered.set()
            self.release.wait(10)
        super().sync()


async def _until(condition: object, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)  # polling an in-process condition with a deadline


def test_finding5_a_write_handed_to_the_replica_is_outcome_unknown_when_the_driver_halts() -> None:
    """Write A is in a slot whose fsync fails (its Accept may reach the disk anyway, and a
    restarted replica would choose it): 504. Write B still waits in the driver's inbox,
    never seen by the replica: 503 (Halted), truly safe to retry."""

    async def main() -> None:
        storage = HeldStorage()
        driver = await started(storage)
        try:
            await driver.propose(cmd(1, CreateNamespace("ns", "strong", ())), timeout=10)
            storage.hold = True
            a = asyncio.create_task(driver.propose(cmd(2, Put("ns", b"a", b"1")), timeout=10))
            await _until(storage.entered.is_set, "write A's fsync to start")
            b = asyncio.create_task(driver.propose(cmd(3, Put("ns", b"b", b"1")), timeout=10))
            await _until(lambda: driver.loop.pending_inputs == 1, "write B queued behind the fsync")
            storage.fail = True
            storage.release.set()
            with pytest.raises(OutcomeUnknown, match="Input/output error"):
                await a
            with pytest.raises(Halted):
                await b
            with pytest.raises(Halted):  # after the halt nothing is proposed: safe to retry
                await driver.propose(cmd(4, Put("ns", b"c", b"1")), timeout=10)
        finally:
            await driver.close()

    asyncio.run(main())


def test_finding5_a_write_rejected_before_proposing_stays_safe_to_retry() -> None:
    """A follower rejects a write without proposing it: NotLeader, never OutcomeUnknown."""

    async def main() -> None:
        config = ReplicaConfig("a", ("a", "b", "c"))
        driver = StrongDriver(config, MemoryStorage(), lambda dst, p: None, rng=random.Random(1))
        await driver.start()
        try:
            with pytest.raises(NotLeader):
                await driver.propose(cmd(1, Put("ns", b"k", b"v")), timeout=10)
        finally:
            await driver.close()

    asyncio.run(main())


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} (scripted)"}})


def _scripted(responses: list[httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses.pop(0)

    return httpx.MockTransport(handler)


def test_finding5_the_client_reports_a_504_followed_by_a_503_as_outcome_unknown() -> None:
    seen: list[httpx.Request] = []
    transport = _scripted([_error(504, "outcome_unknown"), _error(503, "no_quorum")], seen)
    with Client(["http://a", "http://b"], attempts=2, transport=transport) as client, \
            pytest.raises(ClientError) as info:
        client.put("app", "k", "v")
    assert (info.value.status, info.value.code) == (504, "outcome_unknown")
    assert [r.url.host for r in seen] == ["a", "b"]
    assert len({(r.headers["x-client-id"], r.headers["x-client-seq"]) for r in seen}) == 1


def test_finding5_the_async_client_reports_a_504_followed_by_a_503_as_outcome_unknown() -> None:
    seen: list[httpx.Request] = []
    transport = _scripted([_error(504, "outcome_unknown"), _error(503, "unavailable")], seen)

    async def main() -> None:
        async with AsyncClient(["http://a", "http://b"], attempts=2, transport=transport) as client:
            with pytest.raises(ClientError) as info:
                await client.put("app", "k", "v")
        assert (info.value.status, info.value.code) == (504, "outcome_unknown")

    asyncio.run(main())
    assert len(seen) == 2


def test_finding5_a_write_whose_answer_was_lost_in_flight_is_outcome_unknown() -> None:
    """A read timeout after the request was sent leaves the write's outcome unknown, even
    if every later attempt fails to connect; a connect failure alone stays 503."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("no answer", request=request)
        raise httpx.ConnectError("refused", request=request)

    with Client(["http://a", "http://b"], attempts=2, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(ClientError) as info:
            client.put("app", "k", "v")
        assert (info.value.status, info.value.code) == (504, "outcome_unknown")
        calls = 1  # from now on every attempt fails to connect: nothing was sent
        with pytest.raises(ClientError) as refused:
            client.put("app", "k", "v")
        assert (refused.value.status, refused.value.code) == (503, "unavailable")

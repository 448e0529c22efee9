"""Finding 8 (strong part): client dedup sessions expire through the log, and the
snapshot is encoded off the event loop.

Expiry is deterministic: the leader proposes ``ExpireSessions(now_ms, ttl_ms)``
carrying its wall-clock time as data; every replica drops the same sessions
from that number, never from its own clock. It is gated behind state-machine
version 2.
"""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from strong import state_machine as sm_module
from strong.commands import (
    Command,
    CreateNamespace,
    ExpireSessions,
    Op,
    Put,
    SetVersion,
    decode_command,
    encode_command,
)
from strong.config import ReplicaConfig
from strong.driver import StrongDriver
from strong.results import ErrorCode, ErrorResult, PutResult, VersionResult
from strong.sm_snapshot import decode_snapshot
from strong.state_machine import StateMachine
from tests.test_strong_driver import MemoryStorage

HOUR_MS = 3_600_000


def cmd(client: str, seq: int, op: Op) -> bytes:
    return encode_command(Command(client, seq, op))


def feed(sm: StateMachine, *batch: bytes) -> list[object]:
    return [a.result for a in sm.apply(sm.applied_index + 1, tuple(batch))]


def upgraded() -> StateMachine:
    sm = StateMachine()
    assert feed(sm, cmd("", 0, SetVersion(2)), cmd("", 0, CreateNamespace("app", "strong")))[0] == (
        VersionResult(2)
    )
    return sm


def test_finding8_expire_sessions_round_trips_and_checks_its_fields() -> None:
    op = ExpireSessions(now_ms=1_700_000_000_000, ttl_ms=HOUR_MS)
    assert decode_command(cmd("", 0, op)).op == op
    with pytest.raises(ValueError):
        ExpireSessions(now_ms=-1, ttl_ms=HOUR_MS)
    with pytest.raises(ValueError):
        ExpireSessions(now_ms=5, ttl_ms=0)


def test_finding8_idle_sessions_expire_identically_on_every_replica() -> None:
    a, b = upgraded(), upgraded()
    t0 = 1_700_000_000_000
    script = [
        (cmd("idle", 1, Put("app", b"k", b"1")),),
        (cmd("", 0, ExpireSessions(t0, HOUR_MS)),),
        (cmd("busy", 1, Put("app", b"k", b"2")),),
        (cmd("", 0, ExpireSessions(t0 + HOUR_MS // 2, HOUR_MS)),),
        (cmd("busy", 2, Put("app", b"k", b"3")),),
        (cmd("", 0, ExpireSessions(t0 + HOUR_MS + 1, HOUR_MS)),),
    ]
    for batch in script:
        feed(a, *batch)
    # b gets there through a snapshot taken half-way, then the rest of the log
    for batch in script[:3]:
        feed(b, *batch)
    b = StateMachine.restore(b.snapshot())
    for batch in script[3:]:
        feed(b, *batch)
    assert a.state_hash() == b.state_hash()
    sessions = {client for client, *_ in decode_snapshot(a.snapshot()).sessions}
    assert sessions == {"busy"}  # idle for more than an hour of leader time: gone


def test_finding8_a_retry_after_its_session_expired_is_refused_not_applied_twice() -> None:
    sm = upgraded()
    t0 = 1_700_000_000_000
    feed(sm, cmd("c", 1, Put("app", b"k", b"first")))
    feed(sm, cmd("", 0, ExpireSessions(t0, HOUR_MS)))
    assert isinstance(feed(sm, cmd("c", 2, Put("app", b"n", b"x")))[0], PutResult)
    revision = sm.revision
    feed(sm, cmd("", 0, ExpireSessions(t0 + 2 * HOUR_MS, HOUR_MS)))
    [retry] = feed(sm, cmd("c", 2, Put("app", b"n", b"x")))
    assert isinstance(retry, ErrorResult) and retry.code == ErrorCode.SESSION_EXPIRED
    assert "session" in retry.message and "expired" in retry.message
    assert sm.revision == revision  # not applied a second time
    # a new session (seq 1) is welcome
    assert isinstance(feed(sm, cmd("c2", 1, Put("app", b"n", b"y")))[0], PutResult)


def test_finding8_sessions_open_before_the_first_expiry_start_their_idle_time_then() -> None:
    """Sessions from before the upgrade have no timestamp: the first expiry starts their clock."""
    sm = upgraded()
    feed(sm, cmd("old", 1, Put("app", b"k", b"v")))
    feed(sm, cmd("", 0, ExpireSessions(1_700_000_000_000, HOUR_MS)))
    assert [c for c, *_ in decode_snapshot(sm.snapshot()).sessions] == ["old"]


def test_finding8_expiry_is_gated_behind_state_machine_version_2() -> None:
    sm = StateMachine()
    feed(sm, cmd("", 0, CreateNamespace("app", "strong")), cmd("c", 1, Put("app", b"k", b"v")))
    before = decode_snapshot(sm.snapshot())
    [result] = feed(sm, cmd("", 0, ExpireSessions(1_700_000_000_000 + 10 * HOUR_MS, 1)))
    assert isinstance(result, ErrorResult) and result.code == ErrorCode.UNSUPPORTED_IN_VERSION
    after = decode_snapshot(sm.snapshot())
    assert after.sessions == before.sessions and after.revision == before.revision
    # under version 1 an unknown session with seq > 1 still applies (old behaviour)
    assert isinstance(feed(sm, cmd("fresh", 7, Put("app", b"k", b"w")))[0], PutResult)


def test_finding8_a_version_1_snapshot_keeps_the_version_1_layout() -> None:
    """Replicas of old and new code hash a version-1 state the same."""
    sm = StateMachine()
    feed(sm, cmd("", 0, CreateNamespace("app", "strong")), cmd("c", 1, Put("app", b"k", b"v")))
    import msgpack

    raw = msgpack.unpackb(sm.snapshot())
    assert raw[0] == 1 and len(raw) == 6 and all(len(s) == 3 for s in raw[5])
    assert StateMachine.restore(sm.snapshot()).snapshot() == sm.snapshot()


def test_finding8_the_snapshot_is_encoded_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    real = sm_module.encode_snapshot

    def recording(state: object) -> bytes:
        threads.append(threading.current_thread().name)
        return real(state)  # type: ignore[arg-type]

    monkeypatch.setattr(sm_module, "encode_snapshot", recording)

    async def main() -> None:
        storage = MemoryStorage()
        driver = StrongDriver(ReplicaConfig("solo", ("solo",)), storage, lambda dst, p: None,
                              rng=random.Random(1), snapshot_every=5)
        await driver.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not (driver.replica.leadership and driver.replica.leadership.active):
                assert asyncio.get_running_loop().time() < deadline, "no leader in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            await driver.propose(cmd("t", 1, CreateNamespace("ns", "strong")), timeout=10)
            for i in range(12):
                await driver.propose(cmd("t", i + 2, Put("ns", b"k", b"v%d" % i)), timeout=10)
            while driver.replica.snapshot_index == 0:
                assert asyncio.get_running_loop().time() < deadline, "no snapshot in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            index, data = driver.replica.snapshot_index, driver.replica.snapshot
            assert data is not None and decode_snapshot(data).applied_index == index
        finally:
            await driver.close()

    asyncio.run(main())
    assert threads and threading.main_thread().name not in threads


def test_finding8_a_node_upgrades_to_version_2_and_answers_an_expired_session_with_a_4xx(
    tmp_path: object,
) -> None:
    from pathlib import Path

    import httpx

    from configsvc.node import Node
    from tests.test_http_api import single_node

    async def main() -> None:
        async with single_node(Path(str(tmp_path))) as (node, http):
            deadline = asyncio.get_running_loop().time() + 10
            while node.strong.sm.version < 2:
                assert asyncio.get_running_loop().time() < deadline, "no upgrade in time"
                await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
            assert isinstance(node, Node)
            headers = {"X-Client-Id": "gone", "X-Client-Seq": "5"}
            r: httpx.Response = await http.put("/v1/kv/app/k", content=b"v", headers=headers)
            assert 400 <= r.status_code < 500
            assert r.json()["error"]["code"] == "session_expired"
            assert (await http.get("/v1/kv/app/k")).status_code == 404  # nothing applied

    asyncio.run(main())

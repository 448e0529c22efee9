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
from pathlib import Path

import httpx
import pytest

from configsvc.config import parse_config
from configsvc.http.app import build_app
from configsvc.node import Node
from configsvc.runtime.strong_driver import StrongDriver
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
from strong.results import ErrorCode, ErrorResult, PutResult, VersionResult
from strong.sm_snapshot import decode_snapshot
from strong.state_machine import StateMachine
from tests.cluster import PEER_SECRET, free_ports
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
    # a new client id is welcome, even one whose first requests never reached the log
    assert isinstance(feed(sm, cmd("c2", 1, Put("app", b"n", b"y")))[0], PutResult)
    assert isinstance(feed(sm, cmd("c3", 4, Put("app", b"n", b"z")))[0], PutResult)


def test_finding8_expired_ids_are_forgotten_after_one_more_ttl() -> None:
    """The table stays bounded: an expired id is remembered for one TTL, then dropped."""
    sm = upgraded()
    t0 = 1_700_000_000_000
    feed(sm, cmd("c", 1, Put("app", b"k", b"v")))
    feed(sm, cmd("", 0, ExpireSessions(t0, HOUR_MS)))
    feed(sm, cmd("", 0, ExpireSessions(t0 + HOUR_MS + 1, HOUR_MS)))
    assert decode_snapshot(sm.snapshot()).expired == (("c", t0 + HOUR_MS + 1),)
    other = StateMachine.restore(sm.snapshot())
    assert other.state_hash() == sm.state_hash()
    feed(sm, cmd("", 0, ExpireSessions(t0 + 2 * HOUR_MS + 2, HOUR_MS)))
    state = decode_snapshot(sm.snapshot())
    assert state.sessions == () and state.expired == ()


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
    assert isinstance(feed(sm, cmd("c", 2, Put("app", b"k", b"w")))[0], PutResult)


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
            index, data = driver.replica.snapshot_index, driver.replica.state_snapshot
            assert data is not None and decode_snapshot(data).applied_index == index
        finally:
            await driver.close()

    asyncio.run(main())
    assert threads and threading.main_thread().name not in threads


def test_finding8_a_node_expires_sessions_and_answers_a_late_retry_with_a_4xx(
    tmp_path: Path,
) -> None:
    """Real node, short TTL: the leader upgrades to version 2, expires the idle
    session, and a retry of its write gets 400 session_expired and changes nothing."""

    async def main() -> None:
        api, peer = free_ports(2)
        config = parse_config({
            "data_root": str(tmp_path),
            "nodes": [{"id": "n1", "api_port": api, "peer_port": peer}],
            "namespaces": [{"name": "app", "consistency": "strong"}],
            "state_machine": {"session_ttl": 0.3, "session_expiry_interval": 0.05},
            "security": {"peer_secret": PEER_SECRET},
        })
        node = Node(config, "n1", initial_cluster_state="new")
        await node.start()
        transport = httpx.ASGITransport(app=build_app(node))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://n1") as http:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 10
                while not (node.namespaces_ready and node.strong.sm.version >= 2):
                    assert loop.time() < deadline, "no leader or no upgrade in time"
                    await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
                headers = {"X-Client-Id": "c1", "X-Client-Seq": "1"}
                assert (await http.put("/v1/kv/app/k", content=b"v", headers=headers)).status_code == 200
                while "c1" in {c for c, *_ in decode_snapshot(node.strong.sm.snapshot()).sessions}:
                    assert loop.time() < deadline, "the session never expired"
                    await asyncio.sleep(0.01)  # polling an in-process condition with a deadline
                r = await http.put("/v1/kv/app/k", content=b"v", headers=headers)
                assert r.status_code == 400 and r.json()["error"]["code"] == "session_expired"
                assert (await http.get("/v1/kv/app/k")).json()["kv"]["version"] == 1
        finally:
            await node.close()

    asyncio.run(main())

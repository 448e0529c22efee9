"""Service instances through the strong driver and a real node.

- ``StrongDriver.read`` / ``read_stale`` serve ``ListInstances`` like ``Get``.
- The leader proposes ``ExpireInstances`` with its wall time only when an
  instance would change, and not within the grace period after it became
  leader; once the grace has passed, a silent TTL instance turns critical on
  the node by itself.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from configsvc.config import parse_config
from configsvc.node import Node
from configsvc.runtime.strong_driver import StrongDriver
from strong.commands import (
    Command,
    CreateNamespace,
    ListInstances,
    Op,
    RegisterInstance,
    SetVersion,
    encode_command,
)
from strong.config import ReplicaConfig
from strong.results import InstancesResult, ServiceWriteResult
from strong.sm_snapshot import decode_snapshot
from strong.state_machine import StateMachine
from tests.cluster import PEER_SECRET, free_ports
from tests.test_strong_driver import MemoryStorage


def instance(instance_id: str, *, ttl_ms: int, now_ms: int) -> RegisterInstance:
    return RegisterInstance(
        "app", "web", instance_id, "127.0.0.1", 8080, (), (), "n1", b"", ttl_ms, 0, "passing", "",
        now_ms,
    )  # fmt: skip


def cmd(op: Op) -> bytes:
    """An anonymous command: a client id of its own (the driver matches results by id)."""
    return encode_command(Command(f"test-{uuid.uuid4().hex}", 0, op))


async def until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.01)  # polling an in-process condition with a deadline


def test_the_driver_serves_list_instances_as_a_linearizable_and_a_stale_read() -> None:
    async def main() -> None:
        driver = StrongDriver(ReplicaConfig("solo", ("solo",)), MemoryStorage(), lambda dst, p: None,
                              rng=random.Random(1))  # fmt: skip
        await driver.start()
        try:
            await until(lambda: driver.is_leader and driver.replica.leadership is not None
                        and driver.replica.leadership.active, "no leader in time")  # fmt: skip
            for op in (SetVersion(3), CreateNamespace("app", "strong")):
                await driver.propose(cmd(op), timeout=10)
            written = await driver.propose(cmd(instance("w1", ttl_ms=0, now_ms=1)), timeout=10)
            assert isinstance(written, ServiceWriteResult) and written.changed
            read = await driver.read(ListInstances("app", "web"), timeout=10)
            assert isinstance(read, InstancesResult) and read.index == written.revision
            assert [r.instance_id for r in read.instances] == ["w1"]
            assert driver.read_stale(ListInstances("app", "")) == read
        finally:
            await driver.close()

    asyncio.run(main())


def _services_clock(sm: StateMachine) -> int:
    [(_, table)] = decode_snapshot(sm.snapshot()).services
    return table.clock


def _status(sm: StateMachine, instance_id: str) -> str:
    result = sm.read(ListInstances("app", "web"))
    assert isinstance(result, InstancesResult)
    return next(r.status for r in result.instances if r.instance_id == instance_id)


def test_the_leader_expires_silent_instances_only_after_its_grace_and_only_when_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance with a 1 ms TTL is due at once; the leader still leaves it
    alone during its grace period, and proposes nothing while nothing is due."""
    grace = {"seconds": 0.0}
    monkeypatch.setattr(Node, "instance_expiry_interval", 0.05)
    monkeypatch.setattr(Node, "instance_expiry_grace", lambda self: grace["seconds"])

    async def main() -> None:
        api, peer = free_ports(2)
        config = parse_config({
            "data_root": str(tmp_path),
            "nodes": [{"id": "n1", "api_port": api, "peer_port": peer}],
            "namespaces": [{"name": "app", "consistency": "strong"}],
            "state_machine": {"session_expiry_interval": 0.05},
            "security": {"peer_secret": PEER_SECRET},
        })  # fmt: skip
        node = Node(config, "n1", initial_cluster_state="new")
        await node.start()
        try:

            def sm() -> StateMachine:  # the driver may swap it (snapshot install)
                return node.strong.sm

            await until(lambda: node.namespaces_ready and sm().version >= 3, "no upgrade to 3")
            wall = int(time.time() * 1000)
            await node.strong.propose(cmd(instance("quiet", ttl_ms=0, now_ms=wall)), timeout=10)

            def sessions_clock() -> int:
                return decode_snapshot(sm().snapshot()).clock

            # Nothing is due: several maintenance rounds pass and no ExpireInstances
            # (which would move the service table's clock) is proposed.
            await until(lambda: sessions_clock() > wall + 200, "no maintenance rounds")
            assert _services_clock(sm()) == wall

            grace["seconds"] = 3600.0
            await node.strong.propose(cmd(instance("silent", ttl_ms=1, now_ms=wall)), timeout=10)
            assert sm().instances_due(wall + 2)
            seen = sessions_clock()
            await until(lambda: sessions_clock() > seen + 200, "no maintenance rounds")
            assert _status(sm(), "silent") == "passing"  # within the grace: left alone

            grace["seconds"] = 0.0
            await until(lambda: _status(sm(), "silent") == "critical", "never expired")
            assert _status(sm(), "quiet") == "passing"
            assert _services_clock(sm()) > wall
        finally:
            await node.close()

    asyncio.run(main())

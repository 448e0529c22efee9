"""The per-node change index of the eventual store (``eventual.change_index``).

It grows by one per visible change applied on a node (local write, remote
event, full-state merge, expiry, an instance going silent or heard again),
per namespace too, and never goes backwards on one node — across crashes and
restarts, snapshots and compaction included. A wiped node is a new node.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.node import Node
from configsvc.runtime.disk_storage import EVENTUAL_RECORDS
from configsvc.runtime.eventual_driver import EventualDriver
from configsvc.runtime.framing import frame
from configsvc.sim.eventual_net import Net
from configsvc.sim.eventual_storage import EventualSimStorage
from eventual.change_index import ChangeIndex
from eventual.config import ReplicaConfig
from eventual.instances import InstanceInfo
from eventual.records import (
    IndexRecord,
    Record,
    Snapshot,
    SnapshotRecord,
)
from eventual.replica import Replica
from eventual.requests import (
    Delete,
    Get,
    Heartbeat,
    Instances,
    InstancesResult,
    List,
    ListResult,
    Put,
    ReadResult,
    Register,
    WriteResult,
)
from eventual.storage import recover
from tests.test_http_api import run

INFO = InstanceInfo(address="10.0.0.1", port=80, ttl=1.0, deregister_after=0.0)


def ok(net: Net, node: str, request: Put | Delete | Register | Heartbeat) -> WriteResult:
    result = net.call(node, request)
    assert isinstance(result, WriteResult), result
    return result


def test_local_and_remote_changes_count_once_each_per_node_and_per_namespace() -> None:
    net = Net(["n1", "n2"])
    n1, n2 = net.replicas["n1"], net.replicas["n2"]
    assert (n1.change_index, n1.namespace_index("cfg")) == (0, 0)
    ok(net, "n1", Put("cfg", "a", b"1"))
    ok(net, "n1", Put("other", "x", b"1"))
    ok(net, "n1", Put("cfg", "b", b"2"))
    net.advance(0.5)
    assert (n1.change_index, n1.namespace_index("cfg"), n1.namespace_index("other")) == (3, 3, 2)
    assert n2.change_index == 3 and n2.namespace_index("other") == 2
    assert n1.namespace_index("never") == 0
    ok(net, "n2", Delete("cfg", "a"))
    net.advance(0.5)
    assert n1.change_index == 4 == n1.namespace_index("cfg")


def test_a_change_that_shows_nothing_new_is_not_counted() -> None:
    net = Net(["n1"])
    n1 = net.replicas["n1"]
    ok(net, "n1", Delete("cfg", "absent"))  # removes nothing
    assert n1.change_index == 0
    ok(net, "n1", Register("svc", "api", "i1", INFO))
    assert n1.change_index == 1
    ok(net, "n1", Heartbeat("svc", "api", "i1"))  # only the heartbeat time moves
    ok(net, "n1", Register("svc", "api", "i1", INFO))  # the same record again
    assert n1.change_index == 1


def test_an_instance_going_silent_and_heard_again_moves_the_index() -> None:
    net = Net(["n1"])
    n1 = net.replicas["n1"]
    ok(net, "n1", Register("svc", "api", "i1", INFO))
    net.advance(0.8)
    assert n1.change_index == 1
    net.advance(0.6)  # silent beyond its ttl: critical
    assert n1.change_index == 2 == n1.namespace_index("svc")
    net.advance(1.0)  # still silent: counted once
    assert n1.change_index == 2
    ok(net, "n1", Heartbeat("svc", "api", "i1"))  # passing again
    assert n1.change_index == 3


def test_read_results_carry_the_namespace_index_as_of_the_answer() -> None:
    net = Net(["n1"])
    ok(net, "n1", Put("cfg", "a", b"1"))
    ok(net, "n1", Register("svc", "api", "i1", INFO))
    r = net.call("n1", Get("cfg", "a"))
    listed = net.call("n1", List("cfg", ""))
    inst = net.call("n1", Instances("svc", "api"))
    assert isinstance(r, ReadResult) and r.index == 1
    assert isinstance(listed, ListResult) and listed.index == 1
    assert isinstance(inst, InstancesResult) and inst.index == 2


def test_the_index_never_goes_backwards_across_crashes_snapshots_and_compaction() -> None:
    net = Net(["n1", "n2"], index_block=3, snapshot_every=4)
    shown = 0
    for i in range(30):
        ok(net, "n1" if i % 3 else "n2", Put("cfg", f"k{i % 5}", b"%d" % i))
        net.advance(0.1)
        n1 = net.replicas["n1"]
        assert n1.change_index >= shown and n1.namespace_index("cfg") >= shown
        shown = n1.change_index
        if i % 7 == 6:
            net.crash("n1")
            net.restart("n1")
            assert net.replicas["n1"].change_index >= shown
            assert net.replicas["n1"].namespace_index("cfg") >= shown
            assert net.replicas["n1"].namespace_index("untouched") >= shown
    records = net.storage["n1"].load()
    assert any(isinstance(r, SnapshotRecord) and r.snapshot.change_limit > 0 for r in records)


def test_a_new_or_wiped_node_starts_at_zero() -> None:
    net = Net(["n1"])
    ok(net, "n1", Put("cfg", "a", b"1"))
    net.crash("n1")
    net.restart("n1", wipe=True)
    assert net.replicas["n1"].change_index == 0


def test_reservations_come_one_per_block_and_replay_takes_the_highest() -> None:
    index = ChangeIndex(0, 4)
    emitted = [index.bump("ns") for _ in range(10)]
    assert [r.limit for r in emitted if r is not None] == [5, 10]
    state = recover([IndexRecord(10), IndexRecord(5)])
    assert state.change_limit == 10
    assert EVENTUAL_RECORDS.decode_one(EVENTUAL_RECORDS.encode(IndexRecord(7))) == IndexRecord(7)


def test_a_snapshot_written_before_the_change_index_still_decodes() -> None:
    old = frame(["S", [], [], 0, [], []])  # the six-item snapshot of before
    record = EVENTUAL_RECORDS.decode_one(old)
    assert isinstance(record, SnapshotRecord) and record.snapshot.change_limit == 0
    assert EVENTUAL_RECORDS.decode_one(EVENTUAL_RECORDS.encode(SnapshotRecord(Snapshot((), (), 0, (), (), 9)))) == \
        SnapshotRecord(Snapshot((), (), 0, (), (), 9))


class SlowSync:
    """Storage whose fsync waits for the test's go-ahead (and can then 'crash')."""

    def __init__(self) -> None:
        self.inner = EventualSimStorage()
        self.gate = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def append(self, records: list[Record]) -> None:
        self.inner.append(records)

    def sync(self) -> None:
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(self.gate.wait(), self.loop).result(10)
        self.inner.sync()

    def load(self) -> list[Record]:
        return self.inner.load()


def test_the_driver_never_shows_an_index_above_its_durable_reservation() -> None:
    async def main() -> None:
        storage = SlowSync()
        storage.loop = asyncio.get_running_loop()
        config = ReplicaConfig("n1", ("n1",), index_block=2)
        driver = EventualDriver(config, storage, lambda dst, data: None,
                                rng=random.Random(1))
        await driver.start()
        try:
            storage.gate.set()
            await driver.request(Put("ev", "a", b"1"), None, timeout=5)
            assert driver.change_index == 1 == driver.namespace_index("ev")
            storage.gate.clear()
            writes = [asyncio.create_task(driver.request(Put("ev", f"k{i}", b"v"), None, 5))
                      for i in range(5)]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while driver.replica.change_index < 6:  # applied in memory, fsync held
                assert loop.time() < deadline
                await asyncio.sleep(0.01)
            # the core is past its reservation (3), which is not durable yet: shown at most 3
            assert driver.change_index <= 3 and driver.namespace_index("ev") <= 3
            storage.inner.crash()  # the held batch is lost
            restarted = Replica(config, recover(storage.inner.load()), 0.0, random.Random(2))
            assert restarted.change_index >= driver.change_index
            storage.gate.set()
            await asyncio.gather(*writes)
            assert driver.change_index == 6
        finally:
            storage.gate.set()
            await driver.close()

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["put", "del", "crash", "tick", "remote"]), max_size=40),
       st.integers(1, 5))
def test_no_sequence_of_changes_and_crashes_moves_the_index_back(ops: list[str], block: int) -> None:
    net = Net(["n1", "n2"], index_block=block, snapshot_every=3)
    shown = {"all": 0, "cfg": 0}
    for i, op in enumerate(ops):
        if op == "put":
            ok(net, "n1", Put("cfg", f"k{i % 3}", b"v"))
        elif op == "del":
            ok(net, "n1", Delete("cfg", f"k{i % 3}"))
        elif op == "remote":
            ok(net, "n2", Put("cfg", f"k{i % 3}", b"r"))
        elif op == "crash":
            net.crash("n1")
            net.restart("n1")
        net.advance(0.05)
        n1 = net.replicas["n1"]
        now = {"all": n1.change_index, "cfg": n1.namespace_index("cfg")}
        assert all(now[k] >= shown[k] for k in shown), (now, shown)
        shown = now


def test_the_native_api_returns_the_namespace_index_with_eventual_reads(tmp_path: Path) -> None:
    async def scenario(node: Node, http: httpx.AsyncClient) -> None:
        await http.put("/v1/kv/ev/a", content=b"1")
        await http.put("/v1/kv/ev/b", content=b"2")
        got = await http.get("/v1/kv/ev/a")
        listed = await http.get("/v1/kv/ev", params={"prefix": ""})
        assert got.headers["X-Configsvc-Change-Index"] == "2"
        assert listed.headers["X-Configsvc-Change-Index"] == "2"
        assert node.eventual.namespace_index("ev") == 2 == node.eventual.change_index

    run(tmp_path, scenario)

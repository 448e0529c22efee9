"""Full state transfer in byte-bounded chunks (issue 7, finding 2).

A full state above the transport's frame cap is rejected by its receiver, so
a large namespace could never be repaired. Chunks are bounded in bytes, and
a receiver merges only a whole transfer: a partial state never makes unseen
keys look deleted, nor shows a write without its causal past.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.sim.eventual_net import Net
from eventual.codec import canonical_state, encode
from eventual.config import ReplicaConfig
from eventual.dots import Sibling, vv_to_wire
from eventual.full_state import FullStateAssembly, split_full_state
from eventual.messages import FullState
from eventual.replica import Replica
from eventual.requests import Delete, Get, Put, ReadResult, WriteResult
from eventual.storage import DurableState

CAP = 2048


def put(net: Net, node: str, key: str, value: bytes) -> WriteResult:
    result = net.call(node, Put("cfg", key, value))
    assert isinstance(result, WriteResult), result
    return result


def test_finding2_a_large_full_state_travels_in_chunks_within_the_byte_cap() -> None:
    net = Net(["n1", "n2", "n3"], gc_horizon=2.0, max_full_state_bytes=CAP)
    put(net, "n1", "gone", b"x")
    net.advance(0.5)
    net.isolate("n3")
    for i in range(120):
        put(net, "n1", f"key/{i:04d}", b"v" * 60)
    seen = net.call("n1", Get("cfg", "gone"))
    assert isinstance(seen, ReadResult)
    assert isinstance(net.call("n1", Delete("cfg", "gone", seen.context)), WriteResult)
    net.advance(3.0)  # n3 is away beyond the horizon: the others collect their logs
    net.heal()
    net.sent.clear()
    net.advance(2.0)
    chunks = [e.message for e in net.sent
              if isinstance(e.message, FullState) and e.dst == "n3"]
    assert len(chunks) > 3
    assert max(len(encode(c)) for c in chunks) <= CAP
    assert net.converged()
    read = net.call("n3", Get("cfg", "gone"))
    assert isinstance(read, ReadResult) and read.siblings == ()  # the delete came too
    assert len(net.replicas["n3"].store.entries) == 120


def _replica(node: str, keys: int, seed: int) -> Replica:
    r = Replica(ReplicaConfig(node, ("a", "b")), DurableState(), 0.0, random.Random(seed))
    for i in range(keys):
        r.submit(i, Put("cfg", f"{node}/{i:03d}", b"w" * 40), None, 0.0)
    r.ready()
    return r


def test_finding2_a_partial_transfer_changes_nothing_and_the_whole_one_merges() -> None:
    a, b = _replica("a", 30, 1), _replica("b", 30, 2)
    whole = FullState(b.replica, vv_to_wire(b.vv), tuple(sorted(
        (k, tuple(sorted(s.items()))) for k, s in b.store.entries.items())), b.hlc, False)
    chunks = split_full_state(whole, 1024)
    assert len(chunks) > 2 and all(len(encode(c)) <= 1024 for c in chunks)
    before = canonical_state(a.store)
    last, rest = chunks[-1], chunks[:-1]
    for c in [*reversed(rest), rest[0]]:  # out of order, one duplicated
        a.step("b", c, 1.0)
    assert canonical_state(a.store) == before  # a's keys are not treated as deleted
    a.step("b", last, 1.1)
    assert len(a.store.entries) == 60 and a.vv == {**a.vv, **b.vv}


def test_a_chunk_of_a_newer_transfer_replaces_the_staged_one() -> None:
    b = _replica("b", 10, 2)
    old = FullState(b.replica, vv_to_wire(b.vv), (), b.hlc, False, part=0, parts=2)
    new = FullState(b.replica, vv_to_wire({**b.vv, "x": 1}), (), b.hlc, False, part=1, parts=2)
    assembly = FullStateAssembly()
    assert assembly.add("b", old) is None
    assert assembly.add("b", new) is None  # not a piece of the old transfer
    assert len(assembly) == 1


names = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names, names, st.binary(max_size=300), st.integers(1, 2**64 - 1),
                          st.integers(0, 2**64 - 1)), min_size=1, max_size=12, unique_by=lambda t: t[1]),
       st.integers(1024, 4096))
def test_no_chunk_encodes_above_the_cap(items: list[tuple[str, str, bytes, int, int]],
                                        cap: int) -> None:
    entries = tuple(sorted(
        (("ns", "kv", name), ((("actor." + actor, n), Sibling(value, hlc)),))
        for actor, name, value, n, hlc in items))
    vv = tuple(sorted({"actor." + a: 2**64 - 1 for a, *_ in items}.items()))
    chunks = split_full_state(FullState("n1.x", vv, entries, 2**64 - 1, True), cap)
    assert tuple(e for c in chunks for e in c.entries) == entries
    for chunk in chunks:  # an entry larger than the cap travels alone
        assert len(encode(chunk)) <= cap or len(chunk.entries) == 1

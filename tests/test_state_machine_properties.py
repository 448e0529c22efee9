"""Properties of the state machine over random command streams.

- Determinism: replicas fed the same slots end with the same ``state_hash``
  and returned the same results.
- Snapshots: ``restore(snapshot())`` round-trips byte for byte, and a replica
  restored mid-stream then fed the rest ends where one that never stopped does.
- The KV semantics agree with a plain dict (the reference model).
- Garbage never crashes ``restore``: it raises ``MalformedSnapshot`` only.
- A refused command (an ``ErrorResult`` or ``CasFailed``) changes nothing but
  ``applied_index``; logs of every op kind (``tests/determinism_replay.py``)
  replay alike and survive a snapshot mid-stream. Across processes and hash
  seeds: ``tests/test_determinism_guard.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strong.commands import (
    Command,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    ExpireSessions,
    Get,
    Noop,
    Op,
    Put,
    Range,
    SetVersion,
    Txn,
    encode_command,
)
from strong.results import CasFailed, ErrorResult, GetResult, PutResult
from strong.sm_snapshot import SnapshotState, encode_snapshot
from strong.state_machine import MalformedSnapshot, StateMachine, UnsupportedVersion
from tests.determinism_replay import OpGenerator, generate_log, replay

names = st.sampled_from(["a", "b", "e"])
keys = st.sampled_from([b"k", b"k1", b"k2", b"x"])
values = st.binary(max_size=3)
small = st.integers(min_value=0, max_value=6)

compares = st.one_of(
    st.builds(
        Compare, names, keys, st.just("value"), st.sampled_from(["==", "!=", "<", ">"]), values
    ),
    st.builds(
        Compare,
        names,
        keys,
        st.sampled_from(["mod_revision", "create_revision", "version"]),
        st.sampled_from(["==", "!=", "<", ">"]),
        small,
    ),
)
txn_ops = st.one_of(
    st.builds(Put, names, keys, values, small, st.none() | small),
    st.builds(Delete, names, keys, st.none() | small),
    st.builds(DeletePrefix, names, st.sampled_from([b"", b"k", b"x"])),
    st.builds(Get, names, keys),
    st.builds(Range, names, st.sampled_from([b"", b"k"]), small),
)
ops: st.SearchStrategy[Op] = st.one_of(
    txn_ops,
    txn_ops,
    st.builds(
        Txn,
        st.lists(compares, max_size=2).map(tuple),
        st.lists(txn_ops, max_size=3).map(tuple),
        st.lists(txn_ops, max_size=3).map(tuple),
    ),
    st.builds(CreateNamespace, names, st.sampled_from(["strong", "eventual"])),
    st.builds(DeleteNamespace, names),
    st.just(Noop()),
    st.just(SetVersion(1)),
    st.just(SetVersion(2)),
    st.just(SetVersion(3)),
    st.builds(ExpireSessions, st.integers(1, 10), st.integers(1, 4)),
)
commands = st.builds(Command, st.sampled_from(["", "c1", "c2"]), st.integers(0, 4), ops)
entries = st.one_of(commands.map(encode_command), st.just(b"\xc1junk"))
slots = st.lists(st.lists(entries, max_size=4).map(tuple), min_size=1, max_size=25)
SETUP = tuple(
    encode_command(Command("", 0, op))
    for op in (CreateNamespace("a", "strong"), CreateNamespace("e", "eventual"))
)


def feed(sm: StateMachine, batches: list[tuple[bytes, ...]]) -> list[object]:
    results: list[object] = []
    for batch in batches:
        results.append(sm.apply(sm.applied_index + 1, batch))
    return results


def replicas_agree(batches: list[tuple[bytes, ...]]) -> None:
    """Two machines fed ``batches`` return the same results and end equal."""
    one, two = StateMachine(), StateMachine()
    assert feed(one, batches) == feed(two, batches)
    assert one.state_hash() == two.state_hash()
    assert one.snapshot() == two.snapshot()


def snapshot_mid_stream_matches(batches: list[tuple[bytes, ...]], cut: int) -> None:
    """Restoring the snapshot taken after ``batches[:cut]`` and feeding the rest
    ends (results, hash, namespaces) where never snapshotting does."""
    cut = min(cut, len(batches))
    straight = StateMachine()
    straight_results = feed(straight, batches)

    first = StateMachine()
    early = feed(first, batches[:cut])
    data = first.snapshot()
    restored = StateMachine.restore(data)
    assert restored.snapshot() == data
    late = feed(restored, batches[cut:])

    assert early + late == straight_results
    assert restored.state_hash() == straight.state_hash()
    assert restored.namespaces() == straight.namespaces()


@given(slots)
def test_replicas_fed_the_same_slots_agree(batches: list[tuple[bytes, ...]]) -> None:
    replicas_agree([SETUP, *batches])


@given(slots, st.integers(min_value=0, max_value=30))
def test_snapshot_mid_stream_then_continuing_matches_never_snapshotting(
    batches: list[tuple[bytes, ...]], cut: int
) -> None:
    snapshot_mid_stream_matches([SETUP, *batches], cut)


@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "delete", "get"]), keys, values),
        max_size=40,
    )
)
@settings(max_examples=50)
def test_puts_deletes_and_gets_behave_like_a_dict(script: list[tuple[str, bytes, bytes]]) -> None:
    sm = StateMachine()
    sm.apply(1, SETUP)
    model: dict[bytes, bytes] = {}
    for verb, key, value in script:
        op: Op = Put("a", key, value) if verb == "put" else Delete("a", key)
        if verb == "get":
            op = Get("a", key)
        (applied,) = sm.apply(sm.applied_index + 1, (encode_command(Command("", 0, op)),))
        result = applied.result
        if verb == "put":
            assert isinstance(result, PutResult)
            assert (result.prev.value if result.prev else None) == model.get(key)
            model[key] = value
        elif verb == "delete":
            model.pop(key, None)
        else:
            assert isinstance(result, GetResult)
            assert (result.kv.value if result.kv else None) == model.get(key)
    everything = sm.read(Range("a", b""))
    assert [(x.key, x.value) for x in everything.kvs] == sorted(model.items())  # type: ignore[union-attr]


@given(st.binary(max_size=300))
def test_restore_of_garbage_raises_malformed_snapshot_only(data: bytes) -> None:
    try:
        sm = StateMachine.restore(data)
    except MalformedSnapshot:
        return
    assert sm.snapshot() == data


def test_restore_rejects_a_non_canonical_snapshot() -> None:
    sm = StateMachine()
    sm.apply(1, SETUP)
    sm.apply(2, tuple(encode_command(Command("", 0, Put("a", k, b"v"))) for k in (b"x", b"y")))
    data = sm.snapshot()
    assert StateMachine.restore(data).snapshot() == data
    swapped = data.replace(b"\xc4\x01x", b"\xc4\x01_").replace(b"\xc4\x01y", b"\xc4\x01x")
    swapped = swapped.replace(b"\xc4\x01_", b"\xc4\x01y")
    with pytest.raises(MalformedSnapshot, match="increasing"):
        StateMachine.restore(swapped)


def test_restore_refuses_a_version_this_code_cannot_run() -> None:
    data = encode_snapshot(SnapshotState(0, 7, 0, (), ()))
    with pytest.raises(UnsupportedVersion):
        StateMachine.restore(data)


def test_state_hash_sees_every_part_of_the_state() -> None:
    base = StateMachine()
    base.apply(1, SETUP)
    hashes = {base.state_hash()}
    steps: list[tuple[Op, str, int]] = [
        (Put("a", b"k", b"v"), "", 0),
        (Noop(), "c", 1),  # only the client table changes
        (Put("a", b"k", b"v", flags=1), "", 0),
    ]
    for op, client, seq in steps:
        base.apply(base.applied_index + 1, (encode_command(Command(client, seq, op)),))
        hashes.add(base.state_hash())
    assert len(hashes) == 4


# --- refused commands (rule 3) over logs of every op kind (tests/determinism_replay.py)


def refused_changes_nothing(sm: StateMachine, op: Op) -> bool:
    """Apply ``op`` (anonymous: no session to remember it) after ``sm``'s state; if it
    is refused, only ``applied_index`` may move. Returns whether it was refused."""
    before = sm.snapshot_state()
    (applied,) = sm.apply(sm.applied_index + 1, (encode_command(Command("", 0, op)),))
    if not isinstance(applied.result, ErrorResult | CasFailed):
        return False
    assert sm.snapshot() == encode_snapshot(replace(before, applied_index=sm.applied_index)), op
    return True


@given(st.integers(0, 2**32), st.integers(0, 80), st.lists(st.integers(0, 2**32), min_size=1, max_size=8))
@settings(max_examples=60)
def test_a_refused_command_changes_nothing_but_the_applied_index(
    seed: int, length: int, op_seeds: list[int]
) -> None:
    _, _, sm = replay(generate_log(seed, slots=length))
    for op_seed in op_seeds:
        refused_changes_nothing(sm, OpGenerator(op_seed).op())


@given(st.integers(0, 2**32), st.integers(0, 120))
@settings(max_examples=40)
def test_every_op_kind_log_replays_alike_and_survives_a_snapshot(seed: int, cut: int) -> None:
    log = generate_log(seed, slots=120)
    replicas_agree(log)
    snapshot_mid_stream_matches(log, cut)


def test_refusal_property_catches_a_refusal_that_changes_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted: a write to a missing namespace bumps the revision before refusing."""
    original = StateMachine._key_op

    def leaky(self: StateMachine, op: object) -> object:
        result = original(self, op)  # type: ignore[arg-type]
        if isinstance(result, ErrorResult):
            self.revision += 1
        return result

    sm = StateMachine()
    sm.apply(1, SETUP)
    assert refused_changes_nothing(sm, Put("missing", b"k", b"v"))
    monkeypatch.setattr(StateMachine, "_key_op", leaky)
    with pytest.raises(AssertionError):
        refused_changes_nothing(sm, Put("missing", b"k", b"v"))

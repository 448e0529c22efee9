"""State-machine version 5 (``strong.state_machine`` rule 11) and capped ranges (rule 12).

Version 5 is a bug fix that changes apply behaviour: a read-only command is no
longer remembered in its client's session. The same log applied under version 3
and under version 5 gives different results and different states, which is why
it ships as a version that only the replicated ``SetVersion`` turns on.
"""

from __future__ import annotations

import pytest

from strong.commands import Command, encode_command
from strong.ops import CreateNamespace, Get, Put, Range, SetVersion, Txn
from strong.results import GetResult, NoopResult, RangeResult, Result, TxnResult, VersionResult
from strong.state_machine import (
    SERVICES_VERSION,
    UNREMEMBERED_READS_VERSION,
    StateMachine,
    UnsupportedVersion,
)


def apply(sm: StateMachine, op: object, client: str = "", seq: int = 0) -> Result:
    (applied,) = sm.apply(sm.applied_index + 1, (encode_command(Command(client, seq, op)),))  # type: ignore[arg-type]
    return applied.result


def machine(version: int) -> StateMachine:
    sm = StateMachine()
    assert apply(sm, SetVersion(version)) == VersionResult(version)
    apply(sm, CreateNamespace("cfg", "strong"))
    for i in range(3):
        apply(sm, Put("cfg", b"k%d" % i, b"v" * 100))
    return sm


def remembered(sm: StateMachine, client: str) -> Result:
    (result,) = [r for c, _, r, _ in sm.snapshot_state().sessions if c == client]
    return result


def test_below_version_5_a_read_only_txn_is_remembered_whole_and_replayed() -> None:
    sm = machine(SERVICES_VERSION)
    read = Txn((), (Range("cfg", b"k"),))
    first = apply(sm, read, "c", 1)
    assert isinstance(first, TxnResult) and len(first.responses[0].kvs) == 3  # type: ignore[union-attr]
    assert remembered(sm, "c") == first
    apply(sm, Put("cfg", b"k9", b"new"))
    assert apply(sm, read, "c", 1) == first  # the old answer, from the session


def test_from_version_5_a_read_is_not_remembered_and_a_retry_reads_again() -> None:
    sm = machine(UNREMEMBERED_READS_VERSION)
    read = Txn((), (Range("cfg", b"k"),))
    first = apply(sm, read, "c", 1)
    assert isinstance(first, TxnResult)
    assert remembered(sm, "c") == NoopResult()
    apply(sm, Put("cfg", b"k9", b"new"))
    again = apply(sm, read, "c", 1)
    assert isinstance(again, TxnResult) and len(again.responses[0].kvs) == 4  # type: ignore[union-attr]
    # a write is still remembered and never applied twice
    write = apply(sm, Put("cfg", b"w", b"1"), "c", 2)
    revision = sm.revision
    assert apply(sm, Put("cfg", b"w", b"1"), "c", 2) == write and sm.revision == revision
    assert isinstance(apply(sm, Get("cfg", b"w"), "c", 3), GetResult)
    assert remembered(sm, "c") == NoopResult()


def test_the_same_log_gives_different_states_under_3_and_5() -> None:
    """Why version 5 needs the gate: two binaries applying one log under different
    rules would diverge."""
    old, new = machine(SERVICES_VERSION), machine(SERVICES_VERSION)
    new.version = UNREMEMBERED_READS_VERSION  # what a binary applying v5 rules unasked would do
    for sm in (old, new):
        apply(sm, Range("cfg", b"k"), "c", 1)
    assert old.state_hash() != new.state_hash()


def test_set_version_5_migrates_remembered_reads_and_keeps_the_rest() -> None:
    sm = machine(SERVICES_VERSION)
    apply(sm, Txn((), (Range("cfg", b"k"),)), "reader", 1)
    apply(sm, Get("cfg", b"k1"), "getter", 7)
    write = apply(sm, Put("cfg", b"k1", b"x"), "writer", 4)
    snapshot_before = len(sm.snapshot())
    assert apply(sm, SetVersion(UNREMEMBERED_READS_VERSION)) == VersionResult(5)
    assert remembered(sm, "reader") == remembered(sm, "getter") == NoopResult()
    assert remembered(sm, "writer") == write
    assert len(sm.snapshot()) < snapshot_before
    # the migration is deterministic: a replica restored before it and migrated agrees
    other = StateMachine.restore(_replay_to_switch())
    apply(other, SetVersion(UNREMEMBERED_READS_VERSION))
    assert other.state_hash() == sm.state_hash()
    # sequence numbers survive: an older seq is still stale
    stale = apply(sm, Put("cfg", b"k1", b"y"), "getter", 6)
    assert getattr(stale, "code", None) == "stale_sequence"


def _replay_to_switch() -> bytes:
    sm = machine(SERVICES_VERSION)
    apply(sm, Txn((), (Range("cfg", b"k"),)), "reader", 1)
    apply(sm, Get("cfg", b"k1"), "getter", 7)
    apply(sm, Put("cfg", b"k1", b"x"), "writer", 4)
    return sm.snapshot()


def test_a_capped_machine_refuses_a_version_above_its_cap_and_its_snapshots() -> None:
    capped = StateMachine(supported=range(1, SERVICES_VERSION + 1))
    before = capped.state_hash()
    batch = (encode_command(Command("", 0, SetVersion(UNREMEMBERED_READS_VERSION))),)
    with pytest.raises(UnsupportedVersion, match=r"supports 1\.\.3"):
        capped.apply(1, batch)
    assert capped.state_hash() == before and capped.applied_index == 0
    v5 = machine(UNREMEMBERED_READS_VERSION).snapshot()
    with pytest.raises(UnsupportedVersion, match="version 5"):
        StateMachine.restore(v5, supported=range(1, SERVICES_VERSION + 1))
    assert StateMachine.restore(v5).version == UNREMEMBERED_READS_VERSION


def test_a_restored_machine_keeps_its_cap() -> None:
    old = machine(SERVICES_VERSION).snapshot()
    restored = StateMachine.restore(old, supported=range(1, SERVICES_VERSION + 1))
    with pytest.raises(UnsupportedVersion):
        apply(restored, SetVersion(UNREMEMBERED_READS_VERSION))


def test_a_range_read_result_stays_small_in_a_v5_session() -> None:
    sm = machine(UNREMEMBERED_READS_VERSION)
    result = apply(sm, Range("cfg", b""), "c", 1)
    assert isinstance(result, RangeResult) and len(result.kvs) == 3
    assert remembered(sm, "c") == NoopResult()

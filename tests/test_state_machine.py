"""The state machine fed by hand: every op, every error, dedup, txn, versions.

Each test drives ``StateMachine.apply`` through encoded commands, exactly as
the replica does, one slot per call unless a test is about batches.
"""

from __future__ import annotations

import pytest

from strong.commands import (
    Command,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    Get,
    Noop,
    Op,
    Put,
    Range,
    SetVersion,
    Txn,
    _decode_cached,
    encode_command,
)
from strong.results import (
    CasFailed,
    DeleteResult,
    ErrorCode,
    ErrorResult,
    GetResult,
    KeyValue,
    NamespaceDeleted,
    NamespaceInfo,
    NamespaceResult,
    NoopResult,
    PutResult,
    RangeResult,
    Result,
    TxnResult,
    VersionResult,
)
from strong.state_machine import SUPPORTED_VERSIONS, StateMachine, UnsupportedVersion


class Driver:
    """Applies one command per slot, like a replica with batches of one."""

    def __init__(self) -> None:
        self.sm = StateMachine()

    def __call__(self, op: Op, client: str = "", seq: int = 0) -> Result:
        slot = self.sm.applied_index + 1
        (applied,) = self.sm.apply(slot, (encode_command(Command(client, seq, op)),))
        assert (applied.client_id, applied.seq) == (client, seq)
        return applied.result


@pytest.fixture
def run() -> Driver:
    driver = Driver()
    assert isinstance(driver(CreateNamespace("cfg", "strong")), NamespaceResult)
    assert isinstance(driver(CreateNamespace("svc", "eventual")), NamespaceResult)
    return driver


def code(result: Result) -> str:
    assert isinstance(result, ErrorResult), result
    return result.code


def kv(key: bytes, value: bytes, create: int, mod: int, version: int, flags: int = 0) -> KeyValue:
    return KeyValue(key, value, create, mod, version, flags)


# --- namespaces ---------------------------------------------------------------


def test_namespaces_are_listed_sorted_and_created_once(run: Driver) -> None:
    assert run.sm.namespaces() == [
        NamespaceInfo("cfg", "strong"),
        NamespaceInfo("svc", "eventual"),
    ]
    assert run.sm.revision == 2
    again = run(CreateNamespace("cfg", "strong"))
    assert again == NamespaceResult(NamespaceInfo("cfg", "strong"), created=False, revision=2)
    assert code(run(CreateNamespace("cfg", "eventual"))) == ErrorCode.NAMESPACE_EXISTS
    assert code(run(CreateNamespace("cfg", "strong", (("x", "y"),)))) == ErrorCode.NAMESPACE_EXISTS
    assert run.sm.revision == 2


def test_deleting_a_namespace_drops_its_keys(run: Driver) -> None:
    run(Put("cfg", b"a", b"1"))
    run(Put("cfg", b"b", b"2"))
    assert run(DeleteNamespace("cfg")) == NamespaceDeleted("cfg", 2, revision=5)
    assert code(run(DeleteNamespace("cfg"))) == ErrorCode.NAMESPACE_NOT_FOUND
    run(CreateNamespace("cfg", "strong"))
    assert run(Get("cfg", b"a")) == GetResult(None, 6)
    assert run(DeleteNamespace("svc")) == NamespaceDeleted("svc", 0, revision=7)


@pytest.mark.parametrize(
    "op",
    [
        Put("nope", b"k", b"v"),
        Delete("nope", b"k"),
        DeletePrefix("nope", b""),
        Get("nope", b"k"),
        Range("nope", b""),
        Txn((Compare("nope", b"k", "version", "==", 0),)),
        Txn((), (Put("nope", b"k", b"v"),)),
    ],
)
def test_key_ops_on_a_missing_namespace_fail_and_change_nothing(run: Driver, op: Op) -> None:
    before = run.sm.state_hash()
    assert code(run(op)) == ErrorCode.NAMESPACE_NOT_FOUND
    run.sm.applied_index -= 1  # compare state, not the slot counter
    assert run.sm.state_hash() == before


@pytest.mark.parametrize("op", [Put("svc", b"k", b"v"), Delete("svc", b"k"), Get("svc", b"k")])
def test_key_ops_on_an_eventual_namespace_are_the_wrong_consistency(run: Driver, op: Op) -> None:
    assert code(run(op)) == ErrorCode.WRONG_CONSISTENCY
    assert run.sm.revision == 2


# --- put / get / delete -------------------------------------------------------


def test_put_tracks_revisions_versions_and_flags(run: Driver) -> None:
    assert run(Put("cfg", b"k", b"v1", flags=3)) == PutResult(3, None)
    assert run(Put("cfg", b"k", b"v2")) == PutResult(4, kv(b"k", b"v1", 3, 3, 1, 3))
    assert run(Put("cfg", b"j", b"x")) == PutResult(5, None)
    assert run(Get("cfg", b"k")) == GetResult(kv(b"k", b"v2", 3, 4, 2), 5)
    assert run(Get("cfg", b"absent")) == GetResult(None, 5)


def test_delete_then_put_recreates_the_key(run: Driver) -> None:
    run(Put("cfg", b"k", b"v"))
    assert run(Delete("cfg", b"k")) == DeleteResult(4, 1, kv(b"k", b"v", 3, 3, 1), (b"k",))
    assert run(Delete("cfg", b"k")) == DeleteResult(4, 0, None)  # nothing changed: same revision
    run(Put("cfg", b"k", b"again"))
    assert run(Get("cfg", b"k")) == GetResult(kv(b"k", b"again", 5, 5, 1), 5)


def test_cas_with_zero_is_create_only(run: Driver) -> None:
    assert run(Put("cfg", b"lock", b"me", if_mod_revision=0)) == PutResult(3, None)
    held = kv(b"lock", b"me", 3, 3, 1)
    assert run(Put("cfg", b"lock", b"you", if_mod_revision=0)) == CasFailed(held, 3)
    assert run.sm.revision == 3


def test_cas_on_mod_revision_for_put_and_delete(run: Driver) -> None:
    run(Put("cfg", b"k", b"v"))
    assert run(Put("cfg", b"k", b"w", if_mod_revision=2)) == CasFailed(kv(b"k", b"v", 3, 3, 1), 3)
    assert run(Put("cfg", b"k", b"w", if_mod_revision=3)) == PutResult(4, kv(b"k", b"v", 3, 3, 1))
    assert isinstance(run(Delete("cfg", b"k", if_mod_revision=3)), CasFailed)
    assert run(Delete("cfg", b"k", if_mod_revision=4)).revision == 5  # type: ignore[union-attr]
    assert run(Delete("cfg", b"k", if_mod_revision=0)) == DeleteResult(5, 0, None)
    assert run(Delete("cfg", b"k", if_mod_revision=5)) == CasFailed(None, 5)


def test_delete_prefix_deletes_in_sorted_order_as_one_revision(run: Driver) -> None:
    for key in (b"app/b", b"app/a", b"apq", b"app/c"):
        run(Put("cfg", key, b"x"))
    result = run(DeletePrefix("cfg", b"app/"))
    assert result == DeleteResult(7, 3, None, (b"app/a", b"app/b", b"app/c"))
    assert run(DeletePrefix("cfg", b"app/")) == DeleteResult(7, 0, None, ())
    assert run(DeletePrefix("cfg", b"")) == DeleteResult(8, 1, None, (b"apq",))


def test_range_is_ordered_limited_and_says_when_there_is_more(run: Driver) -> None:
    for key in (b"s/3", b"s/1", b"t", b"s/2"):
        run(Put("cfg", key, key))
    two = run(Range("cfg", b"s/", limit=2))
    assert isinstance(two, RangeResult)
    assert [x.key for x in two.kvs] == [b"s/1", b"s/2"] and two.more
    all_s = run(Range("cfg", b"s/", limit=3))
    assert isinstance(all_s, RangeResult) and not all_s.more and len(all_s.kvs) == 3
    everything = run(Range("cfg", b""))
    assert isinstance(everything, RangeResult)
    assert [x.key for x in everything.kvs] == [b"s/1", b"s/2", b"s/3", b"t"]
    assert run.sm.read(Range("cfg", b"")) == everything
    assert run.sm.read(Get("cfg", b"t")) == run(Get("cfg", b"t"))
    assert code(run.sm.read(Get("svc", b"t"))) == ErrorCode.WRONG_CONSISTENCY


# --- txn ----------------------------------------------------------------------


def test_txn_picks_a_branch_by_its_compares_and_is_one_revision(run: Driver) -> None:
    run(Put("cfg", b"k", b"v"))  # revision 3
    txn = Txn(
        (Compare("cfg", b"k", "value", "==", b"v"), Compare("cfg", b"k", "mod_revision", "<", 4)),
        (Put("cfg", b"a", b"1"), Put("cfg", b"b", b"2"), Get("cfg", b"a")),
        (Delete("cfg", b"k"),),
    )
    result = run(txn)
    assert isinstance(result, TxnResult) and result.succeeded and result.revision == 4
    assert result.responses == (
        PutResult(4, None),
        PutResult(4, None),
        GetResult(kv(b"a", b"1", 4, 4, 1), 4),
    )
    again = run(txn)  # "k" is untouched, so the compares still hold
    assert isinstance(again, TxnResult) and again.succeeded and again.revision == 5
    other = run(Txn((Compare("cfg", b"k", "version", ">", 1),), (), (Delete("cfg", b"k"),)))
    assert other == TxnResult(False, (DeleteResult(6, 1, kv(b"k", b"v", 3, 3, 1), (b"k",)),), 6)


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (Compare("cfg", b"k", "value", "==", b"v"), True),
        (Compare("cfg", b"k", "value", ">", b"u"), True),
        (Compare("cfg", b"k", "create_revision", "==", 3), True),
        (Compare("cfg", b"k", "version", "!=", 1), False),
        (Compare("cfg", b"absent", "version", "==", 0), True),
        (Compare("cfg", b"absent", "value", "==", b""), True),
        (Compare("cfg", b"absent", "mod_revision", ">", 0), False),
    ],
)
def test_compare_targets(run: Driver, compare: Compare, holds: bool) -> None:
    run(Put("cfg", b"k", b"v"))
    assert run(Txn((compare,))) == TxnResult(holds, (), 3)


def test_txn_is_all_or_nothing_when_a_branch_op_fails(run: Driver) -> None:
    run(Put("cfg", b"keep", b"old"))
    run(Put("cfg", b"gone", b"x"))
    before = run.sm.snapshot()
    txn = Txn(
        (),
        (
            Put("cfg", b"new", b"1"),
            Put("cfg", b"keep", b"new"),
            DeletePrefix("cfg", b"g"),
            Put("cfg", b"keep", b"cas", if_mod_revision=3),  # keep was just rewritten
        ),
    )
    assert code(run(txn)) == ErrorCode.TXN_OP_FAILED
    after = StateMachine.restore(run.sm.snapshot())
    after.applied_index -= 1
    assert after.snapshot() == before
    bad_ns = Txn((), (Put("cfg", b"new", b"1"), Delete("svc", b"k")))
    assert code(run(bad_ns)) == ErrorCode.WRONG_CONSISTENCY
    assert run(Get("cfg", b"new")) == GetResult(None, 4)


# --- dedup, batches, versions --------------------------------------------------


def test_a_retry_returns_the_remembered_result_without_reapplying(run: Driver) -> None:
    first = run(Put("cfg", b"k", b"v"), client="alice", seq=1)
    assert run(Put("cfg", b"k", b"v"), client="alice", seq=1) == first
    assert run.sm.revision == 3
    assert run(Put("cfg", b"k", b"w"), client="bob", seq=1) == PutResult(4, kv(b"k", b"v", 3, 3, 1))
    assert run(Put("cfg", b"k", b"x"), client="alice", seq=2) == PutResult(
        5, kv(b"k", b"w", 3, 4, 2)
    )
    assert code(run(Put("cfg", b"k", b"y"), client="alice", seq=1)) == ErrorCode.STALE_SEQUENCE
    assert run.sm.revision == 5
    assert run(Put("cfg", b"k", b"z"), client="alice", seq=0).revision == 6  # type: ignore[union-attr]
    assert run(Put("cfg", b"k", b"z"), client="alice", seq=0).revision == 7  # type: ignore[union-attr]


def test_a_remembered_error_is_returned_again(run: Driver) -> None:
    failed = run(Put("nope", b"k", b"v"), client="c", seq=4)
    run(CreateNamespace("nope", "strong"))
    assert run(Put("nope", b"k", b"v"), client="c", seq=4) == failed


def test_slots_apply_in_order_only() -> None:
    sm = StateMachine()
    noop = encode_command(Command("", 0, Noop()))
    with pytest.raises(ValueError, match="slot 2"):
        sm.apply(2, (noop,))
    assert sm.apply(1, ()) == []
    assert [a.result for a in sm.apply(2, (noop, noop))] == [NoopResult(), NoopResult()]
    with pytest.raises(ValueError):
        sm.apply(2, (noop,))
    assert sm.applied_index == 2


def test_malformed_bytes_in_a_batch_are_an_error_result_not_a_crash(run: Driver) -> None:
    put = encode_command(Command("c", 1, Put("cfg", b"k", b"v")))
    applied = run.sm.apply(3, (b"\xff\x00garbage", put))
    assert applied[0].client_id == "" and code(applied[0].result) == ErrorCode.MALFORMED_COMMAND
    assert applied[1].result == PutResult(3, None)


def test_an_unsupported_version_stops_the_batch_before_anything_applies(run: Driver) -> None:
    assert run(SetVersion(1)) == VersionResult(1)
    before = (run.sm.applied_index, run.sm.state_hash())
    batch = (
        encode_command(Command("c", 1, Put("cfg", b"k", b"v"))),
        encode_command(Command("", 0, SetVersion(SUPPORTED_VERSIONS.stop))),
    )
    with pytest.raises(UnsupportedVersion):
        run.sm.apply(run.sm.applied_index + 1, batch)
    assert (run.sm.applied_index, run.sm.state_hash()) == before
    assert run.sm.version == 1


def test_versions_only_go_up(run: Driver) -> None:
    assert run(SetVersion(2)) == VersionResult(2)
    assert run.sm.version == 2
    assert code(run(SetVersion(1))) == ErrorCode.VERSION_DOWNGRADE
    assert run.sm.version == 2


# --- memory and restart -----------------------------------------------------------


def test_a_bulk_transaction_applies_like_small_ones_and_leaves_no_cached_copy(run: Driver) -> None:

    puts = tuple(Put("cfg", b"bulk/%05d" % i, bytes(128)) for i in range(400))
    data = encode_command(Command("", 0, Txn((), puts)))
    assert len(data) >= 16 << 10  # above the state machine's cache limit
    before, cached = run.sm.applied_bytes, _decode_cached.cache_info().currsize
    (applied,) = run.sm.apply(run.sm.applied_index + 1, (data,))
    assert run.sm.applied_bytes == before + len(data)
    assert _decode_cached.cache_info().currsize == cached  # not kept alive by the cache
    result = applied.result
    assert isinstance(result, TxnResult) and result.succeeded
    assert {r.revision for r in result.responses} == {result.revision}
    got = run.sm.read(Get("cfg", b"bulk/00399"))
    assert isinstance(got, GetResult) and got.kv is not None and got.kv.value == bytes(128)


def test_a_restored_machine_iterates_and_hashes_like_the_original(run: Driver) -> None:
    for i in (5, 1, 3, 2, 4):
        run(Put("cfg", b"k%d" % i, b"v%d" % i))
    restored = StateMachine.restore(run.sm.snapshot())
    assert restored.state_hash() == run.sm.state_hash()
    assert restored.applied_bytes == 0  # counts from the restore on
    got = restored.read(Range("cfg", b"k"))
    assert isinstance(got, RangeResult)
    assert [kv.key for kv in got.kvs] == [b"k1", b"k2", b"k3", b"k4", b"k5"]
    restored.apply(restored.applied_index + 1, (encode_command(Command("", 0, Put("cfg", b"k0", b"x"))),))
    assert restored.read(Range("cfg", b"k")).kvs[0].key == b"k0"  # type: ignore[union-attr]


def test_the_streamed_snapshot_is_byte_for_byte_the_nested_encoding(run: Driver) -> None:
    from strong.canonical import pack
    from strong.results import encode_kv, encode_namespace
    from strong.sm_snapshot import encode_snapshot

    for i in range(10_000):  # more than one flush of the packer's buffer
        run(Put("cfg", b"k%05d" % i, b"v" * (i % 300), flags=i % 3))
    run(Put("cfg", b"big", bytes(70_000)))
    for version in (1, 2, 3):
        if version > run.sm.version:
            run(SetVersion(version))
        state = run.sm.snapshot_state()
        streamed = encode_snapshot(state)
        nested = [[encode_namespace(info), None if kvs is None else [encode_kv(kv) for kv in kvs]]
                  for info, kvs in state.namespaces]
        fields = list(msgpack_fields(streamed))
        fields[5 if version > 1 else 4] = nested
        assert streamed == pack(fields)


def msgpack_fields(data: bytes) -> list[object]:
    from strong.canonical import unpack

    fields = unpack(data)
    assert isinstance(fields, list)
    return fields


def test_a_snapshot_decodes_key_by_key_exactly_as_whole(run: Driver) -> None:
    from strong.canonical import pack
    from strong.sm_snapshot import MalformedSnapshot, _unpack_streaming, decode_snapshot

    for i in range(300):
        run(Put("cfg", b"k%03d" % i, b"v" * i))
    data = run.sm.snapshot()
    fields = _unpack_streaming(data)
    assert fields is not None  # the key-by-key path took it
    assert decode_snapshot(data) == decode_snapshot(data + b"") and StateMachine.restore(data).snapshot() == data
    whole = msgpack_fields(data)
    ns_field = whole[4 if whole[0] == 1 else 5]
    assert isinstance(ns_field, list)
    table = next(kvs for _, kvs in ns_field if kvs is not None)
    assert isinstance(table, list)
    table[3], table[4] = table[4], table[3]  # keys out of order: the plain path names it
    bad = pack(whole)
    assert _unpack_streaming(bad) is None
    with pytest.raises(MalformedSnapshot, match="not strictly increasing"):
        decode_snapshot(bad)
    assert _unpack_streaming(data + b"\x00") is None
    with pytest.raises(MalformedSnapshot):
        decode_snapshot(data + b"\x00")

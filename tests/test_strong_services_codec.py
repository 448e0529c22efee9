"""Service-instance ops, results and snapshots on the wire.

A replica must never crash on, or disagree about, a slot or a snapshot:
constructors refuse what cannot be applied the same everywhere (the documented
limits), bytes that are not an encoding are ``MalformedCommand`` /
``MalformedSnapshot`` and nothing else, and snapshots of versions 1 and 2 keep
their layout. (Round trips and random corruption of every op, these included:
``tests/test_commands.py``.)
"""

from __future__ import annotations

import msgpack
import pytest

from strong.canonical import pack, unpack
from strong.commands import (
    Command,
    CreateNamespace,
    DeregisterInstance,
    ExpireInstances,
    ListInstances,
    MalformedCommand,
    Op,
    Put,
    RegisterInstance,
    SetVersion,
    Txn,
    UpdateCheck,
    decode_command,
    encode_command,
)
from strong.ops import (
    MAX_CHECK_BYTES,
    MAX_META,
    MAX_META_KEY_BYTES,
    MAX_META_VALUE_BYTES,
    MAX_NAME_BYTES,
    MAX_OUTPUT_BYTES,
    MAX_TAG_BYTES,
    MAX_TAGS,
)
from strong.results import (
    ErrorCode,
    InstanceRecord,
    InstancesResult,
    ServiceWriteResult,
    decode_result,
    encode_result,
)
from strong.sm_snapshot import decode_snapshot
from strong.state_machine import MalformedSnapshot, StateMachine

T0 = 1_700_000_000_000


def reg(**changes: object) -> RegisterInstance:
    fields: dict[str, object] = {
        "ns": "app", "service": "web", "instance_id": "w1", "address": "10.0.0.1", "port": 80,
        "tags": ("a", "b"), "meta": (("z", "1"), ("a", "2")), "node": "n1", "check": b"{}",
        "ttl_ms": 10_000, "deregister_after_ms": 0, "status": "passing", "output": "",
        "now_ms": T0,
    }  # fmt: skip
    fields.update(changes)
    return RegisterInstance(**fields)  # type: ignore[arg-type]


#: also in ``tests/test_commands.py``'s ``EVERY_OP``: round trips and corruption
SERVICE_OPS: list[Op] = [
    reg(),
    reg(address="", node="", tags=(), meta=(), check=b"", ttl_ms=0, status="critical"),
    UpdateCheck("app", "web", "w1", "warning", "slow: 900 ms", T0),
    DeregisterInstance("app", "web", "w1"),
    ExpireInstances(T0),
    ListInstances("app", ""),
    ListInstances("app", "web"),
]


def test_meta_is_stored_sorted_so_equal_registrations_encode_equal() -> None:
    one, two = reg(meta=(("z", "1"), ("a", "2"))), reg(meta=(("a", "2"), ("z", "1")))
    assert one == two and one.meta == (("a", "2"), ("z", "1"))
    assert encode_command(Command("c", 1, one)) == encode_command(Command("c", 1, two))


@pytest.mark.parametrize(
    "build",
    [
        lambda: reg(ns=""),
        lambda: reg(service=""),
        lambda: reg(instance_id=""),
        lambda: reg(service="s" * (MAX_NAME_BYTES + 1)),
        lambda: reg(instance_id="é" * (MAX_NAME_BYTES // 2 + 1)),  # bytes, not characters
        lambda: reg(address="\ud800"),  # a lone surrogate cannot be encoded
        lambda: reg(port=65_536),
        lambda: reg(port=-1),
        lambda: reg(port=True),
        lambda: reg(tags=["a"]),
        lambda: reg(tags=("t",) * (MAX_TAGS + 1)),
        lambda: reg(tags=("t" * (MAX_TAG_BYTES + 1),)),
        lambda: reg(tags=(1,)),
        lambda: reg(meta=(("k", "1"), ("k", "2"))),
        lambda: reg(meta=(("", "1"),)),
        lambda: reg(meta=(("k" * (MAX_META_KEY_BYTES + 1), "1"),)),
        lambda: reg(meta=(("k", "v" * (MAX_META_VALUE_BYTES + 1)),)),
        lambda: reg(meta=tuple((f"k{i}", "") for i in range(MAX_META + 1))),
        lambda: reg(meta=(("k",),)),
        lambda: reg(check="{}"),
        lambda: reg(check=b"x" * (MAX_CHECK_BYTES + 1)),
        lambda: reg(ttl_ms=-1),
        lambda: reg(deregister_after_ms=2**64),
        lambda: reg(status="ok"),
        lambda: reg(status="Passing"),
        lambda: reg(output="o" * (MAX_OUTPUT_BYTES + 1)),
        lambda: reg(now_ms=-5),
        lambda: UpdateCheck("app", "web", "w1", "maintenance", "", T0),
        lambda: UpdateCheck("app", "", "w1", "passing", "", T0),
        lambda: UpdateCheck("app", "web", "w1", "passing", None, T0),
        lambda: DeregisterInstance("app", "web", ""),
        lambda: ExpireInstances(0),
        lambda: ExpireInstances(-1),
        lambda: ListInstances("", ""),
        lambda: ListInstances("app", None),
        lambda: Txn((), (reg(),)),
        lambda: Txn((), (ListInstances("app"),)),
    ],
)
def test_constructors_reject_values_outside_the_limits(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


def test_values_at_the_limits_are_accepted() -> None:
    op = reg(
        service="s" * MAX_NAME_BYTES,
        tags=("t" * MAX_TAG_BYTES,) * MAX_TAGS,
        meta=tuple((f"{i:0{MAX_META_KEY_BYTES}d}", "v" * MAX_META_VALUE_BYTES) for i in range(MAX_META)),
        check=b"x" * MAX_CHECK_BYTES,
        output="o" * MAX_OUTPUT_BYTES,
        port=65_535,
    )
    assert decode_command(encode_command(Command("c", 1, op))).op == op


def _tampered(op: Op, index: int, value: object) -> bytes:
    """``op`` encoded, with field ``index`` of its op list replaced by ``value``."""
    raw = unpack(encode_command(Command("c", 1, op)))
    assert isinstance(raw, list) and isinstance(raw[3], list)
    raw[3][index] = value
    return pack(raw)


@pytest.mark.parametrize(
    ("op", "index", "value"),
    [
        (reg(), 12, "ok"),  # status outside the enum
        (reg(), 5, 70_000),  # port
        (reg(), 6, ["a", 1]),  # a tag that is not a str
        (reg(), 7, [["k", "1"], ["k", "2"]]),  # duplicate meta key
        (reg(), 9, "{}"),  # check as str, not bytes
        (reg(), 14, True),  # now_ms as bool
        (UpdateCheck("app", "web", "w1", "passing", "", T0), 4, "unknown"),
        (ExpireInstances(T0), 1, 0),
        (ListInstances("app", "web"), 2, b"web"),
    ],
)
def test_a_valid_shape_with_an_invalid_value_is_malformed(op: Op, index: int, value: object) -> None:
    data = _tampered(op, index, value)
    with pytest.raises(MalformedCommand):
        decode_command(data)
    sm = StateMachine()
    sm.apply(1, (encode_command(Command("", 0, SetVersion(3))),))
    before = sm.snapshot()
    (applied,) = sm.apply(2, (data,))
    assert applied.result.code == ErrorCode.MALFORMED_COMMAND  # type: ignore[union-attr]
    assert decode_snapshot(sm.snapshot()).revision == decode_snapshot(before).revision


def test_a_wrong_number_of_fields_is_malformed() -> None:
    for op in SERVICE_OPS:
        raw = unpack(encode_command(Command("c", 1, op)))
        assert isinstance(raw, list) and isinstance(raw[3], list)
        for fields in (raw[3][:-1], [*raw[3], 0]):
            with pytest.raises(MalformedCommand):
                decode_command(pack([*raw[:3], fields]))


def test_service_results_round_trip_on_the_wire() -> None:
    record = InstanceRecord(
        "web", "w1", "10.0.0.1", 80, ("a",), (("k", "v"),), "n1", b"{}", 1_000, 0,
        "critical", "TTL expired", T0, T0 + 5, 3, 9,
    )  # fmt: skip
    for result in (
        InstancesResult((record, record), 12, 9),
        InstancesResult((), 0, 0),
        ServiceWriteResult(4, True),
        ServiceWriteResult(4, False),
    ):
        assert decode_result(unpack(pack(encode_result(result)))) == result


def _machine_with_instances() -> StateMachine:
    sm = StateMachine()
    ops: list[Op] = [
        SetVersion(3),
        CreateNamespace("app", "strong"),
        CreateNamespace("ev", "eventual"),
        reg(),
        reg(instance_id="w2", ttl_ms=0),
    ]
    sm.apply(1, tuple(encode_command(Command("", 0, op)) for op in ops))
    sm.apply(2, (encode_command(Command("c", 1, reg(instance_id="w3"))),))
    return sm


def _edit(data: bytes, edit: object) -> bytes:
    raw = msgpack.unpackb(data)
    assert callable(edit)
    edit(raw)
    return bytes(msgpack.packb(raw, use_bin_type=True))


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw.__setitem__(0, 2),  # format 2 at version 3
        lambda raw: raw.__setitem__(8, []),  # the strong namespace's table is missing
        lambda raw: raw[8].append(["ev", 0, 0, [], []]),  # a table for an eventual namespace
        lambda raw: raw[8][0][3][0].__setitem__(10, "ok"),  # status outside the enum
        lambda raw: raw[8][0][3][0].__setitem__(3, 70_000),  # port
        lambda raw: raw[8][0][3].reverse(),  # instances out of order
        lambda raw: raw[8][0][3].append(raw[8][0][3][0]),  # a duplicate instance
        lambda raw: raw[8][0][4].clear(),  # a live service without an index entry
        lambda raw: raw[8][0][4][0].__setitem__(1, 0),  # an index below a mod_revision
        lambda raw: raw[8][0].__setitem__(2, 0),  # heartbeat times past the table's clock
        lambda raw: raw[8][0][3][0].__setitem__(14, 0),  # create_revision 0
        lambda raw: raw[8][0][3][0].__setitem__(5, [["z", "1"], ["a", "2"]]),  # meta unsorted
        lambda raw: raw[8][0].pop(),  # a field short
        lambda raw: raw.pop(),  # no service tables at all
    ],
)
def test_a_snapshot_breaking_a_service_rule_is_malformed(edit: object) -> None:
    data = _machine_with_instances().snapshot()
    assert StateMachine.restore(data).snapshot() == data
    with pytest.raises(MalformedSnapshot):
        StateMachine.restore(_edit(data, edit))


def test_a_snapshot_carries_the_results_remembered_for_retries() -> None:
    sm = _machine_with_instances()
    restored = StateMachine.restore(sm.snapshot())
    [session] = decode_snapshot(restored.snapshot()).sessions
    assert session[:2] == ("c", 1) and isinstance(session[2], ServiceWriteResult)


@pytest.mark.parametrize("version", [1, 2])
def test_older_versions_keep_their_snapshot_format(version: int) -> None:
    sm = StateMachine()
    ops: list[Op] = [SetVersion(version), CreateNamespace("app", "strong"), Put("app", b"k", b"v")]
    sm.apply(1, tuple(encode_command(Command("c", i + 1, op)) for i, op in enumerate(ops)))
    data = sm.snapshot()
    raw = msgpack.unpackb(data)
    assert raw[0] == version and len(raw) == (6 if version == 1 else 8)
    assert StateMachine.restore(data).snapshot() == data
    sm.apply(2, (encode_command(Command("", 0, SetVersion(3))),))
    assert msgpack.unpackb(sm.snapshot())[0] == 3

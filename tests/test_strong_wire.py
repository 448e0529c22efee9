"""The strong replica's wire codec (``strong.wire``).

A malformed peer message must never crash a node: ``decode_message`` raises
``MalformedMessage`` (a ``ValueError``) for anything that is not exactly a
valid encoding within the limits, and nothing else. Fuzzed with hypothesis:
arbitrary bytes, arbitrary msgpack structures, and valid encodings with one
leaf replaced; every generated message round-trips.
"""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strong.wire
from strong.ballot import ZERO, Ballot
from strong.messages import (
    Accept,
    Accepted,
    CatchUpReply,
    CatchUpRequest,
    Forward,
    Heartbeat,
    HeartbeatAck,
    InstallSnapshot,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    Refused,
    SlotValue,
    TimeoutNow,
)
from strong.wire import (
    MAX_ROUND,
    MAX_UINT,
    MalformedMessage,
    WireLimits,
    decode_message,
    encode_message,
)

B1 = Ballot(3, "n1")
SAMPLES: tuple[Message, ...] = (
    Prepare(B1, 1),
    Promise(
        B1,
        5,
        (SlotValue(5, Ballot(2, "n2"), (b"a", b""), False), SlotValue(9, ZERO, (), True)),
        log_start=1,
        commit_index=4,
        since_leader_contact=0.25,
    ),
    Promise(B1, 5, (SlotValue(6, B1, (b"a",), True),), 1, 5, 0.5, truncated=True),
    Accept(B1, 7, (b"cmd1", b"cmd2"), 6),
    Accept(B1, 8, (), 6),  # a no-op
    Accepted(B1, 7),
    Nack(B1, Ballot(4, "n3")),
    Heartbeat(B1, 12, 7),
    HeartbeatAck(B1, 12, 7),
    CatchUpRequest(ZERO, 1),
    CatchUpRequest(B1, 3, snapshot_index=40, snapshot_offset=4096),
    CatchUpReply(B1, 1, ((b"x",), (), (b"y", b"z")), 3),
    InstallSnapshot(B1, MAX_UINT, 0, 9, 0xFFFFFFFF, b"\x00snapshot"),
    InstallSnapshot(B1, 40, 4, 9, 7, b"shot"),  # the last chunk
    InstallSnapshot(B1, 40, 0, 0, 0, b""),  # an empty snapshot
    PreVote(B1, 3),
    PreVoteReply(B1, True),
    PreVoteReply(B1, False),
    Forward(B1, 2**53 - 1, (1, 2), (b"cmd1", b"")),
    ReadIndexRequest(B1, 7, (3,), False),
    ReadIndexRequest(B1, 7, (3, 4), True),
    ReadIndexReply(B1, 7, 42, (3, 4)),
    Refused(B1, 7, (1, 2, 3)),
    TimeoutNow(B1),
)


def test_public_surface() -> None:
    assert set(strong.wire.__all__) == {
        "DEFAULT_LIMITS",
        "MAX_ROUND",
        "MAX_UINT",
        "MalformedMessage",
        "WireLimits",
        "decode_message",
        "encode_message",
    }
    assert issubclass(MalformedMessage, ValueError)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


def test_every_message_class_has_a_sample() -> None:
    assert {type(m) for m in SAMPLES} == set(Message.__args__)


@pytest.mark.parametrize("obj", [
    [13, [3, "n1"], 7, [1, 2], [b"only one"]],  # Forward: one id per command
    [13, [3, "n1"], 7, [], []],  # no request at all
    [13, [3, "n1"], -1, [1], [b"x"]],  # incarnation is unsigned
    [14, [3, "n1"], 7, [1], 1],  # ReadIndexRequest.quorum must be a bool
    [15, [3, "n1"], 7, 5, [True]],  # a bool is no request id
    [16, [3, "n1"], 7],  # Refused without its ids
    [17, [3, "n1"], 1],  # TimeoutNow carries only its ballot
    [17, "n1"],  # a TimeoutNow whose ballot is no ballot
])
def test_malformed_requests_to_the_leader_are_refused(obj: object) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(msgpack.packb(obj, use_bin_type=True))


def test_encoding_is_a_tagged_msgpack_list() -> None:
    assert msgpack.unpackb(encode_message(Accepted(B1, 7))) == [4, [3, "n1"], 7]


def test_an_int_duration_encodes_as_a_float() -> None:
    msg = Promise(B1, 1, (), 1, 0, 0)  # an int where a float belongs still round-trips
    decoded = decode_message(encode_message(msg))
    assert isinstance(decoded, Promise) and type(decoded.since_leader_contact) is float


def test_encoding_a_non_message_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode_message("prepare")  # type: ignore[arg-type]


# ------------------------------------------------------------- rejections


def _wire(msg: Message) -> list[object]:
    obj = msgpack.unpackb(encode_message(msg))
    assert isinstance(obj, list)
    return obj


def _pack(obj: object) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        ([], "empty"),
        ({"t": 1}, "a map"),
        ([99, [1, "n1"], 1], "unknown tag"),
        ([True, [1, "n1"], 1], "bool tag"),
        ([1, [1, "n1"]], "too few fields"),
        ([1, [1, "n1"], 1, 2], "too many fields"),
        ([1, [-1, "n1"], 1], "negative round"),
        ([1, [MAX_ROUND + 1, "n1"], 1], "round above MAX_ROUND (its successor must encode)"),
        ([1, [True, "n1"], 1], "bool round"),
        ([1, [1, ""], 1], "empty node id in a real ballot"),
        ([1, [1, b"n1"], 1], "bytes node id"),
        ([1, [1, "n" * 257], 1], "long node id"),
        ([1, [1, "n1", 0], 1], "ballot of three"),
        ([1, [1, "n1"], -1], "negative slot"),
        ([1, [1, "n1"], 1.0], "float slot"),
        ([3, [1, "n1"], 1, ["a"], 0], "str command"),
        ([3, [1, "n1"], 1, b"a", 0], "batch not a list"),
        ([3, [1, "n1"], 1, [None], 0], "None command"),
        ([2, [1, "n1"], 5, [[4, [1, "n1"], [], True]], 1, 4, 0.0, False], "slot below from_slot"),
        (
            [2, [1, "n1"], 1, [[4, [1, "n1"], [], True], [4, [1, "n1"], [], True]], 1, 4, 0.0,
             False],
            "duplicate slots",
        ),
        ([2, [1, "n1"], 1, [[4, [1, "n1"], [], 1]], 1, 4, 0.0, False], "int chosen"),
        ([2, [1, "n1"], 1, [], 1, 4, math.inf, False], "infinite contact"),
        ([2, [1, "n1"], 1, [], 1, 4, math.nan, False], "nan contact"),
        ([2, [1, "n1"], 1, [], 1, 4, -0.5, False], "negative contact"),
        ([2, [1, "n1"], 1, [], 1, 4, 1, False], "int contact"),
        ([2, [1, "n1"], 1, [], 1, 4, 0.0], "promise without truncated"),
        ([2, [1, "n1"], 1, [], 1, 4, 0.0, 1], "int truncated"),
        ([2, [1, "n1"], 1, [], 1, 4, 0.0, True], "truncated with no slot"),
        ([9, [1, "n1"], MAX_UINT, [[], []], 0], "catch-up slots beyond 64 bits"),
        ([8, [1, "n1"], 1], "catch-up request without snapshot position"),
        ([8, [1, "n1"], 1, 3, -1], "negative snapshot offset"),
        ([10, [1, "n1"], 3, 0, 4, 0, "data"], "str snapshot"),
        ([10, [1, "n1"], 3, b"data"], "snapshot without offset, total, crc"),
        ([10, [1, "n1"], 3, 2, 4, 0, b"abc"], "chunk past the snapshot's end"),
        ([10, [1, "n1"], 3, 0, 4, 0, b""], "empty chunk of a non-empty snapshot"),
        ([10, [1, "n1"], 3, 0, 4, 2**32, b"abcd"], "crc beyond 32 bits"),
        ([10, [1, "n1"], 3, True, 4, 0, b"abcd"], "bool offset"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_malformed_structures_are_rejected(obj: object, why: str) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(_pack(obj))


@pytest.mark.parametrize("blob", [b"", b"\xc1", b"\x93\x01", _pack([6, [1, "n1"], 1, 2]) + b"\x00"])
def test_garbage_bytes_are_rejected(blob: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(blob)


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(MalformedMessage):
        decode_message("not bytes")  # type: ignore[arg-type]


# ------------------------------------------------------------- size limits

SMALL = WireLimits(
    max_message_bytes=4096,
    max_node_id=8,
    max_batch_commands=4,
    max_command_bytes=100,
    max_batch_bytes=250,
    max_slots=3,
    max_snapshot_bytes=1000,
    max_snapshot_total=3000,
)


@pytest.mark.parametrize(
    ("ok", "too_big"),
    [
        (Accept(B1, 1, (b"x",) * 4, 0), Accept(B1, 1, (b"x",) * 5, 0)),
        (Accept(B1, 1, (b"x" * 100,), 0), Accept(B1, 1, (b"x" * 101,), 0)),
        (Accept(B1, 1, (b"x" * 100,) * 2 + (b"x" * 50,), 0), Accept(B1, 1, (b"x" * 100,) * 3, 0)),
        (
            InstallSnapshot(B1, 9, 0, 1000, 1, b"s" * 1000),
            InstallSnapshot(B1, 9, 0, 1001, 1, b"s" * 1001),
        ),
        (
            InstallSnapshot(B1, 9, 2000, 3000, 1, b"s" * 1000),
            InstallSnapshot(B1, 9, 2001, 3001, 1, b"s" * 1000),
        ),
        (CatchUpReply(B1, 1, ((),) * 3, 3), CatchUpReply(B1, 1, ((),) * 4, 4)),
        (Prepare(Ballot(1, "n" * 8), 1), Prepare(Ballot(1, "n" * 9), 1)),
        (
            Promise(B1, 1, tuple(SlotValue(s, B1, (), False) for s in (1, 2, 3)), 1, 0, 0.0),
            Promise(B1, 1, tuple(SlotValue(s, B1, (), False) for s in (1, 2, 3, 4)), 1, 0, 0.0),
        ),
        (
            Promise(B1, 1, (SlotValue(1, B1, (b"c",) * 4, False),), 1, 0, 0.0),
            Promise(B1, 1, (SlotValue(1, B1, (b"c",) * 5, False),), 1, 0, 0.0),
        ),
    ],
    ids=[
        "batch-commands",
        "command-bytes",
        "batch-bytes",
        "snapshot-chunk",
        "snapshot-total",
        "catchup-slots",
        "node-id",
        "promise-slots",
        "promise-batch",
    ],
)
def test_size_limits(ok: Message, too_big: Message) -> None:
    assert decode_message(encode_message(ok), SMALL) == ok
    with pytest.raises(MalformedMessage):
        decode_message(encode_message(too_big), SMALL)
    assert decode_message(encode_message(too_big)) == too_big  # the defaults are roomier


def test_whole_message_limit_is_checked_before_unpacking() -> None:
    data = encode_message(InstallSnapshot(B1, 9, 0, 5000, 1, b"s" * 5000))
    with pytest.raises(MalformedMessage, match="exceeds 4096"):
        decode_message(data, SMALL)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WireLimits(max_slots=0)


# ------------------------------------------------------------- properties

uints = st.integers(min_value=0, max_value=MAX_UINT)
node_ids = st.text(min_size=1, max_size=12)
rounds = st.integers(min_value=1, max_value=MAX_ROUND)
ballots = st.one_of(st.just(ZERO), st.builds(Ballot, rounds, node_ids))
batches = st.lists(st.binary(max_size=40), max_size=5).map(tuple)
durations = st.floats(min_value=0, allow_nan=False, allow_infinity=False)


@st.composite
def promises(draw: st.DrawFn) -> Promise:
    from_slot = draw(st.integers(min_value=0, max_value=2**40))
    slots = sorted(
        draw(st.sets(st.integers(min_value=from_slot, max_value=from_slot + 100), max_size=5))
    )
    accepted = tuple(SlotValue(s, draw(ballots), draw(batches), draw(st.booleans())) for s in slots)
    truncated = bool(accepted) and draw(st.booleans())
    return Promise(
        draw(ballots), from_slot, accepted, draw(uints), draw(uints), draw(durations), truncated
    )


@st.composite
def snapshot_chunks(draw: st.DrawFn) -> InstallSnapshot:
    data = draw(st.binary(min_size=1, max_size=200))
    offset = draw(st.integers(min_value=0, max_value=1000))
    total = offset + len(data) + draw(st.integers(min_value=0, max_value=1000))
    crc = draw(st.integers(min_value=0, max_value=0xFFFFFFFF))
    return InstallSnapshot(draw(ballots), draw(uints), offset, total, crc, data)


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prepare, ballots, uints),
    promises(),
    st.builds(Accept, ballots, uints, batches, uints),
    st.builds(Accepted, ballots, uints),
    st.builds(Nack, ballots, ballots),
    st.builds(Heartbeat, ballots, uints, uints),
    st.builds(HeartbeatAck, ballots, uints, uints),
    st.builds(CatchUpRequest, ballots, uints, uints, uints),
    st.builds(
        CatchUpReply,
        ballots,
        st.integers(min_value=0, max_value=2**63),
        st.lists(batches, max_size=4).map(tuple),
        uints,
    ),
    snapshot_chunks(),
    st.builds(PreVote, ballots, uints),
    st.builds(PreVoteReply, ballots, st.booleans()),
)


@settings(max_examples=400, deadline=None)
@given(messages)
def test_generated_messages_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    assert decode_message(data) == msg
    assert encode_message(decode_message(data)) == data


def _decode_or_malformed(data: bytes) -> None:
    try:
        decoded = decode_message(data)
    except MalformedMessage:
        return
    # Whatever decodes is a valid message: it re-encodes to something that decodes equal.
    assert decode_message(encode_message(decoded)) == decoded


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_malformed(blob: bytes) -> None:
    _decode_or_malformed(blob)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=MAX_UINT)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=12), st.lists(msgpack_values, max_size=7))
def test_arbitrary_msgpack_lists_raise_only_malformed(tag: int, fields: list[object]) -> None:
    _decode_or_malformed(_pack([tag, *fields]))


def _paths(obj: object, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(obj, list):
        out = [prefix] if prefix else []
        for i, item in enumerate(obj):
            out += _paths(item, (*prefix, i))
        return out
    return [prefix]


def _replace(obj: object, path: tuple[int, ...], value: object) -> object:
    if not path:
        return value
    assert isinstance(obj, list)
    i = path[0]
    return [*obj[:i], _replace(obj[i], path[1:], value), *obj[i + 1 :]]


@settings(max_examples=300, deadline=None)
@given(messages, st.data())
def test_one_mutated_field_raises_only_malformed(msg: Message, data: st.DataObject) -> None:
    wire = _wire(msg)
    path = data.draw(st.sampled_from(_paths(wire)))
    value = data.draw(msgpack_values)
    _decode_or_malformed(_pack(_replace(wire, path, value)))

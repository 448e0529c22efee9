"""The wire format, session tokens and durable records of the eventual store.

A malformed peer message must never crash a node: ``decode`` raises
``MalformedMessage`` (a ``ValueError``) for anything that is not exactly a
valid message, and nothing else. Fuzzed with hypothesis: random bytes,
random msgpack structures, and valid messages with one field mutated.
"""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from configsvc.runtime.disk_storage import EVENTUAL_RECORDS
from configsvc.runtime.framing import CorruptRecord
from eventual.codec import MalformedMessage, decode, encode, event_to_wire, message_to_wire
from eventual.dots import Sibling
from eventual.instances import InstanceInfo, decode_info
from eventual.log import event_size
from eventual.messages import Deltas, Digest, Event, FullState, Message, RepairProbe
from eventual.records import (
    EventRecord,
    IdentityRecord,
    Snapshot,
    SnapshotRecord,
)
from eventual.token import BadToken, decode_vv, encode_vv

INFO = InstanceInfo(address="10.0.0.7", port=8080, tags=("blue",), meta=(("az", "1"),))
EVENTS = (
    Event(("n1.a", 1), ("cfg", "kv", "k"), b"v", 7, (), ()),
    Event(("n1.a", 2), ("cfg", "kv", "k"), None, 9, (("n1.a", 1),), (("n1.a", 1), ("n2.b", 3))),
    Event(("n2.b", 4), ("svc", "svc", "api/i1"), INFO.encode(), 11, (), (("n2.b", 3),)),
)
SAMPLES: tuple[Message, ...] = (
    Digest("n1.a", (("n1.a", 2), ("n2.b", 4)), True),
    Deltas("n2.b", (("n2.b", 4),), EVENTS),
    FullState("n1.a", (("n1.a", 2), ("n2.b", 4)),
              ((("cfg", "kv", "k"), ((("n1.a", 1), Sibling(b"v", 7)), (("n2.b", 4), Sibling(b"w", 8)))),),
              12, False, (EVENTS[0],), ("n3",)),
    FullState("n1.a", (("n1.a", 2),), (), 12, True, (), (), part=2, parts=3),
    RepairProbe("n3.c", (), 2**64 - 1),
)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(msg: Message) -> None:
    assert decode(encode(msg)) == msg


def _mutations(wire: object) -> list[object]:
    """Every copy of ``wire`` with exactly one leaf replaced by a wrong-typed value."""
    out: list[object] = []
    if isinstance(wire, list):
        for i, item in enumerate(wire):
            for replacement in (None, -1, "x", b"x", [], True, 2**64 - 1, -(2**63)):
                out.append([*wire[:i], replacement, *wire[i + 1 :]])
            out += [[*wire[:i], m, *wire[i + 1 :]] for m in _mutations(item)]
    return out


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_one_wrong_field_is_rejected_not_crashing(msg: Message) -> None:
    for mutated in _mutations(message_to_wire(msg)):
        data = msgpack.packb(mutated, use_bin_type=True)
        try:
            decoded = decode(data)
        except MalformedMessage:
            continue
        # a mutation may happen to produce another valid message; it must then re-encode
        assert decode(encode(decoded)) == decoded


def test_event_invariants_are_enforced() -> None:
    bad_deps = Event(("n1", 2), ("cfg", "kv", "k"), b"v", 1, (), ())  # deps lack (n1, 1)
    covers_beyond_deps = Event(("n1", 1), ("cfg", "kv", "k"), b"v", 1, (("n2", 5),), ())
    bad_instance = Event(("n1", 1), ("svc", "svc", "api/i"), b"not an instance", 1, (), ())
    bad_space = Event(("n1", 1), ("cfg", "nope", "k"), b"v", 1, (), ())
    for e in (bad_deps, covers_beyond_deps, bad_instance, bad_space):
        with pytest.raises(MalformedMessage):
            decode(encode(Deltas("n1", (), (e,))))
    unsorted_vv = msgpack.packb(["D", "n1", [["b", 1], ["a", 1]], True])
    with pytest.raises(MalformedMessage):
        decode(unsorted_vv)
    sibling_outside_context = FullState("n1", (("n1", 1),), ((("cfg", "kv", "k"), ((("n1", 2), Sibling(b"v", 1)),)),), 0, False)
    with pytest.raises(MalformedMessage):
        decode(encode(sibling_outside_context))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        decode(data)


leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=4) | st.binary(max_size=4)
structures = st.recursive(leaf, lambda inner: st.lists(inner, max_size=5), max_leaves=30)
tagged = st.tuples(st.sampled_from(["D", "E", "F", "R", "?"]), st.lists(structures, max_size=6)).map(
    lambda t: [t[0], *t[1]])


@settings(max_examples=600, deadline=None)
@given(structures | tagged)
def test_random_structures_never_escape_as_anything_but_malformed(obj: object) -> None:
    try:
        msg = decode(msgpack.packb(obj, use_bin_type=True))
    except MalformedMessage:
        return
    assert decode(encode(msg)) == msg


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(1, 2**64 - 1), max_size=6))
def test_tokens_round_trip(vv: dict[str, int]) -> None:
    assert decode_vv(encode_vv(vv)) == vv


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_token_this_store_could_issue_or_raises_bad_token(token: str) -> None:
    if token and not token.startswith("c1."):
        with pytest.raises(BadToken):
            decode_vv(token)
        return
    try:
        vv = decode_vv(token)
    except BadToken:
        return
    assert all(isinstance(a, str) and type(n) is int and n > 0 for a, n in vv.items())
    assert decode_vv(encode_vv(vv)) == vv


@pytest.mark.parametrize("token", ["c1.!!", "c1.kZKh", "c2.kZKhYQE", "nope", "c1." + "A" * 70_000,
                                   "c1." + encode_vv({"a": 1})[3:] + "gA"])
def test_known_bad_tokens_raise_bad_token(token: str) -> None:
    with pytest.raises(BadToken):
        decode_vv(token)


def test_a_one_piece_full_state_keeps_the_unchunked_wire_form() -> None:
    whole, chunk = SAMPLES[2], SAMPLES[3]
    assert len(message_to_wire(whole)) == 8 and len(message_to_wire(chunk)) == 10
    for part, parts in ((3, 3), (0, 0), (0, 2**21)):
        wire = [*message_to_wire(chunk)[:8], part, parts]
        with pytest.raises(MalformedMessage, match="chunk"):
            decode(msgpack.packb(wire, use_bin_type=True))


def test_empty_token_is_the_empty_vector() -> None:
    assert decode_vv(None) == decode_vv("") == decode_vv(encode_vv({})) == {}


def test_instance_info_round_trips_and_rejects_garbage() -> None:
    assert decode_info(INFO.encode()) == INFO
    for bad in (b"", b"\x93\x01\x02\x03", msgpack.packb(["a", "80", [], [], 1, 1])):
        with pytest.raises(ValueError):
            decode_info(bad)


def test_records_round_trip_through_frames() -> None:
    snapshot = Snapshot((("n1.a", 2), ("n2.b", 4)), SAMPLES[2].entries if isinstance(SAMPLES[2], FullState) else (),
                        5, (("n1.a", 1),), EVENTS[1:2])
    records = [IdentityRecord("n1.a"), *(EventRecord(e) for e in EVENTS), SnapshotRecord(snapshot)]
    data = b"".join(EVENTUAL_RECORDS.encode(r) for r in records)
    assert EVENTUAL_RECORDS.decode_all(data) == (records, len(data))


def test_torn_tail_is_reported_and_corruption_raises() -> None:
    frames = [EVENTUAL_RECORDS.encode(IdentityRecord("n1.a")), EVENTUAL_RECORDS.encode(EventRecord(EVENTS[0]))]
    data = b"".join(frames)
    records, valid = EVENTUAL_RECORDS.decode_all(data[:-3])
    assert records == [IdentityRecord("n1.a")] and valid == len(frames[0])
    corrupt = bytearray(data)
    corrupt[-1] ^= 0xFF
    with pytest.raises(CorruptRecord):
        EVENTUAL_RECORDS.decode_all(bytes(corrupt))


actors = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.", min_size=1, max_size=20)


@st.composite
def any_events(draw: st.DrawFn) -> Event:
    actor, n = draw(actors), draw(st.integers(1, 2**64 - 1))
    deps = dict(draw(st.dictionaries(actors, st.integers(1, 2**64 - 1), max_size=8)))
    deps.pop(actor, None)
    if n > 1:
        deps[actor] = n - 1
    covers = {a: c for a, c in deps.items() if draw(st.booleans())}
    key = ("ns" + draw(st.text(max_size=30)), "kv", draw(st.text(max_size=60)))
    return Event((actor, n), key, draw(st.none() | st.binary(max_size=300)),
                 draw(st.integers(0, 2**64 - 1)), tuple(sorted(covers.items())),
                 tuple(sorted(deps.items())))


@settings(max_examples=300, deadline=None)
@given(any_events())
def test_the_delta_size_estimate_never_underestimates_the_encoding(e: Event) -> None:
    assert len(msgpack.packb(event_to_wire(e), use_bin_type=True)) <= event_size(e)
    assert decode(encode(Deltas("n1", (), (e,)))) == Deltas("n1", (), (e,))

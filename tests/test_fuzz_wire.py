"""Hostile peer input: mutated encodings fed to every decoder, and what decodes to the cores.

Random bytes rarely get past a decoder's first check; a *valid* encoding with
one bit flipped, cut short, one byte swapped for another msgpack type marker,
or one field swapped for a value of the wrong type (an int for bytes, a map
for a list, 2**64 for a slot) reaches the checks behind it. For every peer
decoder the property is the documented one: it returns a message or raises
its ``Malformed*`` (a ``ValueError``) and nothing else, and whatever it
returns re-encodes to itself. Then:

- the cores (strong ``Replica``, eventual ``Replica``, SWIM ``Membership``)
  take any sequence of decodable peer messages, valid or mutated, without
  raising, and what they answer (messages, records, applied commands) still
  encodes: a peer's message must not make a node's own output fail;
- the drivers drop what does not decode before their cores see it: it is
  counted, and nothing durable or applied changes;
- forwarding frames and the transport's own framing (handshake and data
  frames) end in their documented errors, never in another exception.

Bounded and seeded (``tests.fuzz_runtime.fuzz_settings``); ``make fuzz`` runs
more examples from other seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from configsvc.runtime.disk_storage import EVENTUAL_RECORDS, STRONG_RECORDS
from eventual import codec
from eventual import membership_messages as swim
from eventual.config import ReplicaConfig as EventualConfig
from eventual.membership import Membership
from eventual.membership_config import MembershipConfig
from eventual.replica import Replica as EventualReplica
from eventual.storage import recover as eventual_recover
from strong import wire
from strong.ballot import Ballot
from strong.commands import (
    Command,
    CreateNamespace,
    MalformedCommand,
    Put,
    decode_command,
    encode_command,
)
from strong.config import ReplicaConfig as StrongConfig
from strong.messages import InstallSnapshot
from strong.records import SnapshotRecord
from strong.replica import Replica as StrongReplica
from strong.sm_snapshot import snapshot_decodes
from strong.snapshot_transfer import checksum
from strong.state_machine import StateMachine
from strong.storage import recover as strong_recover
from tests.fuzz_runtime import (
    _HELLO,
    _PING,
    _WELCOME,
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    EventualDriver,
    Forwarder,
    MembershipDriver,
    MemoryStorage,
    StrongDriver,
    Transport,
    TransportConfig,
    _client_handshake,
    _control,
    _data_frame,
    _frame,
    _ProtocolError,
    _server_handshake,
    fuzz_settings,
)
from tests.test_commands import EVERY_OP
from tests.test_eventual_codec import SAMPLES, any_events
from tests.test_eventual_membership import messages_st as swim_messages
from tests.test_strong_wire import messages as strong_messages

FUZZ = fuzz_settings(120)
FEW = fuzz_settings(40)

# ---------------------------------------------------------------- mutations

#: msgpack type markers: nil, never-used, bools, ints, floats, str, bin, array, map, ext
_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xCC, 0xCF, 0xD0, 0xD3, 0xCA, 0xCB, 0xA0, 0xBF, 0xD9,
            0xDB, 0xC4, 0xC6, 0x90, 0x9F, 0xDC, 0xDD, 0x80, 0x8F, 0xDF, 0xC7, 0xD4, 0xD8, 0x7F, 0xFF)
#: values of the wrong type (or range) for any field
_WRONG: tuple[object, ...] = (None, True, False, 0, -1, 2**64 - 1, -(2**63), 2**62 + 1, 1.5,
                              math.nan, math.inf, -0.0, "", "x", "é" * 300, b"", b"\x00\x01",
                              [], [[]], {}, {"k": 1}, [0] * 70)


@st.composite
def byte_mutant(draw: st.DrawFn, data: bytes) -> bytes:
    """One byte-level mutation of ``data``: a bit flip, a cut, a type marker, an insertion,
    a deletion or a repeat."""
    i = draw(st.integers(0, len(data) - 1))
    match draw(st.sampled_from(("flip", "cut", "marker", "insert", "delete", "repeat"))):
        case "flip":
            return data[:i] + bytes([data[i] ^ (1 << draw(st.integers(0, 7)))]) + data[i + 1:]
        case "cut":
            return data[:i]
        case "marker":
            return data[:i] + bytes([draw(st.sampled_from(_MARKERS))]) + data[i + 1:]
        case "insert":
            return data[:i] + draw(st.binary(min_size=1, max_size=9)) + data[i:]
        case "delete":
            return data[:i] + data[draw(st.integers(i + 1, len(data))):]
        case _:
            return data + data[i:]


def _paths(obj: object, path: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    yield path
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _paths(item, (*path, i))


def _at(obj: Any, path: tuple[int, ...]) -> Any:
    for i in path:
        obj = obj[i]
    return obj


def _swapped(value: object) -> list[object]:
    """Same content, another type: the swaps a decoder's type checks must catch."""
    match value:
        case bool():
            return [int(value), str(value)]
        case int():
            return [str(value), float(value), bytes(str(value), "ascii"), value + 1, -value - 1, 2**64]
        case str():
            return [value.encode(), [value], {value: value} if value else {}]
        case bytes():
            return [value.decode("latin-1"), list(value)]
        case list():
            return [tuple(value), {str(i): v for i, v in enumerate(value)}, value[:-1], [*value, None]]
    return [str(value)]


@st.composite
def structure_mutant(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` decoded, one node replaced (a wrong-typed value, the same value as another
    type, a list one item short or long, the node wrapped in a list), encoded again."""
    obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    path = draw(st.sampled_from(list(_paths(obj))))
    node = _at(obj, path)
    replacement = draw(st.sampled_from([*_WRONG, *_swapped(node), [node]]))
    if not path:
        obj = replacement
    else:
        _at(obj, path[:-1])[path[-1]] = replacement
    try:
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):  # 2**64 - 1 + 1 and friends: not encodable
        packed = data[:-1]
    return packed


def mutants(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Mutations of one msgpack value: byte-level and structural."""
    return valid.flatmap(lambda data: st.one_of(byte_mutant(data), structure_mutant(data)))


def byte_mutants(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Mutations of a byte stream (frames with length prefixes): byte-level, one or two."""
    once = valid.flatmap(byte_mutant)
    return st.one_of(once, once.filter(bool).flatmap(byte_mutant))


# ---------------------------------------------------------------- the decoders


@dataclass(frozen=True)
class Codec:
    name: str
    valid: st.SearchStrategy[bytes]
    decode: Callable[[bytes], object]
    encode: Callable[[Any], bytes]
    error: type[ValueError]


_commands = st.builds(Command, st.text(max_size=8), st.integers(0, 2**64 - 1),
                      st.sampled_from(EVERY_OP)).map(encode_command)
_eventual = st.one_of(st.sampled_from(SAMPLES),
                      st.lists(any_events(), min_size=1, max_size=3).map(
                          lambda es: codec.Deltas("n2.b", (), tuple(es)))).map(codec.encode)
CODECS = [
    Codec("strong.wire", strong_messages.map(wire.encode_message), wire.decode_message,
          wire.encode_message, wire.MalformedMessage),
    Codec("strong.commands", _commands, decode_command, encode_command, MalformedCommand),
    Codec("eventual.codec", _eventual, codec.decode, codec.encode, codec.MalformedMessage),
    Codec("membership", swim_messages.map(swim.encode_message), swim.decode_message,
          swim.encode_message, swim.MalformedMessage),
]


@pytest.mark.parametrize("c", CODECS, ids=lambda c: c.name)
@FUZZ
@given(data=st.data())
def test_a_mutated_valid_encoding_decodes_or_raises_only_the_documented_error(
    c: Codec, data: st.DataObject
) -> None:
    mutant = data.draw(mutants(c.valid), label="mutant")
    try:
        decoded = c.decode(mutant)
    except c.error:
        return
    # It passed every check: it is a message, and the one encoding of it decodes back.
    assert c.decode(c.encode(decoded)) == decoded


# ---------------------------------------------------------------- the cores

VOTERS = ("n1", "n2", "n3")
_peer_input = st.tuples(st.sampled_from(VOTERS[1:]),
                        st.one_of(strong_messages.map(wire.encode_message),
                                  mutants(strong_messages.map(wire.encode_message))))


@FEW
@given(st.lists(_peer_input, min_size=1, max_size=12))
def test_the_strong_core_takes_any_decodable_peer_message(inputs: list[tuple[str, bytes]]) -> None:
    """Its output still encodes, its committed commands still apply (garbage commands
    included: ``strong.state_machine`` skips what does not decode)."""
    replica = StrongReplica(StrongConfig("n1", VOTERS), strong_recover([]), 0.0, random.Random(1))
    sm, now = StateMachine(), 0.0
    for src, raw in inputs:
        try:
            message = wire.decode_message(raw)
        except wire.MalformedMessage:
            continue
        now += 0.013
        replica.step(src, message, now)
        replica.tick(now)
        ready = replica.ready()
        for env in ready.outbox():
            wire.encode_message(env.message)
        for record in ready.persist:
            STRONG_RECORDS.encode(record)
        if ready.snapshot is not None:
            return  # a snapshot's content is the driver's to restore (see the report)
        for slot, batch in ready.committed:
            if slot == sm.applied_index + 1:
                sm.apply(slot, batch)


def test_a_snapshot_that_does_not_decode_is_refused_before_it_is_persisted() -> None:
    """Found by the core fuzzing: a complete InstallSnapshot whose CRC matches but whose
    bytes are no state-machine snapshot was persisted (SnapshotRecord) and handed to
    the driver, whose ``StateMachine.restore`` raised ``MalformedSnapshot``: the
    driver halted, and the record was durable, so a restart halted again. Only a
    member can send one (the transport authenticates peers), so this is a buggy or
    Byzantine peer, but it bricked a follower for good. Now the replica checks the
    bytes with ``ReplicaConfig.snapshot_valid`` (the driver injects
    ``snapshot_decodes``) before installing, and drops a failure like a CRC mismatch;
    a real snapshot still installs."""
    config = StrongConfig("n1", VOTERS, snapshot_valid=snapshot_decodes)
    replica = StrongReplica(config, strong_recover([]), 0.0, random.Random(1))
    data = b"not a snapshot"
    replica.step("n2", InstallSnapshot(Ballot(1, "n2"), 5, 0, len(data), checksum(data), data), 0.1)
    ready = replica.ready()
    assert not any(isinstance(r, SnapshotRecord) for r in ready.persist)
    assert ready.snapshot is None and replica.commit_index == 0
    real = StateMachine().snapshot()
    replica.step("n2", InstallSnapshot(Ballot(1, "n2"), 5, 0, len(real), checksum(real), real), 0.2)
    ready = replica.ready()
    assert any(isinstance(r, SnapshotRecord) for r in ready.persist)
    assert ready.snapshot is not None and ready.snapshot.data == real


def test_the_strong_driver_checks_snapshots_it_receives() -> None:
    driver = StrongDriver(StrongConfig("n1", VOTERS), MemoryStorage(),  # type: ignore[arg-type]
                          lambda dst, p: True, rng=random.Random(1))
    valid = driver.replica.config.snapshot_valid
    assert valid is not None and not valid(b"not a snapshot") and valid(StateMachine().snapshot())


_eventual_input = st.tuples(st.sampled_from(VOTERS[1:]), st.one_of(_eventual, mutants(_eventual)))


@FEW
@given(st.lists(_eventual_input, min_size=1, max_size=8))
def test_the_eventual_core_takes_any_decodable_peer_message(inputs: list[tuple[str, bytes]]) -> None:
    config = EventualConfig("n1", VOTERS)
    replica = EventualReplica(config, eventual_recover([]), 0.0, random.Random(1), 1.7e9)
    now = 0.0
    for src, raw in inputs:
        try:
            message = codec.decode(raw)
        except codec.MalformedMessage:
            continue
        now += 0.05
        replica.step(src, message, now, 1.7e9 + now)
        replica.tick(now, 1.7e9 + now)
        ready = replica.ready()
        for env in ready.messages:
            codec.encode(env.message)
        for record in ready.persist:
            EVENTUAL_RECORDS.encode(record)


_swim_input = st.tuples(st.sampled_from(VOTERS[1:]),
                        st.one_of(swim_messages.map(swim.encode_message),
                                  mutants(swim_messages.map(swim.encode_message))))


@FEW
@given(st.lists(_swim_input, min_size=1, max_size=10))
def test_membership_takes_any_decodable_peer_message(inputs: list[tuple[str, bytes]]) -> None:
    members = Membership(MembershipConfig("n1", "n1", "g1"), 0.0, random.Random(1))
    members.join(list(VOTERS[1:]), 0.0)
    now = 0.0
    for src, raw in inputs:
        try:
            message = swim.decode_message(raw)
        except swim.MalformedMessage:
            continue
        now += 0.1
        members.step(src, message, now)
        members.tick(now)
        for env in members.ready().messages:
            swim.encode_message(env.message)


# ---------------------------------------------------------------- the drivers


def _undecodable(c: Codec) -> st.SearchStrategy[bytes]:
    def rejected(raw: bytes) -> bool:
        try:
            c.decode(raw)
        except c.error:
            return True
        return False
    return st.one_of(mutants(c.valid), st.binary(max_size=64)).filter(rejected)


@FEW
@given(st.lists(_undecodable(CODECS[0]), min_size=1, max_size=5),
       st.lists(_undecodable(CODECS[2]), min_size=1, max_size=5),
       st.lists(_undecodable(CODECS[3]), min_size=1, max_size=5))
def test_the_drivers_drop_what_does_not_decode_before_their_cores_see_it(
    strong_garbage: list[bytes], eventual_garbage: list[bytes], swim_garbage: list[bytes]
) -> None:
    strong_storage, eventual_storage = MemoryStorage(), MemoryStorage()
    s = StrongDriver(StrongConfig("n1", VOTERS), strong_storage,  # type: ignore[arg-type]
                     lambda dst, p: True, rng=random.Random(1))
    e = EventualDriver(EventualConfig("n1", VOTERS), eventual_storage,  # type: ignore[arg-type]
                       lambda dst, p: None, rng=random.Random(1))
    m = MembershipDriver("n1", list(VOTERS[1:]), lambda dst, p: None, lambda alive: None)
    durable = (strong_storage.load(), eventual_storage.load(), s.sm.applied_index)
    for payload in strong_garbage:
        s.deliver("n2", payload)
    for payload in eventual_garbage:
        e.deliver("n2", payload)
    for payload in swim_garbage:
        m.deliver("n2", payload)
    assert s.stats.malformed_messages == len(strong_garbage)
    assert e.stats.malformed_messages == len(eventual_garbage)
    assert m.malformed == len(swim_garbage)
    # Nothing was queued for a core: the replicas never saw it.
    assert s.loop.pending_inputs == e.loop.pending_inputs == m.loop.pending_inputs == 0
    assert (strong_storage.load(), eventual_storage.load(), s.sm.applied_index) == durable


def test_a_running_strong_replica_fed_garbage_changes_nothing_durable() -> None:
    """Garbage in every shape, delivered to a running driver that applied writes
    (one-node group): its log, applied index and ballot stay as they were."""
    garbage = [b"", b"\xc1", b"\x93\x01\x02", msgpack.packb({"a": 1}), b"\x00" * 64,
               wire.encode_message(wire.decode_message(b"\x93\x01\x92\x01\xa2n2\x05"))[:-1]]

    async def main() -> None:
        storage = MemoryStorage()
        driver = StrongDriver(StrongConfig("n1", ("n1",)), storage,  # type: ignore[arg-type]
                              lambda dst, p: True, rng=random.Random(1))
        await driver.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while not driver.is_leader:  # an in-process condition, with a deadline
                assert asyncio.get_running_loop().time() < deadline, "no leader"
                await asyncio.sleep(0.01)
            await driver.propose(encode_command(Command("c", 1, CreateNamespace("app", "strong"))), 5)
            await driver.propose(encode_command(Command("c", 2, Put("app", b"k", b"v"))), 5)
            before = (storage.load(), driver.sm.applied_index, driver.status().ballot)
            for payload in garbage * 20:
                driver.deliver("n2", payload)
            await driver.barrier(5)  # the loop ran past every delivery
            assert driver.stats.malformed_messages == len(garbage) * 20
            assert (storage.load(), driver.sm.applied_index, driver.status().ballot) == before
        finally:
            await driver.close()

    asyncio.run(main())


# ---------------------------------------------------------------- forwarding frames

_frames = st.one_of(
    st.builds(lambda rid, method, path, body: ["req", rid, method, path, "a=1",
                                               [["x-configsvc-face", "native"]], body],
              st.integers(1, 3), st.sampled_from(["GET", "PUT"]), st.sampled_from(["/v1/kv/a/b"]),
              st.binary(max_size=8)),
    st.builds(lambda rid, status, body: ["resp", rid, status, [["content-type", "text/plain"]], body],
              st.integers(1, 3), st.sampled_from([200, 404, 503]), st.binary(max_size=8)),
).map(lambda f: msgpack.packb(f, use_bin_type=True))


@FUZZ
@given(st.one_of(_frames, mutants(_frames)))
def test_forwarding_frames_resolve_sanely_or_count_as_malformed(payload: bytes) -> None:
    async def main() -> None:
        forwarder = Forwarder("n1", lambda dst, data: None, timeout=1.0)
        waiting = asyncio.get_running_loop().create_future()
        forwarder._waiting[1] = waiting
        forwarder.deliver("n2", payload)  # raises nothing
        await forwarder.close()
        if waiting.done():
            status, headers, body = waiting.result()
            assert type(status) is int and 100 <= status <= 599
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers)
            assert isinstance(body, bytes)

    asyncio.run(main())


@pytest.mark.parametrize("frame", [
    {"kind": "resp"},  # a map: a KeyError escaped deliver
    ["resp", 1, math.inf, [], b""],  # int(inf): an OverflowError escaped
    ["resp", 1, 200, [], 2**63],  # bytes(2**63): an OverflowError escaped
    ["resp", 1, 200, [], 5],  # bytes(5): a peer named how much we allocate
    ["resp", 1, 10**6, [], b""],  # a status no response can carry
    ["resp", True, 200, [], b""],  # a bool is not an id
    ["req", 2, "GET", "/v1/kv/a", 7, [], b""],  # str(7) became a query
], ids=repr)
def test_malformed_forwarding_frames_are_counted_not_raised_or_converted(frame: object) -> None:
    async def main() -> None:
        forwarder = Forwarder("n1", lambda dst, data: None, timeout=1.0)
        waiting = asyncio.get_running_loop().create_future()
        forwarder._waiting[1] = waiting
        forwarder.deliver("n2", msgpack.packb(frame, use_bin_type=True))
        assert forwarder.malformed == 1 and not waiting.done() and not forwarder._tasks
        await forwarder.close()

    asyncio.run(main())


# ---------------------------------------------------------------- the transport's framing

CLUSTER = "fuzz"
NONCE = b"\x07" * 16


class _Sink:
    """A StreamWriter's write side, kept in memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


#: what an unauthenticated client may send first: a hello and a proof (no secret: empty)
_hello = st.just(_control(_HELLO, [PROTOCOL_VERSION, CLUSTER, "n2", "n1", NONCE])
                 + _control(3, [b""]))
_ENDINGS = (_ProtocolError, asyncio.IncompleteReadError)


@FUZZ
@given(st.one_of(_hello, byte_mutants(_hello)))
def test_the_server_handshake_ends_in_its_documented_errors_or_a_known_peer(data: bytes) -> None:
    async def main() -> None:
        try:
            src = await _server_handshake(_reader(data), _Sink(), cluster_id=CLUSTER,  # type: ignore[arg-type]
                                          node_id="n1", secret=None, known=lambda n: n == "n2")
        except _ENDINGS:
            return
        assert src == "n2"

    asyncio.run(main())


_challenge = st.just(_control(2, ["n1", NONCE, b""]) + _control(_WELCOME, []))


@FUZZ
@given(st.one_of(_challenge, byte_mutants(_challenge)))
def test_the_client_handshake_ends_in_its_documented_errors(data: bytes) -> None:
    async def main() -> None:
        try:
            await _client_handshake(_reader(data), _Sink(), cluster_id=CLUSTER,  # type: ignore[arg-type]
                                    node_id="n2", peer_id="n1", secret=None)
        except _ENDINGS:
            return

    asyncio.run(main())


_stream = st.lists(st.one_of(st.just(_frame(_PING)),
                             st.binary(max_size=12).map(lambda p: _data_frame(b"strong", p)),
                             st.binary(max_size=4).map(lambda p: _data_frame(b"other", p))),
                   min_size=1, max_size=6).map(b"".join)


@FUZZ
@given(st.one_of(_stream, byte_mutants(_stream)))
def test_data_frames_after_the_handshake_reach_a_handler_whole_or_close_the_connection(
    data: bytes,
) -> None:
    """``Transport._read_loop``, the parser every authenticated byte goes through."""
    async def main() -> None:
        config = TransportConfig("n1", CLUSTER, {"n2": ("127.0.0.1", 1)}, idle_timeout=5.0,
                                 max_frame_bytes=MAX_HANDSHAKE_FRAME)
        transport = Transport(config)
        got: list[tuple[str, bytes]] = []
        transport.on_receive("strong", lambda src, payload: got.append((src, payload)))
        peer = transport._peers["n2"]
        with contextlib.suppress(*_ENDINGS):
            await transport._read_loop(peer, _reader(data))
        stats = peer.stats
        assert all(src == "n2" and isinstance(p, bytes) for src, p in got)
        assert stats.frames_in == len(got) + stats.unhandled

    asyncio.run(main())

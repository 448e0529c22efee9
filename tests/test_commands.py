"""Command encoding: canonical round trips, constructor checks, garbage in.

The property that matters most: ``decode_command`` on *any* bytes either
returns a ``Command`` or raises ``MalformedCommand`` — a replica never crashes
on (or disagrees about) a slot's contents.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strong.commands import (
    Command,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    Get,
    MalformedCommand,
    Noop,
    Op,
    Put,
    Range,
    SetVersion,
    Txn,
    decode_command,
    encode_command,
)
from tests.test_strong_services_codec import SERVICE_OPS

EVERY_OP: list[Op] = [
    CreateNamespace("cfg", "strong", (("b", "2"), ("a", "1"))),
    CreateNamespace("svc", "eventual"),
    DeleteNamespace("cfg"),
    Put("cfg", b"k", b"v"),
    Put("cfg", b"k", b"", flags=7, if_mod_revision=0),
    Delete("cfg", b"k"),
    Delete("cfg", b"k", if_mod_revision=12),
    DeletePrefix("cfg", b""),
    Get("cfg", b"k"),
    Range("cfg", b"pre", limit=3),
    Txn(
        (Compare("cfg", b"k", "value", "==", b"v"), Compare("cfg", b"k", "version", ">", 2)),
        (Put("cfg", b"k", b"w"), Get("cfg", b"k"), Range("cfg", b"")),
        (Delete("cfg", b"k"), DeletePrefix("cfg", b"x")),
    ),
    Txn(()),
    SetVersion(1),
    Noop(),
    *SERVICE_OPS,
]


@pytest.mark.parametrize("op", EVERY_OP, ids=lambda op: type(op).__name__)
def test_every_op_round_trips_canonically(op: Op) -> None:
    cmd = Command("client-1", 42, op)
    data = encode_command(cmd)
    assert decode_command(data) == cmd
    assert encode_command(decode_command(data)) == data


def test_options_are_normalised_so_equal_requests_encode_equal() -> None:
    a = CreateNamespace("n", "eventual", (("merge", "lww"), ("a", "b")))
    b = CreateNamespace("n", "eventual", (("a", "b"), ("merge", "lww")))
    assert a == b
    assert a.options == (("a", "b"), ("merge", "lww"))
    assert encode_command(Command("c", 1, a)) == encode_command(Command("c", 1, b))


@pytest.mark.parametrize(
    "build",
    [
        lambda: CreateNamespace("", "strong"),
        lambda: CreateNamespace("n", "quorum"),
        lambda: CreateNamespace("n", "strong", (("a", "1"), ("a", "2"))),
        lambda: Put("n", b"", b"v"),
        lambda: Put("n", b"k", b"v", flags=-1),
        lambda: Put("n", b"k", b"v", flags=2**64),
        lambda: Put("n", b"k", b"v", if_mod_revision=True),
        lambda: Delete("n", b"k", if_mod_revision=-3),
        lambda: Range("n", b"", limit=-1),
        lambda: Compare("n", b"k", "value", "==", 3),
        lambda: Compare("n", b"k", "version", "==", b"3"),
        lambda: Compare("n", b"k", "lease", "==", 3),
        lambda: Compare("n", b"k", "version", "<=", 3),
        lambda: Txn((), (CreateNamespace("n", "strong"),)),  # type: ignore[arg-type]
        lambda: Txn((), (Txn(()),)),  # type: ignore[arg-type]
        lambda: SetVersion(-1),
        lambda: Command("c", -1, Noop()),
    ],
)
def test_constructors_reject_what_cannot_be_applied_everywhere(build: object) -> None:
    assert callable(build)
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        b"\x94\x01\xa1c\x00\x91\xa4noop\x00",  # trailing byte
        b"\x94\x02\xa1c\x00\x91\xa4noop",  # unknown command format
        b"\x94\x01\xa1c\x00\x91\xa4nope",  # unknown op tag
        b"\x94\x01\xa1c\xc3\x91\xa4noop",  # bool seq
        b"\x94\x01\xa1c\xcb\x00\x00\x00\x00\x00\x00\x00\x00\x91\xa4noop",  # float seq
        b"\x81\xa1a\x01",  # a map
    ],
)
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedCommand):
        decode_command(data)


def test_a_valid_shape_with_an_invalid_value_is_malformed() -> None:
    data = encode_command(Command("c", 1, Put("n", b"k", b"v")))
    bad = data.replace(b"\xa1n", b"\xa0")  # namespace "" instead of "n"
    with pytest.raises(MalformedCommand, match="namespace"):
        decode_command(bad)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_malformed_only(data: bytes) -> None:
    try:
        cmd = decode_command(data)
    except MalformedCommand:
        return
    assert encode_command(cmd) == data or decode_command(encode_command(cmd)) == cmd


@given(
    st.sampled_from([encode_command(Command("c", 9, op)) for op in EVERY_OP]),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=3),
)
def test_corrupted_commands_decode_or_raise_malformed_only(
    data: bytes, position: int, junk: bytes
) -> None:
    position %= len(data)
    mutated = data[:position] + junk + data[position + len(junk) :]
    with contextlib.suppress(MalformedCommand):
        decode_command(mutated)

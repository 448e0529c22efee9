"""Real state-machine snapshots of a chosen size, for tests of the snapshot transfer.

A replica installs only bytes its state machine can decode
(``ReplicaConfig.snapshot_valid``), so the transfer tests send real snapshots:
``encoded_snapshot(2500, b"A")`` is the snapshot of a state holding keys whose values
are ``fill`` repeated, at least ``size`` bytes long.
"""

from __future__ import annotations

from strong.commands import Command, CreateNamespace, Put, encode_command
from strong.state_machine import StateMachine


def encoded_snapshot(size: int, fill: bytes = b"A") -> bytes:
    """A decodable snapshot of at least ``size`` bytes; different ``fill``, different bytes."""
    sm = StateMachine()
    sm.apply(1, (encode_command(Command("t", 0, CreateNamespace("app", "strong"))),))
    value = fill * 256
    i = 0
    while len(sm.snapshot()) < size:
        i += 1
        sm.apply(i + 1, (encode_command(Command("t", 0, Put("app", b"k%06d" % i, value))),))
    return sm.snapshot()

"""The runtime pieces the fuzz tests drive, imported here and nowhere else in them.

Drivers, the transport and forwarding are moving into ``configsvc.runtime``;
when they land, only these imports change.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, seed, settings

from configsvc.forwarding import Forwarder
from configsvc.transport import (
    _HELLO,
    _PING,
    _WELCOME,
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Transport,
    TransportConfig,
    _client_handshake,
    _control,
    _data_frame,
    _frame,
    _ProtocolError,
    _server_handshake,
)
from eventual.driver import EventualDriver
from eventual.driver_membership import MembershipDriver
from strong.driver import StrongDriver

__all__ = [
    "MAX_HANDSHAKE_FRAME",
    "PROTOCOL_VERSION",
    "SCALE",
    "SEED",
    "_HELLO",
    "_PING",
    "_WELCOME",
    "EventualDriver",
    "Forwarder",
    "MembershipDriver",
    "MemoryStorage",
    "StrongDriver",
    "Transport",
    "TransportConfig",
    "_ProtocolError",
    "_client_handshake",
    "_control",
    "_data_frame",
    "_frame",
    "_server_handshake",
    "fuzz_settings",
]

#: ``make fuzz`` multiplies every fuzz test's examples by this (``make test``: 1)
SCALE = int(os.environ.get("CONFIGSVC_FUZZ_SCALE", "1"))
#: every run draws the same examples, unless ``CONFIGSVC_FUZZ_SEED`` names another seed
SEED = int(os.environ.get("CONFIGSVC_FUZZ_SEED", "2026"))


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    """``examples * SCALE`` examples from ``SEED``, no example database, no deadline."""
    def apply(test: Any) -> Any:
        bounded = settings(max_examples=examples * SCALE, database=None, deadline=None,
                           suppress_health_check=list(HealthCheck))
        return seed(SEED)(bounded(test))
    return apply


class MemoryStorage:
    """Either store's ``Storage``: appended records become durable on ``sync``."""

    def __init__(self) -> None:
        self.records: list[object] = []
        self.pending: list[object] = []

    def append(self, records: list[object]) -> None:
        self.pending += records

    def sync(self) -> None:
        self.records += self.pending
        self.pending = []

    def load(self) -> list[object]:
        return list(self.records)

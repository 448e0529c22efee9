"""The runtime pieces the fuzz tests drive, imported here and nowhere else in them.

Drivers and the transport live in ``configsvc.runtime``, forwarding in
``configsvc.http``; the transport's wire helpers keep their short names here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, seed, settings

from configsvc.http.forwarding import Forwarder
from configsvc.runtime.eventual_driver import EventualDriver
from configsvc.runtime.membership_driver import MembershipDriver
from configsvc.runtime.strong_driver import StrongDriver
from configsvc.runtime.transport import (
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Transport,
    TransportConfig,
)
from configsvc.runtime.transport.wire import HELLO as _HELLO
from configsvc.runtime.transport.wire import PING as _PING
from configsvc.runtime.transport.wire import WELCOME as _WELCOME
from configsvc.runtime.transport.wire import ProtocolError as _ProtocolError
from configsvc.runtime.transport.wire import client_handshake as _client_handshake
from configsvc.runtime.transport.wire import control_frame as _control
from configsvc.runtime.transport.wire import data_frame as _data_frame
from configsvc.runtime.transport.wire import encode_frame as _frame
from configsvc.runtime.transport.wire import server_handshake as _server_handshake

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

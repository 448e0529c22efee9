"""Peer transport: the one package through which replicas talk.

- ``transport``: ``Transport``, connections, queues, fault injection (the rules);
- ``wire``: frames and the authenticated handshake;
- ``peer``: per-peer send queue and state;
- ``config``: configuration, faults, statistics.
"""

from configsvc.runtime.transport.config import (
    Address,
    Fault,
    Handler,
    PeerStats,
    TransportConfig,
    TransportStats,
    backoff_delay,
)
from configsvc.runtime.transport.transport import Transport
from configsvc.runtime.transport.wire import MAX_HANDSHAKE_FRAME, PROTOCOL_VERSION

__all__ = [
    "MAX_HANDSHAKE_FRAME",
    "PROTOCOL_VERSION",
    "Address",
    "Fault",
    "Handler",
    "PeerStats",
    "Transport",
    "TransportConfig",
    "TransportStats",
    "backoff_delay",
]

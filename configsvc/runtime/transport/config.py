"""The peer transport's configuration, fault injection and statistics."""

from __future__ import annotations

import math
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from configsvc.runtime.transport.wire import MAX_HANDSHAKE_FRAME

#: (host, port)
Address = tuple[str, int]
#: ``handler(src_node_id, payload)``, called in the event loop
Handler = Callable[[str, bytes], None]


@dataclass(frozen=True)
class TransportConfig:
    node_id: str
    cluster_id: str
    #: peer node id -> address of its peer port (this node excluded)
    peers: Mapping[str, Address] = field(default_factory=dict)
    listen_host: str = "127.0.0.1"
    #: 0 picks an ephemeral port (see ``Transport.port``)
    listen_port: int = 0
    #: shared peer secret; ``None`` disables authentication (identity is still checked)
    secret: bytes | None = None
    #: mutual TLS: the listener's context (must require a client certificate) and
    #: the dialler's; both or neither. The peer's certificate must name its node id.
    #: The transport sets the listener's ``sslobject_class`` (to count failed TLS
    #: handshakes): give each transport its own contexts.
    tls_server: ssl.SSLContext | None = None
    tls_client: ssl.SSLContext | None = None
    #: largest frame body accepted after the handshake (a strong snapshot must fit)
    max_frame_bytes: int = 64 * 2**20 + 4096
    #: per-peer send queue bounds (frames, bytes); the oldest frame goes first
    queue_max_frames: int = 4096
    queue_max_bytes: int = 256 * 2**20
    connect_timeout: float = 2.0
    handshake_timeout: float = 2.0
    #: a write that cannot drain for this long breaks the connection
    write_timeout: float = 5.0
    #: an idle writer sends a keepalive this often
    keepalive_interval: float = 1.0
    #: an inbound connection silent for this long is closed
    idle_timeout: float = 5.0
    backoff_base: float = 0.05
    backoff_max: float = 2.0
    #: inbound connections still in their handshake; more are refused at once
    max_pending_handshakes: int = 64
    #: bound on waiting for sockets to close in ``close()``
    close_timeout: float = 1.0

    def __post_init__(self) -> None:
        if not self.node_id or not self.cluster_id:
            raise ValueError("node_id and cluster_id must be non-empty")
        if self.node_id in self.peers:
            raise ValueError("a node is not its own peer")
        timeouts = (
            self.connect_timeout,
            self.handshake_timeout,
            self.write_timeout,
            self.keepalive_interval,
            self.backoff_base,
            self.backoff_max,
            self.close_timeout,
        )
        if not all(math.isfinite(t) and t > 0 for t in timeouts):
            raise ValueError("timeouts and backoff must be finite and > 0")
        if self.idle_timeout < 2 * self.keepalive_interval:
            raise ValueError("idle_timeout must be at least two keepalive intervals")
        if self.backoff_max < self.backoff_base:
            raise ValueError("backoff_max must be >= backoff_base")
        if self.max_frame_bytes < MAX_HANDSHAKE_FRAME:
            raise ValueError(f"max_frame_bytes must be >= {MAX_HANDSHAKE_FRAME}")
        if self.queue_max_frames < 1 or self.queue_max_bytes < self.max_frame_bytes:
            raise ValueError("queue_max_frames must be >= 1, queue_max_bytes >= max_frame_bytes")
        if self.max_pending_handshakes < 1:
            raise ValueError("max_pending_handshakes must be >= 1")
        if self.secret is not None and len(self.secret) < 16:
            raise ValueError("a peer secret must be at least 16 bytes")
        if (self.tls_server is None) != (self.tls_client is None):
            raise ValueError("peer TLS needs both a listener and a dialler context")
        if self.tls_server is not None and self.tls_server.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("peer TLS is mutual: the listener must require certificates")


@dataclass(frozen=True, slots=True)
class Fault:
    """Injected faults on the link to one peer (see rule 5)."""

    drop_out: bool = False
    drop_in: bool = False
    delay: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay) and 0 <= self.delay <= 3600):
            raise ValueError("delay must be within [0, 3600] seconds")


NO_FAULT = Fault()


@dataclass(slots=True)
class PeerStats:
    """Counters for one peer. ``frames_*``/``bytes_*`` count data frames only."""

    #: our outbound connection is established and authenticated
    connected: bool = False
    #: the peer's connection to us is established and authenticated
    inbound_connected: bool = False
    #: ``loop.time()`` of the last frame (or handshake) received from the peer
    last_contact: float | None = None
    frames_out: int = 0
    bytes_out: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    #: frames waiting in the send queue now
    queued: int = 0
    #: oldest frames dropped from a full send queue
    queue_dropped: int = 0
    #: frames lost with a connection that broke while writing them
    lost_in_flight: int = 0
    fault_dropped_out: int = 0
    fault_dropped_in: int = 0
    #: successful outbound handshakes, and those after the first
    connects: int = 0
    reconnects: int = 0
    #: failed dials (refused, timed out, handshake failed)
    connect_failures: int = 0
    #: handshakes with this peer that failed authentication, either direction
    auth_failures: int = 0
    #: the reason code the peer gave when it last refused our handshake (None: the
    #: last one succeeded); ``unknown-node`` from a member means we were removed
    refused_as: str | None = None
    write_timeouts: int = 0
    #: oversize, undecodable or unexpected frames from an authenticated connection
    bad_frames: int = 0
    #: data frames on a channel with no handler
    unhandled: int = 0
    handler_errors: int = 0


@dataclass(frozen=True, slots=True)
class TransportStats:
    peers: dict[str, PeerStats]
    #: inbound handshakes refused before a known peer was identified (bad frames,
    #: wrong cluster or destination, unknown node, failed TLS, too many pending)
    rejected_handshakes: int
    #: ``send`` calls refused (unknown peer, oversize payload, closed transport)
    send_rejected: int
    #: every refused inbound handshake by reason: those above ("malformed",
    #: "timeout", "overload", "tls", "version", "cluster", "destination",
    #: "unknown-node") and those of a known peer that failed to prove itself
    #: ("auth", "identity"; also in that peer's ``auth_failures``)
    rejected: dict[str, int] = field(default_factory=dict)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before dial ``attempt`` (1-based) after failures.

    Exponential, capped, with "equal jitter": half of ``min(cap, base * 2**(attempt-1))``
    is fixed, half uniformly random, so peers restarted together spread out.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)



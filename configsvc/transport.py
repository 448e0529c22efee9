"""Peer transport: the one module through which replicas talk.

Every replica-to-replica byte goes through a ``Transport``: the strong store,
the eventual store and membership each use a *channel* ("strong",
"eventual", "membership") over the same connections. The transport carries
opaque payloads; encoding is the stores' business (``strong.wire``,
``eventual.codec``, ``eventual.membership_messages``).

Rules this module obeys (docs/transport.md tells the story):

1. One persistent outbound TCP connection per peer, dialled by the sender;
   inbound connections are only read. A lost connection is redialled with
   capped exponential backoff and jitter; connect, handshake, write and
   idle reads all have timeouts.
2. Framing: ``u32 big-endian length || body``; ``body[0]`` is the frame kind.
   The first frames of a connection are the handshake (hello, challenge,
   proof, welcome) naming both nodes and the cluster and, when a peer secret
   is configured, proving knowledge of it in both directions with
   HMAC-SHA256 over fresh nonces (compared in constant time). Handshake
   frames are capped at ``MAX_HANDSHAKE_FRAME`` bytes, later frames at
   ``max_frame_bytes``. A bad, oversize or unexpected frame closes that one
   connection and is counted; it never reaches a handler or crashes the node.
3. ``send`` never blocks and never raises for a peer's behaviour: it
   enqueues into a bounded per-peer queue (dropping the oldest frame when
   full, counted) that one writer task per peer drains. Delivery is
   at-most-once and FIFO per peer while a connection lasts; a frame in
   flight when a connection breaks is lost (counted). The stores' protocols
   already tolerate loss and duplication.
4. Handlers run in the event loop, synchronously, in the reader's task; an
   exception in a handler is logged and counted, and the reader carries on.
5. Faults (for the partition lab and tests) apply to data frames and
   keepalives, never to the handshake: ``drop_out`` discards what we would
   send to a peer, ``drop_in`` what we receive from it (and stops refreshing
   its last-contact time), ``delay`` holds each outgoing frame until
   ``delay`` seconds after it was sent.
6. ``close()`` cancels every task and closes every socket it opened or
   accepted, and waits (bounded) for them to be closed.

Time is ``loop.time()`` (monotonic). Randomness: nonces from ``secrets``;
backoff jitter from an injectable ``random.Random``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import math
import random
import secrets
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import msgpack  # type: ignore[import-untyped, unused-ignore]

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

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: handshake frames are tiny; an unauthenticated connection cannot make us allocate more
MAX_HANDSHAKE_FRAME = 4096
MAX_CHANNEL = 255
_NONCE_BYTES = 16
_LEN = struct.Struct(">I")

# Frame kinds: the first byte of every frame body.
_HELLO, _CHALLENGE, _PROOF, _WELCOME, _REJECT, _DATA, _PING = range(1, 8)

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
    #: wrong cluster or destination, unknown node, too many pending)
    rejected_handshakes: int
    #: ``send`` calls refused (unknown peer, oversize payload, closed transport)
    send_rejected: int


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before dial ``attempt`` (1-based) after failures.

    Exponential, capped, with "equal jitter": half of ``min(cap, base * 2**(attempt-1))``
    is fixed, half uniformly random, so peers restarted together spread out.
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


# ---------------------------------------------------------------- framing


class _ProtocolError(Exception):
    """The other end broke the framing or the handshake; close the connection."""


class _Refused(_ProtocolError):
    """A handshake refused for a reason worth telling the other end."""

    def __init__(self, reason: str, peer: str | None = None, *, auth: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.peer = peer
        self.auth = auth


def _frame(kind: int, body: bytes = b"") -> bytes:
    return _LEN.pack(1 + len(body)) + bytes((kind,)) + body


def _control(kind: int, fields: list[object]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return _frame(kind, packed)


def _data_frame(channel: bytes, payload: bytes) -> bytes:
    head = _LEN.pack(2 + len(channel) + len(payload)) + bytes((_DATA, len(channel))) + channel
    return head + payload


_PING_FRAME = _frame(_PING)


async def _read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    """One frame body (``kind`` byte first). Raises ``_ProtocolError`` if oversize
    or empty, ``asyncio.IncompleteReadError`` at EOF."""
    (n,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    if not 1 <= n <= max_bytes:
        raise _ProtocolError(f"frame of {n} bytes (limit {max_bytes})")
    return await reader.readexactly(n)


def _parse_control(body: bytes, kind: int, arity: int) -> list[object]:
    if body[0] == _REJECT and kind != _REJECT:
        fields = _parse_control(body, _REJECT, 1)
        raise _Refused(f"refused by peer: {str(fields[0])[:64]}", auth=fields[0] == "auth")
    if body[0] != kind:
        raise _ProtocolError(f"expected frame kind {kind}, got {body[0]}")
    try:
        fields = msgpack.unpackb(body[1:], raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise _ProtocolError(f"undecodable handshake frame: {exc!r:.80}") from exc
    if not isinstance(fields, list) or len(fields) != arity:
        raise _ProtocolError("malformed handshake frame")
    return fields


def _text(obj: object) -> str:
    if type(obj) is not str or not 0 < len(obj) <= 256:
        raise _ProtocolError("expected a short non-empty string")
    return obj


def _blob(obj: object, size: int | None = None) -> bytes:
    if type(obj) is not bytes or (size is not None and len(obj) != size) or len(obj) > 256:
        raise _ProtocolError("expected a short byte string")
    return obj


def _proof(
    secret: bytes | None,
    role: str,
    cluster: str,
    client: str,
    server: str,
    client_nonce: bytes,
    server_nonce: bytes,
) -> bytes:
    """What ``role`` sends to prove it holds the secret; empty without one.

    The role is part of the MAC so a server's proof cannot be reflected back as
    a client's; both nonces are, so a recorded proof never verifies again.
    """
    if secret is None:
        return b""
    packed: bytes = msgpack.packb(
        [role, cluster, client, server, client_nonce, server_nonce], use_bin_type=True
    )
    return hmac.new(secret, packed, hashlib.sha256).digest()


async def _write_all(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _client_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    cluster_id: str,
    node_id: str,
    peer_id: str,
    secret: bytes | None,
) -> None:
    """Dialler's side. Raises ``_Refused`` (``auth=True`` for failed proofs),
    ``_ProtocolError``, ``OSError`` or ``EOFError``; the caller applies the timeout."""
    client_nonce = secrets.token_bytes(_NONCE_BYTES)
    await _write_all(
        writer, _control(_HELLO, [PROTOCOL_VERSION, cluster_id, node_id, peer_id, client_nonce])
    )
    fields = _parse_control(await _read_frame(reader, MAX_HANDSHAKE_FRAME), _CHALLENGE, 3)
    server_id, server_nonce, server_proof = (
        _text(fields[0]),
        _blob(fields[1], _NONCE_BYTES),
        _blob(fields[2]),
    )
    if server_id != peer_id:
        raise _Refused(f"dialled {peer_id!r} but {server_id!r} answered", peer_id, auth=True)
    args = (cluster_id, node_id, peer_id, client_nonce, server_nonce)
    if not hmac.compare_digest(_proof(secret, "server", *args), server_proof):
        # Tell the server why we hang up, so both ends count the failure.
        with contextlib.suppress(OSError):
            await _write_all(writer, _control(_REJECT, ["auth"]))
        raise _Refused("server failed to prove the peer secret", peer_id, auth=True)
    await _write_all(writer, _control(_PROOF, [_proof(secret, "client", *args)]))
    _parse_control(await _read_frame(reader, MAX_HANDSHAKE_FRAME), _WELCOME, 0)


async def _server_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    cluster_id: str,
    node_id: str,
    secret: bytes | None,
    known: Callable[[str], bool],
) -> str:
    """Listener's side: the authenticated peer id. Raises like ``_client_handshake``."""
    fields = _parse_control(await _read_frame(reader, MAX_HANDSHAKE_FRAME), _HELLO, 5)
    if fields[0] != PROTOCOL_VERSION:
        raise _Refused("version")
    cluster, src, dst = _text(fields[1]), _text(fields[2]), _text(fields[3])
    client_nonce = _blob(fields[4], _NONCE_BYTES)
    if cluster != cluster_id:
        raise _Refused("cluster")
    if dst != node_id:
        raise _Refused("destination")
    if src == node_id or not known(src):
        raise _Refused("unknown-node")
    server_nonce = secrets.token_bytes(_NONCE_BYTES)
    args = (cluster_id, src, node_id, client_nonce, server_nonce)
    await _write_all(
        writer, _control(_CHALLENGE, [node_id, server_nonce, _proof(secret, "server", *args)])
    )
    try:
        fields = _parse_control(await _read_frame(reader, MAX_HANDSHAKE_FRAME), _PROOF, 1)
    except _Refused as exc:  # the client found our proof wrong: a secret mismatch
        raise _Refused("auth", src, auth=exc.auth) from exc
    if not hmac.compare_digest(_proof(secret, "client", *args), _blob(fields[0])):
        raise _Refused("auth", src, auth=True)
    await _write_all(writer, _control(_WELCOME, []))
    return src


# ---------------------------------------------------------------- per-peer state


@dataclass(slots=True)
class _Outgoing:
    frame: bytes
    enqueued_at: float


class _SendQueue:
    """Bounded FIFO of encoded frames; full means the oldest frame is dropped."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._items: deque[_Outgoing] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Outgoing) -> int:
        """Append ``item``; returns how many old frames were dropped to make room."""
        dropped = 0
        while self._items and (
            len(self._items) >= self._max_frames or self._bytes + len(item.frame) > self._max_bytes
        ):
            self._bytes -= len(self._items.popleft().frame)
            dropped += 1
        self._items.append(item)
        self._bytes += len(item.frame)
        self._ready.set()
        return dropped

    async def get(self, timeout: float) -> _Outgoing | None:
        """The oldest frame, or ``None`` if none arrives within ``timeout``."""
        if not self._items:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return None
        item = self._items.popleft()
        self._bytes -= len(item.frame)
        return item


class _Peer:
    def __init__(self, peer_id: str, address: Address, config: TransportConfig) -> None:
        self.id = peer_id
        self.address = address
        self.queue = _SendQueue(config.queue_max_frames, config.queue_max_bytes)
        self.stats = PeerStats()
        self.fault = NO_FAULT
        #: set (and replaced) whenever ``fault`` changes, to cut a delay short
        self.fault_changed = asyncio.Event()
        self.dialer: asyncio.Task[None] | None = None
        self.inbound: asyncio.StreamWriter | None = None


# ---------------------------------------------------------------- the transport


class Transport:
    """Asyncio peer transport for one node. Use ``async with`` or ``start``/``close``.

    Not thread-safe: call every method from the event loop it runs on.
    """

    def __init__(self, config: TransportConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._peers: dict[str, _Peer] = {
            pid: _Peer(pid, addr, config) for pid, addr in config.peers.items()
        }
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._closed = False
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._pending_handshakes = 0
        self._rejected_handshakes = 0
        self._send_rejected = 0

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on the peer port and start dialling every peer.

        Raises ``OSError`` if the port cannot be bound.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("a Transport starts once")
        self._server = await asyncio.start_server(
            self._accept, self.config.listen_host, self.config.listen_port
        )
        self._port = self._server.sockets[0].getsockname()[1]
        for peer in self._peers.values():
            self._start_dialer(peer)

    @property
    def port(self) -> int:
        """The bound peer port (useful with ``listen_port=0``)."""
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    async def close(self) -> None:
        """Stop: cancel every task, close every socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
            # A connection accepted just before may still be on its way to _accept
            # (asyncio hands it over two loop iterations later): let it arrive.
            for _ in range(3):
                await asyncio.sleep(0)
        tasks: list[asyncio.Task[None]] = [
            *(p.dialer for p in self._peers.values() if p.dialer is not None),
            *self._inbound_tasks,
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._writers):
            await self._dispose(writer)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.close_timeout):
                    await self._server.wait_closed()

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -------------------------------------------------------------- peers

    def add_peer(self, peer_id: str, address: Address) -> None:
        """Start talking to (and accepting) ``peer_id``. Raises ``ValueError`` if known."""
        if peer_id == self.config.node_id or peer_id in self._peers:
            raise ValueError(f"peer {peer_id!r} is this node or already known")
        _text_or_value_error(peer_id)
        peer = _Peer(peer_id, address, self.config)
        self._peers[peer_id] = peer
        if self._server is not None and not self._closed:
            self._start_dialer(peer)

    async def remove_peer(self, peer_id: str) -> None:
        """Stop talking to ``peer_id``: its queue is discarded, its connections closed.

        Raises ``KeyError`` for an unknown peer.
        """
        peer = self._peers.pop(peer_id)
        if peer.dialer is not None:
            peer.dialer.cancel()
            await asyncio.gather(peer.dialer, return_exceptions=True)
        if peer.inbound is not None:
            await self._dispose(peer.inbound)

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    # -------------------------------------------------------------- sending

    def on_receive(self, channel: str, handler: Handler) -> None:
        """Call ``handler(src_node_id, payload)`` for every frame on ``channel``.

        One handler per channel (a later registration replaces it). Handlers
        run in the event loop and must not block; what they raise is logged
        and counted. Raises ``ValueError`` for an invalid channel name.
        """
        _channel_bytes(channel)
        self._handlers[channel] = handler

    def send(self, peer_id: str, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer_id`` on ``channel``; never blocks.

        Returns ``False`` (and counts it) if the peer is unknown, the payload
        exceeds the frame limit or the transport is closed; ``True`` once
        accepted — which promises nothing about delivery (queue overflow drops
        the oldest frame; faults drop silently). Raises ``ValueError`` for an
        invalid channel name (a programming error).
        """
        chan = _channel_bytes(channel)
        peer = self._peers.get(peer_id)
        if (
            peer is None
            or self._closed
            or 2 + len(chan) + len(payload) > self.config.max_frame_bytes
        ):
            self._send_rejected += 1
            if peer is not None and not self._closed:
                log.warning(
                    "payload of %d bytes for %s exceeds the frame limit", len(payload), peer_id
                )
            return False
        if peer.fault.drop_out:
            peer.stats.fault_dropped_out += 1
            return True
        loop = asyncio.get_running_loop()
        peer.stats.queue_dropped += peer.queue.put(
            _Outgoing(_data_frame(chan, bytes(payload)), loop.time())
        )
        return True

    # -------------------------------------------------------------- faults

    def set_fault(
        self, peer_id: str, *, drop_out: bool = False, drop_in: bool = False, delay: float = 0.0
    ) -> Fault:
        """Replace the faults on the link to ``peer_id`` (all off = healthy).

        Raises ``KeyError`` for an unknown peer, ``ValueError`` for a delay
        outside [0, 3600] s.
        """
        peer = self._peers[peer_id]
        fault = Fault(drop_out=bool(drop_out), drop_in=bool(drop_in), delay=float(delay))
        self._set(peer, fault)
        return fault

    def clear_faults(self) -> None:
        """Heal every link."""
        for peer in self._peers.values():
            self._set(peer, NO_FAULT)

    def faults(self) -> dict[str, Fault]:
        """The links that have a fault now."""
        return {p.id: p.fault for p in self._peers.values() if p.fault != NO_FAULT}

    @staticmethod
    def _set(peer: _Peer, fault: Fault) -> None:
        peer.fault = fault
        peer.fault_changed.set()
        peer.fault_changed = asyncio.Event()

    # -------------------------------------------------------------- stats

    def stats(self) -> TransportStats:
        """A snapshot of every counter (copies; safe to keep)."""
        peers = {}
        for p in self._peers.values():
            p.stats.queued = len(p.queue)
            peers[p.id] = replace(p.stats)
        return TransportStats(peers, self._rejected_handshakes, self._send_rejected)

    # -------------------------------------------------------------- outbound

    def _start_dialer(self, peer: _Peer) -> None:
        peer.dialer = asyncio.create_task(self._dial_loop(peer), name=f"transport-dial-{peer.id}")

    async def _dial_loop(self, peer: _Peer) -> None:
        """Keep one authenticated connection to ``peer`` and drain its queue into it."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            conn = await self._dial(peer)
            if conn is None:
                failures += 1
                peer.stats.connect_failures += 1
                await asyncio.sleep(
                    backoff_delay(failures, cfg.backoff_base, cfg.backoff_max, self._rng)
                )
                continue
            reader, writer = conn
            peer.stats.connected = True
            peer.stats.connects += 1
            peer.stats.reconnects = peer.stats.connects - 1
            peer.stats.last_contact = loop.time()
            opened = loop.time()
            try:
                await self._run_outbound(peer, reader, writer)
            finally:
                peer.stats.connected = False
                await self._dispose(writer)
            # A connection that lasted resets the backoff; one that flaps does not.
            failures = 1 if loop.time() - opened >= cfg.backoff_max else failures + 1
            await asyncio.sleep(
                backoff_delay(failures, cfg.backoff_base, cfg.backoff_max, self._rng)
            )

    async def _dial(self, peer: _Peer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        cfg = self.config
        host, port = peer.address
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await self._open(host, port)
            async with asyncio.timeout(cfg.handshake_timeout):
                await _client_handshake(
                    reader,
                    writer,
                    cluster_id=cfg.cluster_id,
                    node_id=cfg.node_id,
                    peer_id=peer.id,
                    secret=cfg.secret,
                )
            return reader, writer
        except (OSError, EOFError, TimeoutError, _ProtocolError) as exc:
            if isinstance(exc, _Refused) and exc.auth:
                peer.stats.auth_failures += 1
                log.warning("handshake with %s failed: %s", peer.id, exc)
            elif isinstance(exc, _Refused):
                log.info("handshake with %s refused: %s", peer.id, exc)
            else:
                log.debug("dial %s at %s:%s failed: %r", peer.id, host, port, exc)
        except asyncio.CancelledError:
            if writer is not None:
                await self._dispose(writer)
            raise
        if writer is not None:
            await self._dispose(writer)
        return None

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """``open_connection`` bounded by ``connect_timeout``; the writer is registered.

        Not ``asyncio.timeout``: when the deadline and the connection land in
        the same loop iteration, it raises ``TimeoutError`` and the connection
        it opened is lost, never closed. Here the connect runs as a child task
        whose result is always either returned or closed.
        """
        task = asyncio.ensure_future(asyncio.open_connection(host, port))
        try:
            await asyncio.wait({task}, timeout=self.config.connect_timeout)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
            if not task.cancelled() and task.exception() is None:
                self._writers.add(task.result()[1])  # close() will close it if we are cancelled
        if task.cancelled():
            raise TimeoutError(f"connect to {host}:{port} timed out")
        return task.result()

    async def _run_outbound(
        self, peer: _Peer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Until the connection breaks: write queued frames; watch for the peer closing.

        The listener never speaks after its welcome, so any byte (or EOF) on
        the reader ends the connection.
        """
        watch = asyncio.ensure_future(reader.read(1))
        pump = asyncio.ensure_future(self._pump(peer, writer))
        try:
            await asyncio.wait({watch, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            pump.cancel()
            results = await asyncio.gather(watch, pump, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.debug("connection to %s ended: %r", peer.id, result)

    async def _pump(self, peer: _Peer, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        while True:
            item = await peer.queue.get(cfg.keepalive_interval)
            if item is None:
                if not peer.fault.drop_out:
                    await self._write(peer, writer, _PING_FRAME)
                continue
            await self._hold(peer, writer, item.enqueued_at)
            if peer.fault.drop_out:
                peer.stats.fault_dropped_out += 1
                continue
            try:
                await self._write(peer, writer, item.frame)
            except BaseException:
                peer.stats.lost_in_flight += 1
                raise
            peer.stats.frames_out += 1
            peer.stats.bytes_out += len(item.frame)

    async def _hold(self, peer: _Peer, writer: asyncio.StreamWriter, enqueued_at: float) -> None:
        """Wait out the ``delay`` fault (re-read whenever the fault changes),
        keeping the connection alive meanwhile."""
        loop = asyncio.get_running_loop()
        while (wait := enqueued_at + peer.fault.delay - loop.time()) > 0:
            changed = peer.fault_changed
            try:
                async with asyncio.timeout(min(wait, self.config.keepalive_interval)):
                    await changed.wait()
            except TimeoutError:
                if enqueued_at + peer.fault.delay - loop.time() > 0 and not peer.fault.drop_out:
                    await self._write(peer, writer, _PING_FRAME)

    async def _write(self, peer: _Peer, writer: asyncio.StreamWriter, frame: bytes) -> None:
        writer.write(frame)
        try:
            async with asyncio.timeout(self.config.write_timeout):
                await writer.drain()
        except TimeoutError:
            peer.stats.write_timeouts += 1
            log.warning("write to %s timed out; reconnecting", peer.id)
            raise

    # -------------------------------------------------------------- inbound

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """asyncio's stream-server callback, called as the connection is made.

        Synchronous on purpose: the writer and the task are registered before
        anything can cancel them, so ``close()`` closes every accepted socket.
        """
        if self._closed:
            writer.transport.abort()
            return
        self._writers.add(writer)
        task = asyncio.create_task(self._inbound(reader, writer), name="transport-inbound")
        self._inbound_tasks.add(task)
        task.add_done_callback(self._inbound_tasks.discard)

    async def _inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One inbound connection. Never raises: whatever the other end does
        closes only this connection."""
        try:
            await self._serve_inbound(reader, writer)
        except asyncio.CancelledError:
            pass  # shutting down
        except Exception:  # a bug here must cost one connection, not the node
            log.exception("inbound connection failed")
        finally:
            # close() may cancel us again while we wait here: the abort inside
            # _dispose happens before its first await, so the socket is closed anyway.
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispose(writer)

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Handshake, then read frames until the connection ends; count why it ended."""
        peer: _Peer | None = None
        try:
            if self._pending_handshakes >= self.config.max_pending_handshakes:
                self._rejected_handshakes += 1
                return
            self._pending_handshakes += 1
            try:
                async with asyncio.timeout(self.config.handshake_timeout):
                    src = await _server_handshake(
                        reader,
                        writer,
                        cluster_id=self.config.cluster_id,
                        node_id=self.config.node_id,
                        secret=self.config.secret,
                        known=self._peers.__contains__,
                    )
            finally:
                self._pending_handshakes -= 1
            peer = self._peers.get(src)
            if peer is None:  # removed during the handshake
                return
            if peer.inbound is not None:  # the peer redialled: the old connection is dead
                peer.inbound.transport.abort()
            peer.inbound = writer
            peer.stats.inbound_connected = True
            peer.stats.last_contact = asyncio.get_running_loop().time()
            await self._read_loop(peer, reader)
        except _Refused as exc:
            await self._refuse(exc, writer)
        except (_ProtocolError, OSError, EOFError, TimeoutError) as exc:
            if peer is None:
                self._rejected_handshakes += 1
            elif isinstance(exc, _ProtocolError):
                peer.stats.bad_frames += 1
                log.warning("closing connection from %s: %s", peer.id, exc)
            log.debug("inbound connection ended: %r", exc)
        finally:
            if peer is not None and peer.inbound is writer:
                peer.inbound = None
                peer.stats.inbound_connected = False

    async def _refuse(self, exc: _Refused, writer: asyncio.StreamWriter) -> None:
        peer = self._peers.get(exc.peer) if exc.peer is not None else None
        if peer is not None and exc.auth:
            peer.stats.auth_failures += 1
            log.warning("peer %s failed authentication", peer.id)
        else:
            self._rejected_handshakes += 1
            log.info("refused inbound handshake: %s", exc.reason)
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.config.write_timeout):
                await _write_all(writer, _control(_REJECT, [exc.reason]))

    async def _read_loop(self, peer: _Peer, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        while True:
            async with asyncio.timeout(cfg.idle_timeout):
                body = await _read_frame(reader, cfg.max_frame_bytes)
            kind = body[0]
            if kind == _PING:
                if not peer.fault.drop_in:
                    peer.stats.last_contact = loop.time()
                continue
            if kind != _DATA or len(body) < 2 or len(body) < 2 + body[1]:
                raise _ProtocolError(f"unexpected frame kind {kind} or truncated data frame")
            if peer.fault.drop_in:
                peer.stats.fault_dropped_in += 1
                continue
            try:
                channel = body[2 : 2 + body[1]].decode()
            except UnicodeDecodeError as exc:
                raise _ProtocolError("channel name is not UTF-8") from exc
            payload = body[2 + body[1] :]
            stats = peer.stats
            stats.last_contact = loop.time()
            stats.frames_in += 1
            stats.bytes_in += _LEN.size + len(body)
            handler = self._handlers.get(channel)
            if handler is None:
                stats.unhandled += 1
                continue
            try:
                handler(peer.id, payload)
            except Exception:
                stats.handler_errors += 1
                log.exception("handler for channel %r failed on a frame from %s", channel, peer.id)

    # -------------------------------------------------------------- sockets

    async def _dispose(self, writer: asyncio.StreamWriter) -> None:
        """Close ``writer`` at once (unsent bytes are dropped) and wait, bounded."""
        self._writers.discard(writer)
        writer.transport.abort()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.close_timeout):
                await writer.wait_closed()


def _channel_bytes(channel: str) -> bytes:
    raw = channel.encode() if isinstance(channel, str) else b""
    if not 0 < len(raw) <= MAX_CHANNEL:
        raise ValueError(f"a channel is a non-empty string of at most {MAX_CHANNEL} UTF-8 bytes")
    return raw


def _text_or_value_error(peer_id: str) -> None:
    try:
        _text(peer_id)
    except _ProtocolError as exc:
        raise ValueError(f"peer id must be 1..256 characters: {peer_id!r:.40}") from exc

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
   With peer TLS, every connection is TLS before its first frame, both ends
   present certificates chaining to the cluster CA, and each end checks the
   other's certificate names the node id it expects (``_identity``). No frame
   from a connection whose handshake failed is read: a refused handshake is
   counted by reason (``TransportStats.rejected``) and closes the connection.
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
import logging
import random
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from configsvc.runtime.transport.config import (
    NO_FAULT,
    Address,
    Fault,
    Handler,
    TransportConfig,
    TransportStats,
    backoff_delay,
)
from configsvc.runtime.transport.peer import Outgoing, PeerState
from configsvc.runtime.transport.wire import (
    DATA,
    LENGTH,
    PING,
    PING_FRAME,
    REJECT,
    ProtocolError,
    Refused,
    cert_names,
    channel_bytes,
    check_text,
    client_handshake,
    control_frame,
    data_frame,
    read_frame,
    server_handshake,
    write_all,
)

log = logging.getLogger("configsvc.transport")

#: frames already queued for a peer are written together up to this many bytes;
#: a write leaving more than this in the socket's user-space buffer waits to drain
_COALESCE_BYTES = 256 * 1024

# ---------------------------------------------------------------- the transport


class Transport:
    """Asyncio peer transport for one node. Use ``async with`` or ``start``/``close``.

    Not thread-safe: call every method from the event loop it runs on.
    """

    def __init__(self, config: TransportConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self._peers: dict[str, PeerState] = {
            pid: PeerState(pid, addr, config) for pid, addr in config.peers.items()
        }
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._closed = False
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._pending_handshakes = 0
        self._rejected_handshakes = 0
        self._rejected: Counter[str] = Counter()
        self._send_rejected = 0
        #: membership check on inbound handshakes (``set_member_check``)
        self._is_member: Callable[[str], bool] = lambda _peer: True
        #: called with (peer, reason code) when a peer refuses our handshake
        self.on_refused: Callable[[str, str | None], None] | None = None

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on the peer port and start dialling every peer.

        Raises ``OSError`` if the port cannot be bound.
        """
        if self._server is not None or self._closed:
            raise RuntimeError("a Transport starts once")
        tls = self.config.tls_server
        if tls is not None:
            tls.sslobject_class = _counting_tls(self._reject)
        self._server = await asyncio.start_server(
            self._accept,
            self.config.listen_host,
            self.config.listen_port,
            ssl=tls,
            ssl_handshake_timeout=self.config.handshake_timeout if tls is not None else None,
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
        check_text(peer_id)
        peer = PeerState(peer_id, address, self.config)
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

    def set_member_check(self, is_member: Callable[[str], bool]) -> None:
        """Refuse the handshake of a known peer for which ``is_member(id)`` is
        False (a node removed from the group's configuration)."""
        self._is_member = is_member

    def _admits(self, peer_id: str) -> bool:
        return peer_id in self._peers and self._is_member(peer_id)

    # -------------------------------------------------------------- sending

    def on_receive(self, channel: str, handler: Handler) -> None:
        """Call ``handler(src_node_id, payload)`` for every frame on ``channel``.

        One handler per channel (a later registration replaces it). Handlers
        run in the event loop and must not block; what they raise is logged
        and counted. Raises ``ValueError`` for an invalid channel name.
        """
        channel_bytes(channel)
        self._handlers[channel] = handler

    def send(self, peer_id: str, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer_id`` on ``channel``; never blocks.

        Returns ``False`` (and counts it) if the peer is unknown, the payload
        exceeds the frame limit or the transport is closed; ``True`` once
        accepted — which promises nothing about delivery (queue overflow drops
        the oldest frame; faults drop silently). Raises ``ValueError`` for an
        invalid channel name (a programming error).
        """
        chan = channel_bytes(channel)
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
            Outgoing(data_frame(chan, bytes(payload)), loop.time())
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
    def _set(peer: PeerState, fault: Fault) -> None:
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
        return TransportStats(
            peers, self._rejected_handshakes, self._send_rejected, dict(self._rejected)
        )

    # -------------------------------------------------------------- outbound

    def _start_dialer(self, peer: PeerState) -> None:
        peer.dialer = asyncio.create_task(self._dial_loop(peer), name=f"transport-dial-{peer.id}")

    async def _dial_loop(self, peer: PeerState) -> None:
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

    async def _dial(self, peer: PeerState) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        cfg = self.config
        host, port = peer.address
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await self._open(host, port)
            if cfg.tls_client is not None and not self._identity(peer.id, writer):
                raise Refused(f"{peer.id}'s certificate does not name it", peer.id, auth=True)
            async with asyncio.timeout(cfg.handshake_timeout):
                await client_handshake(
                    reader,
                    writer,
                    cluster_id=cfg.cluster_id,
                    node_id=cfg.node_id,
                    peer_id=peer.id,
                    secret=cfg.secret,
                )
            peer.stats.refused_as = None
            return reader, writer
        except (OSError, EOFError, TimeoutError, ProtocolError) as exc:
            if (isinstance(exc, Refused) and exc.auth) or isinstance(exc, ssl.SSLError):
                peer.stats.auth_failures += 1
                log.warning("handshake with %s failed: %s", peer.id, exc)
            elif isinstance(exc, Refused):
                peer.stats.refused_as = exc.code
                log.info("handshake with %s refused: %s", peer.id, exc)
                if self.on_refused is not None:
                    self.on_refused(peer.id, exc.code)
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
        task = asyncio.ensure_future(asyncio.open_connection(host, port, ssl=self.config.tls_client))
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
        self, peer: PeerState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
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

    async def _pump(self, peer: PeerState, writer: asyncio.StreamWriter) -> None:
        cfg = self.config
        while True:
            item = await peer.queue.get(cfg.keepalive_interval)
            if item is None:
                if not peer.fault.drop_out:
                    await self._write(peer, writer, PING_FRAME)
                continue
            await self._hold(peer, writer, item.enqueued_at)
            # Whatever else is queued already (and not held by a delay) goes out in
            # the same write: one syscall and one drain for a burst of frames.
            items = [item] if peer.fault.delay else [item, *peer.queue.take(_COALESCE_BYTES)]
            if peer.fault.drop_out:
                peer.stats.fault_dropped_out += len(items)
                continue
            data = item.frame if len(items) == 1 else b"".join(i.frame for i in items)
            try:
                await self._write(peer, writer, data)
            except BaseException:
                peer.stats.lost_in_flight += len(items)
                raise
            peer.stats.frames_out += len(items)
            peer.stats.bytes_out += len(data)

    async def _hold(self, peer: PeerState, writer: asyncio.StreamWriter, enqueued_at: float) -> None:
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
                    await self._write(peer, writer, PING_FRAME)

    async def _write(self, peer: PeerState, writer: asyncio.StreamWriter, frame: bytes) -> None:
        writer.write(frame)
        if writer.transport.get_write_buffer_size() <= _COALESCE_BYTES:
            return  # the kernel took it (or nearly): no need to wait for a drain
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
        peer: PeerState | None = None
        try:
            if self._pending_handshakes >= self.config.max_pending_handshakes:
                self._reject("overload")
                return
            self._pending_handshakes += 1
            try:
                async with asyncio.timeout(self.config.handshake_timeout):
                    src = await server_handshake(
                        reader,
                        writer,
                        cluster_id=self.config.cluster_id,
                        node_id=self.config.node_id,
                        secret=self.config.secret,
                        known=self._admits,
                        identity=lambda src: self._identity(src, writer),
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
        except Refused as exc:
            await self._refuse(exc, writer)
        except (ProtocolError, OSError, EOFError, TimeoutError) as exc:
            if peer is None:
                self._reject(_reason(exc))
            elif isinstance(exc, ProtocolError):
                peer.stats.bad_frames += 1
                log.warning("closing connection from %s: %s", peer.id, exc)
            log.debug("inbound connection ended: %r", exc)
        finally:
            if peer is not None and peer.inbound is writer:
                peer.inbound = None
                peer.stats.inbound_connected = False

    def _reject(self, reason: str) -> None:
        """Count an inbound handshake refused before a known peer proved itself."""
        self._rejected_handshakes += 1
        self._rejected[reason] += 1

    def _identity(self, node_id: str, writer: asyncio.StreamWriter) -> bool:
        """Without peer TLS, True; with it, whether the connection's verified
        certificate names ``node_id`` (``cert_names``)."""
        if self.config.tls_server is None:
            return True
        return node_id in cert_names(writer.get_extra_info("peercert"))

    async def _refuse(self, exc: Refused, writer: asyncio.StreamWriter) -> None:
        peer = self._peers.get(exc.peer) if exc.peer is not None else None
        if peer is not None and exc.auth:
            peer.stats.auth_failures += 1
            self._rejected[exc.reason] += 1
            log.warning("peer %s failed authentication (%s)", peer.id, exc.reason)
        else:
            self._reject(exc.reason)
            log.info("refused inbound handshake: %s", exc.reason)
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self.config.write_timeout):
                await write_all(writer, control_frame(REJECT, [exc.reason]))

    async def _read_loop(self, peer: PeerState, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        # One idle deadline for the connection, moved forward at most every eighth
        # of ``idle_timeout`` (not per frame: a timer per frame cost a tenth of a
        # busy node's CPU). A silent connection is closed after 7/8 to 8/8 of it.
        step = cfg.idle_timeout / 8
        moved = loop.time()
        async with asyncio.timeout_at(moved + cfg.idle_timeout) as idle:
            while True:
                body = await read_frame(reader, cfg.max_frame_bytes)
                now = loop.time()
                if now - moved >= step:
                    moved = now
                    idle.reschedule(now + cfg.idle_timeout)
                self._on_frame(peer, body, now)

    def _on_frame(self, peer: PeerState, body: bytes, now: float) -> None:
        """One frame read from ``peer``: a keepalive, or data for a channel's handler."""
        kind = body[0]
        if kind == PING:
            if not peer.fault.drop_in:
                peer.stats.last_contact = now
            return
        if kind != DATA or len(body) < 2 or len(body) < 2 + body[1]:
            raise ProtocolError(f"unexpected frame kind {kind} or truncated data frame")
        if peer.fault.drop_in:
            peer.stats.fault_dropped_in += 1
            return
        try:
            channel = body[2 : 2 + body[1]].decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("channel name is not UTF-8") from exc
        payload = body[2 + body[1] :]
        stats = peer.stats
        stats.last_contact = now
        stats.frames_in += 1
        stats.bytes_in += LENGTH.size + len(body)
        handler = self._handlers.get(channel)
        if handler is None:
            stats.unhandled += 1
            return
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




def _reason(exc: BaseException) -> str:
    """The ``TransportStats.rejected`` reason of an inbound handshake that failed with ``exc``."""
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ProtocolError):
        return "malformed"
    return "closed"


def _counting_tls(reject: Callable[[str], None]) -> type[ssl.SSLObject]:
    """An ``SSLContext.sslobject_class`` that reports each failed TLS handshake
    (a certificate not from the CA, no certificate, not TLS at all) as ``"tls"``:
    the event loop runs the listener's TLS handshakes and drops failures silently."""

    class CountingSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise  # in progress
            except ssl.SSLError:
                reject("tls")
                raise

    return CountingSSLObject

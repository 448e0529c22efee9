"""The peer transport on real loopback sockets (127.0.0.1, ephemeral ports).

The ladder: frames between two transports, a full mesh of three, then each
failure the transport promises to survive — a peer restarted on the same
port, a peer that accepts and never reads (before and after the handshake),
wrong secrets, garbage from raw sockets, throwing handlers, a full queue —
and the injected faults (drop either direction, delay) and their clearing.

Nothing here sleeps to wait for something: messages are awaited from queues
and counters through ``eventually`` (poll with a deadline). Every test ends
by checking that no task outlived the transports (``run``), and pytest turns
any unclosed-socket ``ResourceWarning`` into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

import configsvc.runtime.transport
from configsvc.runtime.transport import (
    MAX_HANDSHAKE_FRAME,
    PROTOCOL_VERSION,
    Fault,
    PeerStats,
    Transport,
    TransportConfig,
)
from configsvc.runtime.transport.wire import (
    CHALLENGE,
    DATA,
    HELLO,
    LENGTH,
    PROOF,
    client_handshake,
    control_frame,
    data_frame,
    read_frame,
    server_handshake,
)
from strong.ballot import Ballot
from strong.messages import Prepare
from strong.wire import decode_message, encode_message

CLUSTER = "test-cluster"
SECRET = b"0123456789abcdef-shared-secret"
HOST = "127.0.0.1"
CHANNELS = ("strong", "eventual", "membership")


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """asyncio logs (rather than raises) errors in callbacks and leaked tasks; fail on them."""
    yield
    errors = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def config(node_id: str, **overrides: Any) -> TransportConfig:
    """Timeouts short enough that every failure path runs in well under a second."""
    fast: dict[str, Any] = {
        "cluster_id": CLUSTER,
        "connect_timeout": 0.5,
        "handshake_timeout": 0.5,
        "write_timeout": 0.5,
        "keepalive_interval": 0.2,
        "idle_timeout": 1.0,
        "backoff_base": 0.01,
        "backoff_max": 0.1,
        "close_timeout": 0.5,
    }
    fast.update(overrides)
    return TransportConfig(node_id=node_id, **fast)


def run(main: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    """Run ``main`` under a deadline, then require that it left no task behind."""

    async def checked() -> None:
        async with asyncio.timeout(timeout):
            await main()
        leftover = asyncio.all_tasks() - {asyncio.current_task()}
        assert not leftover, f"tasks outlived the test: {leftover}"

    asyncio.run(checked())


async def eventually(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait until ``cond()`` holds, failing after ``timeout`` seconds (polls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)  # a poll interval, not a guess at how long anything takes


async def until_closed(reader: asyncio.StreamReader, timeout: float = 2.0) -> bytes:
    """Whatever the other end sends until it closes (a reset counts as closing:
    a peer that hangs up with our bytes unread sends RST, not FIN)."""
    async with asyncio.timeout(timeout):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


def peer_stats(t: Transport, peer: str) -> PeerStats:
    return t.stats().peers[peer]


class Inbox:
    """Collects ``(channel, src, payload)`` from every channel of one transport."""

    def __init__(self, transport: Transport, channels: tuple[str, ...] = CHANNELS) -> None:
        self.queue: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue()
        for channel in channels:
            transport.on_receive(channel, self._handler(channel))

    def _handler(self, channel: str) -> Callable[[str, bytes], None]:
        return lambda src, payload: self.queue.put_nowait((channel, src, payload))

    async def next(self, timeout: float = 5.0) -> tuple[str, str, bytes]:
        async with asyncio.timeout(timeout):
            return await self.queue.get()


async def start(
    stack: contextlib.AsyncExitStack, ids: list[str], **overrides: Any
) -> list[Transport]:
    """Start one transport per id on ephemeral ports, then introduce them all."""
    nodes = [Transport(config(i, **overrides), rng=random.Random(7)) for i in ids]
    for node in nodes:
        await stack.enter_async_context(node)
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.add_peer(b.config.node_id, (HOST, b.port))
    for node in nodes:
        for peer in node.peers:
            await eventually(
                functools.partial(lambda t, p: peer_stats(t, p).connected, node, peer),
                f"{node.config.node_id} -> {peer}",
            )
    return nodes


class FakePeer:
    """A listener that accepts connections and never reads from them, optionally
    after completing the server side of the handshake as ``node_id``. Its
    receive buffer is tiny, so a writer to it stalls quickly."""

    def __init__(self, node_id: str = "x", *, handshake: bool) -> None:
        self.node_id = node_id
        self.handshake = handshake
        self.accepted = 0
        self.handshakes = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> FakePeer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((HOST, 0))
        self._server = await asyncio.start_server(self._serve, sock=sock)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            if self.handshake:
                await server_handshake(
                    reader,
                    writer,
                    cluster_id=CLUSTER,
                    node_id=self.node_id,
                    secret=None,
                    known=lambda _: True,
                )
                self.handshakes += 1
            await self._stop.wait()  # ... and never read again
        except Exception:
            pass
        finally:
            writer.transport.abort()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


# ------------------------------------------------------------------ pure parts


def test_public_surface() -> None:
    assert set(configsvc.runtime.transport.__all__) == {
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
    }


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(1)
    backoff = configsvc.runtime.transport.backoff_delay
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.6), (6, 2.0), (10_000, 2.0)]:
        delays = {backoff(attempt, 0.1, 2.0, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered


@pytest.mark.parametrize(
    "overrides",
    [
        {"node_id": ""},
        {"peers": {"a": (HOST, 1)}},
        {"connect_timeout": 0},
        {"write_timeout": float("inf")},
        {"idle_timeout": 0.3},  # < two keepalive intervals
        {"backoff_max": 0.001},
        {"max_frame_bytes": 100},
        {"queue_max_bytes": 10},
        {"secret": b"short"},
    ],
)
def test_config_rejects_nonsense(overrides: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"node_id": "a", **overrides}
    with pytest.raises(ValueError):
        config(**kwargs)


def test_fault_delay_is_bounded() -> None:
    for bad in (-1.0, float("nan"), 1e9):
        with pytest.raises(ValueError):
            Fault(delay=bad)


# ------------------------------------------------------------------ exchange


def test_two_transports_exchange_on_several_channels() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"], secret=SECRET)
            inbox_a, inbox_b = Inbox(a), Inbox(b)
            for i in range(20):
                for channel in CHANNELS:
                    assert a.send("b", channel, f"{channel}-{i}".encode())
            assert b.send("a", "strong", b"reply")
            # FIFO per peer, across channels; the source is the authenticated peer id.
            got = [await inbox_b.next() for _ in range(60)]
            assert got == [(c, "a", f"{c}-{i}".encode()) for i in range(20) for c in CHANNELS]
            assert await inbox_a.next() == ("strong", "b", b"reply")
            sa, sb = peer_stats(a, "b"), peer_stats(b, "a")
            assert sa.frames_out == sb.frames_in == 60
            assert sa.bytes_out == sb.bytes_in > 60 * 8
            assert sa.connected and sb.inbound_connected and sa.connects == 1
            assert (
                sb.last_contact is not None and sb.last_contact <= asyncio.get_running_loop().time()
            )
            assert sa.auth_failures == sa.queue_dropped == sa.bad_frames == 0

    run(main)


def test_three_transports_full_mesh_carries_strong_messages() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            nodes = await start(stack, ["n1", "n2", "n3"])
            inboxes = {n.config.node_id: Inbox(n) for n in nodes}
            for src in nodes:
                for dst in src.peers:
                    for channel in CHANNELS:
                        message = Prepare(Ballot(1, src.config.node_id), 7)
                        assert src.send(dst, channel, encode_message(message))
            for dst, inbox in inboxes.items():
                got = sorted([await inbox.next() for _ in range(6)])
                srcs = sorted(n.config.node_id for n in nodes if n.config.node_id != dst)
                assert [(c, s) for c, s, _ in got] == sorted((c, s) for s in srcs for c in CHANNELS)
                for _, s, payload in got:
                    assert decode_message(payload) == Prepare(Ballot(1, s), 7)
            for n in nodes:  # one outbound connection per peer, never redialled
                assert all(st.connects == 1 for st in n.stats().peers.values())

    run(main)


def test_reconnects_after_peer_restarts_on_the_same_port() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            inbox_b = Inbox(b)
            a.send("b", "strong", b"before")
            assert await inbox_b.next() == ("strong", "a", b"before")
            port = b.port
            await b.close()
            await eventually(lambda: not peer_stats(a, "b").connected, "a sees b gone")
            a.send("b", "strong", b"while-down")  # queued until b is back
            b2 = Transport(config("b", peers={"a": (HOST, a.port)}, listen_port=port))
            await stack.enter_async_context(b2)
            inbox_b2, inbox_a = Inbox(b2), Inbox(a)
            assert await inbox_b2.next() == ("strong", "a", b"while-down")
            b2.send("a", "eventual", b"hello-again")
            assert await inbox_a.next() == ("eventual", "b", b"hello-again")
            st = peer_stats(a, "b")
            assert st.connected and st.reconnects == 1 and st.connects == 2

    run(main)


def test_full_queue_drops_oldest() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            # Learn a free port, then leave it empty so nothing drains a's queue.
            probe = Transport(config("b"))
            await probe.start()
            port = probe.port
            await probe.close()
            a = Transport(config("a", peers={"b": (HOST, port)}, queue_max_frames=5))
            await stack.enter_async_context(a)
            for i in range(8):
                assert a.send("b", "strong", b"m%d" % i)
            st = peer_stats(a, "b")
            assert (st.queued, st.queue_dropped) == (5, 3)
            b = Transport(config("b", peers={"a": (HOST, a.port)}, listen_port=port))
            await stack.enter_async_context(b)
            inbox = Inbox(b)
            assert [(await inbox.next())[2] for _ in range(5)] == [b"m%d" % i for i in range(3, 8)]
            assert peer_stats(a, "b").queued == 0

    run(main)


# ------------------------------------------------------------------ stalls


def test_black_holing_peer_does_not_stall_the_others() -> None:
    """x accepts the TCP connection and never reads: its handshake times out and
    is retried with backoff while traffic to b flows unhindered."""

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            x = await stack.enter_async_context(FakePeer(handshake=False))
            a, b = await start(stack, ["a", "b"])
            a.add_peer("x", (HOST, x.port))
            inbox_b = Inbox(b)
            for i in range(200):
                assert a.send("x", "strong", b"lost" * 1000)
                assert a.send("b", "strong", b"%d" % i)
            assert [(await inbox_b.next())[2] for _ in range(200)] == [
                b"%d" % i for i in range(200)
            ]
            await eventually(lambda: peer_stats(a, "x").connect_failures >= 2, "x redialled")
            st = peer_stats(a, "x")
            assert not st.connected and st.frames_out == 0 and st.queued == 200
            assert x.accepted >= 2

    run(main)


def test_write_timeout_on_a_peer_that_stops_reading() -> None:
    """x completes the handshake, then never reads: writes to it stall until the
    write timeout breaks the connection; b is served meanwhile."""

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            x = await stack.enter_async_context(FakePeer("x", handshake=True))
            a, b = await start(stack, ["a", "b"], write_timeout=1.0)
            a.add_peer("x", (HOST, x.port))
            await eventually(lambda: peer_stats(a, "x").connected, "a connected to x")
            inbox_b = Inbox(b)
            big = b"z" * 2**20
            for _ in range(16):  # 16 MiB: more than any loopback socket buffers
                assert a.send("x", "strong", big)
            assert a.send("b", "strong", b"not stalled")
            assert await inbox_b.next() == ("strong", "a", b"not stalled")
            assert peer_stats(a, "x").write_timeouts == 0  # b did not wait for x
            await eventually(lambda: peer_stats(a, "x").write_timeouts >= 1, "write timeout")
            st = peer_stats(a, "x")
            assert st.lost_in_flight >= 1 and st.frames_out < 16
            await eventually(lambda: x.handshakes >= 2, "a redialled x")
            assert a.send("b", "strong", b"still fine")
            assert await inbox_b.next() == ("strong", "a", b"still fine")

    run(main)


# ------------------------------------------------------------------ authentication


def test_wrong_secret_is_rejected_and_counted_on_both_sides() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"], secret=SECRET)
            c = Transport(config("c", secret=b"W" * 32, peers={"b": (HOST, b.port)}))
            await stack.enter_async_context(c)
            b.add_peer("c", (HOST, c.port))
            inbox_b = Inbox(b)
            c.send("b", "strong", b"forged")
            await eventually(lambda: peer_stats(b, "c").auth_failures >= 2, "b counts c")
            await eventually(lambda: peer_stats(c, "b").auth_failures >= 2, "c counts b")
            assert not peer_stats(c, "b").connected
            assert not peer_stats(b, "c").inbound_connected
            assert not peer_stats(b, "c").connected  # b -> c fails the same way
            a.send("b", "strong", b"genuine")
            assert await inbox_b.next() == ("strong", "a", b"genuine")  # never "forged"
            assert peer_stats(b, "c").frames_in == 0

    run(main)


def test_missing_secret_on_either_side_is_rejected() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (b,) = await start(stack, ["b"], secret=SECRET)
            c = Transport(config("c", peers={"b": (HOST, b.port)}))  # no secret
            await stack.enter_async_context(c)
            b.add_peer("c", (HOST, c.port))
            await eventually(lambda: peer_stats(b, "c").auth_failures >= 2, "b counts c")
            await eventually(lambda: peer_stats(c, "b").auth_failures >= 2, "c counts b")
            assert not peer_stats(b, "c").connected and not peer_stats(c, "b").connected

    run(main)


def test_forged_proof_is_rejected() -> None:
    """A client that skips checking the server and sends a made-up proof."""

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (b,) = await start(stack, ["b"], secret=SECRET)
            b.add_peer("mallory", (HOST, 9))
            reader, writer = await asyncio.open_connection(HOST, b.port)
            try:
                hello = [PROTOCOL_VERSION, CLUSTER, "mallory", "b", b"n" * 16]
                writer.write(control_frame(HELLO, hello))
                challenge = await read_frame(reader, MAX_HANDSHAKE_FRAME)
                assert challenge[0] == CHALLENGE
                writer.write(control_frame(PROOF, [b"\x00" * 32]))
                refusal = await read_frame(reader, MAX_HANDSHAKE_FRAME)
                assert b"auth" in refusal
                assert await until_closed(reader) == b""  # b hung up
            finally:
                await close_quietly(writer)
            await eventually(lambda: peer_stats(b, "mallory").auth_failures == 1, "counted")

    run(main)


def test_wrong_cluster_or_unknown_node_is_refused() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (b,) = await start(stack, ["b"])
            other = Transport(config("a", cluster_id="other", peers={"b": (HOST, b.port)}))
            stranger = Transport(config("s", peers={"b": (HOST, b.port)}))
            await stack.enter_async_context(other)
            await stack.enter_async_context(stranger)
            b.add_peer("a", (HOST, other.port))
            await eventually(lambda: b.stats().rejected_handshakes >= 4, "refusals counted")
            await eventually(lambda: peer_stats(stranger, "b").connect_failures >= 2, "s retries")
            assert not peer_stats(other, "b").connected and not peer_stats(stranger, "b").connected
            assert peer_stats(b, "a").auth_failures == 0  # not an auth failure: a misdial

    run(main)


# ------------------------------------------------------------------ hostile bytes


def test_garbage_from_raw_sockets_does_not_crash_the_receiver() -> None:
    rng = random.Random(3)
    blobs = [
        b"\xff\xff\xff\xff",  # oversize length
        b"\x00\x00\x00\x00",  # empty frame
        LENGTH.pack(5) + b"hello",  # unknown frame kind
        control_frame(HELLO, [1, 2, 3, 4, 5]),  # a hello of the wrong types
        control_frame(HELLO, [PROTOCOL_VERSION, CLUSTER, "a", "b"]),  # too short
        LENGTH.pack(100) + b"\x01truncated",  # then EOF
        data_frame(b"strong", b"no handshake first"),
        *(rng.randbytes(rng.randrange(1, 64)) for _ in range(20)),
    ]

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            inbox_b = Inbox(b)
            for blob in blobs:
                reader, writer = await asyncio.open_connection(HOST, b.port)
                try:
                    writer.write(blob)
                    writer.write_eof()
                    await until_closed(reader)  # at the latest when b sees our EOF
                finally:
                    await close_quietly(writer)
            await eventually(
                lambda: b.stats().rejected_handshakes == len(blobs), "every blob refused"
            )
            a.send("b", "strong", b"still alive")
            assert await inbox_b.next() == ("strong", "a", b"still alive")
            assert peer_stats(b, "a").bad_frames == 0

    run(main)


def test_bad_frames_from_an_authenticated_peer_close_only_that_connection() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"], max_frame_bytes=MAX_HANDSHAKE_FRAME)
            b.add_peer("c", (HOST, 9))
            inbox_b = Inbox(b)

            async def as_c(frame: bytes) -> bytes:
                reader, writer = await asyncio.open_connection(HOST, b.port)
                try:
                    await client_handshake(
                        reader, writer, cluster_id=CLUSTER, node_id="c", peer_id="b", secret=None
                    )
                    writer.write(frame)
                    return await until_closed(reader)
                finally:
                    await close_quietly(writer)

            bad = [
                LENGTH.pack(MAX_HANDSHAKE_FRAME + 1) + b"x" * 64,  # oversize
                LENGTH.pack(1) + bytes([99]),  # unknown kind
                LENGTH.pack(3) + bytes([DATA, 9]) + b"s",  # channel longer than the frame
                data_frame(b"\xff\xfe", b"x"),  # channel not UTF-8
                control_frame(HELLO, []),  # a second hello
            ]
            for n, frame in enumerate(bad, start=1):
                assert await as_c(frame) == b""  # closed on us
                await eventually(
                    functools.partial(lambda k: peer_stats(b, "c").bad_frames >= k, n), f"bad #{n}"
                )
                assert peer_stats(b, "c").bad_frames == n
            # A good frame from c is delivered, and a's connection never noticed.
            reader, writer = await asyncio.open_connection(HOST, b.port)
            try:
                await client_handshake(
                    reader, writer, cluster_id=CLUSTER, node_id="c", peer_id="b", secret=None
                )
                writer.write(data_frame(b"membership", b"from c"))
                assert await inbox_b.next() == ("membership", "c", b"from c")
            finally:
                await close_quietly(writer)
            a.send("b", "strong", b"from a")
            assert await inbox_b.next() == ("strong", "a", b"from a")
            assert peer_stats(a, "b").connects == 1

    run(main)


def test_pending_handshakes_are_bounded_and_time_out() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (b,) = await start(stack, ["b"], max_pending_handshakes=1)
            silent_r, silent_w = await asyncio.open_connection(HOST, b.port)  # says nothing
            extra_r, extra_w = await asyncio.open_connection(HOST, b.port)
            try:
                assert await until_closed(extra_r) == b""  # refused at once
                assert b.stats().rejected_handshakes == 1
                assert await until_closed(silent_r) == b""  # handshake timeout (0.5 s)
                await eventually(lambda: b.stats().rejected_handshakes == 2, "timeout counted")
            finally:
                await close_quietly(silent_w)
                await close_quietly(extra_w)

    run(main)


def test_silent_inbound_connection_is_closed_after_idle_timeout() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (b,) = await start(stack, ["b"], keepalive_interval=0.1, idle_timeout=0.3)
            b.add_peer("c", (HOST, 9))
            reader, writer = await asyncio.open_connection(HOST, b.port)
            try:
                await client_handshake(
                    reader, writer, cluster_id=CLUSTER, node_id="c", peer_id="b", secret=None
                )
                await eventually(lambda: peer_stats(b, "c").inbound_connected, "c accepted")
                assert await until_closed(reader) == b""  # no keepalives from us: closed
                await eventually(lambda: not peer_stats(b, "c").inbound_connected, "c dropped")
            finally:
                await close_quietly(writer)

    run(main)


def test_keepalives_hold_an_idle_link_open() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"], keepalive_interval=0.1, idle_timeout=0.3)
            first = peer_stats(b, "a").last_contact
            assert first is not None
            # Wait (without data) until keepalives have refreshed contact for > 2 idle timeouts.
            await eventually(
                lambda: (peer_stats(b, "a").last_contact or 0) > first + 0.7, "keepalives"
            )
            assert peer_stats(a, "b").connects == 1 and peer_stats(b, "a").connects == 1
            assert peer_stats(a, "b").frames_out == 0  # keepalives are not data frames

    run(main)


def test_handler_errors_are_counted_and_the_reader_carries_on() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            got: asyncio.Queue[bytes] = asyncio.Queue()

            def handler(src: str, payload: bytes) -> None:
                if payload == b"bad":
                    raise RuntimeError("handler bug")
                got.put_nowait(payload)

            b.on_receive("strong", handler)
            for payload in (b"bad", b"ok", b"bad", b"ok2"):
                a.send("b", "strong", payload)
            a.send("b", "nobody-listens", b"?")
            async with asyncio.timeout(5):
                assert [await got.get(), await got.get()] == [b"ok", b"ok2"]
            await eventually(lambda: peer_stats(b, "a").unhandled == 1, "unhandled counted")
            st = peer_stats(b, "a")
            assert st.handler_errors == 2 and st.inbound_connected and st.bad_frames == 0

    run(main)


# ------------------------------------------------------------------ faults


def test_drop_out_fault_drops_outgoing_only_and_clears() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            inbox_a, inbox_b = Inbox(a), Inbox(b)
            assert a.set_fault("b", drop_out=True) == Fault(drop_out=True)
            assert a.faults() == {"b": Fault(drop_out=True)}
            assert a.send("b", "strong", b"dropped")  # silently
            b.send("a", "strong", b"other direction")
            assert await inbox_a.next() == ("strong", "b", b"other direction")
            assert peer_stats(a, "b").fault_dropped_out == 1
            a.clear_faults()
            assert a.faults() == {}
            a.send("b", "strong", b"after heal")
            assert await inbox_b.next() == ("strong", "a", b"after heal")

    run(main)


def test_drop_in_fault_drops_incoming_only_and_clears() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            inbox_a, inbox_b = Inbox(a), Inbox(b)
            a.set_fault("b", drop_in=True)
            b.send("a", "strong", b"dropped")
            await eventually(lambda: peer_stats(a, "b").fault_dropped_in == 1, "dropped on arrival")
            a.send("b", "strong", b"outgoing fine")
            assert await inbox_b.next() == ("strong", "a", b"outgoing fine")
            a.clear_faults()
            b.send("a", "strong", b"after heal")
            assert await inbox_a.next() == ("strong", "b", b"after heal")
            assert peer_stats(a, "b").frames_in == 1

    run(main)


def test_delay_fault_delays_and_clearing_releases_held_frames() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, b = await start(stack, ["a", "b"])
            inbox_b = Inbox(b)
            loop = asyncio.get_running_loop()
            a.set_fault("b", delay=0.3)
            sent = loop.time()
            a.send("b", "strong", b"late")
            assert await inbox_b.next() == ("strong", "a", b"late")
            assert loop.time() - sent >= 0.3
            a.set_fault("b", delay=60.0)  # longer than the test's deadline
            a.send("b", "strong", b"held")
            a.clear_faults()
            assert await inbox_b.next(timeout=2.0) == ("strong", "a", b"held")
            assert peer_stats(a, "b").connects == 1  # keepalives kept the link up

    run(main)


def test_set_fault_validates() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            (a,) = await start(stack, ["a"])
            with pytest.raises(KeyError):
                a.set_fault("nobody", drop_out=True)
            a.add_peer("b", (HOST, 9))
            with pytest.raises(ValueError):
                a.set_fault("b", delay=-1)
            assert a.faults() == {}

    run(main)


# ------------------------------------------------------------------ API edges


def test_send_refuses_what_it_cannot_carry() -> None:
    async def main() -> None:
        a = Transport(config("a", max_frame_bytes=MAX_HANDSHAKE_FRAME))
        await a.start()
        a.add_peer("b", (HOST, 9))
        assert not a.send("nobody", "strong", b"x")
        assert not a.send("b", "strong", b"x" * MAX_HANDSHAKE_FRAME)  # oversize
        with pytest.raises(ValueError):
            a.send("b", "", b"x")
        with pytest.raises(ValueError):
            a.on_receive("c" * 256, lambda src, payload: None)
        with pytest.raises(ValueError):
            a.add_peer("b", (HOST, 10))
        with pytest.raises(ValueError):
            a.add_peer("a", (HOST, 10))
        assert a.stats().send_rejected == 2
        await a.remove_peer("b")
        assert a.peers == () and not a.send("b", "strong", b"x")
        await a.close()
        await a.close()  # idempotent
        assert not a.send("b", "strong", b"x")
        with pytest.raises(RuntimeError):
            await a.start()

    run(main)


def test_close_with_live_connections_leaves_nothing_behind() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, _, c = await start(stack, ["a", "b", "c"])
            for i in range(100):  # some frames still in flight when we close
                a.send("b", "strong", b"%d" % i)
                c.send("a", "eventual", b"%d" % i)
            a.set_fault("c", delay=30)
            a.send("c", "strong", b"held at close")
        # run() checks no task survived; pytest fails on any unclosed socket

    run(main)


def test_stats_are_copies() -> None:
    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a, _ = await start(stack, ["a", "b"])
            snapshot = a.stats()
            snapshot.peers["b"].frames_out = 999
            assert peer_stats(a, "b").frames_out == 0
            assert replace(peer_stats(a, "b"), queued=0) == replace(a.stats().peers["b"], queued=0)

    run(main)

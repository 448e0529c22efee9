"""A closed-loop HTTP load generator in several worker processes (aiohttp).

Each *client* issues its next request when the previous one has answered
(closed loop). Clients are split over ``procs`` worker processes, each running
its share on one asyncio loop with one aiohttp session; the parent merges what
they measured. A point runs in two phases so that connection setup is never
measured: every client first sends one warm-up request (which also opens its
connection), the worker reports ready, and only then does the parent give all
workers one common start time on the system-wide monotonic clock. A request
counts when it *completes* inside ``[start, start + duration)``; its latency is
measured around that one request.

What a point sends is a ``Plan``: a table of pre-rendered requests per endpoint
(URL and body for each key), so the workers need no knowledge of either
system. Client ``c`` uses endpoint ``c % len(endpoints)`` (or the one endpoint
of a leader-only plan) and walks the keys from its own offset.

``ceiling`` measures the generator itself against a trivial local server (raw
asyncio protocol, a fixed answer, no parsing beyond finding the end of each
request) to state how fast the generator can go on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl

#: how long a worker may take to open its connections before a point fails
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Plan:
    """What one measurement point sends.

    ``table[e][k]`` is ``(url, body)`` for endpoint ``e`` and key ``k``; ``body``
    is None for a GET. ``ok`` lists the statuses that count as success.
    """

    method: str
    table: tuple[tuple[tuple[str, bytes | None], ...], ...]
    headers: tuple[tuple[str, str], ...] = ()
    ok: tuple[int, ...] = (200,)


@dataclass
class PointResult:
    """What a point measured, merged over the worker processes."""

    clients: int
    duration: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: one message per error kind, as the server wrote it (truncated)
    error_samples: dict[str, str] = field(default_factory=dict)
    #: CPU seconds the generator's workers used during the point (all phases)
    client_cpu: float = 0.0

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.duration

    def pct_ms(self, q: float) -> float:
        """The ``q`` quantile of the latencies, in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    def merge(self, other: PointResult) -> None:
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        for kind, text in other.error_samples.items():
            self.error_samples.setdefault(kind, text)
        self.client_cpu += other.client_cpu

    def summary(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "ops": self.ops,
            "seconds": self.duration,
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(self.pct_ms(0.50), 2),
            "p99_ms": round(self.pct_ms(0.99), 2),
            "errors": dict(self.errors),
            "error_samples": self.error_samples,
            "client_cpu_s": round(self.client_cpu, 3),
        }


# ------------------------------------------------------------------ worker side


def _error_kind(status: int, body: bytes) -> tuple[str, str]:
    """A short, stable name for an unsuccessful answer, and its text."""
    text = body[:300].decode(errors="replace")
    code = ""
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        data = json.loads(body)
        err = data.get("error")
        # configsvc: {"error": {"code", "message"}}; etcd's gateway: {"error": str, "code": int}
        code = err.get("code", "") if isinstance(err, dict) else str(data.get("code", ""))
    return (f"http {status} {code}".strip(), text)


async def _run_share(plan: Plan, clients: list[int], conn: multiprocessing.connection.Connection,
                     timeout: float) -> PointResult:
    """Run this worker's clients: warm up, report ready, wait for the start time, measure."""
    loop = asyncio.get_running_loop()
    result = PointResult(clients=len(clients), duration=0.0)
    headers = dict(plan.headers)
    n_endpoints = len(plan.table)
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    session_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=session_timeout,
                                     cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
                                     skip_auto_headers=("User-Agent",)) as session:

        async def send(url: yarl.URL, body: bytes | None) -> tuple[int, bytes]:
            async with session.request(plan.method, url, data=body, headers=headers) as response:
                return response.status, await response.read()

        # URLs parsed once per point, not once per request
        table = [[(yarl.URL(url, encoded=True), body) for url, body in row] for row in plan.table]

        def requests_of(client: int) -> list[tuple[yarl.URL, bytes | None]]:
            return table[client % n_endpoints]

        # warm-up: one request per client opens its connection (not measured; failures
        # here are reported by the measured requests that follow)
        async def warm(client: int) -> None:
            url, body = requests_of(client)[client % len(requests_of(client))]
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await send(url, body)

        await asyncio.gather(*(warm(c) for c in clients))
        conn.send(("ready",))
        start, duration = await loop.run_in_executor(None, conn.recv)
        end = start + duration
        result.duration = duration

        async def client_loop(client: int) -> None:
            requests = requests_of(client)
            i = client * 7919  # each client walks the keys from its own offset
            await asyncio.sleep(max(0.0, start - time.monotonic()))  # the common start time
            while True:
                url, body = requests[i % len(requests)]
                i += 1
                began = time.monotonic()
                if began >= end:
                    return
                try:
                    status, answer = await send(url, body)
                except TimeoutError:
                    status, answer = -1, b"client timeout"
                except aiohttp.ClientError as exc:
                    status, answer = -2, f"{type(exc).__name__}: {exc}".encode()
                done = time.monotonic()
                if done >= end:
                    return
                if status in plan.ok:
                    result.latencies.append(done - began)
                    continue
                if status == -1:
                    kind, text = "client timeout", f"no answer within {timeout} s"
                elif status == -2:
                    kind, text = "connection error", answer.decode()
                else:
                    kind, text = _error_kind(status, answer)
                result.errors[kind] += 1
                result.error_samples.setdefault(kind, text)
                if status < 0:
                    # the connection is gone: do not spin on a refusing endpoint
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client_loop(c) for c in clients))
    return result


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """A worker process: run points until told to stop (Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        _, plan, clients, timeout = message
        cpu_before = time.process_time()
        try:
            result = asyncio.run(_run_share(plan, clients, conn, timeout))
        except Exception as exc:  # reported to the parent, which fails the point
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        result.client_cpu = time.process_time() - cpu_before
        conn.send(("done", result))


# ------------------------------------------------------------------ parent side


class LoadGenerator:
    """A pool of worker processes that run measurement points together.

    Use as a context manager; ``run`` measures one point. The workers are
    started once (fork) and live until ``close``.
    """

    def __init__(self, procs: int = 2, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[multiprocessing.connection.Connection] = []
        context = multiprocessing.get_context("fork")
        for _ in range(max(1, procs)):
            parent_end, child_end = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child_end,), daemon=True)
            proc.start()
            child_end.close()
            self._procs.append(proc)
            self._conns.append(parent_end)

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, conn: multiprocessing.connection.Connection, deadline: float, what: str) -> Any:
        if not conn.poll(max(0.0, deadline - time.monotonic())):
            raise RuntimeError(f"load generator: a worker did not {what} in time")
        return conn.recv()

    def run(self, plan: Plan, clients: int, duration: float) -> PointResult:
        """Measure ``clients`` closed-loop clients for ``duration`` seconds."""
        shares: list[list[int]] = [[] for _ in self._conns]
        for c in range(clients):
            shares[c % len(shares)].append(c)
        active = [(conn, share) for conn, share in zip(self._conns, shares, strict=True) if share]
        for conn, share in active:
            conn.send(("run", plan, share, self.timeout))
        deadline = time.monotonic() + READY_TIMEOUT
        for conn, _ in active:
            if self._recv(conn, deadline, "open its connections")[0] != "ready":
                raise RuntimeError("load generator: unexpected message from a worker")
        start = time.monotonic() + 0.05
        for conn, _ in active:
            conn.send((start, duration))
        merged = PointResult(clients=clients, duration=duration)
        deadline = start + duration + self.timeout + 30
        for conn, _ in active:
            kind, result = self._recv(conn, deadline, "finish its point")
            if kind != "done":
                raise RuntimeError(f"load generator: a worker failed: {result}")
            merged.merge(result)
        return merged

    def close(self) -> None:
        """Stop the workers (politely, then by force)."""
        for conn in self._conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(("stop",))
        for proc in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        self._procs.clear()
        self._conns.clear()


# ------------------------------------------------------------------ the generator's own ceiling

_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _TrivialProtocol(asyncio.Protocol):
    """Answers every request with a fixed 200. Requests are counted by their header
    terminator; the generator's bodies are short and never contain one."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        data = self.tail + data
        count = data.count(b"\r\n\r\n")
        self.tail = data[-3:]
        if count:
            self.transport.write(_ANSWER * count)


def _trivial_server_main(sock: socket.socket) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_TrivialProtocol, sock=sock)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


@contextlib.contextmanager
def trivial_server() -> Any:
    """A trivial HTTP server in its own process; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_trivial_server_main, args=(sock,),
                                                       daemon=True)
    proc.start()
    sock.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.join(timeout=5)


def trivial_plan(base: str, value_bytes: int) -> Plan:
    """PUTs of ``value_bytes`` to the trivial server (one endpoint, 100 keys)."""
    body = os.urandom(value_bytes // 2 + 1).hex()[:value_bytes].encode()
    return Plan("PUT", (tuple((f"{base}/k{k}", body) for k in range(100)),))

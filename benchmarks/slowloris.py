"""Idle connections against uvicorn, with and without the node's connection guard.

    .venv/bin/python benchmarks/slowloris.py [--idle 100]

Serves a one-route app with uvicorn twice on loopback: once with only
``limit_concurrency`` (64), once with ``configsvc.http.connection_guard``
(8 connections per address, 2 s header timeout, same ``limit_concurrency``).
Each time it opens ``--idle`` connections from 127.0.0.1 that send nothing,
then times one request from another address (127.0.0.2), and counts how many
idle connections the server has closed within 8 s. Prints one line per server
(docs/limits.md records a run).
"""

from __future__ import annotations

import argparse
import select
import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from configsvc.config import LimitsConfig
from configsvc.http.connection_guard import ConnectionGuard
from configsvc.localcluster import free_ports, wait_for


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


APP = Starlette(routes=[Route("/", _ok)])


def _still_open(sockets: list[socket.socket], seconds: float) -> int:
    """How many of ``sockets`` the server has not closed within ``seconds``."""
    open_ = set(sockets)
    deadline = time.monotonic() + seconds
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], 0.1)
        for sock in readable:
            try:
                if not sock.recv(4096):
                    open_.discard(sock)
            except OSError:
                open_.discard(sock)
    return len(open_)


def measure(name: str, settings: dict[str, Any], idle: int) -> str:
    port = free_ports(1)[0]
    config = uvicorn.Config(APP, host="127.0.0.1", port=port, log_level="error", lifespan="off", **settings)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server")
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    try:
        started = time.monotonic()
        try:
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as other:
                answer: object = other.get(f"http://127.0.0.1:{port}/").status_code
        except httpx.HTTPError as exc:
            answer = type(exc).__name__
        latency_ms = (time.monotonic() - started) * 1000
        left = _still_open(sockets, 8.0)
    finally:
        for sock in sockets:
            sock.close()
        server.should_exit = True
        thread.join(5)
    return (f"{name}: another address got {answer} in {latency_ms:.0f} ms; "
            f"{left} of {idle} idle connections still open 8 s later")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=100, help="idle connections from one address")
    args = parser.parse_args()
    limits = LimitsConfig(connections_per_client=8, max_connections=64, header_timeout=2.0)
    print(measure("uvicorn, limit_concurrency=64 only", {"http": "httptools", "limit_concurrency": 64}, args.idle))
    print(measure("with ConnectionGuard (8 per address, header_timeout 2 s)",
                  ConnectionGuard(limits).uvicorn_settings(), args.idle))


if __name__ == "__main__":
    main()

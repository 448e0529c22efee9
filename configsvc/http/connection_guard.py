"""Slow and idle clients (slowloris) at the connection level, below ASGI.

An ASGI middleware only runs once a request's headers arrived, so it cannot see
a client that opens connections and sends nothing, or sends its headers a byte
a second. This module guards uvicorn's own HTTP protocol (httptools or h11) of
both API ports with one ``ConnectionGuard`` per node:

1. At most ``limits.connections_per_client`` open connections per client IP
   address, over both ports: the next one is answered ``429`` (``Connection:
   close``) and closed at once, before any of its bytes are read.
2. A request's headers must be complete within ``limits.header_timeout``
   seconds of the connection opening or of the previous response; otherwise
   the connection is closed. A request being served (its headers arrived) is
   left to the body timeout (``configsvc.http.limits``) and to the handler.
3. uvicorn's own bounds, from the same limits: ``timeout_keep_alive`` closes
   idle keep-alive connections, ``limit_concurrency`` answers 503 past
   ``max_connections`` per port, and h11's ``max_incomplete_event_size``
   bounds the request line and headers (httptools has its own, fixed bound).

So a single address holding many slow connections exhausts its own share and
nothing else; a connection never holds a slot longer than ``header_timeout``
without a complete request.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import Any

from configsvc.config import LimitsConfig

_BODY = json.dumps({"error": {"code": "too_many_connections",
                              "message": "too many open connections from this address"}}).encode()
#: the whole answer to a connection over the per-client cap
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class ConnectionGuard:
    """Open connections per client IP, shared by a node's API ports; counts what it refused."""

    def __init__(self, limits: LimitsConfig) -> None:
        self.limits = limits
        self.open: dict[str, int] = {}
        #: connections refused at the per-client cap; connections closed at the header timeout
        self.refused = 0
        self.header_timeouts = 0

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (not counted) past the cap."""
        if self.open.get(ip, 0) >= self.limits.connections_per_client:
            self.refused += 1
            return False
        self.open[ip] = self.open.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        left = self.open.get(ip, 0) - 1
        if left > 0:
            self.open[ip] = left
        else:
            self.open.pop(ip, None)

    def protocol(self, base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
        """``base`` (a uvicorn HTTP protocol class) guarded by this guard."""
        guard = self

        class Guarded(base):  # type: ignore[valid-type,misc]
            _guard_ip: str | None = None
            _header_timer: asyncio.TimerHandle | None = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                ip = self.client[0] if self.client else "unknown"
                if not guard.admit(ip):
                    self.transport.write(TOO_MANY_CONNECTIONS)
                    self.transport.close()
                    return
                self._guard_ip = ip
                self._arm_header_timer()

            def connection_lost(self, exc: Exception | None) -> None:
                if self._guard_ip is not None:
                    guard.release(self._guard_ip)
                    self._guard_ip = None
                if self._header_timer is not None:
                    self._header_timer.cancel()
                super().connection_lost(exc)

            def on_response_complete(self) -> None:
                super().on_response_complete()
                if not self.transport.is_closing():
                    self._arm_header_timer()

            def _arm_header_timer(self) -> None:
                if self._header_timer is not None:
                    self._header_timer.cancel()
                self._header_timer = self.loop.call_later(guard.limits.header_timeout, self._header_deadline)

            def _header_deadline(self) -> None:
                self._header_timer = None
                cycle = self.cycle
                if (cycle is None or cycle.response_complete) and not self.transport.is_closing():
                    guard.header_timeouts += 1  # no complete request headers in time
                    self.transport.close()

        Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
        return Guarded

    def uvicorn_settings(self) -> dict[str, Any]:
        """The keyword arguments of ``uvicorn.Config`` that apply these limits."""
        base: type[asyncio.Protocol]
        if importlib.util.find_spec("httptools"):
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

            base = HttpToolsProtocol
        else:  # pragma: no cover - a platform without httptools
            from uvicorn.protocols.http.h11_impl import H11Protocol

            base = H11Protocol
        return {
            "http": self.protocol(base),
            "timeout_keep_alive": self.limits.keep_alive_timeout,
            "limit_concurrency": self.limits.max_connections,
            "h11_max_incomplete_event_size": self.limits.header_max_bytes,
        }

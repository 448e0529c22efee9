"""Per-client request limits of both API faces: an ASGI middleware.

``RequestLimits(limits).wrap(app)`` puts one face behind three limits, shared by
both faces of a node (``configsvc.http.service`` wraps them):

1. Rate: each client has a token bucket (``configsvc.http.token_bucket``) of
   ``rate_burst`` requests refilled at ``rate_per_second``; a request finding
   it empty is answered ``429 rate_limited`` with ``Retry-After`` (whole
   seconds until a token is back) and does nothing.
2. Watchers: at most ``watchers_per_client`` blocking reads (a request with
   ``?index=``, on either face) of one client in flight; one more is ``429
   too_many_watchers`` and does nothing.
3. Body time: the whole request body must arrive within ``body_timeout``
   seconds of the request's start; a read past it raises ``408
   request_timeout`` (which the face answers, with ``Connection: close``).
   Nothing was done: handlers act only on a whole body.

A client is the token it presents (``X-Consul-Token``, ``Authorization:
Bearer``, the Consul face's ``?token=``), hashed, when the node knows that token
(with ACLs on: the bootstrap token or a live one); otherwise its IP address. Requests forwarded by a peer run through
the unwrapped app: they were admitted where they arrived.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Sequence

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configsvc.config import LimitsConfig
from configsvc.http.acl import presented_secret
from configsvc.http.errors import ApiError
from configsvc.http.token_bucket import Buckets


def check_txn_size(limits: LimitsConfig, ops: Sequence[object]) -> None:
    """A transaction's size, on either API: raises 413 ``too_many_operations`` past
    ``txn_max_ops``, 400 ``key_too_long`` for an operation's ``key`` or ``prefix``
    past ``key_max_bytes``, 413 ``value_too_large`` for its ``value`` past
    ``value_max_bytes`` (naming the operation). Called before anything is done."""
    if len(ops) > limits.txn_max_ops:
        raise ApiError(413, "too_many_operations", f"a transaction holds at most {limits.txn_max_ops} operations")
    for i, op in enumerate(ops):
        for field in ("key", "prefix"):
            key = getattr(op, field, None)
            size = len(key.encode()) if isinstance(key, str) else len(key) if isinstance(key, bytes) else 0
            if size > limits.key_max_bytes:
                raise ApiError(400, "key_too_long", f"operation {i}: keys are at most {limits.key_max_bytes} bytes")
        value = getattr(op, "value", None)
        if isinstance(value, bytes) and len(value) > limits.value_max_bytes:
            raise ApiError(413, "value_too_large",
                           f"operation {i}: values are limited to {limits.value_max_bytes} bytes")


def client_key(scope: Scope, known: Callable[[str], bool] = lambda secret: False,
               *, consul: bool = False) -> str:
    """Whom a request's limits are counted against: the token it presents
    (``configsvc.http.acl.presented_secret``; ``?token=`` on the Consul face),
    hashed, if ``known(secret)`` -- else its IP address. Only a token the node
    knows counts on its own: a client inventing secrets would otherwise get a
    fresh bucket per request."""
    query = QueryParams(scope.get("query_string", b"")).get("token") if consul else None
    try:
        secret = presented_secret(Headers(scope=scope), query)
    except ApiError:
        secret = None  # malformed: the face answers 401; it still counts against the address
    if secret is not None and known(secret):
        return "token:" + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class RequestLimits:
    """The limits of one node's API faces; ``clock`` is injectable (monotonic seconds)."""

    def __init__(self, limits: LimitsConfig, clock: Callable[[], float] = time.monotonic,
                 known: Callable[[str], bool] = lambda secret: False) -> None:
        self.limits = limits
        self.clock = clock
        #: whether a presented secret is a token this node knows (``client_key``)
        self.known = known
        self.buckets = Buckets(limits.rate_per_second, limits.rate_burst)
        self.watchers: dict[str, int] = {}
        #: requests refused, by error code (rate_limited, too_many_watchers, request_timeout)
        self.refused: dict[str, int] = {}

    def wrap(self, app: ASGIApp, *, consul: bool = False) -> ASGIApp:
        """``app`` behind the limits; ``consul``: the face reads ``?token=`` too."""

        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            key = client_key(scope, self.known, consul=consul)
            wait = self.buckets.take(key, self.clock())
            if wait > 0:
                await self._refuse(scope, receive, send, ApiError(
                    429, "rate_limited",
                    f"more than {self.limits.rate_per_second:g} requests per second; retry later"),
                    retry_after=wait)
                return
            watch = "index" in QueryParams(scope.get("query_string", b""))
            if watch:
                if self.watchers.get(key, 0) >= self.limits.watchers_per_client:
                    await self._refuse(scope, receive, send, ApiError(
                        429, "too_many_watchers",
                        f"at most {self.limits.watchers_per_client} blocking reads per client at once"),
                        retry_after=1.0)
                    return
                self.watchers[key] = self.watchers.get(key, 0) + 1
            try:
                await app(scope, self._timed(receive), _closing_on_timeout(send))
            finally:
                if watch:
                    left = self.watchers[key] - 1
                    if left:
                        self.watchers[key] = left
                    else:
                        del self.watchers[key]

        return limited

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` with every read of the body bounded by one deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        done = False

        async def timed() -> Message:
            nonlocal done
            if done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                self.refused["request_timeout"] = self.refused.get("request_timeout", 0) + 1
                raise ApiError(408, "request_timeout",
                               f"the request body did not arrive within {self.limits.body_timeout:g} s") from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return timed

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: ApiError,
                      retry_after: float) -> None:
        self.refused[error.code] = self.refused.get(error.code, 0) + 1
        response = error.response()
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        await response(scope, receive, send)


def _closing_on_timeout(send: Send) -> Send:
    """``send`` that asks the server to close the connection after a 408 (the rest of
    the body may still be on its way)."""

    async def closing(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 408:
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return closing

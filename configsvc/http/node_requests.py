"""Request helpers every API face shares: forwarding to the leader, long polls,
bounded bodies, and which consistency a namespace has.

They turn a node's state into HTTP answers (``ApiError``), so they live on
the HTTP side: the node itself knows nothing of requests.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.errors import ApiError
from configsvc.http.forwarding import FORWARDED, Forwarder
from configsvc.http.params import wait_seconds
from configsvc.runtime.strong_driver import Halted, NotLeader

if TYPE_CHECKING:
    from configsvc.node import Node


async def forward(node: Node, request: Request, leader: str | None,
                  forwarder: Forwarder | None = None) -> Response:
    """Send ``request`` to the leader once, over the peer transport; 503 if none is known.

    Through ``forwarder``, else the one of the app the request arrived on
    (``app.state.forwarder``, set by ``configsvc.http.service``); an app built
    without one (a single node in tests) does not forward."""
    if request.headers.get(FORWARDED):
        raise ApiError(503, "not_leader", "not the leader (forwarded request)", leader=leader)
    if leader is None or leader == node.id:
        raise ApiError(503, "no_quorum", "no leader is known right now; retry shortly")
    if forwarder is None:
        app = request.scope.get("app")
        forwarder = getattr(getattr(app, "state", None), "forwarder", None)
    if not isinstance(forwarder, Forwarder):
        raise ApiError(503, "not_leader", "this node does not forward requests", leader=leader)
    # The body may already have been read (and checked) by the handler.
    body = getattr(request.state, "body", None)
    if body is None:
        body = await request.body()
    return await forwarder.forward(request, leader, body)


async def watch(node: Node, request: Request, changed: Callable[[], bool]) -> None:
    """Block (long poll) until ``changed()`` holds or the wait bound passes
    (``?wait=S``, checked by ``params.wait_seconds``, capped by the limits)."""
    wait = min(wait_seconds(request, 60.0), node.config.limits.watch_max_seconds)
    await node.strong.wait_for_change(changed, wait)


async def read_body(request: Request, limit: int, code: str) -> bytes:
    """The request body, refused with 413 ``code`` past ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, code, f"the body is limited to {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(413, code, f"the body is limited to {limit} bytes")
    request.state.body = bytes(data)
    return request.state.body  # type: ignore[no-any-return]


async def consistency_of(node: Node, request: Request, name: str) -> str | None:
    """The consistency of namespace ``name``; None means "forward this request to
    the leader". Only the leader, after a read barrier, answers 404: a follower's
    registry may not have applied a creation that was already acknowledged."""
    check_serving(node)
    for _ in range(2):
        for info in node.strong.sm.namespaces():
            if info.name == name:
                return info.consistency
        if not await registry_barrier(node, request):
            return None
    raise ApiError(404, "namespace_not_found", f"no namespace {name!r}")


async def registry_barrier(node: Node, request: Request) -> bool:
    """Wait until every acknowledged registry change is applied here and return True
    (a linearizable barrier: the leader's lease or a quorum round; a follower asks
    the leader for the index). Knowing no leader, return False: forward the request
    (which answers 503 without one). Raises 503 ``not_leader`` for a forwarded
    request that found no leader here."""
    try:
        await node.strong.barrier(node.config.timing.request_timeout)
    except NotLeader:
        if request.headers.get(FORWARDED):
            raise ApiError(503, "not_leader", "leadership moved; retry") from None
        return False
    except TimeoutError:
        raise ApiError(503, "no_quorum", "could not confirm the namespace registry") from None
    except Halted as exc:
        raise ApiError(503, "unavailable", str(exc)) from None
    return True


def check_serving(node: Node) -> None:
    """Raise 503 unavailable if this node must not serve (corrupt storage, or a state
    being re-synced after it disagreed with the majority's, ``Node.refusal``)."""
    refusal = node.refusal()
    if refusal:
        raise ApiError(503, "unavailable", refusal)


def require_admin_bearer(request: Request, token: str) -> None:
    """Raise 401 unless the request presents ``Authorization: Bearer <token>``
    (compared in constant time)."""
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "unauthorized", "a valid admin bearer token is required")

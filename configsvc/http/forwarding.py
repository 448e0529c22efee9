"""Forwarding requests to the leader over the peer transport (channel ``rpc``).

A follower that cannot answer a strong request ships it whole to the leader
as one frame; the leader runs it through its own HTTP application in-process
(marked forwarded, so it is never forwarded again) and ships the response
back. Going through the transport — not a second HTTP connection — means
forwarding obeys the same partitions, injected faults and peer
authentication as every other peer message.

A node serves more than one HTTP face (the native API, the Consul-compatible
one): a forwarded request names its face (``X-Configsvc-Face``, from the
``face`` in the receiving app's state) and runs through the same face on the
leader, so the client gets that face's answer.

Frames (msgpack): ``["req", id, method, path, query, headers, body]`` and
``["resp", id, status, headers, body]``; ``decode_frame`` checks every field
(an id is an unsigned 64-bit int, a status 100-599, headers ``[name, value]``
string pairs, a body bytes) and raises ``MalformedFrame`` and nothing else
for anything that is not exactly such a frame. Malformed frames are counted
and dropped; a request with no response in time is answered 503 (reads: safe to
retry) or 504 ``outcome_unknown`` (writes: it may have been proposed). A
blocking read (``index``/``wait``) waits on the node it arrived at; what it
forwards is a plain read, answered at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import msgpack
from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.errors import ApiError

log = logging.getLogger("configsvc.http.forwarding")

CHANNEL = "rpc"
FORWARDED = "x-configsvc-forwarded"
FACE = "x-configsvc-face"
NATIVE = "native"
_KEEP_HEADERS = ("content-type", "x-client-id", "x-client-seq", "x-configsvc-token", "x-configsvc-context",
                 "authorization", "x-consul-token")  # the ACL token: the leader checks it again
_PASS_BACK = ("content-type", "retry-after", "etag")
_PASS_BACK_PREFIXES = ("x-configsvc", "x-consul-")


def face_of(request: Request) -> str:
    """The face (``app.state.face``) a request arrived on; the native API by default."""
    state = getattr(request.scope.get("app"), "state", None)
    face = getattr(state, "face", NATIVE)
    return face if isinstance(face, str) else NATIVE


class MalformedFrame(ValueError):
    """Bytes that are not a forwarding frame."""


@dataclass(frozen=True, slots=True)
class RequestFrame:
    rid: int
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class ResponseFrame:
    rid: int
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def decode_frame(payload: bytes) -> RequestFrame | ResponseFrame:
    """One frame; raises ``MalformedFrame`` (only) for anything else. Never converts:
    a body that is an int must not become ``bytes(int)`` (a peer could make us
    allocate whatever it names), a status must be one HTTP can carry."""
    try:
        frame = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # the unpacker's failure modes are not a closed set
        raise MalformedFrame(f"not msgpack: {exc!r:.80}") from exc
    if not isinstance(frame, list) or len(frame) < 2:
        raise MalformedFrame("a frame is a list [kind, id, ...]")
    kind, rid = frame[0], frame[1]
    if type(rid) is not int or not 0 <= rid < 2**64:
        raise MalformedFrame("bad id")
    if kind == "req" and len(frame) == 7:
        _, _, method, path, query, headers, body = frame
        if not (_text(method) and _text(path) and path.startswith("/") and isinstance(query, str)):
            raise MalformedFrame("bad request line")
        return RequestFrame(rid, method, path, query, _headers(headers), _body(body))
    if kind == "resp" and len(frame) == 5:
        _, _, status, headers, body = frame
        if type(status) is not int or not 100 <= status <= 599:
            raise MalformedFrame("bad status")
        return ResponseFrame(rid, status, _headers(headers), _body(body))
    raise MalformedFrame(f"unknown frame {str(kind)[:20]!r} of {len(frame)} fields")


def _text(obj: object) -> bool:
    return isinstance(obj, str) and 0 < len(obj) <= 65536


def _headers(obj: object) -> list[tuple[str, str]]:
    if not isinstance(obj, list) or not all(
        isinstance(h, list) and len(h) == 2 and isinstance(h[0], str) and isinstance(h[1], str)
        for h in obj
    ):
        raise MalformedFrame("headers are [name, value] string pairs")
    return [(k, v) for k, v in obj]


def _body(obj: object) -> bytes:
    if not isinstance(obj, bytes):
        raise MalformedFrame("a body is bytes")
    return obj


class Forwarder:
    def __init__(self, node_id: str, send: Callable[[str, bytes], object], timeout: float) -> None:
        self.node_id = node_id
        self._send = send
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[int, list[tuple[str, str]], bytes]]] = {}
        #: face -> a client running requests through that face's app in-process
        self._local: dict[str, httpx.AsyncClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.malformed = 0
        #: requests forwarded to a leader (``forward``) and served for a peer
        self.forwarded = 0
        self.served = 0

    def serve_with(self, app: Any, face: str = NATIVE) -> None:
        """Requests forwarded to this node for ``face`` run through ``app`` in-process."""
        self._local[face] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                              base_url="http://local", timeout=self.timeout + 5)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in self._local.values():
            await client.aclose()

    async def forward(self, request: Request, leader: str, body: bytes) -> Response:
        rid = next(self._ids)
        self.forwarded += 1
        headers = [(k, v) for k, v in request.headers.items() if k.lower() in _KEEP_HEADERS]
        headers.append((FACE, face_of(request)))
        # A watch waits where it arrived; the leader answers at once (no second wait).
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k not in ("index", "wait")])
        frame = ["req", rid, request.method, request.url.path, query, headers, body]
        fut: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[rid] = fut
        try:
            self._send(leader, msgpack.packb(frame, use_bin_type=True))
            status, resp_headers, content = await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            if request.method in ("GET", "HEAD"):
                raise ApiError(503, "unavailable", f"leader {leader} did not answer in time") from None
            raise ApiError(504, "outcome_unknown", f"forwarded to {leader}; no answer in time") from None
        finally:
            self._waiting.pop(rid, None)
        keep = {k: v for k, v in resp_headers
                if k.lower() in _PASS_BACK or k.lower().startswith(_PASS_BACK_PREFIXES)}
        return Response(content, status_code=status, headers=keep)

    async def ask(self, dst: str, path: str, query: str = "", timeout: float | None = None
                  ) -> tuple[int, bytes]:
        """``GET path?query`` on peer ``dst``'s native API, over the transport:
        (status, body). Raises ``TimeoutError`` (no answer within ``timeout``, or the
        frame could not be queued)."""
        rid = next(self._ids)
        frame = ["req", rid, "GET", path, query, [(FACE, NATIVE)], b""]
        fut: asyncio.Future[tuple[int, list[tuple[str, str]], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[rid] = fut
        try:
            if self._send(dst, msgpack.packb(frame, use_bin_type=True)) is False:
                raise TimeoutError(f"{dst} is not reachable")
            status, _, body = await asyncio.wait_for(fut, timeout or self.timeout)
        finally:
            self._waiting.pop(rid, None)
        return status, body

    def deliver(self, src: str, payload: bytes) -> None:
        try:
            frame = decode_frame(payload)
        except MalformedFrame as exc:
            self.malformed += 1
            log.warning("dropped a malformed forwarding frame from %s: %s", src, exc)
            return
        if isinstance(frame, RequestFrame):
            self.served += 1
            task = asyncio.get_running_loop().create_task(
                self._run(src, frame.rid, frame.method, frame.path, frame.query, frame.headers,
                          frame.body)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        fut = self._waiting.get(frame.rid)
        if fut is not None and not fut.done():
            fut.set_result((frame.status, frame.headers, frame.body))

    async def _run(self, src: str, rid: int, method: str, path: str, query: str,
                   headers: list[tuple[str, str]], body: bytes) -> None:
        face = next((v for k, v in headers if k.lower() == FACE), NATIVE)
        local = self._local.get(face)
        if local is None:
            log.warning("dropped a request forwarded by %s for face %r, which this node lacks", src, face)
            return
        url = path + (f"?{query}" if query else "")
        try:
            response = await local.request(method, url, content=body, headers=[*headers, (FORWARDED, src)])
            frame = ["resp", rid, response.status_code, list(response.headers.items()), response.content]
        except Exception as exc:  # never let a forwarded request kill the node
            log.error("forwarded request failed: %s", exc)
            frame = ["resp", rid, 500, [("content-type", "application/json")],
                     b'{"error":{"code":"internal","message":"forwarded request failed"}}']
        self._send(src, msgpack.packb(frame, use_bin_type=True))

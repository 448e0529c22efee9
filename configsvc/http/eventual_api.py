"""Native JSON API for eventual-namespace keys: causal tokens in and out.

Every response carries ``X-Configsvc-Token``, a compact version vector; a
request that sends one back is served only once this node has seen its
past — read-your-writes, monotonic reads and writes, writes-follow-reads,
across nodes. A node that cannot catch up within a short wait answers
``409 causally_behind``: try another node. Reads return every concurrent
value (siblings) and a context (``X-Configsvc-Context``); a write or delete
sending that context back supersedes exactly what was read. A write without
one supersedes what the serving node has seen of the key, so siblings arise
only from truly concurrent writes (``?blind=true`` keeps every value).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from configsvc.http.errors import ApiError
from eventual.requests import (
    BadRequest,
    CausallyBehind,
    Delete,
    Get,
    List,
    ListResult,
    NotFound,
    Put,
    ReadResult,
    Result,
    SiblingView,
    WriteResult,
)
from eventual.requests import (
    Request as EventualRequest,
)

if TYPE_CHECKING:
    from configsvc.node import Node

TOKEN = "X-Configsvc-Token"
CONTEXT = "X-Configsvc-Context"


def _sibling(s: SiblingView) -> dict[str, Any]:
    return {"value": base64.b64encode(s.value).decode(), "dot": [s.dot[0], s.dot[1]], "hlc": s.hlc}


class EventualApi:
    def __init__(self, node: Node) -> None:
        self.node = node

    async def _call(self, request: Request, ns: str, call: EventualRequest) -> tuple[Result, str]:
        node = self.node
        token = request.headers.get(TOKEN) or None
        node.refresh_merge(ns)
        try:
            result = await node.eventual.request(call, token, node.config.timing.request_timeout)
        except TimeoutError:
            raise ApiError(504, "outcome_unknown", "no answer in time; a write may still apply") from None
        match result:
            case BadRequest(reason=reason):
                raise ApiError(400, "invalid_argument", reason)
            case CausallyBehind(missing=missing):
                raise ApiError(409, "causally_behind", "this node has not yet seen your past; "
                               "retry another node", missing=missing)
            case NotFound(what=what, token=new):
                raise ApiError(404, "key_not_found", f"no {what}", token=new)
        return result, getattr(result, "token", "")

    async def get_key(self, request: Request, ns: str, key: str) -> Response:
        result, token = await self._call(request, ns, Get(ns, key))
        assert isinstance(result, ReadResult)
        if not result.siblings:
            raise ApiError(404, "key_not_found", f"no key {key!r} in {ns!r}", token=token)
        body = {
            "key": key,
            "value": _sibling(result.siblings[0])["value"] if len(result.siblings) == 1 else None,
            "siblings": [_sibling(s) for s in result.siblings],
            "context": result.context,
        }
        return JSONResponse(body, headers={TOKEN: token, CONTEXT: result.context})

    async def list_keys(self, request: Request, ns: str) -> Response:
        prefix = request.query_params.get("prefix", "")
        result, token = await self._call(request, ns, List(ns, prefix))
        assert isinstance(result, ListResult)
        items = [{"key": k, "siblings": [_sibling(s) for s in sibs]} for k, sibs in result.items]
        return JSONResponse({"items": items}, headers={TOKEN: token})

    async def put_key(self, request: Request, ns: str, key: str) -> Response:
        value = await self.node.body(request, self.node.config.limits.value_max_bytes, "value_too_large")
        if len(key.encode()) > self.node.config.limits.key_max_bytes:
            raise ApiError(400, "key_too_long", f"keys are at most {self.node.config.limits.key_max_bytes} bytes")
        context = request.headers.get(CONTEXT) or await self._seen_context(request, ns, key)
        result, token = await self._call(request, ns, Put(ns, key, value, context))
        assert isinstance(result, WriteResult)
        return JSONResponse({"dot": [result.dot[0], result.dot[1]]}, headers={TOKEN: token})

    async def _seen_context(self, request: Request, ns: str, key: str) -> str | None:
        """Without an explicit context a write supersedes what this node has seen of
        the key (``?blind=true``: supersede nothing, keep every value as a sibling)."""
        if request.query_params.get("blind") in ("1", "true"):
            return None
        try:
            result, _ = await self._call(request, ns, Get(ns, key))
        except ApiError as exc:
            if exc.code == "key_not_found":
                return None
            raise
        return result.context if isinstance(result, ReadResult) else None

    async def delete_key(self, request: Request, ns: str, key: str) -> Response:
        context = request.headers.get(CONTEXT) or None
        _, token = await self._call(request, ns, Delete(ns, key, context))
        return JSONResponse({"deleted": key}, headers={TOKEN: token})

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

Retries add nothing: a PUT or DELETE may carry ``Idempotency-Key`` (1-128
printable ASCII characters), one per logical write, the same on every retry
of it, on any node. A node that already holds that write answers with its
first attempt's dot (``"replayed": true``) and writes nothing; two attempts
that landed on different nodes before either heard of the other are one
write: reads show one value (``eventual.serve``, idempotent writes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from configsvc.http.errors import ApiError
from configsvc.http.limits import check_txn_size
from configsvc.http.node_requests import read_body
from configsvc.http.params import flag, unsupported_here, wait_seconds
from configsvc.runtime.eventual_driver import Halted, OutcomeUnknown
from eventual.codec import MAX_IDEMPOTENCY_KEY
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
    Txn,
    TxnCheck,
    TxnFailed,
    TxnOp,
    TxnRead,
    TxnReadPrefix,
    TxnRemovePrefix,
    TxnResult,
    TxnWrite,
    WriteResult,
)
from eventual.requests import (
    Request as EventualRequest,
)
from eventual.txn import version_stamp

if TYPE_CHECKING:
    from configsvc.node import Node

TOKEN = "X-Configsvc-Token"
CONTEXT = "X-Configsvc-Context"
#: this node's change index of the namespace as of the answer (``eventual.change_index``)
CHANGE_INDEX = "X-Configsvc-Change-Index"
IDEMPOTENCY_KEY = "Idempotency-Key"


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key``, or None; a malformed one is a 400."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in key):
        raise ApiError(400, "invalid_argument", f"{IDEMPOTENCY_KEY} must be 1-"
                       f"{MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


_DIGEST = re.compile("[0-9a-f]{16}")


def _digest(body: dict[str, Any]) -> str:
    """A short digest of an answer's content (not its context): the watch index."""
    content = body.get("siblings", body.get("items"))
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


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
            if isinstance(call, Get | List):
                raise ApiError(503, "unavailable", "no answer in time; safe to retry") from None
            raise ApiError(504, "outcome_unknown", "no answer in time; the write may still apply") from None
        except OutcomeUnknown as exc:
            if isinstance(call, Get | List):
                raise ApiError(503, "unavailable", f"this node's eventual store stopped: {exc}") from None
            raise ApiError(504, "outcome_unknown", "this node's eventual store stopped after taking "
                           f"the write; it may still apply: {exc}") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", f"this node's eventual store stopped: {exc}") from None
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
        async def read() -> tuple[dict[str, Any], dict[str, str]]:
            result, token = await self._call(request, ns, Get(ns, key))
            assert isinstance(result, ReadResult)
            siblings = [_sibling(s) for s in result.siblings]
            body = {
                "key": key,
                "value": siblings[0]["value"] if len(siblings) == 1 else None,
                "siblings": siblings,
                "context": result.context,
            }
            return body, {TOKEN: token, CONTEXT: result.context, CHANGE_INDEX: str(result.index)}

        body, headers = await self._blocking(request, read)
        if not body["siblings"]:
            raise ApiError(404, "key_not_found", f"no key {key!r} in {ns!r}", index=body["index"],
                           token=headers[TOKEN])
        return JSONResponse(body, headers=headers)

    async def list_keys(self, request: Request, ns: str) -> Response:
        if request.query_params.get("limit", "0") not in ("", "0"):  # 0: no limit
            raise ApiError(400, "invalid_argument", "limit is not supported on an eventual "
                           "namespace: it lists every key under the prefix (0 means no limit)")
        body, headers, _ = await self.list_read(request, ns, request.query_params.get("prefix", ""))
        return JSONResponse(body, headers=headers)

    async def list_read(
        self, request: Request, ns: str, prefix: str
    ) -> tuple[dict[str, Any], dict[str, str], ListResult]:
        """The keys under ``prefix`` (their JSON body with its ``index``, the headers,
        and the result itself), blocking on ``?index`` like every eventual read."""
        answers: list[ListResult] = []

        async def read() -> tuple[dict[str, Any], dict[str, str]]:
            result, token = await self._call(request, ns, List(ns, prefix))
            assert isinstance(result, ListResult)
            answers.append(result)
            items = [{"key": k, "siblings": [_sibling(s) for s in sibs]} for k, sibs in result.items]
            return {"items": items}, {TOKEN: token, CHANGE_INDEX: str(result.index)}

        body, headers = await self._blocking(request, read)
        return body, headers, answers[-1]

    async def _blocking(
        self, request: Request, read: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, str]]]]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Answer ``read()``, with an ``index`` (a digest of the answer). Given
        ``?index=I``, block (up to ``wait`` seconds) until the answer's index differs."""
        since = request.query_params.get("index") or None
        if since is not None and not _DIGEST.fullmatch(since):
            # e.g. a strong revision: it never matches, so a watch loop would spin
            raise ApiError(400, "invalid_argument", "index must be the 'index' of an earlier "
                           "answer from this namespace (16 hex digits)")
        wait = wait_seconds(request, 60.0)
        if request.query_params.get("consistency", "stale") not in ("linearizable", "stale"):
            raise ApiError(400, "invalid_argument", "consistency must be 'linearizable' or 'stale'")
        deadline = time.monotonic() + min(wait, self.node.config.limits.watch_max_seconds)
        while True:
            body, headers = await read()
            body["index"] = _digest(body)
            remaining = deadline - time.monotonic()
            if since is None or body["index"] != since or remaining <= 0:
                return body, headers
            await self.node.eventual.wait_for_change(remaining)

    async def put_key(self, request: Request, ns: str, key: str) -> Response:
        unsupported_here(request, ("cas", "flags"), "an eventual key has no mod revision or "
                         "flags (a transaction's put takes if_version)")
        value = await read_body(request, self.node.config.limits.value_max_bytes, "value_too_large")
        if len(key.encode()) > self.node.config.limits.key_max_bytes:
            raise ApiError(400, "key_too_long", f"keys are at most {self.node.config.limits.key_max_bytes} bytes")
        idem = idempotency_key(request)
        context = request.headers.get(CONTEXT) or await self._seen_context(request, ns, key)
        result, token = await self._call(request, ns, Put(ns, key, value, context, idem))
        assert isinstance(result, WriteResult)
        return JSONResponse({"dot": [result.dot[0], result.dot[1]], "replayed": result.replayed},
                            headers={TOKEN: token})

    async def _seen_context(self, request: Request, ns: str, key: str) -> str | None:
        """Without an explicit context a write supersedes what this node has seen of
        the key (``?blind=true``: supersede nothing, keep every value as a sibling)."""
        if flag(request, "blind"):
            return None
        try:
            result, _ = await self._call(request, ns, Get(ns, key))
        except ApiError as exc:
            if exc.code == "key_not_found":
                return None
            raise
        return result.context if isinstance(result, ReadResult) else None

    async def delete_key(self, request: Request, ns: str, key: str) -> Response:
        unsupported_here(request, ("cas", "recurse"), "in an eventual namespace a transaction's "
                         "delete takes if_version, its delete_prefix deletes a prefix")
        context = request.headers.get(CONTEXT) or None
        result, token = await self._call(request, ns, Delete(ns, key, context,
                                                              idempotency_key(request)))
        replayed = isinstance(result, WriteResult) and result.replayed
        return JSONResponse({"deleted": key, "replayed": replayed}, headers={TOKEN: token})

    async def txn(self, request: Request, ns: str, spec: Any) -> Response:
        """``POST /v1/txn/{ns}`` on an eventual namespace (``eventual.txn``): ``{"ops":
        [...]}`` run in order at this node, all or nothing, visible atomically
        everywhere. Ops: ``{"op": "check", "key", "version"?}`` (absent version:
        must exist; 0: must not), ``{"op": "get", "key"}``, ``{"op": "range",
        "prefix"}``, ``{"op": "put", "key", "value" (base64), "if_version"?}``,
        ``{"op": "delete", "key", "if_version"?}``, ``{"op": "delete_prefix",
        "prefix"}``. ``200 {"succeeded": true, "results": [...]}`` (per op, the
        keys it saw with their siblings and ``version``), or ``409 {"succeeded":
        false, "failed_op": i, "reason"}``: nothing written."""
        unknown = sorted(set(spec) - {"ops"})
        if unknown:  # e.g. a strong {compare, success, failure}
            raise ApiError(400, "invalid_argument", f"unknown field(s) {', '.join(unknown)}: an "
                           "eventual namespace's transaction is {ops}")
        if not isinstance(spec.get("ops"), list):
            raise ApiError(400, "invalid_argument", "an eventual transaction is {\"ops\": [...]}")
        try:
            ops = tuple(_eventual_txn_op(o) for o in spec["ops"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ApiError(400, "invalid_argument", f"invalid transaction: {exc!r}") from None
        check_txn_size(self.node.config.limits, ops)
        result, token = await self._call(request, ns, Txn(ns, ops, idempotency_key(request)))
        if isinstance(result, TxnFailed):
            return JSONResponse({"succeeded": False, "failed_op": result.op, "reason": result.reason},
                                status_code=409, headers={TOKEN: token})
        assert isinstance(result, TxnResult)
        results = [[{"key": key, "version": version_stamp(s.dot for s in sibs),
                     "siblings": [_sibling(s) for s in sibs]} for key, sibs in seen]
                   for seen in result.results]
        return JSONResponse({"succeeded": True, "replayed": result.replayed, "results": results},
                            headers={TOKEN: token})


def _version(o: dict[str, Any], field: str) -> int | None:
    value = o.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{field} must be a non-negative integer")
    return value


def _eventual_txn_op(o: dict[str, Any]) -> TxnOp:
    verb = o["op"]
    if verb == "check":
        return TxnCheck(str(o["key"]), _version(o, "version"))
    if verb == "get":
        return TxnRead(str(o["key"]))
    if verb == "range":
        return TxnReadPrefix(str(o.get("prefix", "")))
    if verb == "put":
        return TxnWrite(str(o["key"]), base64.b64decode(o["value"], validate=True),
                        _version(o, "if_version"))
    if verb == "delete":
        return TxnWrite(str(o["key"]), None, _version(o, "if_version"))
    if verb == "delete_prefix":
        return TxnRemovePrefix(str(o["prefix"]))
    raise ValueError(f"unknown op {verb!r}")

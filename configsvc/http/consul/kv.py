"""``/v1/kv/<key>``: Consul's KV endpoints over both stores.

The namespace of a key is its first path segment (``configsvc.http.consul.entries``).
Strong namespaces go through ``StrongApi`` (the log, the lease, forwarding to
the leader); eventual namespaces through ``EventualApi`` (this node, causal
tokens). This module only translates: parameters in, Consul's shapes out.

- ``GET``: one entry as ``[entry]``, ``?recurse`` every entry under the
  prefix, ``?keys`` (with ``separator``) the key names, ``?raw`` the bare
  value. Nothing found: ``404`` with the ``X-Consul-*`` headers (Consul's
  clients read the index even then).
- ``PUT``: the body is the value; ``?cas=<ModifyIndex>`` (0: create only),
  ``?flags=``; answers ``true`` or ``false`` (a failed ``cas``).
- ``DELETE``: ``?recurse`` (the prefix), ``?cas=``; answers ``true``/``false``.

Eventual namespaces honour ``Idempotency-Key`` on ``PUT``/``DELETE`` as the
native API does (a retry, on any node, is the same write). A write with
``cas`` is a one-operation eventual transaction (``eventual.txn``): the check
against this node's view (the key's version stamp) and the write happen in
one step, and the write supersedes exactly the versions checked. Never a lost
write — a concurrent write elsewhere becomes a sibling — but two nodes may
both accept a ``cas`` on the same version. ``flags`` other than 0
are refused (the eventual store keeps none); a recursive delete removes the
keys one by one (not atomically).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.consul.blocking import EventualRead, block_eventual, block_strong
from configsvc.http.consul.consistency import (
    STRONG_READ,
    ReadMeta,
    eventual_meta,
    strong_meta,
)
from configsvc.http.consul.entries import (
    eventual_entry,
    full_key,
    keys_only,
    shown,
    split_key,
    strong_entry,
)
from configsvc.http.consul.params import BLOCKING_READ, Query, unsupported
from configsvc.http.errors import ApiError
from configsvc.http.eventual_api import TOKEN, EventualApi, idempotency_key
from configsvc.http.node_requests import consistency_of, forward, read_body
from configsvc.http.strong_api import StrongApi, _op, result_json
from eventual.requests import Delete as EventualDelete
from eventual.requests import Get as EventualGet
from eventual.requests import List as EventualList
from eventual.requests import ListResult, ReadResult, TxnFailed, TxnWrite
from eventual.requests import Txn as EventualTxn
from strong.ops import Delete, DeletePrefix, Get, Put, Range
from strong.results import CasFailed, GetResult, RangeResult

if TYPE_CHECKING:
    from configsvc.node import Node

SIBLINGS = "X-Configsvc-Siblings"
_GET_PARAMS = BLOCKING_READ | {"recurse", "keys", "separator", "raw"}


def consul_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status_code=status, headers=headers, media_type="application/json")


def not_found(meta: ReadMeta) -> Response:
    """Consul's 404 for a read: no body, but the index headers clients rely on."""
    return Response(b"", status_code=404, headers=meta.headers())


class ConsulKV:
    def __init__(self, node: Node, strong: StrongApi, eventual: EventualApi) -> None:
        self.node = node
        self.strong = strong
        self.eventual = eventual
        self.limits = node.config.limits
        self.datacenter = node.config.consul.datacenter

    async def get(self, request: Request) -> Response:
        q = Query(request, _GET_PARAMS, self.datacenter)
        key = request.path_params["key"]
        keys = q.flag("keys")
        listing = keys or q.flag("recurse")
        ns, rest = split_key(key, prefix=listing, key_max_bytes=self.limits.key_max_bytes)
        mode, index = q.mode(), q.index()
        wait = q.wait(self.limits.watch_max_seconds)
        separator = q.text("separator") if keys else None
        raw = q.flag("raw") and not listing
        try:
            kind = await consistency_of(self.node, request, ns)
        except ApiError as exc:
            if exc.status != 404:
                raise
            return not_found(strong_meta(self.node, "stale", self.node.strong.sm.revision))
        if kind is None:
            return await forward(self.node, request, self.node.strong.status().leader)
        if kind == "eventual":
            return await self._eventual_get(request, ns, rest, key, index, wait, listing, keys,
                                            separator, raw)
        op: Get | Range = Range(ns, rest.encode()) if listing else _op(Get, ns, rest.encode())
        await block_strong(self.node, self.strong, op, index, wait)
        outcome = await self.strong._read_result(request, op, STRONG_READ[mode])
        if isinstance(outcome, Response):
            return outcome  # forwarded to the leader, answered there
        result, _ = outcome
        if not isinstance(result, GetResult | RangeResult):
            result_json(result)  # raises the ApiError of an ErrorResult
            raise TypeError(f"unexpected read result {result!r}")
        meta = strong_meta(self.node, mode, result.revision)
        kvs = ([result.kv] if result.kv else []) if isinstance(result, GetResult) else list(result.kvs)
        if not kvs:
            return not_found(meta)
        if raw:
            return Response(kvs[0].value, headers=meta.headers(), media_type="application/octet-stream")
        if keys:
            return consul_json(keys_only([full_key(ns, kv.key) for kv in kvs], key, separator),
                               headers=meta.headers())
        return consul_json([strong_entry(ns, kv) for kv in kvs], headers=meta.headers())

    async def _eventual_get(self, request: Request, ns: str, rest: str, key: str, index: int,
                            wait: float, listing: bool, keys: bool, separator: str | None,
                            raw: bool) -> Response:
        async def read() -> EventualRead[ListResult | ReadResult]:
            call = EventualList(ns, rest) if listing else EventualGet(ns, rest)
            result, token = await self.eventual._call(request, ns, call)
            assert isinstance(result, ListResult | ReadResult)
            return EventualRead(result.index, result, token)

        def content(answer: ListResult | ReadResult) -> object:
            return answer.items if isinstance(answer, ListResult) else answer.siblings

        current = await block_eventual(self.node, ns, index, wait, read, content)
        meta = eventual_meta(self.node, current.index, current.token)
        answer = current.answer
        if isinstance(answer, ReadResult):
            items = [(rest, answer.siblings)] if answer.siblings else []
        else:
            items = [(k, sibs) for k, sibs in answer.items if sibs]
        if not items:
            return not_found(meta)
        headers = meta.headers()
        if isinstance(answer, ReadResult):
            headers[SIBLINGS] = str(len(answer.siblings))
        if raw:
            return Response(shown(items[0][1]).value, headers=headers, media_type="application/octet-stream")
        if keys:
            return consul_json(keys_only([full_key(ns, k) for k, _ in items], key, separator), headers=headers)
        return consul_json([eventual_entry(ns, k, sibs) for k, sibs in items], headers=headers)

    async def put(self, request: Request) -> Response:
        q = Query(request, {"cas", "flags", "acquire", "release"}, self.datacenter)
        for lock in ("acquire", "release"):
            if lock in request.query_params:
                raise unsupported(f"?{lock}", "sessions and locks are not part of this API")
        ns, rest = split_key(request.path_params["key"], prefix=False,
                             key_max_bytes=self.limits.key_max_bytes)
        cas, flags = q.uint("cas"), q.uint("flags") or 0
        value = await read_body(request, self.limits.value_max_bytes, "value_too_large")
        kind = await consistency_of(self.node, request, ns)
        if kind is None:
            return await forward(self.node, request, self.node.strong.status().leader)
        if kind == "eventual":
            if flags:
                raise unsupported("flags in an eventual namespace", "its keys carry no flags")
            return await self._eventual_write(request, ns, rest, cas, value)
        op = _op(Put, ns, rest.encode(), value, flags=flags, if_mod_revision=cas)
        return await self._strong_write(request, op)

    async def delete(self, request: Request) -> Response:
        q = Query(request, {"recurse", "cas"}, self.datacenter)
        recurse, cas = q.flag("recurse"), q.uint("cas")
        if recurse and cas is not None:
            raise ApiError(400, "invalid_argument", "recurse and cas exclude each other")
        ns, rest = split_key(request.path_params["key"], prefix=recurse,
                             key_max_bytes=self.limits.key_max_bytes)
        kind = await consistency_of(self.node, request, ns)
        if kind is None:
            return await forward(self.node, request, self.node.strong.status().leader)
        if kind == "eventual":
            if recurse:
                return await self._eventual_delete_tree(request, ns, rest)
            return await self._eventual_write(request, ns, rest, cas, None)
        if recurse:
            return await self._strong_write(request, DeletePrefix(ns, rest.encode()))
        return await self._strong_write(request, _op(Delete, ns, rest.encode(), if_mod_revision=cas))

    async def _strong_write(self, request: Request, op: Put | Delete | DeletePrefix) -> Response:
        outcome = await self.strong.propose(request, op)
        if isinstance(outcome, Response):
            return outcome  # forwarded to the leader, answered there
        if isinstance(outcome, CasFailed):
            return consul_json(False)
        result_json(outcome)  # raises the ApiError of an ErrorResult
        return consul_json(True)

    async def _eventual_write(self, request: Request, ns: str, key: str, cas: int | None,
                              value: bytes | None) -> Response:
        """A put (``value``) or delete (None) superseding what this node has seen of
        the key; with ``cas``, only if that is the version the client names. One
        eventual transaction, so the check and the write are atomic on this node."""
        call = EventualTxn(ns, (TxnWrite(key, value, cas),), idempotency_key(request))
        result, token = await self.eventual._call(request, ns, call)
        return consul_json(not isinstance(result, TxnFailed), headers={TOKEN: token})

    async def _eventual_delete_tree(self, request: Request, ns: str, prefix: str) -> Response:
        listed, token = await self.eventual._call(request, ns, EventualList(ns, prefix))
        assert isinstance(listed, ListResult)
        for key, siblings in listed.items:
            if siblings:
                _, token = await self.eventual._call(request, ns, EventualDelete(ns, key, None))
        return consul_json(True, headers={TOKEN: token})

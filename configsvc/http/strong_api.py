"""Native JSON API for namespaces and strong-namespace keys.

Writes and linearizable reads go to the leader: a follower forwards the
request over HTTP (one hop; ``X-Configsvc-Forwarded`` prevents loops), so a
client may talk to any node. ``?consistency=stale`` is answered locally with
``X-Configsvc-Leader`` and ``X-Configsvc-Last-Contact-Ms`` saying how stale.

Writes are idempotent when the client sends ``X-Client-Id`` and
``X-Client-Seq``: the state machine remembers the last result per client.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from configsvc.http.errors import ApiError, bad_request
from configsvc.http.limits import check_txn_size
from configsvc.http.node_requests import forward, read_body, watch
from configsvc.http.params import flag, unsupported_here, wait_seconds
from configsvc.runtime.strong_driver import Halted, NotLeader, OutcomeUnknown
from strong.commands import Command, encode_command
from strong.ops import (
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    Get,
    Put,
    Range,
    Txn,
)
from strong.results import (
    CasFailed,
    DeleteResult,
    ErrorResult,
    GetResult,
    KeyValue,
    NamespaceDeleted,
    NamespaceInfo,
    NamespaceResult,
    PutResult,
    RangeResult,
    Result,
    TxnResult,
)

if TYPE_CHECKING:
    from configsvc.node import Node

_ERROR_STATUS = {
    "namespace_not_found": 404,
    "wrong_consistency": 400,
    "namespace_exists": 409,
    "stale_sequence": 409,
    "txn_op_failed": 409,
    "version_downgrade": 400,
    "malformed_command": 400,
}


def kv_json(kv: KeyValue) -> dict[str, Any]:
    return {
        "key": kv.key.decode("utf-8", "replace"),
        "value": base64.b64encode(kv.value).decode(),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "flags": kv.flags,
    }


def ns_json(info: NamespaceInfo) -> dict[str, Any]:
    options = dict(info.options)
    return {"name": info.name, "consistency": info.consistency, "options": options}


def result_json(result: Result) -> tuple[int, dict[str, Any]]:
    """Map a state-machine result to (HTTP status, body); errors raise ApiError."""
    match result:
        case ErrorResult(code=code, message=message):
            raise ApiError(_ERROR_STATUS.get(code, 400), code, message)
        case CasFailed(current=current, revision=revision):
            raise ApiError(
                412, "cas_failed", "compare-and-set failed: the key changed",
                current=kv_json(current) if current else None, revision=revision,
            )
        case PutResult(revision=revision, prev=prev):
            return 200, {"revision": revision, "prev": kv_json(prev) if prev else None}
        case DeleteResult(revision=revision, deleted=deleted, prev=prev, deleted_keys=keys):
            return 200, {
                "revision": revision,
                "deleted": deleted,
                "prev": kv_json(prev) if prev else None,
                "deleted_keys": [k.decode("utf-8", "replace") for k in keys],
            }
        case GetResult(kv=kv, revision=revision):
            return 200, {"kv": kv_json(kv) if kv else None, "revision": revision}
        case RangeResult(kvs=kvs, revision=revision, more=more):
            return 200, {"kvs": [kv_json(k) for k in kvs], "revision": revision, "more": more}
        case TxnResult(succeeded=ok, responses=responses, revision=revision):
            return 200, {
                "succeeded": ok,
                "responses": [result_json(r)[1] for r in responses],
                "revision": revision,
            }
        case NamespaceResult(info=info, created=created):
            return (201 if created else 200), {"namespace": ns_json(info), "created": created}
        case NamespaceDeleted(name=name, deleted_keys=n):
            return 200, {"deleted": name, "deleted_keys": n}
    return 200, {"result": repr(result)}


class StrongApi:
    def __init__(self, node: Node) -> None:
        from configsvc.node import planted_api_faults

        self.node = node
        self.limits = node.config.limits
        #: planted fault, test only (``configsvc.node.API_PLANTED``): off unless the
        #: node was started with it named in ``$CONFIGSVC_PLANTED_BUGS``
        self.stale_follower_reads = "stale_follower_reads" in planted_api_faults()

    # ------------------------------------------------------------------ helpers

    def _key(self, raw: str) -> bytes:
        key = raw.encode()
        if not key:
            raise bad_request("the key must not be empty")
        if len(key) > self.limits.key_max_bytes:
            raise ApiError(400, "key_too_long", f"keys are at most {self.limits.key_max_bytes} bytes")
        return key

    def _command(self, request: Request, op: Any) -> bytes:
        client_id = request.headers.get("x-client-id")
        seq_text = request.headers.get("x-client-seq")
        if client_id is None:
            if seq_text is not None:  # the client expects at-most-once; it would not get it
                raise bad_request("X-Client-Seq needs X-Client-Id")
            # No session: seq 0 bypasses the client table (nothing to remember);
            # the unique id only pairs this request with its result.
            return encode_command(Command(f"anon-{uuid.uuid4().hex}", 0, op))
        if not client_id or len(client_id) > 128:
            raise bad_request("X-Client-Id must be 1-128 characters")
        try:
            seq = int(seq_text or "")
        except ValueError:
            raise bad_request("X-Client-Seq must be a positive integer with X-Client-Id") from None
        if seq < 1:
            raise bad_request("X-Client-Seq must be a positive integer")
        return encode_command(Command(client_id, seq, op))

    async def write(self, request: Request, op: Any) -> Response:
        """Propose ``op``; forward to the leader when not leading."""
        outcome = await self.propose(request, op)
        if isinstance(outcome, Response):
            return outcome  # forwarded to the leader, answered there
        status, body = result_json(outcome)
        return JSONResponse(body, status_code=status)

    async def propose(self, request: Request, op: Any) -> Result | Response:
        """Propose ``op``: its result, or — not leading — the leader's answer to the
        whole request (forwarded to the same face of the leader's node)."""
        node = self.node
        try:
            command = self._command(request, op)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        try:
            return await node.strong.propose(command, node.config.timing.request_timeout)
        except NotLeader as exc:
            return await forward(node, request, exc.leader_hint)
        except OutcomeUnknown as exc:
            raise ApiError(504, "outcome_unknown", f"the write was proposed; {exc}") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    async def read(self, request: Request, op: Get | Range) -> Response:
        """Answer a read; a Get of a missing key is ``404 key_not_found``."""
        outcome = await self._read_result(request, op)
        if isinstance(outcome, Response):
            return outcome  # forwarded to the leader, answered there
        result, headers = outcome
        if isinstance(result, GetResult) and result.kv is None:
            assert isinstance(op, Get)
            raise ApiError(404, "key_not_found", f"no key {op.key.decode('utf-8', 'replace')!r} in "
                           f"{op.ns!r}", revision=result.revision)
        status, body = result_json(result)
        return JSONResponse(body, status_code=status, headers=headers)

    async def _read_result(
        self, request: Request, op: Get | Range, mode: str | None = None
    ) -> Response | tuple[Result, dict[str, str]]:
        """Read in ``mode`` (default: the ``consistency`` query parameter):
        ``linearizable`` (the lease, else a quorum round), ``quorum`` (a quorum
        round even under a lease) or ``stale`` (this replica's applied state)."""
        node = self.node
        if mode is None:
            mode = request.query_params.get("consistency", "linearizable")
            if mode not in ("linearizable", "stale"):
                raise bad_request("consistency must be 'linearizable' or 'stale'")
            if mode == "linearizable" and self.stale_follower_reads and not node.strong.is_leader:
                mode = "stale"  # the planted fault: a follower answers from its own state
        if mode == "stale":
            status = node.strong.status()
            headers = {
                "X-Configsvc-Leader": status.leader or "",
                "X-Configsvc-Last-Contact-Ms": str(int(status.since_leader_contact * 1000)),
                "X-Configsvc-Applied-Index": str(node.strong.sm.applied_index),
            }
            return node.strong.read_stale(op), headers
        try:
            if mode == "quorum":
                await node.strong.barrier(node.config.timing.request_timeout, quorum=True)
                return node.strong.read_stale(op), {}
            return await node.strong.read(op, node.config.timing.request_timeout), {}
        except NotLeader as exc:
            return await forward(node, request, exc.leader_hint)
        except TimeoutError:
            raise ApiError(503, "no_quorum", "could not confirm leadership in time") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    # ------------------------------------------------------------------ routes

    async def get_key(self, request: Request, ns: str, raw_key: str) -> Response:
        key = self._key(raw_key)
        index = _int_param(request, "index", 0)
        wait_seconds(request, 60.0)  # a bad wait is a 400 even when the read would not block
        if index:
            await watch(self.node, request, lambda: self._mod_revision(ns, key) > index)
        return await self.read(request, _op(Get, ns, key))

    async def list_keys(self, request: Request, ns: str) -> Response:
        prefix = request.query_params.get("prefix", "").encode()
        limit = _int_param(request, "limit", 0)
        await self.wait_prefix(request, ns, prefix)
        return await self.read(request, _op(Range, ns, prefix, limit))

    async def wait_prefix(self, request: Request, ns: str, prefix: bytes) -> None:
        """With ``?index=R`` (the revision of the client's last answer), block (up to
        ``wait``) until the keys under ``prefix`` differ from what they were at R."""
        index = _int_param(request, "index", 0)
        wait_seconds(request, 60.0)  # a bad wait is a 400 even when the read would not block
        changed = self.changed_since(_op(Range, ns, prefix, 0), index) if index else None
        if changed is not None:
            await watch(self.node, request, changed)

    async def range_read(
        self, request: Request, ns: str, prefix: bytes
    ) -> Response | tuple[RangeResult, dict[str, str]]:
        """Every key under ``prefix`` as a key read answers it (``consistency``,
        forwarding to the leader: then the leader's whole answer), blocking like
        ``list_keys``; a state-machine error raises its ApiError."""
        await self.wait_prefix(request, ns, prefix)
        outcome = await self._read_result(request, _op(Range, ns, prefix, 0))
        if isinstance(outcome, Response):
            return outcome
        result, headers = outcome
        if not isinstance(result, RangeResult):
            result_json(result)  # raises the error's ApiError
            raise ApiError(500, "internal", f"unexpected answer to a range read: {result!r:.80}")
        return result, headers

    async def put_key(self, request: Request, ns: str, raw_key: str) -> Response:
        key = self._key(raw_key)
        unsupported_here(request, ("blind",), "a strong key holds one value (blind is for "
                         "eventual namespaces)")
        value = await read_body(request, self.limits.value_max_bytes, "value_too_large")
        cas = _optional_int(request, "cas")
        flags = _int_param(request, "flags", 0)
        return await self.write(request, _op(Put, ns, key, value, flags=flags, if_mod_revision=cas))

    async def delete_key(self, request: Request, ns: str, raw_key: str) -> Response:
        if flag(request, "recurse"):
            if request.query_params.get("cas"):
                raise bad_request("recurse and cas exclude each other")
            return await self.write(request, _op(DeletePrefix, ns, raw_key.encode()))
        key = self._key(raw_key)
        return await self.write(request, _op(Delete, ns, key, if_mod_revision=_optional_int(request, "cas")))

    async def txn(self, request: Request, ns: str, spec: dict[str, Any]) -> Response:
        unknown = sorted(set(spec) - {"compare", "success", "failure"})
        if unknown:  # e.g. an eventual {"ops": ...}: ignoring it would commit an empty txn
            raise bad_request(f"unknown field(s) {', '.join(unknown)}: a strong namespace's "
                              "transaction is {compare, success, failure}")
        if not all(isinstance(spec.get(part, []), list) for part in ("compare", "success", "failure")):
            raise bad_request("compare, success and failure must be lists")
        try:
            compares = tuple(_compare(ns, c) for c in spec.get("compare", []))
            success = tuple(_txn_op(ns, o) for o in spec.get("success", []))
            failure = tuple(_txn_op(ns, o) for o in spec.get("failure", []))
            op = Txn(compares, success, failure)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise bad_request(f"invalid transaction: {exc!r}") from None
        check_txn_size(self.limits, (*compares, *success, *failure))
        return await self.write(request, op)

    async def create_namespace(self, request: Request, name: str, consistency: str, merge: str) -> Response:
        options = (("merge", merge),) if consistency == "eventual" else ()
        try:
            op = CreateNamespace(name, consistency, options)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return await self.write(request, op)

    async def delete_namespace(self, request: Request, name: str) -> Response:
        return await self.write(request, DeleteNamespace(name))

    def _mod_revision(self, ns: str, key: bytes) -> int:
        result = self.node.strong.read_stale(Get(ns, key))
        if isinstance(result, GetResult):
            return result.kv.mod_revision if result.kv else result.revision
        return 1 << 62  # namespace gone: wake the watcher so it sees the error

    def changed_since(self, op: Get | Range, index: int) -> Callable[[], bool] | None:
        """For a blocking read of ``op`` since revision ``index`` (the client's last
        answer): None to answer now, else a predicate to wait on (both faces use it).

        If nothing at all was written since ``index``, what ``op`` reads now is what
        the client saw: wait until that differs — any write under it changes a
        mod_revision, a delete removes a key. If this replica is past ``index``, the
        content may have changed meanwhile (a delete shows in no remaining key):
        answer now. A gone namespace answers now (the read reports it)."""
        first = self._content(op)
        if first is None or first[0] > index:
            return None
        seen = first[1]

        def changed() -> bool:
            now = self._content(op)
            return now is None or now[1] != seen

        return changed

    def _content(self, op: Get | Range) -> tuple[int, Hashable] | None:
        """This replica's revision and what ``op`` reads, as (key, mod_revision)
        pairs; None when the namespace is gone."""
        result = self.node.strong.read_stale(op)
        if isinstance(result, GetResult):
            kvs: tuple[KeyValue, ...] = (result.kv,) if result.kv else ()
        elif isinstance(result, RangeResult):
            kvs = result.kvs
        else:
            return None
        return result.revision, tuple((kv.key, kv.mod_revision) for kv in kvs)


MAX_UINT64 = 2**64 - 1


def _op(cls: Any, *args: Any, **kwargs: Any) -> Any:
    """Build a state-machine op; its own validation (ranges, names) becomes a 400."""
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc)) from None


def _int_param(request: Request, name: str, default: int) -> int:
    value = _optional_int(request, name)
    return default if value is None else value


def _optional_int(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name} must be a non-negative integer") from None
    if not 0 <= value <= MAX_UINT64:
        raise bad_request(f"{name} must be an unsigned 64-bit integer")
    return value


def _b64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a base64 string")
    return base64.b64decode(text, validate=True)


def _compare(ns: str, c: dict[str, Any]) -> Compare:
    target = c["target"]
    operand: bytes | int = _b64(c["value"], "value") if target == "value" else int(c["value"])
    return Compare(ns, c["key"].encode(), target, c.get("op", "=="), operand)


def _txn_op(ns: str, o: dict[str, Any]) -> Put | Delete | DeletePrefix | Get | Range:
    verb = o["op"]
    if verb == "put":
        return Put(ns, o["key"].encode(), _b64(o["value"], "value"), flags=int(o.get("flags", 0)))
    if verb == "delete":
        return Delete(ns, o["key"].encode())
    if verb == "delete_prefix":
        return DeletePrefix(ns, o["prefix"].encode())
    if verb == "get":
        return Get(ns, o["key"].encode())
    if verb == "range":
        return Range(ns, o.get("prefix", "").encode(), int(o.get("limit", 0)))
    raise ValueError(f"unknown op {verb!r}")

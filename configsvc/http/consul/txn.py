"""``PUT /v1/txn``: Consul's KV transactions, in a strong or an eventual namespace.

Every operation must name keys of one namespace (the first path segment).

Strong namespaces: the operations become one ``Txn`` command through the
log, so they apply at one revision or not at all.

Eventual namespaces: the operations become one eventual ``Txn`` request
(``eventual.txn``) served by this node: executed in order, each check and
``cas`` judged against this node's state at that point of the transaction,
all or nothing here, and its writes visible atomically on every replica (no
reader anywhere sees part of it). Not isolated cluster-wide: a node across a
partition may pass the same check; its writes then survive as siblings, as
with any eventual write. ``ModifyIndex`` is the key's version stamp
(``configsvc.http.consul.entries``), and a ``set`` with ``Flags`` is refused
(the eventual store keeps no flags). The answer carries the causal token.

Translation in a strong namespace (Consul verb -> strong op, executed in order):

    set          Put                     cas         Put(if_mod_revision=Index)
    get          Get, and the key must exist          get-or-empty  Get
    get-tree     Range                   check-index the key's mod revision == Index
    check-not-exists  the key must not exist
    delete       Delete                  delete-cas  Delete(if_mod_revision=Index)
    delete-tree  DeletePrefix

``get``, ``check-index`` and ``check-not-exists`` are the ``Txn``'s compares,
evaluated before any operation: one naming a key that an earlier operation of
the same transaction writes is refused (``400``) rather than answered against
the wrong state. Sessions (``lock``, ``unlock``, ``check-session``) and
``Node``/``Service``/``Check`` operations are not supported (``400``).

Answers, as Consul's: ``200 {"Results": [...], "Errors": null}``, or ``409
{"Results": null, "Errors": [{"OpIndex": i, "What": "..."}]}`` when a check or
``cas`` failed and nothing applied. Results hold the entries of sets (value
``null``), gets and checks; deletes have none. Transactions that only read go
through the log too: ``?stale``/``?consistent`` are accepted and answered
linearizably.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.consul.entries import eventual_entry, full_key, split_key, strong_entry
from configsvc.http.consul.kv import consul_json
from configsvc.http.consul.params import MAX_UINT64, Query, unsupported
from configsvc.http.errors import ApiError, bad_request
from configsvc.http.eventual_api import TOKEN, EventualApi, idempotency_key
from configsvc.http.node_requests import consistency_of, forward, read_body
from configsvc.http.strong_api import StrongApi, result_json
from eventual import requests as ev
from strong.kv import compare_holds
from strong.ops import Compare, Delete, DeletePrefix, Get, Put, Range, Txn, TxnOp
from strong.results import (
    ErrorCode,
    ErrorResult,
    GetResult,
    KeyValue,
    PutResult,
    RangeResult,
    TxnResult,
)

if TYPE_CHECKING:
    from configsvc.node import Node

#: Consul's limit on operations per transaction (a node applies ``limits.txn_max_ops``)
MAX_OPS = 128
_FIELDS = {"verb", "key", "value", "flags", "index", "session", "namespace", "partition"}
_VERBS = {"set", "cas", "get", "get-or-empty", "get-tree", "check-index", "check-not-exists",
          "delete", "delete-cas", "delete-tree"}
_SESSIONS = {"lock", "unlock", "check-session"}
_OP_FAILED = re.compile(r"^txn op (\d+):")


@dataclass
class _KVOp:
    """One Consul KV operation, checked."""

    verb: str
    ns: str
    key: str
    value: bytes = b""
    flags: int = 0
    index: int = 0


@dataclass
class _Plan:
    """The ``Txn`` and, per Consul operation, where its answer comes from."""

    ns: str
    compares: list[Compare] = field(default_factory=list)
    #: Consul op index of each compare
    compare_ops: list[int] = field(default_factory=list)
    success: list[TxnOp] = field(default_factory=list)
    #: Consul op index of each success op, and whether it yields a result entry
    success_ops: list[tuple[int, bool]] = field(default_factory=list)
    ops: list[_KVOp] = field(default_factory=list)


def _fold(obj: Any, where: str) -> dict[str, Any]:
    """A JSON object with its keys lower-cased (Consul decodes field names case-insensitively)."""
    if not isinstance(obj, dict):
        raise bad_request(f"{where} must be a JSON object")
    return {str(k).lower(): v for k, v in obj.items()}


def _uint(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_UINT64:
        raise bad_request(f"{what} must be an unsigned 64-bit integer")
    return value


def parse_ops(raw: bytes, key_max_bytes: int, value_max_bytes: int, max_ops: int = MAX_OPS) -> list[_KVOp]:
    """Consul's transaction body, checked; every error names the operation."""
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("the body must be a JSON array of operations") from None
    if not isinstance(body, list):
        raise bad_request("the body must be a JSON array of operations")
    if len(body) > max_ops:
        raise ApiError(413, "too_many_operations", f"a transaction holds at most {max_ops} operations")
    ops = []
    for i, item in enumerate(body):
        where = f"operation {i}"
        outer = _fold(item, where)
        if set(outer) != {"kv"}:
            kinds = ", ".join(sorted(k for k in outer if k != "kv")) or "nothing"
            raise unsupported(f"{where}: {kinds}", "only KV operations are supported in /v1/txn")
        spec = _fold(outer["kv"], f"{where}.KV")
        unknown = sorted(set(spec) - _FIELDS)
        if unknown:
            raise bad_request(f"{where}: unknown field(s) {', '.join(unknown)}")
        verb = spec.get("verb")
        if verb in _SESSIONS or spec.get("session"):
            raise unsupported(f"{where}: sessions", "locks and sessions are not part of this API")
        if spec.get("namespace") or spec.get("partition"):
            raise unsupported(f"{where}: Namespace/Partition", "the namespace is the key's first segment")
        if verb not in _VERBS:
            raise bad_request(f"{where}: unknown verb {verb!r} (supported: {', '.join(sorted(_VERBS))})")
        key = spec.get("key")
        if not isinstance(key, str):
            raise bad_request(f"{where}: Key must be a string")
        ns, rest = split_key(key, prefix=verb in ("get-tree", "delete-tree"), key_max_bytes=key_max_bytes)
        op = _KVOp(verb, ns, rest, flags=_uint(spec.get("flags") or 0, f"{where}: Flags"),
                   index=_uint(spec.get("index") or 0, f"{where}: Index"))
        value = spec.get("value")
        if value is not None:
            if not isinstance(value, str):
                raise bad_request(f"{where}: Value must be a base64 string")
            try:
                op.value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"{where}: Value is not valid base64") from None
            if len(op.value) > value_max_bytes:
                raise ApiError(413, "value_too_large", f"{where}: values are limited to {value_max_bytes} bytes")
        ops.append(op)
    return ops


def plan(ops: list[_KVOp]) -> _Plan:
    """The strong ``Txn`` for ``ops`` (all in one namespace, checked by the caller)."""
    p = _Plan(ops[0].ns, ops=ops)
    #: what earlier ops did, in order: ("set" | "deleted", key) or ("deleted", prefix, True)
    history: list[tuple[str, str, bool]] = []

    def earlier(key: str) -> str | None:
        """"set" or "deleted" by the latest earlier op touching ``key``; None: untouched."""
        for what, name, prefix in reversed(history):
            if (key.startswith(name) if prefix else key == name):
                return what
        return None

    def check(i: int, target: str, cmp: str, operand: int) -> bool:
        """Add the compare of op ``i``; False when an earlier op already decides it."""
        op = ops[i]
        before = earlier(op.key)
        decided = (op.verb == "get" and before == "set") or (
            op.verb == "check-not-exists" and before == "deleted")
        if decided:
            return False
        if before is not None:
            raise bad_request(f"operation {i}: {op.verb} of {full_key(p.ns, op.key)!r} after an earlier "
                              "operation of this transaction wrote it is not supported (checks see the "
                              "state before the transaction)")
        p.compares.append(Compare(p.ns, op.key.encode(), target, cmp, operand))
        p.compare_ops.append(i)
        return True

    for i, op in enumerate(ops):
        key = op.key.encode()
        match op.verb:
            case "set" | "cas":
                cas = op.index if op.verb == "cas" else None
                p.success.append(Put(p.ns, key, op.value, flags=op.flags, if_mod_revision=cas))
                p.success_ops.append((i, True))
                history.append(("set", op.key, False))
            case "get" | "get-or-empty" | "check-index":
                if op.verb == "get":
                    check(i, "version", ">", 0)
                elif op.verb == "check-index":
                    check(i, "mod_revision", "==", op.index)
                p.success.append(Get(p.ns, key))
                p.success_ops.append((i, True))
            case "check-not-exists":
                check(i, "version", "==", 0)
            case "get-tree":
                p.success.append(Range(p.ns, key))
                p.success_ops.append((i, True))
            case "delete" | "delete-cas" | "delete-tree":
                if op.verb == "delete-tree":
                    p.success.append(DeletePrefix(p.ns, key))
                else:
                    cas = op.index if op.verb == "delete-cas" else None
                    p.success.append(Delete(p.ns, key, if_mod_revision=cas))
                p.success_ops.append((i, False))
                history.append(("deleted", op.key, op.verb == "delete-tree"))
    return p


def _results(p: _Plan, result: TxnResult) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (i, has_result), response in zip(p.success_ops, result.responses, strict=True):
        op = p.ops[i]
        if not has_result:
            continue
        if isinstance(response, PutResult):
            prev = response.prev
            created = prev.create_revision if prev else response.revision
            kv = KeyValue(op.key.encode(), b"", created, response.revision, 0, op.flags)
            out.append({"KV": strong_entry(p.ns, kv, with_value=False)})
        elif isinstance(response, GetResult):
            if response.kv is not None:
                out.append({"KV": strong_entry(p.ns, response.kv, with_value=op.verb != "check-index")})
        elif isinstance(response, RangeResult):
            out.extend({"KV": strong_entry(p.ns, kv)} for kv in response.kvs)
    return out


def _failed_checks(p: _Plan, result: TxnResult) -> list[dict[str, Any]]:
    """The compares that did not hold, judged on the failure branch's reads (taken
    at the same state the compares saw)."""
    errors = []
    for compare, i, response in zip(p.compares, p.compare_ops, result.responses, strict=True):
        assert isinstance(response, GetResult)
        if compare_holds(response.kv, compare):
            continue
        op, name = p.ops[i], full_key(p.ns, p.ops[i].key)
        if op.verb == "get":
            what = f"key {name!r} does not exist"
        elif op.verb == "check-not-exists":
            what = f"key {name!r} exists"
        else:
            current = response.kv.mod_revision if response.kv else 0
            what = f"key {name!r}: its modify index is {current}, not {op.index}"
        errors.append({"OpIndex": i, "What": what})
    return errors


def eventual_ops(ops: list[_KVOp]) -> tuple[ev.TxnOp, ...]:
    """The eventual ``Txn`` operations for ``ops``, one each, in order."""
    out: list[ev.TxnOp] = []
    for i, op in enumerate(ops):
        if op.flags:
            raise unsupported(f"operation {i}: Flags in an eventual namespace", "its keys carry no flags")
        match op.verb:
            case "set" | "cas":
                out.append(ev.TxnWrite(op.key, op.value, op.index if op.verb == "cas" else None))
            case "delete" | "delete-cas":
                out.append(ev.TxnWrite(op.key, None, op.index if op.verb == "delete-cas" else None))
            case "get":
                out.append(ev.TxnCheck(op.key))
            case "check-index":
                out.append(ev.TxnCheck(op.key, op.index))
            case "check-not-exists":
                out.append(ev.TxnCheck(op.key, 0))
            case "get-or-empty":
                out.append(ev.TxnRead(op.key))
            case "get-tree":
                out.append(ev.TxnReadPrefix(op.key))
            case "delete-tree":
                out.append(ev.TxnRemovePrefix(op.key))
    return tuple(out)


def _eventual_results(ns: str, ops: list[_KVOp], result: ev.TxnResult) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for op, seen in zip(ops, result.results, strict=True):
        if op.verb == "check-not-exists":
            continue
        for key, siblings in seen:
            if siblings:
                entry = eventual_entry(ns, key, siblings)
                if op.verb in ("set", "cas", "check-index"):
                    entry["Value"] = None
                out.append({"KV": entry})
    return out


def _eventual_error(ns: str, ops: list[_KVOp], failed: ev.TxnFailed) -> dict[str, Any]:
    op = ops[failed.op]
    name = full_key(ns, op.key)
    if op.verb == "get":
        what = f"key {name!r} does not exist"
    elif op.verb == "check-not-exists":
        what = f"key {name!r} exists"
    elif op.index == 0 and op.verb in ("cas", "delete-cas"):
        what = f"key {name!r} exists (cas 0 creates only)"
    else:
        what = f"key {name!r}: its modify index is not {op.index} ({failed.reason})"
    return {"OpIndex": failed.op, "What": what}


class ConsulTxn:
    def __init__(self, node: Node, strong: StrongApi, eventual: EventualApi) -> None:
        self.node = node
        self.strong = strong
        self.eventual = eventual

    async def _eventual_txn(self, request: Request, ns: str, ops: list[_KVOp]) -> Response:
        call = ev.Txn(ns, eventual_ops(ops), idempotency_key(request))
        result, token = await self.eventual._call(request, ns, call)
        headers = {TOKEN: token}
        if isinstance(result, ev.TxnFailed):
            return consul_json({"Results": None, "Errors": [_eventual_error(ns, ops, result)]},
                               status=409, headers=headers)
        if not isinstance(result, ev.TxnResult):
            raise TypeError(f"unexpected transaction result {result!r}")
        return consul_json({"Results": _eventual_results(ns, ops, result), "Errors": None},
                           headers=headers)

    async def txn(self, request: Request) -> Response:
        Query(request, {"stale", "consistent"}, self.node.config.consul.datacenter).mode()
        limits = self.node.config.limits
        raw = await read_body(request, limits.body_max_bytes, "body_too_large")
        ops = parse_ops(raw, limits.key_max_bytes, limits.value_max_bytes, limits.txn_max_ops)
        if not ops:
            return consul_json({"Results": [], "Errors": None})
        namespaces = sorted({op.ns for op in ops})
        if len(namespaces) > 1:
            raise ApiError(400, "invalid_argument", "a transaction's keys must all be in one "
                           f"namespace (their first path segment); these name {', '.join(namespaces)}")
        ns = namespaces[0]
        kind = await consistency_of(self.node, request, ns)
        if kind is None:
            return await forward(self.node, request, self.node.strong.status().leader)
        if kind == "eventual":
            return await self._eventual_txn(request, ns, ops)
        try:
            p = plan(ops)
            op = Txn(tuple(p.compares), tuple(p.success),
                     tuple(Get(c.ns, c.key) for c in p.compares))
        except ValueError as exc:
            raise bad_request(f"invalid transaction: {exc}") from None
        outcome = await self.strong.propose(request, op)
        if isinstance(outcome, Response):
            return outcome  # forwarded to the leader, answered there
        if isinstance(outcome, ErrorResult) and outcome.code == ErrorCode.TXN_OP_FAILED:
            match = _OP_FAILED.match(outcome.message)
            index = p.success_ops[int(match.group(1))][0] if match else 0
            name = full_key(ns, ops[index].key)
            return consul_json({"Results": None, "Errors": [
                {"OpIndex": index, "What": f"key {name!r}: its modify index is not {ops[index].index}"}
            ]}, status=409)
        if not isinstance(outcome, TxnResult):
            result_json(outcome)  # raises the ApiError of an ErrorResult
            raise TypeError(f"unexpected transaction result {outcome!r}")
        if not outcome.succeeded:
            return consul_json({"Results": None, "Errors": _failed_checks(p, outcome)}, status=409)
        return consul_json({"Results": _results(p, outcome), "Errors": None})

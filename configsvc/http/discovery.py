"""Service discovery over both kinds of namespace: one implementation of the semantics.

Every face (the native API ``configsvc.http.discovery_api``, the Consul face,
the node's HTTP-check runner ``configsvc.http.health_checks``) calls this facade;
none holds a second copy. Rules:

1. Strong namespaces: registrations, check results and deregistrations are
   commands through the log (``RegisterInstance``, ``UpdateCheck``,
   ``DeregisterInstance``) carrying the proposing node's wall time as
   ``now_ms``. The state machine never reads a clock: TTL expiry is the
   ``ExpireInstances`` command the leader proposes with its time as data.
2. Eventual namespaces: an instance is an element of the store's add-wins
   observed-remove set; registering and heartbeating write it, deregistering
   removes what this node has seen. Health is each node's own judgement of what
   it heard and when, so during a partition every side serves the instances it
   can still hear from. Requests carry the session's causal token.
3. An instance's ``node`` is the node its registration arrived at (a request
   forwarded to the leader keeps the node it came from): that node runs its
   HTTP check.
4. One path for every face: the methods return values, never responses. A node
   that must ask the leader forwards the *equivalent native request*, so a face
   with paths of its own (Consul's) is forwarded correctly too.
5. Index: strong, the revision at which the answer last changed; eventual, the
   serving node's change index of the namespace, which never goes backwards on
   one node. A blocking query returns when the index moves past the one given
   or the wait ends; an eventual index that is not this node's current one (it
   came from another node) is answered at once.
6. Consistency: strong ``default`` is a leader read under its lease (a quorum
   round when the lease is not valid), ``consistent`` always a quorum round (a
   no-op through the log first), ``stale`` this node's applied state, saying how
   stale; eventual namespaces answer every mode locally (``local``).

Errors raise ``ApiError``: ``invalid_argument`` 400, ``namespace_not_found`` and
``instance_not_found`` 404, ``causally_behind`` 409, ``unsupported_in_version``
409, ``no_quorum`` / ``unavailable`` / ``not_leader`` 503, ``outcome_unknown`` 504.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlencode

from starlette.requests import Request

from configsvc.discovery_types import (
    MAX_OUTPUT,
    HttpCheck,
    Instance,
    InstancesView,
    Registration,
    WriteOutcome,
    check_name,
    check_status,
)
from configsvc.http.errors import ApiError, bad_request
from configsvc.http.eventual_api import TOKEN, EventualApi
from configsvc.http.forwarding import FORWARDED, Forwarder
from configsvc.http.node_requests import consistency_of, forward
from configsvc.http.strong_api import StrongApi, result_json
from configsvc.member_addresses import is_member
from configsvc.runtime.strong_driver import Halted, NotLeader, OutcomeUnknown
from eventual.dots import SVC_SPACE
from eventual.instances import InstanceInfo, InstanceView, Status
from eventual.requests import (
    Deregister,
    Heartbeat,
    Instances,
    Register,
)
from eventual.requests import (
    InstancesResult as EventualInstances,
)
from eventual.requests import (
    Request as EventualRequest,
)
from strong.ops import DeregisterInstance, ListInstances, RegisterInstance, UpdateCheck
from strong.results import ErrorResult, InstanceRecord, InstancesResult, ServiceWriteResult

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = [
    "MODES",
    "Discovery",
    "HttpCheck",
    "Instance",
    "InstancesView",
    "Registration",
    "WriteOutcome",
    "internal_request",
]

#: consistency modes a query may ask for ("linearizable" is the native name of "default")
MODES = ("default", "consistent", "stale", "linearizable")
_CARRY = ("x-client-id", "x-client-seq", TOKEN.lower(), FORWARDED)


def internal_request() -> Request:
    """A request of the node itself (the check runner): no session, no token."""
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(1, round(seconds * 1000))


def _seconds(ms: int) -> float | None:
    return None if ms == 0 else ms / 1000


def service_path(ns: str, *parts: str) -> str:
    return "/v1/services/" + "/".join(quote(p, safe="") for p in (ns, *parts))


@dataclass(frozen=True)
class _Native:
    """The native API request equivalent to a facade call, for forwarding to the leader."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def request(self, origin: Request) -> Request:
        headers = [(k.encode("latin-1"), v.encode("latin-1"))
                   for k, v in origin.headers.items() if k in _CARRY]
        if self.body:
            headers.append((b"content-type", b"application/json"))
        request = Request({"type": "http", "method": self.method, "path": self.path,
                           "query_string": urlencode(self.query).encode(), "headers": headers})
        request.state.body = self.body
        return request


def _instance_from_record(r: InstanceRecord) -> Instance:
    return Instance(
        service=r.service, instance_id=r.instance_id, address=r.address, port=r.port,
        tags=tuple(r.tags), meta=tuple(r.meta), node=r.node, status=r.status, output=r.output,
        ttl=_seconds(r.ttl_ms), deregister_after=_seconds(r.deregister_after_ms),
        http_check=HttpCheck.decode(r.check), create_index=r.create_revision,
        modify_index=r.mod_revision,
    )


def _instance_from_view(v: InstanceView) -> Instance:
    info = v.info
    # The reported status while fresh; silence past the TTL is this node's verdict.
    output = info.output if v.status == info.status else "TTL expired"
    return Instance(
        service=v.service, instance_id=v.instance_id, address=info.address, port=info.port,
        tags=tuple(info.tags), meta=tuple(info.meta), node=info.node, status=v.status,
        output=output, ttl=info.ttl or None,
        deregister_after=info.deregister_after or None, http_check=HttpCheck.decode(info.check),
    )


class Discovery:
    """The service semantics over both stores (module docstring: rules 1-6).

    ``request`` is the HTTP request the call serves (its session headers, causal
    token and forwarding mark travel on); ``None`` for the node's own calls."""

    def __init__(self, node: Node, forwarder: Forwarder | None = None) -> None:
        """``forwarder``: how the facade's own requests reach the leader (None: not at all)."""
        self.node = node
        self.forwarder = forwarder
        self._strong = StrongApi(node)
        self._eventual = EventualApi(node)

    # ------------------------------------------------------------------ writes

    async def register(self, request: Request | None, ns: str, reg: Registration) -> WriteOutcome:
        """Register (upsert) an instance; this node (or the one forwarding) runs its HTTP check."""
        request = request or internal_request()
        native = _Native("PUT", service_path(ns, reg.service, reg.instance_id),
                         body=json.dumps(reg.to_json()).encode())
        kind = await consistency_of(self.node, request, ns)
        ttl, origin = reg.effective_ttl, self.origin(request)
        check = reg.http_check.encode() if reg.http_check else b""
        if kind == "eventual":
            info = _op(InstanceInfo, address=reg.address, port=reg.port, tags=reg.tags,
                       meta=reg.meta, ttl=ttl or 0, deregister_after=reg.deregister_after or 0,
                       status=reg.status, output="", node=origin, check=check)
            return await self._eventual_write(request, ns, Register(ns, reg.service, reg.instance_id, info))
        if kind == "strong":
            return await self._strong_write(request, native, lambda: RegisterInstance(
                ns, reg.service, reg.instance_id, reg.address, reg.port, reg.tags, reg.meta, origin,
                check, _ms(ttl), _ms(reg.deregister_after), reg.status, "", _now_ms()))
        return await self._forwarded_write(request, native)

    async def check(self, request: Request | None, ns: str, service: str, instance_id: str,
                    status: str, output: str = "") -> WriteOutcome:
        """A TTL heartbeat or check result: the instance's status and output, now."""
        request = request or internal_request()
        try:
            check_name(service, "service")
            check_name(instance_id, "instance id")
            check_status(status)
            if not isinstance(output, str) or len(output) > MAX_OUTPUT:
                raise ValueError(f"output must be a string of at most {MAX_OUTPUT} characters")
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        body = json.dumps({"status": status, "output": output}).encode()
        native = _Native("PUT", service_path(ns, service, instance_id, "check"), body=body)
        kind = await consistency_of(self.node, request, ns)
        if kind == "eventual":
            beat = Heartbeat(ns, service, instance_id, cast(Status, status), output)
            return await self._eventual_write(request, ns, beat)
        if kind == "strong":
            return await self._strong_write(request, native, lambda: UpdateCheck(
                ns, service, instance_id, status, output, _now_ms()))
        return await self._forwarded_write(request, native)

    async def deregister(self, request: Request | None, ns: str, service: str,
                         instance_id: str) -> WriteOutcome:
        """Remove an instance; one that is not registered answers ``changed=False``."""
        request = request or internal_request()
        try:
            check_name(service, "service")
            check_name(instance_id, "instance id")
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        native = _Native("DELETE", service_path(ns, service, instance_id))
        kind = await consistency_of(self.node, request, ns)
        if kind == "eventual":
            try:
                return await self._eventual_write(request, ns, Deregister(ns, service, instance_id))
            except ApiError as exc:
                if exc.code != "instance_not_found":
                    raise
                # Idempotent, as in strong namespaces: nothing to remove is not an error.
                token = str(exc.extra.get("token", ""))
                return WriteOutcome(self.node.eventual.namespace_index(ns), False, {TOKEN: token})
        if kind == "strong":
            return await self._strong_write(request, native,
                                            lambda: DeregisterInstance(ns, service, instance_id))
        return await self._forwarded_write(request, native)

    # ------------------------------------------------------------------ queries

    async def instances(self, request: Request | None, ns: str, service: str | None, *,
                        passing_only: bool, consistency: str = "default", index: int | None = None,
                        wait: float = 60.0) -> InstancesView:
        """The instances of ``service`` (None: of every service), sorted by (service, id).

        With ``index``: block until the answer's index moves past it or ``wait``
        seconds (capped by ``limits.watch_max_seconds``) pass."""
        request = request or internal_request()
        if consistency not in MODES:
            raise bad_request(f"consistency must be one of {', '.join(MODES[:3])}")
        if service is not None:
            try:
                check_name(service, "service")
            except ValueError as exc:
                raise bad_request(str(exc)) from None
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise bad_request("index must be a non-negative integer")
        wait = max(0.0, min(wait, self.node.config.limits.watch_max_seconds))
        query = [("passing", "true")] if passing_only else []
        query.append(("consistency", consistency))
        if service is None:
            query.append(("instances", "true"))
        native = _Native("GET", service_path(ns, *([service] if service else [])), tuple(query))
        kind = await consistency_of(self.node, request, ns)
        if kind == "eventual":
            view = await self._eventual_instances(request, ns, service, index, wait)
        elif kind == "strong":
            view = await self._strong_instances(request, native, ns, service, consistency, index, wait)
        else:
            view = await self._forwarded_read(request, native)
        if passing_only:
            view.instances = [i for i in view.instances if i.status == "passing"]
        return view

    async def find(self, request: Request | None, ns: str, instance_id: str) -> Instance | None:
        """The instance with this id in any service of ``ns`` (Consul addresses checks by id)."""
        view = await self.instances(request, ns, None, passing_only=False)
        return next((i for i in view.instances if i.instance_id == instance_id), None)

    def origin(self, request: Request) -> str:
        """The node a request arrived at: this one, or the member that forwarded it here."""
        source = request.headers.get(FORWARDED)
        return source if source is not None and is_member(self.node, source) else self.node.id

    # ------------------------------------------------------------------ strong

    async def _strong_write(self, request: Request, native: _Native, make_op: Callable[[], Any]) -> WriteOutcome:
        node = self.node
        try:
            # The same client sessions (X-Client-Id/Seq) as key writes: retries apply once.
            command = self._strong._command(request, make_op())
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        try:
            result = await node.strong.propose(command, node.config.timing.request_timeout)
        except NotLeader as exc:
            return await self._forwarded_write(request, native, exc.leader_hint)
        except OutcomeUnknown as exc:
            raise ApiError(504, "outcome_unknown", f"the write was proposed; {exc}") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None
        if isinstance(result, ServiceWriteResult):
            return WriteOutcome(result.revision, result.changed)
        raise self._strong_error(result)

    def _strong_error(self, result: object) -> ApiError:
        if isinstance(result, ErrorResult):
            if result.code == "instance_not_found":
                return ApiError(404, "instance_not_found", result.message)
            if result.code == "unsupported_in_version":
                if self.node.config.state_machine.version >= 3:
                    return ApiError(503, "unavailable", "the group is moving to the state-machine "
                                    "version that holds services; retry shortly")
                return ApiError(409, "unsupported_in_version", "services in strong namespaces need "
                                "state_machine.version 3 (configured lower)")
            try:
                result_json(result)
            except ApiError as exc:
                return exc
        return ApiError(500, "internal", f"unexpected result {type(result).__name__}")

    async def _strong_instances(self, request: Request, native: _Native, ns: str, service: str | None,
                                consistency: str, index: int | None, wait: float) -> InstancesView:
        node = self.node
        op = ListInstances(ns, service or "")
        if index is not None:
            # Wait on this node's applied state; the answer then comes in the asked mode.
            await node.strong.wait_for_change(lambda: self._local_index(op) > index, wait)
        if consistency == "stale":
            status = node.strong.status()
            contact = int(status.since_leader_contact * 1000)
            headers = {"X-Configsvc-Leader": status.leader or "",
                       "X-Configsvc-Last-Contact-Ms": str(contact),
                       "X-Configsvc-Applied-Index": str(node.strong.sm.applied_index)}
            view = self._strong_view(node.strong.read_stale(op), "stale", headers)
            view.known_leader, view.last_contact_ms = status.leader is not None, contact
            return view
        timeout = node.config.timing.request_timeout
        try:
            if consistency == "consistent":
                # A quorum round even while the lease is valid (no write to the log):
                # what is applied after it reflects every acknowledged write.
                await node.strong.barrier(timeout, quorum=True)
                return self._strong_view(node.strong.read_stale(op), "consistent", {})
            return self._strong_view(await node.strong.read(op, timeout), "leader-lease", {})
        except NotLeader as exc:
            return await self._forwarded_read(request, native, exc.leader_hint)
        except (TimeoutError, OutcomeUnknown):
            raise ApiError(503, "no_quorum", "could not confirm leadership in time") from None
        except Halted as exc:
            raise ApiError(503, "unavailable", str(exc)) from None

    def _local_index(self, op: ListInstances) -> int:
        result = self.node.strong.read_stale(op)
        return result.index if isinstance(result, InstancesResult) else 1 << 62  # gone: wake

    def _strong_view(self, result: object, consistency: str, headers: dict[str, str]) -> InstancesView:
        if not isinstance(result, InstancesResult):
            raise self._strong_error(result)
        instances = [_instance_from_record(r) for r in result.instances]
        return InstancesView(instances, result.index, headers, consistency)

    # ------------------------------------------------------------------ eventual

    async def _eventual_call(self, request: Request, ns: str, call: EventualRequest) -> tuple[object, str]:
        try:
            return await self._eventual._call(request, ns, call)
        except ApiError as exc:
            if exc.code == "key_not_found":
                assert isinstance(call, Heartbeat | Deregister)
                raise ApiError(404, "instance_not_found", f"no instance {call.service}/"
                               f"{call.instance_id} in {ns!r}", **exc.extra) from None
            raise

    async def _eventual_write(self, request: Request, ns: str, call: EventualRequest) -> WriteOutcome:
        _, token = await self._eventual_call(request, ns, call)
        return WriteOutcome(self.node.eventual.namespace_index(ns), True, {TOKEN: token})

    async def _eventual_instances(self, request: Request, ns: str, service: str | None,
                                  index: int | None, wait: float) -> InstancesView:
        driver = self.node.eventual
        if index is not None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while driver.namespace_index(ns) == index and loop.time() < deadline:
                await driver.wait_for_change(deadline - loop.time())
        # The index is taken before the read: a change after it shows in the next query.
        current, token = driver.namespace_index(ns), ""
        if service is not None:
            names = [service]
        else:
            # Once the session's past is here (the first call waits for it), read the
            # services this node holds.
            known = self._eventual_services(ns)
            _, token = await self._eventual_call(request, ns, Instances(ns, known[0] if known else "-"))
            names = self._eventual_services(ns)
        answers = await asyncio.gather(*(self._eventual_call(request, ns, Instances(ns, name))
                                         for name in names))
        views: list[InstanceView] = []
        for result, _ in answers:
            assert isinstance(result, EventualInstances)
            views.extend(result.instances)
        token = answers[-1][1] if answers else token
        instances = sorted((_instance_from_view(v) for v in views), key=lambda i: (i.service, i.instance_id))
        return InstancesView(instances, current, {TOKEN: token}, "local")

    def _eventual_services(self, ns: str) -> list[str]:
        """The services with an instance in this node's replica of ``ns``, sorted."""
        entries = self.node.eventual.replica.store.entries
        return sorted({k[2].split("/", 1)[0] for k in entries if k[0] == ns and k[1] == SVC_SPACE})

    # ------------------------------------------------------------------ forwarding

    async def _forwarded_write(self, request: Request, native: _Native,
                               leader: str | None = None) -> WriteOutcome:
        data, headers = await self._forward(request, native, leader)
        return WriteOutcome(int(data["index"]), bool(data.get("changed", True)), headers)

    async def _forwarded_read(self, request: Request, native: _Native,
                              leader: str | None = None) -> InstancesView:
        data, headers = await self._forward(request, native, leader)
        instances = [Instance.from_json(i) for i in data["instances"]]
        return InstancesView(instances, int(data["index"]), headers, str(data["consistency"]))

    async def _forward(self, request: Request, native: _Native,
                       leader: str | None) -> tuple[dict[str, Any], dict[str, str]]:
        """Ask the leader (``leader`` or the one this node knows) through the native API."""
        if leader is None:
            leader = self.node.strong.status().leader
        response = await forward(self.node, native.request(request), leader, self.forwarder)
        try:
            data = json.loads(bytes(response.body) or b"{}")
        except ValueError:
            raise ApiError(503, "unavailable", "the leader's answer could not be read") from None
        if response.status_code >= 400:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            extra = {k: v for k, v in err.items() if k not in ("code", "message")}
            raise ApiError(response.status_code, str(err.get("code", "unavailable")),
                           str(err.get("message", "")), **extra)
        headers = {"-".join(p.capitalize() for p in k.split("-")): v
                   for k, v in response.headers.items() if k.lower().startswith("x-configsvc")}
        return data, headers


def _op(cls: Any, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise bad_request(str(exc)) from None

"""``/v1/agent/service/*`` and ``/v1/agent/check/*``: registering services and their health.

Over ``configsvc.http.discovery.Discovery`` (one implementation for every face).
The namespace is ``?ns=`` (or the definition's ``Namespace``), else
``consul.services_namespace``; strong and eventual namespaces behave as the
facade says (docs/discovery.md). The instance belongs to the node the request
arrived at: that node runs its HTTP check, as a Consul agent does.

- ``PUT /v1/agent/service/register``: a service definition (``registration``);
  an ``ID`` already registered under another service name is a ``409``.
- ``PUT /v1/agent/service/deregister/<ID>``: ``404`` if no such instance.
- ``PUT /v1/agent/check/pass|warn|fail/<CheckID>?note=``: a TTL check result;
  ``PUT /v1/agent/check/update/<CheckID>`` with ``{"Status", "Output"}``. The
  CheckID of a service's check is ``service:<ID>`` (or ``service:<ID>:<n>``).

Answers are empty ``200``s (as Consul's), with the causal token of eventual
namespaces in ``X-Configsvc-Token``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.acl import Need, require
from configsvc.http.consul.params import Query
from configsvc.http.consul.registration import fold, parse_registration
from configsvc.http.discovery import Discovery, Instance, WriteOutcome
from configsvc.http.errors import ApiError, bad_request
from configsvc.http.node_requests import read_body

if TYPE_CHECKING:
    from configsvc.node import Node

_NUMBERED = re.compile(r"^service:(.+):[0-9]+$")
_STATUS = {"pass": "passing", "warn": "warning", "fail": "critical"}
MAX_NOTE = 4096


def _done(outcome: WriteOutcome) -> Response:
    return Response(b"", headers=outcome.headers)


class ConsulAgent:
    def __init__(self, node: Node, discovery: Discovery) -> None:
        self.node = node
        self.discovery = discovery
        self.consul = node.config.consul

    def namespace(self, q: Query, named: str | None = None) -> str:
        """``?ns=``, else the one a body names, else the configured discovery namespace."""
        return q.text("ns") or named or self.consul.services_namespace

    async def _instance(self, request: Request, ns: str, instance_id: str, what: str) -> Instance:
        found = await self.discovery.find(request, ns, instance_id)
        if found is None:
            raise ApiError(404, "instance_not_found", f"unknown {what} {instance_id!r} in namespace {ns!r}")
        return found

    async def register(self, request: Request) -> Response:
        q = Query(request, {"ns", "replace-existing-checks"}, self.consul.datacenter)
        raw = await read_body(request, self.node.config.limits.body_max_bytes, "body_too_large")
        registration, named = parse_registration(raw)
        ns = self.namespace(q, named)
        existing = await self.discovery.find(request, ns, registration.instance_id)
        if existing is not None and existing.service != registration.service:
            raise ApiError(409, "instance_exists", f"ID {registration.instance_id!r} is registered for "
                           f"service {existing.service!r}; deregister it first")
        return _done(await self.discovery.register(request, ns, registration))

    async def deregister(self, request: Request) -> Response:
        q = Query(request, {"ns"}, self.consul.datacenter)
        ns, instance_id = self.namespace(q), request.path_params["service_id"]
        found = await self._instance(request, ns, instance_id, "service ID")
        await require(self.node, request, Need("service", f"{ns}/{found.service}", "write"))
        return _done(await self.discovery.deregister(request, ns, found.service, instance_id))

    def ttl(self, verb: str) -> Callable[[Request], Awaitable[Response]]:
        """The handler of ``PUT /v1/agent/check/<verb>/<CheckID>`` (pass, warn, fail)."""
        status = _STATUS[verb]

        async def handler(request: Request) -> Response:
            q = Query(request, {"ns", "note"}, self.consul.datacenter)
            return await self._update(request, self.namespace(q), status, q.text("note") or "")

        return handler

    async def update(self, request: Request) -> Response:
        q = Query(request, {"ns"}, self.consul.datacenter)
        raw = await read_body(request, self.node.config.limits.body_max_bytes, "body_too_large")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise bad_request("the body must be {\"Status\": ..., \"Output\": ...}") from None
        spec = fold(body, "the check update")
        status, output = spec.get("status"), spec.get("output") or ""
        if not isinstance(status, str) or status not in _STATUS.values() or not isinstance(output, str):
            raise bad_request("Status must be passing, warning or critical, and Output a string")
        return await self._update(request, self.namespace(q), status, output)

    async def _update(self, request: Request, ns: str, status: str, output: str) -> Response:
        if len(output) > MAX_NOTE:
            raise bad_request(f"the note is limited to {MAX_NOTE} characters")
        check_id = request.path_params["check_id"]
        found = None
        if check_id.startswith("service:"):
            # service:<ID>, or service:<ID>:<n> for one of several checks (an ID may hold ':')
            found = await self.discovery.find(request, ns, check_id[len("service:"):])
            numbered = _NUMBERED.match(check_id)
            if found is None and numbered is not None:
                found = await self.discovery.find(request, ns, numbered.group(1))
        if found is None:
            raise ApiError(404, "check_not_found", f"unknown check ID {check_id!r} in namespace {ns!r} "
                           "(a service's check is service:<service ID>)")
        await require(self.node, request, Need("service", f"{ns}/{found.service}", "write"))
        return _done(await self.discovery.check(request, ns, found.service, found.instance_id, status, output))

"""Native JSON API for service discovery (both kinds of namespace), over ``configsvc.http.discovery``.

    PUT    /v1/services/{ns}/{service}/{id}             register (JSON body below)
    PUT    /v1/services/{ns}/{service}/{id}/check       {"status", "output"}: a check result
    PUT    /v1/services/{ns}/{service}/{id}/heartbeat   the same; status defaults to passing
    DELETE /v1/services/{ns}/{service}/{id}             deregister
    GET    /v1/services/{ns}                            services: tags, instances, passing
    GET    /v1/services/{ns}/{service}                  instances; ?passing=true, ?index=&wait=,
                                                        ?consistency=default|consistent|stale

Registration body (every field optional)::

    {"address": "10.0.0.5", "port": 8080, "tags": ["v2"], "meta": {"zone": "a"},
     "ttl": 10, "deregister_after": 60, "status": "passing",
     "check": {"http": "http://10.0.0.5:8080/health", "interval": 5, "timeout": 2}}

Durations are seconds. ``address`` defaults to the host of the node the request
arrived at. Without ``status`` an instance with a TTL or an HTTP check starts
``critical`` until its first pass (Consul's rule), one without starts ``passing``.
Query answers carry ``X-Configsvc-Index`` (block on it with ``?index=``) and
``X-Configsvc-Effective-Consistency``. Every mistake is a 4xx that changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from configsvc.discovery_types import service_summary
from configsvc.http.discovery import Discovery, InstancesView, Registration, WriteOutcome
from configsvc.http.errors import bad_request
from configsvc.http.forwarding import Forwarder
from configsvc.http.node_requests import check_serving
from configsvc.http.params import wait_seconds

if TYPE_CHECKING:
    from configsvc.node import Node

JsonBody = Callable[[Request], Awaitable[dict[str, Any]]]

_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return False
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise bad_request(f"{name} must be true or false")


def _index(request: Request) -> int | None:
    text = request.query_params.get("index")
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 19:
        raise bad_request("index must be a non-negative integer (from X-Configsvc-Index)")
    return int(text)


def _write(outcome: WriteOutcome) -> Response:
    return JSONResponse({"index": outcome.index, "changed": outcome.changed}, headers=outcome.headers)


def _query_headers(view: InstancesView) -> dict[str, str]:
    return {**view.headers, "X-Configsvc-Index": str(view.index),
            "X-Configsvc-Effective-Consistency": view.consistency}


class DiscoveryApi:
    def __init__(self, node: Node, json_body: JsonBody, forwarder: Forwarder | None = None) -> None:
        self.node = node
        self.discovery = Discovery(node, forwarder)
        self._json_body = json_body

    @staticmethod
    def _names(request: Request) -> tuple[str, str, str]:
        p = request.path_params
        return p["ns"], p["service"], p["instance_id"]

    async def register(self, request: Request) -> Response:
        check_serving(self.node)
        ns, service, instance_id = self._names(request)
        body = await self._json_body(request)
        try:
            reg = Registration.from_json(service, instance_id, body, default_address=self.node.me.host)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return _write(await self.discovery.register(request, ns, reg))

    async def check(self, request: Request) -> Response:
        return await self._check(request, None)

    async def heartbeat(self, request: Request) -> Response:
        return await self._check(request, "passing")

    async def _check(self, request: Request, default: str | None) -> Response:
        check_serving(self.node)
        ns, service, instance_id = self._names(request)
        body = await self._json_body(request)
        unknown = sorted(set(body) - {"status", "output"})
        if unknown:
            raise bad_request(f"unknown field(s): {', '.join(unknown)} (known: output, status)")
        status = body.get("status", default)
        if status is None:
            raise bad_request("status is required: passing, warning or critical")
        outcome = await self.discovery.check(request, ns, service, instance_id, status,
                                             body.get("output", ""))
        return _write(outcome)

    async def deregister(self, request: Request) -> Response:
        check_serving(self.node)
        ns, service, instance_id = self._names(request)
        return _write(await self.discovery.deregister(request, ns, service, instance_id))

    async def instances(self, request: Request) -> Response:
        ns, service = request.path_params["ns"], request.path_params["service"]
        return await self._query(request, ns, service)

    async def services(self, request: Request) -> Response:
        """The services of a namespace; ``?instances=true``: every instance instead."""
        return await self._query(request, request.path_params["ns"], None)

    async def _query(self, request: Request, ns: str, service: str | None) -> Response:
        check_serving(self.node)
        every = service is None and _flag(request, "instances")
        view = await self.discovery.instances(
            request, ns, service, passing_only=_flag(request, "passing"),
            consistency=request.query_params.get("consistency", "default"),
            index=_index(request), wait=wait_seconds(request, 60.0),
        )
        body: dict[str, Any] = {"index": view.index, "consistency": view.consistency}
        if service is None and not every:
            body["services"] = {
                name: {"tags": s.tags, "instances": s.instances, "passing": s.passing}
                for name, s in service_summary(view.instances).items()
            }
        else:
            body["instances"] = [i.to_json() for i in view.instances]
        return JSONResponse(body, headers=_query_headers(view))

"""The Consul-compatible HTTP application: routes and the error contract.

A second Starlette app of the node, served on its ``consul_port``: Consul's
paths (``/v1/kv/<key>``) clash with the native API's. It translates Consul's
requests into the same calls the native API makes (``StrongApi``,
``EventualApi``, ``Discovery``); requests a follower forwards to the leader run through this
same face there (``app.state.face``, ``configsvc.http.forwarding``).

Errors keep the native contract (a JSON body with a stable code; bad input
is 4xx and changes nothing; never a 500 for a client's mistake). An endpoint
or method this face does not have is a ``404 unsupported_endpoint`` /
``405 method_not_allowed`` naming it; supported endpoints and parameters are
listed in docs/consul.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from configsvc.http.acl import guard
from configsvc.http.acl_needs import consul_needs
from configsvc.http.acl_routes import AclApi
from configsvc.http.consul.acl import ConsulAcl
from configsvc.http.consul.agent import ConsulAgent
from configsvc.http.consul.catalog import ConsulCatalog
from configsvc.http.consul.kv import ConsulKV
from configsvc.http.consul.status import ConsulStatus
from configsvc.http.consul.txn import ConsulTxn
from configsvc.http.discovery import Discovery
from configsvc.http.errors import (
    ApiError,
    api_error_handler,
    internal_error_handler,
    method_not_allowed,
)
from configsvc.http.eventual_api import EventualApi
from configsvc.http.forwarding import Forwarder
from configsvc.http.request_metrics import RequestMetrics
from configsvc.http.strong_api import StrongApi

if TYPE_CHECKING:
    from configsvc.node import Node

#: the face name forwarded requests carry (``configsvc.http.forwarding``)
FACE = "consul"


def build_consul_app(node: Node, forwarder: Forwarder | None = None) -> Starlette:
    """The Consul-compatible face over ``node`` (``forwarder`` as in ``build_app``)."""
    strong = StrongApi(node)
    eventual = EventualApi(node)
    kv = ConsulKV(node, strong, eventual)
    txn = ConsulTxn(node, strong, eventual)
    status = ConsulStatus(node)
    discovery = Discovery(node, forwarder)
    agent = ConsulAgent(node, discovery)
    catalog = ConsulCatalog(node, discovery)

    async def kv_root(request: Request) -> Response:
        raise ApiError(400, "invalid_argument", "a key is /v1/kv/<namespace>/<key>")

    async def not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, "unsupported_endpoint", f"{request.method} {request.url.path} is not part "
                        "of this Consul-compatible API (docs/consul.md lists what is)").response()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return method_not_allowed(request, f"{request.method} is not supported on {request.url.path}")

    routes = [
        Route("/v1/kv", kv_root, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/kv/{key:path}", kv.get, methods=["GET"]),
        Route("/v1/kv/{key:path}", kv.put, methods=["PUT"]),
        Route("/v1/kv/{key:path}", kv.delete, methods=["DELETE"]),
        Route("/v1/txn", txn.txn, methods=["PUT"]),
        Route("/v1/status/leader", status.leader, methods=["GET"]),
        Route("/v1/status/peers", status.peers, methods=["GET"]),
        Route("/v1/agent/self", status.agent_self, methods=["GET"]),
        Route("/v1/agent/service/register", agent.register, methods=["PUT"]),
        Route("/v1/agent/service/deregister/{service_id:path}", agent.deregister, methods=["PUT"]),
        Route("/v1/agent/check/update/{check_id:path}", agent.update, methods=["PUT"]),
        *(Route(f"/v1/agent/check/{verb}/{{check_id:path}}", agent.ttl(verb), methods=["PUT"])
          for verb in ("pass", "warn", "fail")),
        Route("/v1/catalog/services", catalog.services, methods=["GET"]),
        Route("/v1/catalog/service/{service}", catalog.service, methods=["GET"]),
        Route("/v1/health/service/{service}", catalog.health, methods=["GET"]),
    ]
    # ACL management, then every route behind its check (configsvc.http.acl)
    served = guard(node, [*routes, *ConsulAcl(AclApi(node)).routes()], consul_needs(node))
    app = Starlette(
        routes=served,
        exception_handlers={
            ApiError: api_error_handler,
            404: not_found,
            405: not_allowed,
            Exception: internal_error_handler,
        },
    )
    app.add_middleware(RequestMetrics, node=node, face=FACE)  # requests and errors (metrics)
    app.state.face = FACE
    app.state.forwarder = forwarder
    return app

"""The node's HTTP application (starlette): routes, namespace dispatch, errors.

Every route answers JSON. A key's namespace decides which store serves it:
strong namespaces go through the Multi-Paxos log; eventual namespaces through
the causal gossip store (``configsvc.http.eventual_api``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from configsvc.config import valid_name
from configsvc.http.acl import guard
from configsvc.http.acl_needs import native_needs
from configsvc.http.acl_routes import AclApi
from configsvc.http.admin import AdminApi
from configsvc.http.backup_api import backup_routes
from configsvc.http.cluster_view import PeerReports, cluster_status, health_with_digests
from configsvc.http.config_docs import ConfigDocs
from configsvc.http.discovery_api import DiscoveryApi
from configsvc.http.errors import (
    ApiError,
    api_error_handler,
    bad_request,
    internal_error_handler,
    json_object,
    method_not_allowed,
)
from configsvc.http.eventual_api import EventualApi
from configsvc.http.forwarding import NATIVE, Forwarder
from configsvc.http.members_api import members_routes
from configsvc.http.node_requests import (
    check_serving,
    consistency_of,
    forward,
    read_body,
    registry_barrier,
)
from configsvc.http.openapi import OPENAPI
from configsvc.http.request_metrics import RequestMetrics
from configsvc.http.strong_api import StrongApi, ns_json
from configsvc.http.ui import ui_routes
from configsvc.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from configsvc.node import Node


def build_app(node: Node, forwarder: Forwarder | None = None) -> Starlette:
    """The native API over ``node``; ``forwarder`` sends what only the leader may
    answer to it (None: answer here or 503)."""
    strong = StrongApi(node)
    eventual = EventualApi(node)
    admin = AdminApi(node)

    async def store_for(request: Request, name: str) -> str | None:
        """The namespace's consistency, or None: this node cannot tell; forward to the leader."""
        return await consistency_of(node, request, name)

    async def json_body(request: Request) -> dict[str, Any]:
        return json_object(await read_body(request, node.config.limits.body_max_bytes, "body_too_large"))

    async def list_namespaces(request: Request) -> Response:
        """The registry as the leader has it after a quorum round (``?consistency=stale``:
        this node's applied registry, which may miss a just-acknowledged change)."""
        check_serving(node)
        mode = request.query_params.get("consistency", "linearizable")
        if mode not in ("linearizable", "stale"):
            raise bad_request("consistency must be 'linearizable' or 'stale'")
        if mode == "linearizable" and not await registry_barrier(node, request):
            return await forward(node, request, node.strong.status().leader)
        return JSONResponse({"namespaces": [ns_json(i) for i in node.strong.sm.namespaces()]})

    async def create_namespace(request: Request) -> Response:
        check_serving(node)
        data = await json_body(request)
        unknown = sorted(set(data) - {"name", "consistency", "merge"})
        if unknown:  # a misspelt "consistency" must not create a strong namespace
            raise bad_request(f"unknown field(s) {', '.join(unknown)} (known: consistency, merge, name)")
        name, consistency = data.get("name"), data.get("consistency", "strong")
        merge = data.get("merge", "mvr")
        if not isinstance(name, str) or consistency not in ("strong", "eventual"):
            raise bad_request("need {'name': str, 'consistency': 'strong'|'eventual'}")
        if not valid_name(name):
            raise bad_request("a namespace name is 1-63 letters, digits, '_', '.', '-'")
        if merge not in ("mvr", "lww"):
            raise bad_request("merge must be 'mvr' or 'lww'")
        return await strong.create_namespace(request, name, consistency, merge)

    async def get_namespace(request: Request) -> Response:
        name = request.path_params["ns"]
        if await store_for(request, name) is None:
            return await forward(node, request, node.strong.status().leader)
        info = next(i for i in node.strong.sm.namespaces() if i.name == name)
        return JSONResponse({"namespace": ns_json(info)})

    async def delete_namespace(request: Request) -> Response:
        check_serving(node)
        return await strong.delete_namespace(request, request.path_params["ns"])

    async def kv_list(request: Request) -> Response:
        ns = request.path_params["ns"]
        kind = await store_for(request, ns)
        if kind is None:
            return await forward(node, request, node.strong.status().leader)
        if kind == "eventual":
            return await eventual.list_keys(request, ns)
        return await strong.list_keys(request, ns)

    async def kv_key(request: Request) -> Response:
        ns, key = request.path_params["ns"], request.path_params["key"]
        kind = await store_for(request, ns)
        if kind is None:
            return await forward(node, request, node.strong.status().leader)
        api: StrongApi | EventualApi = eventual if kind == "eventual" else strong
        if request.method == "GET":
            return await api.get_key(request, ns, key)
        if request.method == "PUT":
            return await api.put_key(request, ns, key)
        return await api.delete_key(request, ns, key)

    async def txn(request: Request) -> Response:
        ns = request.path_params["ns"]
        kind = await store_for(request, ns)
        if kind is None:
            return await forward(node, request, node.strong.status().leader)
        if kind == "eventual":
            return await eventual.txn(request, ns, await json_body(request))
        return await strong.txn(request, ns, await json_body(request))

    # ---- config documents (configsvc.http.config_docs): both kinds of namespace
    docs = ConfigDocs(strong, eventual)

    async def config_document(request: Request) -> Response:
        ns, prefix = request.path_params["ns"], request.path_params.get("prefix", "")
        kind = await store_for(request, ns)
        if kind is None:
            return await forward(node, request, node.strong.status().leader)
        return await docs.get(request, ns, prefix, kind)

    config_routes = [
        Route("/v1/config/{ns}", config_document, methods=["GET"]),
        Route("/v1/config/{ns}/{prefix:path}", config_document, methods=["GET"]),
    ]
    # ---- end of config documents

    # ---- health with reasons, the cluster at a glance (configsvc.http.cluster_view)
    peer_reports = PeerReports(node, forwarder) if forwarder is not None else None

    async def health(request: Request) -> Response:
        """``?local=true``: this node's report alone (what peers ask each other for)."""
        local = request.query_params.get("local", "false")
        if local not in ("true", "false"):
            raise bad_request("local must be 'true' or 'false'")
        if local == "true" or peer_reports is None:
            return JSONResponse(node.health())
        return JSONResponse(health_with_digests(node, peer_reports.cached()))

    async def cluster(request: Request) -> Response:
        """Every node, namespace and reason; waits (bounded) for fresh peer reports."""
        peers = await peer_reports.fresh(timeout=3.0) if peer_reports is not None else {}
        return JSONResponse(cluster_status(node, peers))
    # ---- end of health

    async def metrics(request: Request) -> Response:
        """This node's metrics in Prometheus' text format (``configsvc.metrics``)."""
        return Response(node.metrics.expose(), media_type=CONTENT_TYPE_LATEST)

    async def upgrade(request: Request) -> Response:
        return JSONResponse(node.upgrade_status())

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    async def not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, "not_found", f"no route {request.method} {request.url.path}").response()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return method_not_allowed(request, f"{request.method} not allowed here")

    routes = [
        Route("/v1/namespaces", list_namespaces, methods=["GET"]),
        Route("/v1/namespaces", create_namespace, methods=["POST"]),
        Route("/v1/namespaces/{ns}", get_namespace, methods=["GET"]),
        Route("/v1/namespaces/{ns}", delete_namespace, methods=["DELETE"]),
        Route("/v1/kv/{ns}", kv_list, methods=["GET"]),
        Route("/v1/kv/{ns}/{key:path}", kv_key, methods=["GET", "PUT", "DELETE"]),
        Route("/v1/txn/{ns}", txn, methods=["POST"]),
        Route("/v1/cluster/health", health, methods=["GET"]),
        Route("/v1/cluster/status", cluster, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/cluster/upgrade", upgrade, methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/v1/admin/faults", admin.list_faults, methods=["GET"]),
        Route("/v1/admin/faults", admin.clear_faults, methods=["DELETE"]),
        Route("/v1/admin/faults/{peer}", admin.set_fault, methods=["PUT"]),
        *members_routes(node),  # membership changes (configsvc.http.members_api)
        *backup_routes(node),  # online backups (configsvc.http.backup_api)
        *config_routes,
        *ui_routes(node),  # the dashboard at /ui (configsvc.http.ui)
    ]

    # Service discovery (configsvc.http.discovery_api over configsvc.http.discovery).
    services = DiscoveryApi(node, json_body, forwarder)
    instance = "/v1/services/{ns}/{service}/{instance_id}"
    routes += [
        Route("/v1/services/{ns}", services.services, methods=["GET"]),
        Route("/v1/services/{ns}/{service}", services.instances, methods=["GET"]),
        Route(instance, services.register, methods=["PUT"]),
        Route(instance, services.deregister, methods=["DELETE"]),
        Route(instance + "/check", services.check, methods=["PUT"]),
        Route(instance + "/heartbeat", services.heartbeat, methods=["PUT"]),
    ]

    # ACL management, then every route behind its check (configsvc.http.acl)
    routes += AclApi(node).native_routes()
    routes = guard(node, routes, native_needs(node))

    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error_handler,
            404: not_found,
            405: not_allowed,
            Exception: internal_error_handler,
        },
    )
    app.add_middleware(RequestMetrics, node=node, face=NATIVE)  # requests and errors (metrics)
    app.state.forwarder = forwarder
    app.state.peer_reports = peer_reports
    return app

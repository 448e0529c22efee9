"""What each route touches: the needs tables ``configsvc.http.acl.guard`` checks.

One entry per route path of each face; a need function reads the path,
query and (for a few writes) the JSON body, and names the resources. Names:

    key        "<namespace>/<key>"       (the Consul face's key path as is)
    service    "<namespace>/<service>"
    namespace  "<namespace>"

A listing needs its access on every name under its prefix
(``Need.every``); see ``configsvc.http.acl`` rule 5. Routes whose resource
only the handler can know (the Consul agent's deregister and check updates,
which look the instance up by id) are ``PUBLIC`` here and call
``configsvc.http.acl.require`` themselves; ACL management routes
(``configsvc.http.acl_routes``) do the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from configsvc.http.acl import PUBLIC, Need, NeedFn, json_body
from configsvc.http.params import flag
from strong.acl import ACL, KEY, NAMESPACE, READ, SERVICE, WRITE

if TYPE_CHECKING:
    from configsvc.node import Node

#: ACL management (``configsvc.http.acl_routes``): each handler checks acl:read/write
_NATIVE_ACL = ("/v1/acl/policies", "/v1/acl/policies/{name}", "/v1/acl/tokens",
               "/v1/acl/tokens/self", "/v1/acl/tokens/{accessor_id}")
_CONSUL_ACL = ("/v1/acl/token", "/v1/acl/token/self", "/v1/acl/token/{accessor_id}", "/v1/acl/tokens",
               "/v1/acl/policy", "/v1/acl/policy/name/{name}", "/v1/acl/policy/{id}",
               "/v1/acl/policies")
_CANNOT_TELL = (Need(ACL, "", WRITE),)
"""A body whose resources cannot be read (not JSON): only a management token may
send it on (the handler then answers 400)."""


def _rw(request: Request) -> str:
    return READ if request.method in ("GET", "HEAD") else WRITE


def native_needs(node: Node) -> dict[str, NeedFn]:
    """The native API's table (paths as in ``configsvc.http.app``)."""

    async def namespaces(request: Request) -> Sequence[Need]:
        if request.method == "GET":
            return (Need(NAMESPACE, "", READ, every=True),)
        body = await json_body(node, request)
        name = body.get("name") if isinstance(body, dict) else None
        return (Need(NAMESPACE, name, WRITE),) if isinstance(name, str) else _CANNOT_TELL

    async def namespace(request: Request) -> Sequence[Need]:
        return (Need(NAMESPACE, request.path_params["ns"], _rw(request)),)

    async def kv_list(request: Request) -> Sequence[Need]:
        prefix = request.query_params.get("prefix", "")
        return (Need(KEY, f"{request.path_params['ns']}/{prefix}", READ, every=True),)

    async def kv_key(request: Request) -> Sequence[Need]:
        name = f"{request.path_params['ns']}/{request.path_params['key']}"
        recursive = request.method == "DELETE" and flag(request, "recurse")
        return (Need(KEY, name, _rw(request), every=recursive),)

    async def txn(request: Request) -> Sequence[Need]:
        return (Need(KEY, f"{request.path_params['ns']}/", WRITE, every=True),)

    async def config_document(request: Request) -> Sequence[Need]:
        prefix = request.path_params.get("prefix", "")
        return (Need(KEY, f"{request.path_params['ns']}/{prefix}", READ, every=True),)

    async def services(request: Request) -> Sequence[Need]:
        return (Need(SERVICE, f"{request.path_params['ns']}/", READ, every=True),)

    async def service(request: Request) -> Sequence[Need]:
        name = f"{request.path_params['ns']}/{request.path_params['service']}"
        return (Need(SERVICE, name, _rw(request)),)

    async def operator(request: Request) -> Sequence[Need]:
        return (Need(ACL, "", WRITE),)

    async def members(request: Request) -> Sequence[Need]:
        """Reading the configuration is public (as in ``/v1/cluster/status``);
        changing it is an operator's act (management: ``acl:write``)."""
        return () if request.method == "GET" else await operator(request)

    instance = "/v1/services/{ns}/{service}/{instance_id}"
    return {
        "/v1/namespaces": namespaces,
        "/v1/namespaces/{ns}": namespace,
        "/v1/kv/{ns}": kv_list,
        "/v1/kv/{ns}/{key:path}": kv_key,
        "/v1/txn/{ns}": txn,
        "/v1/config/{ns}": config_document,
        "/v1/config/{ns}/{prefix:path}": config_document,
        "/v1/services/{ns}": services,
        "/v1/services/{ns}/{service}": service,
        instance: service,
        instance + "/check": service,
        instance + "/heartbeat": service,
        # cluster state, the API description and the dashboard's page: no data
        "/v1/cluster/health": PUBLIC,
        # cluster status (peers ask each other for it) and Prometheus scrapes carry
        # namespace names and counts, no keys or values (docs/acl.md, "Public routes")
        "/v1/cluster/status": PUBLIC,
        "/metrics": PUBLIC,
        # state-machine versions, applied index and state hash (configsvc.upgrade)
        "/v1/cluster/upgrade": PUBLIC,
        "/v1/openapi.json": PUBLIC,
        "/ui": PUBLIC,
        "/ui/": PUBLIC,
        "/ui/static/{name}": PUBLIC,
        "/ui/api/state": PUBLIC,
        # the lab's levers: fault injection has its own admin token; the
        # dashboard's controls kill and partition nodes
        "/v1/admin/faults": PUBLIC,
        "/v1/admin/faults/{peer}": PUBLIC,
        # the strong group's membership (configsvc.http.members_api)
        "/v1/cluster/members": members,
        "/v1/cluster/members/{id}": members,
        "/v1/cluster/members/{id}/promote": members,
        "/v1/cluster/leader/transfer": members,
        # a backup holds every key and token: management only (configsvc.http.backup_api)
        "/v1/cluster/snapshot": operator,
        "/ui/control/status": operator,
        "/ui/control/{action}": operator,
        "/ui/control/{action}/{node}": operator,
        **dict.fromkeys(_NATIVE_ACL, PUBLIC),
    }


def _consul_key_access(verb: object) -> tuple[str, bool] | None:
    """(access, every) of a Consul txn KV verb; None for one this face does not run."""
    match verb:
        case "get" | "check-index" | "check-session" | "check-not-exists":
            return READ, False
        case "get-tree":
            return READ, True
        case "delete-tree":
            return WRITE, True
        case "set" | "cas" | "lock" | "unlock" | "delete" | "delete-cas":
            return WRITE, False
    return None


def _fold(obj: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in obj.items()} if isinstance(obj, dict) else {}


def _present(request: Request, name: str) -> bool:
    """A Consul flag (``configsvc.http.consul.params`` rule 3): present means true,
    unless ``false`` or ``0``."""
    value = request.query_params.get(name)
    return value is not None and value.lower() not in ("false", "0")


def consul_needs(node: Node) -> dict[str, NeedFn]:
    """The Consul face's table (paths as in ``configsvc.http.consul.app``)."""
    consul = node.config.consul

    def services_ns(request: Request, named: object = None) -> str:
        ns = request.query_params.get("ns") or named
        return ns if isinstance(ns, str) and ns else consul.services_namespace

    async def kv(request: Request) -> Sequence[Need]:
        key = request.path_params["key"]
        listing = request.method == "GET" and (_present(request, "recurse") or _present(request, "keys"))
        recursive = request.method == "DELETE" and _present(request, "recurse")
        return (Need(KEY, key, _rw(request), every=listing or recursive),)

    async def txn(request: Request) -> Sequence[Need]:
        ops = await json_body(node, request)
        if not isinstance(ops, list):
            return _CANNOT_TELL
        needs = []
        for item in ops:
            spec = _fold(_fold(item).get("kv"))
            access = _consul_key_access(spec.get("verb"))
            key = spec.get("key")
            if access is None or not isinstance(key, str):
                return _CANNOT_TELL
            needs.append(Need(KEY, key, access[0], every=access[1]))
        return needs

    async def register(request: Request) -> Sequence[Need]:
        body = _fold(await json_body(node, request))
        name = body.get("name")
        if not isinstance(name, str):
            return _CANNOT_TELL
        return (Need(SERVICE, f"{services_ns(request, body.get('namespace'))}/{name}", WRITE),)

    async def catalog_services(request: Request) -> Sequence[Need]:
        return (Need(SERVICE, f"{services_ns(request)}/", READ, every=True),)

    async def catalog_service(request: Request) -> Sequence[Need]:
        return (Need(SERVICE, f"{services_ns(request)}/{request.path_params['service']}", READ),)

    return {
        "/v1/kv": PUBLIC,  # answers only "a key is /v1/kv/<namespace>/<key>"
        "/v1/kv/{key:path}": kv,
        "/v1/txn": txn,
        "/v1/status/leader": PUBLIC,
        "/v1/status/peers": PUBLIC,
        "/v1/agent/self": PUBLIC,
        "/v1/agent/service/register": register,
        # the handler looks the instance up, then requires service:write on it
        "/v1/agent/service/deregister/{service_id:path}": PUBLIC,
        "/v1/agent/check/update/{check_id:path}": PUBLIC,
        "/v1/agent/check/pass/{check_id:path}": PUBLIC,
        "/v1/agent/check/warn/{check_id:path}": PUBLIC,
        "/v1/agent/check/fail/{check_id:path}": PUBLIC,
        "/v1/catalog/services": catalog_services,
        "/v1/catalog/service/{service}": catalog_service,
        "/v1/health/service/{service}": catalog_service,
        **dict.fromkeys(_CONSUL_ACL, PUBLIC),
    }

"""``/v1/catalog/services``, ``/v1/catalog/service/<name>``, ``/v1/health/service/<name>``.

Queries over ``configsvc.http.discovery.Discovery``, in Consul's shapes. Every one
blocks with ``?index=&wait=`` and takes ``?stale``/``?consistent`` and ``?ns=``;
the service queries also ``?tag=`` (repeatable: instances with every tag), and
the health query ``?passing`` (only instances whose check passes).

Consul's model has nodes; here the "node" of an instance is the configsvc node
it registered with (which runs its HTTP check): ``Node``/``Address`` are that
node's id and host. An instance with a TTL or HTTP check shows one check,
``service:<ID>``, carrying its status and output; one without shows none.
Headers: ``X-Consul-Index`` is the facade's index (strong: the revision at
which the answer last changed; eventual: this node's change index of the
namespace), with ``X-Consul-KnownLeader``, ``X-Consul-LastContact`` and
``X-Consul-Effective-Consistency`` (consistency.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from configsvc.discovery_types import service_summary
from configsvc.http.consul.consistency import ReadMeta
from configsvc.http.consul.kv import consul_json
from configsvc.http.consul.params import BLOCKING_READ, Query
from configsvc.http.consul.status import node_uuid
from configsvc.http.discovery import Discovery, Instance, InstancesView
from configsvc.member_addresses import member_address

if TYPE_CHECKING:
    from configsvc.node import Node

_QUERY = BLOCKING_READ | {"ns"}
#: the facade's consistency names, in Consul's words
_EFFECTIVE = {"leader-lease": "leader"}


class ConsulCatalog:
    def __init__(self, node: Node, discovery: Discovery) -> None:
        self.node = node
        self.discovery = discovery
        self.consul = node.config.consul

    async def _view(self, request: Request, q: Query, service: str | None,
                    passing_only: bool = False) -> tuple[InstancesView, dict[str, str]]:
        ns = q.text("ns") or self.consul.services_namespace
        view = await self.discovery.instances(
            request, ns, service, passing_only=passing_only, consistency=q.mode(),
            index=q.index() or None, wait=q.wait(self.node.config.limits.watch_max_seconds))
        tags = request.query_params.getlist("tag")
        if tags:
            view.instances = [i for i in view.instances if set(tags) <= set(i.tags)]
        meta = ReadMeta(view.index, view.known_leader, view.last_contact_ms,
                        _EFFECTIVE.get(view.consistency, view.consistency))
        return view, {**view.headers, **meta.headers()}

    def _node(self, node_id: str) -> dict[str, Any]:
        member = member_address(self.node, node_id)
        host = member.api_address.rpartition(":")[0] if member is not None else ""
        return {
            "ID": node_uuid(self.node.config.cluster_id, node_id),
            "Node": node_id, "Address": host, "Datacenter": self.consul.datacenter,
            "TaggedAddresses": {"lan": host, "wan": host}, "Meta": {},
        }

    async def services(self, request: Request) -> Response:
        q = Query(request, _QUERY, self.consul.datacenter)
        view, headers = await self._view(request, q, None)
        summary = service_summary(view.instances)
        return consul_json({name: s.tags for name, s in summary.items()}, headers=headers)

    async def service(self, request: Request) -> Response:
        q = Query(request, _QUERY | {"tag"}, self.consul.datacenter)
        view, headers = await self._view(request, q, request.path_params["service"])
        out = []
        for i in view.instances:
            node = self._node(i.node)
            out.append({
                "ID": node["ID"], "Node": i.node, "Address": node["Address"],
                "Datacenter": self.consul.datacenter, "TaggedAddresses": node["TaggedAddresses"],
                "NodeMeta": {}, "ServiceID": i.instance_id, "ServiceName": i.service,
                "ServiceTags": list(i.tags), "ServiceAddress": i.address, "ServicePort": i.port,
                "ServiceMeta": dict(i.meta), "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceEnableTagOverride": False,
                "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
            })
        return consul_json(out, headers=headers)

    async def health(self, request: Request) -> Response:
        q = Query(request, _QUERY | {"tag", "passing"}, self.consul.datacenter)
        view, headers = await self._view(request, q, request.path_params["service"],
                                         passing_only=q.flag("passing"))
        out = [{"Node": self._node(i.node), "Service": _service(i), "Checks": _checks(i)}
               for i in view.instances]
        return consul_json(out, headers=headers)


def _service(i: Instance) -> dict[str, Any]:
    return {
        "ID": i.instance_id, "Service": i.service, "Tags": list(i.tags), "Address": i.address,
        "Meta": dict(i.meta), "Port": i.port, "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False, "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
    }


def _checks(i: Instance) -> list[dict[str, Any]]:
    if i.ttl is None and i.http_check is None:
        return []
    definition = {"HTTP": i.http_check.http, "Interval": f"{i.http_check.interval}s",
                  "Timeout": f"{i.http_check.timeout}s"} if i.http_check else {}
    return [{
        "Node": i.node, "CheckID": f"service:{i.instance_id}", "Name": f"Service '{i.service}' check",
        "Status": i.status, "Notes": "", "Output": i.output, "ServiceID": i.instance_id,
        "ServiceName": i.service, "ServiceTags": list(i.tags),
        "Type": "http" if i.http_check else "ttl", "Definition": definition,
        "CreateIndex": i.create_index, "ModifyIndex": i.modify_index,
    }]

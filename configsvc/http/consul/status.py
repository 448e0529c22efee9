"""``/v1/status/leader``, ``/v1/status/peers`` and ``/v1/agent/self``.

Consul answers the status endpoints with the consensus addresses of its
servers; here they are the strong group's voters (the committed
configuration, ``strong.membership``) at their peer addresses.
``leader`` is ``""`` while this node knows of no leader (Consul's answer).
``agent/self`` holds what clients read when they start: the datacenter, the
node's name and id, that it is a server, and the version of configsvc.
"""

from __future__ import annotations

import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from configsvc.http.consul.consistency import strong_meta
from configsvc.http.consul.kv import consul_json
from configsvc.http.consul.params import Query
from configsvc.http.node_requests import check_serving
from configsvc.member_addresses import member_address

if TYPE_CHECKING:
    from configsvc.node import Node


def _version() -> str:
    try:
        return version("configsvc")
    except PackageNotFoundError:
        return "0.0.0"


def node_uuid(cluster_id: str, node_id: str) -> str:
    """A node's stable id (per cluster and node), in Consul's UUID form."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"configsvc:{cluster_id}:{node_id}"))


class ConsulStatus:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.datacenter = node.config.consul.datacenter

    def _address(self, node_id: str) -> str:
        """A member's consensus address: from the configuration (a node added by a
        membership change may be missing from this node's cluster file)."""
        member = member_address(self.node, node_id)
        return member.peer_address if member is not None and member.peer_address else node_id


    async def leader(self, request: Request) -> Response:
        Query(request, (), self.datacenter)
        check_serving(self.node)
        meta = strong_meta(self.node, "stale", self.node.strong.sm.revision)
        leader = self.node.strong.status().leader if meta.known_leader else None
        return consul_json(self._address(leader) if leader else "")

    async def peers(self, request: Request) -> Response:
        Query(request, (), self.datacenter)
        check_serving(self.node)
        return consul_json([self._address(n) for n in self.node.strong.members.voters])

    async def agent_self(self, request: Request) -> Response:
        Query(request, (), self.datacenter)
        me = self.node.me
        health = self.node.health()
        body: dict[str, Any] = {
            "Config": {
                "Datacenter": self.datacenter,
                "PrimaryDatacenter": self.datacenter,
                "NodeName": self.node.id,
                "NodeID": node_uuid(self.node.config.cluster_id, self.node.id),
                "Server": True,
                "Version": _version(),
                "Revision": "",
            },
            "Member": {
                "Name": self.node.id,
                "Addr": me.host,
                "Port": me.peer_port,
                "Status": 1,
                "Tags": {"role": "consul", "dc": self.datacenter, "id": node_uuid(self.node.config.cluster_id, self.node.id)},
            },
            "Meta": {"configsvc-api-port": str(me.api_port)},
            "Stats": {"configsvc": {"status": health["status"], "leader": str(
                health.get("strong", {}).get("leader") or "")}},
        }
        return consul_json(body)

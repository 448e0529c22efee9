"""The HTTP side of one node: both API faces, forwarding, and instance checks.

``HttpService(node)`` builds the native API and the Consul-compatible face
over a ``configsvc.node.Node``, lets peers forward requests to them (over the
node's peer transport, channel ``configsvc.http.forwarding.CHANNEL``), and
runs the HTTP checks of the instances registered with this node
(``configsvc.http.health_checks``). The node below knows nothing of HTTP.

Lifecycle: ``start`` starts the node, then the checks; ``close`` stops them
in reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from configsvc.http.acl import known_secret
from configsvc.http.app import build_app
from configsvc.http.connection_guard import ConnectionGuard
from configsvc.http.consul import FACE as CONSUL_FACE
from configsvc.http.consul import build_consul_app
from configsvc.http.forwarding import CHANNEL, NATIVE, Forwarder
from configsvc.http.health_checks import HealthChecks
from configsvc.http.limits import RequestLimits
from configsvc.http.request_metrics import HttpCollector

if TYPE_CHECKING:
    from configsvc.node import Node


class HttpService:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.forwarder = Forwarder(
            node.id, lambda dst, payload: node.send_peer(dst, CHANNEL, payload),
            timeout=node.config.timing.request_timeout + 1.0,
        )
        #: the native API
        self.app = build_app(node, self.forwarder)
        #: the Consul-compatible face (served on the node's ``consul_port``)
        self.consul_app = build_consul_app(node, self.forwarder)
        # Requests forwarded to this node run through the face they arrived on.
        self.forwarder.serve_with(self.app, face=NATIVE)
        self.forwarder.serve_with(self.consul_app, face=CONSUL_FACE)
        # What clients reach (``configsvc serve``): both faces behind one node's
        # per-client limits (docs/limits.md); forwarded requests run through the
        # faces themselves, limited where they arrived.
        self.request_limits = RequestLimits(
            node.config.limits, known=lambda secret: known_secret(node, secret))
        self.limited_app = self.request_limits.wrap(self.app)
        self.limited_consul_app = self.request_limits.wrap(self.consul_app, consul=True)
        #: connections per client address and header deadlines, for both ports' servers
        self.connection_guard = ConnectionGuard(node.config.limits)
        node.on_peer_channel(CHANNEL, self.forwarder.deliver)
        node.metrics.registry.register(HttpCollector(self.forwarder, self.app.state.peer_reports))
        self.health_checks: HealthChecks | None = None

    async def start(self) -> None:
        """Start the node (raises ``DataDirError`` for a wiped directory), then the checks."""
        await self.node.start()
        if self.node.corrupt is None:
            self.health_checks = HealthChecks(self.node, self.forwarder)
            await self.health_checks.start()

    async def close(self) -> None:
        if self.health_checks is not None:
            await self.health_checks.close()
        if self.app.state.peer_reports is not None:
            await self.app.state.peer_reports.close()
        await self.forwarder.close()
        await self.node.close()

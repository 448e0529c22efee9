"""HTTP metrics of a node: requests per namespace and errors per code (an ASGI
middleware), and the HTTP layer's own counters read at scrape (``HttpCollector``).

The middleware sits outside every route of one face (native or Consul) and
counts each answered request once, by face, namespace, method and status; an
error answer (status >= 400) also by its error code, read from the JSON error
body the API gives (``{"error": {"code": ...}}``). It changes nothing it
passes through.

Labels stay bounded (a client cannot mint series): the namespace is one the
registry holds, else ``other`` (``none``: the route names no namespace); the
method is a standard one, else ``other``; the code matches ``[a-z0-9_]{1,48}``,
else ``other`` (``none``: no JSON error body).

Requests forwarded to the leader are counted by both nodes: by the follower
that received them and by the leader that served them (``configsvc_http_
forwarded_requests_total`` tells them apart).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configsvc.http.forwarding import Forwarder

if TYPE_CHECKING:
    from configsvc.http.cluster_view import PeerReports
    from configsvc.node import Node

__all__ = ["HttpCollector", "RequestMetrics", "namespace_of"]

METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"})
_CODE = re.compile(r"[a-z0-9_]{1,48}")
#: path prefixes whose next segment is a namespace (native and Consul faces)
_NS_ROUTES = ("/v1/kv/", "/v1/txn/", "/v1/services/", "/v1/config/", "/v1/namespaces/")
#: an error body is read for its code only this far
_ERROR_PEEK = 4096


def namespace_of(path: str) -> str | None:
    """The namespace a request path names, or None."""
    for prefix in _NS_ROUTES:
        if path.startswith(prefix):
            ns = path[len(prefix):].split("/", 1)[0]
            return ns or None
    return None


def _error_code(body: bytes) -> str:
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "none"
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "other"


class RequestMetrics:
    """ASGI middleware counting the requests of one face (module docstring)."""

    def __init__(self, app: ASGIApp, node: Node, face: str) -> None:
        self.app = app
        self.node = node
        self.face = face

    def _namespace(self, path: str) -> str:
        ns = namespace_of(path)
        if ns is None:
            return "none"
        strong = self.node._strong
        return ns if strong is not None and strong.sm.has_namespace(ns) else "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        error = bytearray()

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400 and len(error) < _ERROR_PEEK:
                error.extend(message.get("body", b"")[:_ERROR_PEEK - len(error)])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            if status:  # an answer went out (a dropped connection counts nothing)
                self._count(scope, status, bytes(error))

    def _count(self, scope: Scope, status: int, error: bytes) -> None:
        metrics = self.node.metrics
        method = scope["method"] if scope["method"] in METHODS else "other"
        namespace = self._namespace(scope["path"])
        metrics.http_requests.labels(self.face, namespace, method, str(status)).inc()
        if status >= 400:
            metrics.http_errors.labels(self.face, str(status), _error_code(error)).inc()


class HttpCollector(Collector):
    """The HTTP layer's counters and views, read at scrape time."""

    def __init__(self, forwarder: Forwarder, peer_reports: PeerReports | None) -> None:
        self.forwarder = forwarder
        self.peer_reports = peer_reports

    def collect(self) -> Iterator[Metric]:
        forwarded = CounterMetricFamily(
            "configsvc_http_forwarded_requests",
            "HTTP requests forwarded over the peer transport: 'out' sent to the leader, "
            "'in' served for a peer", labels=["direction"])
        forwarded.add_metric(["out"], self.forwarder.forwarded)
        forwarded.add_metric(["in"], self.forwarder.served)
        yield forwarded
        agree = GaugeMetricFamily(
            "configsvc_eventual_digests_agree",
            "Per eventual namespace: 1 if every peer's last report has this node's digest, "
            "0 if some differ (absent: unknown)", labels=["namespace"])
        if self.peer_reports is not None:
            for ns, verdict in sorted(self.peer_reports.agreement().items()):
                if verdict is not None:
                    agree.add_metric([ns], int(verdict))
        yield agree

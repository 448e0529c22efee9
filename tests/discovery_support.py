"""What the discovery tests share: a cluster with services in both kinds of
namespace, a tiny HTTP server to check, and waiting on an instance's state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from configsvc.client import Client
from tests.cluster import LocalCluster, wait_for
from tests.test_client_surface import ADMIN  # the token its isolate() and heal() send

TIMING = {"heartbeat_interval": 0.1, "election_timeout": 1.0, "lease_duration": 0.7, "request_timeout": 2.0}
#: the strong and the eventual namespace of ``tests.cluster``
NAMESPACES = ["app", "disc"]


@contextmanager
def running_cluster(root: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(root, nodes=3, admin_token=ADMIN, **TIMING)
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


class CheckTarget:
    """An HTTP server on loopback answering every GET with ``code`` (set by the test)."""

    def __init__(self) -> None:
        self.code = 200
        self.hits = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target.hits += 1
                self.send_response(target.code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/health"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def instance(client: Client, ns: str, service: str, instance_id: str) -> dict[str, Any] | None:
    """The instance as ``client``'s node answers now (None: not registered there)."""
    return next((i for i in client.instances(ns, service) if i["instance_id"] == instance_id), None)


def wait_status(client: Client, ns: str, service: str, instance_id: str, status: str | None,
                timeout: float = 15.0) -> dict[str, Any] | None:
    """Wait until the instance has ``status`` (None: until it is gone)."""
    def reached() -> dict[str, Any] | bool | None:
        found = instance(client, ns, service, instance_id)
        if status is None:
            return found is None
        return found if found is not None and found["status"] == status else None

    result = wait_for(reached, timeout, f"{ns}/{service}/{instance_id} to be {status or 'gone'}")
    return result if isinstance(result, dict) else None

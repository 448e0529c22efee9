"""Test clusters: ``configsvc.localcluster`` with the namespaces the tests use.

Rung 4 of the testing ladder: real processes, real sockets, real fsync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from configsvc.localcluster import LocalCluster as _LocalCluster
from configsvc.localcluster import free_ports, wait_for

__all__ = ["PEER_SECRET", "LocalCluster", "free_ports", "wait_for"]

#: the peer secret of in-process test nodes (process clusters generate their own)
PEER_SECRET = "in-process-test-peer-secret-0123456789"

NAMESPACES = [{"name": "app", "consistency": "strong"}, {"name": "disc", "consistency": "eventual"}]


class LocalCluster(_LocalCluster):
    def __init__(self, root: Path, nodes: int = 3, admin_token: str | None = None,
                 env: dict[str, str] | None = None, acl: dict[str, Any] | None = None,
                 **timing: float) -> None:
        super().__init__(root, nodes, namespaces=NAMESPACES, admin_token=admin_token,
                         timing={"request_timeout": 3.0, **timing}, env=env, acl=acl)

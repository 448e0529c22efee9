"""Process entry points: run one node (``serve``) or a local cluster (``cluster up``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from configsvc.config import load_config
from configsvc.datadir import InitialState
from configsvc.http.app import build_app
from configsvc.http.consul import build_consul_app
from configsvc.localcluster import LocalCluster
from configsvc.node import Node


def _uvicorn_config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                          timeout_graceful_shutdown=2)


class _SecondServer(uvicorn.Server):
    """A server that leaves signals to the node's main server, which stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_node(config_path: str, node_id: str, initial_cluster_state: InitialState = "existing") -> None:
    config = load_config(config_path)
    node = Node(config, node_id, initial_cluster_state=initial_cluster_state)
    await node.start()  # raises DataDirError (before serving anything) for a wiped directory
    me = config.node(node_id)
    server = uvicorn.Server(_uvicorn_config(build_app(node), me.host, me.api_port))
    # The Consul-compatible API, on its own port when the node has one.
    consul = None
    if me.consul_port is not None:
        consul = _SecondServer(_uvicorn_config(build_consul_app(node), me.host, me.consul_port))
    # uvicorn re-raises the signal that stopped it, under the handler in force
    # before it started: make that one harmless so the node closes cleanly.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    consul_task = asyncio.create_task(consul.serve()) if consul is not None else None
    try:
        await server.serve()
    finally:
        if consul is not None and consul_task is not None:
            consul.should_exit = True
            await consul_task
        await node.close()


def serve(config_path: str, node_id: str, initial_cluster_state: InitialState = "existing") -> int:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s")
    asyncio.run(serve_node(config_path, node_id, initial_cluster_state))
    return 0


def cluster_up(nodes: int, api_port: int, data_dir: str | None, ready_timeout: float = 60.0) -> int:
    """Start ``nodes`` local node processes; print 'ready'; stop them all on Ctrl-C/SIGTERM."""
    temp = None if data_dir else tempfile.TemporaryDirectory(prefix="configsvc-")
    root = Path(data_dir or temp.name)  # type: ignore[union-attr]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    cluster = LocalCluster(root, nodes, api_port=api_port)
    try:
        for nid in cluster.ids:
            cluster.start(nid)
        deadline = time.monotonic() + ready_timeout
        while not stopping:
            if any(not cluster.alive(n) for n in cluster.ids):
                print(f"error: a node exited during start-up; see the logs in {root}", file=sys.stderr)
                return 1
            try:
                if all(cluster.health(n)["status"] in ("healthy", "degraded") for n in cluster.ids):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                print(f"error: nodes not answering after {ready_timeout}s; logs in {root}", file=sys.stderr)
                return 1
            time.sleep(0.2)  # polling interval while the processes start
        if stopping:
            return 130
        print(f"ready: {nodes} nodes at {', '.join(cluster.endpoints)} (data in {root})", flush=True)
        consul = ", ".join(cluster.consul_url(n) for n in cluster.ids)
        print(f"consul-compatible API: {consul}", flush=True)
        while not stopping and all(cluster.alive(n) for n in cluster.ids):
            time.sleep(0.2)
        return 0
    finally:
        cluster.stop_all()
        if temp is not None:
            temp.cleanup()

"""Process entry point of one node (``serve``); a local cluster is ``configsvc.lab.cluster_up``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Generator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from configsvc.config import load_config
from configsvc.datadir import InitialState
from configsvc.http.connection_guard import ConnectionGuard
from configsvc.http.service import HttpService
from configsvc.node import Node
from configsvc.security import api_tls


def _uvicorn_config(app: ASGIApp, host: str, port: int, guard: ConnectionGuard,
                    tls: dict[str, Any]) -> uvicorn.Config:
    """httptools (h11 without it), guarded against slow and idle clients (``guard``);
    ``tls``: uvicorn's ``ssl_*`` arguments (``configsvc.security.api_tls``), or none."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                          timeout_graceful_shutdown=2, **guard.uvicorn_settings(), **tls)


class _SecondServer(uvicorn.Server):
    """A server that leaves signals to the node's main server, which stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_node(config_path: str, node_id: str, initial_cluster_state: InitialState = "existing") -> None:
    config = load_config(config_path)
    tls = api_tls(config, node_id)  # raises ConfigError for a certificate it cannot load
    service = HttpService(Node(config, node_id, initial_cluster_state=initial_cluster_state))
    await service.start()  # raises DataDirError (before serving anything) for a wiped directory
    # What start-up built (recovered state, imports) lives as long as the process:
    # keep it out of every future garbage collection (full collections scan it all).
    gc.collect()
    gc.freeze()
    me = config.node(node_id)
    server = uvicorn.Server(_uvicorn_config(service.limited_app, me.host, me.api_port,
                                            service.connection_guard, tls))
    # The Consul-compatible API, on its own port when the node has one.
    consul = None
    if me.consul_port is not None:
        consul = _SecondServer(_uvicorn_config(service.limited_consul_app, me.host, me.consul_port,
                                                  service.connection_guard, tls))
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
        await service.close()


def serve(config_path: str, node_id: str, initial_cluster_state: InitialState = "existing") -> int:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s")
    # httpx logs every request at INFO: the forwarder and the health checks make many.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    main = serve_node(config_path, node_id, initial_cluster_state)
    try:
        import uvloop  # the node's whole event loop: HTTP, peers and both drivers
    except ImportError:  # pragma: no cover - a platform without uvloop (Windows)
        asyncio.run(main)
    else:
        uvloop.run(main)
    return 0

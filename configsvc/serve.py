"""Process entry points: run one node (``serve``) or a local cluster (``cluster up``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
import yaml

from configsvc.config import load_config
from configsvc.http.app import build_app
from configsvc.node import Node


async def serve_node(config_path: str, node_id: str) -> None:
    config = load_config(config_path)
    node = Node(config, node_id)
    await node.start()
    me = config.node(node_id)
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(node),
            host=me.host,
            port=me.api_port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    try:
        await server.serve()
    finally:
        await node.close()


def serve(config_path: str, node_id: str) -> int:
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s")
    asyncio.run(serve_node(config_path, node_id))
    return 0


def local_cluster_config(nodes: int, api_port: int, data_dir: Path) -> dict[str, object]:
    """Node i serves its API on api_port+i-1 and peers on api_port+100+i-1."""
    return {
        "cluster_id": "local",
        "data_root": str(data_dir),
        "nodes": [
            {"id": f"n{i}", "host": "127.0.0.1", "api_port": api_port + i - 1, "peer_port": api_port + 99 + i}
            for i in range(1, nodes + 1)
        ],
    }


def cluster_up(nodes: int, api_port: int, data_dir: str | None, ready_timeout: float = 60.0) -> int:
    """Start ``nodes`` local node processes; print 'ready'; stop them all on Ctrl-C/SIGTERM."""
    temp = None if data_dir else tempfile.TemporaryDirectory(prefix="configsvc-")
    root = Path(data_dir or temp.name)  # type: ignore[union-attr]
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "cluster.yaml"
    config_path.write_text(yaml.safe_dump(local_cluster_config(nodes, api_port, root)))
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for i in range(1, nodes + 1):
            log = open(root / f"n{i}.log", "ab")  # noqa: SIM115 - lives as long as the child
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "configsvc.cli", "serve", "--config", str(config_path), "--node", f"n{i}"],
                stdout=log, stderr=subprocess.STDOUT,
            ))
        deadline = time.monotonic() + ready_timeout
        pending = {f"http://127.0.0.1:{api_port + i}/v1/cluster/health" for i in range(nodes)}
        while pending and not stopping:
            for url in sorted(pending):
                try:
                    if httpx.get(url, timeout=0.5).status_code == 200:
                        pending.discard(url)
                except httpx.HTTPError:
                    pass
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                print(f"error: a node exited during start-up; see the logs in {root}", file=sys.stderr)
                return 1
            if time.monotonic() > deadline:
                print(f"error: nodes not answering after {ready_timeout}s; logs in {root}", file=sys.stderr)
                return 1
            time.sleep(0.2)  # polling interval while waiting for the processes
        if stopping:
            return 130
        endpoints = ", ".join(f"http://127.0.0.1:{api_port + i}" for i in range(nodes))
        print(f"ready: {nodes} nodes at {endpoints} (data in {root})", flush=True)
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if temp is not None:
            temp.cleanup()

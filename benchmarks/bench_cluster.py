"""Side-by-side cluster benchmark: configsvc vs etcd, same client, same machine.

    .venv/bin/python benchmarks/bench_cluster.py [--duration 5] [--clients 1,16,64]

Starts a 3-node configsvc cluster (real processes, real fsync) and, when the
``etcd`` binary is installed (Debian: ``etcd-server``), a 3-member etcd on
loopback. One load generator (asyncio + httpx, closed loop: each client
issues its next request when the previous one answers; clients spread over
every node) measures, per workload and client count, throughput and latency
percentiles, then prints the configsvc/etcd ratios.

Workloads: strong write, linearizable read, stale (serializable) read; for
configsvc also eventual write (blind: no read-before-write) and eventual read,
which etcd has no counterpart for.
Everything runs on one machine: the numbers are for comparing the two
systems, not absolute capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

Request = Callable[[httpx.AsyncClient, int], Any]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"benchmark: timed out waiting for {what}")


@dataclass
class Result:
    system: str
    workload: str
    clients: int
    ops: int
    seconds: float
    latencies: list[float]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    def row(self) -> dict[str, Any]:
        return {
            "system": self.system, "workload": self.workload, "clients": self.clients,
            "ops_per_s": round(self.ops_per_s, 1), "p50_ms": round(self.pct(0.5), 2),
            "p99_ms": round(self.pct(0.99), 2), "errors": 0,
        }


async def closed_loop(clients: int, duration: float, request: Request) -> tuple[int, list[float]]:
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    latencies: list[float] = []
    ops = 0
    stop_at = time.perf_counter() + duration
    async with httpx.AsyncClient(limits=limits, timeout=10.0) as http:

        async def one(worker: int) -> None:
            nonlocal ops
            i = 0
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await request(http, worker * 1_000_000 + i)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                ops += 1
                i += 1

        await asyncio.gather(*(one(w) for w in range(clients)))
    return ops, latencies


# ---------------------------------------------------------------- systems


class Configsvc:
    name = "configsvc"

    def __init__(self, root: Path) -> None:
        ports = free_ports(6)
        self.endpoints = [f"http://127.0.0.1:{p}" for p in ports[:3]]
        config = {
            "cluster_id": "bench",
            "data_root": str(root / "configsvc"),
            "nodes": [{"id": f"n{i + 1}", "api_port": ports[i], "peer_port": ports[3 + i]} for i in range(3)],
            "namespaces": [{"name": "bench", "consistency": "strong"},
                           {"name": "ebench", "consistency": "eventual"}],
        }
        path = root / "cluster.yaml"
        path.write_text(yaml.safe_dump(config))
        self.procs = [
            subprocess.Popen([sys.executable, "-m", "configsvc.cli", "serve", "--config", str(path), "--node", f"n{i + 1}", "--initial-cluster-state", "new"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i in range(3)
        ]
        wait_until(lambda: all(httpx.get(e + "/v1/cluster/health").json()["status"] == "healthy"
                               for e in self.endpoints), 60, "configsvc to be healthy")
        self.leader = httpx.get(self.endpoints[0] + "/v1/cluster/health").json()["strong"]["leader"]

    def url(self, worker: int, path: str) -> str:
        return self.endpoints[worker % 3] + path

    def write(self) -> Request:
        return lambda http, i: http.put(self.url(i // 1_000_000, f"/v1/kv/bench/k{i % 1000}"), content=b"v" * 64)

    def read(self, stale: bool) -> Request:
        params = {"consistency": "stale"} if stale else None
        return lambda http, i: http.get(self.url(i // 1_000_000, f"/v1/kv/bench/k{i % 100}"), params=params)

    def eventual_write(self) -> Request:
        return lambda http, i: http.put(self.url(i // 1_000_000, f"/v1/kv/ebench/k{i % 1000}"),
                                        content=b"v" * 64, params={"blind": "true"})

    def eventual_read(self) -> Request:
        return lambda http, i: http.get(self.url(i // 1_000_000, f"/v1/kv/ebench/k{i % 100}"))

    def prepare(self) -> None:
        with httpx.Client() as http:
            for k in range(100):
                http.put(self.endpoints[0] + f"/v1/kv/bench/k{k}", content=b"v" * 64).raise_for_status()
                http.put(self.endpoints[0] + f"/v1/kv/ebench/k{k}", content=b"v" * 64).raise_for_status()

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=15)


class Etcd:
    name = "etcd"

    def __init__(self, root: Path, binary: str) -> None:
        ports = free_ports(6)
        self.endpoints = [f"http://127.0.0.1:{p}" for p in ports[:3]]
        cluster = ",".join(f"e{i + 1}=http://127.0.0.1:{ports[3 + i]}" for i in range(3))
        self.procs = []
        for i in range(3):
            self.procs.append(subprocess.Popen([
                binary, "--name", f"e{i + 1}", "--data-dir", str(root / f"etcd{i + 1}"),
                "--listen-client-urls", self.endpoints[i], "--advertise-client-urls", self.endpoints[i],
                "--listen-peer-urls", f"http://127.0.0.1:{ports[3 + i]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{ports[3 + i]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "bench", "--log-level", "error",
            ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: all(httpx.get(e + "/health").json().get("health") == "true"
                               for e in self.endpoints), 60, "etcd to be healthy")

    @staticmethod
    def _b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    def write(self) -> Request:
        value = base64.b64encode(b"v" * 64).decode()
        return lambda http, i: http.post(self.endpoints[(i // 1_000_000) % 3] + "/v3/kv/put",
                                         json={"key": self._b64(f"k{i % 1000}"), "value": value})

    def read(self, stale: bool) -> Request:
        return lambda http, i: http.post(self.endpoints[(i // 1_000_000) % 3] + "/v3/kv/range",
                                         json={"key": self._b64(f"k{i % 100}"), "serializable": stale})

    def prepare(self) -> None:
        value = base64.b64encode(b"v" * 64).decode()
        with httpx.Client() as http:
            for k in range(100):
                http.post(self.endpoints[0] + "/v3/kv/put", json={"key": self._b64(f"k{k}"), "value": value})

    def close(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(timeout=15)


def measure(system: Any, clients: list[int], duration: float) -> list[Result]:
    system.prepare()
    results = []
    workloads = [("strong write", system.write()), ("linearizable read", system.read(False)),
                 ("stale read", system.read(True))]
    if hasattr(system, "eventual_write"):
        workloads += [("eventual write", system.eventual_write()), ("eventual read", system.eventual_read())]
    for workload, request in workloads:
        for n in clients:
            ops, lat = asyncio.run(closed_loop(n, duration, request))
            r = Result(system.name, workload, n, ops, duration, lat)
            results.append(r)
            print(f"  {system.name:9} {workload:18} clients={n:3}  {r.ops_per_s:9.0f} ops/s  "
                  f"p50 {r.pct(0.5):7.2f} ms  p99 {r.pct(0.99):7.2f} ms", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        root = Path(tmp)
        print("configsvc, 3 nodes:", flush=True)
        system: Any = Configsvc(root)
        try:
            rows += measure(system, clients, args.duration)
        finally:
            system.close()
        etcd = shutil.which("etcd")
        if etcd:
            print("etcd, 3 members:", flush=True)
            system = Etcd(root, etcd)
            try:
                rows += measure(system, clients, args.duration)
            finally:
                system.close()
        else:
            print("etcd not installed (apt-get install etcd-server): no comparison", flush=True)
    by_key = {(r.system, r.workload, r.clients): r for r in rows}
    print("\nratios configsvc / etcd (throughput; latency p50):")
    for r in rows:
        other = by_key.get(("etcd", r.workload, r.clients))
        if r.system == "configsvc" and other:
            print(f"  {r.workload:18} clients={r.clients:3}  throughput x{r.ops_per_s / other.ops_per_s:5.2f}"
                  f"   p50 x{r.pct(0.5) / other.pct(0.5):5.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.row() for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

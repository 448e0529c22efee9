"""configsvc vs etcd on the same machine, with the same closed-loop client.

    make bench                                     # everything below, 3 nodes, 5 s per point
    .venv/bin/python benchmarks/bench_cluster.py [--duration 5] [--clients 1,16,64]
        [--nodes 3[,5]] [--client-procs 2] [--json PATH]
        [--throughput | --memory [--keys 10000,100000,1000000] | --ceiling]

Throughput (``--throughput``, part of the default run). Starts a configsvc
cluster (``configsvc serve`` processes, real fsync) and measures it, stops it,
then does the same with an etcd cluster (Debian ``etcd-server``, its own
loopback ports, data in a temporary directory, real fsync). Both are driven
by the same load generator (``loadgen.py``: aiohttp, closed loop, clients
split over ``--client-procs`` worker processes) with 128-byte values, for
every workload and client count:

- strong write: configsvc ``PUT /v1/kv/bench/{key}``; etcd ``/v3/kv/put``;
- linearizable read: configsvc ``GET`` (lease or quorum round at the leader);
  etcd ``/v3/kv/range`` (ReadIndex);
- stale read: configsvc ``?consistency=stale``; etcd ``"serializable": true``;
- eventual write: configsvc only (``PUT`` in an eventual namespace).

Each point runs twice: with the clients spread over every node (client ``c``
on node ``c mod n``, as etcd's clients spread; the followers come first, so a
single client sits on a follower) and with every client on the leader. Before the systems, the generator is measured against a trivial local
server: its ceiling on this machine at that moment.

Memory (``--memory``, part of the default run with 100,000 keys). For each
``--keys`` count and each system: a fresh cluster, that many 128-byte keys
loaded through transactions (configsvc ``POST /v1/txn/bench``, ``--load-batch``
puts each; etcd ``/v3/kv/txn``, 128 each, its limit), ``--load-parallel`` at a
time; then every member's resident memory (VmRSS) and data size; then one
follower is killed with SIGKILL and started again, timed from the new
process's start until it serves a stale (etcd: serializable) read of the last
key written, and until it reports healthy.

At the end: the ratios, and every target of issue 10 with its measured value
and met / missed. ``--json PATH`` writes all of it.

Everything runs on one machine, generator included: the ratios compare the
two systems under the same conditions; absolute numbers depend on the load
the machine carries (recorded as the load average before and after).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import LoadGenerator, PointResult, trivial_plan, trivial_server
from systems import WORKLOADS, BenchError, Cluster, Configsvc, Etcd, etcd_version, value_of

PLACEMENTS = ("all", "leader")
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Point:
    """One measured point: a system, a workload, where the clients were, how many."""

    system: str
    nodes: int
    workload: str
    placement: str
    result: PointResult
    leader_before: str
    leader_after: str
    #: CPU seconds all of the system's processes used during the point
    server_cpu: float = 0.0

    @property
    def server_cpu_us_per_op(self) -> float:
        return self.server_cpu / max(1, self.result.ops) * 1e6

    @property
    def key(self) -> tuple[str, int, str, str, int]:
        return (self.system, self.nodes, self.workload, self.placement, self.result.clients)

    def row(self) -> dict[str, Any]:
        return {"system": self.system, "nodes": self.nodes, "workload": self.workload,
                "placement": self.placement, **self.result.summary(),
                "leader_before": self.leader_before, "leader_after": self.leader_after,
                "server_cpu_s": round(self.server_cpu, 3),
                "server_cpu_us_per_op": round(self.server_cpu_us_per_op, 1)}


def log(text: str = "") -> None:
    print(text, flush=True)


def describe(result: PointResult) -> str:
    errors = sum(result.errors.values())
    text = (f"{result.ops_per_s:8.0f} ops/s  p50 {result.pct_ms(0.5):7.2f} ms  "
            f"p99 {result.pct_ms(0.99):7.2f} ms")
    if errors:
        text += f"  ERRORS {errors}: " + ", ".join(f"{k} x{v}" for k, v in result.errors.most_common())
    return text


# ------------------------------------------------------------------ lifetime


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so that every ``finally`` runs."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def cluster_of(system: str, root: Path, nodes: int, etcd_binary: str | None,
               keep_logs: Path | None = None) -> Iterator[Cluster]:
    """A running cluster of ``system`` with its data under ``root``; stopped and its
    data removed on exit, whatever happens. When something fails, the members'
    logs are kept (the directory is named); with ``keep_logs``, always, there
    (in a subdirectory named after ``root``)."""
    started = time.monotonic()
    try:
        cluster: Cluster
        if system == "configsvc":
            cluster = Configsvc(root, nodes)
        else:
            assert etcd_binary is not None
            cluster = Etcd(root, etcd_binary, nodes)
        log(f"{system}, {nodes} nodes: up in {time.monotonic() - started:.1f} s "
            f"(leader {cluster.leader()})")
        try:
            yield cluster
        finally:
            cluster.close()
    except Exception:
        if keep_logs is None:
            keep_logs = Path(tempfile.mkdtemp(prefix=f"bench-logs-{system}-"))
        raise
    finally:
        if keep_logs is not None:
            kept = keep_logs / root.name
            kept.mkdir(parents=True, exist_ok=True)
            for path in root.glob("*.log"):
                shutil.copy(path, kept)
            log(f"{system}: the members' logs are kept in {kept}")
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ throughput


def measure_ceiling(gen: LoadGenerator, clients: list[int], duration: float,
                    value: bytes) -> list[dict[str, Any]]:
    """The generator against a trivial server: how fast it can go here, now."""
    log("load generator alone, against a trivial local server:")
    rows = []
    with trivial_server() as base:
        plan = trivial_plan(base, len(value))
        for n in clients:
            result = gen.run(plan, n, duration)
            cpu_us = result.client_cpu / max(1, result.ops) * 1e6
            log(f"  clients={n:3}  {describe(result)}  ({cpu_us:.0f} µs generator CPU per request)")
            rows.append({**result.summary(), "client_cpu_us_per_request": round(cpu_us, 1)})
    return rows


def spread(cluster: Cluster, leader: str, placement: str) -> list[str]:
    """The endpoints clients go to, client ``c`` to the ``c mod len``-th: the leader
    alone, or every member with the followers first (so that one client sits on a
    follower, as most clients of a spread do, in both systems alike)."""
    ordered = [m for m in cluster.members if m.name != leader] + [cluster.member(leader)]
    return [ordered[-1].endpoint] if placement == "leader" else [m.endpoint for m in ordered]


def idle_cpu(cluster: Cluster, seconds: float = 1.0) -> float:
    """The cores the cluster's processes use with no client requests (heartbeats,
    gossip, timers), measured over ``seconds``."""
    before, began = cluster.cpu(), time.monotonic()
    time.sleep(seconds)  # a measurement interval, not a wait for a condition
    return (cluster.cpu() - before) / (time.monotonic() - began)


def measure_system(cluster: Cluster, gen: LoadGenerator, nodes: int, workloads: list[str],
                   clients: list[int], placements: list[str], duration: float,
                   value: bytes) -> tuple[list[Point], float]:
    """Every workload x placement x client count on one running cluster; also
    the cluster's idle CPU (cores)."""
    cluster.preload(value)
    idle = idle_cpu(cluster)
    log(f"  {cluster.name:9} idle: {idle * 100:.0f}% of a core (all members, no requests)")
    points = []
    for workload in workloads:
        for placement in placements:
            for n in clients:
                leader = cluster.leader()
                endpoints = spread(cluster, leader, placement)
                plan = cluster.plan(workload, value, endpoints)
                if plan is None:
                    continue
                cpu_before = cluster.cpu()
                result = gen.run(plan, n, duration)
                for m in cluster.members:
                    m.check_running()
                cpu = cluster.cpu() - cpu_before
                after = cluster.leader()
                point = Point(cluster.name, nodes, workload, placement, result, leader, after, cpu)
                moved = f"  LEADER MOVED {leader} -> {after}" if after != leader else ""
                log(f"  {cluster.name:9} {workload:17} {placement:6} clients={n:3}  {describe(result)}"
                    f"  server CPU {point.server_cpu_us_per_op:5.0f} µs/op{moved}")
                points.append(point)
    return points, idle


def ratio_rows(points: list[Point]) -> list[dict[str, Any]]:
    """configsvc / etcd for every point both measured (throughput, p50, p99)."""
    by_key = {p.key: p for p in points}
    rows = []
    for p in points:
        if p.system != "configsvc":
            continue
        other = by_key.get(("etcd", p.nodes, p.workload, p.placement, p.result.clients))
        if other is None or not other.result.ops or not p.result.ops:
            continue
        a, b = p.result, other.result
        rows.append({"nodes": p.nodes, "workload": p.workload, "placement": p.placement,
                     "clients": a.clients,
                     "throughput": round(a.ops_per_s / b.ops_per_s, 3),
                     "p50": round(a.pct_ms(0.5) / b.pct_ms(0.5), 3),
                     "p99": round(a.pct_ms(0.99) / b.pct_ms(0.99), 3)})
    return rows


def print_table(points: list[Point], ratios: list[dict[str, Any]]) -> None:
    by_key = {p.key: p for p in points}
    ratio_of = {(r["nodes"], r["workload"], r["placement"], r["clients"]): r for r in ratios}
    log("\n| nodes | workload | clients on | clients | configsvc ops/s | p50 ms | p99 ms "
        "| etcd ops/s | p50 ms | p99 ms | ratio ops/s | ratio p50 | ratio p99 |")
    log("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in points:
        if p.system != "configsvc":
            continue
        a = p.result
        other = by_key.get(("etcd", p.nodes, p.workload, p.placement, a.clients))
        r = ratio_of.get((p.nodes, p.workload, p.placement, a.clients))
        etcd = (f"{other.result.ops_per_s:,.0f} | {other.result.pct_ms(0.5):.2f} | "
                f"{other.result.pct_ms(0.99):.2f}") if other else " | | "
        ratio = f"{r['throughput']:.2f}x | {r['p50']:.2f}x | {r['p99']:.2f}x" if r else " | | "
        log(f"| {p.nodes} | {p.workload} | {p.placement} | {a.clients} | {a.ops_per_s:,.0f} | "
            f"{a.pct_ms(0.5):.2f} | {a.pct_ms(0.99):.2f} | {etcd} | {ratio} |")


# ------------------------------------------------------------------ memory and restart


def measure_memory(cluster: Cluster, nodes: int, keys: int, value: bytes, batch: int,
                   parallel: int) -> dict[str, Any]:
    """Load ``keys`` keys, then resident memory, then a follower's restart."""
    started = time.monotonic()
    last, retries = cluster.bulk_load(keys, value, batch, parallel)
    load_s = time.monotonic() - started
    if retries:
        log(f"  {cluster.name:9} {keys:>9,} keys: the load retried " +
            ", ".join(f"{cause} x{n}" for cause, n in retries.most_common()))
    cluster.wait(lambda: all(cluster.serves_key(m, last) for m in cluster.members), 300,
                 f"every member to serve {last}")
    rss = cluster.rss()
    data = cluster.data_mb()  # type: ignore[attr-defined]
    log(f"  {cluster.name:9} {keys:>9,} keys: loaded in {load_s:.1f} s ({keys / load_s:,.0f} keys/s); "
        f"RSS MB {rss}; data MB {data}")
    restart = cluster.restart_follower(last)
    log(f"  {cluster.name:9} {keys:>9,} keys: {restart['member']} killed (-9) and restarted: answers after "
        f"{restart['answers_s']:.2f} s, serves {last} after {restart['serve_s']:.2f} s, healthy after {restart['healthy_s']:.2f} s; "
        f"RSS then {restart['rss_after_restart_mb']} MB")
    return {"system": cluster.name, "nodes": nodes, "keys": keys, "value_bytes": len(value),
            "load_s": round(load_s, 2), "load_retries": dict(retries), "rss_mb": rss, "max_rss_mb": max(rss.values()),
            "data_mb": data, "restart": restart}


# ------------------------------------------------------------------ targets


def _point(points: list[Point], system: str, nodes: int, workload: str, placement: str,
           clients: int) -> PointResult | None:
    for p in points:
        if p.key == (system, nodes, workload, placement, clients) and p.result.ops:
            return p.result
    return None


def targets(points: list[Point], memory: list[dict[str, Any]], nodes: int) -> list[dict[str, Any]]:
    """Issue 10's targets, each with what was measured (at ``nodes`` nodes, clients
    over all nodes) and met / missed; ``None`` where this run did not measure it."""
    out: list[dict[str, Any]] = []

    def add(target: str, measured: float | None, limit: float, at_least: bool, unit: str = "x") -> None:
        met = None if measured is None else (measured >= limit if at_least else measured <= limit)
        out.append({"target": target, "measured": None if measured is None else round(measured, 3),
                    "limit": limit, "unit": unit, "met": met})

    def ratio(workload: str, clients: int, what: str) -> float | None:
        a = _point(points, "configsvc", nodes, workload, "all", clients)
        b = _point(points, "etcd", nodes, workload, "all", clients)
        if a is None or b is None:
            return None
        if what == "throughput":
            return a.ops_per_s / b.ops_per_s
        q = 0.5 if what == "p50" else 0.99
        return a.pct_ms(q) / b.pct_ms(q)

    add("strong writes, 64 clients over all nodes: throughput >= 1.0x etcd",
        ratio("strong write", 64, "throughput"), 1.0, True)
    add("strong writes, 64 clients over all nodes: p99 <= 1.5x etcd's",
        ratio("strong write", 64, "p99"), 1.5, False)
    add("single-client strong write latency (p50) <= 1.5x etcd's",
        ratio("strong write", 1, "p50"), 1.5, False)
    add("linearizable reads, 64 clients: >= 1.5x etcd", ratio("linearizable read", 64, "throughput"),
        1.5, True)
    add("stale reads, 64 clients: >= 1.5x etcd's serializable reads",
        ratio("stale read", 64, "throughput"), 1.5, True)
    eventual = _point(points, "configsvc", nodes, "eventual write", "all", 64)
    strong = _point(points, "configsvc", nodes, "strong write", "all", 64)
    add("eventual writes, 64 clients: >= 3x configsvc's own strong writes",
        eventual.ops_per_s / strong.ops_per_s if eventual and strong else None, 3.0, True)
    at_100k = next((m for m in memory if m["system"] == "configsvc" and m["keys"] == 100_000
                    and m["nodes"] == nodes), None)
    add("memory: <= 150 MB resident per node holding 100,000 keys of 128 bytes",
        at_100k["max_rss_mb"] if at_100k else None, 150.0, False, "MB")
    add("a node restarts and serves within 2 s at 100,000 keys",
        at_100k["restart"]["serve_s"] if at_100k else None, 2.0, False, "s")
    return out


def print_memory(rows: list[dict[str, Any]]) -> None:
    log("\n| system | nodes | keys | load s | RSS MB per member (max) | restart: answers s "
        "| serves last key s | healthy s | RSS after restart MB |")
    log("|---|---|---|---|---|---|---|---|---|")
    for m in rows:
        r = m["restart"]
        log(f"| {m['system']} | {m['nodes']} | {m['keys']:,} | {m['load_s']:.1f} | {m['max_rss_mb']:.0f} "
            f"| {r['answers_s']:.2f} | {r['serve_s']:.2f} | {r['healthy_s']:.2f} "
            f"| {r['rss_after_restart_mb']:.0f} |")


def print_targets(rows: list[dict[str, Any]]) -> None:
    log("\nissue 10 targets:")
    for t in rows:
        if t["measured"] is None:
            log(f"  [not measured] {t['target']}")
            continue
        unit = "x" if t["unit"] == "x" else f" {t['unit']}"
        log(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: measured {t['measured']:.2f}{unit}")


# ------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    mem_kb = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(), "memory_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "configsvc_commit": commit,
            "load_average_before": os.getloadavg()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--throughput", action="store_true", help="only the throughput points")
    mode.add_argument("--memory", action="store_true", help="only memory and restart")
    mode.add_argument("--ceiling", action="store_true", help="only the generator's own ceiling")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--clients", default="1,16,64", help="client counts (default 1,16,64)")
    parser.add_argument("--nodes", default="3", help="cluster sizes, e.g. 3,5 (default 3)")
    parser.add_argument("--placements", default="all,leader",
                        help="clients over all nodes and/or all on the leader (default all,leader)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--systems", default="configsvc,etcd", help="default configsvc,etcd")
    parser.add_argument("--client-procs", type=int, default=2, help="load generator processes (default 2)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    parser.add_argument("--value-bytes", type=int, default=128)
    parser.add_argument("--keys", default="100000", help="memory mode: key counts (default 100000)")
    parser.add_argument("--load-batch", type=int, default=1000,
                        help="memory mode: puts per configsvc transaction (default 1000)")
    parser.add_argument("--load-parallel", type=int, default=8,
                        help="memory mode: transactions in flight (default 8)")
    parser.add_argument("--etcd", default=shutil.which("etcd"), help="etcd binary (default: on PATH)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every result here")
    parser.add_argument("--keep-logs", default=None, metavar="DIR",
                        help="copy every member's log here (default: only when a cluster fails)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    clients = [int(c) for c in args.clients.split(",")]
    node_counts = [int(n) for n in args.nodes.split(",")]
    placements = [p for p in args.placements.split(",") if p]
    chosen = {w.strip() for w in args.workloads.split(",")}
    workloads = [w for w in WORKLOADS if w in chosen]
    unknown = [p for p in placements if p not in PLACEMENTS] + sorted(chosen - set(WORKLOADS))
    if unknown:
        raise SystemExit(f"bench: unknown placement or workload: {unknown}")
    systems = [s for s in args.systems.split(",") if s]
    if "etcd" in systems and not args.etcd:
        log("etcd is not installed (apt-get install etcd-server): configsvc only")
        systems.remove("etcd")
    value = value_of(args.value_bytes)
    keep_logs = Path(args.keep_logs).resolve() if args.keep_logs else None
    report: dict[str, Any] = {"machine": machine(), "args": vars(args),
                              "etcd_version": etcd_version(args.etcd) if args.etcd else None,
                              "ceiling": [], "idle_cpu": [], "points": [], "ratios": [], "memory": [], "targets": []}
    throughput = not (args.memory or args.ceiling)
    memory_mode = not (args.throughput or args.ceiling)
    points: list[Point] = []
    memory: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        if throughput or args.ceiling:
            with LoadGenerator(args.client_procs, args.timeout) as gen:
                report["ceiling"] = measure_ceiling(gen, clients, args.duration, value)
                if throughput:
                    for nodes in node_counts:
                        for system in systems:
                            with cluster_of(system, Path(tmp) / f"{system}-{nodes}", nodes, args.etcd,
                                            keep_logs) as c:
                                found, idle = measure_system(c, gen, nodes, workloads, clients,
                                                             placements, args.duration, value)
                                points += found
                                report["idle_cpu"].append({"system": system, "nodes": nodes,
                                                           "cores": round(idle, 3)})
        if memory_mode:
            for nodes in node_counts:
                for keys in [int(k) for k in args.keys.split(",")]:
                    for system in systems:
                        root = Path(tmp) / f"mem-{system}-{nodes}-{keys}"
                        with cluster_of(system, root, nodes, args.etcd, keep_logs) as c:
                            memory.append(measure_memory(c, nodes, keys, value, args.load_batch,
                                                         args.load_parallel))
    ratios = ratio_rows(points)
    if points:
        print_table(points, ratios)
    if memory:
        print_memory(memory)
    report["points"] = [p.row() for p in points]
    report["ratios"] = ratios
    report["memory"] = memory
    report["targets"] = targets(points, memory, node_counts[0])
    report["machine"]["load_average_after"] = os.getloadavg()
    if not args.ceiling:
        print_targets(report["targets"])
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with terminate_on_sigterm():
            report = run(args)
    except KeyboardInterrupt:
        log("\nbench: interrupted; every process stopped, temporary data removed")
        return 130
    except BenchError as exc:
        log(f"\nbench: {exc}")
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        log(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The two systems under test, as real local clusters: configsvc and etcd.

Both start ``n`` real processes on loopback ports of their own, with their
data in a directory the caller owns (real fsync: neither is told to skip it),
and stop them on ``close`` (SIGTERM, then SIGKILL). Every process runs in its
own session, so a Ctrl-C on the terminal reaches the harness only, which then
stops them in order. Each process's output goes to a log file beside its data;
when a cluster does not come up, the error names that file.

A cluster knows how to render the requests of each workload (``plan``), where
its leader is, how to bulk-load keys, how much memory each member holds and
how long a killed follower takes to serve again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import yaml
from loadgen import Plan

#: the workloads every system is asked to render; eventual writes are configsvc's only
WORKLOADS = ("strong write", "linearizable read", "stale read", "eventual write")
#: how many distinct keys the measured workloads touch (all preloaded before reads)
WORKLOAD_KEYS = 1000


class BenchError(RuntimeError):
    """A cluster did not do what the benchmark needs (start, load, restart)."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free at the time of asking."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.01) -> float:
    """Poll ``condition`` until it holds; return the seconds it took. Connection
    errors count as "not yet". Raises ``BenchError`` naming ``what`` at the deadline."""
    began = time.monotonic()
    deadline = began + timeout
    while True:
        try:
            if condition():
                return time.monotonic() - began
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (VmRSS), in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dir_mb(path: Path) -> float:
    """The bytes of the files under ``path``, in MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def value_of(size: int) -> bytes:
    """A printable value of ``size`` bytes (the same for both systems)."""
    return (b"0123456789abcdef" * (size // 16 + 1))[:size]


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@dataclass
class Member:
    """One process of a cluster: how to (re)start it and where it answers."""

    name: str
    endpoint: str
    argv: list[str]
    log: Path
    #: arguments for the very first start only (bootstrapping a new cluster)
    first_start: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    started: int = 0

    def start(self) -> None:
        argv = [*self.argv, *self.first_start] if self.started == 0 else self.argv
        self.started += 1
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM; SIGKILL if it does not exit within ``grace`` seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def check_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BenchError(f"{self.name} exited ({code}); see {self.log}")


class Cluster:
    """What both systems share: members, startup, shutdown, memory."""

    name = ""
    members: list[Member]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def close(self) -> None:
        for m in self.members:
            if m.proc is not None and m.proc.poll() is None:
                m.proc.send_signal(signal.SIGTERM)
        for m in self.members:
            m.stop()

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """``wait_for`` that fails at once, naming the log, when a member has exited."""

        def check() -> bool:
            for m in self.members:
                m.check_running()
            return condition()

        return wait_for(check, timeout, f"{self.name}: {what}")

    def rss(self) -> dict[str, float]:
        """Each member's resident memory in MB."""
        return {m.name: round(rss_mb(m.proc.pid), 1) for m in self.members if m.proc is not None}

    def cpu(self) -> float:
        """CPU seconds used so far by all members together."""
        return sum(cpu_seconds(m.proc.pid) for m in self.members if m.proc is not None)

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    # the interface each system fills in
    def leader(self) -> str:
        raise NotImplementedError

    def plan(self, workload: str, value: bytes, endpoints: list[str]) -> Plan | None:
        raise NotImplementedError

    def preload(self, value: bytes) -> None:
        raise NotImplementedError

    def bulk_load(self, keys: int, value: bytes, batch: int, parallel: int) -> tuple[str, Counter[str]]:
        """Write ``keys`` keys ``mem/00000000``…; return the last key and the
        retries the load needed, by cause."""
        raise NotImplementedError

    def serves_key(self, member: Member, key: str) -> bool:
        raise NotImplementedError

    def healthy(self, member: Member) -> bool:
        raise NotImplementedError

    def answers(self, member: Member) -> bool:
        """The member answers HTTP at all (any status)."""
        raise NotImplementedError

    def restart_follower(self, last_key: str, timeout: float = 120.0) -> dict[str, Any]:
        """kill -9 one follower and start it again; time, from the new process's
        start, until it answers HTTP at all, until it serves a stale read of
        ``last_key``, and until it reports healthy."""
        leader = self.leader()
        victim = next(m for m in self.members if m.name != leader)
        victim.kill()
        started = time.monotonic()
        victim.start()
        self.wait(lambda: self.answers(victim), timeout, f"restarted {victim.name} to answer")
        answers_s = time.monotonic() - started
        self.wait(lambda: self.serves_key(victim, last_key), timeout,
                  f"restarted {victim.name} to serve {last_key}")
        serve_s = time.monotonic() - started
        self.wait(lambda: self.healthy(victim), timeout, f"restarted {victim.name} to be healthy")
        healthy_s = time.monotonic() - started
        assert victim.proc is not None
        return {
            "member": victim.name,
            "answers_s": round(answers_s, 3),
            "serve_s": round(serve_s, 3),
            "healthy_s": round(healthy_s, 3),
            "rss_after_restart_mb": round(rss_mb(victim.proc.pid), 1),
        }


#: answers a bulk load retries: "not done, safe to retry" and "outcome unknown"
#: (the batches only put fixed values, so applying one twice changes nothing)
RETRY_STATUSES = (503, 504)


async def _bulk(requests: list[tuple[str, Any]], parallel: int, ok: Callable[[int, Any], bool],
                deadline_s: float = 120.0) -> Counter[str]:
    """POST each ``(url, json)``, ``parallel`` at a time. A 503/504, a timeout or a
    lost connection is retried (after 0.1 s) until ``deadline_s`` per request;
    any other failure raises. Returns the retries by cause."""
    queue = iter(requests)
    retries: Counter[str] = Counter()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(url: str, body: Any) -> str | None:
            """None when done; else the cause of a retryable failure."""
            try:
                async with session.post(url, json=body) as response:
                    answer = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return type(exc).__name__
            data = json.loads(answer) if answer else None
            if ok(response.status, data):
                return None
            if response.status in RETRY_STATUSES:
                code = data.get("error", {}).get("code", "") if isinstance(data, dict) else ""
                return f"http {response.status} {code}".strip()
            raise BenchError(f"bulk load: {url} answered {response.status}: {answer[:300]!r}")

        async def worker() -> None:
            for url, body in queue:
                give_up = time.monotonic() + deadline_s
                while (cause := await post(url, body)) is not None:
                    retries[cause] += 1
                    if time.monotonic() >= give_up:
                        raise BenchError(f"bulk load: {url} still failing after {deadline_s:.0f} s: {cause}")
                    await asyncio.sleep(0.1)  # back off before retrying

        await asyncio.gather(*(worker() for _ in range(parallel)))
    return retries


# ------------------------------------------------------------------ configsvc


class Configsvc(Cluster):
    """``configsvc serve`` processes from one generated cluster.yaml: a strong
    namespace ``bench`` and an eventual namespace ``ebench``."""

    name = "configsvc"

    def __init__(self, root: Path, nodes: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * nodes)
        config = {
            "cluster_id": "bench",
            "data_root": str(root / "data"),
            "nodes": [{"id": f"n{i + 1}", "host": "127.0.0.1", "api_port": ports[i],
                       "peer_port": ports[nodes + i]} for i in range(nodes)],
            "namespaces": [{"name": "bench", "consistency": "strong"},
                           {"name": "ebench", "consistency": "eventual"}],
            "security": {"peer_secret": secrets.token_hex(32)},
        }
        path = root / "cluster.yaml"
        path.write_text(yaml.safe_dump(config))
        self.members = []
        for i in range(nodes):
            name = f"n{i + 1}"
            argv = [sys.executable, "-m", "configsvc.cli", "serve", "--config", str(path), "--node", name]
            self.members.append(Member(name, f"http://127.0.0.1:{ports[i]}", argv, root / f"{name}.log",
                                       first_start=("--initial-cluster-state", "new")))
        try:
            for m in self.members:
                m.start()
            self.wait(lambda: all(self.healthy(m) for m in self.members), 90, "every node healthy")
            self.wait(self._namespaces_ready, 60, "the bench namespaces")
        except BaseException:
            self.close()
            raise

    def _health(self, member: Member) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(member.endpoint + "/v1/cluster/health", timeout=2).json()
        return data

    def healthy(self, member: Member) -> bool:
        return bool(self._health(member)["status"] == "healthy")

    def answers(self, member: Member) -> bool:
        return httpx.get(member.endpoint + "/v1/cluster/health", timeout=2).status_code > 0

    def _namespaces_ready(self) -> bool:
        for ns in ("bench", "ebench"):
            response = httpx.put(f"{self.endpoints[0]}/v1/kv/{ns}/ready", content=b"1", timeout=5)
            if response.status_code != 200:
                return False
        return True

    def leader(self) -> str:
        """The leader's node id, as the first node reports it."""
        found: list[str] = []

        def known() -> bool:
            found[:] = [self._health(self.members[0])["strong"]["leader"] or ""]
            return bool(found[0])

        self.wait(known, 30, "a leader")
        return found[0]

    def plan(self, workload: str, value: bytes, endpoints: list[str]) -> Plan:
        keys = [f"k{k:04d}" for k in range(WORKLOAD_KEYS)]
        if workload == "strong write":
            return Plan("PUT", tuple(tuple((f"{e}/v1/kv/bench/{k}", value) for k in keys) for e in endpoints))
        if workload == "eventual write":
            return Plan("PUT", tuple(tuple((f"{e}/v1/kv/ebench/{k}", value) for k in keys) for e in endpoints))
        query = "?consistency=stale" if workload == "stale read" else ""
        return Plan("GET", tuple(tuple((f"{e}/v1/kv/bench/{k}{query}", None) for k in keys) for e in endpoints))

    def preload(self, value: bytes) -> None:
        """Write every workload key once in both namespaces, so reads find them
        (eventual transactions hold at most 128 operations)."""
        ops = [{"op": "put", "key": f"k{k:04d}", "value": _b64(value)} for k in range(WORKLOAD_KEYS)]
        base = self.endpoints[0]
        requests = [(f"{base}/v1/txn/bench", {"success": ops[i:i + 128]}) for i in range(0, len(ops), 128)]
        requests += [(f"{base}/v1/txn/ebench", {"ops": ops[i:i + 128]}) for i in range(0, len(ops), 128)]
        asyncio.run(_bulk(requests, 1, lambda status, _: status == 200))

    def bulk_load(self, keys: int, value: bytes, batch: int, parallel: int) -> tuple[str, Counter[str]]:
        """Strong transactions of ``batch`` puts, ``parallel`` at a time, to the leader."""
        leader = self.member(self.leader()).endpoint
        encoded = _b64(value)
        requests = []
        for first in range(0, keys, batch):
            ops = [{"op": "put", "key": f"mem/{k:08d}", "value": encoded}
                   for k in range(first, min(keys, first + batch))]
            requests.append((f"{leader}/v1/txn/bench", {"success": ops}))
        retries = asyncio.run(_bulk(requests, parallel, lambda status, _: status == 200))
        return f"mem/{keys - 1:08d}", retries

    def serves_key(self, member: Member, key: str) -> bool:
        response = httpx.get(f"{member.endpoint}/v1/kv/bench/{key}", params={"consistency": "stale"},
                             timeout=2)
        return response.status_code == 200

    def data_mb(self) -> dict[str, float]:
        return {m.name: round(dir_mb(Path(m.log).parent / "data" / m.name), 1) for m in self.members}


# ------------------------------------------------------------------ etcd


class Etcd(Cluster):
    """A Debian ``etcd`` (3.4) cluster; clients use its v3 JSON gateway."""

    name = "etcd"

    def __init__(self, root: Path, binary: str, nodes: int = 3) -> None:
        root.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * nodes)
        peers = [f"http://127.0.0.1:{p}" for p in ports[nodes:]]
        cluster = ",".join(f"e{i + 1}={peers[i]}" for i in range(nodes))
        self.root = root
        self.members = []
        for i in range(nodes):
            name, endpoint = f"e{i + 1}", f"http://127.0.0.1:{ports[i]}"
            argv = [binary, "--name", name, "--data-dir", str(root / name),
                    "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
                    "--listen-peer-urls", peers[i], "--initial-advertise-peer-urls", peers[i],
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "bench", "--logger", "zap", "--log-level", "warn"]
            self.members.append(Member(name, endpoint, argv, root / f"{name}.log"))
        try:
            for m in self.members:
                m.start()
            self.wait(lambda: all(self.healthy(m) for m in self.members), 90, "every member healthy")
        except BaseException:
            self.close()
            raise

    def healthy(self, member: Member) -> bool:
        return bool(httpx.get(member.endpoint + "/health", timeout=2).json().get("health") == "true")

    def answers(self, member: Member) -> bool:
        return httpx.get(member.endpoint + "/health", timeout=2).status_code > 0

    def _status(self, member: Member) -> dict[str, Any]:
        data: dict[str, Any] = httpx.post(member.endpoint + "/v3/maintenance/status", json={},
                                          timeout=2).json()
        return data

    def leader(self) -> str:
        """The leader's member name (a status names the leader by id, and its header
        names the answering member's own id)."""
        found: list[str] = []

        def known() -> bool:
            ids = {}
            for m in self.members:
                ids[self._status(m)["header"]["member_id"]] = m.name
            found[:] = [ids.get(self._status(self.members[0]).get("leader", ""), "")]
            return bool(found[0])

        self.wait(known, 30, "a leader")
        return found[0]

    def plan(self, workload: str, value: bytes, endpoints: list[str]) -> Plan | None:
        if workload == "eventual write":
            return None
        keys = [_b64(f"k{k:04d}") for k in range(WORKLOAD_KEYS)]
        headers = (("Content-Type", "application/json"),)
        if workload == "strong write":
            encoded = _b64(value)
            table = tuple(tuple((f"{e}/v3/kv/put", json.dumps({"key": k, "value": encoded}).encode())
                                for k in keys) for e in endpoints)
        else:
            serializable = workload == "stale read"
            table = tuple(tuple((f"{e}/v3/kv/range",
                                 json.dumps({"key": k, "serializable": serializable}).encode())
                                for k in keys) for e in endpoints)
        return Plan("POST", table, headers)

    def preload(self, value: bytes) -> None:
        self._put_batches([f"k{k:04d}" for k in range(WORKLOAD_KEYS)], value, 128, 4)

    def _put_batches(self, keys: list[str], value: bytes, batch: int, parallel: int) -> Counter[str]:
        """Put ``keys`` through transactions of at most ``batch`` puts (etcd's
        ``--max-txn-ops`` defaults to 128)."""
        encoded = _b64(value)
        requests = []
        for first in range(0, len(keys), batch):
            ops = [{"request_put": {"key": _b64(k), "value": encoded}} for k in keys[first:first + batch]]
            endpoint = self.endpoints[(first // batch) % len(self.endpoints)]
            requests.append((f"{endpoint}/v3/kv/txn", {"success": ops}))
        return asyncio.run(_bulk(requests, parallel,
                                 lambda status, data: status == 200 and "error" not in data))

    def bulk_load(self, keys: int, value: bytes, batch: int, parallel: int) -> tuple[str, Counter[str]]:
        del batch  # etcd caps a transaction at 128 operations
        retries = self._put_batches([f"mem/{k:08d}" for k in range(keys)], value, 128, parallel)
        return f"mem/{keys - 1:08d}", retries

    def serves_key(self, member: Member, key: str) -> bool:
        response = httpx.post(member.endpoint + "/v3/kv/range",
                              json={"key": _b64(key), "serializable": True}, timeout=2)
        return response.status_code == 200 and bool(response.json().get("kvs"))

    def data_mb(self) -> dict[str, float]:
        return {m.name: round(dir_mb(self.root / m.name), 1) for m in self.members}


def etcd_version(binary: str) -> str:
    """``etcd --version``'s first line's version, e.g. ``3.4.23``."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].split()[-1]
    return "unknown"

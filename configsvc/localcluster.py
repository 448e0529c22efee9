"""A local cluster of real node processes on loopback: ``cluster up``, the demo, tests.

Node i serves its API on ``api_port + i - 1`` (ports picked free when
``api_port`` is 0), the Consul-compatible API on ``api_port + 200 + i - 1``
(``consul=False``: none), and talks to peers on another port. Every wait is
for a condition with a deadline.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from configsvc.client import tls_verify
from configsvc.security import generate_secret_file


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on loopback now, chosen *outside* the kernel's
    ephemeral range: a port the kernel handed out for ``bind(0)`` and that was
    released can be taken as the source port of any outgoing connection before
    a node binds it (seen as ``address already in use`` under load)."""
    low, high = ephemeral_range()
    candidates = [p for p in range(10_000, 65_536) if not low <= p <= high]
    rng = random.Random()  # fresh per call: parallel test workers draw apart
    ports: list[int] = []
    socks: list[socket.socket] = []
    try:
        while len(ports) < n:
            port = rng.choice(candidates)
            if port in ports:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # the condition may fail while the cluster settles
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last})")


class LocalCluster:
    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        api_port: int = 0,
        namespaces: list[dict[str, str]] | None = None,
        admin_token: str | None = None,
        timing: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
        consul: bool = True,
        consul_config: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
        launch: dict[str, list[str]] | None = None,
        acl: dict[str, Any] | None = None,
        insecure_peers: bool = False,
        tls: dict[str, Any] | None = None,
    ) -> None:
        """Peers prove a secret generated into ``root/peer-secret`` (kept across
        restarts), unless ``insecure_peers`` or ``tls`` has ``peers`` (mutual TLS
        authenticates them); ``tls`` is the configuration's ``tls:`` section
        (``configsvc.lab.certs`` makes the files), its API CA what this object's
        own HTTP client trusts."""
        #: extra environment of every node process
        self.env = env or {}
        self.root = root
        #: the generated peer secret (None with ``insecure_peers``)
        self.secret_file: Path | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.ids = [f"n{i + 1}" for i in range(nodes)]
        #: node -> the address it listens on (loopback unless given, e.g. a
        #: network namespace's); node -> the command prefix that starts it there
        self.hosts = {nid: (hosts or {}).get(nid, "127.0.0.1") for nid in self.ids}
        self.launch = {nid: list((launch or {}).get(nid, [])) for nid in self.ids}
        if api_port:
            api = [api_port + i for i in range(nodes)]
            peer = [api_port + 100 + i for i in range(nodes)]
            consul_ports = [api_port + 200 + i for i in range(nodes)]
        else:
            ports = free_ports(3 * nodes)
            api, peer, consul_ports = ports[:nodes], ports[nodes:2 * nodes], ports[2 * nodes:]
        self.api = dict(zip(self.ids, api, strict=True))
        #: node -> its Consul-compatible API port (empty with ``consul=False``)
        self.consul_ports = dict(zip(self.ids, consul_ports, strict=True)) if consul else {}
        self.namespaces = namespaces or []
        config: dict[str, Any] = {
            "cluster_id": "local",
            "data_root": str(root / "data"),
            "nodes": [
                {"id": nid, "host": self.hosts[nid], "api_port": api[i], "peer_port": peer[i]}
                | ({"consul_port": self.consul_ports[nid]} if consul else {})
                for i, nid in enumerate(self.ids)
            ],
            "timing": timing or {},
            "namespaces": self.namespaces,
            "security": {"admin_token": admin_token,
                         **self._peer_security(insecure_peers, bool((tls or {}).get("peers")))},
            "tls": tls or {},
            "consul": consul_config or {},
            **({"acl": acl} if acl else {}),  # ACLs (docs/acl.md): off unless given
        }
        self.config_path = root / "cluster.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        #: the first start of every node of an all-empty cluster bootstraps it
        #: ("new"); every other start (restarts, a wiped node) is "existing"
        data_root = root / "data"
        self._bootstrap = set(self.ids) if not any(
            (data_root / nid / "cluster-member").exists() for nid in self.ids
        ) else set()
        api_tls = (tls or {}).get("api") or {}
        #: "https" when the API speaks TLS; the client's CA file then, if any
        self.scheme = "https" if api_tls else "http"
        self.ca_file: str | None = api_tls.get("ca_file")
        self.http = httpx.Client(timeout=5.0, verify=tls_verify(self.ca_file))

    def _peer_security(self, insecure: bool, peer_tls: bool) -> dict[str, Any]:
        if insecure or peer_tls:
            return {"insecure_peers": True} if insecure else {}
        self.secret_file = self.root / "peer-secret"
        if not self.secret_file.exists():
            generate_secret_file(self.secret_file)
        return {"peer_secret_file": str(self.secret_file)}

    def url(self, nid: str) -> str:
        return f"{self.scheme}://{self.hosts[nid]}:{self.api[nid]}"

    @property
    def endpoints(self) -> list[str]:
        return [self.url(n) for n in self.ids]

    def consul_url(self, nid: str) -> str:
        return f"{self.scheme}://{self.hosts[nid]}:{self.consul_ports[nid]}"

    def start(self, nid: str) -> None:
        state = "new" if nid in self._bootstrap else "existing"
        self._bootstrap.discard(nid)
        with open(self.root / f"{nid}.log", "ab") as log:
            self.procs[nid] = subprocess.Popen(
                [*self.launch[nid], sys.executable, "-m", "configsvc.cli", "serve", "--config", str(self.config_path),
                 "--node", nid, "--initial-cluster-state", state],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )

    def add_node(self, nid: str) -> tuple[str, str]:
        """A node for a membership change: written to the cluster file with
        ``join: true`` (running processes learn its addresses from the log),
        started once as a brand-new member. Returns its (peer, API) address."""
        api, peer = free_ports(2)
        config = yaml.safe_load(self.config_path.read_text())
        config["nodes"].append({"id": nid, "host": "127.0.0.1", "api_port": api,
                                "peer_port": peer, "join": True})
        self.config_path.write_text(yaml.safe_dump(config))
        self.ids.append(nid)
        self.hosts[nid], self.launch[nid], self.api[nid] = "127.0.0.1", [], api
        self._bootstrap.add(nid)
        self.start(nid)
        return f"127.0.0.1:{peer}", f"127.0.0.1:{api}"

    def start_all(self, timeout: float = 60.0) -> None:
        for nid in self.ids:
            self.start(nid)
        wait_for(self.leader, timeout, "a leader and the configured namespaces")
        wait_for(lambda: all(self.health(n)["status"] == "healthy" for n in self.ids), timeout, "healthy")

    def health(self, nid: str) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get(self.url(nid) + "/v1/cluster/health", timeout=1.0).json()
        return data

    def leader(self, among: list[str] | None = None) -> str | None:
        """The leader every answering node in ``among`` agrees on, once the namespaces exist."""
        seen = {self.health(nid)["strong"]["leader"] for nid in among or [n for n in self.ids if self.alive(n)]}
        if len(seen) != 1 or None in seen:
            return None
        leader: str = seen.pop()
        listed = self.http.get(self.url(leader) + "/v1/namespaces", timeout=1.0).json()["namespaces"]
        wanted = {ns["name"] for ns in self.namespaces}
        return leader if wanted <= {ns["name"] for ns in listed} else None

    def alive(self, nid: str) -> bool:
        p = self.procs.get(nid)
        return p is not None and p.poll() is None

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        self.procs[nid].send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.procs[nid].wait(timeout=10)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.http.close()

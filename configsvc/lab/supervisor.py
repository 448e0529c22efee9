"""A local cluster you can break: node processes, their exits, and the network between them.

``Supervisor`` owns a ``LocalCluster`` (real node processes on loopback) and
the cuts between its nodes (``configsvc.lab.cuts``). It is what ``cluster
up``, the lab and the dashboard's buttons drive. Invariants:

- one node's death never stops another: the supervisor only reports it
  (``poll_exits``: which node, exit code or signal), once;
- a restarted node gets its side of the current cut back before anything
  else talks to it through the lab (its transport starts uncut);
- the admin token is the cluster's own, generated per supervisor unless
  given, so the fault API is never open.
"""

from __future__ import annotations

import secrets
import signal
from pathlib import Path
from typing import Any

from configsvc.client import tls_verify
from configsvc.lab.cuts import Cuts, Link, TransportCuts, describe, links_of, one_way_links
from configsvc.lab.netns import NetnsCuts, NetnsNetwork
from configsvc.localcluster import LocalCluster, wait_for

__all__ = ["Supervisor", "exit_reason"]

SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT,
           "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT}


def exit_reason(code: int) -> str:
    """``Popen.returncode`` in words: "exit code 1", "killed by SIGKILL"."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Supervisor:
    def __init__(
        self,
        root: Path,
        nodes: int = 3,
        api_port: int = 0,
        namespaces: list[dict[str, str]] | None = None,
        timing: dict[str, float] | None = None,
        env: dict[str, str] | None = None,
        admin_token: str | None = None,
        netns: bool = False,
        acl: dict[str, Any] | None = None,
        tls: dict[str, Any] | None = None,
    ) -> None:
        """``netns``: every node in its own network namespace, cuts as nftables
        rules (``configsvc.lab.netns``; root only, raises ``NetnsError`` saying
        why not); else loopback, cuts in the nodes' transports. ``tls``: the
        configuration's ``tls:`` section (``LocalCluster``)."""
        self.admin_token = admin_token or secrets.token_hex(16)
        self.env = dict(env or {})
        ids = [f"n{i + 1}" for i in range(nodes)]
        self.network = NetnsNetwork(ids) if netns else None
        try:
            self.cluster = LocalCluster(
                root, nodes, api_port=api_port, namespaces=namespaces, admin_token=self.admin_token,
                timing=timing, env=self.env, acl=acl, tls=tls,
                hosts=self.network.hosts if self.network else None,
                launch=self.network.launch() if self.network else None)
        except Exception:
            if self.network is not None:
                self.network.close()
            raise
        self.ids = self.cluster.ids
        self.cuts: Cuts = (
            NetnsCuts(self.network) if self.network else
            TransportCuts({n: self.cluster.url(n) for n in self.ids}, self.admin_token,
                          verify=tls_verify(self.cluster.ca_file)))
        #: exits already reported by ``poll_exits``
        self._reported: set[str] = set()
        #: nodes stopped on purpose (kill), reported as such
        self._killed: dict[str, str] = {}

    # ------------------------------------------------------------------ processes

    def set_env(self, name: str, value: str) -> None:
        """An environment variable for node processes started from now on."""
        self.env[name] = value
        self.cluster.env[name] = value

    def start_all(self, timeout: float = 60.0) -> None:
        self.cluster.start_all(timeout)

    def stop_all(self) -> None:
        self.cuts.close()
        self.cluster.stop_all()
        if self.network is not None:
            self.network.close()

    def kill(self, nid: str, sig: int = signal.SIGKILL) -> None:
        self._check(nid)
        if not self.cluster.alive(nid):
            raise LookupError(f"{nid} is not running")
        self._killed[nid] = signal.Signals(sig).name
        self.cluster.kill(nid, sig)

    def restart(self, nid: str, timeout: float = 30.0) -> None:
        """Start ``nid`` again (stopping it first if it runs) and wait until it answers."""
        self._check(nid)
        if self.cluster.alive(nid):
            self.cluster.kill(nid, signal.SIGTERM)
        self._reported.discard(nid)
        self._killed.pop(nid, None)
        self.cluster.start(nid)
        wait_for(lambda: self.cluster.alive(nid) and self.cluster.health(nid), timeout,
                 f"{nid} to answer after its restart")
        self.cuts.reapply(nid)

    def poll_exits(self) -> list[str]:
        """One line per node that exited since the last call."""
        lines = []
        for nid in self.ids:
            proc = self.cluster.procs.get(nid)
            if proc is None or nid in self._reported or proc.poll() is None:
                continue
            self._reported.add(nid)
            how = exit_reason(proc.returncode)
            why = " (cluster kill)" if nid in self._killed else ""
            lines.append(f"{nid} exited: {how}{why}; log: {self.cluster.root / (nid + '.log')}")
        return lines

    # ------------------------------------------------------------------ network

    def partition(self, *groups: list[str]) -> None:
        self.cuts.apply(links_of(self.ids, groups))

    def isolate(self, nid: str) -> None:
        self._check(nid)
        self.partition([n for n in self.ids if n != nid], [nid])

    def one_way(self, src: list[str], dst: list[str]) -> None:
        """Drop what ``src`` sends to ``dst`` (added to what is cut already)."""
        self.cuts.apply(self.cuts.links() | one_way_links(self.ids, src, dst))

    def heal(self) -> None:
        self.cuts.apply(set())

    def links(self) -> set[Link]:
        return self.cuts.links()

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        nodes: dict[str, Any] = {}
        for nid in self.ids:
            proc = self.cluster.procs.get(nid)
            up = self.cluster.alive(nid)
            role = None
            if up:
                try:
                    strong = self.cluster.health(nid)["strong"]
                    role = "leader" if strong.get("leader") == nid else "follower"
                except Exception:  # starting, stopped, or not answering: no role to show
                    role = "unreachable"
            nodes[nid] = {
                "up": up,
                "pid": proc.pid if proc is not None and up else None,
                "exit": None if up or proc is None else exit_reason(proc.returncode),
                "api": self.cluster.url(nid),
                "consul": self.cluster.consul_url(nid) if self.cluster.consul_ports else None,
                "role": role,
            }
        links = self.links()
        return {"nodes": nodes, "cut": sorted([a, b] for a, b in links),
                "cut_text": describe(self.ids, links)}

    def _check(self, nid: str) -> None:
        if nid not in self.ids:
            raise LookupError(f"no node {nid!r} (nodes: {', '.join(self.ids)})")

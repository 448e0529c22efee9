"""Real partitions: each node in its own Linux network namespace, cuts as nftables rules.

Layout of one lab network (``NetnsNetwork``), all names carrying a short
random tag so two labs on one machine never touch each other's:

    root namespace:  bridge  cb<tag>   10.<a>.<b>.1/24   (the supervisor and the lab's clients)
    node i:          netns   cfg<tag>n<i>, eth0 10.<a>.<b>.(10+i)/24, veth to the bridge

The nodes listen on their namespace's address; clients in the root namespace
reach every node over the bridge, and client traffic is never cut.
``NetnsCuts`` enforces a cut link ``(a, b)`` with nftables rules in both
namespaces (``a`` drops what it sends to ``b``, ``b`` drops what arrives from
``a``): packets vanish, connections hang until their timeouts, exactly as in
a real outage — a refused connection is not a partition.

Everything here needs root (``CAP_NET_ADMIN``), ``ip`` (iproute2) and ``nft``
(nftables); ``require`` says which is missing in one line. ``close`` removes
every namespace, veth and the bridge (namespaces take their veths with them).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence

from configsvc.lab.cuts import Link

__all__ = ["NetnsCuts", "NetnsError", "NetnsNetwork", "require"]

TABLE = "configsvc_lab"


class NetnsError(RuntimeError):
    """The machine cannot host a namespaced lab (not root, tools missing, a command failed)."""


def require() -> None:
    """Raise ``NetnsError`` with one clear line if real partitions are not possible here."""
    if os.geteuid() != 0:
        raise NetnsError("--netns needs root: network namespaces and nftables rules need CAP_NET_ADMIN "
                         "(run as root, or leave out --netns to cut in the transport)")
    missing = [tool for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")) if shutil.which(tool) is None]
    if missing:
        raise NetnsError(f"--netns needs {' and '.join(missing)} (Debian packages: "
                         f"{' '.join('iproute2' if t == 'ip' else 'nftables' for t in missing)})")


def _run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")


class NetnsNetwork:
    def __init__(self, nodes: Sequence[str]) -> None:
        require()
        self.tag = secrets.token_hex(2)
        octet = int(self.tag, 16)
        self.prefix = f"10.{200 + octet % 50}.{octet % 250}"
        self.bridge = f"cb{self.tag}"
        #: the root namespace's address on the bridge (reachable from every node)
        self.gateway = f"{self.prefix}.1"
        self.nodes = list(nodes)
        self.ns = {nid: f"cfg{self.tag}{nid}" for nid in self.nodes}
        self.hosts = {nid: f"{self.prefix}.{10 + i}" for i, nid in enumerate(self.nodes)}
        self._made: list[str] = []
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._made.append("bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, nid in enumerate(self.nodes):
            ns, outer = self.ns[nid], f"cv{self.tag}{i}"
            _run("ip", "netns", "add", ns)
            self._made.append(ns)
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _run("ip", "link", "set", outer, "master", self.bridge)
            _run("ip", "link", "set", outer, "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.hosts[nid]}/24", "dev", "eth0")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            _run("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=_ruleset(set(), nid, self.hosts))

    def launch(self) -> dict[str, list[str]]:
        """The command prefix that runs a process inside each node's namespace."""
        return {nid: ["ip", "netns", "exec", self.ns[nid]] for nid in self.nodes}

    def close(self) -> None:
        for name in reversed(self._made):
            if name == "bridge":
                subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
            else:
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self._made.clear()


def _ruleset(links: set[Link], nid: str, hosts: dict[str, str]) -> str:
    """The whole nftables table of ``nid``'s namespace for the cut ``links``."""
    out = sorted(hosts[b] for a, b in links if a == nid)
    inc = sorted(hosts[a] for a, b in links if b == nid)
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
             "  chain output { type filter hook output priority 0; policy accept;"]
    if out:
        lines.append(f"    ip daddr {{ {', '.join(out)} }} drop")
    lines += ["  }", "  chain input { type filter hook input priority 0; policy accept;"]
    if inc:
        lines.append(f"    ip saddr {{ {', '.join(inc)} }} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


class NetnsCuts:
    """Cuts as nftables rules in the nodes' namespaces (``configsvc.lab.cuts.Cuts``)."""

    def __init__(self, network: NetnsNetwork) -> None:
        self.network = network
        self.nodes = network.nodes
        self._links: set[Link] = set()

    def apply(self, links: set[Link]) -> None:
        self._links = set(links)
        for nid in self.nodes:
            _run("ip", "netns", "exec", self.network.ns[nid], "nft", "-f", "-",
                 stdin=_ruleset(self._links, nid, self.network.hosts))

    def reapply(self, nid: str) -> None:
        """Rules live in the namespace, not the process: a restart keeps them."""

    def links(self) -> set[Link]:
        return set(self._links)

    def close(self) -> None:
        pass

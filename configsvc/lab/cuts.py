"""Network cuts between the nodes of a local cluster: what is cut, and two ways to cut it.

A cut is a set of *directed* links ``(src, dst)``: packets from ``src`` to
``dst`` are silently dropped (connections hang, as in a real outage; a
refused connection is not a partition). The shapes a lab uses:

- ``partition(*groups)``: two nodes can talk only if some group holds both.
  Groups may overlap: ``partition(["n1", "n2", "n3"], ["n3", "n4", "n5"])``
  is a *bridge* (n3 sees both sides, n1 and n5 do not see each other). A node
  in no group is cut from everyone.
- ``isolate(node)``: the node is cut from every other node.
- ``one_way(src, dst)``: packets from the ``src`` nodes to the ``dst`` nodes
  are dropped; the other direction still flows.
- ``heal()``: nothing is cut.

``links_of`` computes the directed links of a shape (pure; the shapes
themselves are ``configsvc.lab.supervisor.Supervisor``'s methods). Two ways
to enforce them (``Cuts``):

- ``TransportCuts``: each node's peer transport drops the traffic (the admin
  fault API, ``/v1/admin/faults``): portable, no privileges. Every peer
  message goes through the transport, forwarded client requests included.
- ``configsvc.lab.netns.NetnsCuts``: nftables rules in per-node network
  namespaces (real packets dropped), root only.

Client traffic is never cut: a client pinned to a node keeps reaching it, as
a client on the same side of a real partition does.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import httpx

__all__ = ["Cuts", "Link", "TransportCuts", "describe", "links_of", "one_way_links"]

Link = tuple[str, str]


def links_of(nodes: Sequence[str], groups: Iterable[Iterable[str]]) -> set[Link]:
    """The directed links a partition into ``groups`` cuts."""
    sides = [set(g) for g in groups]
    unknown = set().union(*sides) - set(nodes) if sides else set()
    if unknown:
        raise ValueError(f"unknown node(s): {', '.join(sorted(unknown))}")
    return {(a, b) for a in nodes for b in nodes
            if a != b and not any(a in g and b in g for g in sides)}


def one_way_links(nodes: Sequence[str], src: Iterable[str], dst: Iterable[str]) -> set[Link]:
    s, d = set(src), set(dst)
    unknown = (s | d) - set(nodes)
    if unknown:
        raise ValueError(f"unknown node(s): {', '.join(sorted(unknown))}")
    return {(a, b) for a in s for b in d if a != b}


def describe(nodes: Sequence[str], links: set[Link]) -> str:
    """A short human description: "none", or "n1 -/-> n2, n3; n2 -/-> n1"."""
    if not links:
        return "none"
    parts = []
    for a in nodes:
        cut = [b for b in nodes if (a, b) in links]
        if cut:
            parts.append(f"{a} -/-> {', '.join(cut)}")
    return "; ".join(parts)


class Cuts(Protocol):
    @property
    def nodes(self) -> Sequence[str]: ...

    def apply(self, links: set[Link]) -> None:
        """Make exactly ``links`` cut (replacing whatever was cut before)."""

    def links(self) -> set[Link]:
        """What is cut now."""

    def reapply(self, node: str) -> None:
        """Put ``node``'s side of the current cut back after it restarted."""

    def close(self) -> None: ...


class TransportCuts:
    """Cuts enforced by each node's peer transport through its admin fault API.

    ``apis`` maps a node to its API base URL; ``token`` is the cluster's admin
    token. A node that does not answer (down) is skipped: when it comes back
    its transport starts uncut, so ``apply`` is re-run on a restart
    (``reapply``)."""

    def __init__(self, apis: Mapping[str, str], token: str, timeout: float = 2.0,
                 verify: ssl.SSLContext | bool = True) -> None:
        """``verify``: how to check the nodes' HTTPS certificates (``client.tls_verify``)."""
        self.nodes = list(apis)
        self.apis = dict(apis)
        self._http = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {token}"},
                                  verify=verify)
        self._links: set[Link] = set()

    def apply(self, links: set[Link]) -> None:
        self._links = set(links)
        for node in self.nodes:
            self._apply_on(node)

    def reapply(self, node: str) -> None:
        """Put ``node``'s side of the current cut back (after a restart)."""
        self._apply_on(node)

    def _apply_on(self, node: str) -> None:
        url = self.apis[node] + "/v1/admin/faults"
        try:
            self._http.delete(url).raise_for_status()
            for peer in self.nodes:
                out, inc = (node, peer) in self._links, (peer, node) in self._links
                if out or inc:
                    self._http.put(f"{url}/{peer}", json={"drop_out": out, "drop_in": inc}
                                   ).raise_for_status()
        except httpx.TransportError:
            pass  # down: it starts uncut and gets its side on restart (reapply)

    def links(self) -> set[Link]:
        return set(self._links)

    def close(self) -> None:
        self._http.close()

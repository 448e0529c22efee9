"""A node's view of the strong group's membership, applied to its peer links.

The configuration lives in the strong log (``strong.membership``); this
module keeps the runtime in step with it:

1. Bootstrap. The cluster file's nodes are the initial voters, except nodes
   marked ``join: true``: those were added later, by a membership change. A
   joining node starts as a learner of the initial voters; the log tells it
   when it is promoted (and its first start uses ``--initial-cluster-state
   new``: a fresh id has voted for nothing, ``strong.replica`` rule 15).
2. Addresses. A configuration value carries every member's peer and API
   address; a node that learns of a member it has no link to adds it to its
   transport, so processes started before the member existed reach it.
3. Removal. A node removed from the configuration is retired: its link is
   dropped and its handshakes are refused from then on
   (``Transport.set_member_check``); its id is never reused.
"""

from __future__ import annotations

import asyncio
import logging

from configsvc.config import ClusterConfig
from configsvc.runtime.transport import Transport
from strong.membership import Member, Membership

log = logging.getLogger("configsvc.members")


def bootstrap(config: ClusterConfig, node_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(voters, learners) of the bootstrap configuration seen by ``node_id`` (rule 1)."""
    voters = tuple(n.id for n in config.nodes if not n.join)
    learners = (node_id,) if config.node(node_id).join else ()
    return voters, learners


def member_of(config: ClusterConfig, node_id: str) -> Member:
    """The addresses the cluster file gives ``node_id`` (raises ``ConfigError``)."""
    n = config.node(node_id)
    return Member(node_id, f"{n.host}:{n.peer_port}", f"{n.host}:{n.api_port}")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ``ValueError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not host:port")
    return host, int(port)


class PeerBook:
    """Keeps a transport's peers in step with the configuration (rules 2-3)."""

    def __init__(self, node_id: str, transport: Transport) -> None:
        self.node_id = node_id
        self.transport = transport
        self.retired: frozenset[str] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()
        transport.set_member_check(lambda peer: peer not in self.retired)

    def update(self, members: Membership) -> None:
        """The configuration changed (called from the event loop)."""
        self.retired = frozenset(members.retired)
        for m in members.addresses:
            if m.node_id == self.node_id or m.node_id in self.transport.peers or not m.peer_address:
                continue
            try:
                self.transport.add_peer(m.node_id, parse_address(m.peer_address))
            except ValueError as exc:
                log.warning("cannot reach new member %s: %s", m.node_id, exc)
        for peer in self.retired & set(self.transport.peers):
            task = asyncio.get_running_loop().create_task(self.transport.remove_peer(peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

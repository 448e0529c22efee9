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
4. Eventual roster. The eventual replicas that gossip and count for causal
   stability, and the peers SWIM watches, are the members of the committed
   configuration (voters and learners; never a retired id), not the
   cluster file's list (``roster``, ``RosterFeed``). A learner is in it from
   the moment it is added: it replicates the eventual store like the strong
   log, and is brought in by full state (``eventual.stability`` rule 1).
   A removed member leaves it: it no longer holds collection back and its
   messages are ignored, and the events it wrote stay valid everywhere
   (``eventual.stability`` rule 2; its id is never reused, so none of its
   dots is ever written again by anyone).

   What removal can lose: eventual writes the removed node acknowledged and
   no remaining member received before learning of the removal (from then
   on its messages are refused). A dead node's unsent writes were lost to
   the cluster with it anyway; a live node must be drained first: no client
   writes to it, and its gossip has reached the others (``configsvc member
   remove`` of a live node is the operator's statement that it has; see
   docs/membership.md, "Eventual namespaces"). A node that learns its own
   removal refuses every eventual request from then on (``retire``), so it
   acknowledges no write that nobody else would ever receive. Only a leader
   that commits its own removal learns it (when the hand-off found no
   successor); a removed follower is no longer replicated to, so it is not
   told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

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


def roster(members: Membership) -> tuple[str, ...]:
    """The eventual roster of a configuration (rule 4): voters and learners, by id."""
    return tuple(sorted(set(members.members) - set(members.retired)))


class EventualMembers(Protocol):
    def set_roster(self, members: Sequence[str]) -> None: ...

    def retire(self) -> None: ...


class SwimPeers(Protocol):
    def set_peers(self, peers: Sequence[str]) -> None: ...


class RosterFeed:
    """Keeps the eventual replica's roster and SWIM's peers in step with the
    configuration (rule 4). ``update`` is called with every committed one."""

    def __init__(self, node_id: str, members: Membership, eventual: EventualMembers,
                 swim: SwimPeers) -> None:
        self.node_id = node_id
        self.eventual = eventual
        self.swim = swim
        self.roster = roster(members)
        if node_id in members.retired:  # restarted after its removal
            eventual.retire()

    def update(self, members: Membership) -> None:
        if self.node_id in members.retired:
            self.eventual.retire()
        new = roster(members)
        if new == self.roster:
            return
        log.info("eventual roster: %s -> %s", ",".join(self.roster), ",".join(new))
        self.roster = new
        self.eventual.set_roster(new)
        self.swim.set_peers([m for m in new if m != self.node_id])


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

"""Where a member is: its addresses from the committed configuration, else the
cluster file.

A node started before a membership change knows the members it added only
from the log (``strong.membership``: a configuration value carries every
member's peer and API address); the cluster file names the bootstrap nodes,
whose configuration entries may carry no address. Every view that names a
node's address (cluster status, the members API, the Consul face) asks here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from configsvc.node_members import member_of
from strong.membership import Member

if TYPE_CHECKING:
    from configsvc.node import Node


def member_address(node: Node, node_id: str) -> Member | None:
    """``node_id``'s addresses as ``node`` knows them (None: it knows neither).
    An address the configuration lacks comes from the cluster file."""
    known = node.strong.members.address(node_id)
    listed = (member_of(node.config, node_id)
              if any(n.id == node_id for n in node.config.nodes) else None)
    if known is None:
        return listed
    if listed is None:
        return known
    return Member(node_id, known.peer_address or listed.peer_address,
                  known.api_address or listed.api_address)


def is_member(node: Node, node_id: str) -> bool:
    """Whether ``node_id`` is a current member (voter or learner) or a bootstrap
    node that was never removed."""
    members = node.strong.members
    if node_id in members.retired:
        return False
    return node_id in members.members or any(n.id == node_id for n in node.config.nodes)

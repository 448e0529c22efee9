"""Consistency modes and the ``X-Consul-*`` headers of a read.

The mapping (docs/consul.md):

    Consul mode   strong namespace                     eventual namespace
    default       leader, from its lease (else a       this node, locally
                  quorum round): "leader"
    consistent    leader, after a quorum round          this node, locally
                  even under a lease: "consistent"
    stale         any node, its applied state: "stale"  this node, locally

``X-Consul-Effective-Consistency`` says which happened; eventual answers say
``local``. Headers of every read:

- ``X-Consul-Index``: strong namespaces, the store revision the read observed
  (one counter for the whole strong group: never backwards on a node);
  eventual namespaces, this node's change index of the namespace as of the
  read (``eventual.change_index``; never newer than the content it goes
  with, or a blocking client could miss the change in between). Never below
  1: Consul clients reset an index of 0.
- ``X-Consul-KnownLeader``: whether this node knows a strong-group leader.
- ``X-Consul-LastContact``: milliseconds since this node heard from the
  leader (0 on the leader; 0 for eventual answers, which are this node's
  own state — the causal token says what that state covers).
- ``X-Configsvc-Token``: eventual answers carry the causal token; a request
  sending it back is served only once this node has seen that past.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from configsvc.http.consul.params import Mode
from configsvc.http.eventual_api import TOKEN
from strong.ready import Role

if TYPE_CHECKING:
    from configsvc.node import Node

#: the StrongApi read mode behind each Consul mode
STRONG_READ: dict[Mode, str] = {"default": "linearizable", "consistent": "quorum", "stale": "stale"}
STRONG_EFFECTIVE: dict[Mode, str] = {"default": "leader", "consistent": "consistent", "stale": "stale"}
EVENTUAL_EFFECTIVE = "local"


@dataclass(frozen=True)
class ReadMeta:
    index: int
    known_leader: bool
    last_contact_ms: int
    effective: str
    token: str | None = None

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Consul-Index": str(max(1, self.index)),
            "X-Consul-KnownLeader": "true" if self.known_leader else "false",
            "X-Consul-LastContact": str(self.last_contact_ms),
            "X-Consul-Effective-Consistency": self.effective,
        }
        if self.token:
            headers[TOKEN] = self.token
        return headers


def _leader_view(node: Node) -> tuple[bool, int]:
    status = node.strong.status()
    if status.role is Role.LEADER:
        return True, 0
    recent = status.since_leader_contact < 2 * node.config.timing.election_timeout
    return status.leader is not None and recent, int(status.since_leader_contact * 1000)


def strong_meta(node: Node, mode: Mode, revision: int) -> ReadMeta:
    known, contact = _leader_view(node)
    return ReadMeta(revision, known, contact, STRONG_EFFECTIVE[mode])


def eventual_meta(node: Node, index: int, token: str | None) -> ReadMeta:
    known, _ = _leader_view(node)
    return ReadMeta(index, known, 0, EVENTUAL_EFFECTIVE, token)


def eventual_index(node: Node, ns: str) -> int:
    """This node's change index of eventual namespace ``ns`` (never backwards)."""
    return node.eventual.namespace_index(ns)

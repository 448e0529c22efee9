"""Why a node says what it says: health as a list of structured reasons.

A node's health status is the worst severity among its reasons, and every
reason is listed, so an operator sees *why* it is ``degraded`` (``one failure
from outage``, ``node n2 unreachable``, ``replica n3 lags 1,200 entries``)
rather than a bare word. The functions here are pure: the node builds a
``StrongView`` and an ``EventualView`` from its drivers, and these turn them
into reasons; tests build the views by hand.

Shape of a reason (``Reason.to_json``), stable for tools::

    {"code": "node_unreachable",           # snake_case, stable
     "severity": "degraded",               # "unavailable" | "degraded" | "warning"
     "message": "node n2 unreachable",     # for people
     "details": {"node": "n2", ...}}       # JSON values, per code (docs/operations.md)

Rules:

1. ``status_of(reasons)``: ``unavailable`` if any reason is, else ``degraded``
   if any reason is, else ``healthy`` (a ``warning`` never changes the
   status). No reasons: ``healthy``.
2. The strong rules keep the meaning health always had: ``unavailable`` when
   either store halted, no leader is known or fewer than a quorum of voters
   is reachable; ``degraded`` when one more failure loses the quorum or the
   configured namespaces are not yet created. A configured voter this node
   cannot reach is ``degraded`` too (the cluster is not at full strength).
3. Reasons are extensible: any module adds its own through
   ``Node.add_health_reasons(source)`` (a callable returning reasons, asked
   at every health request); codes must not collide (one module, one prefix
   of codes).
4. Lag is a ``warning``: it tells where the next failure would hurt, not
   that anything is unavailable now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DigestComparison",
    "EventualView",
    "Reason",
    "Severity",
    "StrongView",
    "Thresholds",
    "compare_digests",
    "digest_reasons",
    "eventual_reasons",
    "status_of",
    "strong_reasons",
]

Severity = Literal["unavailable", "degraded", "warning"]
_RANK: dict[str, int] = {"warning": 0, "degraded": 1, "unavailable": 2}


@dataclass(frozen=True)
class Reason:
    code: str
    severity: Severity
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "details": dict(self.details)}


def status_of(reasons: Iterable[Reason]) -> str:
    """``healthy``, ``degraded`` or ``unavailable``: the worst severity (rule 1)."""
    worst = max((_RANK[r.severity] for r in reasons), default=0)
    return {2: "unavailable", 1: "degraded"}.get(worst, "healthy")


@dataclass(frozen=True)
class Thresholds:
    #: a replica further behind the leader's commit index than this gets a reason
    lag_entries: int = 1000
    #: a gossip peer missing more of this node's events than this gets a reason
    gossip_lag_events: int = 1000


@dataclass(frozen=True)
class StrongView:
    """What the node knows of the strong group, at one instant."""

    node_id: str
    role: str
    leader: str | None
    voters: tuple[str, ...]
    quorum: int
    #: voters this node heard from recently (itself included)
    reachable: tuple[str, ...]
    commit_index: int
    applied_index: int
    halted: str | None = None
    voting: bool = True
    namespaces_ready: bool = True
    #: leader only: the commit index each peer last reported
    peer_commit: Mapping[str, int] = field(default_factory=dict)

    @property
    def failures_to_outage(self) -> int:
        return len(self.reachable) - self.quorum


def _n(count: int) -> str:
    return f"{count:,}"


def refused_by_quorum(node_id: str, voters: Sequence[str],
                      refused_as: Mapping[str, str | None]) -> list[str]:
    """The voters refusing this node's handshakes as an unknown node, if they are
    a quorum of the voters it knows and it believes itself one of them (else []):
    then it was removed without learning it (the commit that removed it is never
    sent to it), and its id is retired for good. One lagging peer that has not
    learnt of a newly added voter refuses it the same way, but is no quorum."""
    refusing = sorted(p for p, code in refused_as.items()
                      if code == "unknown-node" and p in voters)
    if node_id not in voters or len(refusing) < len(voters) // 2 + 1:
        return []
    return refusing


def removal_reasons(node_id: str, voters: Sequence[str], refused_as: Mapping[str, str | None]
                    ) -> list[Reason]:
    """``refused_by_quorum`` as a health reason."""
    refusing = refused_by_quorum(node_id, voters, refused_as)
    if not refusing:
        return []
    return [Reason("removed", "unavailable",
                   f"peers {', '.join(refusing)} refuse this node as unknown: it was removed "
                   f"from the configuration and its id is retired; replace it under a new id "
                   f"(docs/membership.md)", {"refused_by": refusing})]


def strong_reasons(view: StrongView, limits: Thresholds = Thresholds()) -> list[Reason]:
    """The strong group's reasons as seen from ``view.node_id`` (rules 2 and 4)."""
    out: list[Reason] = []
    if view.halted:
        out.append(Reason("strong_halted", "unavailable",
                          f"strong replica halted: {view.halted}", {"error": view.halted}))
    if view.leader is None:
        out.append(Reason("no_leader", "unavailable", "no leader", {}))
    ftl = view.failures_to_outage
    reach = {"reachable": len(view.reachable), "voters": len(view.voters), "quorum": view.quorum}
    if ftl < 0:
        out.append(Reason("no_quorum", "unavailable",
                          f"only {len(view.reachable)} of {len(view.voters)} voters reachable; "
                          f"a quorum needs {view.quorum}", reach))
    elif ftl == 0:
        out.append(Reason("one_failure_from_outage", "degraded", "one failure from outage", reach))
    for peer in view.voters:
        if peer not in view.reachable:
            out.append(Reason("node_unreachable", "degraded", f"node {peer} unreachable",
                              {"node": peer}))
    if not view.namespaces_ready:
        out.append(Reason("namespaces_not_ready", "degraded",
                          "the configured namespaces are not created yet", {}))
    if not view.voting:
        out.append(Reason("learner", "warning",
                          f"node {view.node_id} is a non-voting learner (its data was reset)",
                          {"node": view.node_id}))
    for peer, commit in sorted(view.peer_commit.items()):
        lag = view.commit_index - commit
        if lag > limits.lag_entries:
            out.append(Reason("replica_lag", "warning", f"replica {peer} lags {_n(lag)} entries",
                              {"node": peer, "entries": lag}))
    backlog = view.commit_index - view.applied_index
    if backlog > limits.lag_entries:
        out.append(Reason("apply_lag", "warning",
                          f"replica {view.node_id} has {_n(backlog)} committed entries not applied",
                          {"node": view.node_id, "entries": backlog}))
    return out


@dataclass(frozen=True)
class EventualView:
    """What the node knows of the eventual store and its gossip peers, at one instant."""

    node_id: str
    halted: str | None = None
    #: per peer: how many of this node's events it is not known to have
    peer_lag: Mapping[str, int] = field(default_factory=dict)
    suspect: tuple[str, ...] = ()
    dead: tuple[str, ...] = ()
    divergences: int = 0
    self_preservation: bool = False


def eventual_reasons(view: EventualView, limits: Thresholds = Thresholds()) -> list[Reason]:
    out: list[Reason] = []
    if view.halted:
        out.append(Reason("eventual_halted", "unavailable",
                          f"eventual replica halted: {view.halted}", {"error": view.halted}))
    for peer in view.suspect:
        out.append(Reason("gossip_peer_suspect", "warning", f"gossip peer {peer} suspect",
                          {"node": peer}))
    for peer in view.dead:
        out.append(Reason("gossip_peer_dead", "warning", f"gossip peer {peer} dead",
                          {"node": peer}))
    for peer, lag in sorted(view.peer_lag.items()):
        if lag > limits.gossip_lag_events:
            out.append(Reason("gossip_lag", "warning",
                              f"gossip peer {peer} lacks {_n(lag)} events of {view.node_id}",
                              {"node": peer, "events": lag}))
    if view.divergences:
        out.append(Reason("eventual_divergence_repaired", "warning",
                          f"{view.divergences} divergence(s) between replicas found and repaired "
                          "by full-state exchange", {"count": view.divergences}))
    if view.self_preservation:
        out.append(Reason("self_preservation", "warning",
                          "self-preservation: silent instances stay listed", {}))
    return out


@dataclass(frozen=True)
class DigestComparison:
    """One eventual namespace's digest against each peer's last report.

    Per peer: ``same`` (equal digests), ``converging`` (different digests, different
    version vectors: gossip has not caught up), ``disagree`` (different digests at the
    same version vector: a divergence), ``unknown`` (no report from that peer)."""

    namespace: str
    digest: str
    peers: Mapping[str, str]

    @property
    def agree(self) -> bool | None:
        """True: every peer reported the same digest; False: some differ; None: unknown."""
        states = set(self.peers.values())
        if states - {"same", "unknown"}:
            return False
        return True if states == {"same"} else None

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "agree": self.agree, "peers": dict(self.peers)}


def compare_digests(
    mine: Mapping[str, str], my_vv: Mapping[str, int],
    peers: Mapping[str, tuple[Mapping[str, str], Mapping[str, int]] | None],
) -> list[DigestComparison]:
    """Compare this node's namespace digests with each peer's (``None``: no report).

    Equal version vectors mean both replicas saw the same events, so different
    digests there are a divergence whenever the reports were taken."""
    out = []
    for ns in sorted(mine):
        states: dict[str, str] = {}
        for peer, report in sorted(peers.items()):
            if report is None or ns not in report[0]:
                states[peer] = "unknown"
            elif report[0][ns] == mine[ns]:
                states[peer] = "same"
            elif dict(report[1]) == dict(my_vv):
                states[peer] = "disagree"
            else:
                states[peer] = "converging"
        out.append(DigestComparison(ns, mine[ns], states))
    return out


def digest_reasons(comparisons: Iterable[DigestComparison], node_id: str) -> list[Reason]:
    out = []
    for c in comparisons:
        differ = sorted(p for p, s in c.peers.items() if s == "disagree")
        if differ:
            out.append(Reason("eventual_digests_disagree", "degraded",
                              f"eventual namespace {c.namespace}: {node_id} and "
                              f"{', '.join(differ)} disagree at the same version vector",
                              {"namespace": c.namespace, "nodes": [node_id, *differ]}))
    return out

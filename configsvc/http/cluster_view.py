"""The cluster as one node sees it: its own health plus its peers' reports.

A node asks each peer for its local report (``GET /v1/cluster/health?local=true``)
over the peer transport (``Forwarder.ask``: the same link, partitions, faults
and peer authentication as every other peer message) and keeps the last
answer of each, with the time it arrived. Two uses:

- ``GET /v1/cluster/health`` compares this node's per-namespace eventual
  digests (``eventual.digests``) with the peers' last reports. It never waits
  for peers: it answers from the reports it holds (their age is in the answer,
  ``eventual.digests.age_ms``) and starts a new round in the background when
  they are older than ``health.peer_report_max_age``. Comparing at equal version
  vectors is valid whatever the age (``eventual.digests`` invariants), so an
  old report can show a divergence but never invent one.
- ``GET /v1/cluster/status`` (``configsvc status``) waits for a fresh round
  (bounded) and renders every node, namespace and reason.

A peer that does not answer in time, or answers something that is not a
report, is shown as such; its last good report is kept, marked by its age.

The peers are the strong group's committed configuration (voters and
learners, ``strong.membership``) and the cluster file's nodes, minus retired
ids: a node added by a membership change is asked although this node's
cluster file may not name it; a removed one is listed as retired, never asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from configsvc.health_report import (
    Reason,
    compare_digests,
    digest_reasons,
    status_of,
)
from configsvc.http.forwarding import Forwarder
from configsvc.member_addresses import member_address

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = ["PeerReport", "PeerReports", "cluster_status", "health_with_digests"]


@dataclass
class PeerReport:
    node: str
    #: the last report received (None: never)
    report: dict[str, Any] | None = None
    #: loop time it arrived
    at: float | None = None
    #: why the last round got no report from it (None: it answered)
    error: str | None = None


class PeerReports:
    """The last local report of every peer, refreshed on demand."""

    def __init__(self, node: Node, forwarder: Forwarder) -> None:
        self.node = node
        self.forwarder = forwarder
        #: refreshed from the configuration every round (the node may not be started yet)
        self.reports = {n.id: PeerReport(n.id) for n in node.config.nodes if n.id != node.id}
        self._round: asyncio.Task[None] | None = None
        self._round_started = float("-inf")

    def peers(self) -> list[str]:
        """Who to ask: the configuration's members and the cluster file's nodes,
        minus retired ids and this node (module docstring)."""
        return [n for n in known_nodes(self.node) if n != self.node.id
                and n not in self.node.strong.members.retired]

    @property
    def max_age(self) -> float:
        return self.node.config.health.peer_report_max_age

    async def close(self) -> None:
        if self._round is not None:
            self._round.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._round

    def agreement(self) -> dict[str, bool | None]:
        """Per eventual namespace, whether the peers' last reports agree with this node
        (``DigestComparison.agree``); starts a round if the reports are old."""
        peers = {p: _digests_of(r.report) for p, r in self.cached().items()}
        snap = self.node.eventual_digests()
        mine = {ns: d.hex for ns, d in snap.digests.items()}
        return {c.namespace: c.agree for c in compare_digests(mine, snap.vv, peers)}

    def cached(self) -> dict[str, PeerReport]:
        """The reports held now; starts a round in the background if they are old."""
        now = asyncio.get_running_loop().time()
        if self._round is None and now - self._round_started >= self.max_age:
            self._start(now)
        return self.reports

    async def fresh(self, timeout: float) -> dict[str, PeerReport]:
        """Reports from a round started now (or one already running), waiting at most
        ``timeout`` seconds for it; whatever is held then."""
        loop = asyncio.get_running_loop()
        task = self._round or self._start(loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), timeout)
        return self.reports

    def _start(self, now: float) -> asyncio.Task[None]:
        self._round_started = now
        self._round = asyncio.get_running_loop().create_task(self._gather())
        self._round.add_done_callback(self._finished)
        return self._round

    def _finished(self, task: asyncio.Task[None]) -> None:
        if self._round is task:
            self._round = None

    async def _gather(self) -> None:
        timeout = max(1.0, 2 * self.node.config.timing.election_timeout)
        peers = self.peers()
        self.reports = {p: self.reports.get(p) or PeerReport(p) for p in peers}
        await asyncio.gather(*(self._ask(peer, timeout) for peer in peers))

    async def _ask(self, peer: str, timeout: float) -> None:
        entry = self.reports[peer]  # the round's own dict entry, whatever replaces it later
        try:
            status, body = await self.forwarder.ask(peer, "/v1/cluster/health", "local=true", timeout)
            report = json.loads(body)
            if status != 200 or not plausible_report(report, peer):
                raise ValueError(f"answered {status} without its report")
        except TimeoutError:
            entry.error = f"no answer within {timeout:g}s"
            return
        except Exception as exc:  # whatever a peer sends, this node keeps serving
            entry.error = f"bad report: {exc}"[:200]
            return
        entry.report, entry.at, entry.error = report, asyncio.get_running_loop().time(), None


def known_nodes(node: Node) -> list[str]:
    """The cluster file's nodes, then the configuration's other members (and retired
    ids), each once, in that order."""
    members = node.strong.members
    ids = [n.id for n in node.config.nodes] + list(members.members) + list(members.retired)
    return list(dict.fromkeys(ids))


def _api_of(node: Node, nid: str) -> str | None:
    member = member_address(node, nid)
    return f"http://{member.api_address}" if member is not None and member.api_address else None


def plausible_report(report: object, peer: str) -> bool:
    """The shape ``cluster_status`` reads: a report of ``peer`` with a known status,
    a list of reasons and, unless it serves nothing, integer strong indexes."""
    if not (isinstance(report, dict) and report.get("node") == peer
            and report.get("status") in ("healthy", "degraded", "unavailable")
            and isinstance(report.get("reasons"), list)):
        return False
    strong = report.get("strong")
    if strong is None:
        return "eventual" not in report
    return isinstance(strong, dict) and all(
        type(strong.get(k)) is int for k in ("commit_index", "applied_index")) and isinstance(
        strong.get("replica_lag", {}), dict)


def _age_ms(entry: PeerReport, now: float) -> int | None:
    return None if entry.at is None else int((now - entry.at) * 1000)


def _digests_of(report: dict[str, Any] | None) -> tuple[dict[str, str], dict[str, int]] | None:
    """A peer report's (namespace -> digest, version vector), or None if it has none."""
    try:
        assert report is not None
        eventual = report["eventual"]
        digests = {str(ns): str(v["digest"]) for ns, v in eventual["namespaces"].items()}
        vv = {str(k): int(v) for k, v in eventual["vv"].items()}
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError):
        return None
    return digests, vv


def health_with_digests(node: Node, reports: dict[str, PeerReport]) -> dict[str, Any]:
    """``node.health()`` plus, per eventual namespace, whether the peers' digests agree
    (and a reason for each disagreement at equal version vectors)."""
    health = node.health()
    if "eventual" not in health:  # a node that serves nothing says only why
        return health
    eventual = health["eventual"]
    mine = {ns: v["digest"] for ns, v in eventual["namespaces"].items()}
    peers = {p: _digests_of(r.report) for p, r in reports.items()}
    comparisons = compare_digests(mine, eventual["vv"], peers)
    now = asyncio.get_running_loop().time()
    eventual["digests"] = {
        "age_ms": {p: _age_ms(r, now) for p, r in sorted(reports.items())},
        "namespaces": {c.namespace: c.to_json() for c in comparisons},
    }
    extra = digest_reasons(comparisons, node.id)
    reasons = [Reason(**r) for r in health["reasons"]] + extra
    health["reasons"] += [r.to_json() for r in extra]
    health["status"] = status_of(reasons)
    return health


def cluster_status(node: Node, reports: dict[str, PeerReport]) -> dict[str, Any]:
    """Every node, namespace and reason, as this node and its peers' reports show them."""
    me = health_with_digests(node, reports)
    now = asyncio.get_running_loop().time()
    by_node: dict[str, dict[str, Any] | None] = {node.id: me}
    # A peer that did not answer this round is shown by what this node knows of it,
    # never by its last report (which could say anything about the past).
    by_node.update({p: r.report for p, r in reports.items() if r.error is None})
    reachable = set(me.get("strong", {}).get("reachable_voters", [node.id]))
    commits = [r["strong"]["commit_index"] for r in by_node.values() if r and "strong" in r]
    leader_lag: dict[str, int] = {}
    for report in by_node.values():
        if report and report.get("strong", {}).get("role") == "leader":
            leader_lag = report["strong"].get("replica_lag", {})
    nodes = []
    retired = node.strong.members.retired
    for nid in known_nodes(node):
        report = by_node.get(nid)
        entry = reports.get(nid)
        row: dict[str, Any] = {
            "id": nid,
            "api": _api_of(node, nid),
            "reachable": nid in reachable,
            "answered": nid == node.id or (entry is not None and entry.error is None),
            "age_ms": 0 if nid == node.id else (_age_ms(entry, now) if entry else None),
            "error": entry.error if entry is not None else None,
            "status": None,
        }
        if nid in retired:  # removed from the configuration: never asked, never counted
            row.update(role="retired", answered=False, error="removed from the configuration")
        elif report is not None and "strong" in report:
            strong = report["strong"]
            lag = leader_lag.get(nid)
            if lag is None and strong.get("role") != "leader" and commits:
                lag = max(commits) - strong["commit_index"]
            row.update(status=report.get("status"), role=strong.get("role"),
                       leader=strong.get("leader"), ballot=strong.get("ballot"),
                       commit_index=strong.get("commit_index"),
                       applied_index=strong.get("applied_index"),
                       lag=0 if strong.get("role") == "leader" else lag)
        elif report is not None:
            row.update(status=report.get("status"))
        nodes.append(row)
    reasons: dict[tuple[str, str], dict[str, Any]] = {}
    for reporter, report in by_node.items():
        for reason in (report or {}).get("reasons", []):
            if not isinstance(reason, dict):
                continue
            key = (str(reason.get("code")), str(reason.get("message")))
            merged = reasons.setdefault(key, {**reason, "reported_by": []})
            merged["reported_by"].append(reporter)
    statuses = [r.get("status") for r in by_node.values() if r]
    worst = ("unavailable" if "unavailable" in statuses
             else "degraded" if "degraded" in statuses else "healthy")
    digests = me.get("eventual", {}).get("digests", {}).get("namespaces", {})
    namespaces = []
    if "strong" in me:
        strong_keys = me["strong"].get("namespaces", {})
        eventual_keys = me["eventual"].get("namespaces", {})
        for info in node.strong.sm.namespaces():
            if info.consistency == "strong":
                keys, agree = strong_keys.get(info.name, {}).get("keys", 0), None
            else:
                keys = eventual_keys.get(info.name, {}).get("keys", 0)
                agree = digests.get(info.name, {}).get("agree")
            namespaces.append({"name": info.name, "consistency": info.consistency,
                               "keys": keys, "digests_agree": agree})
    rank = {"unavailable": 0, "degraded": 1}
    ordered = sorted(reasons.values(), key=lambda r: (rank.get(str(r.get("severity")), 2),
                                                       str(r.get("code")), str(r.get("message"))))
    return {"node": node.id, "status": worst, "nodes": nodes, "namespaces": namespaces,
            "reasons": ordered}

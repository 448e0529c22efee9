"""Prometheus metrics of one node (``GET /metrics``; every metric: docs/operations.md).

Two kinds, chosen by cost:

- **Observed on the path** (histograms and HTTP counters): commit latency
  (``StrongDriver.on_commit``), fsync latency and records per fsync
  (``CoreLoop.on_fsync``), HTTP requests and errors (``configsvc.http.request_metrics``).
  Each observation is one bound child's ``observe``/``inc`` (~1 µs).
- **Read at scrape** (``NodeCollector``): counters the runtime already keeps
  (loop, transport, drivers, forwarding) and gauges of the stores' state
  (commit/applied index, gossip lag, reasons). They cost nothing between
  scrapes.

Every node has its own ``CollectorRegistry`` (several nodes share a process
in tests); nothing is registered in the global one. Label values are
bounded: peers and stores come from the configuration, namespaces are
existing ones or ``other``, methods and error codes are from fixed sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from configsvc.node import Node

__all__ = ["CONTENT_TYPE_LATEST", "NodeCollector", "NodeMetrics"]

#: seconds: 0.5 ms .. 10 s (an fsync on a loaded disk, a commit across a slow quorum)
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class NodeMetrics:
    """The registry of one node and the metrics observed on the path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.commit_seconds = Histogram(
            "configsvc_strong_commit_seconds",
            "Strong writes proposed here: seconds from propose to applied here",
            registry=r, buckets=LATENCY_BUCKETS)
        self.fsync_seconds = Histogram(
            "configsvc_fsync_seconds", "Seconds one fsync of a store's log took",
            ["store"], registry=r, buckets=LATENCY_BUCKETS)
        self.fsync_records = Histogram(
            "configsvc_fsync_batch_records",
            "Records made durable by one fsync (group commit batch size)",
            ["store"], registry=r, buckets=BATCH_BUCKETS)
        self.http_requests = Counter(
            "configsvc_http_requests",
            "HTTP requests answered, by face, namespace (an existing one, 'other' or 'none'), "
            "method and status", ["face", "namespace", "method", "status"], registry=r)
        self.http_errors = Counter(
            "configsvc_http_errors", "HTTP error answers (status >= 400) by face, status and error code",
            ["face", "status", "code"], registry=r)

    def fsync_observer(self, store: str) -> Callable[[float, int], None]:
        """A ``CoreLoop.on_fsync`` for ``store``: one fsync's seconds and records."""
        seconds = self.fsync_seconds.labels(store)
        records = self.fsync_records.labels(store)

        def observe(took: float, count: int) -> None:
            seconds.observe(took)
            records.observe(count)

        return observe

    def expose(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class NodeCollector(Collector):
    """Reads a node's own counters and state at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node = self.node
        if node.corrupt is not None or node.transport is None or node._strong is None:
            up = _gauge("configsvc_serving", "1 if this node serves, 0 if its data cannot be trusted")
            up.add_metric([], 0 if node.corrupt else 1)
            yield up
            return
        yield from self._strong(node)
        yield from self._loops(node)
        yield from self._transport(node)
        yield from self._eventual(node)
        yield from self._health(node)

    def _strong(self, node: Node) -> Iterator[Metric]:
        strong = node.strong
        stats = strong.stats
        for name, doc, value in (
            ("configsvc_strong_leader_changes", "Times this node saw a new leader (itself included)",
             stats.leader_changes),
            ("configsvc_strong_lease_expiries", "Times this node's leader lease lapsed while leading",
             stats.lease_expiries),
            ("configsvc_strong_snapshots_sent", "Snapshot transfers this node began (first chunk sent)",
             stats.snapshots_sent),
            ("configsvc_strong_applied_slots", "Slots applied to the state machine", stats.applied_slots),
            ("configsvc_strong_malformed_messages", "Peer messages dropped as malformed",
             stats.malformed_messages),
            ("configsvc_strong_retries_joined", "Client retries that joined a proposal already held",
             stats.retries_joined),
            ("configsvc_strong_writes_rehanded",
             "Session writes handed again to a new leader (the old one never answered)",
             stats.rehanded),
        ):
            c = _counter(name, doc)
            c.add_metric([], value)
            yield c
        sent = _counter("configsvc_strong_messages_sent",
                        "Strong-group messages sent, by type (CatchUpReply: catch-ups; "
                        "InstallSnapshot: snapshot chunks; Forward: commands forwarded to the leader)",
                        ["type"])
        for kind, count in sorted(stats.sent.items()):
            sent.add_metric([kind], count)
        yield sent
        status = strong.status()
        for name, doc, gauge_value in (
            ("configsvc_strong_commit_index", "Highest slot known chosen here", status.commit_index),
            ("configsvc_strong_applied_index", "Highest slot applied here", strong.sm.applied_index),
            ("configsvc_strong_is_leader", "1 if this node leads the strong group",
             int(strong.is_leader)),
            ("configsvc_strong_lease_valid", "1 if this leader holds a valid lease", int(status.lease_valid)),
            ("configsvc_strong_halted", "1 if the strong replica stopped applying", int(bool(strong.halted))),
        ):
            g = _gauge(name, doc)
            g.add_metric([], gauge_value)
            yield g
        lag = _gauge("configsvc_strong_replica_lag_entries",
                     "Leader only: entries each peer's commit index is behind", ["peer"])
        for peer, commit in sorted(status.peer_commit.items()):
            lag.add_metric([peer], status.commit_index - commit)
        yield lag

    def _loops(self, node: Node) -> Iterator[Metric]:
        loops = [("strong", node.strong.loop), ("eventual", node.eventual.loop)]
        if node.membership is not None:
            loops.append(("membership", node.membership.loop))
        fsyncs = _counter("configsvc_loop_fsyncs", "Fsyncs of a store's log (one per synced batch)", ["store"])
        records = _counter("configsvc_loop_records", "Records made durable", ["store"])
        readies = _counter("configsvc_loop_steps", "Steps (core ready batches) handled", ["store"])
        failures = _counter("configsvc_loop_send_failures", "Messages the transport refused to queue",
                            ["store"])
        for store, loop in loops:
            fsyncs.add_metric([store], loop.stats.fsyncs)
            records.add_metric([store], loop.stats.records)
            readies.add_metric([store], loop.stats.readies)
            failures.add_metric([store], loop.stats.send_failures)
        yield from (fsyncs, records, readies, failures)

    def _transport(self, node: Node) -> Iterator[Metric]:
        assert node.transport is not None
        peers = node.transport.stats().peers
        fields = {
            "frames_out": "Frames sent to a peer", "bytes_out": "Bytes sent to a peer",
            "frames_in": "Frames received from a peer", "bytes_in": "Bytes received from a peer",
            "queue_dropped": "Frames dropped because a peer's queue was full",
            "connects": "Connections made to a peer", "reconnects": "Reconnections to a peer",
            "connect_failures": "Failed connection attempts to a peer",
            "auth_failures": "Peer handshakes refused", "bad_frames": "Malformed frames from a peer",
        }
        for field, doc in fields.items():
            c = _counter(f"configsvc_transport_{field}", doc, ["peer"])
            for peer, s in sorted(peers.items()):
                c.add_metric([peer], getattr(s, field))
            yield c
        connected = _gauge("configsvc_transport_connected", "1 if the link to a peer is up", ["peer"])
        for peer, s in sorted(peers.items()):
            connected.add_metric([peer], int(s.connected))
        yield connected

    def _eventual(self, node: Node) -> Iterator[Metric]:
        status = node.eventual.status()
        lag = _gauge("configsvc_gossip_peer_lag_events",
                     "Events of this replica a gossip peer is not known to have", ["peer"])
        for peer, n in sorted(status.peer_lag.items()):
            lag.add_metric([peer], n)
        yield lag
        for name, doc, value in (
            ("configsvc_gossip_pending_events", "Remote events waiting for their causal past",
             status.pending),
            ("configsvc_gossip_unstable_events", "Events kept until causally stable", status.log_events),
            ("configsvc_gossip_converged",
             "1 if every gossip peer is known to hold every event of this replica and none waits",
             int(not status.pending and not any(status.peer_lag.values()))),
        ):
            g = _gauge(name, doc)
            g.add_metric([], value)
            yield g
        div = _counter("configsvc_gossip_divergences",
                       "Repair probes that found equal version vectors but different states")
        div.add_metric([], status.divergences)
        yield div
        if node.membership is not None:
            m = node.membership.status()
            members = _gauge("configsvc_gossip_members", "Members by SWIM state (this node included)",
                             ["state"])
            for state, count in (("alive", m.alive), ("suspect", m.suspect), ("dead", m.dead)):
                members.add_metric([state], count)
            yield members

    def _health(self, node: Node) -> Iterator[Metric]:
        health = node.health()
        ok = _gauge("configsvc_health_status", "1 for this node's current status", ["status"])
        for state in ("healthy", "degraded", "unavailable"):
            ok.add_metric([state], int(health["status"] == state))
        yield ok
        reasons = _gauge("configsvc_health_reasons", "Reasons of the current status, by code and severity",
                         ["code", "severity"])
        counts: dict[tuple[str, str], int] = {}
        for r in health["reasons"]:
            key = (r["code"], r["severity"])
            counts[key] = counts.get(key, 0) + 1
        for (code, severity), n in sorted(counts.items()):
            reasons.add_metric([code, severity], n)
        yield reasons
        ftl = _gauge("configsvc_strong_failures_to_outage", "More voter failures the quorum survives")
        ftl.add_metric([], health["strong"]["failures_to_outage"])
        yield ftl

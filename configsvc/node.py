"""One configsvc node: storage, peer transport, both stores' drivers, membership.

The node knows nothing of HTTP: ``configsvc.http.service`` puts the APIs on
top of it (``configsvc serve --config cluster.yaml --node n1`` runs both).
The node creates the namespaces listed in the configuration through the log
once a leader exists (creation is idempotent), runs the strong group's
periodic commands (session and instance expiry), and reports
consensus-aware health.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from configsvc.config import ClusterConfig
from configsvc.corruption_seams import corrupt_when_present
from configsvc.datadir import InitialState, Member, open_data_dir, read_marker
from configsvc.hash_checks import HashCheckRunner
from configsvc.health_report import (
    EventualView,
    Reason,
    StrongView,
    Thresholds,
    eventual_reasons,
    refused_by_quorum,
    removal_reasons,
    status_of,
    strong_reasons,
)
from configsvc.metrics import NodeCollector, NodeMetrics
from configsvc.node_members import PeerBook, RosterFeed, bootstrap, roster
from configsvc.quarantine import open_stores
from configsvc.runtime.disk_storage import DiskStorage
from configsvc.runtime.disklog import CorruptLog
from configsvc.runtime.eventual_driver import CHANNEL as EVENTUAL_CHANNEL
from configsvc.runtime.eventual_driver import EventualDriver
from configsvc.runtime.membership_driver import CHANNEL as MEMBERSHIP_CHANNEL
from configsvc.runtime.membership_driver import MembershipDriver
from configsvc.runtime.strong_driver import CHANNEL, Halted, NotLeader, OutcomeUnknown, StrongDriver
from configsvc.runtime.transport import Transport, TransportConfig
from configsvc.security import check_peer_security, peer_secret, peer_tls
from configsvc.upgrade import CHANNEL as UPGRADE_CHANNEL
from configsvc.upgrade import SupportTable, report_forever, supported_versions
from eventual.config import LWW, MVR, Merge
from eventual.config import ReplicaConfig as EventualConfig
from eventual.digests import DigestSnapshot, NamespaceDigest, namespace_digests
from eventual.health import SelfPreservation
from eventual.membership_messages import MemberState
from eventual.records import Record as EventualRecord
from strong.commands import Command, encode_command
from strong.config import PlantedBugs, ReplicaConfig
from strong.membership import Membership
from strong.ops import CreateNamespace, ExpireInstances, ExpireSessions, SetVersion
from strong.ready import Role
from strong.records import Record as StrongRecord
from strong.results import ErrorResult
from strong.state_machine import SESSION_EXPIRY_VERSION

log = logging.getLogger("configsvc.node")



PLANTED_BUGS_ENV = "CONFIGSVC_PLANTED_BUGS"
#: planted faults of the HTTP layer rather than of the strong core, named in the
#: same variable: ``stale_follower_reads`` makes a node that does not lead answer
#: linearizable strong reads from its own applied state (the partition lab's
#: ``--plant stale-follower-reads``, which proves its linearizability check can fail)
API_PLANTED = frozenset({"stale_follower_reads"})


def _planted_names() -> list[str]:
    return [n for n in os.environ.get(PLANTED_BUGS_ENV, "").split(",") if n]


def planted_bugs() -> PlantedBugs:
    """Deliberate defects for tests that prove a checker can fail (``strong.config.PlantedBugs``).

    Named, comma-separated, in ``$CONFIGSVC_PLANTED_BUGS``; never set in production,
    and a node running with any of them logs it loudly.
    """
    names = _planted_names()
    if names:
        log.warning("PLANTED BUGS ACTIVE (test only): %s", ", ".join(names))
    return PlantedBugs(**dict.fromkeys((n for n in names if n not in API_PLANTED), True))


def planted_api_faults() -> frozenset[str]:
    """The ``API_PLANTED`` faults named in ``$CONFIGSVC_PLANTED_BUGS`` (test only)."""
    return frozenset(_planted_names()) & API_PLANTED


def _stop_if_cancelled() -> None:
    """Raise ``CancelledError`` if the current task was asked to stop.

    Python 3.11's ``asyncio.wait_for`` (under ``StrongDriver.propose``) returns
    the result of a future that completed just as the waiting task was
    cancelled, and the cancellation is lost (fixed in 3.12). A background loop
    that proposes would then run on, and ``Node.close`` would wait for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Node:
    def __init__(
        self, config: ClusterConfig, node_id: str, *, initial_cluster_state: InitialState = "existing"
    ) -> None:
        """``initial_cluster_state``: ``"new"`` only for the first start of a brand-new
        cluster (see ``configsvc.datadir``); ignored once the data directory is marked."""
        self.config = config
        self.initial_cluster_state: InitialState = initial_cluster_state
        self.member: Member | None = None
        self.id = node_id
        self.me = config.node(node_id)
        self.data_dir = config.data_dir(node_id)
        self.started_at = time.monotonic()
        self.storage: DiskStorage[StrongRecord] | None = None
        self.transport: Transport | None = None
        self._strong: StrongDriver | None = None
        self._eventual: EventualDriver | None = None
        self.event_storage: DiskStorage[EventualRecord] | None = None
        #: merge mode of each eventual namespace, kept from the strong registry
        self.merges: dict[str, Merge] = {}
        #: peer channels served by the layers above (``on_peer_channel``)
        self._channels: dict[str, Callable[[str, bytes], None]] = {}
        self.membership: MembershipDriver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.namespaces_ready = False
        #: set when the data directory cannot be trusted: the node serves nothing
        self.corrupt: str | None = None
        #: the last eventual digests (``eventual_digests``)
        self._digests: DigestSnapshot | None = None
        #: more reasons for health reports (``add_health_reasons``)
        self.health_sources: list[Callable[[], Iterable[Reason]]] = []
        #: this node's Prometheus registry (``GET /metrics``; ``configsvc.metrics``)
        self.metrics = NodeMetrics()
        self.metrics.registry.register(NodeCollector(self))
        #: stores found corrupt at start, set aside and rebuilt from the peers
        self.repaired: list[str] = []
        self.hash_checks: HashCheckRunner | None = None
        #: state-machine versions this node applies under, and its peers' (``configsvc.upgrade``)
        self.support = SupportTable(node_id, supported_versions())

    @property
    def strong(self) -> StrongDriver:
        assert self._strong is not None, "node not started"
        return self._strong

    @property
    def started(self) -> bool:
        """Whether ``start`` has opened the stores (``strong``/``eventual`` exist)."""
        return self._strong is not None

    @property
    def eventual(self) -> EventualDriver:
        assert self._eventual is not None, "node not started"
        return self._eventual

    def on_peer_channel(self, channel: str, handler: Callable[[str, bytes], None]) -> None:
        """Serve peer messages of ``channel`` with ``handler`` (a layer above the node,
        e.g. request forwarding); call before ``start``."""
        self._channels[channel] = handler
        if self.transport is not None:
            self.transport.on_receive(channel, handler)

    def send_peer(self, dst: str, channel: str, payload: bytes) -> bool:
        """Queue ``payload`` for peer ``dst`` on ``channel``; False if not queued."""
        return self.transport is not None and self.transport.send(dst, channel, payload)

    def refresh_merge(self, namespace: str) -> None:
        """Copy ``namespace``'s merge mode from the registry (reads resolve by it)."""
        for info in self.strong.sm.namespaces():
            if info.name == namespace:
                self.merges[namespace] = LWW if dict(info.options).get("merge") == LWW else MVR

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        cfg, timing = self.config, self.config.timing
        # Raises ConfigError: no peer secret and no mutual TLS (nor insecure_peers),
        # or a secret, certificate or key that cannot be used.
        check_peer_security(cfg)
        secret, tls = peer_secret(cfg), peer_tls(cfg, self.id)
        # Raises DataDirError (wiped or foreign directory): the node must not start.
        self.member = open_data_dir(
            self.data_dir, self.config.cluster_id, self.id, self.initial_cluster_state
        )
        try:  # a corrupt store is set aside and rebuilt from the peers (configsvc.quarantine)
            self.storage, self.event_storage, self.repaired = open_stores(
                self.data_dir, self.config.cluster_id, self.id)
        except (CorruptLog, OSError) as exc:
            # Never vote or serve from state we cannot trust: stay up, say why.
            self.corrupt = f"refusing to serve: {exc}"
            log.error("%s", self.corrupt)
            return
        if any(r.startswith("strong") for r in self.repaired):
            self.member = read_marker(self.data_dir) or self.member  # now a learner
        peers = {n.id: (n.host, n.peer_port) for n in cfg.nodes if n.id != self.id}
        self.transport = Transport(
            TransportConfig(
                node_id=self.id,
                cluster_id=cfg.cluster_id,
                peers=peers,
                listen_host=self.me.host,
                listen_port=self.me.peer_port,
                secret=secret,
                tls_server=tls[0] if tls else None,
                tls_client=tls[1] if tls else None,
            )
        )
        voters, learners = bootstrap(cfg, self.id)
        replica_config = ReplicaConfig(
            self.id,
            voters,
            learners=learners,
            heartbeat_interval=timing.heartbeat_interval,
            election_timeout=timing.election_timeout,
            lease_duration=timing.lease_duration,
            max_drift=timing.max_drift,
            snapshot_log_bytes=cfg.storage.snapshot_log_bytes,
            bugs=planted_bugs(),
        )
        transport = self.transport
        self._strong = StrongDriver(
            replica_config,
            self.storage,
            lambda dst, payload: transport.send(dst, CHANNEL, payload),
            voting=self.member.voting,
            snapshot_every=cfg.storage.snapshot_every,
            versions=self.support.versions,
        )
        self.transport.on_receive(CHANNEL, self._strong.deliver)
        self.transport.on_receive(
            UPGRADE_CHANNEL, lambda src, payload: self.support.deliver(src, payload, time.monotonic()))
        self.peer_book = PeerBook(self.id, self.transport)
        self.peer_book.update(self._strong.members)
        assert self.event_storage is not None
        # The eventual roster and SWIM's peers: the committed configuration (node_members rule 4).
        start_roster = roster(self._strong.members)
        self._eventual = EventualDriver(
            EventualConfig(self.id, tuple(sorted({self.id, *start_roster})), namespaces=self.merges,
                           self_preservation=SelfPreservation(
                               **cfg.eventual.self_preservation.model_dump())),
            self.event_storage,
            lambda dst, payload: transport.send(dst, EVENTUAL_CHANNEL, payload),
        )
        self.transport.on_receive(EVENTUAL_CHANNEL, self._eventual.deliver)
        eventual = self._eventual
        self.membership = MembershipDriver(
            self.id,
            [n for n in start_roster if n != self.id],
            lambda dst, payload: transport.send(dst, MEMBERSHIP_CHANNEL, payload),
            eventual.set_alive,
        )
        feed = RosterFeed(self.id, self._strong.members, eventual, self.membership)
        book = self.peer_book

        def on_members(members: Membership) -> None:
            book.update(members)
            feed.update(members)

        self._strong.on_members = on_members
        self.transport.on_refused = self._refused_by_peer
        self.transport.on_receive(MEMBERSHIP_CHANNEL, self.membership.deliver)
        self._strong.on_commit = self.metrics.commit_seconds.observe
        self._strong.loop.on_fsync = self.metrics.fsync_observer("strong")
        self._eventual.loop.on_fsync = self.metrics.fsync_observer("eventual")
        for channel, handler in self._channels.items():
            self.transport.on_receive(channel, handler)
        await self.transport.start()
        await self._strong.start()
        await self._eventual.start()
        await self.membership.start()
        self._tasks.append(asyncio.create_task(self._bootstrap_namespaces()))
        self._tasks.append(asyncio.create_task(self._maintain_sessions()))
        self.hash_checks = HashCheckRunner(self.id, self._strong,
                                           cfg.state_machine.hash_check_interval,
                                           timing.request_timeout)
        self._tasks.append(asyncio.create_task(self.hash_checks.run()))
        self._tasks.append(asyncio.create_task(corrupt_when_present(self._strong, self._eventual)))
        self._tasks.append(asyncio.create_task(report_forever(
            self.id, self.support.versions, list(peers),
            lambda dst, payload: transport.send(dst, UPGRADE_CHANNEL, payload))))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._strong is not None:
            await self._strong.close()
        if self.membership is not None:
            await self.membership.close()
        if self._eventual is not None:
            await self._eventual.close()
        if self.transport is not None:
            await self.transport.close()
        # A driver's fsync may still run in its worker thread: close waits for it.
        if self.storage is not None:
            await asyncio.to_thread(self.storage.close)
        if self.event_storage is not None:
            await asyncio.to_thread(self.event_storage.close)

    async def _bootstrap_namespaces(self) -> None:
        """Ensure the configured namespaces exist, through the log, then stop.

        Creation is idempotent, so each missing namespace is proposed without a
        dedup session (a namespace deleted by an operator is created again at the
        next start); any definite answer — created, or a conflicting namespace of
        that name (logged) — settles it."""
        settled: set[str] = set()
        while True:
            existing = {ns.name for ns in self.strong.sm.namespaces()}
            missing = [s for s in self.config.namespaces if s.name not in existing | settled]
            if not missing:
                self.namespaces_ready = True
                return
            if self.strong.is_leader:
                for spec in missing:
                    options = (("merge", spec.merge),) if spec.consistency == "eventual" else ()
                    op = CreateNamespace(spec.name, spec.consistency, options)
                    cmd = encode_command(Command(f"bootstrap-{self.id}-{uuid.uuid4().hex}", 0, op))
                    try:
                        result = await self.strong.propose(cmd, self.config.timing.request_timeout)
                    except (NotLeader, OutcomeUnknown, Halted):
                        break
                    finally:
                        _stop_if_cancelled()
                    if isinstance(result, ErrorResult):
                        log.warning("configured namespace %s not created: %s", spec.name, result.message)
                    settled.add(spec.name)
            await asyncio.sleep(0.1)  # poll period of a background task, not a test wait

    #: how often (seconds) the leader considers proposing ``ExpireInstances``
    instance_expiry_interval = 1.0

    def instance_expiry_grace(self) -> float:
        """Seconds a new leader waits before proposing ``ExpireInstances``.

        Two election timeouts (the longest a follower's random timer lets the
        group go leaderless) plus the lease the new leader waits out: while no
        leader could commit, no heartbeat could be committed either, so an
        instance may look silent only because of the election. Its client
        retries and gets through once this leader serves. The wait also covers a
        leader that has not yet applied its predecessor's last heartbeats."""
        timing = self.config.timing
        return 2 * timing.election_timeout + timing.lease_duration

    async def _maintain_sessions(self) -> None:
        """While leader: move the group toward the configured state-machine version once
        every voter supports it (``configsvc.upgrade``), then
        propose ``ExpireSessions`` with this node's wall-clock time every interval and,
        from version 3, ``ExpireInstances`` about every second.

        Every replica expires from the command's numbers, never from its own clock
        (``strong.state_machine`` rules 8 and 9); a leader whose clock is behind
        expires late, one ahead expires early, so the TTL must dwarf clock error and
        retry windows. ``ExpireInstances`` goes only when the applied state holds an
        instance it would change (an idle group writes nothing), and never within
        ``instance_expiry_grace()`` of this node's leadership beginning."""
        cfg = self.config.state_machine
        sessions_due = 0.0
        leadership: object = None  # the ballot of the leadership ``leader_since`` belongs to
        leader_since = 0.0
        while True:
            wait = min(cfg.session_expiry_interval, self.instance_expiry_interval)
            status = self.strong.status()
            now = time.monotonic()
            if status.role is Role.LEADER and not self.strong.halted:
                if status.ballot != leadership:
                    leadership, leader_since = status.ballot, now
                ops: list[SetVersion | ExpireSessions | ExpireInstances] = []
                sm = self.strong.sm
                version = self.support.next_version(
                    sm.version, cfg.version, self.strong.members.voters, now)
                if version is not None:  # every voter supports it (configsvc.upgrade rule 2)
                    ops, wait = [SetVersion(version)], 0.2
                else:
                    wall_ms = int(time.time() * 1000)
                    if sm.version >= SESSION_EXPIRY_VERSION and now >= sessions_due:
                        sessions_due = now + cfg.session_expiry_interval
                        ops.append(ExpireSessions(wall_ms, int(cfg.session_ttl * 1000)))
                    if now - leader_since >= self.instance_expiry_grace() and sm.instances_due(wall_ms):
                        ops.append(ExpireInstances(wall_ms))
                for op in ops:
                    cmd = encode_command(Command(f"sessions-{self.id}-{uuid.uuid4().hex}", 0, op))
                    with contextlib.suppress(NotLeader, OutcomeUnknown, Halted):
                        await self.strong.propose(cmd, self.config.timing.request_timeout)
                    _stop_if_cancelled()
            else:
                leadership = None
                wait = min(wait, 0.2)
            await asyncio.sleep(wait)  # period of a background task, not a test wait

    # ------------------------------------------------------------------ health

    def _refused_by_peer(self, peer: str, code: str | None) -> None:
        """A peer refused our handshake. Refused as an unknown node by a quorum of
        voters, this node was removed without learning it (``refused_by_quorum``):
        its eventual replica stops acknowledging writes that nobody else would see."""
        if code != "unknown-node" or self._eventual is None or self._eventual.retired:
            return
        assert self.transport is not None
        refused = {p: s.refused_as for p, s in self.transport.stats().peers.items()}
        refusing = refused_by_quorum(self.id, self.strong.members.voters, refused)
        if refusing:
            log.error("peers %s refuse this node as unknown: it was removed from the "
                      "configuration; eventual requests are refused from now on", ", ".join(refusing))
            self._eventual.retire()

    def add_health_reasons(self, source: Callable[[], Iterable[Reason]]) -> None:
        """Add ``source``'s reasons to every health report (``configsvc.health_report``
        rule 3): it is called at each report and must be cheap and not raise."""
        self.health_sources.append(source)

    def refusal(self) -> str | None:
        """Why this node must not serve now (corrupt storage, or a state being re-synced
        after a hash check found it diverged), or None."""
        if self.corrupt:
            return self.corrupt
        return self.hash_checks.diverged if self.hash_checks is not None else None

    def _version_pending(self) -> str | None:
        """Why the group is below the version both the target and this binary allow."""
        active = self.strong.sm.version
        goal = min(self.config.state_machine.version, self.support.versions.stop - 1)
        if active >= goal:
            return None
        voters = self.strong.members.voters
        waiting = self.support.waiting_for(goal, voters, time.monotonic())
        return (f"state-machine version {active}, {goal} pending"
                + (f": waiting for {', '.join(waiting)} to support it" if waiting else ""))

    def _repair_reasons(self) -> list[Reason]:
        """Stores rebuilt at start, a pending state-machine version, hash checks."""
        reasons = [Reason("store_repaired", "warning", r, {}) for r in self.repaired]
        pending = self._version_pending()
        if pending:
            reasons.append(Reason("version_pending", "degraded", pending,
                                  {"active": self.strong.sm.version}))
        if self.hash_checks is not None:
            if self.hash_checks.diverged:
                reasons.append(Reason("state_diverged", "unavailable", self.hash_checks.diverged, {}))
            if self.hash_checks.disagreement:
                reasons.append(Reason("replicas_disagree", "degraded", self.hash_checks.disagreement, {}))
        return reasons
    def upgrade_status(self) -> dict[str, Any]:
        """Each voter's supported state-machine versions and the group's active one."""
        if self.corrupt:
            return {"node": self.id, "error": self.corrupt}
        status = self.support.status(self.strong.sm.version, self.config.state_machine.version,
                                     self.strong.members.voters, time.monotonic())
        sm = self.strong.sm
        return status | {"applied_index": sm.applied_index, "state_hash": sm.state_hash(),
                         "halted": self.strong.halted}

    def health(self) -> dict[str, Any]:
        """This node's view of the cluster: status, every reason for it, both stores."""
        if self.corrupt:
            reason = Reason("corrupt_data", "unavailable", self.corrupt, {})
            return {"node": self.id, "status": "unavailable", "error": self.corrupt,
                    "reasons": [reason.to_json()]}
        status = self.strong.status()
        # The configuration this node committed (``strong.membership``): the
        # cluster file names only the bootstrap one.
        voters = list(self.strong.members.voters)
        quorum = len(voters) // 2 + 1
        horizon = self.config.timing.election_timeout * 2
        assert self.transport is not None
        stats = self.transport.stats()
        now = asyncio.get_running_loop().time()  # the transport's clock
        reachable = [p for p in (self.id, *(
            p for p, s in stats.peers.items()
            if s.connected and s.last_contact is not None and now - s.last_contact < horizon
        )) if p in voters]
        failures_to_outage = len(reachable) - quorum
        # A leader not heard from for two election timeouts is not reported as one.
        recent = status.since_leader_contact < 2 * self.config.timing.election_timeout
        leader = status.leader if status.role is Role.LEADER or recent else None
        view = StrongView(
            self.id, status.role.value, leader, tuple(voters), quorum, tuple(sorted(reachable)),
            status.commit_index, self.strong.sm.applied_index, self.strong.halted,
            self.strong.replica.voting, self.namespaces_ready,
            status.peer_commit if status.role is Role.LEADER else {},
        )
        eventual = self._eventual_health()
        thresholds = Thresholds(**self.config.health.model_dump(include={"lag_entries", "gossip_lag_events"}))
        reasons = [*strong_reasons(view, thresholds), *eventual_reasons(self._eventual_view(), thresholds),
                   *removal_reasons(self.id, voters, {p: s.refused_as for p, s in stats.peers.items()})]
        reasons.extend(self._repair_reasons())
        for source in self.health_sources:
            reasons.extend(source())
        return {
            "node": self.id,
            "status": status_of(reasons),
            "reasons": [r.to_json() for r in reasons],
            "strong": {
                "role": status.role.value,
                "leader": leader,
                "ballot": str(status.ballot),
                "voters": voters,
                "quorum": quorum,
                "reachable_voters": sorted(reachable),
                "failures_to_outage": failures_to_outage,
                "commit_index": status.commit_index,
                "applied_index": self.strong.sm.applied_index,
                "lease_valid": status.lease_valid,
                "last_contact_ms": int(status.since_leader_contact * 1000),
                "halted": self.strong.halted,
                #: False while a reset node catches up (it answers no Prepare or Accept)
                "voting": self.strong.replica.voting,
                #: leader only: how many entries each peer's commit index is behind
                "replica_lag": {p: view.commit_index - c for p, c in sorted(view.peer_commit.items())},
                "namespaces": self._strong_namespaces(),
            },
            "eventual": eventual,
            "peer_auth": self._peer_auth_health(),
            #: stores found corrupt at start and rebuilt from the peers (configsvc.quarantine)
            "repairs": list(self.repaired),
            "hash_checks": self.hash_checks.health() if self.hash_checks is not None else {},
        }

    def _strong_namespaces(self) -> dict[str, dict[str, int]]:
        sm = self.strong.sm
        return {i.name: {"keys": sm.key_count(i.name)} for i in sm.namespaces() if i.consistency == "strong"}

    def eventual_digests(self) -> DigestSnapshot:
        """Per eventual namespace of the registry, the digest of this replica's state
        (``eventual.digests``; a namespace without keys: digest 0) with the version
        vector it was taken at; recomputed at most every ``health.peer_report_max_age``."""
        now = time.monotonic()
        snap = self._digests
        if snap is None or now - snap.at >= self.config.health.peer_report_max_age:
            replica = self.eventual.replica
            found = namespace_digests(replica.store.entries)
            snap = self._digests = DigestSnapshot(
                {i.name: found.get(i.name, NamespaceDigest())
                 for i in self.strong.sm.namespaces() if i.consistency == "eventual"},
                dict(replica.vv), now)
        return snap

    def _eventual_view(self) -> EventualView:
        status = self.eventual.status()
        swim = self.membership
        members = swim.peer_states() if swim is not None else []
        return EventualView(
            self.id, self.eventual.halted, status.peer_lag,
            tuple(m.id for m in members if m.state is MemberState.SUSPECT),
            tuple(m.id for m in members if m.state is MemberState.DEAD),
            status.divergences, status.self_preservation.active,
        )

    def _peer_auth_health(self) -> dict[str, Any]:
        """Refused inbound peer handshakes: the total and by reason (``TransportStats``)."""
        assert self.transport is not None
        stats = self.transport.stats()
        return {"rejected_handshakes": sum(stats.rejected.values()),
                "rejected": dict(sorted(stats.rejected.items())),
                "auth_failures": {p: s.auth_failures for p, s in sorted(stats.peers.items())}}

    def _eventual_health(self) -> dict[str, Any]:
        status = self.eventual.status()
        digests = self.eventual_digests()
        return {
            "replica": status.replica,
            "events_pending_causal_past": status.pending,
            "events_not_yet_stable": status.log_events,
            "peer_lag": dict(sorted(status.peer_lag.items())),
            "rejoining": list(status.rejoining),
            "divergences": status.divergences,
            "self_preservation": {
                "active": status.self_preservation.active,
                "active_seconds": round(status.self_preservation.active_for, 1),
                "instances_with_ttl": status.self_preservation.held,
                "instances_silent": status.self_preservation.silent,
            },
            "halted": self.eventual.halted,
            "membership": self._membership_health(),
            #: the version vector the digests were taken at: equal vectors, equal digests
            "vv": dict(sorted(digests.vv.items())),
            "digests_age_ms": int((time.monotonic() - digests.at) * 1000),
            "namespaces": {ns: {"digest": d.hex, "keys": d.keys, "instances": d.instances}
                           for ns, d in sorted(digests.digests.items())},
        }

    def _membership_health(self) -> dict[str, Any]:
        if self.membership is None:
            return {}
        m = self.membership.status()
        return {"alive": m.alive, "suspect": m.suspect, "dead": m.dead,
                "alive_peers": self.membership.alive, "health_score": m.health_score}

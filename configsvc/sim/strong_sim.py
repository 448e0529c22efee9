"""Seeded simulation of the strong store: faults, then heal, then checks.

One seed = one run:

1. **Safety phase.** Clients run while the network drops, duplicates, delays
   and reorders messages, partitions come and go (random split, isolated
   leader, bridge node, one-way links, flapping), nodes crash (losing
   unsynced records) and restart, and every clock drifts within the bound.
2. **Liveness phase.** Every fault stops and every node restarts. Every client
   operation invoked from then on must complete within ``liveness_bound``.
3. **Whole-cluster restart.** Every node crashes at once and restarts from
   its disk; an auditor then reads every key (part of the history).

Checkers, kept apart from the cluster (``configsvc.sim.strong_checks``):
linearizability per key; every pair of replicas applied the same value at
every slot both applied and the same state hash at equal indexes; no
acknowledged write lost; liveness as above.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from configsvc.sim import strong_schedules as schedules
from configsvc.sim.runner import SeedResult
from configsvc.sim.strong_checks import Observer, check_history, lost_writes
from configsvc.sim.strong_client import HistoryOp, SimStrongClient
from configsvc.sim.strong_members import MembershipAdmin, leader_handoff, split_leader
from configsvc.sim.strong_node import SimStrongNode
from configsvc.sim.strong_readers import OpenLoopReaders
from configsvc.sim.strong_swarm import swarm
from configsvc.sim.world import NetworkFaults, World
from strong.commands import Command, encode_command
from strong.config import PlantedBugs, ReplicaConfig
from strong.messages import Accepted, Promise
from strong.ops import CreateNamespace
from strong.ready import Role
from strong.sm_snapshot import snapshot_decodes
from strong.state_machine import StateMachine

FOLD = {"max_op_latency_s": "max", "unknown_ops": "sum", "elections": "sum",
        "member_changes": "sum", "handoffs": "sum", "rehanded": "sum"}
NAMESPACE = "sim"


@dataclass(frozen=True)
class StrongSimConfig:
    nodes: tuple[int, ...] = (3, 5)
    clients: int = 32
    keys: int = 10
    safety_seconds: float = 6.0
    liveness_seconds: float = 3.0
    #: every operation invoked after the heal must complete within this (simulated seconds)
    liveness_bound: float = 4.0
    max_drift: float = 0.01
    network: NetworkFaults = field(
        # LAN-like delays, a little faster than an fsync, as on real machines
        default_factory=lambda: NetworkFaults(
            drop=0.03, duplicate=0.02, delay_min=0.0002, delay_mean=0.0008, slow=0.05
        )
    )
    partitions: bool = True
    crashes: bool = True
    bugs: PlantedBugs = field(default_factory=PlantedBugs)
    #: planted bug: the state machine forgets its client table
    skip_dedup: bool = False
    #: planted bug (finding 7): a node whose disk was wiped comes back as a voter
    wiped_votes: bool = False
    snapshot_every: int = 40
    #: every replica hashes its state at applied indexes divisible by this
    hash_every: int = 20
    #: how often each node's replica is ticked (simulated seconds)
    tick_interval: float = 0.01
    #: a client waits up to this long (uniformly) between operations
    think: float = 0.01
    #: relative weights of fault kinds; None = the default mix
    fault_weights: tuple[tuple[str, int], ...] | None = None
    # Replica timing and sizing (``strong.config.ReplicaConfig``'s fields).
    heartbeat_interval: float = 0.05
    election_timeout: float = 0.5
    lease_duration: float = 0.35
    retransmit_interval: float = 0.1
    window: int = 32
    max_batch: int = 128
    catchup_max_slots: int = 128
    max_batch_bytes: int = 1 << 20
    catchup_max_bytes: int = 8 << 20
    #: a receiver refuses a message carrying more command bytes than this (frame cap)
    max_message_bytes: int = 64 << 20
    #: fsync latency range of every simulated disk (seconds)
    fsync_latency: tuple[float, float] = (0.0005, 0.005)
    #: bytes of padding appended to every written value, drawn per write from this range
    value_padding: tuple[int, int] = (0, 0)
    #: a client's attempt times out after this long; it gives up after ``give_up_after``
    attempt_timeout: float = 0.25
    give_up_after: float = 2.0
    #: fraction of client operations that are linearizable reads
    read_fraction: float = 0.40
    #: linearizable reads per second from independent (open-loop) clients; 0 = none
    open_loop_reads: float = 0.0
    #: seconds between two faults, drawn uniformly from this range
    fault_interval: tuple[float, float] = (0.3, 2.0)
    #: nodes hand every unanswered session write to a new leader (the production
    #: driver's ``StrongDriver._rehand``); off by default so recorded seeds stay the
    #: runs they were; the ``rehand`` profile of ``configsvc.sim.planted`` turns it on
    rehand: bool = False
    #: draw the fields above (and a subset of fault kinds) from the seed: swarm testing
    swarm: bool = True
    #: fields a profile pins: the swarm leaves them as they are
    pinned: tuple[str, ...] = ()
    #: what the swarm drew, printed with the replay line ("" when not randomised)
    description: str = ""

    def replica_config(self, node_id: str, voters: tuple[str, ...],
                       learners: tuple[str, ...] = ()) -> ReplicaConfig:
        return ReplicaConfig(
            node_id,
            voters,
            learners=learners,
            heartbeat_interval=self.heartbeat_interval,
            election_timeout=self.election_timeout,
            max_drift=self.max_drift,
            lease_duration=self.lease_duration,
            window=self.window,
            max_batch=self.max_batch,
            retransmit_interval=self.retransmit_interval,
            catchup_max_slots=self.catchup_max_slots,
            max_batch_bytes=self.max_batch_bytes,
            catchup_max_bytes=self.catchup_max_bytes,
            snapshot_valid=snapshot_decodes,
            bugs=self.bugs,
        )


class StrongSim:
    def __init__(self, seed: int, config: StrongSimConfig) -> None:
        self.seed = seed
        if config.swarm:
            config = swarm(seed, config)
        self.config = config
        rng = random.Random(seed)
        n = rng.choice(config.nodes)
        self.node_ids = [f"n{i + 1}" for i in range(n)]
        self.world = World(seed, self.node_ids, max_drift=config.max_drift)
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.observer = Observer()
        self.history: list[HistoryOp] = []
        make_sm = _forgetful_state_machine if config.skip_dedup else StateMachine
        self.make_sm = make_sm
        self.nodes = {
            nid: SimStrongNode(
                self.world,
                config.replica_config(nid, tuple(self.node_ids)),
                fsync_latency=config.fsync_latency,
                max_message_bytes=config.max_message_bytes,
                snapshot_every=config.snapshot_every,
                hash_every=config.hash_every,
                tick_interval=config.tick_interval,
                rehand=config.rehand,
                on_apply=self.observer.applied,
                on_hash=self.observer.hashed,
                make_state_machine=make_sm,
            )
            for nid in self.node_ids
        }
        for node in self.nodes.values():
            node.wiped_votes = config.wiped_votes
        self.clients = [
            SimStrongClient(
                self.world,
                i,
                self.node_ids,
                NAMESPACE,
                [f"k{j}" for j in range(config.keys)],
                self.history,
                random.Random(self.rng.getrandbits(64)),
                attempt_timeout=config.attempt_timeout,
                give_up_after=config.give_up_after,
                think=config.think,
                value_padding=config.value_padding,
                read_fraction=config.read_fraction,
            )
            for i in range(config.clients)
        ]
        self.readers = (
            OpenLoopReaders(self.world, self.node_ids, config.open_loop_reads, NAMESPACE,
                            random.Random(self.rng.getrandbits(64)))
            if config.open_loop_reads else None
        )
        self.faults_on = False
        self.flapping = False
        #: the operator adding, removing and replacing nodes (``member_change`` faults)
        self.admin = MembershipAdmin(self, random.Random(f"strong-members-{seed}"))

    # ------------------------------------------------------------------ phases

    def run(self) -> SeedResult:
        cfg = self.config
        self._bootstrap()
        t0 = self.world.now
        heal_at = t0 + cfg.safety_seconds
        self.faults_on = True
        self.world.faults = cfg.network
        for client in self.clients:
            client.start()
        if self.readers is not None:
            self.readers.start()
        self._schedule_fault()
        self.world.run_until(heal_at)
        self._heal()
        for client in self.clients:
            client.give_up_after = cfg.liveness_bound * 3
        live_from = self.world.now
        self.world.run_until(live_from + cfg.liveness_seconds)
        for client in self.clients:
            client.stop()
        if self.readers is not None:
            self.readers.stop()
        self.world.run_until(
            self.world.now + cfg.liveness_bound * 3, stop=lambda: all(c.idle for c in self.clients)
        )
        caught_up = self._wait_converged(cfg.liveness_bound)
        disruption = self._stickiness_probe() if caught_up else ""
        self._restart_everything()
        audit_from = self.world.now
        auditor = self.clients[0]
        auditor.script = [(k, ("get",)) for k in auditor.keys]
        auditor.start()
        self.world.run_until(
            self.world.now + cfg.liveness_bound * 3, stop=lambda: not auditor.script and auditor.idle
        )
        auditor.stop()
        return self._verdict(live_from, audit_from, caught_up, disruption)

    def _bootstrap(self) -> None:
        """Create the namespace through the log, retrying until some leader takes it."""
        cmd = encode_command(Command("bootstrap", 1, CreateNamespace(NAMESPACE, "strong", ())))
        done = False

        def try_once() -> None:
            nonlocal done
            for node in self.nodes.values():
                if node.up and not node.busy and node.replica.role is Role.LEADER:
                    node.replica.propose(0, cmd, node._now())
                    node._process()
            if not done:
                self.world.after(0.2, try_once)

        def created() -> bool:
            return all(
                any(ns.name == NAMESPACE for ns in node.sm.namespaces()) for node in self.nodes.values()
            )

        self.world.after(0.0, try_once)
        done = self.world.run_until(30.0, stop=created)
        if not done:
            raise RuntimeError(f"seed {self.seed}: cluster never created its namespace")

    # ------------------------------------------------------------------ faults

    def _schedule_fault(self) -> None:
        if self.faults_on:
            self.world.after(self.rng.uniform(*self.config.fault_interval), self._fault)

    def while_faulty(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        """Run a fault's later step only if the faults are still on: nothing a
        fault scheduled may cut, drop or crash after the heal."""

        def step() -> None:
            if self.faults_on:
                action(*args)

        self.world.after(delay, step)

    def leader(self) -> str | None:
        leaders = [n.id for n in self.nodes.values() if n.up and n.replica.role is Role.LEADER]
        return self.rng.choice(leaders) if leaders else None

    def _fault(self) -> None:
        if not self.faults_on:
            return
        cfg, world, rng = self.config, self.world, self.rng
        weights = {"heal": 2}
        if cfg.partitions:
            weights |= {"split": 1, "isolate_leader": 1, "bridge": 2, "leader_partial": 2}
            weights |= {"gray_leader": 3}
            weights |= {"one_way": 1, "flap": 1}
        if cfg.crashes:
            weights |= {"crash": 1, "crash_leader": 1, "crash_after_send": 3}
            weights |= {"power_loss": 1, "restart": 1}
        if cfg.fault_weights is not None:
            weights = dict(cfg.fault_weights)
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
        self.flapping = False
        if kind == "heal":
            world.heal()
        elif kind == "split":
            world.random_split()
        elif kind == "isolate_leader":
            leader = self.leader()
            if leader:
                world.isolate(leader)
        elif kind == "leader_partial":
            # The leader loses a minority of followers, who elect through the rest.
            leader = self.leader()
            if leader:
                others = [n for n in self.node_ids if n != leader]
                for peer in rng.sample(others, max(1, (len(others) - 1) // 2)):
                    world.cut.update({(leader, peer), (peer, leader)})
        elif kind == "gray_leader":
            # A gray failure: a minority loses the leader entirely, and the
            # others' replies reach it late, so it learns of a successor late.
            leader = self.leader()
            if leader:
                others = [n for n in self.node_ids if n != leader]
                lost = rng.sample(others, max(1, (len(others) - 1) // 2))
                for peer in others:
                    if peer in lost:
                        world.cut.update({(leader, peer), (peer, leader)})
                    else:
                        world.slow_links[(peer, leader)] = rng.uniform(0.1, 0.4)
                if cfg.crashes and rng.random() < 0.5:
                    # ...and a follower that still hears the leader reboots right
                    # after voting for the challenger.
                    voter = rng.choice([p for p in others if p not in lost])
                    self.nodes[voter].crash_after_send[Promise] = rng.uniform(0.05, 0.3)
        elif kind == "lease_overlap":
            schedules.lease_overlap(self)
        elif kind == "stale_catchup":
            schedules.stale_catchup(self)
        elif kind == "ballot_split":
            schedules.ballot_split(self)
        elif kind == "wipe":
            # One disk lost per seed: the learner never votes again, and a
            # second would leave a 3-replica group without a quorum for good.
            if all(n.voting and not n.decommissioned for n in self.nodes.values()):
                node = self.nodes[rng.choice(self.node_ids)]
                node.wipe()
                world.after(rng.uniform(0.05, 1.0), node.restart)
        elif kind == "member_change":
            self.admin.begin()
        elif kind == "split_leader":
            split_leader(self)
        elif kind == "member_laggard":
            self.admin.begin_laggard()
        elif kind == "member_pipeline":
            self.admin.begin_pipelined()
        elif kind == "leader_handoff":
            leader_handoff(self)
        elif kind == "bridge":
            world.bridge(rng.choice(self.node_ids))
        elif kind == "one_way":
            a, b = rng.sample(self.node_ids, 2)
            world.one_way(a, b)
        elif kind == "flap":
            self.flapping = True
            self._flap(rng.choice(self.node_ids), 6)
        elif kind in ("crash", "crash_leader"):
            target = self.leader() if kind == "crash_leader" else rng.choice(self.node_ids)
            if target:
                self.nodes[target].crash()
                world.after(rng.uniform(0.05, 1.5), self.nodes[target].restart)
        elif kind == "crash_after_send":
            node = self.nodes[rng.choice(self.node_ids)]
            # Two arms: the next Accepted (soon, under load) and the next
            # Promise (at the next election this node votes in).
            for reply in (Accepted, Promise):
                node.crash_after_send[reply] = rng.uniform(0.05, 0.6)
        elif kind == "power_loss":
            for node in self.nodes.values():
                node.crash()
            world.after(rng.uniform(0.05, 0.5), self._restart_all)
        elif kind == "staggered_power_loss":
            # Hosts reboot at different speeds: the leader (or a random node) comes
            # back last, after the others may have elected without it.
            late = self.leader() or rng.choice(self.node_ids)
            for node in self.nodes.values():
                node.crash()
            early = [self.nodes[n] for n in self.node_ids if n != late]
            world.after(rng.uniform(0.05, 0.5), self._restart_all, early)
            world.after(rng.uniform(1.0, 3.0), self.nodes[late].restart)
        elif kind == "restart":
            for node in self.nodes.values():
                node.restart()
        self._schedule_fault()

    def _restart_all(self, nodes: list[SimStrongNode] | None = None) -> None:
        for node in self.nodes.values() if nodes is None else nodes:
            node.restart()

    def _flap(self, node: str, times: int) -> None:
        if not self.flapping or not self.faults_on or times == 0:
            return
        if times % 2 == 0:
            self.world.isolate(node)
        else:
            self.world.heal()
        self.world.after(self.rng.uniform(0.02, 0.3), lambda: self._flap(node, times - 1))

    def _heal(self) -> None:
        self.faults_on = False
        self.flapping = False
        self.world.heal()
        self.world.faults = NetworkFaults.none()
        for node in self.nodes.values():
            node.crash_after_send.clear()
            node.restart()

    def in_service(self) -> list[SimStrongNode]:
        """Nodes of the current configuration that are not out of service for good."""
        members = self.admin.view().members
        return [n for n in self.nodes.values() if n.id in members and not n.decommissioned]

    def _wait_converged(self, bound: float) -> bool:
        def converged() -> bool:
            nodes = self.in_service()
            indexes = {n.sm.applied_index for n in nodes}
            commits = {n.replica.commit_index for n in nodes}
            return not self.admin.script and len(indexes) == 1 and indexes == commits

        return self.world.run_until(self.world.now + bound, stop=converged)

    def _stickiness_probe(self) -> str:
        """Cut one follower off for several election timeouts, heal, and require
        the leader to keep its ballot: a returning node must not depose a leader
        the majority follows (pre-vote). Returns "" or what went wrong."""
        leaders = [n for n in self.nodes.values() if n.up and n.replica.role is Role.LEADER]
        if len(leaders) != 1:
            return ""
        leader = leaders[0]
        ballot = leader.replica.promised
        serving = self.in_service()
        voters = sum(1 for n in serving if n.voting and n.id in leader.replica.members.voters)
        followers = [n.id for n in serving if n.id != leader.id]
        if voters - 1 < leader.replica.quorum:  # cutting a voter off loses the quorum
            followers = [n for n in followers
                         if not (self.nodes[n].voting and n in leader.replica.members.voters)]
        if not followers:
            return ""
        follower = self.rng.choice(followers)
        timeout = self.config.election_timeout
        self.world.isolate(follower)
        self.world.run_until(self.world.now + 6 * timeout)
        self.world.heal()
        self.world.run_until(self.world.now + 4 * timeout)
        if leader.replica.role is not Role.LEADER or leader.replica.promised != ballot:
            return (
                f"{follower}, cut off for {6 * timeout:.2f}s and back, deposed leader "
                f"{leader.id} (ballot {ballot} -> {leader.replica.promised})"
            )
        return ""

    def _restart_everything(self) -> None:
        for node in self.nodes.values():
            node.crash()
        for node in self.nodes.values():
            node.restart()

    # ------------------------------------------------------------------ verdict

    def _verdict(
        self, live_from: float, audit_from: float, caught_up: bool, disruption: str
    ) -> SeedResult:
        cfg = self.config
        unknown = sum(1 for op in self.history if op.ret is None)
        result = SeedResult(
            seed=self.seed,
            ok=True,
            config=cfg.description,
            ops=len(self.history),
            ops_checked=len(self.history),
            stats={
                "max_op_latency_s": max((c.max_latency for c in self.clients), default=0.0),
                "unknown_ops": float(unknown),
                "member_changes": float(sum(self.admin.done.values())),
                "handoffs": float(self.admin.handoffs),
                "rehanded": float(sum(n.rehanded for n in self.nodes.values())),
            },
        )
        if self.observer.violation:
            return _fail(result, "agreement", self.observer.violation, self.observer.excerpt)
        lin = check_history(self.history)
        if lin.violation is not None:
            return _fail(result, "linearizability", lin.violation, lin.excerpt)
        if lin.inconclusive:
            # Never a pass: a history the search could not decide proves nothing.
            return _fail(result, "inconclusive", "linearizability search ran out of budget", [])
        lost = lost_writes(self.history, self.observer)
        if lost:
            return _fail(result, "lost_write", "acknowledged write lost",
                         [op.describe() for op in lost[:5]])
        late = [
            op
            for op in self.history
            if op.call >= live_from and (op.ret is None or op.ret - op.call > cfg.liveness_bound)
        ]
        late_reads = sum(1 for c in self.clients for t in c.gave_up_reads if t >= live_from)
        if self.readers is not None:
            late_reads += self.readers.late(live_from, cfg.liveness_bound)
        if late_reads:
            return _fail(result, "liveness",
                         f"liveness: {late_reads} read(s) after the heal never completed", [])
        if late:
            return _fail(
                result,
                "liveness",
                f"liveness: {len(late)} operation(s) after the heal took longer than "
                f"{cfg.liveness_bound}s or never completed",
                [op.describe() for op in late[:5]],
            )
        if not caught_up:
            return _fail(result, "liveness", "liveness: replicas did not converge after the heal", [])
        if disruption:
            return _fail(result, "disruption", "liveness: a returning node deposed the leader",
                         [disruption])
        audited = [op for op in self.history if op.call >= audit_from]
        if len(audited) < cfg.keys:
            return _fail(result, "liveness",
                         "liveness: the audit after a whole-cluster restart did not finish", [])
        return result


def _fail(result: SeedResult, checker: str, violation: str, excerpt: list[str]) -> SeedResult:
    result.ok = False
    result.checker = checker
    result.violation = violation
    result.excerpt = excerpt
    return result


class _ForgetfulStateMachine(StateMachine):
    """Planted bug: every retry is applied again (the client table is ignored)."""

    def apply(self, slot: int, batch: tuple[bytes, ...]):  # type: ignore[no-untyped-def]
        self._sessions.clear()
        return super().apply(slot, batch)


def _forgetful_state_machine() -> StateMachine:
    return _ForgetfulStateMachine()


def run_seed(seed: int, config: StrongSimConfig | None = None) -> SeedResult:
    sim = StrongSim(seed, config or StrongSimConfig())
    try:
        return sim.run()
    except Exception as exc:  # an invariant broke inside the cluster: a failure, never a pass
        lines = traceback.format_exception(exc)
        return SeedResult(
            seed=seed,
            ok=False,
            checker="exception",
            config=sim.config.description,
            ops=len(sim.history),
            violation=f"exception at simulated t={sim.world.now:.4f}: {exc!r}",
            excerpt=[line.rstrip() for line in "".join(lines[-6:]).splitlines()],
        )

"""Seeded simulation of the eventual store: faults, then heal, then checks.

One seed = one run, with its own configuration and subset of fault kinds
(swarm testing, ``configsvc.sim.eventual_swarm``; printed with the replay line):

1. **Safety phase.** Clients (sessions that move between nodes) read,
   write with and without contexts, delete, list, and register/heartbeat/
   deregister service instances on both sides of partitions, while the
   network drops, duplicates, delays and reorders messages, partitions come
   and go (random split, isolated node, bridge node, one-way link), nodes
   crash (losing unsynced records) and restart, and clocks drift within the
   bound. Some seeds keep one node away (isolated or down) beyond the
   collection horizon; some wipe a node's disk (it returns with a new
   identity); some lose power everywhere at once, and every node comes back
   with its disk (and log floor) but one, which comes back wiped.
2. **Convergence phase.** Every fault stops, every node restarts, clients
   stop. All replicas must hold identical state (same canonical encoding)
   within ``convergence_bound`` simulated seconds of the heal.
3. **Checks** (``configsvc.sim.eventual_checks``): session guarantees,
   causal consistency, every read against the reference semantics, no
   acknowledged write lost, no resurrection, convergence, and full state
   transfers only to replicas that were away beyond the horizon; and, sampled
   every 0.25 s during the faults, replicas with equal version vectors hold
   identical states. A violation starts with its checker's name (``CHECKERS``).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from configsvc.sim.eventual_checks import (
    CHECKERS,
    Registry,
    check_causal,
    check_final,
    check_full_states,
    check_groups,
    check_reads,
    check_sessions,
    checker_of,
    final_kind,
    lww_overwritten,
)
from configsvc.sim.eventual_client import HistoryOp, SimEventualClient, Workload
from configsvc.sim.eventual_node import SimEventualNode
from configsvc.sim.eventual_swarm import draw, fixed
from configsvc.sim.runner import SeedResult
from configsvc.sim.world import NetworkFaults, World
from eventual.codec import canonical_state
from eventual.config import PlantedBugs, ReplicaConfig
from eventual.dots import Dot, vv_covers, vv_leq
from eventual.messages import Event, FullState
from eventual.requests import CausallyBehind
from eventual.storage import recover

__all__ = ["CHECKERS", "FOLD", "EventualSim", "EventualSimConfig", "checker_of", "run_seed"]

FOLD = {
    "worst_convergence_s": "max",
    "lww_overwritten": "sum",
    "full_states": "sum",
    "causally_behind": "sum",
    "long_absences": "sum",
    "wipes": "sum",
    "lost_with_disk": "sum",
}


@dataclass(frozen=True)
class EventualSimConfig:
    nodes: tuple[int, ...] = (3, 5)
    clients: tuple[int, int] = (4, 10)
    safety_seconds: float = 10.0
    #: every replica must be identical this long (simulated seconds) after the heal
    convergence_bound: float = 5.0
    max_drift: float = 0.01
    gc_horizon: float = 3.0
    gossip_interval: float = 0.2
    fanout: int = 3
    max_drop: float = 0.1
    max_duplicate: float = 0.1
    max_slow: float = 0.1
    #: without swarm testing: whether partitions and crashes happen
    partitions: bool = True
    crashes: bool = True
    #: probability that a seed keeps one node away beyond the horizon
    long_absence: float = 0.3
    #: probability that a seed wipes one node's disk
    wipe: float = 0.08
    #: draw each seed's configuration and fault kinds (``configsvc.sim.eventual_swarm``);
    #: False: the fixed parameters above and every fault kind but the new ones
    swarm: bool = True
    bugs: PlantedBugs = field(default_factory=PlantedBugs)
    workload: Workload = field(default_factory=Workload)


class EventualSim:
    def __init__(self, seed: int, config: EventualSimConfig) -> None:
        self.seed = seed
        self.config = config
        rng = random.Random(seed)
        self.sc = sc = (draw(seed, config.nodes, config.clients) if config.swarm else
                        fixed(rng, config.nodes, config.clients, config.fanout,
                              config.gossip_interval, config.gc_horizon,
                              partitions=config.partitions, crashes=config.crashes))
        self.node_ids = [f"n{i + 1}" for i in range(sc.nodes)]
        self.world = World(seed, self.node_ids, max_drift=config.max_drift)
        self.rng = random.Random(self.world.rng.getrandbits(64))
        self.registry = Registry()
        self.history: list[HistoryOp] = []
        self.timeline: list[str] = []
        self.full_states: list[tuple[float, str, str, bool, float, bool]] = []
        self.wiped: dict[str, float] = {}
        self.lost_with_disk: set[Dot] = set()
        self.long_absences = 0
        self.absent: set[str] = set()
        self.divergence: str | None = None
        w = config.workload
        self.merge_of = {w.kv_namespace: "mvr", w.lww_namespace: "lww", w.svc_namespace: "mvr"}
        self.nodes = {
            nid: SimEventualNode(
                self.world,
                ReplicaConfig(
                    nid, tuple(self.node_ids), namespaces={w.lww_namespace: "lww"},
                    gossip_interval=sc.gossip_interval, fanout=sc.fanout,
                    gc_horizon=sc.gc_horizon, max_delta_bytes=sc.max_delta_bytes,
                    max_delta_events=sc.max_delta_events,
                    max_full_state_bytes=sc.max_full_state_bytes,
                    snapshot_every=sc.snapshot_every, eager_push=sc.eager_push,
                    full_state_cooldown=sc.full_state_cooldown,
                    repair_interval=sc.repair_interval, bugs=config.bugs,
                ),
                on_event=self._on_event,
                on_full_state=self._on_full_state,
            )
            for nid in self.node_ids
        }
        self.clients = [
            SimEventualClient(self.world, f"c{i + 1}", self.node_ids,
                              random.Random(self.rng.getrandbits(64)), self.history,
                              workload=w, stop_at=config.safety_seconds)
            for i in range(sc.clients)
        ]

    # ------------------------------------------------------------------ observers

    def _on_event(self, node: str, event: Event) -> None:
        self.registry.add(event)

    def _on_full_state(self, t: float, src: str, dst: str, msg: FullState) -> None:
        # Justified if any node (the sender, or one whose state reached it) went
        # the horizon without hearing from dst.
        away = max(n.silence(dst) for n in self.nodes.values() if n.id != dst)
        receiver = self.nodes[dst]
        has = (receiver.replica.vv if receiver.up
               else recover(receiver.storage.load()).store.context.vv)
        needed = not vv_leq(self.nodes[src].replica.log.floor, has)
        self.full_states.append((t, src, dst, msg.reply, away, needed))

    # ------------------------------------------------------------------ faults

    def _at(self, t: float, what: str, action: Callable[[], None]) -> None:
        def run() -> None:
            action()
            self.timeline.append(f"t={self.world.now:.3f} {what}")

        self.world.at(t, run)

    def _schedule_faults(self) -> None:
        c, sc, rng, world = self.config, self.sc, self.rng, self.world
        on = sc.faults.__contains__
        world.faults = NetworkFaults(
            drop=rng.uniform(0, c.max_drop) if on("drop") else 0.0,
            duplicate=rng.uniform(0, c.max_duplicate) if on("duplicate") else 0.0,
            delay_min=0.0005, delay_mean=0.002,
            slow=rng.uniform(0, c.max_slow) if on("reorder") else 0.0, slow_delay=0.05,
        )
        self.timeline.append(f"t=0.000 network {world.faults}")
        if on("latency"):
            for a in self.node_ids:
                for b in self.node_ids:
                    if a != b and rng.random() < 0.5:
                        world.slow_links[(a, b)] = rng.uniform(0, sc.max_link_latency)
            slowest = max(world.slow_links.values(), default=0.0)
            self.timeline.append(f"t=0.000 {len(world.slow_links)} slow links, slowest "
                                 f"+{slowest * 1000:.0f} ms")
        end = c.safety_seconds - 0.2
        short = min(2.0, sc.gc_horizon * 0.6)
        # Without swarm testing, long absences and wipes happen to some seeds only.
        if on("long_absence") and (c.swarm or rng.random() < c.long_absence):
            self._long_absence(rng.uniform(0.3, max(0.4, end - sc.gc_horizon * 1.6)))
        elif on("partitions"):
            # Partitions come and go; most seeds end the safety phase partitioned,
            # so the convergence phase starts from sides that wrote independently.
            t = rng.uniform(0.2, 1.5)
            while t < end - 0.3:
                length = rng.uniform(0.3, short)
                kind = rng.choice(["split", "isolate", "bridge", "one_way"])
                self._at(t, f"partition {kind}", self._partitioner(kind))
                if t + length < end or rng.random() < 0.3:
                    self._at(min(t + length, end), "heal", world.heal)
                t += length + rng.uniform(0.2, 1.5)
        if on("crashes"):
            for _ in range(rng.randint(0, 2)):
                node = rng.choice([n for n in self.node_ids if n not in self.absent])
                t = rng.uniform(0.2, end - 0.5)
                down = rng.uniform(0.1, short)
                self._at(t, f"crash {node}", self.nodes[node].crash)
                self._at(min(t + down, end), f"restart {node}", self.nodes[node].restart)
        if on("wipe") and (c.swarm or rng.random() < c.wipe):
            node = rng.choice([n for n in self.node_ids if n not in self.absent]
                              or self.node_ids)
            t = rng.uniform(0.5, end - 1.0)
            self._at(t, f"crash {node} (disk lost)", self.nodes[node].crash)
            self._at(t + rng.uniform(0.1, 0.8), f"restart {node} wiped",
                     lambda: self._wipe_restart(node))
        if on("outage_wipe"):
            self._outage_wipe(rng.uniform(end * 0.45, end - 1.5))

    def _outage_wipe(self, t: float) -> None:
        """Every node that is up goes down at once (a power loss); all but one come
        back with what they synced (so with the log floor of their last snapshot and
        without the rejoining marks, which are not durable); the last one comes
        back wiped, with a new identity that nobody has heard of."""
        rng = self.rng
        back = t + rng.uniform(0.05, 0.3)
        wiped_at = back + rng.uniform(0.05, 0.5)

        def power_loss() -> None:
            up = [n for n in self.node_ids if self.nodes[n].up and n not in self.absent]
            if not up:
                return
            victim = rng.choice(up)
            for n in up:
                self.nodes[n].crash()
            for n in up:
                if n != victim:
                    self.world.at(back, self.nodes[n].restart)
            self._at(wiped_at, f"restart {victim} wiped", lambda: self._wipe_restart(victim))

        self._at(t, "power loss: every node down, all but one back with their disks",
                 power_loss)

    def _partitioner(self, kind: str) -> Callable[[], None]:
        return lambda: self._partition(kind)

    def _partition(self, kind: str) -> None:
        world = self.world
        match kind:
            case "split":
                world.random_split()
            case "isolate":
                world.isolate(self.rng.choice(self.node_ids))
            case "bridge":
                world.bridge(self.rng.choice(self.node_ids))
            case _:
                a, b = self.rng.sample(self.node_ids, 2)
                world.one_way(a, b)

    def _long_absence(self, t: float) -> None:
        """One node (or, sometimes, all but one) away beyond the horizon: isolated,
        split off, or down; restarts are staggered so the survivors' full states
        travel on through nodes that came back first."""
        rng = self.rng
        length = self.sc.gc_horizon * rng.uniform(1.3, 1.5)
        many = len(self.node_ids) > 2 and rng.random() < 0.3
        away = (rng.sample(self.node_ids, len(self.node_ids) - 1) if many
                else [rng.choice(self.node_ids)])
        self.long_absences += 1
        self.absent.update(away)
        if not many and rng.random() < 0.5:
            node = away[0]
            self._at(t, f"isolate {node} beyond the horizon", lambda: self.world.isolate(node))
            self._at(t + length, "heal", self.world.heal)
            return
        for i, node in enumerate(away):
            self._at(t, f"crash {node} beyond the horizon", self.nodes[node].crash)
            self._at(t + length + 0.4 * i, f"restart {node}", self.nodes[node].restart)

    def _wipe_restart(self, node: str) -> None:
        self.wiped.setdefault(node, self.world.now)  # the first wipe: full states are due from then on
        # Writes on the lost disk and on no other replica are lost with it (durability
        # is local before the ack): the checker exempts them. Not only this disk's own
        # writes: after an earlier wipe, this disk may have held the last copy of
        # another node's write (two disks lost; found by seeds 248 and 328).
        held = [recover(n.storage.load()).store.context.vv if not n.up else n.replica.vv
                for n in self.nodes.values() if n.id != node]
        self.lost_with_disk |= {d for d in self.registry.events
                                if not any(vv_covers(vv, d) for vv in held)}
        self.nodes[node].restart(wipe=True)

    # ------------------------------------------------------------------ run

    def _converged(self) -> bool:
        nodes = list(self.nodes.values())
        if any(not n.up or n.busy or n.inbox for n in nodes):
            return False
        first = nodes[0].replica
        return all(n.replica.vv == first.vv and n.replica.state_hash == first.state_hash
                   for n in nodes[1:])

    def _sample_states(self) -> None:
        """Replicas that have applied the same events (equal version vectors) must
        hold the same state: compare canonical encodings, every 0.25 s."""
        if self.divergence is None:
            groups: dict[tuple[tuple[str, int], ...], list[SimEventualNode]] = {}
            for node in self.nodes.values():
                if node.up:
                    groups.setdefault(tuple(sorted(node.replica.vv.items())), []).append(node)
            for same in groups.values():
                encodings = {n.id: canonical_state(n.replica.store) for n in same}
                if len(set(encodings.values())) > 1:
                    a, b = sorted(encodings)[:2]
                    self.divergence = (
                        f"replicas {a} and {b} applied the same events (version vector "
                        f"{dict(same[0].replica.vv)}) but hold different states at "
                        f"t={self.world.now:.3f}")
                    break
        if self.world.now < self.config.safety_seconds:
            self.world.after(0.25, self._sample_states)

    def convergence_bound(self) -> float:
        """Simulated seconds after the heal within which every replica must be identical:
        the configured bound, plus room for slow links and small catch-up messages."""
        sc = self.sc
        small_deltas = sc.max_delta_events < 5 or sc.max_delta_bytes < 8 * 1024
        return (self.config.convergence_bound + 20 * sc.max_link_latency
                + (10 * sc.gossip_interval if small_deltas else 0.0))

    def run(self) -> SeedResult:
        c = self.config
        bound = self.convergence_bound()
        self._schedule_faults()
        for client in self.clients:
            client.start()
        self.world.after(0.25, self._sample_states)
        self.world.run_until(c.safety_seconds)
        heal_at = self.world.now
        self.world.heal()
        self.world.faults = NetworkFaults.none()
        for node in self.nodes.values():
            node.restart()
        self.timeline.append(f"t={heal_at:.3f} heal, restart all, clients stop")
        converged_at: float | None = None
        t = heal_at
        while t < heal_at + bound:
            t += 0.02
            self.world.run_until(t)
            if self._converged():
                converged_at = self.world.now
                break
        result = SeedResult(self.seed, ok=True, ops=len(self.history),
                            ops_checked=sum(1 for op in self.history if op.result is not None))
        result.config = self.sc.describe()
        result.stats = {
            "worst_convergence_s": (converged_at - heal_at) if converged_at is not None
            else bound,
            "full_states": float(len(self.full_states)),
            "causally_behind": float(sum(isinstance(op.result, CausallyBehind)
                                         for op in self.history)),
            "long_absences": float(self.long_absences),
            "wipes": float(len(self.wiped)),
            "lost_with_disk": float(len(self.lost_with_disk)),
        }
        if self.divergence is not None:
            return self._fail(result, "convergence", self.divergence, [])
        if converged_at is None:
            lines = [f"{n.id}: up={n.up} vv={n.replica.vv} pending={len(n.replica.buffer)} "
                     f"hash={n.replica.state_hash:x}" for n in self.nodes.values()]
            return self._fail(result, "convergence",
                              f"no convergence within {bound:.2f}s of the heal", lines)
        checks: list[tuple[str, Callable[[], tuple[str, list[str]] | None]]] = [
            ("session", lambda: check_sessions(self.history, self.registry, self.merge_of)),
            ("causal", lambda: check_causal(self.history, self.registry)),
            ("atomic", lambda: check_groups(self.history, self.registry)),
            ("reads", lambda: check_reads(self.history, self.registry, self.merge_of)),
            ("final", lambda: check_final(
                {n: node.replica.store for n, node in self.nodes.items()},
                {n: canonical_state(node.replica.store) for n, node in self.nodes.items()},
                self.history, self.registry, self.merge_of, self.lost_with_disk)),
            ("full_state", lambda: check_full_states(
                self.full_states, self.wiped, self.sc.gc_horizon / (1 + c.max_drift) - 0.01)),
        ]
        result.stats["lww_overwritten"] = float(
            lww_overwritten(self.history, self.registry, self.merge_of))
        for checker, check in checks:
            found = check()
            if found is not None:
                return self._fail(result, final_kind(found[0]) if checker == "final" else checker,
                                  *found)
        return result

    def _fail(self, result: SeedResult, checker: str, violation: str,
              lines: list[str]) -> SeedResult:
        result.ok = False
        result.checker = checker
        result.violation = f"[{checker}] {violation}"
        result.excerpt = [*lines[:12], "faults:", *self.timeline[:12]]
        return result


def run_seed(seed: int, config: EventualSimConfig | None = None) -> SeedResult:
    try:
        return EventualSim(seed, config or EventualSimConfig()).run()
    except Exception as exc:  # a crash of the simulation is a failure of the seed
        return SeedResult(seed, ok=False, violation=f"[harness] simulation raised {exc!r}",
                          excerpt=traceback.format_exc().splitlines()[-8:])

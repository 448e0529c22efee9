"""Swarm testing for the eventual simulation: every seed draws its own configuration.

One fixed configuration explores one corner of the space; bugs hide in the
others (tiny delta caps that split every catch-up into many messages, chunked
full states, slow links that reorder digests behind deltas, short collection
horizons, frequent snapshots that make a restart keep a raised log floor).
So each seed draws, from its own random stream (``random.Random`` seeded with
the seed, independent of the run's other draws): the replica parameters
within the bounds below, the link latencies, and a random subset of the fault
kinds (Groce et al., "Swarm Testing", ISSTA 2012: leaving some faults out
lets the others reach deeper). ``describe`` prints it next to the replay line.

With ``swarm=False`` in ``EventualSimConfig`` a seed uses the fixed defaults
and every fault kind (the behaviour before swarm testing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "SeedConfig", "draw", "fixed"]

#: every fault kind a seed may include
FAULT_KINDS = (
    "drop",          # messages lost
    "duplicate",     # messages delivered twice
    "reorder",       # some messages take a long detour
    "latency",       # slow directed links, up to hundreds of ms
    "partitions",    # split, isolate, bridge, one-way, coming and going
    "crashes",       # crash and restart, losing unsynced records
    "long_absence",  # one node (or all but one) away beyond the collection horizon
    "wipe",          # a node loses its disk and comes back with a new identity
    "outage_wipe",   # every node restarts (keeping its log floor), one of them wiped
)


@dataclass(frozen=True)
class SeedConfig:
    nodes: int
    clients: int
    fanout: int
    gossip_interval: float
    gc_horizon: float
    max_delta_bytes: int
    max_delta_events: int
    max_full_state_bytes: int
    snapshot_every: int
    eager_push: bool
    #: the extra one-way delay of the slowest link (seconds); 0 without "latency"
    max_link_latency: float
    faults: frozenset[str]
    full_state_cooldown: float = 1.0
    repair_interval: float = 5.0

    def describe(self) -> str:
        faults = ",".join(k for k in FAULT_KINDS if k in self.faults) or "none"
        return (f"nodes={self.nodes} clients={self.clients} fanout={self.fanout} "
                f"gossip={self.gossip_interval:.3f}s horizon={self.gc_horizon:.2f}s "
                f"delta_cap={self.max_delta_bytes}B/{self.max_delta_events}ev "
                f"full_state_cap={self.max_full_state_bytes}B snapshot_every={self.snapshot_every} "
                f"eager_push={self.eager_push} max_link_latency={self.max_link_latency:.3f}s "
                f"full_state_cooldown={self.full_state_cooldown}s "
                f"repair_interval={self.repair_interval}s faults={faults}")


def fixed(rng: random.Random, nodes: tuple[int, ...], clients: tuple[int, int], fanout: int,
          gossip_interval: float, gc_horizon: float, *, partitions: bool = True,
          crashes: bool = True) -> SeedConfig:
    """The configuration before swarm testing: defaults, every fault kind but the new
    ones (and but partitions or crashes if those are switched off)."""
    off = {"latency", "outage_wipe"} | ({"partitions"} if not partitions else set()) | (
        {"crashes"} if not crashes else set())
    return SeedConfig(
        rng.choice(nodes), rng.randint(*clients), fanout, gossip_interval, gc_horizon,
        128 * 1024, 4096, 4 * 1024 * 1024, 20_000, True, 0.0, frozenset(FAULT_KINDS) - off)


def draw(seed: int, nodes: tuple[int, ...], clients: tuple[int, int]) -> SeedConfig:
    """This seed's configuration (deterministic in ``seed``)."""
    rng = random.Random(f"eventual-swarm-{seed}")
    n = rng.choice(nodes)
    gossip = rng.choice([0.05, 0.1, 0.2, 0.3])
    horizon = rng.uniform(max(1.5, 5 * gossip), 4.0)
    faults = frozenset(k for k in FAULT_KINDS if rng.random() < 0.6)
    return SeedConfig(
        nodes=n,
        clients=rng.randint(*clients),
        fanout=rng.randint(1, max(1, n - 1)),
        gossip_interval=gossip,
        gc_horizon=horizon,
        max_delta_bytes=rng.choice([1024, 2048, 8 * 1024, 128 * 1024]),
        max_delta_events=rng.choice([1, 2, 5, 50, 4096]),
        max_full_state_bytes=rng.choice([1024, 2048, 16 * 1024, 4 * 1024 * 1024]),
        snapshot_every=rng.choice([1, 5, 50, 20_000]),
        eager_push=rng.random() < 0.7,
        max_link_latency=rng.choice([0.05, 0.15, 0.4]) if "latency" in faults else 0.0,
        faults=faults,
        full_state_cooldown=rng.choice([0.25, 1.0, 2.0]),
        repair_interval=rng.choice([0.5, 2.0, 5.0]),
    )

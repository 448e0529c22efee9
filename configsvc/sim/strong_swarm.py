"""Swarm testing for the strong store: every seed draws its own configuration.

One fixed configuration explores one corner of the space: with 128-slot
catch-up replies no catch-up reply is ever cut short, with 40-slot snapshots
compaction races are rare, with sub-millisecond links a heartbeat round never
has company in flight. Following swarm testing (Groce et al., ISSTA 2012),
each seed draws the replica's sizing and timing, the workload, the network and
a random *subset* of fault kinds, so that some seeds leave out the faults that
would otherwise mask a path (a cluster that is always crashing rarely
pipelines a full window).

Invariants of what is drawn:

- Every replica configuration is one production accepts (``ReplicaConfig``
  validates the lease inequality); timing scales with the link latency the
  way an operator would set it (election timeout at least ten one-way
  delays, as etcd recommends), so a liveness failure is a bug, not a
  configuration nobody would run.
- The draw uses its own ``random.Random`` seeded from the seed: the same seed
  replays the same configuration, and the cluster's own randomness is
  untouched by it.
- ``description`` lists every drawn value, printed with the replay line.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import TYPE_CHECKING

from configsvc.sim.world import NetworkFaults

if TYPE_CHECKING:
    from configsvc.sim.strong_sim import StrongSimConfig

#: every fault kind the strong simulation knows, with its default weight
FAULT_KINDS: dict[str, int] = {
    "split": 1,
    "isolate_leader": 1,
    "bridge": 2,
    "leader_partial": 2,
    "gray_leader": 3,
    "one_way": 1,
    "flap": 1,
    "crash": 1,
    "crash_leader": 1,
    "crash_after_send": 3,
    "power_loss": 1,
    "restart": 1,
    "lease_overlap": 1,
    "stale_catchup": 1,
    "ballot_split": 1,
    "wipe": 1,
}

#: kinds added after the long runs of the first set were recorded; each is drawn
#: from its own stream, so a seed that does not draw it keeps the configuration
#: it always had (regression seeds stay the runs they were)
LATER_FAULT_KINDS: dict[str, int] = {
    "staggered_power_loss": 1,
    "member_change": 2,
    "member_pipeline": 1,
    "leader_handoff": 1,
}

#: one-way link latency profiles: (name, delay_min range, extra mean delay range)
_LINKS = (
    ("lan", (0.0001, 0.0005), (0.0002, 0.002)),
    ("metro", (0.001, 0.005), (0.001, 0.01)),
    ("wan", (0.02, 0.15), (0.005, 0.1)),
)


def swarm(seed: int, base: StrongSimConfig) -> StrongSimConfig:
    """``base`` with sizing, timing, workload, network and fault mix drawn from ``seed``.

    Fields a profile pins (``fault_weights`` when given) stay as they are.
    """
    rng = random.Random(f"strong-swarm-{seed}")
    link, (lo_min, hi_min), (lo_mean, hi_mean) = rng.choice(_LINKS)
    delay_min = rng.uniform(lo_min, hi_min)
    delay_mean = delay_min + rng.uniform(lo_mean, hi_mean)
    # Detours: a few messages arrive long after later ones, even after an
    # election (a frame queued on a connection that reconnects late).
    slow = rng.choice((0.0, 0.02, 0.1))
    slow_delay = rng.choice((0.01, 0.05, 0.2, 1.0, 3.0)) + delay_mean
    network = NetworkFaults(
        drop=rng.choice((0.0, 0.01, 0.03, 0.1)),
        duplicate=rng.choice((0.0, 0.02, 0.1)),
        delay_min=delay_min,
        delay_mean=delay_mean,
        slow=slow,
        slow_delay=slow_delay,
    )
    # A round trip bounds how fast anything can happen (detours are outliers,
    # as on real networks: timing is not set for them).
    rtt = 2 * delay_mean
    heartbeat = max(0.05, round(rtt * rng.uniform(1.0, 3.0), 3))
    election = max(0.5, round(max(heartbeat * 4, 10 * delay_mean) * rng.uniform(1.0, 2.0), 3))
    lease = round(election * (1 - base.max_drift) * rng.choice((0.0, 0.3, 0.7, 0.95)), 3)
    retransmit = max(0.05, round(rtt * rng.uniform(1.5, 4.0), 3))
    attempt_timeout = max(0.25, round(4 * rtt + 2 * heartbeat, 3))
    give_up_after = max(2.0, round(3 * election, 3))
    padding_hi = rng.choice((0, 0, 64, 1024, 8192))
    if "value_padding" in base.pinned:
        padding_hi = base.value_padding[1]
    # Contention per key stays within what the linearizability search decides
    # (an inconclusive search fails the seed): at most four clients per key.
    keys = rng.randint(2, 16)
    window = base.window if "window" in base.pinned else rng.choice((1, 2, 4, 8, 32, 64))
    # The receivers' frame cap, as tight as an operator may set it: a Promise
    # reports up to a window of slots, so the cap must hold a window of
    # batches; batches and catch-up replies must stay under it (finding 2).
    max_message = max(64 << 10, 2 * window * (padding_hi + 64))
    drawn: dict[str, object] = {
        "window": window,
        "max_message_bytes": max_message,
        "max_batch_bytes": max(1, max_message // (2 * window)),
        "catchup_max_bytes": max_message // 2,
        "max_batch": rng.choice((1, 2, 8, 32, 128, 256)),
        "catchup_max_slots": rng.choice((1, 2, 3, 8, 128)),
        "snapshot_every": rng.choice((2, 3, 5, 10, 40, 200)),
        # (on WAN links operations overlap longer: half the contention)
        "clients": rng.randint(2, min(48, (2 if link == "wan" else 4) * keys)),
        "keys": keys,
        "think": rng.choice((0.0, 0.002, 0.01, 0.05)),
        "nodes": rng.choice(((3,), (4,), (5,), (3, 5))),
        "heartbeat_interval": heartbeat,
        "election_timeout": election,
        "lease_duration": lease,
        "retransmit_interval": retransmit,
        "attempt_timeout": attempt_timeout,
        "give_up_after": give_up_after,
        "value_padding": (0, padding_hi),
        "fsync_latency": rng.choice(((0.0005, 0.005), (0.00005, 0.0005), (0.005, 0.03))),
        # Slow links need longer phases for the same number of elections.
        "safety_seconds": max(base.safety_seconds, min(30.0, round(8 * election, 1))),
        "liveness_seconds": max(base.liveness_seconds, min(12.0, round(3 * election, 1))),
        # Every op after the heal waits at most: an election (with its lease
        # wait), a client's give-up-and-retry, and a catch-up of the backlog.
        "liveness_bound": max(base.liveness_bound, round(6 * election + give_up_after, 3)),
    }
    for name in base.pinned:
        drawn.pop(name, None)
    if "network" in base.pinned:
        network = base.network
    if base.fault_weights is None:
        kinds = [k for k in FAULT_KINDS if rng.random() < 0.5] or [rng.choice(list(FAULT_KINDS))]
        weights = (
            ("heal", rng.randint(1, 3)),
            *((k, FAULT_KINDS[k] * rng.randint(1, 3)) for k in kinds),
        )
        for kind, weight in LATER_FAULT_KINDS.items():
            later = random.Random(f"strong-swarm-{seed}-{kind}")
            if later.random() < 0.5:
                kinds.append(kind)
                weights = (*weights, (kind, weight * later.randint(1, 3)))
        drawn["fault_weights"] = weights
        fault_text = "+".join(kinds)
    else:
        fault_text = "profile"
    description = ("pinned=" + ",".join(base.pinned) + " " if base.pinned else "") + (
        f"link={link} delay={delay_min * 1000:.2f}..{delay_mean * 1000:.2f}ms drop={network.drop} "
        f"dup={network.duplicate} slow={slow} "
        + " ".join(f"{k}={v}" for k, v in drawn.items() if k != "fault_weights")
        + f" faults={fault_text}"
    )
    return replace(base, network=network, swarm=False, description=description, **drawn)  # type: ignore[arg-type]

"""The catalogue of planted bugs, and the detection table that keeps checkers honest.

A checker that cannot fail is a defect. Each entry below switches on one
deliberate defect (``strong.config.PlantedBugs`` in the core, or a fault in
the simulated node) and names the checkers that must be the ones to catch
it: a planted safety bug counts as caught only when a *safety* checker
(linearizability, replicas' agreement, an acknowledged write lost) fails the
seed, never a liveness timeout or a harness exception.

``configsvc sim planted --seeds 100`` runs every entry over the same seeds,
plus a control run without any bug, and prints for each the fraction of seeds
its expected checker failed (docs/simulation.md keeps the table).

Profiles: ``None`` is the default swarm (a configuration drawn per seed);
a named profile pins the fault mix that makes a rarer bug matter.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TextIO

from configsvc.sim.runner import SeedResult, _results, default_jobs
from configsvc.sim.strong_sim import StrongSimConfig, run_seed
from configsvc.sim.world import NetworkFaults
from strong.config import PlantedBugs

SAFETY = frozenset({"linearizability", "agreement", "lost_write"})

#: gray failures of the leader and crashes right after an acceptor's reply
GRAY = StrongSimConfig(
    swarm=False,
    fault_weights=(
        ("heal", 1),
        ("gray_leader", 4),
        ("bridge", 1),
        ("crash_after_send", 4),
        ("crash_leader", 1),
    ),
)

#: gray failures of the leader only: a successor is elected while the old
#: leader learns of it late
LEASE = StrongSimConfig(swarm=False, fault_weights=(("heal", 1), ("gray_leader", 6)))

#: whole-cluster power losses of a 3-replica group, the leader rebooting last:
#: an acknowledged slot whose only durable copy is the old leader's is lost if
#: the next quorum excludes it
POWER = StrongSimConfig(
    swarm=False,
    nodes=(3,),
    fault_weights=(("heal", 1), ("staggered_power_loss", 6), ("crash_after_send", 2)),
)

#: the leader's heartbeats stop while acknowledgements of sent rounds reach it late
LEASE_OVERLAP = StrongSimConfig(
    swarm=False,
    network=NetworkFaults(drop=0.01, delay_min=0.0002, delay_mean=0.001),
    fault_weights=(("heal", 1), ("lease_overlap", 4)),
)

#: finding 1's schedule: a lagging follower's old catch-up requests answered
#: after its leader followed a successor (5 replicas, 4-slot replies, and a
#: window wider than a reply, so unchosen slots lie beyond what a reply carries)
CATCHUP = StrongSimConfig(
    nodes=(5,),
    catchup_max_slots=4,
    window=32,
    # no compaction: A catches up by log, so it answers C by log, not snapshot
    snapshot_every=1_000_000,
    pinned=("nodes", "catchup_max_slots", "window", "snapshot_every"),
    fault_weights=(("heal", 1), ("stale_catchup", 6)),
    # the schedule takes about 4 s: one fault at a time
    fault_interval=(4.0, 5.0),
    safety_seconds=10.0,
)

#: slots with different values accepted at two ballots, the higher chosen
#: and nobody told (5 replicas, see the ballot_split fault)
CHURN = StrongSimConfig(
    nodes=(5,),
    window=32,
    snapshot_every=1_000_000,
    pinned=("nodes", "window", "snapshot_every"),
    fault_interval=(2.0, 3.0),
    fault_weights=(("heal", 1), ("ballot_split", 4)),
)

#: large values: batches outgrow the frame cap unless bounded in bytes
BULK = StrongSimConfig(
    value_padding=(4096, 16384),
    clients=16,
    keys=8,
    # a narrow window and wide batches: commands queue, and a batch packs many
    window=2,
    max_batch=256,
    think=0.0,
    pinned=("value_padding", "clients", "keys", "window", "max_batch", "think"),
)

#: lagging replicas behind a log compacted every few slots, and values large
#: enough that a snapshot of 16 keys outgrows the frame cap (finding 2)
SNAPSHOTS = StrongSimConfig(
    value_padding=(16384, 32768),
    keys=16,
    clients=16,
    window=2,
    snapshot_every=3,
    think=0.0,
    pinned=("value_padding", "keys", "window", "snapshot_every", "clients", "think"),
    fault_weights=(("heal", 1), ("crash", 3), ("isolate_leader", 2), ("restart", 2), ("split", 1)),
)

#: slow links, no leases, and 600 linearizable reads a second from independent
#: clients: more read-driven heartbeat rounds in flight than a leader used to
#: remember
SLOW_READS = StrongSimConfig(
    swarm=False,
    network=NetworkFaults(drop=0.01, delay_min=0.05, delay_mean=0.1),
    heartbeat_interval=0.3,
    election_timeout=1.5,
    lease_duration=0.0,
    retransmit_interval=0.3,
    attempt_timeout=1.5,
    give_up_after=6.0,
    liveness_bound=5.0,
    clients=16,
    keys=8,
    read_fraction=0.5,
    open_loop_reads=1500.0,
    think=0.0,
    fault_weights=(("heal", 3), ("crash", 1)),
)

#: lost disks (one per seed) among crashes and partitions, 3 replicas: a wiped
#: node that votes can complete a quorum that forgets a chosen value
WIPE = StrongSimConfig(
    nodes=(3,),
    pinned=("nodes",),
    fault_weights=(("heal", 1), ("wipe", 3), ("crash_after_send", 3), ("isolate_leader", 2),
                   ("leader_partial", 2), ("crash", 1)),
)

#: an operator adding, removing and replacing nodes (a dead one half the time)
#: while clients write, the leader is cut off with its learners, leaders crash
#: and acceptors reboot right after replying
MEMBERS = StrongSimConfig(
    # a grow-by-two takes several seconds of steps: long enough safety phases
    safety_seconds=20.0,
    fault_interval=(0.2, 1.0),
    fault_weights=(("heal", 1), ("member_change", 6), ("member_laggard", 3), ("split_leader", 3),
                   ("crash_leader", 1), ("crash", 1), ("crash_after_send", 2),
                   ("leader_partial", 1)),
)

#: the laggard schedule alone (with removals to get back to three voters):
#: no other fault heals the laggard's isolation early, and no compaction, so
#: the laggard learns the changes it missed from nothing but its promises
#: (and every node catches up by log, so in replies of many small values)
LAGGARD = StrongSimConfig(
    nodes=(3,),
    snapshot_every=1_000_000,
    catchup_max_slots=128,
    value_padding=(0, 0),
    pinned=("nodes", "snapshot_every", "catchup_max_slots", "value_padding"),
    safety_seconds=30.0,
    fault_interval=(0.5, 1.5),
    fault_weights=(("member_laggard", 1),),
)

#: two promotions requested together from three voters, their
#: acknowledgements late and the slots above them hidden from the others
#: (``pipelined_split``), then removals back to three voters
PIPELINE = StrongSimConfig(
    nodes=(3,),
    pinned=("nodes",),
    safety_seconds=20.0,
    fault_interval=(0.5, 1.5),
    fault_weights=(("member_pipeline", 1),),
)

#: the operator moving leadership again and again (``leader_handoff``), half the
#: time with every message to the old leader lost, and many reads of few keys
HANDOFF = StrongSimConfig(
    nodes=(3,),
    read_fraction=0.5,
    keys=4,
    clients=16,
    think=0.0,
    pinned=("nodes", "read_fraction", "keys", "clients", "think"),
    fault_interval=(0.3, 1.0),
    fault_weights=(("heal", 1), ("leader_handoff", 4), ("crash_leader", 1)),
)

#: leaders crash, are cut off and hand off while clients write: nodes hand
#: every unanswered session write to the next leader (``rehand``)
REHAND = StrongSimConfig(
    rehand=True,
    pinned=("rehand",),
    fault_weights=(("heal", 1), ("crash_leader", 2), ("isolate_leader", 2), ("leader_handoff", 1),
                   ("crash", 1)),
)

PROFILES: dict[str, StrongSimConfig | None] = {
    "swarm": None,
    "gray": GRAY,
    "lease": LEASE,
    "power": POWER,
    "overlap": LEASE_OVERLAP,
    "catchup": CATCHUP,
    "churn": CHURN,
    "bulk": BULK,
    "snapshots": SNAPSHOTS,
    "reads": SLOW_READS,
    "wipe": WIPE,
    "members": MEMBERS,
    "laggard": LAGGARD,
    "pipeline": PIPELINE,
    "handoff": HANDOFF,
    "rehand": REHAND,
}


@dataclass(frozen=True)
class Planted:
    name: str
    #: what the bug is, and which finding of issue 7 it re-plants (if any)
    what: str
    profile: str
    #: checkers any of which counts as catching it
    caught_by: frozenset[str]
    bugs: PlantedBugs = field(default_factory=PlantedBugs)
    skip_dedup: bool = False
    wiped_votes: bool = False
    #: checkers that may fail a seed because of a second bug this entry needs
    #: (never counted as catching it)
    tolerated: frozenset[str] = frozenset()

    def config(self) -> StrongSimConfig:
        base = PROFILES[self.profile] or StrongSimConfig()
        return replace(base, bugs=self.bugs, skip_dedup=self.skip_dedup,
                       wiped_votes=self.wiped_votes)

    def control(self) -> StrongSimConfig:
        """The same profile with no defect at all."""
        return PROFILES[self.profile] or StrongSimConfig()

    def run(self, seed: int) -> SeedResult:
        return run_seed(seed, self.config())

    def caught(self, result: SeedResult) -> bool:
        return not result.ok and result.checker in self.caught_by


STRONG: tuple[Planted, ...] = (
    Planted("phase1_ignores_accepted", "phase 1 fills other acceptors' values with no-ops",
            "churn", SAFETY, PlantedBugs(phase1_ignores_accepted=True)),
    Planted("phase1_lowest_ballot", "phase 1 adopts the lowest accepted ballot's value",
            "churn", SAFETY, PlantedBugs(phase1_lowest_ballot=True)),
    Planted("half_quorum", "a quorum of n // 2", "swarm", SAFETY, PlantedBugs(half_quorum=True)),
    Planted("follower_local_reads", "followers answer linearizable reads locally",
            "swarm", SAFETY, PlantedBugs(follower_local_reads=True)),
    Planted("skip_dedup", "the state machine forgets its client table (retries apply twice)",
            "swarm", SAFETY, skip_dedup=True),
    Planted("reply_before_durable", "an acceptor replies before its record is durable",
            "power", SAFETY, PlantedBugs(reply_before_durable=True)),
    Planted("skip_lease_wait+no_prevote",
            "a new leader skips the lease wait (with pre-vote off: pre-vote alone also "
            "keeps leases safe)", "lease", SAFETY,
            PlantedBugs(skip_lease_wait=True, no_prevote=True),
            tolerated=frozenset({"disruption"})),
    Planted("lease_from_ack", "a lease runs from the acknowledgement, not the send",
            "overlap", SAFETY, PlantedBugs(lease_from_ack=True)),
    Planted("catchup_commits_uncarried",
            "finding 1: a catch-up reply's commit index commits the receiver's own entries",
            "catchup", SAFETY, PlantedBugs(catchup_commits_uncarried=True)),
    Planted("unbounded_bytes",
            "finding 2: batches and catch-up replies without a byte bound",
            "bulk", frozenset({"liveness"}), PlantedBugs(unbounded_bytes=True)),
    Planted("exact_round_acks",
            "finding 3: a heartbeat round per read pass, only the last 64 remembered",
            "reads", frozenset({"liveness"}), PlantedBugs(exact_round_acks=True)),
    Planted("no_prevote", "finding 4: elections without pre-vote",
            "swarm", frozenset({"disruption"}), PlantedBugs(no_prevote=True)),
    Planted("unchunked_snapshots", "finding 2: a snapshot travels whole, over the frame cap",
            "snapshots", frozenset({"liveness"}), PlantedBugs(unchunked_snapshots=True)),
    Planted("wiped_votes", "finding 7: a node whose disk was wiped comes back as a voter",
            "wipe", SAFETY, wiped_votes=True),
    Planted("leader_takes_catchup",
            "review S1: a leader takes catch-up replies (its commit index from another ballot)",
            "swarm", SAFETY, PlantedBugs(leader_takes_catchup=True)),
    Planted("nonvoter_acks", "review S3: a wiped learner acknowledges heartbeats",
            "wipe", SAFETY, PlantedBugs(nonvoter_acks=True)),
    Planted("learner_in_quorum",
            "membership rule 11: a learner's acknowledgements count toward quorums",
            "members", SAFETY, PlantedBugs(learner_in_quorum=True)),
    Planted("concurrent_changes",
            "membership rule 12b-c: a change proposed while another is pending, and "
            "slots proposed above an unchosen change",
            "pipeline", SAFETY, PlantedBugs(concurrent_changes=True)),
    Planted("candidate_ignores_config",
            "membership rule 13: phase 1 ignores the configurations its promises reveal",
            "laggard", SAFETY, PlantedBugs(candidate_ignores_config=True)),
    Planted("handoff_skips_lease_wait",
            "rule 17: a candidate started by TimeoutNow does not wait out the old lease",
            "handoff", SAFETY, PlantedBugs(handoff_skips_lease_wait=True)),
)

CATALOGUE: dict[str, Planted] = {p.name: p for p in STRONG}


def detection(
    planted: Planted, seeds: list[int], run: Callable[[Planted, int], SeedResult] | None = None
) -> tuple[int, dict[str, int]]:
    """(seeds whose expected checker caught it, failures by checker)."""
    caught = 0
    by_checker: dict[str, int] = {}
    for seed in seeds:
        result = run(planted, seed) if run else planted.run(seed)
        if not result.ok:
            by_checker[result.checker] = by_checker.get(result.checker, 0) + 1
        caught += planted.caught(result)
    return caught, by_checker


def table(
    seeds: list[int],
    only: list[str] | None = None,
    out: TextIO = sys.stdout,
    skip_controls: list[str] | None = None,
) -> int:
    """Print the detection table over ``seeds``: for each profile used, a control
    run without bugs, then each planted bug. Returns 1 if a control failed any
    seed or a bug was never caught, else 0. The last line is the table as JSON."""
    bugs = [p for p in STRONG if not only or p.name in only]
    controls = [Planted(f"control ({name})", "no bug", name, SAFETY)
                for name in dict.fromkeys(p.profile for p in bugs)
                if name not in (skip_controls or ())]
    jobs = default_jobs()
    report = []
    code = 0
    print(f"{'planted bug':30} {'profile':8} {'caught':>8} {'first':>5}  failures by checker",
          file=out)
    for planted in [*controls, *bugs]:
        results = list(_results(planted.run, seeds, jobs))
        is_control = planted.what == "no bug"
        caught = [r.seed for r in results if planted.caught(r)]
        by: dict[str, int] = {}
        for r in results:
            if not r.ok:
                by[r.checker] = by.get(r.checker, 0) + 1
        failed = sum(by.values())
        if is_control and failed:
            print(f"    control failures at seeds {[r.seed for r in results if not r.ok]}",
                  file=out)
        shown = f"{failed} fail" if is_control else f"{len(caught)}/{len(seeds)}"
        first = "" if is_control or not caught else str(caught[0])
        print(f"{planted.name:30} {planted.profile:8} {shown:>8} {first:>5}  "
              + ", ".join(f"{k} {v}" for k, v in sorted(by.items())), file=out, flush=True)
        report.append({"bug": planted.name, "profile": planted.profile, "seeds": len(seeds),
                       "caught": len(caught), "first": caught[0] if caught else None,
                       "failures_by_checker": by})
        if (is_control and failed) or (not is_control and not caught):
            code = 1
    print(json.dumps(report), file=out)
    return code

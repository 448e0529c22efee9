"""Fault schedules for rare conjunctions in the strong simulation.

A random fault mix makes each ingredient of some bugs common but their
conjunction rare. Each schedule here lines one conjunction up (docs/simulation.md):

- ``stale_catchup`` (issue 7, finding 1): a follower's old catch-up requests
  answered after its leader followed a successor;
- ``lease_overlap``: a leader's heartbeats stop while acknowledgements of
  rounds already sent still reach it, late;
- ``ballot_split``: two values for the same slots at two ballots, the higher
  one chosen and nobody told.

Every later step goes through ``sim.while_faulty``: nothing a schedule set in
motion may cut, drop or crash after the heal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strong.messages import Accept
from strong.ready import Role

if TYPE_CHECKING:
    from configsvc.sim.strong_sim import StrongSim


def lease_overlap(sim: StrongSim) -> None:
    """The leader's heartbeats stop reaching anyone while acknowledgements of
    rounds already sent still reach it, late: its lease must end by the
    round's send time plus the lease, whatever the ack's arrival, before
    the successor the others elect serves anything."""
    leader = sim.leader()
    if leader is None:
        return
    world, rng = sim.world, sim.rng
    lag = rng.uniform(0.8, 1.6) * sim.config.election_timeout
    for peer in sim.node_ids:
        if peer != leader:
            world.slow_links[(peer, leader)] = lag

    def cut() -> None:
        for peer in sim.node_ids:
            if peer != leader:
                world.cut.add((leader, peer))

    sim.while_faulty(rng.uniform(0.02, 0.2), cut)

def stale_catchup(sim: StrongSim) -> None:
    """Finding 1's schedule. A follower C misses some Accepts of leader A and
    its catch-up requests to A travel slowly; {A, C} is cut from the rest,
    which elects B; A rejoins B (and catches up) while C stays cut off, so
    C's old requests reach A only after A follows B: A's replies carry B's
    commit index while C still follows A's ballot."""
    a = sim.leader()
    if a is None or len(sim.node_ids) < 3:
        return
    world, rng = sim.world, sim.rng
    c = rng.choice([n for n in sim.node_ids if n != a])
    rest = [n for n in sim.node_ids if n not in (a, c)]
    timeout = sim.config.election_timeout
    # C misses exactly one Accept (a one-slot hole below A's commit index,
    # which one catch-up slot fills) and its catch-up requests travel slowly.
    hole: list[int] = []

    def drop(src: str, dst: str, message: object) -> bool:
        if src == a and dst == c and isinstance(message, Accept):
            hole.append(message.slot)
            return True
        return False

    world.drop_once.append(drop)
    world.slow_links[(c, a)] = rng.uniform(5.0, 8.0) * timeout

    def partition(tries: int) -> None:
        # once A has committed the hole: C, still connected to A, learns
        # that it lags and asks A (slowly)
        replica = sim.nodes[a].replica
        if not hole or replica.commit_index < hole[0]:
            if tries:
                sim.while_faulty(0.005, partition, tries - 1)
            return
        for x in (a, c):
            for y in rest:
                world.cut.update({(x, y), (y, x)})
        # after the rest elected B (pre-vote needs [t, 2t) of silence),
        # before C's slow requests arrive
        sim.while_faulty(rng.uniform(3.0, 4.0) * timeout, rejoin_a)

    def rejoin_a() -> None:
        for y in rest:
            world.cut.discard((a, y))
            world.cut.discard((y, a))

    sim.while_faulty(0.005, partition, 200)

def ballot_split(sim: StrongSim) -> None:
    """Two values for the same slots at two ballots, the higher one chosen
    and nobody told: leader A's Accepts reach only C, then A crashes; B is
    elected without C (B and C cannot talk), chooses its values for those
    slots and crashes the moment it has; the next quorum holds A's values
    (at C) beside B's (at the others), none known chosen. Phase 1 must take
    the highest ballot's."""
    a = sim.leader()
    if a is None or len(sim.node_ids) < 5:
        return
    world, rng, nodes = sim.world, sim.rng, sim.nodes
    c = rng.choice([n for n in sim.node_ids if n != a])
    for p in sim.node_ids:
        if p not in (a, c):
            world.cut.add((a, p))
    lead_a = nodes[a].replica.leadership
    # Slots up to here may have reached everyone; A's later ones reach only C.
    cut_top = lead_a.next_slot - 1 if lead_a is not None else nodes[a].replica.commit_index
    top = [cut_top]

    def untold(src: str, dst: str, message: object) -> bool:
        # nobody learns that B chose A's slots (B's commit index stays with B)
        return src not in (a, c) and getattr(message, "commit_index", 0) > cut_top

    def crash_a() -> None:
        lead = nodes[a].replica.leadership
        if lead is not None:
            top[0] = lead.next_slot - 1  # the last slot A proposed (to C only)
        nodes[a].crash()
        world.after(rng.uniform(2.0, 4.0) * sim.config.election_timeout, nodes[a].restart)
        world.drop_if.append(untold)
        for p in sim.node_ids:
            if p != c:
                world.cut.update({(c, p), (p, c)})  # C hears nobody but A (down)
        watch_for_b(5000)

    def watch_for_b(tries: int) -> None:
        leaders = [n for n in sim.node_ids if n not in (a, c) and nodes[n].up
                   and nodes[n].replica.role is Role.LEADER]
        if leaders and nodes[leaders[0]].replica.commit_index >= top[0]:
            b = leaders[0]
            nodes[b].crash()  # its commit index never reached anyone
            if untold in world.drop_if:
                world.drop_if.remove(untold)
            world.after(rng.uniform(2.0, 4.0) * sim.config.election_timeout,
                        nodes[b].restart)
            for p in sim.node_ids:  # C rejoins the survivors
                if p != b:
                    world.cut.discard((c, p))
                    world.cut.discard((p, c))
            return
        if tries:
            sim.while_faulty(0.001, watch_for_b, tries - 1)

    sim.while_faulty(rng.uniform(0.05, 0.2), crash_a)

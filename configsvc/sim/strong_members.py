"""Membership changes under simulation: an operator adding, removing and
replacing nodes while clients write and faults strike.

One operation at a time (the ``member_change`` fault starts one when none is
running), each a script of single-server steps the operator retries until the
cluster's configuration shows them done:

- ``replace``: add a fresh node (a new id, an empty disk) as a learner,
  promote it once it caught up, remove the old one, take the old one out of
  service. The old one is a voter whose disk was wiped if there is one
  (``strong.replica`` rule 7: it rejoins only as a new id), else a random
  voter; half the time it is dead from the start (crashed, never restarted:
  the operator replaces a dead machine), otherwise it runs until removed and
  then half the time keeps running, removed, to show it cannot disturb the
  group.
- ``add``: a fresh node, as a learner, then promoted (at most 5 voters);
  from three voters, half the time two at once: both join as learners, then
  both promotions are requested together (the second must be refused while
  the first is pending).
- ``remove``: a random voter, the leader included (at least 3 voters stay).
- ``laggard`` (``begin_laggard``): from three voters, grow to five while one
  old voter x is cut off, so it misses every change; then cut x off together
  with another old voter y until x leads (or four election timeouts pass),
  and heal: x campaigned with the configuration it last committed, and must
  have heard a quorum of each configuration its promises revealed (rule 13)
  before it meets the others with the highest ballot. The operator sets off
  no split of its own meanwhile (its heal would end x's isolation early).
- ``pipelined`` (``begin_pipelined``): from three voters, two learners whose
  promotions are requested together, the first such request followed by
  ``pipelined_split``: a second change proposed while the first is pending
  (rule 12b) would let a value above it be chosen by the old configuration's
  quorum and replaced by the new one's.

``begin_laggard`` and ``begin_pipelined`` first remove voters (never the
leader) down to three.

After a learner joins, the operator waits up to two seconds before promoting
it (checking it caught up): a learner stays one long enough for faults to
meet it. ``split_leader`` is the fault that makes learners and pending
changes matter: the leader and its learners (or one other node) cut off from
everyone else for a few election timeouts.

Invariants the schedule keeps, so that a failure is the cluster's fault, not
the operator's: at most one voter is out of service for good at a time, and
only while every other voter has its disk; the group never shrinks below
three voters. Nothing here reads the cluster's volatile state to decide
safety: the checkers are the usual ones (agreement, linearizability, no
acknowledged write lost, liveness after the heal).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from configsvc.sim.strong_node import SimStrongNode
from strong.member_log import ChangeKind, MembershipChange
from strong.membership import Member, Membership, membership_of
from strong.messages import Accept, Accepted, CatchUpReply, InstallSnapshot
from strong.ready import Role

if TYPE_CHECKING:
    from configsvc.sim.strong_sim import StrongSim

#: seconds between two looks at the cluster while a script runs
POLL = 0.1
#: a request is repeated after this long without the step being done
RETRY = 0.6


class MembershipAdmin:
    def __init__(self, sim: StrongSim, rng: random.Random) -> None:
        self.sim = sim
        self.rng = rng
        #: the steps left: (kind, node id)
        self.script: list[tuple[str, str]] = []
        self.requested_at = float("-inf")
        #: the operator takes the next step no earlier than this (simulated time)
        self.not_before = 0.0
        self.request_id = 0
        self.joined = 0
        #: steps completed, by kind
        self.done: dict[str, int] = {}
        #: leadership hand-offs asked for (``leader_handoff``)
        self.handoffs = 0
        #: what a pair of promotions requested together sets off: "random" (a
        #: ``pipelined_split`` or a ``split_leader``), "pipelined" (the first
        #: request of the operation only: ``pipelined_split``) or "none" (the
        #: laggard schedule, whose own isolation a heal would end)
        self.pair_fault = "random"

    # ------------------------------------------------------------------ views

    def view(self) -> Membership:
        """The configuration of the most advanced replica in service."""
        nodes = [n for n in self.sim.nodes.values() if not n.decommissioned]
        best = max(nodes, key=lambda n: (n.replica.commit_index, n.id))
        return best.replica.members

    def leader(self) -> SimStrongNode | None:
        leaders = [n for n in self.sim.nodes.values()
                   if n.up and not n.busy and n.replica.role is Role.LEADER]
        return max(leaders, key=lambda n: n.replica.promised, default=None)

    # ------------------------------------------------------------------ operations

    def begin_laggard(self) -> None:
        """Grow from three voters to five while one voter, x, is cut off (it
        misses every change), then cut x and another old voter y off together
        from the rest until x leads: x campaigns with the configuration it last
        committed, and its promises reveal the changes it must also hear
        quorums of (rule 13). From more than three voters, remove one first.
        Nothing else the operator sets off heals x's isolation meanwhile."""
        leader = self._from_three_voters()
        if leader is None:
            return
        x, y = self.rng.sample([v for v in self.view().voters if v != leader.id], 2)
        self.sim.world.isolate(x)
        d, e = self._new_id(), self._new_id()
        self.script = [("add", d), ("add", e), ("promote", d), ("promote", e), ("split", f"{x},{y}")]
        self._start("none")

    def begin_pipelined(self) -> None:
        """From three voters, two learners promoted by one request each, sent
        together, with ``pipelined_split`` set off by the first pair: the second
        promotion must be refused while the first is pending (rule 12b), so no
        value is counted in a configuration that no longer governs it. From more
        than three voters, remove one first."""
        if self._from_three_voters() is None:
            return
        d, e = self._new_id(), self._new_id()
        self.script = [("add", d), ("add", e), ("promote", d), ("promote", e)]
        self._start("pipelined")

    def _from_three_voters(self) -> SimStrongNode | None:
        """The leader, if no operation runs and the group has exactly three voters;
        else None, after starting what gets there (a removal, or another operation)."""
        if self.script:
            return None
        m = self.view()
        leader = self.leader()
        if leader is None:
            return None
        if len(m.voters) > 3:
            self._shrink(m, leader.id)
            return None
        if len(m.voters) != 3:
            self.begin()
            return None
        return leader

    def _shrink(self, m: Membership, leader: str) -> None:
        """Remove a voter other than the leader (back towards three)."""
        victim = self.rng.choice([v for v in m.voters if v != leader])
        self.script = [("remove", victim), ("retire", victim)]
        self._start("random")

    def _start(self, pair_fault: str) -> None:
        self.pair_fault = pair_fault
        self.requested_at = float("-inf")
        self.sim.world.after(POLL, self._step)

    def begin(self) -> None:
        """Start an operation unless one is running."""
        if self.script:
            return
        m = self.view()
        voters = list(m.voters)
        choices = ["replace"]
        if len(voters) < 5:
            choices.append("add")
        if len(voters) > 3:
            choices.append("remove")
        op = self.rng.choice(choices)
        if op == "remove":
            victim = self.rng.choice(voters)
            self.script = [("remove", victim), ("retire", victim)]
        elif op == "add" and len(voters) == 3 and self.rng.random() < 0.5:
            d, e = self._new_id(), self._new_id()
            self.script = [("add", d), ("add", e), ("promote", d), ("promote", e)]
        elif op == "add":
            new = self._new_id()
            self.script = [("add", new), ("promote", new)]
        else:
            wiped = [v for v in voters if not self.sim.nodes[v].voting]
            victim = wiped[0] if wiped else self.rng.choice(voters)
            others_whole = all(self.sim.nodes[v].voting for v in voters if v != victim)
            if others_whole and len(voters) >= 3 and self.rng.random() < 0.5:
                self._decommission(victim)  # a dead machine, replaced
            new = self._new_id()
            self.script = [("add", new), ("promote", new), ("remove", victim), ("retire", victim)]
        self._start("random")

    def _new_id(self) -> str:
        self.joined += 1
        return f"j{self.joined}"

    def _decommission(self, nid: str) -> None:
        node = self.sim.nodes[nid]
        node.decommissioned = True
        node.crash()

    # ------------------------------------------------------------------ steps

    def _step(self) -> None:
        now = self.sim.world.now
        while self.script and self._done(*self.script[0]):
            kind, _ = self.script.pop(0)
            self.done[kind] = self.done.get(kind, 0) + 1
            self.requested_at = float("-inf")
            if kind == "add":
                self.not_before = now + self.rng.uniform(0.0, 2.0)
        if not self.script:
            return
        if now < self.not_before:
            self.sim.world.after(POLL, self._step)
            return
        kind, nid = self.script[0]
        if kind == "split":
            self.script.pop(0)
            if self.sim.faults_on:
                x, y = nid.split(",")
                self.sim.world.split([[x, y]])
                limit = now + 4 * self.sim.config.election_timeout
                self.sim.world.after(POLL / 10, self._heal_once_leading, x, limit)
            return
        if kind == "retire":
            if self.rng.random() < 0.5:
                self._decommission(nid)
            self.script.pop(0)
            self.done["retire"] = self.done.get("retire", 0) + 1
            return
        if kind == "add" and nid not in self.sim.nodes:
            self._join(nid)
        leader = self.leader()
        if leader is not None and now - self.requested_at >= RETRY:
            self.requested_at = now
            steps = [self.script[0]]
            if kind == "promote" and len(self.script) > 1 and self.script[1][0] == "promote":
                steps.append(self.script[1])  # both at once: the second must wait
            lead = leader.replica.leadership
            start = lead.next_slot if lead is not None else 0
            for step_kind, step_id in steps:
                self.request_id += 1
                change = MembershipChange(
                    {"add": ChangeKind.ADD_LEARNER, "promote": ChangeKind.PROMOTE,
                     "remove": ChangeKind.REMOVE}[step_kind], Member(step_id))
                leader.replica.request_change(self.request_id, change, leader._now())
            leader._process()
            if len(steps) > 1 and self.sim.faults_on:
                self._pair_fault(leader, start)
        self.sim.world.after(POLL, self._step)

    def _pair_fault(self, leader: SimStrongNode, start: int) -> None:
        """Two promotions were just requested together at ``leader``."""
        if self.pair_fault == "none":
            return
        if self.pair_fault == "pipelined":
            lead = leader.replica.leadership
            if lead is None or not lead.active or not lead.own_commit:
                return  # the first promotion would wait for a value of its ballot
            self.pair_fault = "none"  # once per operation: the retries go unhindered
            pipelined_split(self.sim, leader.id, start)
        elif self.rng.random() < 0.5:
            pipelined_split(self.sim, leader.id, start)
        else:  # ...or the leader is cut off with one voter while they are pending
            self.sim.while_faulty(self.rng.uniform(0.0, 0.1), split_leader, self.sim, False)

    def _done(self, kind: str, nid: str) -> bool:
        """A quorum of the newest configuration's voters has committed the step
        (an operator checks the members, not only the leader, before acting on it;
        a member cut off may learn it later)."""
        newest = self.view()
        knowing = [v for v in newest.voters if v in self.sim.nodes
                   and not self.sim.nodes[v].decommissioned
                   and self._holds(kind, nid, self.sim.nodes[v].replica.members)]
        return len(knowing) >= newest.quorum

    @staticmethod
    def _holds(kind: str, nid: str, m: Membership) -> bool:
        if kind == "add":
            return nid in m.members
        if kind == "promote":
            return nid in m.voters
        if kind == "remove":
            return nid not in m.members
        return False  # retire, split: actions, taken when reached

    def _heal_once_leading(self, x: str, limit: float) -> None:
        """End the laggard's split as soon as it leads (it then meets the
        others with the highest ballot), or at ``limit``."""
        if not self.sim.faults_on:
            return
        if self.sim.nodes[x].replica.role is Role.LEADER or self.sim.world.now >= limit:
            self.sim.world.heal()
            return
        self.sim.world.after(POLL / 10, self._heal_once_leading, x, limit)

    def _join(self, nid: str) -> None:
        """A fresh node, told the current configuration, with itself as a learner."""
        sim = self.sim
        m = self.view()
        sim.world.add_node(nid, sim.config.max_drift)
        config = sim.config.replica_config(nid, m.voters, learners=(*m.learners, nid))
        node = SimStrongNode(
            sim.world, config,
            fsync_latency=sim.config.fsync_latency,
            max_message_bytes=sim.config.max_message_bytes,
            snapshot_every=sim.config.snapshot_every,
            hash_every=sim.config.hash_every,
            tick_interval=sim.config.tick_interval,
            rehand=sim.config.rehand,
            on_apply=sim.observer.applied,
            on_hash=sim.observer.hashed,
            make_state_machine=sim.make_sm,
        )
        sim.nodes[nid] = node
        sim.node_ids.append(nid)  # clients and faults see it from now on


def split_leader(sim: StrongSim, with_learners: bool = True) -> None:
    """The leader and its learners (or, with none, one other node) cut off from
    the rest for two to four election timeouts: only voters may choose values,
    and a change pending at the leader meets a successor elected by the rest."""
    admin = sim.admin
    leader = admin.leader()
    if leader is None:
        return
    members = leader.replica.members
    partners = [n for n in members.learners if n in sim.nodes] if with_learners else []
    if not partners:
        partners = [sim.rng.choice([n for n in members.members if n != leader.id])]
    sim.world.split([[leader.id, *partners]])
    sim.while_faulty(sim.rng.uniform(2.0, 4.0) * sim.config.election_timeout, sim.world.heal)


def pipelined_split(sim: StrongSim, leader: str, start: int) -> None:
    """Two promotions were just requested together, at slots from ``start``.
    Their acknowledgements are late (for a fraction of an election timeout,
    long enough for writes above them to be counted), and the slots above
    them reach only the leader and one old voter (catch-up replies and
    snapshots to the others are lost too), while the others learn the commit
    index of both promotions; then those two are cut off from the rest, which
    may now talk among themselves: a value chosen above an unchosen change
    must have been counted in the configuration that governs it (rule 12),
    or the rest, a quorum of the new configuration, choose another one."""
    m = sim.nodes[leader].replica.members
    second = sim.rng.choice([v for v in m.voters if v != leader])
    pair = {leader, second}

    def late_acks(src: str, dst: str, message: object) -> bool:
        return isinstance(message, Accepted) and start <= message.slot < start + 2

    def hidden(src: str, dst: str, message: object) -> bool:
        if dst in pair:
            return False
        return isinstance(message, CatchUpReply | InstallSnapshot) or (
            isinstance(message, Accept) and message.slot >= start
            and membership_of(message.value) is None)

    sim.world.drop_if.extend([late_acks, hidden])
    timeout = sim.config.election_timeout
    late = sim.rng.uniform(0.05, 0.3) * timeout

    def acks_arrive() -> None:
        if late_acks in sim.world.drop_if:
            sim.world.drop_if.remove(late_acks)

    def cut_off() -> None:
        if hidden in sim.world.drop_if:
            sim.world.drop_if.remove(hidden)  # the rest elect and choose among themselves
        sim.world.split([sorted(pair)])
        sim.while_faulty(sim.rng.uniform(2.0, 4.0) * timeout, sim.world.heal)

    sim.while_faulty(late, acks_arrive)
    # after the others heard the commit index of both promotions (heartbeats)
    sim.while_faulty(late + sim.rng.uniform(0.5, 1.0) * timeout, cut_off)


def leader_handoff(sim: StrongSim) -> None:
    """The operator moves leadership (``strong.handoff``): the leader is asked to
    hand off, to a random voter or to the most caught-up one. Half the time the
    old leader then hears from no other node for one to three election
    timeouts (what it sends still arrives), so it never meets the successor's
    ballot: it keeps believing it leads, and keeps answering reads from its
    lease, while the successor takes over: only the
    successor's wait for that lease (``strong.replica`` rule 4) keeps reads
    linearizable."""
    admin = sim.admin
    leader = admin.leader()
    if leader is None:
        return
    voters = [v for v in leader.replica.members.voters if v != leader.id and v in sim.nodes]
    if not voters:
        return
    target = sim.rng.choice(voters) if sim.rng.random() < 0.5 else None
    admin.request_id += 1
    admin.handoffs += 1
    leader.replica.transfer_leadership(admin.request_id, target, leader._now())
    leader._process()
    lead = leader.replica.leadership
    if lead is None or lead.transfer is None or not sim.faults_on or sim.rng.random() < 0.5:
        return
    transfer = lead.transfer

    def deafen_once_sent() -> None:
        """Cut the old leader's ears as soon as its ``TimeoutNow`` is out."""
        if lead.transfer is not transfer or leader.replica.leadership is not lead:
            return  # it ended first
        if transfer.sent_at == float("-inf"):
            sim.while_faulty(POLL / 20, deafen_once_sent)
            return
        for other in leader.replica.members.members:
            if other != leader.id and other in sim.nodes:
                sim.world.one_way(other, leader.id)
        sim.while_faulty(sim.rng.uniform(1.0, 3.0) * sim.config.election_timeout, sim.world.heal)

    deafen_once_sent()

"""What a lab run breaks, and when: scenarios and their three phases.

A run has three phases, back to back: ``before`` (healthy), ``during`` (the
fault is on) and ``after`` (the fault is healed). Their boundaries are
recorded as times on the history's clock (``Timeline``), and every op falls
in the phase in which it *started*. The boundaries are conservative:
``during`` starts once the fault is in force on every node and ends as the
heal begins, so a cut or heal being applied node by node is never counted
as "during". Each scenario also names the **sides**:
which node is where during the fault (``majority``/``minority``, ``isolated``,
``left``/``bridge``/``right``, ``crashed``/``survivors``). A side is a fixed
label of a node for the whole run, so a side's ``before`` and ``after`` are
the baseline for its ``during``.

Scenarios (``SCENARIOS``):

- ``split``: a majority (holding the leader) and a minority;
- ``isolated-leader``: the leader alone on its side;
- ``bridge``: two sides that cannot see each other and one node that sees
  both (overlapping groups, ``configsvc.lab.cuts.links_of``);
- ``flapping``: the ``split`` cut put on and taken off every ``flap`` seconds
  during the fault phase;
- ``crash-restart``: ``kill -9`` of the leader, restarted at the heal.

Invariants: a scenario only acts through ``Controls`` (the supervisor's
verbs); it decides sides from the leader it finds at the start of the fault;
the fault window(s) it reports cover exactly the time the fault was on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from configsvc.lab.history import History

__all__ = ["SCENARIOS", "Controls", "Phases", "Scenario", "Timeline", "phases_for"]


class Controls(Protocol):
    """What a scenario may do to the cluster (``configsvc.lab.run.LabCluster``)."""

    ids: list[str]

    def leader(self) -> str:
        """The current leader (waits for one, with a deadline)."""

    def partition(self, *groups: list[str]) -> None: ...

    def isolate(self, nid: str) -> None: ...

    def heal(self) -> None: ...

    def kill(self, nid: str) -> None: ...

    def restart(self, nid: str) -> None: ...


@dataclass(frozen=True)
class Phases:
    before: float
    during: float
    after: float

    @property
    def total(self) -> float:
        return self.before + self.during + self.after


def phases_for(duration: float) -> Phases:
    """Split a run of ``duration`` seconds: about 25% before, 45% during, 30% after.

    Raises ``ValueError`` below 10 seconds (too short to see three phases)."""
    if duration < 10:
        raise ValueError("--duration must be at least 10 seconds (three phases)")
    before = max(3.0, round(0.25 * duration, 1))
    after = max(4.0, round(0.30 * duration, 1))
    return Phases(before, round(duration - before - after, 1), after)


@dataclass
class Timeline:
    """The phase boundaries and the fault windows, on the history's clock."""

    fault_at: float = 0.0
    heal_at: float = 0.0
    end_at: float = 0.0
    #: (start, end) of every stretch during which the fault was on
    windows: list[tuple[float, float]] = field(default_factory=list)
    #: (start, end) of every stretch during which a cut or a heal was being put
    #: in force node by node (neither fully on nor fully off)
    transitions: list[tuple[float, float]] = field(default_factory=list)
    sides: dict[str, str] = field(default_factory=dict)
    leader: str = ""
    description: str = ""

    def phase(self, t: float) -> str:
        if t < self.fault_at:
            return "before"
        return "during" if t < self.heal_at else "after"


@dataclass(frozen=True)
class Fault:
    """The fault of one run, decided once the leader is known."""

    sides: dict[str, str]
    description: str
    apply: Callable[[], None]
    heal: Callable[[], None]
    #: flapping: seconds between putting the cut on and taking it off
    flap: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    min_nodes: int
    plan: Callable[[Controls, str], Fault]

    def run(self, controls: Controls, phases: Phases, history: History) -> Timeline:
        """Run the three phases; returns when ``after`` is over. The phases are
        timed: their lengths are what the run measures, not waits for anything."""
        timeline = Timeline()
        _hold(phases.before)
        leader = controls.leader()
        fault = self.plan(controls, leader)
        timeline.sides, timeline.leader, timeline.description = fault.sides, leader, fault.description
        began = history.now()
        fault.apply()
        timeline.fault_at = history.now()
        timeline.transitions.append((began, timeline.fault_at))
        history.event("fault", scenario=self.name, description=fault.description, leader=leader,
                      sides=fault.sides)
        on_since = timeline.fault_at
        end_of_fault = timeline.fault_at + phases.during
        if fault.flap:
            on = True
            while history.now() + fault.flap < end_of_fault:
                _hold(fault.flap)
                began = history.now()
                if on:
                    timeline.windows.append((on_since, began))
                    fault.heal()
                    history.event("flap-heal")
                else:
                    fault.apply()
                    on_since = history.now()
                    history.event("flap-cut")
                timeline.transitions.append((began, history.now()))
                on = not on
            _hold(max(0.0, end_of_fault - history.now()))
            timeline.heal_at = history.now()
            if on:
                timeline.windows.append((on_since, timeline.heal_at))
                fault.heal()
                timeline.transitions.append((timeline.heal_at, history.now()))
        else:
            _hold(phases.during)
            timeline.heal_at = history.now()
            timeline.windows.append((on_since, timeline.heal_at))
            fault.heal()
            timeline.transitions.append((timeline.heal_at, history.now()))
        history.event("heal", scenario=self.name, healed_in=round(history.now() - timeline.heal_at, 3))
        _hold(phases.after)
        timeline.end_at = history.now()
        history.event("end")
        return timeline


def _hold(seconds: float) -> None:
    """Let a phase run its length (a measured duration, not a wait for a condition)."""
    time.sleep(seconds)


def _majority(ids: list[str], leader: str) -> tuple[list[str], list[str]]:
    """A majority holding ``leader``, and the rest."""
    others = [n for n in ids if n != leader]
    size = len(ids) // 2 + 1
    return [leader, *others[: size - 1]], others[size - 1:]


def _split(c: Controls, leader: str) -> Fault:
    major, minor = _majority(c.ids, leader)
    sides = {n: "majority" for n in major} | {n: "minority" for n in minor}
    return Fault(sides, f"majority {' '.join(major)} | minority {' '.join(minor)} "
                 f"(leader {leader} in the majority)",
                 lambda: c.partition(major, minor), c.heal)


def _flapping(c: Controls, leader: str) -> Fault:
    split = _split(c, leader)
    return Fault(split.sides, split.description + ", cut and healed every 2 s",
                 split.apply, split.heal, flap=2.0)


def _isolated_leader(c: Controls, leader: str) -> Fault:
    rest = [n for n in c.ids if n != leader]
    sides = {leader: "isolated"} | {n: "majority" for n in rest}
    return Fault(sides, f"leader {leader} isolated from {' '.join(rest)}",
                 lambda: c.isolate(leader), c.heal)


def _bridge(c: Controls, leader: str) -> Fault:
    others = [n for n in c.ids if n != leader]
    bridge = others[0]
    rest = others[1:]
    left = [leader, *rest[: (len(rest) - 1) // 2]]
    right = [n for n in rest if n not in left]
    sides = {n: "left" for n in left} | {bridge: "bridge"} | {n: "right" for n in right}
    return Fault(sides, f"{' '.join(left)} | {bridge} sees both | {' '.join(right)} "
                 f"(leader {leader} on the left)",
                 lambda: c.partition([*left, bridge], [bridge, *right]), c.heal)


def _crash(c: Controls, leader: str) -> Fault:
    sides = {n: ("crashed" if n == leader else "survivors") for n in c.ids}
    return Fault(sides, f"kill -9 of the leader {leader}, restarted at the heal",
                 lambda: c.kill(leader), lambda: c.restart(leader))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("split", "a majority (with the leader) and a minority cannot reach each other", 3, _split),
    Scenario("isolated-leader", "the leader is cut off from every other node", 3, _isolated_leader),
    Scenario("bridge", "two sides that cannot see each other; one node sees both", 3, _bridge),
    Scenario("flapping", "the split comes and goes every 2 seconds", 3, _flapping),
    Scenario("crash-restart", "kill -9 of the leader; it restarts from its disk at the heal", 3, _crash),
]}

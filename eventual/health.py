"""Local health of service instances: freshness, status, expiry, self-preservation.

Health is local, Eureka / Consul-agent style: never replicated, decided by
each replica from its own clock, so it is immune to clock offsets between
nodes, and during a partition each side serves the instances it still hears
from. Rules:

1. Freshness. An instance with a TTL (``ttl > 0``) is *fresh* while this
   replica has seen a registration or heartbeat of it within ``ttl`` local
   seconds (a restart counts as seeing every instance: a node expires nothing
   for the time it was down); *silent* after that. ``ttl == 0``: no TTL, never
   silent.
2. Status. An instance shows its reported status (``InstanceInfo.status``: that
   of its registration or last heartbeat — "passing", "warning", "critical")
   while fresh, and "critical" once silent.
3. Expiry. An instance critical for longer than ``deregister_after`` (> 0) is
   removed by a local deregistration event, which replicates (observed remove:
   a heartbeat it did not see survives it). Critical since: for a silent one,
   the moment it went silent (last seen + ttl); for one reporting critical,
   the moment this replica first saw it do so.
4. Self-preservation. When most heartbeats stop at once, the likelier cause is
   this node's own network (or the gossip that brings it heartbeats), not the
   death of most instances, and removing them would spread a deletion of
   healthy instances to every node. So while ``self_preservation`` holds,
   silence removes nothing: silent instances stay listed, shown critical (rule
   2 still holds: a ``passing`` query shows what this side can hear), and the
   status says so. Removal for a *reported* critical status is unaffected.

``self_preservation`` (pure) enters when, of the TTL instances this replica
heard from within the last ``window`` seconds of their TTL, more than
``fraction`` went silent (and at least ``min_instances`` were heard from). It
leaves when heartbeats resume (at most ``fraction`` of the TTL instances held
are silent: new registrations count too) or when it has lasted
``max_duration``, the operator-visible bound after which expiry resumes
(those instances are then long outside the window, so it does not re-enter
for them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventual.dots import Key
from eventual.instances import CRITICAL, InstanceInfo, Status

__all__ = ["InstanceHealth", "PreservationReport", "SelfPreservation", "self_preservation"]


@dataclass(frozen=True)
class SelfPreservation:
    """When silence stops removing instances (rule 4)."""

    #: enter when more than this fraction of the recently live TTL instances lapsed
    fraction: float = 0.5
    #: "recently live": heard from within this many seconds past their TTL
    window: float = 30.0
    #: never for fewer recently live instances than this
    min_instances: int = 3
    #: leave after this many seconds even if heartbeats did not resume
    max_duration: float = 900.0

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError("self-preservation fraction must be between 0 and 1")
        if self.window <= 0 or self.min_instances < 1:
            raise ValueError("self-preservation window and min_instances must be positive")
        if self.max_duration <= self.window:
            raise ValueError("self-preservation max_duration must exceed its window")


def self_preservation(since: float | None, silences: Sequence[tuple[float, float]], now: float,
                      policy: SelfPreservation) -> float | None:
    """The next state of self-preservation: the time it started, or None (off).

    ``since``: its current state; ``silences``: ``(seconds since last heard, ttl)``
    of every TTL instance the replica holds; ``now``: the replica's clock."""
    held = len(silences)
    silent = sum(1 for quiet, ttl in silences if quiet > ttl)
    if since is not None:
        if now - since > policy.max_duration or silent <= policy.fraction * held:
            return None
        return since
    recent = [(quiet, ttl) for quiet, ttl in silences if quiet <= ttl + policy.window]
    lapsed = sum(1 for quiet, ttl in recent if quiet > ttl)
    if len(recent) >= policy.min_instances and lapsed > policy.fraction * len(recent):
        return now
    return None


@dataclass(frozen=True)
class PreservationReport:
    """What a replica says about self-preservation in its status."""

    active: bool = False
    #: seconds it has been active (0 when off)
    active_for: float = 0.0
    #: TTL instances held, and how many of them are silent (at the last evaluation)
    held: int = 0
    silent: int = 0


class InstanceHealth:
    """The local health state of the instances a replica holds (rules 1-4)."""

    def __init__(self, policy: SelfPreservation) -> None:
        self.policy = policy
        #: local time of the last registration or heartbeat seen, per instance
        self.last_seen: dict[Key, float] = {}
        #: instances silent at the last evaluation (each counted once as a change)
        self.silent: set[Key] = set()
        #: local time this replica first saw the instance report "critical"
        self.reported_critical: dict[Key, float] = {}
        self.preserving_since: float | None = None
        self._held = 0

    def update(self, key: Key, info: InstanceInfo, now: float, *, heard: bool) -> bool:
        """The instance's current record is ``info``; ``heard``: a registration or
        heartbeat of it was applied now. True if it was silent and is heard again."""
        if info.status == CRITICAL:
            self.reported_critical.setdefault(key, now)
        else:
            self.reported_critical.pop(key, None)
        if not heard:
            self.last_seen.setdefault(key, now)
            return False
        self.last_seen[key] = now
        if key in self.silent:
            self.silent.discard(key)
            return True
        return False

    def forget(self, key: Key) -> None:
        self.last_seen.pop(key, None)
        self.silent.discard(key)
        self.reported_critical.pop(key, None)

    def status(self, key: Key, info: InstanceInfo, now: float) -> Status:
        """Rule 2."""
        quiet = now - self.last_seen.get(key, now)
        return CRITICAL if 0 < info.ttl < quiet else info.status

    def evaluate(self, current: Callable[[Key], InstanceInfo | None], now: float
                 ) -> tuple[list[Key], list[Key]]:
        """Re-evaluate every instance: those newly silent (a visible change) and
        those to remove (rule 3, under rule 4). ``current``: an instance's record."""
        newly_silent: list[Key] = []
        held: list[tuple[Key, InstanceInfo, float]] = []
        for key, seen in list(self.last_seen.items()):
            info = current(key)
            if info is None:
                continue
            quiet = now - seen
            held.append((key, info, quiet))
            if 0 < info.ttl < quiet and key not in self.silent:
                self.silent.add(key)
                newly_silent.append(key)
        silences = [(quiet, info.ttl) for _, info, quiet in held if info.ttl > 0]
        self._held = len(silences)
        self.preserving_since = self_preservation(self.preserving_since, silences, now,
                                                  self.policy)
        remove: list[Key] = []
        for key, info, quiet in held:
            limit = info.deregister_after
            if limit <= 0:
                continue
            reported = self.reported_critical.get(key)
            reported_too_long = reported is not None and now - reported > limit
            silent_too_long = info.ttl > 0 and quiet - info.ttl > limit
            if reported_too_long or (silent_too_long and self.preserving_since is None):
                remove.append(key)
        return newly_silent, remove

    def report(self, now: float) -> PreservationReport:
        since = self.preserving_since
        return PreservationReport(since is not None, 0.0 if since is None else now - since,
                                  self._held, len(self.silent))

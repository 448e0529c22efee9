"""The service instances of one strong namespace: a sorted table with change indexes.

Rules (``strong.state_machine`` rule 9 rests on them):

1. Determinism. Instances are keyed ``(service, instance_id)`` and walked only
   through the sorted list ``_order``; the per-service maps are read by lookup
   or walked through ``sorted()``. A table rebuilt from ``state()`` iterates,
   answers and hashes exactly like the original.
2. Time is data. Every time here comes from a command (``now_ms``: the
   proposing leader's wall time); nothing reads a clock. ``clock`` is the
   highest time any command brought; a command's effective time is
   ``max(now_ms, clock)``, because log order proves it happened after every
   earlier command. So a proposer whose clock lags can make an instance look
   heard later than it was, never earlier: expiry may come late, never early
   relative to the log. Every instance time is <= ``clock``.
3. Visible and invisible changes. A change is visible when a query shows it:
   a registration or any registered field, ``status``, ``output``, a removal.
   A visible change sets the instance's ``mod_revision`` to the revision ``rev``
   the caller passes and moves the indexes (rule 5); the method then returns
   True and the caller bumps the store revision to ``rev``. A heartbeat that
   only moves ``last_heartbeat_ms`` (or a command that only moves ``clock``)
   changes the state — and so the state hash — but no revision.
4. Expiry, at effective time ``now``: an instance with ``ttl_ms > 0``, not
   critical, and ``last_heartbeat_ms + ttl_ms < now`` becomes critical with
   output ``"TTL expired"`` (``status_since_ms = now``); one critical, with
   ``deregister_after_ms > 0`` and ``status_since_ms + deregister_after_ms < now``,
   is removed. ``due(now)`` is true exactly when ``expire(now)`` would make a
   visible change.
5. Indexes never go backwards. ``index(service)`` is the revision of the last
   visible change to that service; its entry outlives the service's last
   instance, so a removal moves it too. ``index("")`` is the namespace's (the
   highest of all). At most ``MAX_EMPTY_SERVICES`` entries of services without
   instances are kept; beyond that the lowest ``(index, name)`` is dropped and
   ``floor`` rises to its index. A service without an entry reports ``floor``,
   which is at least anything it reported before. ``floor`` starts at the
   store revision the table was made at, so a namespace deleted and created
   again reports no index below the old one's.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, replace

from strong.ops import CRITICAL, RegisterInstance, UpdateCheck, check_instance_fields
from strong.results import InstanceRecord

__all__ = [
    "MAX_EMPTY_SERVICES",
    "TTL_EXPIRED",
    "ServiceTable",
    "ServiceTableState",
    "check_table_state",
]

MAX_EMPTY_SERVICES = 1024
"""Index entries kept for services whose last instance went (rule 5)."""
TTL_EXPIRED = "TTL expired"
"""The ``output`` of an instance that TTL expiry made critical."""

_Key = tuple[str, str]


@dataclass(frozen=True)
class ServiceTableState:
    """A table as plain sorted values (the snapshot's view of it)."""

    floor: int
    clock: int
    #: sorted by (service, instance_id)
    instances: tuple[InstanceRecord, ...]
    #: (service, index), sorted by service: every service with instances, and
    #: services emptied since (at most ``MAX_EMPTY_SERVICES`` of those)
    indexes: tuple[tuple[str, int], ...]


class ServiceTable:
    """The instances of one namespace (see the module rules)."""

    def __init__(self, floor: int = 0) -> None:
        self.floor = floor
        self.clock = 0
        #: the namespace's index (rule 5): the highest of ``floor`` and every entry
        self.index = floor
        self._items: dict[_Key, InstanceRecord] = {}
        self._order: list[_Key] = []
        self._indexes: dict[str, int] = {}
        #: live instances per service; a service with an index but no count is empty
        self._counts: dict[str, int] = {}
        self._empty: set[str] = set()

    def __len__(self) -> int:
        return len(self._order)

    def get(self, service: str, instance_id: str) -> InstanceRecord | None:
        return self._items.get((service, instance_id))

    # --- commands (the caller bumps the revision to ``rev`` iff they return True) ---

    def register(self, op: RegisterInstance, rev: int) -> bool:
        """Upsert ``op``'s instance, heard now; True iff visibly changed (rule 3)."""
        now = self._tick(op.now_ms)
        old = self._items.get((op.service, op.instance_id))
        fresh = InstanceRecord(
            op.service, op.instance_id, op.address, op.port, op.tags, op.meta, op.node,
            op.check, op.ttl_ms, op.deregister_after_ms, op.status, op.output,
            last_heartbeat_ms=now, status_since_ms=now, create_revision=rev, mod_revision=rev,
        )  # fmt: skip
        if old is None:
            self._store(fresh, rev)
            return True
        since = old.status_since_ms if old.status == op.status else now
        new = replace(fresh, status_since_ms=since, create_revision=old.create_revision)
        if _visible(old) == _visible(new):
            self._items[(op.service, op.instance_id)] = replace(old, last_heartbeat_ms=now)
            return False
        self._store(new, rev)
        return True

    def update_check(self, op: UpdateCheck, rev: int) -> bool | None:
        """Heartbeat / check result; None if there is no such instance (nothing changes)."""
        old = self._items.get((op.service, op.instance_id))
        if old is None:
            return None
        now = self._tick(op.now_ms)
        if (old.status, old.output) == (op.status, op.output):
            self._items[(op.service, op.instance_id)] = replace(old, last_heartbeat_ms=now)
            return False
        since = old.status_since_ms if old.status == op.status else now
        new = replace(
            old, status=op.status, output=op.output, last_heartbeat_ms=now, status_since_ms=since
        )
        self._store(new, rev)
        return True

    def deregister(self, service: str, instance_id: str, rev: int) -> bool:
        """Remove the instance; False if it was not there."""
        if (service, instance_id) not in self._items:
            return False
        self._remove((service, instance_id), rev)
        return True

    def expire(self, now_ms: int, rev: int) -> bool:
        """Rule 4 at effective time ``max(now_ms, clock)``; True iff anything visibly changed."""
        now = self._tick(now_ms)
        changed = False
        for key in list(self._order):
            record = self._items[key]
            match _expiry(record, now):
                case "critical":
                    self._store(
                        replace(record, status=CRITICAL, output=TTL_EXPIRED, status_since_ms=now),
                        rev,
                    )
                    changed = True
                case "remove":
                    self._remove(key, rev)
                    changed = True
                case None:
                    pass
        return changed

    def due(self, now_ms: int) -> bool:
        """Whether ``expire(now_ms, ...)`` would change anything visible (a pure query)."""
        now = max(now_ms, self.clock)
        return any(_expiry(self._items[key], now) is not None for key in self._order)

    # --- queries ------------------------------------------------------------

    def query(self, service: str) -> tuple[tuple[InstanceRecord, ...], int]:
        """(instances of ``service`` sorted by id, its index); ``""`` = every service."""
        if not service:
            return tuple(self._items[key] for key in self._order), self.index
        found = []
        i = bisect_left(self._order, (service, ""))
        while i < len(self._order) and self._order[i][0] == service:
            found.append(self._items[self._order[i]])
            i += 1
        return tuple(found), self._indexes.get(service, self.floor)

    # --- snapshots ----------------------------------------------------------

    def state(self) -> ServiceTableState:
        return ServiceTableState(
            self.floor,
            self.clock,
            tuple(self._items[key] for key in self._order),
            tuple((service, self._indexes[service]) for service in sorted(self._indexes)),
        )

    @classmethod
    def restore(cls, state: ServiceTableState) -> ServiceTable:
        """Rebuild from ``state()``; raises ``ValueError`` (``check_table_state``)."""
        check_table_state(state)
        table = cls(state.floor)
        table.clock = state.clock
        for record in state.instances:
            key = (record.service, record.instance_id)
            table._items[key] = record
            table._order.append(key)  # already sorted (checked)
            table._counts[record.service] = table._counts.get(record.service, 0) + 1
        table._indexes = dict(state.indexes)
        table._empty = {service for service, _ in state.indexes if service not in table._counts}
        table.index = max([state.floor, *table._indexes.values()])
        return table

    # --- internals ----------------------------------------------------------

    def _tick(self, now_ms: int) -> int:
        """Rule 2: the effective time of a command carrying ``now_ms``."""
        self.clock = max(self.clock, now_ms)
        return self.clock

    def _store(self, record: InstanceRecord, rev: int) -> None:
        """Insert or replace ``record`` as a visible change at ``rev`` (rule 3)."""
        record = replace(record, mod_revision=rev)
        key = (record.service, record.instance_id)
        if key not in self._items:
            insort(self._order, key)
            self._counts[record.service] = self._counts.get(record.service, 0) + 1
            self._empty.discard(record.service)
        self._items[key] = record
        self._touch(record.service, rev)

    def _remove(self, key: _Key, rev: int) -> None:
        del self._items[key]
        del self._order[bisect_left(self._order, key)]
        service = key[0]
        self._counts[service] -= 1
        if not self._counts[service]:
            del self._counts[service]
            self._empty.add(service)
        self._touch(service, rev)
        if len(self._empty) > MAX_EMPTY_SERVICES:
            oldest = min(sorted(self._empty), key=lambda s: (self._indexes[s], s))
            self._empty.discard(oldest)
            self.floor = max(self.floor, self._indexes.pop(oldest))

    def _touch(self, service: str, rev: int) -> None:
        self._indexes[service] = rev
        self.index = max(self.index, rev)


def _visible(record: InstanceRecord) -> InstanceRecord:
    """``record`` without what a heartbeat moves invisibly (rule 3)."""
    return replace(record, last_heartbeat_ms=0, mod_revision=0)


def _expiry(record: InstanceRecord, now: int) -> str | None:
    """What rule 4 does to ``record`` at ``now``: "critical", "remove" or None."""
    if record.status != CRITICAL:
        if record.ttl_ms and record.last_heartbeat_ms + record.ttl_ms < now:
            return "critical"
        return None
    if record.deregister_after_ms and record.status_since_ms + record.deregister_after_ms < now:
        return "remove"
    return None


def check_table_state(state: ServiceTableState) -> None:
    """Raise ``ValueError`` unless ``state`` is one ``ServiceTable.state()`` can return."""
    previous: _Key | None = None
    counts: dict[str, int] = {}
    newest: dict[str, int] = {}
    for record in state.instances:
        check_instance_fields(
            record.service, record.instance_id, record.address, record.port, record.tags,
            record.meta, record.node, record.check, record.ttl_ms, record.deregister_after_ms,
            record.status, record.output,
        )  # fmt: skip
        key = (record.service, record.instance_id)
        if previous is not None and not previous < key:
            raise ValueError("instances not strictly increasing by (service, instance_id)")
        previous = key
        if not 0 < record.create_revision <= record.mod_revision:
            raise ValueError(f"instance {key!r}: revisions out of order")
        if max(record.last_heartbeat_ms, record.status_since_ms) > state.clock:
            raise ValueError(f"instance {key!r}: a time past the table's clock")
        counts[record.service] = counts.get(record.service, 0) + 1
        newest[record.service] = max(newest.get(record.service, 0), record.mod_revision)
    names = [service for service, _ in state.indexes]
    if any(not names[i - 1] < names[i] for i in range(1, len(names))):
        raise ValueError("service indexes not strictly increasing by name")
    indexes = dict(state.indexes)
    for service, mod in newest.items():
        if indexes.get(service, -1) < mod:
            raise ValueError(f"service {service!r}: index below an instance's mod_revision")
    if sum(1 for name in names if name not in counts) > MAX_EMPTY_SERVICES:
        raise ValueError("too many index entries of empty services")
    if any(not name for name in names):
        raise ValueError("an index entry without a service name")

"""The deterministic state machine behind every strong namespace.

Rules (everything that decides what a replica's state becomes lives here):

1. Determinism. ``apply`` is a pure function of (state, slot, batch): no clock,
   no randomness, no floats, and no walk over a container whose order could
   differ between replicas — keys are walked through ``KVTable``'s sorted
   list, namespaces and clients only by lookup (the snapshot sorts them).
   Equal states at equal ``applied_index`` have equal ``state_hash``.
2. Order. Slots apply strictly one after another (``slot == applied_index + 1``
   or ``ValueError``); commands of a slot apply in batch order.
3. Bad input is a result, not an exception. Undecodable bytes give
   ``ErrorResult("malformed_command")``; writes to a missing or eventual
   namespace, failed CAS, stale retries give results too — identically on
   every replica, and they change nothing.
4. Version gate. Commands apply under ``version``, which only ``SetVersion``
   changes. A batch holding ``SetVersion(v)`` for a ``v`` this code does not
   support raises ``UnsupportedVersion`` *before applying any of the batch*:
   the node must stop applying (and be upgraded) rather than diverge.
5. Idempotency. Per ``client_id`` the last ``(seq, result)`` is remembered
   (``strong.sessions``): the same ``seq`` again returns the remembered result
   without reapplying, a lower one ``ErrorResult("stale_sequence")``;
   ``seq == 0`` always applies and is not remembered.
6. Revisions. ``revision`` is one counter for the whole group; it grows by one
   per command that changes the namespace registry, any key, or any service
   instance visibly (a ``Txn`` is one revision, however many keys it writes);
   a command that changes nothing (failed CAS, deleting an absent key, a read)
   leaves it alone.
7. All or nothing. A ``Txn`` either applies its whole chosen branch or, when an
   op of that branch fails, nothing (its writes are undone).
8. Session expiry (version >= 2). Time enters only as data:
   ``ExpireSessions(now_ms, ttl_ms)``, proposed by the leader with its wall
   time, expires sessions idle past ``ttl_ms`` on every replica alike; a
   command of an expired client id is ``ErrorResult("session_expired")`` and
   applies nothing (``strong.sessions`` rules 2-4). Below version 2 the op is
   ``ErrorResult("unsupported_in_version")`` and changes nothing.
9. Service instances (version >= 3). Every strong namespace holds a
   ``strong.services.ServiceTable`` (made with the namespace, or for the
   namespaces already there when ``SetVersion`` reaches 3; dropped with the
   namespace). ``RegisterInstance``, ``UpdateCheck``, ``DeregisterInstance``
   and ``ExpireInstances(now_ms)`` are one revision each when they change
   anything visible — ``ExpireInstances`` one for all namespaces it touches —
   and none otherwise (rule 6; a heartbeat that only moves
   ``last_heartbeat_ms`` changes the state but not the revision). Time enters
   as data, as in rule 8. ``ListInstances`` is a read. Below version 3 these ops
   are ``ErrorResult("unsupported_in_version")`` and change nothing. A ``Txn``
   holds key ops only.
10. ACL tokens and policies (version >= 4). ``SetAclPolicy``, ``DeleteAclPolicy``,
   ``SetAclToken`` and ``DeleteAclToken`` change ``strong.acl.AclTable`` (its
   rules 1-6) and no revision; ``ExpireSessions(now_ms, ...)`` also drops the
   tokens expired at ``now_ms`` (time as data, as in rule 8). Below version 4
   they are ``ErrorResult("unsupported_in_version")`` and change nothing.
10. Reads are not remembered (version >= 5). A command that only reads (``Get``,
   ``Range``, ``ListInstances``, or a ``Txn`` whose responses are all reads) leaves
   ``NoopResult()`` in its client's session instead of its result, and a retry of
   that ``seq`` executes again: the first attempt changed nothing, so the retry is
   the one application that counts, inside the request's interval (linearizable).
   Below version 5 the whole result is remembered, so a read-only ``Txn`` over a
   large range kept a copy of the range in every replica's memory and snapshot
   until the client's next command or its session's expiry. Applying
   ``SetVersion(5)`` migrates: every remembered read-only result becomes
   ``NoopResult()`` (sessions walked in sorted order; rule 1).
12. Supported range. A state machine applies under the versions of ``supported``
   (``SUPPORTED_VERSIONS`` unless a node caps it, ``configsvc.upgrade``); rule 4
   and ``restore`` use it.
13. Hash checks (any version). ``HashCheck`` and ``HashReport`` change nothing in
   the state (``NoopResult``; a binary that cannot decode them gets
   ``malformed_command`` and changes nothing either, so they need no version).
   After a slot holding ``HashCheck(id)`` applies, ``hash_events`` gets
   ``(slot, id, "", state_hash at slot)``; for each ``HashReport`` it gets
   ``(slot, id, node, digest)``. The driver drains them (``take_hash_events``);
   they are in no snapshot (``strong.hash_check`` tallies them).
"""

from __future__ import annotations

from dataclasses import replace

from strong.acl import ACL_OPS, ACL_VERSION, AclOp, AclTable
from strong.commands import (
    STRONG,
    Command,
    Compare,
    CreateNamespace,
    Delete,
    DeleteNamespace,
    DeletePrefix,
    DeregisterInstance,
    ExpireInstances,
    ExpireSessions,
    Get,
    HashCheck,
    HashReport,
    ListInstances,
    MalformedCommand,
    Noop,
    Op,
    Put,
    Range,
    ReadOp,
    RegisterInstance,
    ServiceOp,
    SetVersion,
    Txn,
    TxnOp,
    UpdateCheck,
    decode_command,
)
from strong.kv import KVTable, compare_holds
from strong.results import (
    Applied,
    CasFailed,
    DeleteResult,
    ErrorCode,
    ErrorResult,
    GetResult,
    InstancesResult,
    KeyValue,
    NamespaceDeleted,
    NamespaceInfo,
    NamespaceResult,
    NoopResult,
    PutResult,
    RangeResult,
    Result,
    ServiceWriteResult,
    TxnResponse,
    TxnResult,
    VersionResult,
)
from strong.services import ServiceTable
from strong.sessions import SessionTable
from strong.sm_snapshot import (
    CLOCK_VERSION,
    SERVICES_VERSION,
    MalformedSnapshot,
    SnapshotState,
    decode_snapshot,
    encode_snapshot,
)
from strong.state_hash import state_hash

__all__ = [
    "INITIAL_VERSION",
    "SERVICES_VERSION",
    "SESSION_EXPIRY_VERSION",
    "SUPPORTED_VERSIONS",
    "UNREMEMBERED_READS_VERSION",
    "Applied",
    "MalformedSnapshot",
    "NamespaceInfo",
    "StateMachine",
    "UnsupportedVersion",
]

INITIAL_VERSION = 1
#: version 5: read-only commands are not remembered by client sessions (rule 11)
UNREMEMBERED_READS_VERSION = 5
SUPPORTED_VERSIONS = range(INITIAL_VERSION, UNREMEMBERED_READS_VERSION + 1)
"""State-machine versions this code can apply commands under (2: session expiry, rule 8;
3: service instances, rule 9; 4: ACL tokens and policies, rule 10, ``strong.acl.ACL_VERSION``;
5: rule 11). A new
version adds its constant and the range ends at it; nothing else here names the highest one."""
SESSION_EXPIRY_VERSION = CLOCK_VERSION
_SERVICE_OPS = (RegisterInstance, UpdateCheck, DeregisterInstance, ExpireInstances, ListInstances)

_KEY_OPS = (Put, Delete, DeletePrefix, Get, Range)
"""The ops ``_txn_op`` applies (also outside a ``Txn``)."""


_Undo = list[tuple[KVTable, bytes, KeyValue | None]]
"""Writes of the current command, oldest first: (table, key, value before)."""


class UnsupportedVersion(Exception):
    """The log asks for a state-machine version this code does not implement.

    Raised by ``apply`` (nothing of the batch applied) and ``restore``.
    """


class StateMachine:
    """Namespaces, their keys and the client table, advanced slot by slot."""

    def __init__(self, supported: range = SUPPORTED_VERSIONS) -> None:
        #: the versions this machine applies under (rule 12)
        self.supported = supported
        self.applied_index = 0
        self.version = INITIAL_VERSION
        self.revision = 0
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._tables: dict[str, KVTable] = {}  # strong namespaces only
        #: strong namespaces only, from version 3 (rule 9)
        self._services: dict[str, ServiceTable] = {}
        self._sessions = SessionTable()
        #: tokens and policies, from version 4 (rule 10)
        self._acl = AclTable()
        #: ``snapshot()`` of the current state, kept until the next ``apply``
        #: (hashing and compacting at the same index encode once)
        self._snapshot: bytes | None = None
        #: hash-check events of applied slots, drained by the driver (rule 13; volatile)
        self.hash_events: list[tuple[int, int, str, bytes]] = []
        self._checks: list[int] = []
        #: bytes of commands applied by this object since it was made or restored
        #: (volatile, in no snapshot or hash): a driver compares it with its value at
        #: the last compaction to compact by log bytes, not only by slots
        self.applied_bytes = 0

    # --- the log side -------------------------------------------------------

    def apply(self, slot: int, batch: tuple[bytes, ...]) -> list[Applied]:
        """Apply the chosen batch of ``slot``; one ``Applied`` per command.

        Raises ``ValueError`` if ``slot != applied_index + 1`` and
        ``UnsupportedVersion`` (state untouched) if the batch switches to a
        version outside ``SUPPORTED_VERSIONS``.
        """
        if slot != self.applied_index + 1:
            raise ValueError(f"slot {slot} applied after {self.applied_index}")
        self._snapshot = None
        commands: list[Command | MalformedCommand] = []
        for data in batch:
            self.applied_bytes += len(data)
            try:
                commands.append(decode_command(data))
            except MalformedCommand as exc:
                commands.append(exc)
        for cmd in commands:
            if (
                isinstance(cmd, Command)
                and isinstance(cmd.op, SetVersion)
                and cmd.op.version not in self.supported
            ):
                raise UnsupportedVersion(
                    f"slot {slot} sets state-machine version {cmd.op.version}; "
                    f"this node supports {self.supported.start}..{self.supported.stop - 1}"
                )
        applied = []
        for cmd in commands:
            if isinstance(cmd, MalformedCommand):
                error = ErrorResult(ErrorCode.MALFORMED_COMMAND, str(cmd))
                applied.append(Applied("", 0, error))
            else:
                applied.append(Applied(cmd.client_id, cmd.seq, self._apply_command(cmd)))
        self.applied_index = slot
        if self._checks:  # rule 13: the hash of the state at this slot
            digest = state_hash(self)
            self.hash_events.extend((slot, check_id, "", digest) for check_id in self._checks)
            self._checks.clear()
        return applied

    def take_hash_events(self) -> list[tuple[int, int, str, bytes]]:
        """Rule 12's events since the last call, in log order."""
        events, self.hash_events = self.hash_events, []
        return events

    def _apply_command(self, cmd: Command) -> Result:
        if cmd.seq == 0:
            return self._execute(cmd.op)
        answer = self._sessions.check(cmd.client_id, cmd.seq)
        if answer is not None and not (
            self.version >= UNREMEMBERED_READS_VERSION and isinstance(answer, NoopResult)
        ):  # rule 11: a remembered read executes again
            return answer
        result = self._execute(cmd.op)
        self._sessions.remember(cmd.client_id, cmd.seq, self._to_remember(result))
        return result

    def _to_remember(self, result: Result) -> Result:
        """What a client session keeps of ``result`` (rule 11)."""
        if self.version >= UNREMEMBERED_READS_VERSION and _read_only(result):
            return NoopResult()
        return result

    def _execute(self, op: Op) -> Result:
        if isinstance(op, _KEY_OPS):  # the common case, tested first
            return self._key_op(op)
        if isinstance(op, _SERVICE_OPS):
            return self._service_op(op)
        if isinstance(op, ACL_OPS):
            return self._acl_op(op)
        match op:
            case CreateNamespace():
                return self._create_namespace(op)
            case DeleteNamespace(name):
                return self._delete_namespace(name)
            case Txn():
                return self._txn(op)
            case SetVersion(version):
                if version < self.version:
                    return ErrorResult(
                        ErrorCode.VERSION_DOWNGRADE,
                        f"version {self.version} cannot go to {version}",
                    )
                if self.version < SERVICES_VERSION <= version:
                    for name in sorted(self._tables):
                        self._services[name] = ServiceTable(floor=self.revision)
                if self.version < UNREMEMBERED_READS_VERSION <= version:  # rule 11's migration
                    self._sessions.replace_results(
                        lambda r: NoopResult() if _read_only(r) else r
                    )
                self.version = version
                return VersionResult(version)
            case ExpireSessions(now_ms, ttl_ms):
                if self.version < SESSION_EXPIRY_VERSION:
                    return ErrorResult(
                        ErrorCode.UNSUPPORTED_IN_VERSION,
                        f"session expiry needs state-machine version {SESSION_EXPIRY_VERSION}, "
                        f"this group is at {self.version}",
                    )
                self._sessions.expire(now_ms, ttl_ms)
                if self.version >= ACL_VERSION:
                    self._acl.expire(now_ms)
                return NoopResult()
            case Noop():
                return NoopResult()
            case HashCheck(check_id):
                self._checks.append(check_id)
                return NoopResult()
            case HashReport(check_id, node, digest):
                self.hash_events.append((self.applied_index + 1, check_id, node, digest))
                return NoopResult()

    def _key_op(self, op: TxnOp) -> Result:
        """A key op outside a ``Txn``: one revision if it wrote anything."""
        undo: _Undo = []
        result = self._txn_op(op, self.revision + 1, undo)
        if undo:
            self.revision += 1
        return result

    # --- namespaces ---------------------------------------------------------

    def _create_namespace(self, op: CreateNamespace) -> Result:
        info = NamespaceInfo(op.name, op.consistency, op.options)
        existing = self._namespaces.get(op.name)
        if existing == info:
            return NamespaceResult(info, False, self.revision)
        if existing is not None:
            return ErrorResult(
                ErrorCode.NAMESPACE_EXISTS,
                f"namespace {op.name!r} exists as {existing.consistency} with other options",
            )
        self.revision += 1
        self._namespaces[op.name] = info
        if op.consistency == STRONG:
            self._tables[op.name] = KVTable()
            if self.version >= SERVICES_VERSION:
                self._services[op.name] = ServiceTable(floor=self.revision)
        return NamespaceResult(info, True, self.revision)

    def _delete_namespace(self, name: str) -> Result:
        if name not in self._namespaces:
            return _not_found(name)
        self.revision += 1
        del self._namespaces[name]
        table = self._tables.pop(name, None)
        self._services.pop(name, None)
        return NamespaceDeleted(name, len(table) if table is not None else 0, self.revision)

    def namespaces(self) -> list[NamespaceInfo]:
        """Every registered namespace (strong and eventual), sorted by name."""
        return [self._namespaces[name] for name in sorted(self._namespaces)]

    def has_namespace(self, name: str) -> bool:
        """Whether ``name`` is a registered namespace (strong or eventual)."""
        return name in self._namespaces

    def key_count(self, ns: str) -> int:
        """How many keys strong namespace ``ns`` holds (0 if it is not one)."""
        table = self._tables.get(ns)
        return len(table) if table is not None else 0

    def _table(self, ns: str) -> KVTable | ErrorResult:
        table = self._tables.get(ns)
        if table is not None:
            return table
        if ns in self._namespaces:
            return ErrorResult(
                ErrorCode.WRONG_CONSISTENCY,
                f"namespace {ns!r} is {self._namespaces[ns].consistency}, not strong",
            )
        return _not_found(ns)

    # --- keys ---------------------------------------------------------------

    def read(self, op: ReadOp) -> GetResult | RangeResult | InstancesResult | ErrorResult:
        """Serve a read from the applied state (linearizable once the caller
        has confirmed its read index is applied; otherwise a stale read)."""
        if isinstance(op, ListInstances):
            services = self._service_table(op.ns)
            if isinstance(services, ErrorResult):
                return services
            instances, index = services.query(op.service)
            return InstancesResult(instances, self.revision, index)
        table = self._table(op.ns)
        if isinstance(table, ErrorResult):
            return table
        if isinstance(op, Get):
            return GetResult(table.get(op.key), self.revision)
        kvs, more = table.scan(op.prefix, op.limit)
        return RangeResult(tuple(kvs), self.revision, more)

    def _txn_op(self, op: TxnOp, rev: int, undo: _Undo) -> Result:
        """Apply one key op, writing at revision ``rev`` and logging to ``undo``.

        The caller bumps ``revision`` iff ``undo`` grew.
        """
        table = self._table(op.ns)
        if isinstance(table, ErrorResult):
            return table
        match op:
            case Put(_, key, value, flags, if_mod):
                prev = table.get(key)
                if if_mod is not None and _mod_revision(prev) != if_mod:
                    return CasFailed(prev, self.revision)
                if prev is None:
                    kv = KeyValue(key, value, rev, rev, 1, flags)
                else:
                    kv = KeyValue(key, value, prev.create_revision, rev, prev.version + 1, flags)
                undo.append((table, key, prev))
                table.set(kv)
                return PutResult(rev, prev)
            case Delete(_, key, if_mod):
                prev = table.get(key)
                if if_mod is not None and _mod_revision(prev) != if_mod:
                    return CasFailed(prev, self.revision)
                if prev is None:
                    return DeleteResult(self.revision, 0, None)
                undo.append((table, key, table.remove(key)))
                return DeleteResult(rev, 1, prev, (key,))
            case DeletePrefix(_, prefix):
                doomed, _ = table.scan(prefix)
                for kv in doomed:
                    undo.append((table, kv.key, table.remove(kv.key)))
                keys = tuple(kv.key for kv in doomed)
                return DeleteResult(rev if doomed else self.revision, len(doomed), None, keys)
            case Get() | Range():
                return self.read(op)

    def _txn(self, op: Txn) -> Result:
        succeeded = True
        for compare in op.compares:
            holds = self._compare(compare)
            if isinstance(holds, ErrorResult):
                return holds
            succeeded = succeeded and holds
        rev = self.revision + 1
        undo: _Undo = []
        responses: list[TxnResponse] = []
        for i, txn_op in enumerate(op.success if succeeded else op.failure):
            result = self._txn_op(txn_op, rev, undo)
            if isinstance(result, PutResult | DeleteResult | GetResult | RangeResult):
                responses.append(result)
                continue
            for table, key, before in reversed(undo):
                if before is None:
                    table.remove(key)
                else:
                    table.set(before)
            if isinstance(result, ErrorResult):
                return ErrorResult(result.code, f"txn op {i}: {result.message}")
            return ErrorResult(
                ErrorCode.TXN_OP_FAILED,
                f"txn op {i}: if_mod_revision does not match the key's mod_revision",
            )
        if undo:
            self.revision = rev
        final = self.revision
        # A write already carries ``rev == final``: copy only the reads (a bulk load's
        # thousand puts allocate nothing here).
        return TxnResult(
            succeeded,
            tuple(r if r.revision == final else replace(r, revision=final) for r in responses),
            final,
        )

    def _compare(self, compare: Compare) -> bool | ErrorResult:
        table = self._table(compare.ns)
        if isinstance(table, ErrorResult):
            return table
        return compare_holds(table.get(compare.key), compare)

    # --- service instances (rule 9) -----------------------------------------

    def _services_unsupported(self) -> ErrorResult | None:
        if self.version >= SERVICES_VERSION:
            return None
        return ErrorResult(
            ErrorCode.UNSUPPORTED_IN_VERSION,
            f"service instances need state-machine version {SERVICES_VERSION}, "
            f"this group is at {self.version}",
        )

    def _service_table(self, ns: str) -> ServiceTable | ErrorResult:
        unsupported = self._services_unsupported()
        if unsupported is not None:
            return unsupported
        table = self._table(ns)
        if isinstance(table, ErrorResult):
            return table
        return self._services[ns]

    def _service_op(self, op: ServiceOp) -> Result:
        if isinstance(op, ListInstances):
            return self.read(op)
        rev = self.revision + 1
        if isinstance(op, ExpireInstances):
            unsupported = self._services_unsupported()
            if unsupported is not None:
                return unsupported
            changed = False
            for name in sorted(self._services):
                changed = self._services[name].expire(op.now_ms, rev) or changed
            return self._service_written(changed)
        services = self._service_table(op.ns)
        if isinstance(services, ErrorResult):
            return services
        match op:
            case RegisterInstance():
                return self._service_written(services.register(op, rev))
            case UpdateCheck(ns, service, instance_id):
                updated = services.update_check(op, rev)
                if updated is None:
                    return ErrorResult(
                        ErrorCode.INSTANCE_NOT_FOUND,
                        f"no instance {instance_id!r} of service {service!r} in {ns!r}",
                    )
                return self._service_written(updated)
            case DeregisterInstance(_, service, instance_id):
                return self._service_written(services.deregister(service, instance_id, rev))

    def _service_written(self, changed: bool) -> ServiceWriteResult:
        if changed:
            self.revision += 1
        return ServiceWriteResult(self.revision, changed)

    def instances_due(self, now_ms: int) -> bool:
        """Whether ``ExpireInstances(now_ms)`` would change anything visible now
        (a pure query: the leader proposes expiry only when it would)."""
        if self.version < SERVICES_VERSION:
            return False
        return any(self._services[name].due(now_ms) for name in sorted(self._services))

    # --- ACL tokens and policies (rule 10) ----------------------------------

    def _acl_op(self, op: AclOp) -> Result:
        if self.version < ACL_VERSION:
            return ErrorResult(
                ErrorCode.UNSUPPORTED_IN_VERSION,
                f"ACL tokens and policies need state-machine version {ACL_VERSION}, "
                f"this group is at {self.version}",
            )
        return self._acl.apply(op)

    @property
    def acl(self) -> AclTable:
        """The applied ACL table (read it only; it changes with ``apply``)."""
        return self._acl

    # --- snapshots ----------------------------------------------------------

    def snapshot(self) -> bytes:
        """The canonical bytes of the whole state (equal states, equal bytes)."""
        if self._snapshot is None:
            self._snapshot = encode_snapshot(self.snapshot_state())
        return self._snapshot

    def snapshot_state(self) -> SnapshotState:
        """A consistent copy of the whole state, at ``applied_index``, to encode elsewhere.

        Only tuples of immutable values (frozen ``KeyValue``, results, infos): later
        ``apply`` calls cannot change it, so ``encode_snapshot`` may run in another
        thread while this machine keeps applying. Costs one pass over the keys.
        """
        return SnapshotState(
            applied_index=self.applied_index,
            version=self.version,
            revision=self.revision,
            namespaces=tuple(
                (
                    info,
                    tuple(self._tables[info.name].items())
                    if info.consistency == STRONG
                    else None,
                )
                for info in self.namespaces()
            ),
            sessions=self._sessions.live(),
            clock=self._sessions.clock,
            expired=self._sessions.expired(),
            services=tuple((name, self._services[name].state()) for name in sorted(self._services)),
            acl=self._acl.state(),
        )

    @staticmethod
    def encode(state: SnapshotState) -> bytes:
        """``encode_snapshot(state)``: safe in any thread (``state`` is immutable)."""
        return encode_snapshot(state)

    @classmethod
    def restore(cls, data: bytes, supported: range = SUPPORTED_VERSIONS) -> StateMachine:
        """Rebuild from ``snapshot()`` bytes; ``restore(s).snapshot() == s``.

        Raises ``MalformedSnapshot`` for bytes ``snapshot`` cannot have made and
        ``UnsupportedVersion`` for a version this code cannot apply under.
        """
        state = decode_snapshot(data)
        if state.version not in supported:
            raise UnsupportedVersion(
                f"snapshot is at state-machine version {state.version}; "
                f"this node supports {supported.start}..{supported.stop - 1}"
            )
        machine = cls(supported)
        machine.applied_index = state.applied_index
        machine.version = state.version
        machine.revision = state.revision
        for info, kvs in state.namespaces:
            machine._namespaces[info.name] = info
            if kvs is not None:
                machine._tables[info.name] = KVTable.from_sorted(kvs)
        machine._sessions = SessionTable.restore(state.sessions, state.expired, state.clock)
        for name, services in state.services:  # decoded, so already checked
            machine._services[name] = ServiceTable.restore(services)
        machine._acl = AclTable.restore(state.acl)
        return machine

    def adopt_snapshot(self, index: int, data: bytes) -> None:
        """Remember ``data`` (encoded elsewhere from ``snapshot_state()``) as ``snapshot()``,
        if nothing was applied since: hashing at that index then encodes nothing."""
        if index == self.applied_index and self._snapshot is None:
            self._snapshot = data

    def state_hash(self) -> str:
        """Hex SHA-256 of ``snapshot()`` (``strong.state_hash.state_hash`` in hex):
        compare replicas at equal ``applied_index``."""
        return state_hash(self).hex()


def _read_only(result: Result) -> bool:
    """Whether ``result`` answers a command that only read (rule 11)."""
    if isinstance(result, TxnResult):
        return all(isinstance(r, GetResult | RangeResult) for r in result.responses)
    return isinstance(result, GetResult | RangeResult | InstancesResult)


def _mod_revision(kv: KeyValue | None) -> int:
    return kv.mod_revision if kv is not None else 0


def _not_found(ns: str) -> ErrorResult:
    return ErrorResult(ErrorCode.NAMESPACE_NOT_FOUND, f"no namespace {ns!r}")

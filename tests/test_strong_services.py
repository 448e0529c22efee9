"""Service instances in strong namespaces, fed by hand (state-machine version 3).

Each test drives ``StateMachine.apply`` through encoded commands, one slot per
command, as a replica does: registration, heartbeats, expiry with the time as
data, the revision rule (one per visible change, none for a bare heartbeat),
the change index a blocking query waits on, version gating, dedup, snapshots.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from strong import services as services_module
from strong.commands import (
    Command,
    CreateNamespace,
    DeleteNamespace,
    DeregisterInstance,
    ExpireInstances,
    ListInstances,
    Op,
    Put,
    RegisterInstance,
    SetVersion,
    UpdateCheck,
    encode_command,
)
from strong.results import (
    ErrorCode,
    ErrorResult,
    InstanceRecord,
    InstancesResult,
    NamespaceResult,
    Result,
    ServiceWriteResult,
)
from strong.services import TTL_EXPIRED
from strong.sm_snapshot import decode_snapshot
from strong.state_machine import StateMachine

T0 = 1_700_000_000_000


def register(
    service: str = "web",
    instance_id: str = "w1",
    *,
    ns: str = "app",
    port: int = 80,
    ttl_ms: int = 0,
    deregister_after_ms: int = 0,
    status: str = "passing",
    output: str = "",
    now_ms: int = T0,
) -> RegisterInstance:
    return RegisterInstance(
        ns, service, instance_id, "10.0.0.1", port, ("v1",), (("zone", "a"),), "n1",
        b'{"http": "http://10.0.0.1/health"}', ttl_ms, deregister_after_ms, status, output,
        now_ms,
    )  # fmt: skip


class Machine:
    """A state machine at version 3 with strong ``app`` and ``other`` and eventual ``ev``."""

    def __init__(self, version: int = 3) -> None:
        self.sm = StateMachine()
        self(SetVersion(version))
        for name, consistency in (("app", "strong"), ("other", "strong"), ("ev", "eventual")):
            self(CreateNamespace(name, consistency))

    def __call__(self, op: Op, client: str = "", seq: int = 0) -> Result:
        slot = self.sm.applied_index + 1
        (applied,) = self.sm.apply(slot, (encode_command(Command(client, seq, op)),))
        return applied.result

    def list(self, service: str = "", ns: str = "app") -> InstancesResult:
        result = self.sm.read(ListInstances(ns, service))
        assert isinstance(result, InstancesResult), result
        return result

    def one(self, service: str = "web", instance_id: str = "w1") -> InstanceRecord:
        [record] = [r for r in self.list(service).instances if r.instance_id == instance_id]
        return record


@pytest.fixture
def m() -> Machine:
    return Machine()


def code(result: Result) -> str:
    assert isinstance(result, ErrorResult), result
    return result.code


def test_a_registration_is_one_revision_and_shows_with_its_times(m: Machine) -> None:
    before = m.sm.revision
    assert m(register(now_ms=T0)) == ServiceWriteResult(before + 1, True)
    record = m.one()
    assert (record.create_revision, record.mod_revision) == (before + 1, before + 1)
    assert (record.last_heartbeat_ms, record.status_since_ms) == (T0, T0)
    assert (record.address, record.port, record.tags, record.node) == ("10.0.0.1", 80, ("v1",), "n1")
    assert record.meta == (("zone", "a"),) and record.check.startswith(b"{")
    listed = m.list("web")
    assert (listed.revision, listed.index) == (before + 1, before + 1)


def test_a_heartbeat_only_moves_the_heartbeat_time_not_the_revision(m: Machine) -> None:
    m(register(ttl_ms=10_000, now_ms=T0))
    revision, hash_before = m.sm.revision, m.sm.state_hash()
    assert m(UpdateCheck("app", "web", "w1", "passing", "", T0 + 500)) == ServiceWriteResult(
        revision, False
    )
    assert m(register(ttl_ms=10_000, now_ms=T0 + 900)) == ServiceWriteResult(revision, False)
    assert m.sm.revision == revision and m.list("web").index == revision
    assert m.one().last_heartbeat_ms == T0 + 900
    assert m.sm.state_hash() != hash_before  # the state changed, invisibly


def test_status_output_and_fields_are_visible_changes(m: Machine) -> None:
    m(register(now_ms=T0))
    created = m.sm.revision
    assert m(UpdateCheck("app", "web", "w1", "passing", "ok", T0 + 1)) == ServiceWriteResult(
        created + 1, True
    )
    assert m.one().status_since_ms == T0  # same status: since unchanged
    assert m(UpdateCheck("app", "web", "w1", "warning", "ok", T0 + 2)).revision == created + 2  # type: ignore[union-attr]
    assert (m.one().status, m.one().status_since_ms, m.one().mod_revision) == (
        "warning", T0 + 2, created + 2
    )  # fmt: skip
    assert m(register(port=81, status="warning", output="ok", now_ms=T0 + 3)) == (
        ServiceWriteResult(created + 3, True)
    )
    record = m.one()
    assert (record.port, record.create_revision, record.mod_revision) == (81, created, created + 3)
    assert record.status_since_ms == T0 + 2  # a re-registration keeping the status keeps since


def test_update_check_of_an_unknown_instance_or_namespace_changes_nothing(m: Machine) -> None:
    m(register())
    before = m.sm.snapshot()
    applied_before = m.sm.applied_index
    assert code(m(UpdateCheck("app", "web", "nope", "passing", "", T0))) == (
        ErrorCode.INSTANCE_NOT_FOUND
    )
    assert code(m(UpdateCheck("gone", "web", "w1", "passing", "", T0))) == (
        ErrorCode.NAMESPACE_NOT_FOUND
    )
    assert code(m(register(ns="ev"))) == ErrorCode.WRONG_CONSISTENCY
    assert code(m.sm.read(ListInstances("ev", ""))) == ErrorCode.WRONG_CONSISTENCY
    assert code(m.sm.read(ListInstances("gone", ""))) == ErrorCode.NAMESPACE_NOT_FOUND
    after = decode_snapshot(m.sm.snapshot())
    assert after == replace(decode_snapshot(before), applied_index=applied_before + 3)


def test_deregistering_is_a_revision_once_and_moves_the_index(m: Machine) -> None:
    m(register("web", "w1"))
    m(register("web", "w2"))
    m(register("db", "d1"))
    revision = m.sm.revision
    assert m(DeregisterInstance("app", "web", "w1")) == ServiceWriteResult(revision + 1, True)
    assert m(DeregisterInstance("app", "web", "w1")) == ServiceWriteResult(revision + 1, False)
    web = m.list("web")
    assert [r.instance_id for r in web.instances] == ["w2"] and web.index == revision + 1
    assert m.list("db").index == revision  # untouched by web's change
    assert m.list("").index == revision + 1


def test_an_emptied_service_keeps_its_index_and_an_unknown_one_reports_the_floor(m: Machine) -> None:
    made = m(CreateNamespace("fresh", "strong"))
    assert isinstance(made, NamespaceResult)  # a table's floor is its namespace's creation
    m(register("web", "w1"))
    m(DeregisterInstance("app", "web", "w1"))
    gone = m.sm.revision
    assert m.list("web") == InstancesResult((), gone, gone)
    assert m.list("never", ns="fresh").index == made.revision
    assert m.list("", ns="fresh").index == made.revision


def test_ttl_expiry_and_deregister_after_follow_the_time_in_the_command(m: Machine) -> None:
    m(register("web", "w1", ttl_ms=1_000, deregister_after_ms=5_000, now_ms=T0))
    m(register("web", "w2", ttl_ms=0, now_ms=T0))  # no TTL: never expires
    m(register("web", "w3", ttl_ms=1_000, deregister_after_ms=0, now_ms=T0))  # never removed
    revision = m.sm.revision
    assert not m.sm.instances_due(T0 + 1_000)
    assert m(ExpireInstances(T0 + 1_000)) == ServiceWriteResult(revision, False)  # not yet: strict <
    assert m.sm.instances_due(T0 + 1_001)
    assert m(ExpireInstances(T0 + 1_001)) == ServiceWriteResult(revision + 1, True)  # one for both
    w1, w3 = m.one("web", "w1"), m.one("web", "w3")
    for record in (w1, w3):
        assert (record.status, record.output) == ("critical", TTL_EXPIRED)
        assert (record.status_since_ms, record.mod_revision) == (T0 + 1_001, revision + 1)
    assert m.one("web", "w2").status == "passing"
    assert not m.sm.instances_due(T0 + 6_001)
    assert m(ExpireInstances(T0 + 6_002)) == ServiceWriteResult(revision + 2, True)
    assert [r.instance_id for r in m.list("web").instances] == ["w2", "w3"]
    assert m.list("web").index == revision + 2
    assert not m.sm.instances_due(T0 + 10**9)


def test_a_critical_instance_is_removed_whatever_made_it_critical(m: Machine) -> None:
    m(register(status="critical", deregister_after_ms=100, now_ms=T0))
    assert m.sm.instances_due(T0 + 101) and not m.sm.instances_due(T0 + 100)
    m(UpdateCheck("app", "web", "w1", "passing", "", T0 + 50))
    assert not m.sm.instances_due(T0 + 10**6)  # passing, no TTL: nothing to do


def test_a_heartbeat_revives_an_expired_instance(m: Machine) -> None:
    m(register(ttl_ms=1_000, now_ms=T0))
    m(ExpireInstances(T0 + 2_000))
    revision = m.sm.revision
    assert m(UpdateCheck("app", "web", "w1", "passing", "", T0 + 2_100)) == ServiceWriteResult(
        revision + 1, True
    )
    assert (m.one().status, m.one().output, m.one().status_since_ms) == ("passing", "", T0 + 2_100)


def test_a_lagging_proposer_clock_never_makes_an_instance_older(m: Machine) -> None:
    """Log order proves a command came after every earlier one: its time is at
    least theirs, so a lagging clock delays expiry, never hastens it."""
    m(register("web", "w1", ttl_ms=1_000, now_ms=T0 + 5_000))
    m(register("web", "w2", ttl_ms=1_000, now_ms=T0))  # proposed by a leader 5 s behind
    assert m.one("web", "w2").last_heartbeat_ms == T0 + 5_000
    m(UpdateCheck("app", "web", "w1", "passing", "", T0))
    assert m.one("web", "w1").last_heartbeat_ms == T0 + 5_000
    assert not m.sm.instances_due(T0 + 6_000)
    assert m(ExpireInstances(T0 + 6_000)) == ServiceWriteResult(m.sm.revision, False)


def test_one_expiry_command_is_one_revision_across_namespaces(m: Machine) -> None:
    m(register(ns="app", ttl_ms=10, now_ms=T0))
    m(register(ns="other", ttl_ms=10, now_ms=T0))
    revision = m.sm.revision
    assert m(ExpireInstances(T0 + 11)) == ServiceWriteResult(revision + 1, True)
    assert m.list("web", ns="app").index == m.list("web", ns="other").index == revision + 1


def test_deleting_a_namespace_drops_its_instances_and_a_new_one_starts_above(m: Machine) -> None:
    m(register(ttl_ms=10, now_ms=T0))
    old_index = m.list("web").index
    m(DeleteNamespace("app"))
    assert code(m.sm.read(ListInstances("app"))) == ErrorCode.NAMESPACE_NOT_FOUND
    assert not m.sm.instances_due(T0 + 10**6)
    m(CreateNamespace("app", "strong"))
    fresh = m.list("web")
    assert fresh.instances == () and fresh.index > old_index


def test_indexes_never_go_backwards_when_empty_services_are_forgotten(
    m: Machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services_module, "MAX_EMPTY_SERVICES", 2)
    seen: dict[str, int] = {}
    for name in ("s1", "s2", "s3", "s4"):
        m(register(name, "i"))
        m(DeregisterInstance("app", name, "i"))
        for service in ("s1", "s2", "s3", "s4", "never"):
            index = m.list(service).index
            assert index >= seen.get(service, 0), service
            seen[service] = index
    assert len(decode_snapshot(m.sm.snapshot()).services[0][1].indexes) == 2
    assert m.list("s1").index == m.list("s2").index  # both forgotten: the floor


def test_ops_below_version_3_are_refused_and_change_nothing() -> None:
    for version in (1, 2):
        m = Machine(version)
        m(Put("app", b"k", b"v"))
        state = decode_snapshot(m.sm.snapshot())
        for op in (
            register(),
            UpdateCheck("app", "web", "w1", "passing", "", T0),
            DeregisterInstance("app", "web", "w1"),
            ExpireInstances(T0),
            ListInstances("app", ""),
        ):
            assert code(m(op)) == ErrorCode.UNSUPPORTED_IN_VERSION
            assert code(m(op, "c", m.sm.applied_index)) == ErrorCode.UNSUPPORTED_IN_VERSION
        assert code(m.sm.read(ListInstances("app"))) == ErrorCode.UNSUPPORTED_IN_VERSION
        assert not m.sm.instances_due(T0)
        after = decode_snapshot(m.sm.snapshot())
        assert (after.revision, after.namespaces, after.services) == (
            state.revision, state.namespaces, ()
        )  # fmt: skip
        assert decode_snapshot(m.sm.snapshot()).version == version


def test_upgrading_to_version_3_gives_existing_strong_namespaces_a_table() -> None:
    m = Machine(2)
    m(Put("app", b"k", b"v"))
    revision = m.sm.revision
    m(SetVersion(3))
    assert m.sm.revision == revision
    assert [name for name, _ in decode_snapshot(m.sm.snapshot()).services] == ["app", "other"]
    assert m.list("web") == InstancesResult((), revision, revision)
    assert m(register()) == ServiceWriteResult(revision + 1, True)
    m(SetVersion(3))  # again: the tables stay
    assert len(m.list("web").instances) == 1


def test_a_retried_registration_is_answered_from_the_session_not_reapplied(m: Machine) -> None:
    first = m(register(now_ms=T0), "c", 1)
    assert first == m(register(now_ms=T0 + 5), "c", 1)
    assert m.one().last_heartbeat_ms == T0  # the retry did not apply
    listed = m(ListInstances("app", "web"), "c", 2)  # a read through the log is remembered too
    assert isinstance(listed, InstancesResult) and len(listed.instances) == 1
    m(DeregisterInstance("app", "web", "w1"))
    assert m(ListInstances("app", "web"), "c", 2) == listed
    restored = StateMachine.restore(m.sm.snapshot())
    (applied,) = restored.apply(
        restored.applied_index + 1,
        (encode_command(Command("c", 2, ListInstances("app", "web"))),),
    )
    assert applied.result == listed


def test_two_machines_fed_the_same_batches_agree(m: Machine) -> None:
    other = Machine()
    batches = [
        (register("web", "w2", ttl_ms=5), register("web", "w1", ttl_ms=5), register("db", "d")),
        (UpdateCheck("app", "web", "w1", "warning", "slow", T0 + 1), ExpireInstances(T0 + 6)),
        (DeregisterInstance("app", "db", "d"), register(ns="other", deregister_after_ms=1)),
        (ExpireInstances(T0 + 20), UpdateCheck("app", "nope", "x", "passing", "", T0 + 21)),
    ]
    for machine in (m, other):
        for batch in batches:
            commands = tuple(encode_command(Command("", 0, op)) for op in batch)
            machine.sm.apply(machine.sm.applied_index + 1, commands)
    assert m.sm.state_hash() == other.sm.state_hash()
    assert [r.instance_id for r in m.list("web").instances] == ["w1", "w2"]  # sorted, not by arrival


def test_a_snapshot_with_instances_round_trips_and_restores_the_same_answers(m: Machine) -> None:
    m(register("web", "w1", ttl_ms=1_000, deregister_after_ms=5_000))
    m(register("web", "w2"))
    m(register("db", "d1", ns="other"))
    m(DeregisterInstance("app", "web", "w2"))
    m(ExpireInstances(T0 + 2_000))
    data = m.sm.snapshot()
    assert data[1] == 3  # msgpack fixarray header, then format 3
    restored = StateMachine.restore(data)
    assert restored.snapshot() == data
    for service in ("", "web", "db", "never"):
        assert restored.read(ListInstances("app", service)) == m.sm.read(ListInstances("app", service))
    assert restored.instances_due(T0 + 7_001) and m.sm.instances_due(T0 + 7_001)
    assert not restored.instances_due(T0 + 7_000)

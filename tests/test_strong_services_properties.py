"""Properties of service instances over random command streams (version 3).

- Determinism: replicas fed the same slots return the same results and end
  with the same ``state_hash``.
- Snapshots: ``restore(snapshot())`` round-trips byte for byte, and a replica
  restored mid-stream then fed the rest ends where one that never stopped does.
- The index rule a blocking query relies on: per service (and per namespace)
  the index never goes backwards, and it moves exactly when what the query
  shows changes (heartbeat times aside); the revision moves at most by one per
  command, and only when something visible changed.
- ``instances_due(now)`` holds exactly when ``ExpireInstances(now)`` would
  change something.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

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
from strong.results import InstanceRecord, InstancesResult, ServiceWriteResult
from strong.state_machine import StateMachine
from tests.test_state_machine_properties import feed, replicas_agree, snapshot_mid_stream_matches

namespaces = st.sampled_from(["a", "b", "e"])
services = st.sampled_from(["s", "t"])
ids = st.sampled_from(["1", "2"])
statuses = st.sampled_from(["passing", "warning", "critical"])
outputs = st.sampled_from(["", "ok"])
durations = st.sampled_from([0, 5, 10])
KINDS = ("register", "check", "check", "heartbeat", "deregister", "expire", "expire", "list")


@st.composite
def service_scripts(draw: st.DrawFn, max_size: int = 30) -> list[Op]:
    """Service ops on a wall clock that moves forward, proposed now and then by a
    lagging leader; checks often name an instance registered before, heartbeats
    repeat the latest registration or check."""
    clock = 1_000
    registered: list[tuple[str, str, str]] = []
    script: list[Op] = []
    for _ in range(draw(st.integers(0, max_size))):
        clock += draw(st.integers(0, 6))
        now = clock - draw(st.sampled_from([0, 0, 0, 4]))
        key = (draw(namespaces), draw(services), draw(ids))
        reuse: bool = draw(st.booleans())
        if reuse and registered:
            key = draw(st.sampled_from(registered))
        match draw(st.sampled_from(KINDS)):
            case "register":
                script.append(RegisterInstance(
                    *key, "h", draw(st.sampled_from([80, 81])), (), (), "n1", b"",
                    draw(durations), draw(durations), draw(statuses), draw(outputs), now,
                ))  # fmt: skip
                registered.append(key)
            case "check":
                script.append(UpdateCheck(*key, draw(statuses), draw(outputs), now))
            case "heartbeat":  # repeats the latest registration or check, later
                last = [op for op in script if isinstance(op, RegisterInstance | UpdateCheck)]
                if last:
                    script.append(replace(last[-1], now_ms=now))
            case "deregister":
                script.append(DeregisterInstance(*key))
            case "expire":
                script.append(ExpireInstances(now))
            case _:
                script.append(ListInstances(key[0], draw(st.sampled_from(["", key[1]]))))
    return script


other_ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(Put, namespaces, st.just(b"k"), st.just(b"v")),
    st.builds(CreateNamespace, namespaces, st.sampled_from(["strong", "eventual"])),
    st.builds(DeleteNamespace, namespaces),
    st.sampled_from([SetVersion(2), SetVersion(3)]),
)


@st.composite
def slots(draw: st.DrawFn) -> list[tuple[bytes, ...]]:
    """A service script mixed with namespace and key ops, retries under client
    sessions and junk, cut into batches."""
    entries = [
        encode_command(Command("c1", draw(st.integers(0, 3)), op) if draw(st.booleans())
                       else Command("", 0, op))
        for op in draw(service_scripts(max_size=20))
    ]  # fmt: skip
    others = st.one_of(other_ops.map(lambda o: encode_command(Command("", 0, o))), st.just(b"\xc1"))
    for position, entry in draw(st.lists(st.tuples(st.integers(0, 20), others), max_size=5)):
        entries.insert(position, entry)
    cuts = sorted(draw(st.lists(st.integers(0, len(entries)), max_size=8)))
    return [tuple(entries[a:b]) for a, b in itertools.pairwise([0, *cuts, len(entries)])]


SETUP = tuple(
    encode_command(Command("", 0, op))
    for op in (
        CreateNamespace("a", "strong"),
        CreateNamespace("b", "strong"),
        CreateNamespace("e", "eventual"),
        SetVersion(3),
    )
)
QUERIES = [(ns, service) for ns in ("a", "b") for service in ("", "s", "t", "u")]


@given(slots())
def test_replicas_fed_the_same_slots_agree(batches: list[tuple[bytes, ...]]) -> None:
    replicas_agree([SETUP, *batches])


@given(slots(), st.integers(min_value=0, max_value=30))
def test_snapshot_mid_stream_then_continuing_matches_never_snapshotting(
    batches: list[tuple[bytes, ...]], cut: int
) -> None:
    snapshot_mid_stream_matches([SETUP, *batches], cut)


def _visible(record: InstanceRecord) -> InstanceRecord:
    """What a client sees change (``mod_revision`` only follows such a change)."""
    return replace(record, last_heartbeat_ms=0, mod_revision=0)


def _view(sm: StateMachine) -> dict[tuple[str, str], tuple[tuple[InstanceRecord, ...], int] | None]:
    """Per query: (instances as ``_visible`` shows them, index), None if it fails."""
    view: dict[tuple[str, str], tuple[tuple[InstanceRecord, ...], int] | None] = {}
    for ns, service in QUERIES:
        result = sm.read(ListInstances(ns, service))
        if isinstance(result, InstancesResult):
            view[(ns, service)] = (tuple(map(_visible, result.instances)), result.index)
        else:
            view[(ns, service)] = None
    return view


@given(service_scripts())
def test_the_index_moves_exactly_when_a_query_answer_changes(script: list[Op]) -> None:
    sm = StateMachine()
    feed(sm, [SETUP])
    before = _view(sm)
    for op in script:
        revision = sm.revision
        sm.apply(sm.applied_index + 1, (encode_command(Command("", 0, op)),))
        after = _view(sm)
        assert sm.revision - revision in (0, 1)
        for query, now in after.items():
            then = before[query]
            if now is None or then is None:
                continue  # the namespace came or went (or the version changed)
            (was, old_index), (shown, index) = then, now
            assert index >= old_index, query
            assert (index != old_index) == (shown != was), (query, op)
            if shown != was:
                assert index == sm.revision > revision
        before = after


@given(service_scripts(), st.integers(min_value=1, max_value=1_200))
def test_instances_due_predicts_whether_expiry_changes_anything(
    script: list[Op], now_ms: int
) -> None:
    sm = StateMachine()
    feed(sm, [SETUP, *((encode_command(Command("", 0, op)),) for op in script)])
    due = sm.instances_due(now_ms)
    expire = encode_command(Command("", 0, ExpireInstances(now_ms)))
    (applied,) = sm.apply(sm.applied_index + 1, (expire,))
    assert isinstance(applied.result, ServiceWriteResult)  # SETUP's version 3 never goes down
    assert applied.result.changed == due

"""ACL tokens and policies in the strong state machine (rule 10, ``strong.acl``).

By hand: the version gate, creation, update, conflicts, links, deletion,
expiry as data; the codec and the snapshot. Properties: replicas fed the same
random ACL (and key) commands agree, and a snapshot taken mid-stream then
continued ends where never snapshotting does.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strong.acl import (
    AclPolicy,
    AclRule,
    AclState,
    AclToken,
    DeleteAclPolicy,
    DeleteAclToken,
    SetAclPolicy,
    SetAclToken,
)
from strong.commands import (
    Command,
    CreateNamespace,
    ExpireSessions,
    MalformedCommand,
    Op,
    Put,
    SetVersion,
    decode_command,
    encode_command,
)
from strong.results import ErrorCode, ErrorResult, NoopResult, Result
from strong.sm_snapshot import MalformedSnapshot, SnapshotState, decode_snapshot, encode_snapshot
from strong.state_machine import StateMachine
from tests.test_state_machine_properties import feed, replicas_agree, snapshot_mid_stream_matches


def h(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


READ_APP = AclPolicy("read-app", "", (AclRule("key", "app/", "read"),))


def token(accessor: str = "t1", secret: str = "s1", policies: tuple[str, ...] = ("read-app",),
          expiration_ms: int = 0) -> AclToken:
    return AclToken(accessor, h(secret), "", policies, expiration_ms, 100)


class Driver:
    def __init__(self, version: int = 4) -> None:
        self.sm = StateMachine()
        assert self(SetVersion(version)) is not None

    def __call__(self, op: Op) -> Result:
        (applied,) = self.sm.apply(self.sm.applied_index + 1, (encode_command(Command("", 0, op)),))
        return applied.result


def code(result: Result) -> str:
    assert isinstance(result, ErrorResult), result
    return result.code


def test_below_version_4_acl_ops_change_nothing() -> None:
    run = Driver(3)
    before = run.sm.snapshot()
    for op in (SetAclPolicy(READ_APP), SetAclToken(token(policies=()), 1), DeleteAclToken("t1"),
               DeleteAclPolicy("read-app")):
        assert code(run(op)) == ErrorCode.UNSUPPORTED_IN_VERSION
    after = run.sm.snapshot()
    assert decode_snapshot(after).acl == decode_snapshot(before).acl == AclState()
    assert after[0:1] == before[0:1]  # still format 3: the table is not in the snapshot


def test_tokens_link_existing_policies_and_are_found_by_their_secret_hash() -> None:
    run = Driver()
    assert code(run(SetAclToken(token(), 1))) == ErrorCode.ACL_NOT_FOUND
    assert run.sm.acl.token("t1") is None
    revision = run.sm.revision
    assert run(SetAclPolicy(READ_APP)) == NoopResult()
    assert run(SetAclToken(token(), 1)) == NoopResult()
    assert run.sm.acl.token_by_hash(h("s1")) == token()
    assert run.sm.acl.token_by_hash(h("other")) is None
    assert run.sm.revision == revision  # ACL writes are no key revision (rule 6)
    assert run(SetAclToken(token("mgmt", "s2", ("global-management",)), 1)) == NoopResult()


def test_a_secret_never_changes_and_is_never_shared() -> None:
    run = Driver()
    run(SetAclPolicy(READ_APP))
    run(SetAclToken(token(), 1))
    assert code(run(SetAclToken(token("t1", "new"), 1))) == ErrorCode.ACL_CONFLICT
    assert code(run(SetAclToken(token("t2", "s1"), 1))) == ErrorCode.ACL_CONFLICT
    updated = AclToken("t1", h("s1"), "renamed", (), 0, 999)
    assert run(SetAclToken(updated, 5)) == NoopResult()
    kept = run.sm.acl.token("t1")
    assert kept is not None and kept.description == "renamed" and kept.create_ms == 100


def test_deleting_a_policy_leaves_its_tokens_with_a_dangling_link() -> None:
    run = Driver()
    run(SetAclPolicy(READ_APP))
    run(SetAclToken(token(), 1))
    assert run(DeleteAclPolicy("read-app")) == NoopResult()
    assert code(run(DeleteAclPolicy("read-app"))) == ErrorCode.ACL_NOT_FOUND
    assert run.sm.acl.policy("read-app") is None
    assert run.sm.acl.token("t1") == token()
    assert run(DeleteAclToken("t1")) == NoopResult()
    assert run.sm.acl.token_by_hash(h("s1")) is None
    assert code(run(DeleteAclToken("t1"))) == ErrorCode.ACL_NOT_FOUND


def test_expiry_is_data_the_command_carries() -> None:
    run = Driver()
    run(SetAclPolicy(READ_APP))
    assert code(run(SetAclToken(token(expiration_ms=50), 50))) == ErrorCode.ACL_INVALID
    assert run(SetAclToken(token(expiration_ms=50), 49)) == NoopResult()
    assert run(SetAclToken(token("t2", "s2"), 49)) == NoopResult()
    run(ExpireSessions(49, 1000))
    assert run.sm.acl.token("t1") is not None
    run(ExpireSessions(50, 1000))
    assert run.sm.acl.token("t1") is None and run.sm.acl.token_by_hash(h("s1")) is None
    assert run.sm.acl.token("t2") is not None


def test_invalid_values_are_refused_by_the_constructors() -> None:
    with pytest.raises(ValueError):
        AclRule("keys", "", "read")
    with pytest.raises(ValueError):
        AclRule("key", "", "admin")
    with pytest.raises(ValueError):
        AclRule("acl", "x", "read")
    with pytest.raises(ValueError):
        AclPolicy("p", "", (AclRule("key", "a", "read"), AclRule("key", "a", "write")))
    with pytest.raises(ValueError):
        AclToken("t", b"short", "", (), 0, 0)
    with pytest.raises(ValueError):
        SetAclPolicy(AclPolicy("global-management", "", ()))


def test_acl_commands_round_trip_and_garbage_is_malformed() -> None:
    for op in (SetAclPolicy(READ_APP), DeleteAclPolicy("p"), SetAclToken(token(), 7),
               DeleteAclToken("t1")):
        data = encode_command(Command("c", 1, op))
        assert decode_command(data) == Command("c", 1, op)
    bad = encode_command(Command("c", 1, DeleteAclToken("t1"))).replace(b"aclt-", b"aclt+")
    with pytest.raises(MalformedCommand):
        decode_command(bad)


def test_the_snapshot_carries_the_table_and_refuses_a_broken_one() -> None:
    run = Driver()
    run(SetAclPolicy(READ_APP))
    run(SetAclToken(token(), 1))
    restored = StateMachine.restore(run.sm.snapshot())
    assert restored.acl.state() == run.sm.acl.state()
    assert restored.snapshot() == run.sm.snapshot()
    state = decode_snapshot(run.sm.snapshot())
    twin = AclToken("t2", h("s1"), "", (), 0, 0)  # the same secret twice
    broken = SnapshotState(state.applied_index, state.version, state.revision, state.namespaces,
                           state.sessions, state.clock, state.expired, state.services,
                           AclState(state.acl.policies, (*state.acl.tokens, twin)))
    with pytest.raises(MalformedSnapshot):
        decode_snapshot(encode_snapshot(broken))


def test_the_state_hash_sees_the_acl_table() -> None:
    one, two = Driver(), Driver()
    one(SetAclPolicy(READ_APP))
    assert one.sm.state_hash() != two.sm.state_hash()


# --- properties ------------------------------------------------------------------

secrets = st.sampled_from(["s1", "s2", "s3"])
accessors = st.sampled_from(["t1", "t2"])
policy_names = st.sampled_from(["p", "q"])
rules = st.builds(AclRule, st.sampled_from(["key", "service", "namespace"]),
                  st.sampled_from(["", "app/", "app/db"]), st.sampled_from(["read", "write", "deny"]))
acl_ops = st.one_of(
    st.builds(SetAclPolicy, st.builds(AclPolicy, policy_names, st.just(""),
                                      st.lists(rules, max_size=3, unique_by=lambda r: (r.resource, r.prefix))
                                      .map(tuple))),
    st.builds(DeleteAclPolicy, policy_names),
    st.builds(SetAclToken, st.builds(AclToken, accessors, secrets.map(h), st.just(""),
                                     st.lists(policy_names, max_size=2).map(tuple),
                                     st.sampled_from([0, 5, 20]), st.just(1)), st.integers(1, 10)),
    st.builds(DeleteAclToken, accessors),
    st.builds(ExpireSessions, st.integers(1, 30), st.just(1000)),
    st.builds(Put, st.just("a"), st.just(b"k"), st.just(b"v")),
    st.sampled_from([SetVersion(3), SetVersion(4)]),
)
acl_slots = st.lists(
    st.lists(st.builds(Command, st.sampled_from(["", "c1"]), st.integers(0, 3), acl_ops)
             .map(encode_command), max_size=3).map(tuple),
    min_size=1, max_size=20,
).map(lambda batches: [(encode_command(Command("", 0, CreateNamespace("a", "strong"))),), *batches])


@given(acl_slots)
def test_replicas_fed_the_same_acl_commands_agree(batches: list[tuple[bytes, ...]]) -> None:
    replicas_agree(batches)


@given(acl_slots, st.integers(0, 20))
def test_an_acl_snapshot_mid_stream_then_continuing_matches(batches: list[tuple[bytes, ...]],
                                                            cut: int) -> None:
    snapshot_mid_stream_matches(batches, cut)
    machine = StateMachine()
    feed(machine, batches)
    assert StateMachine.restore(machine.snapshot()).acl.state() == machine.acl.state()

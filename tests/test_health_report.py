"""Health reasons from constructed views (``configsvc.health_report``) and the
per-namespace eventual digests they compare (``eventual.digests``)."""

from __future__ import annotations

import random

from configsvc.health_report import (
    EventualView,
    Reason,
    StrongView,
    Thresholds,
    compare_digests,
    digest_reasons,
    eventual_reasons,
    removal_reasons,
    status_of,
    strong_reasons,
)
from configsvc.http.cluster_view import plausible_report
from eventual.digests import NamespaceDigest, namespace_digests
from eventual.dots import KV_SPACE, SVC_SPACE, Sibling

VOTERS = ("n1", "n2", "n3")


def view(**changes: object) -> StrongView:
    base: dict[str, object] = dict(node_id="n1", role="leader", leader="n1", voters=VOTERS, quorum=2,
                                   reachable=VOTERS, commit_index=100, applied_index=100)
    return StrongView(**(base | changes))  # type: ignore[arg-type]


def codes(reasons: list[Reason]) -> list[str]:
    return [r.code for r in reasons]


def test_a_full_strength_group_has_no_reason_and_is_healthy() -> None:
    assert strong_reasons(view()) == []
    assert status_of([]) == "healthy"


def test_a_dead_node_is_named_and_one_failure_from_outage_degrades() -> None:
    reasons = strong_reasons(view(reachable=("n1", "n2")))
    assert codes(reasons) == ["one_failure_from_outage", "node_unreachable"]
    assert reasons[1].message == "node n3 unreachable" and reasons[1].details == {"node": "n3"}
    assert status_of(reasons) == "degraded"


def test_five_nodes_one_down_is_degraded_by_the_unreachable_node_alone() -> None:
    five = ("n1", "n2", "n3", "n4", "n5")
    reasons = strong_reasons(view(voters=five, quorum=3, reachable=five[:4]))
    assert codes(reasons) == ["node_unreachable"] and status_of(reasons) == "degraded"


def test_no_quorum_and_no_leader_are_unavailable() -> None:
    reasons = strong_reasons(view(role="follower", leader=None, reachable=("n1",)))
    assert codes(reasons)[:2] == ["no_leader", "no_quorum"]
    assert reasons[1].message == "only 1 of 3 voters reachable; a quorum needs 2"
    assert status_of(reasons) == "unavailable"


def test_a_halted_replica_is_unavailable_and_says_why() -> None:
    reasons = strong_reasons(view(halted="stopped applying at slot 7"))
    assert reasons[0].code == "strong_halted" and "slot 7" in reasons[0].message
    assert status_of(reasons) == "unavailable"


def test_lag_beyond_the_threshold_is_a_warning_naming_the_replica() -> None:
    reasons = strong_reasons(view(commit_index=1500, applied_index=1500,
                                  peer_commit={"n2": 1499, "n3": 300}))
    assert codes(reasons) == ["replica_lag"]
    assert reasons[0].message == "replica n3 lags 1,200 entries"
    assert reasons[0].details == {"node": "n3", "entries": 1200}
    assert status_of(reasons) == "healthy"  # a warning changes no status (rule 1)
    assert codes(strong_reasons(view(commit_index=1500, peer_commit={"n3": 300}),
                                Thresholds(lag_entries=1200))) != ["replica_lag"]


def test_apply_backlog_learner_and_unready_namespaces() -> None:
    reasons = strong_reasons(view(commit_index=5000, applied_index=10, voting=False,
                                  namespaces_ready=False))
    assert codes(reasons) == ["namespaces_not_ready", "learner", "apply_lag"]
    assert status_of(reasons) == "degraded"


def test_eventual_reasons() -> None:
    reasons = eventual_reasons(EventualView("n1", peer_lag={"n2": 5, "n4": 2000}, suspect=("n4",),
                                            dead=("n5",), divergences=2, self_preservation=True))
    assert codes(reasons) == ["gossip_peer_suspect", "gossip_peer_dead", "gossip_lag",
                              "eventual_divergence_repaired", "self_preservation"]
    assert reasons[0].message == "gossip peer n4 suspect"
    assert reasons[2].message == "gossip peer n4 lacks 2,000 events of n1"
    assert status_of(reasons) == "healthy"
    halted = eventual_reasons(EventualView("n1", halted="OSError: disk full"))
    assert status_of(halted) == "unavailable"


def test_reason_json_shape() -> None:
    (reason,) = strong_reasons(view(reachable=VOTERS, peer_commit={"n2": 0}), Thresholds(lag_entries=10))
    assert reason.to_json() == {"code": "replica_lag", "severity": "warning",
                                "message": "replica n2 lags 100 entries",
                                "details": {"node": "n2", "entries": 100}}


def test_digest_comparison_tells_converging_from_disagreeing() -> None:
    vv = {"r1": 3, "r2": 4}
    comparisons = compare_digests(
        {"hosts": "aa", "flags": "bb"}, vv,
        {"n2": ({"hosts": "aa", "flags": "bb"}, vv),       # same
         "n3": ({"hosts": "ab", "flags": "bc"}, {"r1": 3}),  # behind: converging
         "n4": None},                                        # no report
    )
    by_ns = {c.namespace: c for c in comparisons}
    assert by_ns["hosts"].peers == {"n2": "same", "n3": "converging", "n4": "unknown"}
    assert by_ns["hosts"].agree is False
    assert digest_reasons(comparisons, "n1") == []  # converging is not a divergence
    split = compare_digests({"hosts": "aa"}, vv, {"n2": ({"hosts": "zz"}, dict(vv))})
    (reason,) = digest_reasons(split, "n1")
    assert reason.code == "eventual_digests_disagree" and reason.details["nodes"] == ["n1", "n2"]
    assert status_of([reason]) == "degraded"
    only_unknown = compare_digests({"hosts": "aa"}, vv, {"n2": None})
    assert only_unknown[0].agree is None
    assert compare_digests({"hosts": "aa"}, vv, {"n2": ({"hosts": "aa"}, vv)})[0].agree is True


def test_namespace_digests_depend_on_the_siblings_not_their_order() -> None:
    entries = {
        ("hosts", KV_SPACE, "web/1"): {("r1", 1): Sibling(b"10.0.0.1", 5)},
        ("hosts", KV_SPACE, "web/2"): {("r1", 2): Sibling(b"a", 6), ("r2", 1): Sibling(b"b", 7)},
        ("hosts", SVC_SPACE, "api/1"): {("r2", 2): Sibling(b"{}", 8)},
        ("other", KV_SPACE, "k"): {("r1", 3): Sibling(b"v", 9, "idem")},
    }
    digests = namespace_digests(entries)
    assert (digests["hosts"].keys, digests["hosts"].instances) == (2, 1)
    assert (digests["other"].keys, digests["other"].instances) == (1, 0)
    items = list(entries.items())
    random.Random(4).shuffle(items)
    shuffled = {k: dict(reversed(list(v.items()))) for k, v in items}
    assert namespace_digests(shuffled) == digests
    # One sibling's value, clock or idempotency key differs: only its namespace's digest moves.
    for changed in (Sibling(b"10.0.0.2", 5), Sibling(b"10.0.0.1", 6), Sibling(b"10.0.0.1", 5, "x")):
        other = namespace_digests({**entries, ("hosts", KV_SPACE, "web/1"): {("r1", 1): changed}})
        assert other["hosts"].digest != digests["hosts"].digest
        assert other["other"] == digests["other"]
    assert NamespaceDigest().hex == "0" * 16


def test_a_peer_report_is_read_only_in_the_shape_the_cluster_view_uses() -> None:
    good = {"node": "n2", "status": "degraded", "reasons": [],
            "strong": {"commit_index": 5, "applied_index": 5, "replica_lag": {}}, "eventual": {}}
    assert plausible_report(good, "n2")
    assert plausible_report({"node": "n2", "status": "unavailable", "reasons": [], "error": "x"}, "n2")
    for bad in (None, [], "x", {**good, "node": "n3"}, {**good, "status": "fine"},
                {**good, "reasons": {}}, {**good, "strong": {"commit_index": "5", "applied_index": 5}},
                {**good, "strong": None}, {**good, "strong": {**good["strong"], "replica_lag": []}}):  # type: ignore[dict-item]
        assert not plausible_report(bad, "n2"), bad


def test_a_voter_refused_as_unknown_by_its_peers_says_it_was_removed() -> None:
    refused = {"n1": "unknown-node", "n2": "unknown-node", "n3": "auth"}
    (reason,) = removal_reasons("n4", ("n1", "n2", "n4"), refused)
    assert (reason.code, reason.severity) == ("removed", "unavailable")
    assert reason.details == {"refused_by": ["n1", "n2"]}
    # a learner not added yet is refused the same way, and is told nothing
    assert removal_reasons("n5", ("n1", "n2", "n3"), refused) == []
    assert removal_reasons("n4", ("n1", "n2", "n4"), {"n1": None, "n2": "auth"}) == []
    # one lagging peer that has not learnt of a new voter is no quorum
    lagging = {"n1": "unknown-node", "n2": None, "n3": None}
    assert removal_reasons("n4", ("n1", "n2", "n3", "n4"), lagging) == []

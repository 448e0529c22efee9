"""The lab's checkers and figures on hand-made histories (no processes): each
checker passes a correct history and fails the smallest wrong one."""

from __future__ import annotations

import pytest

from configsvc.cli import main
from configsvc.lab.history import Op
from configsvc.lab.measure import measure
from configsvc.lab.run import LabError, validate
from configsvc.lab.scenarios import Timeline, phases_for
from configsvc.lab.verdicts import check_all, lin_check


def op(client: str, kind: str, verb: str, key: str, start: float, end: float, *,
       value: str | None = None, answer: object = None, outcome: str = "ok",
       node: str = "n1", sent: dict[str, int] | None = None) -> Op:
    return Op(client=client, node=node, ns=kind, kind=kind, op=verb, key=key, start=start, end=end,
              outcome=outcome, value=value, answer=answer, sent_context=sent)  # type: ignore[arg-type]


def read(value: str | None, node: str, n: int) -> dict[str, object]:
    return {"siblings": [[value, node, n]] if value else [], "context": {node: n} if value else {}}


def test_a_read_of_an_overwritten_value_is_not_linearizable() -> None:
    ops = [
        op("a", "strong", "put", "k", 0.0, 1.0, value="v1"),
        op("a", "strong", "put", "k", 2.0, 3.0, value="v2"),
        op("b", "strong", "get", "k", 4.0, 5.0, answer="v1"),
    ]
    bad, unsure, example = lin_check(ops)
    assert (bad, unsure) == (1, [])
    assert "not linearizable" in example[0]


def test_an_unknown_put_may_apply_late_and_a_refused_put_never() -> None:
    ok = [
        op("a", "strong", "put", "k", 0.0, 1.0, value="v1", outcome="unknown"),
        op("b", "strong", "get", "k", 2.0, 3.0, answer=None),
        op("b", "strong", "get", "k", 4.0, 5.0, answer="v1"),
    ]
    assert lin_check(ok)[0] == 0
    refused = [
        op("a", "strong", "put", "k", 0.0, 1.0, value="v1", outcome="failed"),
        op("b", "strong", "get", "k", 2.0, 3.0, answer=None),
    ]
    assert lin_check(refused)[0] == 0


def test_session_checks() -> None:
    good = [
        op("s", "eventual", "put", "k", 0.0, 0.1, value="x", answer=["n1", 1], sent={}),
        op("s", "eventual", "get", "k", 0.2, 0.3, answer=read("x", "n1", 1)),
    ]
    verdicts = check_all(good, [op("f", "eventual", "get", "k", 9, 9, answer=read("x", "n1", 1))], [])
    assert not any(verdicts.violations.values()), verdicts.violations
    # the session's own write missing from its next read: read-your-writes
    lost = [*good[:1], op("s", "eventual", "get", "k", 0.2, 0.3, answer=read(None, "n1", 0))]
    assert check_all(lost, [], []).violations["read_your_writes"] == 1
    # a write superseded by one that read it is not lost; one nobody read is
    superseded = [
        *good,
        op("s", "eventual", "put", "k", 0.4, 0.5, value="y", answer=["n2", 1], sent={"n1": 1}),
    ]
    finals = [op("f", "eventual", "get", "k", 9, 9, answer=read("y", "n2", 1))]
    assert check_all(superseded, finals, []).violations["lost_acked_writes"] == 0
    dropped = [good[0], op("t", "eventual", "put", "k", 0.4, 0.5, value="y", answer=["n2", 1], sent={})]
    assert check_all(dropped, finals, []).violations["lost_acked_writes"] == 1


def test_causal_reads_follow_what_a_seen_write_had_seen() -> None:
    ops = [
        op("a", "eventual", "put", "x", 0.0, 0.1, value="x1", answer=["n1", 1], sent={}),
        op("a", "eventual", "put", "y", 0.2, 0.3, value="y1", answer=["n1", 2], sent={}),
        op("b", "eventual", "get", "y", 0.4, 0.5, answer=read("y1", "n1", 2), node="n2"),
        op("b", "eventual", "get", "x", 0.6, 0.7, answer=read(None, "n2", 0), node="n2"),
    ]
    assert check_all(ops, [], []).violations["causal"] == 1


def test_lww_counts_a_write_read_over_by_a_concurrent_one() -> None:
    ops = [
        op("a", "lww", "put", "k", 0.0, 0.1, value="a1", answer=["n1", 1], sent={}),
        op("b", "lww", "put", "k", 0.0, 0.1, value="b1", answer=["n2", 1], sent={}),
        op("a", "lww", "get", "k", 1.0, 1.1, answer=read("b1", "n2", 1)),
    ]
    verdicts = check_all(ops, [], [])
    assert verdicts.counted["lww_overwritten"] == 1
    assert "lost_acked_writes" not in verdicts.violations or verdicts.violations["lost_acked_writes"] == 0


def test_figures_per_phase_and_side() -> None:
    timeline = Timeline(fault_at=10, heal_at=20, end_at=30, windows=[(10, 20)],
                        sides={"n1": "majority", "n2": "majority", "n3": "minority"})
    ops = [
        op("c", "strong", "put", "k", 5, 5.1, value="v1", node="n3"),
        op("c", "strong", "put", "k", 12, 14, value="v2", node="n3", outcome="failed"),
        op("d", "strong", "put", "k", 12, 12.1, value="v3", node="n1"),
        op("c", "strong", "get", "k", 21, 21.1, answer="v3", node="n3"),
        op("d", "strong", "get", "k", 21, 21.1, answer="v3", node="n1"),
        op("e", "strong", "get", "k", 22, 22.1, answer="v3", node="n2"),
    ]
    figures = measure(ops, timeline, ttl=2.0)
    cells = figures["strong"]["cells"]
    assert cells["during/minority"]["writes"] == 1 and cells["during/minority"]["success"] == 0
    assert cells["during/majority"]["success"] == 1 and cells["before/minority"]["ok"] == 1
    assert figures["strong"]["recovered_after_heal_s"] == pytest.approx(2.1)


def test_bad_arguments_are_refused_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (("nope", 3, 20.0, []), ("split", 2, 20.0, []), ("split", 3, 5.0, []),
                 ("split", 3, float("nan"), []), ("split", 3, 20.0, ["nope"])):
        with pytest.raises(LabError):
            validate(*args)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        phases_for(9)
    assert main(["lab", "run", "--scenario", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err

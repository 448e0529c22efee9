"""The checkers' verdicts on a recorded history, from what clients observed only.

Strong namespace: **linearizability** per key with the simulator's checker
(``configsvc.sim.linearizability``, Wing–Gong/Lowe). A put that ended
``unknown`` may have taken effect at any time after its call, or never
(``ret=None``); a put or get that ``failed`` (the node said "not done") had
no effect and is left out; reads of an audit after the heal join the history.

Eventual namespaces rest on one observation. Dots are per key and per
replica (``eventual.mvr``: a replica's writes to a key count 1, 2, 3 ...)
and delivery is causal per origin, so a node that has seen a key's dot
``(r, n)`` has seen ``(r, 1..n-1)`` too; a write carries the read context it
was sent with, and a node takes it only once it has seen all that context
covers. So what a read answer shows a node **has seen** of a key
(``seen``) is the version vector closing its siblings' dots under "a seen
write's sent context is seen", computed from the recorded writes. From it:

- **read_your_writes**: a session's read must have seen the session's
  own acknowledged writes to that key;
- **monotonic_reads**: ... what the session's earlier reads of it had seen;
- **causal** (writes-follow-reads across keys): ... the causal past (the
  session's knowledge when it wrote) of every write the session has seen;
- **lost_acked_writes** (multi-value mode): after the heal and convergence,
  every acknowledged write is seen by every node (present or superseded by
  a write that had read it). Must be 0.
- **lww_overwritten** (last-writer-wins mode, counted, not a violation): an
  acknowledged write that is gone at the end though no later write had seen
  it: the documented cost of LWW under concurrency.

Invariants: a checker counts only what it proves from the record; unknown
outcomes are never counted against the system.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from configsvc.lab.history import Op
from configsvc.sim.linearizability import UNKNOWN, KVModel, Operation, check

__all__ = ["Verdicts", "WriteIndex", "check_all", "lin_check", "seen_vv"]

VV = dict[str, int]
Dot = tuple[str, int]
#: the linearizability search may take this many steps per key before it says "inconclusive"
LIN_BUDGET = 5_000_000
EVENTUAL_KINDS = ("eventual", "lww")


def covers(vv: VV, dot: Dot) -> bool:
    return vv.get(dot[0], 0) >= dot[1]


def join(a: VV, b: VV) -> VV:
    return {r: max(a.get(r, 0), b.get(r, 0)) for r in a.keys() | b.keys()}


def geq(a: VV, b: VV) -> bool:
    return all(a.get(r, 0) >= n for r, n in b.items())


@dataclass
class Verdicts:
    #: checker name -> violations proven (every one must be 0)
    violations: dict[str, int] = field(default_factory=dict)
    #: counted costs that are not violations (LWW overwrites)
    counted: dict[str, int] = field(default_factory=dict)
    #: the counted costs, by the phase in which the write concerned started
    counted_by_phase: dict[str, dict[str, int]] = field(default_factory=dict)
    #: checkers that could not decide (search budget): never a pass
    inconclusive: list[str] = field(default_factory=list)
    #: the first violation of each checker, in words
    examples: dict[str, list[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------- strong


def lin_check(ops: Iterable[Op], budget: int = LIN_BUDGET) -> tuple[int, list[str], list[str]]:
    """(keys proven not linearizable, inconclusive keys, explanation of the first)."""
    clients: dict[str, int] = {}
    by_key: dict[str, list[Operation]] = defaultdict(list)
    for op in ops:
        cid = clients.setdefault(op.client, len(clients))
        if op.op == "get" and op.outcome == "ok":
            by_key[op.key].append(Operation(cid, (op.key, ("get",)), op.answer, op.start, op.end))
        elif op.op == "put" and op.outcome != "failed":
            done = op.outcome == "ok"
            by_key[op.key].append(Operation(cid, (op.key, ("put", op.value)),
                                            "ok" if done else UNKNOWN, op.start,
                                            op.end if done else None))
    bad = 0
    unsure: list[str] = []
    example: list[str] = []
    for key, history in sorted(by_key.items()):
        result = check(KVModel(), history, budget=budget)
        if not result.ok:
            bad += 1
            if not example:
                example = _named(result.explanation.splitlines()[:14], clients)
        elif result.unknown:
            unsure.append(key)
    return bad, unsure, example


def _named(lines: list[str], clients: dict[str, int]) -> list[str]:
    """The checker's "client 3:" as the lab's client names ("strong@n3:")."""
    names = {i: name for name, i in clients.items()}
    return [re.sub(r"client (\d+):", lambda m: f"{names[int(m[1])]}:", line) for line in lines]


# ---------------------------------------------------------------------- eventual


class WriteIndex:
    """The writes of one eventual namespace: dot and sent context, by key."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.by_value: dict[str, Op] = {}
        self.dot_of: dict[str, Dot] = {}
        for op in ops:
            if op.op == "put" and op.outcome != "failed" and op.value is not None:
                self.by_value[op.value] = op
                if op.outcome == "ok" and op.answer:
                    self.dot_of[op.value] = (op.answer[0], int(op.answer[1]))
        for op in ops:  # a write that timed out but shows up in a read has its dot there
            if op.op == "get" and op.outcome == "ok" and op.answer:
                for value, node, n in op.answer["siblings"]:
                    if value in self.by_value:
                        self.dot_of.setdefault(value, (node, n))
        self.on_key: dict[str, list[tuple[Dot, Op]]] = defaultdict(list)
        for value, dot in self.dot_of.items():
            w = self.by_value[value]
            self.on_key[w.key].append((dot, w))


def seen_vv(answer: dict[str, Any], key: str, writes: WriteIndex) -> VV:
    """What the node that answered a read had seen of ``key`` (see the module doc)."""
    vv: VV = {}
    for _, node, n in answer["siblings"]:
        vv[node] = max(vv.get(node, 0), n)
    used: set[Dot] = set()
    grew = True
    while grew:
        grew = False
        for dot, w in writes.on_key.get(key, ()):
            if dot not in used and covers(vv, dot):
                used.add(dot)
                wider = join(vv, w.sent_context or {})
                if wider != vv:
                    vv, grew = wider, True
    return vv


def _sessions(ops: Sequence[Op], writes: WriteIndex, verdicts: Verdicts) -> None:
    """read_your_writes, monotonic_reads, causal: per client session, in order."""
    deps: dict[str, dict[str, VV]] = {}  # write value -> its session's knowledge, per key
    counts = {"read_your_writes": 0, "monotonic_reads": 0, "causal": 0}
    by_client: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        by_client[op.client].append(op)
    # writes' causal pasts must be known before their readers are judged: sessions
    # interleave, so walk every op of every session in start order at once
    knowledge: dict[str, dict[str, dict[str, VV]]] = defaultdict(
        lambda: {"read_your_writes": {}, "monotonic_reads": {}, "causal": {}})
    for op in sorted(ops, key=lambda o: (o.start, o.end)):
        if op.outcome != "ok":
            continue
        mine = knowledge[op.client]
        if op.op == "put" and op.value in writes.dot_of:
            dot = writes.dot_of[op.value]
            own = mine["read_your_writes"]
            own[op.key] = join(own.get(op.key, {}), {dot[0]: dot[1]})
            deps[op.value] = _all_known(mine)
        elif op.op == "get" and op.answer is not None:
            seen = seen_vv(op.answer, op.key, writes)
            for name, per_key in mine.items():
                if not geq(seen, per_key.get(op.key, {})):
                    counts[name] += 1
                    verdicts.examples.setdefault(name, [
                        f"{op.client} read {op.key!r} on {op.node} at {op.start:.3f}s and saw "
                        f"{seen}, missing {per_key[op.key]} ({name.replace('_', ' ')})"])
            reads = mine["monotonic_reads"]
            reads[op.key] = join(reads.get(op.key, {}), seen)
            causal = mine["causal"]
            for dot, w in writes.on_key.get(op.key, ()):
                if covers(seen, dot) and w.value in deps:
                    for k, vv in deps[w.value].items():
                        causal[k] = join(causal.get(k, {}), vv)
    for name, n in counts.items():
        verdicts.violations[name] = verdicts.violations.get(name, 0) + n


def _all_known(mine: dict[str, dict[str, VV]]) -> dict[str, VV]:
    known: dict[str, VV] = {}
    for per_key in mine.values():
        for k, vv in per_key.items():
            known[k] = join(known.get(k, {}), vv)
    return known


def _lost(finals: Sequence[Op], writes: WriteIndex) -> tuple[int, list[str]]:
    """Multi-value: acknowledged writes that some node, at the end, had not seen."""
    gone: list[str] = []
    final_by_key: dict[str, list[Op]] = defaultdict(list)
    for f in finals:
        if f.outcome == "ok" and f.answer is not None:
            final_by_key[f.key].append(f)
    for value, dot in writes.dot_of.items():
        w = writes.by_value[value]
        if w.outcome != "ok":
            continue
        for f in final_by_key[w.key]:
            if not covers(seen_vv(f.answer, w.key, writes), dot):
                gone.append(f"{value} ({dot[0]}:{dot[1]}) on {w.key!r}: not seen by {f.node}")
                break
    return len(gone), gone[:5]


def _lww_overwritten(ops: Sequence[Op], finals: Sequence[Op]) -> dict[str, str]:
    """LWW: acknowledged writes a session had seen, then read over by a value
    whose write had not seen them (nor they it): dropped for a concurrent write.

    "Seen" is causal from the clients' side: a write knows what its session
    had written or read before it, and what those writes knew. The end of the
    run counts as one more read of every key by every session (``finals``)."""
    knows: dict[str, set[str]] = {}  # a write's value -> the values in its causal past
    key_of: dict[str, str] = {}
    past: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    dropped: dict[str, str] = {}

    def read_over(mine: dict[str, set[str]], key: str, value: str, who: str) -> None:
        known = knows.get(value, set())
        for w in mine[key]:
            if w != value and w not in known and value not in knows.get(w, set()):
                dropped.setdefault(w, f"{w} on {key!r}: {who} then read {value} (concurrent)")

    for op in sorted(ops, key=lambda o: (o.start, o.end)):
        if op.outcome != "ok":
            continue
        mine = past[op.client]
        if op.op == "put" and op.value is not None:
            key_of[op.value] = op.key
            knows[op.value] = {v for values in mine.values() for v in values}
            mine[op.key].add(op.value)
        elif op.op == "get" and op.answer:
            for value, _, _ in op.answer["siblings"]:
                if value not in key_of:
                    continue
                read_over(mine, op.key, value, op.client)
                mine[op.key].add(value)
                for v in knows.get(value, set()):
                    mine[key_of[v]].add(v)
    for f in finals:
        for value, _, _ in (f.answer or {}).get("siblings", []):
            if value in key_of:
                for client, mine in past.items():
                    read_over(mine, f.key, value, f"{client} (at the end, on {f.node})")
    return dropped


def check_all(ops: Sequence[Op], finals: Sequence[Op], audit: Sequence[Op],
              phase_of: Callable[[float], str] | None = None) -> Verdicts:
    """Every checker on a run's ops; ``finals``: each eventual key read on every
    node after convergence; ``audit``: each strong key read after the heal;
    ``phase_of``: the phase of a time (counted costs are split by phase)."""
    v = Verdicts()
    strong = [o for o in ops if o.kind == "strong"] + list(audit)
    bad, unsure, example = lin_check(strong)
    v.violations["linearizability"] = bad
    if unsure:
        v.inconclusive.append(f"linearizability: keys {', '.join(unsure)} (search budget)")
    if example:
        v.examples["linearizability"] = example
    for kind in EVENTUAL_KINDS:
        mine = [o for o in ops if o.kind == kind]
        finals_of = [f for f in finals if f.kind == kind]
        writes = WriteIndex(mine + finals_of)
        if kind == "eventual":
            _sessions(mine, writes, v)
            lost, which = _lost(finals_of, writes)
            v.violations["lost_acked_writes"] = lost
            if which:
                v.examples["lost_acked_writes"] = which
        else:
            dropped = _lww_overwritten(mine, finals_of)
            v.counted["lww_overwritten"] = len(dropped)
            if dropped:
                v.examples["lww_overwritten"] = sorted(dropped.values())[:5]
            if phase_of is not None:
                started = {o.value: o.start for o in mine if o.op == "put"}
                split = {"before": 0, "during": 0, "after": 0}
                for value in dropped:
                    split[phase_of(started[value])] += 1
                v.counted_by_phase["lww_overwritten"] = split
    return v

"""The figures of a run: per namespace × phase × side, over time, and after the heal.

Every figure is computed from the history alone (``Op``s and the
``Timeline``), so a kept ``history.jsonl`` can be measured again. An op
counts in the phase it started in and on the side of the node it was pinned
to. Definitions:

- **success rate**: ``ok`` ops / ops attempted (an op that ``failed`` or
  ended ``unknown`` is not a success);
- **latency**: of the ``ok`` ops, in milliseconds (p50, p99);
- **stale read**: a successful read that misses a write acknowledged before
  the read started. Strong and LWW: the value read was *definitely*
  overwritten (another acknowledged put started after its put ended and
  ended before the read began; absent = any acknowledged put). Multi-value:
  the read had not seen (``verdicts.seen_vv``) an acknowledged write's dot;
- **recovered after the heal** (strong): when every node served its
  clients' strong ops again (the first ``ok`` op of each node after the heal);
- **converged after the heal** (eventual): when every node's causal token
  covered everything any node had seen at the heal (the prober's reads);
- **discovery**: passing instances each side's readers saw; how long after
  an instance's last heartbeat (its node gone or refusing) the other nodes'
  readers still listed it passing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from configsvc.lab.history import Op
from configsvc.lab.scenarios import Timeline
from configsvc.lab.verdicts import WriteIndex, covers, geq, join, seen_vv

__all__ = ["KV_KINDS", "SVC_KINDS", "measure"]

KV_KINDS = ("strong", "eventual", "lww")
SVC_KINDS = ("svc-strong", "svc-eventual")
PHASES = ("before", "during", "after")
BIN = 1.0


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _stale_by_overwrite(ops: Sequence[Op]) -> set[int]:
    """ids of reads that returned a value definitely overwritten before they started."""
    puts = [o for o in ops if o.op == "put" and o.outcome == "ok"]
    by_key: dict[str, list[Op]] = defaultdict(list)
    for p in puts:
        by_key[p.key].append(p)
    written = {p.value: p for p in puts}
    stale = set()
    for r in ops:
        if r.op != "get" or r.outcome != "ok":
            continue
        value = r.answer
        if isinstance(value, dict):  # lww: the one sibling
            sibs = value.get("siblings") or []
            value = sibs[0][0] if sibs else None
        if value is None:
            if any(p.end < r.start for p in by_key[r.key]):
                stale.add(id(r))
            continue
        w = written.get(value)
        if w is not None and any(p.start > w.end and p.end < r.start for p in by_key[r.key]):
            stale.add(id(r))
    return stale


def _stale_unseen(ops: Sequence[Op]) -> set[int]:
    """Multi-value: ids of reads that had not seen a write acknowledged before they began."""
    writes = WriteIndex(ops)
    acked = defaultdict(list)
    for value, dot in writes.dot_of.items():
        w = writes.by_value[value]
        if w.outcome == "ok":
            acked[w.key].append((w.end, dot))
    stale = set()
    for r in ops:
        if r.op == "get" and r.outcome == "ok" and r.answer is not None:
            seen = seen_vv(r.answer, r.key, writes)
            if any(end < r.start and not covers(seen, dot) for end, dot in acked[r.key]):
                stale.add(id(r))
    return stale


def _cell(ops: Sequence[Op], stale: set[int]) -> dict[str, Any]:
    ok = [o for o in ops if o.outcome == "ok"]
    lat = [o.latency for o in ok]
    writes = [o for o in ops if o.op in ("put", "register", "heartbeat")]
    reads = [o for o in ops if o.op in ("get", "instances")]
    cell: dict[str, Any] = {
        "ops": len(ops),
        "ok": len(ok),
        "success": round(len(ok) / len(ops), 4) if ops else None,
        "writes": len(writes),
        "writes_ok": sum(o.outcome == "ok" for o in writes),
        "reads": len(reads),
        "reads_ok": sum(o.outcome == "ok" for o in reads),
        "unknown": sum(o.outcome == "unknown" for o in ops),
        "p50_ms": _ms(_pct(lat, 0.5)),
        "p99_ms": _ms(_pct(lat, 0.99)),
        #: how long the ops that did not succeed took to say so (a fast "no" or a hang)
        "not_ok_p50_ms": _ms(_pct([o.latency for o in ops if o.outcome != "ok"], 0.5)),
        "stale_reads": sum(id(o) in stale for o in ops),
    }
    seen = [len(o.answer) for o in reads if o.outcome == "ok" and isinstance(o.answer, list)]
    if seen:
        cell["instances_seen"] = {"min": min(seen), "mean": round(sum(seen) / len(seen), 2),
                                  "max": max(seen)}
    return cell


def _series(ops: Sequence[Op], sides: dict[str, str], end: float) -> dict[str, Any]:
    """Per 1 s bin: success rate per side, and latency (p50, max) of the ok ops."""
    bins = max(1, math.ceil(end / BIN))
    count: dict[str, list[int]] = defaultdict(lambda: [0] * bins)
    good: dict[str, list[int]] = defaultdict(lambda: [0] * bins)
    lat: list[list[float]] = [[] for _ in range(bins)]
    for o in ops:
        b = min(bins - 1, int(o.start / BIN))
        side = sides.get(o.node, "?")
        count[side][b] += 1
        good[side][b] += o.outcome == "ok"
        if o.outcome == "ok":
            lat[b].append(o.latency)
    return {
        "t": [round((b + 0.5) * BIN, 2) for b in range(bins)],
        "success": {s: [round(g / c, 3) if c else None for g, c in zip(good[s], count[s], strict=True)]
                    for s in sorted(count)},
        "p50_ms": [_ms(_pct(x, 0.5)) for x in lat],
        "max_ms": [_ms(max(x)) if x else None for x in lat],
    }


def _recovery(ops: Iterable[Op], nodes: Sequence[str], heal: float) -> float | None:
    """Seconds after the heal until every node had served an ok op (None: some never did)."""
    first: dict[str, float] = {}
    for o in ops:
        if o.outcome == "ok" and o.start >= heal:
            first[o.node] = min(first.get(o.node, math.inf), o.end)
    if set(first) != set(nodes):
        return None
    return round(max(first.values()) - heal, 3)


def _convergence(ops: Sequence[Op], nodes: Sequence[str], heal: float) -> dict[str, Any]:
    """Eventual: when every node's token covered the join of all tokens seen by the heal;
    also each node's distance (events missing) over time, for the plot."""
    target: dict[str, int] = {}
    for o in ops:
        if o.token and o.end <= heal:
            target = join(target, o.token)
    probes = sorted((o for o in ops if o.op == "probe" and o.outcome == "ok" and o.token),
                    key=lambda o: o.start)
    done: dict[str, float] = {}
    behind: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for p in probes:
        assert p.token is not None
        if p.start >= heal - 5:
            missing = sum(max(0, n - p.token.get(r, 0)) for r, n in target.items())
            behind[p.node].append((round(p.start, 3), missing))
        if p.start >= heal and p.node not in done and geq(p.token, target):
            done[p.node] = p.end
    seconds = round(max(done.values()) - heal, 3) if set(done) == set(nodes) else None
    return {"seconds": seconds, "per_node": {n: round(t - heal, 3) for n, t in sorted(done.items())},
            "behind": dict(sorted(behind.items()))}


def _view_complete(ops: Sequence[Op], nodes: Sequence[str], heal: float) -> float | None:
    """Discovery: seconds after the heal until every node's reader listed every instance."""
    want = len(nodes)
    first: dict[str, float] = {}
    for o in sorted(ops, key=lambda o: o.start):
        if (o.op == "instances" and o.outcome == "ok" and o.start >= heal
                and isinstance(o.answer, list) and len(o.answer) >= want):
            first.setdefault(o.node, o.end)
    return round(max(first.values()) - heal, 3) if set(first) == set(nodes) else None


def _dead_served(ops: Sequence[Op], ttl: float) -> dict[str, Any]:
    """For every instance whose heartbeats were all refused for longer than its TTL
    (its node down or unable to write): how long after its last heartbeat that may
    have landed (an ``ok`` one's end, an ``unknown`` one's start) the *other*
    nodes' readers still listed it passing. Its own node's view is left out: it cannot tell a silent instance
    from one it has just restarted beside."""
    beats: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if o.op in ("register", "heartbeat"):
            beats[o.key].append(o)
    reads = [o for o in ops if o.op == "instances" and o.outcome == "ok" and isinstance(o.answer, list)]
    worst: float | None = None
    silences = 0
    for instance, hb in beats.items():
        hb.sort(key=lambda o: o.start)
        home = hb[0].node
        last: float | None = None
        for i, o in enumerate(hb):
            if o.outcome != "failed":
                # ok: it landed by its end; unknown: it may have landed as soon as sent
                last = o.end if o.outcome == "ok" else o.start
                continue
            if last is None or (i > 0 and hb[i - 1].outcome == "failed"):
                continue  # not the first refusal after a heartbeat that may have landed
            back = next((h.start for h in hb[i:] if h.outcome != "failed"), math.inf)
            if back - last <= ttl:
                continue
            silences += 1
            listed = [r.start - last for r in reads
                      if r.node != home and last < r.start < back and instance in r.answer]
            if listed:
                worst = max(worst or 0.0, max(listed))
    return {"silent_instances": silences, "max_listed_after_last_heartbeat_s":
            None if worst is None else round(worst, 2), "ttl_s": ttl}


def measure(ops: Sequence[Op], timeline: Timeline, ttl: float) -> dict[str, Any]:
    """Every figure of a run, JSON-ready (``summary.json``'s ``namespaces``)."""
    nodes = sorted(timeline.sides)
    out: dict[str, Any] = {}
    for kind in (*KV_KINDS, *SVC_KINDS):
        mine = [o for o in ops if o.kind == kind]
        if not mine:
            continue
        if kind == "eventual":
            stale = _stale_unseen(mine)
        elif kind in ("strong", "lww"):
            stale = _stale_by_overwrite(mine)
        else:
            stale = set()
        cells: dict[str, dict[str, Any]] = {}
        for phase in PHASES:
            for side in sorted(set(timeline.sides.values())):
                sel = [o for o in mine if timeline.phase(o.start) == phase
                       and timeline.sides.get(o.node) == side]
                cells[f"{phase}/{side}"] = _cell(sel, stale)
        entry: dict[str, Any] = {
            "namespace": mine[0].ns,
            "cells": cells,
            "series": _series(mine, timeline.sides, timeline.end_at),
        }
        if kind in ("strong", "svc-strong"):
            entry["recovered_after_heal_s"] = _recovery(mine, nodes, timeline.heal_at)
        if kind in SVC_KINDS:
            entry["view_complete_after_heal_s"] = _view_complete(mine, nodes, timeline.heal_at)
            entry["dead_instances"] = _dead_served(mine, ttl)
        out[kind] = entry
    conv = _convergence(ops, nodes, timeline.heal_at)
    for kind in ("eventual", "lww", "svc-eventual"):
        if kind in out:
            out[kind]["converged_after_heal_s"] = conv["seconds"]
    out["convergence"] = conv
    return out

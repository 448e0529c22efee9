"""Checkers for the eventual store, kept apart from the cluster they judge.

They see only what a client or an outside observer sees: the history of
client operations (requests, answers, the session tokens answers carried),
every event any node made durable (the registry: dot -> event, recorded by
the simulator from the records the origin synced), the full states sent,
and the final replica states. The reference semantics are written here
from scratch, not borrowed from the replica:

    the siblings of key k in a causally closed cut V (a version vector) are
    the events e on k with e.dot in V and a value, such that no event e' on
    k in V has e.dot in e'.covers.

Checks (each returns a violation text or None):

- ``check_sessions``: every answer's token covers the token the request
  carried (read-your-writes, monotonic reads, monotonic writes,
  writes-follow-reads), every write's deps cover the request's token, and a
  write with a read context covers exactly it;
- ``check_causal``: every answered token is a causally closed cut (each
  event in it has its causal past in it) — a client that has seen b never
  reads a state older than what b depended on;
- ``check_groups``: every answered token holds whole transactions — for
  each origin, the last event it holds is not inside a group (atomic
  visibility: no reader sees part of a transaction);
- ``check_reads``: every read answer equals the reference siblings of its
  cut (also catches resurrection during the run);
- ``check_final``: converged states are equal, every acknowledged write is
  present or superseded by an event whose covers held it (multi-value
  mode), nothing removed is present again (no resurrection), and the
  converged state is exactly the reference state of every event;
- ``check_full_states``: a full state goes only to a replica that was away
  (some node went the collection horizon without hearing from it) or came
  back with a new identity — never in place of deltas to a replica that was
  around and lacked collected events, and never as a repair (equal version
  vectors must mean equal states).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from configsvc.sim.eventual_client import HistoryOp
from configsvc.sim.runner import SeedResult
from eventual.dots import VV, Dot, Key, Sibling, vv_covers, vv_leq, vv_missing
from eventual.instances import decode_info, instance_key
from eventual.lww import resolve
from eventual.messages import Event
from eventual.ormap import ORMap
from eventual.requests import (
    Delete,
    Get,
    Instances,
    InstancesResult,
    List,
    ListResult,
    Put,
    ReadResult,
    Register,
    Txn,
    TxnResult,
    TxnWrite,
    WriteResult,
)
from eventual.token import decode_vv


@dataclass
class Registry:
    """Every durable event, by dot and by key."""

    events: dict[Dot, Event] = field(default_factory=dict)
    by_key: dict[Key, list[Event]] = field(default_factory=lambda: defaultdict(list))

    def add(self, event: Event) -> None:
        if event.dot not in self.events:
            self.events[event.dot] = event
            self.by_key[event.key].append(event)

    def reference(self, key: Key, cut: Mapping[str, int]) -> dict[Dot, Event]:
        """The siblings of ``key`` in the cut, by the reference semantics."""
        seen = [e for e in self.by_key.get(key, ()) if vv_covers(cut, e.dot)]
        alive = {e.dot: e for e in seen if e.value is not None}
        for e in seen:
            covers = dict(e.covers)
            for d in [d for d in alive if d != e.dot and vv_covers(covers, d)]:
                del alive[d]
        return alive


def _fmt_op(op: HistoryOp) -> str:
    return (f"t={op.invoked:.3f} {op.client}@{op.node} {type(op.request).__name__} "
            f"{op.request} -> {op.result}")


def check_sessions(history: Iterable[HistoryOp], reg: Registry,
                   merge_of: Mapping[str, str]) -> tuple[str, list[str]] | None:
    own_writes: dict[str, list[Dot]] = defaultdict(list)
    for op in history:
        result = op.result
        token = getattr(result, "token", None)
        if not isinstance(token, str):
            continue
        served, carried = decode_vv(token), decode_vv(op.token_in)
        if not vv_leq(carried, served):
            missing = vv_missing(carried, served)
            own = [d for d in own_writes[op.client] if not vv_covers(served, d)]
            what = "read-your-writes" if own else "monotonic reads / writes-follow-reads"
            return (f"session guarantee broken ({what}): {op.client} was served at {op.node} "
                    f"by a replica missing {missing} of its token", [_fmt_op(op)])
        if isinstance(result, WriteResult):
            own_writes[op.client].append(result.dot)
            event = reg.events.get(result.dot)
            if event is None:
                return f"acknowledged write {result.dot} was never durable", [_fmt_op(op)]
            if not vv_leq(carried, dict(event.deps)):
                return (f"monotonic writes / writes-follow-reads broken: write {result.dot} "
                        f"does not depend on the session's past", [_fmt_op(op)])
            req = op.request
            if (isinstance(req, Put | Delete) and req.context is not None
                    and merge_of.get(req.namespace, "mvr") == "mvr"
                    and dict(event.covers) != decode_vv(req.context)):
                return (f"write {result.dot} does not supersede exactly its read context",
                        [_fmt_op(op)])
    return None


def _cuts(history: Iterable[HistoryOp]) -> Iterator[tuple[HistoryOp, VV]]:
    """Each distinct cut an answer's token exposed, with the first op that saw it."""
    checked: set[tuple[tuple[str, int], ...]] = set()
    for op in history:
        token = getattr(op.result, "token", None)
        if not isinstance(token, str):
            continue
        cut = decode_vv(token)
        frozen = tuple(sorted(cut.items()))
        if frozen not in checked:
            checked.add(frozen)
            yield op, cut


def check_causal(history: Iterable[HistoryOp], reg: Registry) -> tuple[str, list[str]] | None:
    for op, cut in _cuts(history):
        for actor, n in cut.items():
            top = reg.events.get((actor, n))
            if top is None:
                return (f"{op.node} exposed event {(actor, n)} that no node made durable",
                        [_fmt_op(op)])
            missing = vv_missing(dict(top.deps), cut)
            if missing:
                dep = next(iter(missing.items()))
                return (f"causal consistency broken: {op.client} read at {op.node} a state with "
                        f"write {top.dot} ({top.value!r}) but without its causal past "
                        f"{dep} ({_value_of(reg, dep)!r})", [_fmt_op(op)])
    return None


def check_groups(history: Iterable[HistoryOp], reg: Registry) -> tuple[str, list[str]] | None:
    for op, cut in _cuts(history):
        for actor, n in cut.items():
            top = reg.events.get((actor, n))
            if top is not None and top.group_end > n:
                return (f"atomic visibility broken: {op.client} read at {op.node} a state with "
                        f"events {actor} ..{n} of the transaction {actor} ..{top.group_end} "
                        f"but not the rest", [_fmt_op(op)])
    return None


def _acknowledged(op: HistoryOp) -> list[tuple[Dot, str, Key | None]]:
    """The writes ``op``'s answer acknowledged: (dot, namespace, key if a put or
    register, whose value must survive unless superseded)."""
    result, req = op.result, op.request
    if isinstance(result, WriteResult):
        key: Key | None = None
        if isinstance(req, Put):
            key = (req.namespace, "kv", req.key)
        elif isinstance(req, Register):
            key = instance_key(req.namespace, req.service, req.instance_id)
        return [(result.dot, req.namespace, key)]
    if isinstance(result, TxnResult) and isinstance(req, Txn):
        return [(sib.dot, req.namespace, (req.namespace, "kv", name))
                for txn_op, seen in zip(req.ops, result.results, strict=True)
                if isinstance(txn_op, TxnWrite) for name, sibs in seen for sib in sibs]
    return []


def _value_of(reg: Registry, dep: tuple[str, int]) -> bytes | None:
    e = reg.events.get(dep)
    return None if e is None else e.value


def _expected(reg: Registry, key: Key, cut: VV, merge: str) -> set[tuple[Dot, bytes]]:
    alive = reg.reference(key, cut)
    if merge == "lww":
        best = resolve({d: _sib(e) for d, e in alive.items()})
        alive = {} if best is None else {best[0]: alive[best[0]]}
    return {(d, e.value) for d, e in alive.items() if e.value is not None}


def _sib(e: Event) -> Sibling:
    assert e.value is not None
    return Sibling(e.value, e.hlc)


def check_reads(history: Iterable[HistoryOp], reg: Registry,
                merge_of: Mapping[str, str]) -> tuple[str, list[str]] | None:
    for op in history:
        result, req = op.result, op.request
        if isinstance(result, ReadResult) and isinstance(req, Get):
            cut = decode_vv(result.token)
            merge = merge_of.get(req.namespace, "mvr")
            want = _expected(reg, (req.namespace, "kv", req.key), cut, merge)
            got = {(s.dot, s.value) for s in result.siblings}
            if got != want:
                return (f"read of {req.namespace}/{req.key} at {op.node} returned "
                        f"{sorted(got)}, but its cut holds {sorted(want)}", [_fmt_op(op)])
        elif isinstance(result, ListResult) and isinstance(req, List):
            cut = decode_vv(result.token)
            merge = merge_of.get(req.namespace, "mvr")
            got_items = {k: {(s.dot, s.value) for s in sibs} for k, sibs in result.items}
            for key in [k for k in reg.by_key if k[0] == req.namespace and k[1] == "kv"
                        and k[2].startswith(req.prefix)]:
                want = _expected(reg, key, cut, merge)
                if got_items.get(key[2], set()) != want:
                    return (f"list of {req.namespace}/{req.prefix} at {op.node} shows "
                            f"{key[2]} as {got_items.get(key[2])}, its cut holds {want}",
                            [_fmt_op(op)])
        elif isinstance(result, InstancesResult) and isinstance(req, Instances):
            cut = decode_vv(result.token)
            got_ids = {v.instance_id: v.heartbeat_hlc for v in result.instances}
            for key in [k for k in reg.by_key if k[0] == req.namespace and k[1] == "svc"
                        and k[2].startswith(req.service + "/")]:
                alive = reg.reference(key, cut)
                iid = key[2][len(req.service) + 1:]
                want_hlc = max((e.hlc for e in alive.values()), default=None)
                if got_ids.get(iid) != want_hlc:
                    return (f"instances of {req.service} at {op.node}: {iid} shown with "
                            f"heartbeat {got_ids.get(iid)}, its cut holds {want_hlc}",
                            [_fmt_op(op)])
    return None


def check_final(states: Mapping[str, ORMap], canonical: Mapping[str, bytes],
                history: Iterable[HistoryOp], reg: Registry,
                merge_of: Mapping[str, str], lost_with_disk: AbstractSet[Dot] = frozenset(),
                ) -> tuple[str, list[str]] | None:
    names = sorted(states)
    first = names[0]
    for other in names[1:]:
        if canonical[other] != canonical[first]:
            a, b = states[first], states[other]
            diff = sorted(k for k in set(a.entries) | set(b.entries)
                          if a.entries.get(k) != b.entries.get(k))[:3]
            lines = [f"{first}: vv={a.context.vv}", f"{other}: vv={b.context.vv}"]
            lines += [f"{k}: {first}={a.entries.get(k)} {other}={b.entries.get(k)}" for k in diff]
            return f"replicas {first} and {other} did not converge", lines
    state = states[first]
    vv = state.context.vv
    for op in history:
        for dot, ns, key in _acknowledged(op):
            if dot in lost_with_disk:
                continue
            if not vv_covers(vv, dot):
                return f"acknowledged write {dot} never reached the converged state", [
                    _fmt_op(op)]
            if key is None or merge_of.get(ns, "mvr") == "lww" or dot in state.siblings(key):
                continue
            if not any(vv_covers(dict(e.covers), dot) and vv_covers(vv, e.dot)
                       for e in reg.by_key.get(key, ())):
                return (f"acknowledged write {dot} lost: absent and superseded by nothing "
                        f"that saw it", [_fmt_op(op)])
    for key, sibs in state.entries.items():
        for dot in sibs:
            killer = next((e for e in reg.by_key.get(key, ())
                           if vv_covers(dict(e.covers), dot) and vv_covers(vv, e.dot)), None)
            if killer is not None:
                return (f"resurrection: {key} holds {dot} although {killer.dot} "
                        f"({'delete' if killer.value is None else 'write'}) removed it", [])
    for key in set(reg.by_key) | set(state.entries):
        want = {d for d in reg.reference(key, vv)}
        if set(state.siblings(key)) != want:
            return (f"converged state of {key} is {sorted(state.siblings(key))}, the events "
                    f"say {sorted(want)}", [])
        if key[1] == "svc":
            for d in want:
                decode_info(reg.events[d].value or b"")
    return None


def lww_overwritten(history: Iterable[HistoryOp], reg: Registry,
                    merge_of: Mapping[str, str]) -> int:
    """Acknowledged LWW writes that lost to a concurrent write (neither saw the other)."""
    count = 0
    for op in history:
        req, result = op.request, op.result
        if not (isinstance(req, Put) and isinstance(result, WriteResult)
                and merge_of.get(req.namespace, "mvr") == "lww"):
            continue
        mine = reg.events[result.dot]
        for other in reg.by_key[mine.key]:
            if other.dot == mine.dot or other.value is None:
                continue
            concurrent = (not vv_covers(dict(other.deps), mine.dot)
                          and not vv_covers(dict(mine.deps), other.dot))
            if concurrent and (other.hlc, other.dot) > (mine.hlc, mine.dot):
                count += 1
                break
    return count


def check_full_states(sent: Iterable[tuple[float, str, str, bool, float, bool]],
                      wiped: Mapping[str, float], horizon_real: float
                      ) -> tuple[str, list[str]] | None:
    """``sent``: (time, src, dst, reply flag, the longest stretch any node had
    gone, while up, without any message from dst, whether dst then lacked an
    event below src's log floor).

    A full state to a replica that was around (and not wiped) means either a
    repair (``reply``: equal version vectors, different states) or a collection
    bug (src collected events dst lacked, so deltas cannot serve it). One that
    dst did not need (it had everything below src's floor; src judged by a stale,
    reordered digest) costs bandwidth but hides no bug: it passes."""
    for t, src, dst, reply, away, needed in sent:
        if away >= horizon_real or wiped.get(dst, float("inf")) <= t:
            continue
        if wiped.get(src, float("inf")) <= t:
            continue  # a wiped node may push its (fresh) state back in reply
        if not reply and not needed:
            continue
        return (f"full state sent {src} -> {dst} at t={t:.3f} although no node ever went "
                f"{horizon_real:.3f}s without hearing from {dst} (longest silence "
                f"{away:.3f}s): a peer within the horizon must be caught up by deltas, and "
                f"equal version vectors must mean equal states (no repair needed)", [])
    return None


#: the checkers a violation can come from (the ``[name]`` that starts it)
CHECKERS = ("session", "causal", "atomic", "reads", "convergence", "lost_write", "resurrection",
            "full_state", "harness")


def final_kind(violation: str) -> str:
    """Which property the final-state checker found broken."""
    if violation.startswith("resurrection"):
        return "resurrection"
    if violation.startswith("acknowledged write"):
        return "lost_write"
    return "convergence"


def checker_of(result: SeedResult) -> str:
    """The checker that failed ``result`` (``CHECKERS``), or "" if it passed."""
    if result.ok:
        return ""
    return result.violation[1:result.violation.index("]")] if result.violation.startswith(
        "[") else "harness"

"""Answers to client requests, computed from a replica's dot store (pure):
read answers, and the plan (key, value, covers) of a write's event.

Under ``merge: mvr`` a read returns every sibling, sorted by dot; under
``merge: lww`` only the last writer (``eventual.lww.resolve``). The read
context is the version vector of the siblings' dots either way, so a write
handing it back supersedes exactly what the read saw.

Idempotent writes. A put or delete may carry the client's idempotency key;
its retries carry the same one. Rules:

1. A replica that holds the key — a sibling of the key with it, a write with
   it applied within the idempotency horizon (``eventual.recent_writes``), or
   an event on the key with it still in its log — answers the retry with that
   dot and writes nothing (``Replayed``).
2. A replica that does not (the first attempt reached another node and has
   not arrived here yet) writes a new event, concurrent with the first: two
   siblings carry the key. Siblings with the same idempotency key are one
   write: a read shows exactly one of them, the earliest (lowest
   ``(hlc, dot)``), a choice that depends only on the siblings, so every
   replica shows the same one once they converge. The read context still
   covers all of them, so a write that supersedes the read removes them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from eventual.config import LWW, Merge, ReplicaConfig
from eventual.dots import KV_SPACE, SVC_SPACE, VV, Dot, Key, Sibling, vv_join, vv_of_dots
from eventual.health import InstanceHealth
from eventual.instances import InstanceView, decode_info, instance_key, resolve_instance
from eventual.log import EventLog
from eventual.lww import resolve
from eventual.ormap import ORMap
from eventual.recent_writes import RecentWrites
from eventual.requests import (
    Delete,
    Deregister,
    Get,
    Heartbeat,
    Instances,
    InstancesResult,
    List,
    ListResult,
    NotFound,
    Put,
    ReadResult,
    Register,
    Request,
    Result,
    SiblingView,
)
from eventual.token import decode_vv, encode_vv

__all__ = [
    "Replayed",
    "WritePlan",
    "answer_read",
    "instance_views",
    "list_prefix",
    "one_per_write",
    "plan_write",
    "read_key",
    "replayed_write",
    "sibling_views",
]


@dataclass(frozen=True, slots=True)
class WritePlan:
    """The event a write request makes: its key, value (None: remove), covers."""

    key: Key
    value: bytes | None
    covers: VV
    idem: str | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """A retry of a write this replica already holds (rule 1): its first attempt's dot."""

    dot: Dot


def one_per_write(sibs: Mapping[Dot, Sibling]) -> dict[Dot, Sibling]:
    """The siblings a reader sees: of those sharing an idempotency key, only the
    earliest (lowest ``(hlc, dot)``) — a function of the siblings alone (rule 2)."""
    out: dict[Dot, Sibling] = {}
    first: dict[str, tuple[Dot, Sibling]] = {}
    for d, s in sibs.items():
        if s.idem is None:
            out[d] = s
        elif s.idem not in first or (s.hlc, d) < (first[s.idem][1].hlc, first[s.idem][0]):
            first[s.idem] = (d, s)
    out.update(first.values())
    return out


def sibling_views(sibs: Mapping[Dot, Sibling], merge: Merge) -> tuple[SiblingView, ...]:
    if merge == LWW:
        best = resolve(sibs)
        return () if best is None else (SiblingView(best[1].value, best[0], best[1].hlc),)
    return tuple(SiblingView(s.value, d, s.hlc) for d, s in sorted(one_per_write(sibs).items()))


def replayed_write(store: ORMap, recent: RecentWrites, log: EventLog, key: Key,
              idem: str | None) -> Replayed | None:
    """Rule 1: the dot of an attempt of this write that this replica holds, if any."""
    if idem is None:
        return None
    held = {d: s for d, s in store.siblings(key).items() if s.idem == idem}
    if held:
        return Replayed(min(held, key=lambda d: (held[d].hlc, d)))
    remembered = recent.find(key, idem)
    if remembered is not None:
        return Replayed(remembered)
    logged = log.find(key, idem)
    return None if logged is None else Replayed(logged.dot)


def read_key(store: ORMap, key: Key, merge: Merge) -> tuple[tuple[SiblingView, ...], str]:
    """The siblings a reader sees and the read context to write back."""
    sibs = store.siblings(key)
    return sibling_views(sibs, merge), encode_vv(vv_of_dots(sibs))


def list_prefix(
    store: ORMap, namespace: str, prefix: str, merge: Merge
) -> tuple[tuple[str, tuple[SiblingView, ...]], ...]:
    found = [
        (key[2], sibling_views(sibs, merge))
        for key, sibs in store.entries.items()
        if key[0] == namespace and key[1] == KV_SPACE and key[2].startswith(prefix)
    ]
    return tuple(sorted(found))


def instance_views(
    store: ORMap, namespace: str, service: str, health: InstanceHealth, now: float
) -> tuple[InstanceView, ...]:
    """Every instance of ``service`` with its local health (``eventual.health``),
    sorted by instance id."""
    prefix = service + "/"
    out: list[InstanceView] = []
    for key, sibs in store.entries.items():
        if key[0] != namespace or key[1] != SVC_SPACE or not key[2].startswith(prefix):
            continue
        current = resolve_instance(sibs)
        if current is None:
            continue
        info, heartbeat = current
        out.append(InstanceView(
            service=service,
            instance_id=key[2][len(prefix):],
            info=info,
            heartbeat_hlc=heartbeat,
            status=health.status(key, info, now),
        ))
    return tuple(sorted(out, key=lambda v: v.instance_id))


def answer_read(
    store: ORMap, config: ReplicaConfig, request: Request, health: InstanceHealth,
    now: float, index: int = 0,
) -> Result | None:
    """The answer to a read request (None if ``request`` is a write); ``index`` is
    the namespace's change index now (``eventual.change_index``)."""
    token = encode_vv(store.context.vv)
    match request:
        case Get(ns, name):
            siblings, context = read_key(store, (ns, KV_SPACE, name), config.merge_of(ns))
            return ReadResult(siblings, context, token, index)
        case List(ns, prefix):
            return ListResult(list_prefix(store, ns, prefix, config.merge_of(ns)), token, index)
        case Instances(ns, service):
            return InstancesResult(instance_views(store, ns, service, health, now), token,
                                   index)
    return None


def plan_write(
    store: ORMap, config: ReplicaConfig, request: Request, recent: RecentWrites, log: EventLog
) -> WritePlan | Replayed | NotFound:
    """For a write request: the event to make — the key, the new value (None:
    remove) and what it covers — or the dot of the attempt already held (rule 1).
    ``merge: mvr`` covers exactly the client's read context (a blind write covers
    nothing; a delete without context covers what this replica has seen);
    ``merge: lww`` and instance updates cover everything this replica has seen
    of the key."""
    match request:
        case Put(ns, name, _, context, idem) | Delete(ns, name, context, idem):
            key: Key = (ns, KV_SPACE, name)
            replayed = replayed_write(store, recent, log, key, idem)
            if replayed is not None:
                return replayed
            new = request.value if isinstance(request, Put) else None
            covers = decode_vv(context)
            if context is None and isinstance(request, Delete):
                covers = store.key_vv(key)
            if config.merge_of(ns) == LWW:
                covers = vv_join(covers, store.key_vv(key))
            return WritePlan(key, new, covers, idem)
        case Register(ns, service, iid, info):
            key = instance_key(ns, service, iid)
            return WritePlan(key, info.encode(), store.key_vv(key))
        case Heartbeat(ns, service, iid) | Deregister(ns, service, iid):
            key = instance_key(ns, service, iid)
            best = resolve(store.siblings(key))
            if best is None:
                return NotFound(f"instance {service}/{iid}", encode_vv(store.context.vv))
            kept: bytes | None = None
            if isinstance(request, Heartbeat):
                kept = best[1].value  # the same record, unless the reported status changed
                info = decode_info(kept)
                if (info.status, info.output) != (request.status, request.output):
                    kept = info.model_copy(update={"status": request.status,
                                                   "output": request.output}).encode()
            return WritePlan(key, kept, store.key_vv(key))
    raise ValueError(f"not a write request: {request!r}")

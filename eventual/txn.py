"""Transactions in an eventual namespace: checks, reads and writes on several
keys, all or nothing, and visible atomically on every replica.

An eventual namespace accepts writes on every replica, partitioned or not,
so a transaction here is not serializable across the cluster. What it is:

1. **All or nothing at the serving replica.** The operations run in order
   within one step of the replica (nothing interleaves): each check and
   conditional write is judged against the replica's state at that point of
   the transaction (earlier operations' writes included). If any fails, the
   answer is ``TxnFailed`` naming it and nothing is written.
2. **Atomic visibility everywhere** (read atomicity, as in transactional
   causal consistency). The writes become consecutive events of the serving
   replica, a *group*: each carries the counter of the group's last event
   (``Event.group_end``). No replica applies a member before it holds them
   all (``eventual.delivery``), a restart never replays part of a group
   (``eventual.storage.recover``), and full-state transfers carry whole
   states. So no reader anywhere sees some of a transaction's writes
   without the others, and a session token after it covers all of them.
3. **Writes supersede what the serving replica has seen** of their keys
   (like ``merge: lww``): a concurrent write elsewhere survives as a
   sibling, as with any eventual write. Two replicas may both pass the same
   check in a partition; each transaction is still applied whole.

Versions. A key's *version stamp* is a 52-bit digest of the dots of the
siblings a reader sees: equal on every replica holding the same versions,
different after any write or delete that touches the key; 0 means absent.
It is not ordered (the Consul face shows it as ``ModifyIndex``).

``plan`` is pure: it returns the events to make (key and value, in order)
and, per operation, what it saw, with writes named by their position in the
group (their dots are known in advance: consecutive counters of the serving
replica). The replica makes the events and fills in the new siblings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from eventual.config import ReplicaConfig
from eventual.dots import KV_SPACE, Dot, Key
from eventual.log import EventLog
from eventual.messages import MAX_GROUP_EVENTS
from eventual.ormap import ORMap
from eventual.recent_writes import RecentWrites
from eventual.requests import (
    BadRequest,
    SiblingView,
    Txn,
    TxnCheck,
    TxnRead,
    TxnReadPrefix,
    TxnRemovePrefix,
    TxnWrite,
)
from eventual.serve import Replayed, list_prefix, read_key, replayed_write

__all__ = ["Failed", "TxnPlan", "plan", "version_stamp"]

_STAMP_BITS = 52

#: what an operation saw of one key: its siblings, or the index of the
#: transaction's own write that it saw (None: that write was a delete)
Seen = tuple[SiblingView, ...] | int


def version_stamp(dots: Iterable[Dot]) -> int:
    """The version stamp of a key whose visible siblings have ``dots``: in
    [1, 2**52], or 0 for none (absent)."""
    names = sorted(f"{origin}:{n}" for origin, n in dots)
    if not names:
        return 0
    digest = hashlib.sha256("\n".join(names).encode()).digest()
    return (int.from_bytes(digest[:8], "big") & ((1 << _STAMP_BITS) - 1)) + 1


@dataclass
class TxnPlan:
    #: the group's events, in order: (key, value or None for a removal)
    writes: list[tuple[Key, bytes | None]] = field(default_factory=list)
    #: per operation, (name, what it saw) for each key it saw
    seen: list[list[tuple[str, Seen]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Failed:
    op: int
    reason: str


def plan(store: ORMap, config: ReplicaConfig, txn: Txn, origin: str, next_counter: int,
         recent: RecentWrites, log: EventLog) -> TxnPlan | Failed | Replayed | BadRequest:
    """The events ``txn`` makes at a replica named ``origin`` whose next event
    is ``next_counter``, or why it makes none. ``txn`` passed ``invalid``."""
    ns, merge = txn.namespace, config.merge_of(txn.namespace)
    if txn.idempotency_key is not None:
        for op in txn.ops:
            if isinstance(op, TxnWrite):
                found = replayed_write(store, recent, log, (ns, KV_SPACE, op.key),
                                       txn.idempotency_key)
                if found is not None:
                    return found
                break
    out = TxnPlan()
    #: keys this transaction wrote so far: the index of the latest write
    written: dict[str, int] = {}

    def current(name: str) -> Seen:
        if name in written:
            return written[name]
        return read_key(store, (ns, KV_SPACE, name), merge)[0]

    def version(seen: Seen) -> int:
        if isinstance(seen, int):
            value = out.writes[seen][1]
            return 0 if value is None else version_stamp([(origin, next_counter + seen)])
        return version_stamp(s.dot for s in seen)

    def keys_under(prefix: str) -> list[tuple[str, Seen]]:
        found: dict[str, Seen] = dict(list_prefix(store, ns, prefix, merge))
        for name, index in written.items():
            if name.startswith(prefix):
                found[name] = index
        return sorted((name, seen) for name, seen in found.items() if version(seen))

    def write(name: str, value: bytes | None) -> int:
        out.writes.append(((ns, KV_SPACE, name), value))
        written[name] = len(out.writes) - 1
        return written[name]

    for i, op in enumerate(txn.ops):
        seen: list[tuple[str, Seen]] = []
        match op:
            case TxnCheck(name, wanted):
                now = current(name)
                failure = _judge(name, version(now), wanted)
                if failure:
                    return Failed(i, failure)
                seen.append((name, now))
            case TxnRead(name):
                now = current(name)
                if version(now):
                    seen.append((name, now))
            case TxnReadPrefix(prefix):
                seen.extend(keys_under(prefix))
            case TxnWrite(name, value, wanted):
                if wanted is not None:
                    failure = _judge(name, version(current(name)), wanted)
                    if failure:
                        return Failed(i, failure)
                if value is not None or version(current(name)):
                    index = write(name, value)
                    if value is not None:
                        seen.append((name, index))
            case TxnRemovePrefix(prefix):
                for name, _ in keys_under(prefix):
                    write(name, None)
        out.seen.append(seen)
        if len(out.writes) > MAX_GROUP_EVENTS:
            return BadRequest(f"a transaction writes at most {MAX_GROUP_EVENTS} keys "
                              f"(operation {i} goes beyond)")
    return out


def _judge(name: str, version: int, wanted: int | None) -> str | None:
    """Why a key at ``version`` fails a check for ``wanted``, or None."""
    if wanted is None:
        return None if version else f"key {name!r} does not exist"
    if wanted == 0:
        return None if not version else f"key {name!r} exists"
    if version == wanted:
        return None
    return f"key {name!r} is at version {version}, not {wanted}" if version else (
        f"key {name!r} does not exist (expected version {wanted})")

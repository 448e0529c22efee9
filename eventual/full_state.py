"""Full state transfer in byte-bounded chunks, and their reassembly.

A full state (``eventual.messages.FullState``) can exceed any transport frame
cap, and a receiver that rejects the frame can then never be repaired. So a
transfer is cut into ``parts`` messages, each at most ``max_bytes`` (by the
same upper-bound estimate the delta cap uses), except that a single key or
log event larger than the cap travels alone.

Rules this module obeys:

1. A chunk is a self-contained piece of one state: a run of keys in key order
   (plus a run of the sender's log), every chunk of a transfer carrying the
   same causal context ``vv``, sender identity and ``parts``. Chunks of one
   transfer are cut deterministically from one state, so a resend of an
   unchanged state has the same chunks.
2. A chunk is never merged on its own. Its context covers dots of keys that
   are in other chunks: merged alone, those keys would look deleted (their
   dots seen, their siblings absent), and even a merge restricted to the
   chunk's key range would show a state that is not causally closed (a write
   without its causal past, held by a later chunk). The receiver stages the
   chunks of a transfer and merges only the reassembled whole.
3. Resumable. Staged chunks survive a resend of the same transfer (same sender
   identity, context and parts): the receiver only lacks what was lost. A
   chunk of a different transfer from the same sender replaces the staging
   (its context changed; the old pieces are not pieces of the new state).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventual.log import event_size
from eventual.messages import Event, FullState, StateEntry

__all__ = ["FullStateAssembly", "entry_size", "split_full_state"]

#: what a chunk costs besides its entries and events: identity, context, flags
_OVERHEAD = 64


def entry_size(entry: StateEntry) -> int:
    """An upper bound on one state entry's msgpack encoding in bytes."""
    key, sibs = entry
    size = 10 + sum(len(p.encode()) + 5 for p in key)
    for (actor, _), sib in sibs:
        size += 30 + len(actor.encode()) + len(sib.value)
        size += len(sib.idem.encode()) + 5 if sib.idem is not None else 0
    return size


def _vv_size(whole: FullState) -> int:
    return sum(len(a.encode()) + 15 for a, _ in whole.vv) + sum(
        len(n.encode()) + 5 for n in whole.rejoining) + len(whole.replica.encode())


def split_full_state(whole: FullState, max_bytes: int) -> list[FullState]:
    """``whole`` as chunks of at most ``max_bytes`` (estimated) each (rule 1)."""
    budget = max(1, max_bytes - _OVERHEAD - _vv_size(whole))
    groups: list[tuple[list[StateEntry], list[Event]]] = [([], [])]
    used = 0
    items: list[tuple[int, StateEntry | Event]] = [(entry_size(e), e) for e in whole.entries]
    items += [(event_size(e), e) for e in whole.log]
    for size, item in items:
        entries, events = groups[-1]
        if (entries or events) and used + size > budget:
            groups.append(([], []))
            entries, events = groups[-1]
            used = 0
        if isinstance(item, Event):
            events.append(item)
        else:
            entries.append(item)
        used += size
    parts = len(groups)
    return [
        FullState(whole.replica, whole.vv, tuple(entries), whole.hlc, whole.reply, tuple(events),
                  whole.rejoining, part=i, parts=parts)
        for i, (entries, events) in enumerate(groups)
    ]


@dataclass
class _Staged:
    chunks: dict[int, FullState] = field(default_factory=dict)


class FullStateAssembly:
    """Per sender node, the chunks of its latest transfer (rules 2 and 3)."""

    def __init__(self) -> None:
        self._staged: dict[str, _Staged] = {}

    def __len__(self) -> int:
        return sum(len(s.chunks) for s in self._staged.values())

    def add(self, src: str, chunk: FullState) -> FullState | None:
        """Stage ``chunk``; the reassembled full state once every part is here, else None."""
        if chunk.parts == 1:
            self._staged.pop(src, None)
            return chunk
        staged = self._staged.get(src)
        if staged is not None:
            first = next(iter(staged.chunks.values()))
            if (first.replica, first.vv, first.parts) != (chunk.replica, chunk.vv, chunk.parts):
                staged = None
        if staged is None:
            staged = self._staged[src] = _Staged()
        staged.chunks[chunk.part] = chunk
        if len(staged.chunks) < chunk.parts:
            return None
        del self._staged[src]
        ordered = [staged.chunks[i] for i in range(chunk.parts)]
        return FullState(
            chunk.replica, chunk.vv,
            tuple(e for c in ordered for e in c.entries), max(c.hlc for c in ordered),
            any(c.reply for c in ordered), tuple(e for c in ordered for e in c.log),
            chunk.rejoining,
        )

    def forget(self, src: str) -> None:
        self._staged.pop(src, None)

"""Last-writer-wins register on hybrid logical clocks, node-id tie-break.

Chosen per namespace with ``merge: lww``. ``merge`` keeps the write with the
highest ``(hlc, actor)``; it is commutative, associative and idempotent.

It is **lossy under concurrency**: of two writes neither of which saw the
other, the one with the lower timestamp disappears without a trace (the
simulator counts these as ``lww_overwritten``). A causally later write always
wins (``eventual.hlc``), so sequential updates are never lost.

In the store an LWW namespace keeps the same dot store as a multi-value one
(so replication, causal delivery and garbage collection are shared): every
write there supersedes every sibling its replica has seen, and reads resolve
the (at most one per replica) concurrent siblings with ``resolve``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from eventual.dots import Dot, Sibling

__all__ = ["LWWRegister", "resolve"]


class LWWRegister(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    hlc: int = 0
    actor: str = ""
    #: ``None``: never written (the bottom element) or deleted
    value: bytes | None = None

    def merge(self, other: LWWRegister) -> LWWRegister:
        """The write with the higher ``(hlc, actor)`` (pure)."""
        return other if (other.hlc, other.actor) > (self.hlc, self.actor) else self


def resolve(siblings: Mapping[Dot, Sibling]) -> tuple[Dot, Sibling] | None:
    """The last writer among concurrent siblings: highest ``(hlc, actor, counter)``."""
    if not siblings:
        return None
    return max(siblings.items(), key=lambda item: (item[1].hlc, item[0]))

"""The causal context: the set of every dot a replica (or a delta) has seen.

Representation (Almeida, Shoker, Baquero, "Delta State Replicated Data
Types"): a compact version vector ``vv`` plus a *dot cloud* of dots seen out
of order. Invariants, restored by ``compact`` after every change:

- the cloud holds no dot already covered by ``vv``;
- for no actor ``a`` is ``(a, vv[a] + 1)`` in the cloud (it would have been folded in).

A replica that delivers updates causally keeps an empty cloud: its context
is exactly its version vector. Deltas (the causal context of one update)
use the cloud. The context is the store's only record of deletions: a dot in
the context but absent from the store was removed, so tombstones cost no
per-key record. The context is never truncated.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from eventual.dots import VV, Dot, vv_covers, vv_join

__all__ = ["CausalContext"]


class CausalContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    vv: VV = Field(default_factory=dict)
    cloud: set[Dot] = Field(default_factory=set)

    @staticmethod
    def of(vv: VV | None = None, dots: Iterable[Dot] = ()) -> CausalContext:
        ctx = CausalContext.model_construct(vv=dict(vv or {}), cloud=set(dots))
        ctx.compact()
        return ctx

    def contains(self, dot: Dot) -> bool:
        return vv_covers(self.vv, dot) or dot in self.cloud

    def add(self, dot: Dot) -> None:
        """Record ``dot`` as seen (in place)."""
        actor, n = dot
        have = self.vv.get(actor, 0)
        if n == have + 1:
            self.vv[actor] = n
            if self.cloud:
                self.compact()
        elif n > have:
            self.cloud.add(dot)

    def compact(self) -> None:
        """Fold cloud dots that extend the vector into it; drop covered ones."""
        if not self.cloud:
            return
        changed = True
        while changed:
            changed = False
            for dot in sorted(self.cloud):
                actor, n = dot
                have = self.vv.get(actor, 0)
                if n <= have:
                    self.cloud.discard(dot)
                elif n == have + 1:
                    self.vv[actor] = n
                    self.cloud.discard(dot)
                    changed = True

    def join(self, other: CausalContext) -> CausalContext:
        """The union of both dot sets (pure)."""
        return CausalContext.of(vv_join(self.vv, other.vv), self.cloud | other.cloud)

    def dots(self) -> set[Dot]:
        """Every dot as an explicit set (tests and small deltas only)."""
        out = set(self.cloud)
        for actor, n in self.vv.items():
            out.update((actor, i) for i in range(1, n + 1))
        return out

    def is_compact_vv(self) -> bool:
        return not self.cloud

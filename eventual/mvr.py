"""Multi-value register with dotted version vectors (Preguiça et al., "Dotted
Version Vectors: Logical Clocks for Optimistic Replication").

State: ``siblings`` (dot -> value) and a causal ``context`` holding every dot
the register has seen. A sibling whose dot is in the other replica's context
but not in its siblings was superseded there; ``dotfun_join`` drops it.

Invariants:
- every sibling's dot is in the context;
- siblings are pairwise concurrent: a write carrying a context removes
  exactly the siblings whose dots that context holds, nothing else, so
  concurrent writes survive side by side and nothing is silently lost;
- each sibling carries one dot; the read context (``read_context``) is a
  version vector over replica identities, so causal metadata per key is
  bounded by the number of replicas, never by clients or writes.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from eventual.context import CausalContext
from eventual.dots import VV, Dot, Sibling, vv_covers, vv_of_dots

__all__ = ["MVRegister", "dotfun_join"]


def dotfun_join(
    a: Mapping[Dot, Sibling],
    a_ctx: CausalContext,
    b: Mapping[Dot, Sibling],
    b_ctx: CausalContext,
    *,
    ignore_seen: bool = False,
) -> dict[Dot, Sibling]:
    """The causal join of two dot functions: keep a dot present on both sides,
    or present on one side and unseen by the other. Pure.

    ``ignore_seen`` is the planted non-idempotent-merge bug: ``b``'s siblings
    are kept even when ``a`` has already seen and superseded them.
    """
    out = {d: s for d, s in a.items() if d in b or not b_ctx.contains(d)}
    for d, s in b.items():
        if d not in a and (ignore_seen or not a_ctx.contains(d)):
            out[d] = s
    return out


class MVRegister(BaseModel):
    model_config = ConfigDict(extra="forbid")

    siblings: dict[Dot, Sibling] = Field(default_factory=dict)
    context: CausalContext = Field(default_factory=CausalContext)

    def join(self, other: MVRegister) -> MVRegister:
        """Least upper bound (pure)."""
        return MVRegister.model_construct(
            siblings=dotfun_join(self.siblings, self.context, other.siblings, other.context),
            context=self.context.join(other.context),
        )

    def write(self, actor: str, value: bytes, hlc: int, seen: Mapping[str, int]) -> MVRegister:
        """The delta of writing ``value`` at replica ``actor`` with client context
        ``seen``: a new sibling whose dot is the next one of ``actor``, and a
        context holding that dot plus every current sibling ``seen`` covers."""
        dot = (actor, self.context.vv.get(actor, 0) + 1)
        removed = [d for d in self.siblings if vv_covers(seen, d)]
        return MVRegister.model_construct(
            siblings={dot: Sibling(value, hlc)},
            context=CausalContext.of(dots=[dot, *removed]),
        )

    def values(self) -> list[bytes]:
        return [s.value for _, s in sorted(self.siblings.items())]

    def read_context(self) -> VV:
        """What a reader has seen: the version vector of the sibling dots."""
        return vv_of_dots(self.siblings)

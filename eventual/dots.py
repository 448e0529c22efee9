"""Dots and version vectors: the causal vocabulary of the eventual store.

A *dot* ``(actor, counter)`` names one update: the ``counter``-th event created
by replica identity ``actor``. Counters start at 1 and each actor numbers its
events without gaps. An actor is a replica *identity*, never a reusable server
name: a wiped node gets a fresh identity, so a dot is never issued twice.

A *version vector* (``VV``, a plain ``dict[str, int]``) maps each actor to the
highest counter seen; it stands for the downward-closed set of dots
``{(a, n) : 1 <= n <= vv[a]}``. Missing actors count as 0. Version vectors
hold one entry per actor (replica identity), so their size is bounded by the
number of replica identities, never by clients or writes.

A *key* is ``(namespace, space, name)``: ``space`` is ``"kv"`` for
configuration keys and ``"svc"`` for service instances. A *sibling* is one
concurrent value of a key together with the hybrid-logical-clock timestamp of
the write that created it and its idempotency key, if it had one (siblings
with the same key are attempts of one write: reads show one of them); the
dot that names it is held by the dot store.

On the wire a version vector is a tuple of ``(actor, counter)`` pairs sorted by
actor with no zero counters (``WireVV``): one value, one encoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

Actor = str
Dot = tuple[str, int]
VV = dict[str, int]
WireVV = tuple[tuple[str, int], ...]
Key = tuple[str, str, str]
KV_SPACE = "kv"
SVC_SPACE = "svc"


class Sibling(NamedTuple):
    value: bytes
    hlc: int
    #: the idempotency key of the write that created it (None: none given)
    idem: str | None = None


__all__ = [
    "KV_SPACE",
    "SVC_SPACE",
    "VV",
    "Actor",
    "Dot",
    "Key",
    "Sibling",
    "WireVV",
    "vv_covers",
    "vv_from_wire",
    "vv_join",
    "vv_join_into",
    "vv_leq",
    "vv_missing",
    "vv_of_dots",
    "vv_to_wire",
]


def vv_covers(vv: Mapping[str, int], dot: Dot) -> bool:
    """True iff ``dot`` is in the set ``vv`` stands for."""
    return vv.get(dot[0], 0) >= dot[1]


def vv_leq(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True iff every dot in ``a`` is in ``b`` (``a`` is in the causal past of ``b``)."""
    return all(b.get(actor, 0) >= n for actor, n in a.items())


def vv_join(a: Mapping[str, int], b: Mapping[str, int]) -> VV:
    """The pointwise maximum (least upper bound)."""
    out = dict(a)
    vv_join_into(out, b)
    return out


def vv_join_into(target: VV, other: Mapping[str, int]) -> bool:
    """``target := target ⊔ other`` in place; returns True if ``target`` grew."""
    grew = False
    for actor, n in other.items():
        if n > target.get(actor, 0):
            target[actor] = n
            grew = True
    return grew


def vv_missing(want: Mapping[str, int], have: Mapping[str, int]) -> VV:
    """The entries of ``want`` that ``have`` does not cover (empty iff ``want <= have``)."""
    return {a: n for a, n in want.items() if have.get(a, 0) < n}


def vv_of_dots(dots: Iterable[Dot]) -> VV:
    """The smallest version vector containing every dot (per actor, the highest counter)."""
    out: VV = {}
    for actor, n in dots:
        if n > out.get(actor, 0):
            out[actor] = n
    return out


def vv_to_wire(vv: Mapping[str, int]) -> WireVV:
    return tuple(sorted((a, n) for a, n in vv.items() if n > 0))


def vv_from_wire(wire: WireVV) -> VV:
    return dict(wire)

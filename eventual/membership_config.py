"""What one SWIM/Lifeguard member is given, and the protocol's arithmetic.

``MembershipConfig`` holds timing (local seconds) and sizing; ``Rng`` is the
injected random source; ``MembershipBugs`` are the planted defects the
simulation tests must catch. The three functions are Lifeguard's suspicion
timeout (Dadgar et al. 2018, §4.2) and SWIM's retransmission limit (λ·log N,
Das et al. 2002, §4.1), kept pure so tests can check them by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "MembershipBugs",
    "MembershipConfig",
    "Rng",
    "retransmit_limit",
    "suspicion_bounds",
    "suspicion_timeout",
]


class Rng(Protocol):
    """The part of ``random.Random`` membership uses (injected, never imported)."""

    def random(self) -> float: ...

    def randrange(self, stop: int, /) -> int: ...

    def shuffle(self, x: list[Any], /) -> None: ...


@dataclass(frozen=True)
class MembershipBugs:
    """Deliberate defects, all off in production, so tests can show the checkers fail."""

    #: a member told it is suspect or dead never refutes
    no_refutation: bool = False
    #: a failed direct probe goes straight to suspicion (no PingReq)
    no_indirect_probes: bool = False

    def any(self) -> bool:
        return any(vars(self).values())


@dataclass(frozen=True)
class MembershipConfig:
    """Timing (local seconds) and sizing; names and defaults follow the papers and memberlist's LAN profile."""

    node_id: str
    address: str
    #: unique per process start (e.g. a uuid4): distinguishes a restart of the same id
    generation: str
    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    #: k: members asked to probe indirectly
    indirect_checks: int = 3
    #: α and β of Lifeguard's suspicion timeout
    suspicion_alpha: float = 4.0
    suspicion_beta: float = 6.0
    #: K: independent confirmations that shrink the suspicion timeout to its minimum
    suspicion_k: int = 3
    #: False: ignore confirmations, every suspicion lasts the maximum (SWIM without Lifeguard)
    suspicion_confirmations: bool = True
    #: λ: each update is piggybacked λ·ceil(log10(N + 1)) times
    retransmit_mult: int = 4
    max_piggyback: int = 8
    max_health: int = 8
    #: an indirect prober sends its Nack after this fraction of probe_timeout
    nack_fraction: float = 0.8
    push_pull_interval: float = 30.0
    reconnect_interval: float = 10.0
    join_retry_interval: float = 1.0
    #: dead and left members are forgotten this long after their last change
    reap_after: float = 3600.0
    bugs: MembershipBugs = field(default_factory=MembershipBugs)

    def __post_init__(self) -> None:
        if not 0 < self.probe_timeout < self.probe_interval:
            raise ValueError("need 0 < probe_timeout < probe_interval")
        if not 0 < self.nack_fraction < 1:
            raise ValueError("nack_fraction must be in (0, 1)")
        if self.suspicion_alpha <= 0 or self.suspicion_beta < 1:
            raise ValueError("need suspicion_alpha > 0 and suspicion_beta >= 1")
        if min(self.indirect_checks, self.suspicion_k, self.max_health) < 0:
            raise ValueError("indirect_checks, suspicion_k and max_health must be >= 0")
        if self.retransmit_mult < 1 or self.max_piggyback < 1:
            raise ValueError("retransmit_mult and max_piggyback must be >= 1")


def suspicion_bounds(n: int, config: MembershipConfig) -> tuple[float, float]:
    """Lifeguard's (min, max) suspicion timeout for a cluster of ``n`` live members."""
    low = config.suspicion_alpha * max(1.0, math.log10(max(1, n))) * config.probe_interval
    return low, config.suspicion_beta * low


def suspicion_timeout(low: float, high: float, k: int, confirmations: int) -> float:
    """``max(low, high - (high - low)·log(C + 1)/log(K + 1))``; ``low`` when K < 1."""
    if k < 1:
        return low
    return max(low, high - (high - low) * math.log(confirmations + 1) / math.log(k + 1))


def retransmit_limit(n: int, mult: int) -> int:
    """How many times one update is piggybacked in a cluster of ``n`` live members."""
    return mult * max(1, math.ceil(math.log10(n + 1)))

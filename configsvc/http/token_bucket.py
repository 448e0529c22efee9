"""Token buckets: a request rate limit per client, pure (``now`` is an argument).

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; a
request takes one token, or is refused with the seconds until one is there.

Invariants:

1. Tokens never exceed ``burst`` and never go below 0; a refused request takes
   nothing.
2. Over any interval of length T a client is admitted at most
   ``burst + rate * T`` times.
3. ``retry_after`` is exact: taking at ``now + retry_after`` succeeds (if no
   other request took the token meanwhile).
4. Time going backwards (a clock step) adds no tokens.
5. ``Buckets`` holds at most ``max_clients`` buckets: when full it forgets the
   buckets that refilled completely (a full bucket and no bucket are the same
   thing), then, if still full, the least recently used one, which can only
   favour that client, never starve another.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        """A bucket holding ``burst`` tokens. Raises ValueError if rate or burst is not positive."""
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        return cls(rate, burst, burst, now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class Buckets:
    """One ``TokenBucket`` per client key, at most ``max_clients`` of them."""

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000) -> None:
        TokenBucket.full(rate, burst, 0.0)  # raises ValueError for a bad rate or burst
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """Take one of ``key``'s tokens: 0.0 if taken, else the seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            bucket = self._buckets[key] = TokenBucket.full(self.rate, self.burst, now)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    def _evict(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
        while len(self._buckets) >= self.max_clients:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)

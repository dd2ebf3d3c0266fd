"""Per-source token buckets (per replica): sustained rate with a burst of two seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float
    capacity: float
    tokens: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.capacity

    def take(self, n: int, now: float | None = None) -> float:
        """Take n tokens: 0.0 when allowed, else the seconds until they would be.

        A full bucket lets a request larger than its capacity through (and goes into
        debt), so a small limit never refuses a legal batch forever.
        """
        now = time.monotonic() if now is None else now
        self.tokens, self.updated = self._refilled(now), now
        if self.tokens >= n or self.tokens >= self.capacity:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate

    def _refilled(self, now: float) -> float:
        return min(self.capacity, self.tokens + (now - self.updated) * self.rate)

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until one token can be taken (0.0: now), taking none."""
        tokens = self._refilled(time.monotonic() if now is None else now)
        return 0.0 if tokens >= 1 or tokens >= self.capacity else (1 - tokens) / self.rate


class RateLimiter:
    def __init__(self, default_rate: float) -> None:
        self._default = default_rate
        self._buckets: dict[int, TokenBucket] = {}

    def take(self, source_id: int, rate: float | None, n: int) -> float:
        rate = rate or self._default
        bucket = self._buckets.get(source_id)
        if bucket is None or bucket.rate != rate:
            bucket = self._buckets[source_id] = TokenBucket(rate, capacity=2 * rate)
        return bucket.take(n)


class Pacer:
    """Turns per key (a delivery channel), so that each stays under its rate."""

    def __init__(self, rates: dict[str, float], default: float) -> None:
        self._buckets = {
            key: TokenBucket(rate, capacity=max(1.0, rate)) for key, rate in rates.items()
        }
        self._default = default

    def _bucket(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(
                self._default, capacity=max(1.0, self._default)
            )
        return bucket

    def ready(self, key: str) -> bool:
        """Take the key's turn now if it has one (True), without waiting."""
        return self._bucket(key).take(1) == 0

    def delay(self, key: str) -> float:
        """Seconds until the key's next turn (0.0: it has one now), taking none."""
        return self._bucket(key).wait_time()

    def rate(self, key: str) -> float:
        return self._bucket(key).rate

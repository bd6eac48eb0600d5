"""Pure pacing: a token bucket, a log throttle and a backoff delay, for whoever needs to space
things out (client limits, log lines, upstream and Redis reconnects).

No clock here: every method that needs the time takes ``now`` (monotonic seconds), and the
backoff takes its random source. No locks (each user keeps its own); nothing to close.
"""

from __future__ import annotations

import random

__all__ = ["Throttle", "TokenBucket", "backoff"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, n: float = 1) -> bool:
        """Spend ``n`` tokens if there are that many; False (and nothing spent) otherwise. A
        cost above ``burst`` is allowed once the bucket is full, leaving it in debt."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= min(n, self.burst):
            self._tokens -= n
            return True
        return False


class Throttle:
    """At most one report per ``interval`` seconds per key; counts what it held back."""

    __slots__ = ("_last", "_suppressed", "interval")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def ready(self, key: str, now: float) -> int | None:
        """None: stay quiet (counted); otherwise report now, with this many held back since."""
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._suppressed.pop(key, 0)


def backoff(attempt: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter: uniform in [d/2, d], d = min(max, initial * 2**n)."""
    delay = min(maximum, initial * (2 ** min(attempt, 32)))
    return rng.uniform(delay / 2, delay)

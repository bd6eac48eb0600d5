"""Small limiters: a token bucket, a log throttle, and a per-address connection count. Pure.

No clock here: every method that needs the time takes ``now`` (monotonic seconds). Used from the
event loop only (no locks); nothing to close.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


class PerAddress:
    """Open connections per client address, capped at ``limit`` (0: no cap)."""

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextmanager
    def admit(self, address: str) -> Iterator[bool]:
        """Hold one slot of ``address`` for the ``with`` block; yields False (and holds nothing)
        when the address already has ``limit`` connections open."""
        if self.limit and self._open.get(address, 0) >= self.limit:
            yield False
            return
        self._open[address] = self._open.get(address, 0) + 1
        try:
            yield True
        finally:
            left = self._open[address] - 1
            if left:
                self._open[address] = left
            else:
                del self._open[address]

    def count(self, address: str) -> int:
        return self._open.get(address, 0)

"""How often the backplane may do something that an outside writer could make it repeat: log a
refused entry (per kind), re-snapshot every client. Pure: the caller passes ``time.monotonic()``.

An edge fed garbage must stay cheap: at most one log line per kind per :attr:`Quiet.period`
(saying how many were held back), and at most one re-snapshot per :attr:`Pace.period`.
Owns nothing to close.
"""

from __future__ import annotations

import math

__all__ = ["Pace", "Quiet"]


class Pace:
    """At most one event per ``period`` seconds; the first one at once."""

    __slots__ = ("_next", "period")

    def __init__(self, period: float) -> None:
        self.period = period
        self._next = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until the next event may happen (0: now)."""
        return max(0.0, self._next - now)

    def take(self, now: float) -> None:
        """An event happened at ``now``."""
        self._next = now + self.period


class Quiet:
    """Which log lines of a repeated kind to write: one per kind per ``period`` seconds."""

    __slots__ = ("_held", "_next", "period")

    def __init__(self, period: float = 1.0) -> None:
        self.period = period
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str, now: float) -> int | None:
        """``None``: hold this line back; else write it, adding how many of this kind were held
        back since the last one written."""
        if now < self._next.get(kind, -math.inf):
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._next[kind] = now + self.period
        return self._held.pop(kind, 0)

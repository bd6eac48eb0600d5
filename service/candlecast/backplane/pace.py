"""How often the backplane may do something that an outside writer, or an outage, could make it
repeat: log a refused entry (per kind), re-snapshot every client, retry a failed Redis call.
Pure: the caller passes ``time.monotonic()`` or its random source.

An edge fed garbage must stay cheap: at most one log line per kind per :attr:`Quiet.period`
(saying how many were held back), and at most one re-snapshot per :attr:`Pace.period`.

Redis retries (:func:`retry_delay`): Redis is the deployment's own component, next to the ingest
and the edges, not a remote broker, so a failed call is retried soon enough that the backplane is
live again within :data:`RETRY_MAX` (plus round trips) of Redis answering, however long it was
away; ``--reconnect-min``/``--reconnect-max`` pace the broker only. The rate stays bounded (once
an outage lasts, at most one try per ``RETRY_MAX / 2`` per link), and the jitter, drawn by each
link from its own random source, spreads a fleet of edges over that window instead of having
them reconnect in step. Owns nothing to close.
"""

from __future__ import annotations

import math
import random
from typing import Final

from ..model.pacing import backoff

__all__ = ["RETRY_MAX", "RETRY_MIN", "Pace", "Quiet", "retry_delay"]

#: The first retry after a failed Redis call waits about this long (jittered)...
RETRY_MIN: Final = 0.05
#: ...and no retry longer than this, however long Redis stays away.
RETRY_MAX: Final = 0.25


def retry_delay(failures: int, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` (>= 1) failed Redis calls in a row: capped exponential
    with jitter, uniform in ``[d/2, d]``, ``d = min(RETRY_MAX, RETRY_MIN * 2**(failures-1))``."""
    return backoff(max(0, failures - 1), initial=RETRY_MIN, maximum=RETRY_MAX, rng=rng)


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

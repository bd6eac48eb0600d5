"""The REST client's pacing, pure: when the next request to the broker may go.

:class:`Pacer` keeps one :class:`~candlecast.model.pacing.TokenBucket` per declared
:class:`~candlecast.formats.contract.Rate` (its key: requests of equal rates share a budget) and
the *hold* every request waits out after a limit signal. :func:`hold_for` is the one rule that
turns an answer's signals (the format's, ``Retry-After``, the status) into that hold.

A bucket holds one token and refills at :data:`HEADROOM` times the declared rate, so two requests
of one rate are at least ``window / requests / HEADROOM`` seconds apart: any ``window`` seconds
(of send times) hold at most ``requests`` of them, with room for the network's jitter (the
exchanges advise against running at the edge of their limits). No clock here: every method takes
``now`` (monotonic seconds); the client does the waiting. Used in the event loop only; nothing
to close.
"""

from __future__ import annotations

from typing import Final

from ..formats.contract import Rate
from ..model.pacing import TokenBucket

__all__ = ["DEFAULT_HOLD", "HEADROOM", "MAX_HOLD", "Pacer", "hold_for", "spacing"]

#: The share of a declared rate the client uses.
HEADROOM: Final = 0.9
#: The hold after a 429/418 that says nothing of how long (no ``Retry-After``, no format signal).
DEFAULT_HOLD: Final = 60.0
#: The longest hold honoured (seconds); a longer one is capped.
MAX_HOLD: Final = 3600.0


def spacing(rate: Rate) -> float:
    """Seconds between two requests of ``rate``: its window over its requests, with headroom."""
    return rate.window / rate.requests / HEADROOM


def hold_for(status: int, signal: float | None, retry_after: float | None) -> float | None:
    """Seconds to hold every request after an answer, or ``None`` when it is no limit answer.

    ``signal`` is the format's (:func:`~candlecast.formats.contract.limited_of`), ``retry_after``
    the answer's ``Retry-After``. A 429 or 418 is always a limit answer: the longer of the two,
    or :data:`DEFAULT_HOLD` when neither says; any other status is one when the format says so."""
    if status in (418, 429):
        known = [s for s in (signal, retry_after) if s is not None]
        hold = max(known) if known else DEFAULT_HOLD
    elif signal is not None:
        hold = signal
    else:
        return None
    return min(MAX_HOLD, max(0.0, hold))


class Pacer:
    """The rates and the hold of one exchange (one :class:`~candlecast.history.client.RestClient`)."""

    __slots__ = ("_buckets", "_last", "resume_at")

    def __init__(self) -> None:
        self._buckets: dict[Rate, TokenBucket] = {}
        self._last: dict[Rate, float] = {}  # when each bucket last gave a slot
        #: No request before this (monotonic seconds): the end of the current hold.
        self.resume_at = float("-inf")

    def hold(self, seconds: float, now: float) -> bool:
        """Hold every request for ``seconds`` from ``now`` (a hold under way is only ever
        lengthened); True when no hold was under way (the caller logs that one)."""
        fresh = now >= self.resume_at
        self.resume_at = max(self.resume_at, now + seconds)
        return fresh

    def wait(self, rate: Rate, now: float) -> float:
        """0.0: a request of ``rate`` may go now (its slot is taken); otherwise the seconds to
        wait before asking again (the end of the hold, or the next slot of the rate)."""
        if now < self.resume_at:
            return self.resume_at - now
        gap = spacing(rate)
        bucket = self._buckets.get(rate)
        if bucket is None:
            bucket = self._buckets[rate] = TokenBucket(1 / gap, 1, now)
        if bucket.take(now):
            self._last[rate] = now
            return 0.0
        return max(self._last[rate] + gap - now, gap / 1000)

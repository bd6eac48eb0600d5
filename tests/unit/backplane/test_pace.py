"""The backplane's pacing: re-snapshots, quiet log lines (time passed in) and Redis retries
(random source passed in)."""

from __future__ import annotations

import random

from candlecast.backplane.pace import RETRY_MAX, RETRY_MIN, Pace, Quiet, retry_delay


def test_pace_allows_one_event_per_period_the_first_at_once() -> None:
    """Re-snapshots: at once, then not before the period has passed."""
    pace = Pace(1.0)
    assert pace.wait(100.0) == 0.0
    pace.take(100.0)
    assert pace.wait(100.25) == 0.75 and pace.wait(101.0) == 0.0


def test_quiet_writes_one_line_per_kind_per_period_and_counts_the_rest() -> None:
    """Log lines of one kind: the first, then one a period saying how many were held back."""
    quiet = Quiet(1.0)
    assert quiet.allow("symbol", 0.0) == 0
    assert quiet.allow("symbol", 0.1) is None and quiet.allow("symbol", 0.2) is None
    assert quiet.allow("foreign", 0.3) == 0  # another kind has its own budget
    assert quiet.allow("symbol", 1.0) == 2


def test_redis_retries_start_short_and_never_wait_longer_than_the_cap() -> None:
    """However long Redis stays away, the next try is at most RETRY_MAX away (the broker's
    --reconnect-max plays no part), and never sooner than half the step: a bounded rate."""
    rng = random.Random(7)
    first = [retry_delay(1, rng) for _ in range(200)]
    assert all(RETRY_MIN / 2 <= d <= RETRY_MIN for d in first)
    for failures in (5, 50, 10_000):
        delays = [retry_delay(failures, rng) for _ in range(200)]
        assert all(RETRY_MAX / 2 <= d <= RETRY_MAX for d in delays), failures


def test_redis_retries_of_many_links_are_spread_not_in_step() -> None:
    """A hundred edges that failed together (each link has its own random source) retry over
    the whole window, not at one instant: no thundering herd when Redis comes back."""
    delays = sorted(retry_delay(20, random.Random(seed)) for seed in range(100))
    assert delays[-1] - delays[0] > RETRY_MAX / 4
    assert len({round(d, 4) for d in delays}) > 90

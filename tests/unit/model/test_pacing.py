"""The token bucket, the log throttle and the reconnect backoff; time passed in (pure)."""

from __future__ import annotations

import random

from candlecast.model.pacing import Throttle, TokenBucket, backoff


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    """Full at start (burst), then one token per 1/rate seconds."""
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_throttle_reports_once_per_interval_with_what_it_held_back() -> None:
    """One report per key per interval; the next one says how many were held back."""
    t = Throttle(1.0)
    assert t.ready("a", 0.0) == 0
    assert t.ready("a", 0.5) is None
    assert t.ready("b", 0.5) == 0
    assert t.ready("a", 0.9) is None
    assert t.ready("a", 1.0) == 2


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    delays = [backoff(n, initial=0.5, maximum=30.0, rng=rng) for n in range(12)]
    for n, d in enumerate(delays):
        cap = min(30.0, 0.5 * 2**n)
        assert cap / 2 <= d <= cap
    assert max(delays) <= 30.0
    assert backoff(10_000, initial=0.5, maximum=30.0, rng=rng) <= 30.0

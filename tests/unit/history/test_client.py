"""The REST client's pure parts: Retry-After."""

from __future__ import annotations

from candlecast.history.client import retry_after


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After is delta-seconds or an HTTP date; capped, never negative."""
    assert retry_after("2", 0.0) == 2.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("10000", 0.0) == 600.0
    assert retry_after("soon", 0.0) is None
    assert retry_after(None, 0.0) is None

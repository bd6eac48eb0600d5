"""The backplane's pacing: re-snapshots and quiet log lines (time passed in)."""

from __future__ import annotations

from candlecast.backplane.pace import Pace, Quiet


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

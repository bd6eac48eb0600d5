"""The gap watch: where a reconnect left a hole in a symbol's live bars (pure)."""

from __future__ import annotations

from candlecast.history.gaps import Gap, GapWatch
from candlecast.model.candle import Candle


def bar(symbol: str, ot: int) -> Candle:
    return Candle(symbol, ot, ot, 1.0, 1.0, 1.0, 1.0)


def test_gap_watch_reports_the_hole_a_new_connection_reveals_and_notes_the_first_live_bar() -> None:
    watch = GapWatch()
    assert watch.see(bar("A", 60), 1) is None
    assert watch.see(bar("A", 120), 1) is None
    assert watch.see(bar("B", 60), 1) is None
    assert watch.first_live == {"A": 60, "B": 60}
    assert watch.see(bar("A", 300), 2) == Gap("A", 120, 300)  # the first bar after the reconnect
    assert watch.see(bar("A", 360), 2) is None
    assert watch.see(bar("B", 60), 2) is None  # the same bar again: nothing missing
    assert watch.first_live == {"A": 60, "B": 60}

"""What of a REST answer's page to trust (pure)."""

from __future__ import annotations

from candlecast.formats.binance import BinanceHistory
from candlecast.history.pages import check_page
from candlecast.model.candle import Candle
from candlecast.model.intervals import parse_interval

M1 = parse_interval("1m")


def test_check_page_skips_out_of_order_and_disagreeing_bars() -> None:
    """A duplicate or older bar is ``order``; another symbol or an off-grid open time ``disagree``."""
    bars = BinanceHistory().parse("BTCUSDT", M1, [[60_000 * k, "1", "2", "0.5", "1.5", "3", 0] for k in (1, 2, 2, 1)])
    other = Candle("ETHUSDT", 0, 240_000, 1, 2, 0.5, 1.5)
    off = Candle("BTCUSDT", 0, 300_001, 1, 2, 0.5, 1.5)
    kept, rejected = check_page([*bars, other, off], "BTCUSDT", M1)
    assert [c.ot for c in kept] == [60_000, 120_000]
    assert rejected == ["order", "order", "disagree", "disagree"]

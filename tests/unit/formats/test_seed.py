"""The seed format: the simulator's own message shape (pure, table-like)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from candlecast.formats.seed import parse_seed
from candlecast.model.candle import (
    Candle,
    MalformedMessage,
)


def test_seed_maps_c_before_h_and_l() -> None:
    """The seed bar is [ot, o, c, h, l]: close comes before high and low."""
    msg = {"symbol": "EURUSD", "time": 1_700_000_000_500, "candles": [1_700_000_000_000, 1.1, 1.2, 1.3, 1.0]}
    assert parse_seed(msg) == [Candle("EURUSD", 1_700_000_000_500, 1_700_000_000_000, 1.1, 1.3, 1.0, 1.2)]


def test_seed_passes_times_through_unchanged() -> None:
    [c] = parse_seed({"symbol": "X", "time": 17.5, "candles": [3, 1, 1, 1, 1]})
    assert (c.t, c.ot) == (17.5, 3)


def test_seed_without_candles_is_not_a_candle() -> None:
    assert parse_seed({"type": "heartbeat"}) == []


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ({"symbol": "X", "time": 1, "candles": [1, "1.0", 1, 1, 1]}, "type"),
        ({"symbol": "X", "time": 1, "candles": [1, True, 1, 1, 1]}, "type"),
        ({"symbol": "X", "time": 1, "candles": [1, 1, 1, 1]}, "shape"),
        ({"symbol": "X", "candles": [1, 1, 1, 1, 1]}, "shape"),
        ({"symbol": "X", "time": 1, "candles": {"o": 1}}, "shape"),
        ({"symbol": 5, "time": 1, "candles": [1, 1, 1, 1, 1]}, "symbol"),
        ({"symbol": "", "time": 1, "candles": [1, 1, 1, 1, 1]}, "symbol"),
        ({"symbol": "A\nB", "time": 1, "candles": [1, 1, 1, 1, 1]}, "symbol"),
        ({"symbol": "X" * 33, "time": 1, "candles": [1, 1, 1, 1, 1]}, "symbol"),
        ({"symbol": "X", "time": 1, "candles": [1, 1, 1, 0.5, 0.9]}, "ohlc"),  # high below open
        ({"symbol": "X", "time": 1, "candles": [1, 1, 1, 2, 1.5]}, "ohlc"),  # low above open
        ({"symbol": "X", "time": 1, "candles": [1, math.nan, 1, 1, 1]}, "nonfinite"),
        ({"symbol": "X", "time": "1", "candles": [1, 1, 1, 1, 1]}, "type"),
        ([1, 2, 3], "shape"),
    ],
)
def test_seed_rejects_malformed_with_a_reason(msg: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse_seed(msg)
    assert exc.value.reason == reason
    assert exc.value.detail

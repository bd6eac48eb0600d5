"""The candle format: candlecast's own wire encoding read back as input."""

from __future__ import annotations

from candlecast.formats.candle import parse_candle
from candlecast.model.candle import (
    Candle,
    encode,
    parse,
)


def test_candle_format_round_trips_the_wire_encoding() -> None:
    c = Candle("ETHUSD", 2, 1, 10.0, 12.0, 9.0, 11.0, 3.5)
    assert parse(parse_candle, encode(c)) == [c]
    no_volume = Candle("ETHUSD", 2, 1, 10.0, 12.0, 9.0, 11.0)
    assert parse(parse_candle, encode(no_volume)) == [no_volume]

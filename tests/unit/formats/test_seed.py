"""Upstream formats and the candle encoding: pure, table-like."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest

from candlecast.formats.binance import parse_binance
from candlecast.formats.candle import parse_candle
from candlecast.formats.seed import parse_seed
from candlecast.model.candle import (
    MAX_MESSAGE_BYTES,
    Candle,
    MalformedMessage,
    encode,
    parse,
)

# Binance's documented example, with one change: its "o" of 0.0010 lies below its low of 0.0015
# (an impossible bar, which candlecast rejects); 0.0016 makes it valid.
KLINE: dict[str, Any] = {
    "e": "kline",
    "E": 1_700_000_000_123,
    "s": "BNBBTC",
    "k": {
        "t": 1_700_000_000_000, "T": 1_700_000_059_999, "s": "BNBBTC", "i": "1m", "f": 100, "L": 200,
        "o": "0.0016", "c": "0.0020", "h": "0.0025", "l": "0.0015", "v": "1000", "n": 100, "x": False,
        "q": "1.0000", "V": "500", "Q": "0.500", "B": "123456",
    },
}  # fmt: skip


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


def test_binance_raw_kline_uses_k_t_and_string_prices() -> None:
    assert parse_binance(KLINE) == [
        Candle("BNBBTC", 1_700_000_000_123, 1_700_000_000_000, 0.0016, 0.0025, 0.0015, 0.002, 1000.0)
    ]


def test_binance_combined_stream_is_unwrapped() -> None:
    assert parse_binance({"stream": "bnbbtc@kline_1m", "data": KLINE}) == parse_binance(KLINE)


@pytest.mark.parametrize("msg", [{"result": None, "id": 1}, {"e": "serverShutdown", "E": 1}, {"e": "trade"}])
def test_binance_non_kline_events_are_not_candles(msg: Any) -> None:
    assert parse_binance(msg) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"o": "abc"}, "type"), ({"h": "NaN"}, "nonfinite"), ({"c": "inf"}, "nonfinite"), ({"l": "0.5"}, "ohlc")],
)
def test_binance_rejects_bad_prices(change: dict[str, str], reason: str) -> None:
    msg = {**KLINE, "k": {**KLINE["k"], **change}}
    with pytest.raises(MalformedMessage) as exc:
        parse_binance(msg)
    assert exc.value.reason == reason


def test_binance_documented_example_is_rejected_as_impossible() -> None:
    """The docs' own example has open 0.0010 below low 0.0015: counted, never repaired."""
    with pytest.raises(MalformedMessage) as exc:
        parse_binance({**KLINE, "k": {**KLINE["k"], "o": "0.0010"}})
    assert exc.value.reason == "ohlc"


def test_binance_missing_field_is_a_shape_error() -> None:
    k = dict(KLINE["k"])
    del k["t"]
    with pytest.raises(MalformedMessage) as exc:
        parse_binance({**KLINE, "k": k})
    assert exc.value.reason == "shape"


def test_candle_format_round_trips_the_wire_encoding() -> None:
    c = Candle("ETHUSD", 2, 1, 10.0, 12.0, 9.0, 11.0, 3.5)
    assert parse(parse_candle, encode(c)) == [c]
    no_volume = Candle("ETHUSD", 2, 1, 10.0, 12.0, 9.0, 11.0)
    assert parse(parse_candle, encode(no_volume)) == [no_volume]


def test_encode_keeps_wire_key_order_and_omits_unknown_volume() -> None:
    assert encode(Candle("A", 2, 1, 1.0, 2.0, 0.5, 1.5)) == b'{"s":"A","t":2,"ot":1,"o":1.0,"h":2.0,"l":0.5,"c":1.5}'
    assert list(orjson.loads(encode(Candle("A", 2, 1, 1.0, 2.0, 0.5, 1.5, 7.0)))) == [
        "s", "t", "ot", "o", "h", "l", "c", "v",
    ]  # fmt: skip


def test_parse_rejects_bad_json_and_oversize() -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse(parse_seed, b"{nope")
    assert exc.value.reason == "json"
    with pytest.raises(MalformedMessage) as exc:
        parse(parse_seed, b" " * (MAX_MESSAGE_BYTES + 1))
    assert exc.value.reason == "oversize"

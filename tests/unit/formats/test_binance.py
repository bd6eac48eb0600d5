"""The Binance format, both halves: the stream's kline events, and the REST half (streams read from the
upstream URL and subscribe message, the requests built, the documented sample answer parsed).

The sample answer is the one Binance's API documentation shows ("Kline/Candlestick data",
GET /api/v3/klines).
"""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.formats.binance import BinanceHistory, parse_binance
from candlecast.formats.contract import Request, Wanted
from candlecast.model.candle import (
    Candle,
    MalformedMessage,
)
from candlecast.model.intervals import parse_interval

# -- the stream half -------------------------------------------------------------------------------


# Binance's documented example, with one change: its "o" of 0.0010 lies below its low of 0.0015
# (an impossible bar, which candlecast rejects); 0.0016 makes it valid.
KLINE: dict[str, Any] = {
    "e": "kline",
    "E": 1_700_000_000_123,
    "s": "BNBBTC",
    "k": {
        "t": 1_700_000_000_000,
        "T": 1_700_000_059_999,
        "s": "BNBBTC",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "0.0016",
        "c": "0.0020",
        "h": "0.0025",
        "l": "0.0015",
        "v": "1000",
        "n": 100,
        "x": False,
        "q": "1.0000",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    },
}


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


# -- the history half ------------------------------------------------------------------------------


M1 = parse_interval("1m")


H1 = parse_interval("1h")


D1 = parse_interval("1d")


BINANCE_SAMPLE = [
    [
        1499040000000,
        "0.01634790",
        "0.80000000",
        "0.01575800",
        "0.01577100",
        "148976.11427815",
        1499644799999,
        "2434.19055334",
        308,
        "1756.87402397",
        "28.46694368",
        "0",
    ]
]


def test_binance_streams_come_from_the_url_and_the_subscribe_message() -> None:
    half = BinanceHistory()
    url = "wss://stream.binance.com:9443/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m/btcusdt@trade"
    assert half.streams(url, None) == [Wanted("BTCUSDT", "1m"), Wanted("ETHUSDT", "1m")]
    assert half.streams("wss://stream.binance.com:9443/ws/bnbbtc@kline_5m", None) == [Wanted("BNBBTC", "5m")]
    sub = {"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m", "btcusdt@depth"], "id": 1}
    assert half.streams("wss://stream.binance.com:9443/ws", sub) == [Wanted("BTCUSDT", "1m")]


def test_binance_request_asks_klines_by_start_end_and_limit() -> None:
    half = BinanceHistory()
    assert half.request("BTCUSDT", M1, start=None, end=None, limit=40, upstream="") == Request(
        "/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "40"}
    )
    paged = half.request("BTCUSDT", H1, start=1000, end=2000, limit=5000, upstream="")
    assert paged.params == {
        "symbol": "BTCUSDT",
        "interval": "1h",
        "limit": "1000",
        "startTime": "1000",
        "endTime": "2000",
    }
    assert half.serves(D1) and not half.serves(parse_interval("10m"))


def test_binance_parses_the_documented_sample() -> None:
    """The docs' sample kline: open time, o, h, l, c, volume; t is the bar's last millisecond."""
    (c,) = BinanceHistory().parse("BNBBTC", D1, BINANCE_SAMPLE)
    assert c == Candle(
        "BNBBTC", 1499040000000 + 86_400_000 - 1, 1499040000000, 0.0163479, 0.8, 0.015758, 0.015771, 148976.11427815
    )


def test_binance_malformed_answers_raise() -> None:
    half = BinanceHistory()
    with pytest.raises(MalformedMessage) as exc:
        half.parse("X", M1, {"code": -1121, "msg": "Invalid symbol."})
    assert exc.value.reason == "shape"
    with pytest.raises(MalformedMessage, match="ohlc"):
        half.parse("X", M1, [[0, "1", "0.5", "0.4", "1", "1"]])
    with pytest.raises(MalformedMessage) as exc:
        half.parse("X", M1, [["0", "1"]])
    assert exc.value.reason == "shape"


def test_binance_pauses_near_the_weight_limit() -> None:
    half = BinanceHistory()
    assert half.pause(200, {"x-mbx-used-weight-1m": "10"}, 30_000) == 0.0
    assert half.pause(200, {"x-mbx-used-weight-1m": "5900"}, 45_000) == 15.0

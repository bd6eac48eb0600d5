"""The Binance format, both halves: the stream's kline events, and the REST half (streams read from the
upstream URL and subscribe message, the requests built, the documented sample answer parsed).

Samples, from Binance's spot API documentation (developers.binance.com/docs/binance-spot-api-docs,
the same text as github.com/binance/binance-spot-api-docs):
- the kline event: web-socket-streams.md, "Kline/Candlestick Streams" (one change, see KLINE);
- the error replies: web-socket-streams.md, "Error Messages" (verbatim, ``%s`` filled in);
- microsecond times: web-socket-streams.md, "General WSS information" says every time field is in
  microseconds with ``timeUnit=MICROSECOND`` in the URL, and shows no such event: KLINE_US is
  reconstructed from KLINE, each time times 1,000 (the sub-millisecond digits made up);
- the REST answer: rest-api.md, "Kline/Candlestick data" (GET /api/v3/klines).
"""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.formats.binance import BinanceHistory, parse_binance
from candlecast.formats.contract import Rate, Request, Wanted
from candlecast.history.pages import check_page
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


#: web-socket-streams.md, "Error Messages": the replies to a request Binance refuses.
BINANCE_ERRORS: list[dict[str, Any]] = [
    {"code": 0, "msg": "Unknown property", "id": 1},
    {"code": 1, "msg": "Invalid value type: expected Boolean"},
    {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"},
    {
        "code": 2,
        "msg": "Invalid request: unknown variant SUBSCRIBEX, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, "
        "`LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 28",
    },
    {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"},
]


@pytest.mark.parametrize("msg", BINANCE_ERRORS)
def test_binance_documented_error_replies_are_refused(msg: dict[str, Any]) -> None:
    """A refused request raises ``refused`` (counted), as bybit's, okx's and kraken's do."""
    with pytest.raises(MalformedMessage) as exc:
        parse_binance(msg)
    assert exc.value.reason == "refused"
    assert repr(msg["msg"])[:40] in exc.value.detail


def test_binance_error_reply_wrapped_in_error_is_refused_too() -> None:
    """What the servers were seen sending (not in the docs): the same error under ``error``, as
    logged in github.com/ctubio/Krypto-trading-bot/issues/1121."""
    msg = {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 2}
    with pytest.raises(MalformedMessage) as exc:
        parse_binance(msg)
    assert exc.value.reason == "refused" and "invalid stream" in exc.value.detail


# Reconstructed (see the module docstring): KLINE as a timeUnit=MICROSECOND stream sends it.
KLINE_US: dict[str, Any] = {
    **KLINE,
    "E": 1_700_000_000_123_456,
    "k": {**KLINE["k"], "t": 1_700_000_000_000_000, "T": 1_700_000_059_999_999},
}


def test_binance_microsecond_times_become_milliseconds() -> None:
    """timeUnit=MICROSECOND: ``t`` and ``ot`` arrive in µs and leave in ms (truncated), the same
    candle as the millisecond stream's, raw or combined."""
    (us,) = parse_binance(KLINE_US)
    assert (us.t, us.ot) == (1_700_000_000_123, 1_700_000_000_000)
    assert [us] == parse_binance(KLINE) == parse_binance({"stream": "bnbbtc@kline_1m", "data": KLINE_US})


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


def test_binance_documented_row_is_a_monday_week_bar_on_the_1w_grid() -> None:
    """The docs' row closes 7 days less 1 ms after it opens (1499644799999): a 1w bar opening on
    Monday 2017-07-03; parsed as 1w its ``t`` is that close time, and the page check keeps it
    (it was rejected as ``disagree`` while weeks counted from the epoch's Thursday)."""
    week = parse_interval("1w")
    bars = BinanceHistory().parse("BNBBTC", week, BINANCE_SAMPLE)
    assert [(c.ot, c.t) for c in bars] == [(1499040000000, BINANCE_SAMPLE[0][6])]
    assert check_page(bars, "BNBBTC", week) == (bars, [])
    assert BinanceHistory().serves(week)


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


def test_binance_declares_the_klines_calls_its_weight_allows() -> None:
    """Binance spot REST docs: REQUEST_WEIGHT 6000 a minute per IP, klines weight 2: 3000 calls a
    minute; its limit answers (429, 418 with Retry-After) are the client's rule, no format signal."""
    half = BinanceHistory()
    request = half.request("BTCUSDT", parse_interval("1m"), start=None, end=None, limit=1000, upstream="")
    assert half.rate(request) == Rate(3000, 60.0)
    assert half.limited(429, {"retry-after": "5"}, {"code": -1003, "msg": "Too many requests."}, 0) is None

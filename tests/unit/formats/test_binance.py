"""The history halves of the built-in formats (candlecast.formats.<broker>): streams read from the upstream
URL and subscribe message, the REST requests built, and the documented sample answers parsed.

Each sample answer is the one the exchange's API documentation shows:

- Binance: https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints
  ("Kline/Candlestick data", GET /api/v3/klines);
- Bybit: https://bybit-exchange.github.io/docs/v5/market/kline (GET /v5/market/kline);
- OKX: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks-history
  (GET /api/v5/market/history-candles; /candles answers the same shape);
- Kraken: https://docs.kraken.com/api/docs/rest-api/get-ohlc-data (GET /0/public/OHLC).
"""

from __future__ import annotations

import pytest

from candlecast import formats
from candlecast.formats.binance import BinanceHistory
from candlecast.formats.bybit import BybitHistory
from candlecast.formats.contract import HistoryFormat, Request, Wanted, subscribe_message
from candlecast.formats.kraken import KrakenHistory
from candlecast.formats.okx import OkxHistory
from candlecast.formats.registry import HISTORY
from candlecast.history.client import retry_after
from candlecast.history.pages import check_page
from candlecast.model.candle import Candle, MalformedMessage
from candlecast.model.intervals import parse_interval

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

BYBIT_SAMPLE = {
    "retCode": 0,
    "retMsg": "OK",
    "result": {
        "symbol": "BTCUSD",
        "category": "inverse",
        "list": [
            ["1670608800000", "17071", "17073", "17027", "17055.5", "268611", "15.74462667"],
            ["1670605200000", "17071.5", "17071.5", "17061", "17071", "4177", "0.24469757"],
            ["1670601600000", "17086.5", "17088", "16978", "17071.5", "6356", "0.37288112"],
        ],
    },
    "retExtInfo": {},
    "time": 1672025956592,
}

OKX_SAMPLE = {
    "code": "0",
    "msg": "",
    "data": [
        ["1597026383085", "3.721", "3.743", "3.677", "3.708", "8422410", "22698348.04828491", "12698348.04828491", "1"],
        ["1597026383085", "3.731", "3.799", "3.494", "3.72", "24912403", "67632347.24399722", "37632347.24399722", "1"],
    ],
}

KRAKEN_SAMPLE = {
    "error": [],
    "result": {
        "XXBTZUSD": [
            [1688671200, "30306.1", "30306.2", "30305.7", "30305.7", "30306.1", "3.39243896", 23],
            [1688671260, "30304.5", "30304.5", "30300.0", "30300.3", "30300.3", "4.42996871", 18],
        ],
        "last": 1688672160,
    },
}


# -- the contract -----------------------------------------------------------------------------------


def test_history_builtin_formats_have_a_history_half() -> None:
    """binance, bybit, okx and kraken have one; seed and candle do not."""
    for name in ("binance", "bybit", "okx", "kraken", "BINANCE"):
        half = formats.history(name)
        assert isinstance(half, HistoryFormat)
    assert formats.history("seed") is None
    assert formats.history("candle") is None


def test_history_plugin_without_a_history_attribute_has_none() -> None:
    """A plug-in format that is a plain function starts empty, as before."""
    assert formats.history("tests.example_format:parse") is None


def test_history_plugin_history_attribute_is_found_and_checked() -> None:
    """A plug-in provides its half as the ``history`` attribute of its callable."""
    assert isinstance(formats.history("tests.unit.test_rest:with_history"), BinanceHistory)
    with pytest.raises(formats.FormatError, match="not a history half"):
        formats.history("tests.unit.test_rest:with_bad_history")


class _WithHistory:
    history = BinanceHistory()

    def __call__(self, msg: object) -> list[Candle]:
        return []


class _WithBadHistory:
    history = "nope"

    def __call__(self, msg: object) -> list[Candle]:
        return []


with_history = _WithHistory()
with_bad_history = _WithBadHistory()


def test_check_page_skips_out_of_order_and_disagreeing_bars() -> None:
    """A duplicate or older bar is ``order``; another symbol or an off-grid open time ``disagree``."""
    bars = BinanceHistory().parse("BTCUSDT", M1, [[60_000 * k, "1", "2", "0.5", "1.5", "3", 0] for k in (1, 2, 2, 1)])
    other = Candle("ETHUSDT", 0, 240_000, 1, 2, 0.5, 1.5)
    off = Candle("BTCUSDT", 0, 300_001, 1, 2, 0.5, 1.5)
    kept, rejected = check_page([*bars, other, off], "BTCUSDT", M1)
    assert [c.ot for c in kept] == [60_000, 120_000]
    assert rejected == ["order", "order", "disagree", "disagree"]


def test_subscribe_message_decodes_or_gives_none() -> None:
    assert subscribe_message('{"op":"subscribe"}') == {"op": "subscribe"}
    assert subscribe_message(None) is None
    assert subscribe_message("{") is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Retry-After is delta-seconds or an HTTP date; capped, never negative."""
    assert retry_after("2", 0.0) == 2.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("10000", 0.0) == 600.0
    assert retry_after("soon", 0.0) is None
    assert retry_after(None, 0.0) is None


# -- Binance ------------------------------------------------------------------------------------------


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


# -- Bybit ----------------------------------------------------------------------------------------------


def test_bybit_streams_and_request() -> None:
    half = BybitHistory()
    sub = {"op": "subscribe", "args": ["kline.1.BTCUSDT", "kline.D.ETHUSDT", "orderbook.1.BTCUSDT"]}
    assert half.streams("wss://stream.bybit.com/v5/public/spot", sub) == [
        Wanted("BTCUSDT", "1m"),
        Wanted("ETHUSDT", "1d"),
    ]
    req = half.request(
        "BTCUSD",
        H1,
        start=1670601600000,
        end=1670608800000,
        limit=200,
        upstream="wss://stream.bybit.com/v5/public/inverse",
    )
    assert req == Request(
        "/v5/market/kline",
        {
            "category": "inverse",
            "symbol": "BTCUSD",
            "interval": "60",
            "limit": "200",
            "start": "1670601600000",
            "end": "1670608800000",
        },
    )


def test_bybit_parses_the_documented_sample_oldest_first() -> None:
    candles = BybitHistory().parse("BTCUSD", H1, BYBIT_SAMPLE)
    assert [c.ot for c in candles] == [1670601600000, 1670605200000, 1670608800000]
    assert candles[-1] == Candle(
        "BTCUSD", 1670608800000 + 3_599_999, 1670608800000, 17071.0, 17073.0, 17027.0, 17055.5, 268611.0
    )
    kept, rejected = check_page(candles, "BTCUSD", H1)
    assert len(kept) == 3 and not rejected


def test_bybit_error_answer_is_refused() -> None:
    with pytest.raises(MalformedMessage) as exc:
        BybitHistory().parse("X", M1, {"retCode": 10001, "retMsg": "params error", "result": {}})
    assert exc.value.reason == "refused"


def test_bybit_pauses_when_the_limit_is_spent() -> None:
    headers = {"x-bapi-limit-status": "0", "x-bapi-limit-reset-timestamp": "1500"}
    assert BybitHistory().pause(200, headers, 1000) == 0.5


# -- OKX ------------------------------------------------------------------------------------------------


def test_okx_streams_and_requests() -> None:
    half = OkxHistory()
    sub = {
        "op": "subscribe",
        "args": [{"channel": "candle1m", "instId": "BTC-USDT"}, {"channel": "candle1Dutc", "instId": "ETH-USDT"}],
    }
    assert half.streams("wss://ws.okx.com:8443/ws/v5/business", sub) == [
        Wanted("BTC-USDT", "1m"),
        Wanted("ETH-USDT", "1d"),
    ]
    assert half.request("BTC-USDT", M1, start=None, end=None, limit=1000, upstream="") == Request(
        "/api/v5/market/candles", {"instId": "BTC-USDT", "bar": "1m", "limit": "300"}
    )
    older = half.request("BTC-USDT", D1, start=None, end=999, limit=1000, upstream="")
    assert older == Request(
        "/api/v5/market/history-candles", {"instId": "BTC-USDT", "bar": "1Dutc", "limit": "100", "after": "1000"}
    )
    forward = half.request("BTC-USDT", M1, start=60_000, end=None, limit=100, upstream="")
    assert forward.params == {
        "instId": "BTC-USDT",
        "bar": "1m",
        "limit": "100",
        "after": str(60_000 + 100 * 60_000),
        "before": "59999",
    }


def test_okx_parses_the_documented_sample_and_its_duplicate_is_skipped() -> None:
    """The docs' sample has two rows with the same ts: parsed, and the page check keeps one."""
    candles = OkxHistory().parse("BTC-USDT", M1, OKX_SAMPLE)
    assert [(c.o, c.h, c.l, c.c, c.v) for c in candles] == [
        (3.731, 3.799, 3.494, 3.72, 24912403.0),
        (3.721, 3.743, 3.677, 3.708, 8422410.0),
    ]
    kept, rejected = check_page(candles, "BTC-USDT", parse_interval("1s"))
    assert len(kept) == 0 or rejected  # 1597026383085 is not on a 1 s grid either
    with pytest.raises(MalformedMessage) as exc:
        OkxHistory().parse("X", M1, {"code": "51001", "msg": "Instrument ID does not exist", "data": []})
    assert exc.value.reason == "refused"


# -- Kraken -----------------------------------------------------------------------------------------------


def test_kraken_streams_and_request() -> None:
    half = KrakenHistory()
    sub = {"method": "subscribe", "params": {"channel": "ohlc", "symbol": ["BTC/USD", "ETH/USD"], "interval": 60}}
    assert half.streams("wss://ws.kraken.com/v2", sub) == [Wanted("BTC/USD", "1h"), Wanted("ETH/USD", "1h")]
    assert half.request("BTC/USD", M1, start=1688671200000, end=None, limit=720, upstream="") == Request(
        "/0/public/OHLC", {"pair": "BTC/USD", "interval": "1", "since": "1688671199"}
    )
    assert half.serves(D1) and not half.serves(parse_interval("2h"))


def test_kraken_parses_the_documented_sample() -> None:
    candles = KrakenHistory().parse("BTC/USD", M1, KRAKEN_SAMPLE)
    assert candles[0] == Candle(
        "BTC/USD", 1688671200000 + 59_999, 1688671200000, 30306.1, 30306.2, 30305.7, 30305.7, 3.39243896
    )
    assert [c.ot for c in candles] == [1688671200000, 1688671260000]
    with pytest.raises(MalformedMessage) as exc:
        KrakenHistory().parse("X", M1, {"error": ["EQuery:Unknown asset pair"]})
    assert exc.value.reason == "refused"


def test_every_builtin_half_is_registered() -> None:
    assert set(HISTORY) == {"binance", "bybit", "okx", "kraken"}

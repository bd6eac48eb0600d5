"""The Bybit format, both halves, on the sample messages of its public API docs.

Fixtures, verbatim from the documentation pages named:
- stream: Bybit v5 "WebSocket Stream / Public / Kline" (bybit-exchange.github.io/docs/v5/websocket/public/kline),
  response example.
- REST: bybit-exchange.github.io/docs/v5/market/kline (GET /v5/market/kline).
"""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.formats.bybit import BybitHistory, parse_bybit
from candlecast.formats.contract import Rate, Request, Wanted
from candlecast.history.pages import check_page
from candlecast.model.candle import Candle, MalformedMessage
from candlecast.model.intervals import parse_interval

# -- the stream half -------------------------------------------------------------------------------


BYBIT_KLINE: dict[str, Any] = {
    "topic": "kline.5.BTCUSDT",
    "data": [
        {
            "start": 1672324800000,
            "end": 1672325099999,
            "interval": "5",
            "open": "16649.5",
            "close": "16677",
            "high": "16677",
            "low": "16608",
            "volume": "2.081",
            "turnover": "34666.4005",
            "confirm": False,
            "timestamp": 1672324988882,
        }
    ],
    "ts": 1672324988882,
    "type": "snapshot",
}


def test_bybit_documented_kline_takes_the_symbol_from_the_topic() -> None:
    assert parse_bybit(BYBIT_KLINE) == [
        Candle("BTCUSDT", 1672324988882, 1672324800000, 16649.5, 16677.0, 16608.0, 16677.0, 2.081)
    ]


def test_bybit_every_entry_of_data_is_a_candle() -> None:
    first = BYBIT_KLINE["data"][0]
    second = {**first, "start": 1672325100000, "open": "16677", "close": "16680", "high": "16690", "confirm": True}
    candles = parse_bybit({**BYBIT_KLINE, "data": [first, second]})
    assert [(c.ot, c.c) for c in candles] == [(1672324800000, 16677.0), (1672325100000, 16680.0)]


@pytest.mark.parametrize(
    "msg",
    [
        {"success": True, "ret_msg": "", "conn_id": "abc", "req_id": "", "op": "subscribe"},
        {"success": True, "ret_msg": "pong", "conn_id": "abc", "op": "ping"},
        {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1, "data": []},
    ],
)
def test_bybit_acks_pongs_and_other_topics_give_no_candle(msg: Any) -> None:
    assert parse_bybit(msg) == []


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ({"success": False, "ret_msg": "error:handler not found", "op": "subscribe"}, "refused"),
        ({**BYBIT_KLINE, "topic": "kline.5"}, "shape"),
        ({**BYBIT_KLINE, "data": {"start": 1}}, "shape"),
        ({**BYBIT_KLINE, "data": [{"start": 1, "open": "1"}]}, "shape"),
        ({**BYBIT_KLINE, "data": [{**BYBIT_KLINE["data"][0], "high": "16000"}]}, "ohlc"),
        ({**BYBIT_KLINE, "data": [{**BYBIT_KLINE["data"][0], "open": "x"}]}, "type"),
    ],
)
def test_bybit_rejects_malformed_and_refusals_with_a_reason(msg: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse_bybit(msg)
    assert exc.value.reason == reason


# -- the history half ------------------------------------------------------------------------------


M1 = parse_interval("1m")


H1 = parse_interval("1h")


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


# -- rates and limit signals ----------------------------------------------------------------------
# Bybit v5 "Rate Limit Rules" (bybit-exchange.github.io/docs/v5/rate-limit): "600 requests within a
# 5-second window per IP"; "403, access too frequent" -> "wait for at least 10 minutes"; "retCode":
# 10006, "retMsg": "Too many visits!" with X-Bapi-Limit-Reset-Timestamp (the page's header sample:
# X-Bapi-Limit-Reset-Timestamp: 1672738134824). The 10006 body is reconstructed from those fields.

TOO_MANY_VISITS: dict[str, Any] = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "time": 1672738134000}


def test_bybit_declares_its_ip_rate() -> None:
    """600 requests in any 5 s, every path."""
    half = BybitHistory()
    request = half.request("BTCUSDT", parse_interval("1m"), start=None, end=None, limit=1000, upstream="")
    assert half.rate(request) == Rate(600, 5.0)


def test_bybit_403_access_too_frequent_holds_ten_minutes() -> None:
    """The IP limit's 403 asks for at least 10 minutes."""
    assert BybitHistory().limited(403, {}, None, 0) == 600.0


def test_bybit_retcode_10006_holds_until_the_reset_timestamp() -> None:
    """Too many visits: until X-Bapi-Limit-Reset-Timestamp, at least a second."""
    half = BybitHistory()
    headers = {"x-bapi-limit-status": "0", "x-bapi-limit-reset-timestamp": "1672738134824"}
    assert half.limited(200, headers, TOO_MANY_VISITS, 1672738131824) == 3.0
    assert half.limited(200, headers, TOO_MANY_VISITS, 1672738134800) == 1.0
    assert half.limited(200, {}, TOO_MANY_VISITS, 0) == 1.0


def test_bybit_other_answers_are_no_limit_signal() -> None:
    half = BybitHistory()
    assert half.limited(200, {}, BYBIT_SAMPLE, 0) is None
    assert half.limited(200, {}, {"retCode": 10001, "retMsg": "params error"}, 0) is None
    assert half.limited(500, {}, None, 0) is None

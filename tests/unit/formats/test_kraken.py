"""The Bybit, OKX and Kraken formats, on the sample messages of each exchange's public API docs.

Fixtures, verbatim from the documentation pages named on each:
- Bybit v5 "WebSocket Stream / Public / Kline" (bybit-exchange.github.io/docs/v5/websocket/public/kline),
  response example.
- OKX API v5 "Order Book Trading / Market Data / WS / Candlesticks channel"
  (www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-candlesticks-channel): request,
  successful response, failure response and push data examples.
- Kraken Spot WebSocket v2 "Candles (OHLC)" (docs.kraken.com/api/docs/websocket-v2/ohlc): subscribe
  and snapshot examples; Kraken "Heartbeat" and "Ping" pages for the heartbeat and pong. The
  subscribe ack is built from that page's ack schema (its example was not available here).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from candlecast.formats.bybit import parse_bybit
from candlecast.formats.kraken import parse_kraken
from candlecast.formats.okx import parse_okx
from candlecast.formats.registry import EXAMPLES
from candlecast.formats.shapes import rfc3339_ms
from candlecast.model.candle import Candle, MalformedMessage

# -- Bybit ---------------------------------------------------------------------------------------

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


# -- OKX -----------------------------------------------------------------------------------------

OKX_PUSH: dict[str, Any] = {
    "arg": {"channel": "candle1D", "instId": "BTC-USDT"},
    "data": [
        ["1597026383085", "8533.02", "8553.74", "8527.17", "8548.26", "45247", "529.5858061", "5529.5858061", "0"]
    ],
}
OKX_ACK = {
    "id": "1512",
    "event": "subscribe",
    "arg": {"channel": "candle1D", "instId": "BTC-USDT"},
    "connId": "a4d3ae55",
}
OKX_ERROR = {
    "id": "1512",
    "event": "error",
    "code": "60012",
    "msg": 'Invalid request: {"op": "subscribe", "argss":[{ "channel" : "candle1D", "instId" : "BTC-USD-191227"}]}',
    "connId": "a4d3ae55",
}


def test_okx_documented_push_parses_string_times_and_prices() -> None:
    """OKX sends no event time: ``t`` is the bar's ``ts`` too, epoch ms as an int."""
    assert parse_okx(OKX_PUSH) == [
        Candle("BTC-USDT", 1597026383085, 1597026383085, 8533.02, 8553.74, 8527.17, 8548.26, 45247.0)
    ]


def test_okx_every_row_of_data_is_a_candle() -> None:
    rows = [
        ["1629993600000", "42500", "48199.9", "41006.1", "41006.1", "3587.41204591", "1", "1", "1"],
        ["1630080000000", "41006.1", "41500", "40000", "41200", "12", "1", "1", "0"],
    ]
    candles = parse_okx({**OKX_PUSH, "data": rows})
    assert [(c.ot, c.o, c.v) for c in candles] == [
        (1629993600000, 42500.0, 3587.41204591),
        (1630080000000, 41006.1, 12.0),
    ]


@pytest.mark.parametrize(
    "msg",
    [
        OKX_ACK,
        {"event": "notice", "code": "64008", "msg": "The connection will soon be closed", "connId": "a4d3ae55"},
        {"arg": {"channel": "mark-price-candle1m", "instId": "BTC-USD-SWAP"}, "data": [["1", "1", "1", "1", "1"]]},
    ],
)
def test_okx_events_and_other_channels_give_no_candle(msg: Any) -> None:
    assert parse_okx(msg) == []


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (OKX_ERROR, "refused"),
        ({**OKX_PUSH, "data": [["1597026383085", "1", "1"]]}, "shape"),
        ({**OKX_PUSH, "data": "x"}, "shape"),
        ({**OKX_PUSH, "data": [[1597026383085, "1", "1", "1", "1"]]}, "type"),  # ts must be the documented string
        ({**OKX_PUSH, "data": [["-5", "1", "1", "1", "1"]]}, "type"),
        ({**OKX_PUSH, "data": [["1", "1", "0.5", "1", "1"]]}, "ohlc"),
        ({**OKX_PUSH, "arg": {"channel": "candle1m"}}, "symbol"),
    ],
)
def test_okx_rejects_malformed_and_errors_with_a_reason(msg: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse_okx(msg)
    assert exc.value.reason == reason


# -- Kraken --------------------------------------------------------------------------------------

KRAKEN_SNAPSHOT: dict[str, Any] = {
    "channel": "ohlc",
    "type": "snapshot",
    "timestamp": "2023-10-04T16:26:01.806315597Z",
    "data": [
        {
            "symbol": "ALGO/USD",
            "open": 0.09875,
            "high": 0.09875,
            "low": 0.09875,
            "close": 0.09875,
            "trades": 1,
            "volume": 201.86015,
            "vwap": 0.09875,
            "interval_begin": "2023-10-04T15:25:00.000000000Z",
            "interval": 5,
            "timestamp": "2023-10-04T15:30:00.000000Z",
        },
        {
            "symbol": "ALGO/USD",
            "open": 0.09875,
            "high": 0.0988,
            "low": 0.09875,
            "close": 0.09875,
            "trades": 13,
            "volume": 16255.46368,
            "vwap": 0.09879,
            "interval_begin": "2023-10-04T15:30:00.000000000Z",
            "interval": 5,
            "timestamp": "2023-10-04T15:35:00.000000Z",
        },
    ],
}


def test_kraken_documented_snapshot_gives_every_candle_in_epoch_ms() -> None:
    sent = 1696436761806  # 2023-10-04T16:26:01.806Z
    assert parse_kraken(KRAKEN_SNAPSHOT) == [
        Candle("ALGO/USD", sent, 1696433100000, 0.09875, 0.09875, 0.09875, 0.09875, 201.86015),
        Candle("ALGO/USD", sent, 1696433400000, 0.09875, 0.0988, 0.09875, 0.09875, 16255.46368),
    ]


def test_kraken_update_without_a_timestamp_uses_the_interval_begin() -> None:
    update = {
        "channel": "ohlc",
        "type": "update",
        "data": [{**KRAKEN_SNAPSHOT["data"][0], "high": "0.0988", "close": "0.0988"}],
    }
    [c] = parse_kraken(update)
    assert (c.t, c.ot, c.c) == (1696433100000, 1696433100000, 0.0988)


@pytest.mark.parametrize(
    "msg",
    [
        {"channel": "heartbeat"},
        {
            "method": "pong",
            "req_id": 101,
            "time_in": "2023-09-24T14:10:23.799685Z",
            "time_out": "2023-09-24T14:10:23.799703Z",
        },
        {
            "method": "subscribe",
            "result": {"channel": "ohlc", "interval": 5, "snapshot": True, "symbol": "ALGO/USD", "warnings": []},
            "success": True,
            "time_in": "2023-10-04T16:26:01.7Z",
            "time_out": "2023-10-04T16:26:01.8Z",
        },
        {"channel": "status", "type": "update", "data": [{"api_version": "v2", "system": "online"}]},
    ],
)
def test_kraken_heartbeats_acks_and_other_channels_give_no_candle(msg: Any) -> None:
    assert parse_kraken(msg) == []


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ({"method": "subscribe", "error": "Currency pair not supported NOPE/USD", "success": False}, "refused"),
        ({**KRAKEN_SNAPSHOT, "data": [{"symbol": "A/B", "open": 1}]}, "shape"),
        ({**KRAKEN_SNAPSHOT, "timestamp": "yesterday"}, "type"),
        ({**KRAKEN_SNAPSHOT, "data": [{**KRAKEN_SNAPSHOT["data"][0], "interval_begin": 1696433100}]}, "type"),
        ({**KRAKEN_SNAPSHOT, "data": [{**KRAKEN_SNAPSHOT["data"][0], "low": 0.1}]}, "ohlc"),
    ],
)
def test_kraken_rejects_malformed_and_refusals_with_a_reason(msg: Any, reason: str) -> None:
    with pytest.raises(MalformedMessage) as exc:
        parse_kraken(msg)
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2023-10-04T15:25:00.000000000Z", 1696433100000),
        ("2023-10-04T15:25:00Z", 1696433100000),
        ("2023-10-04T15:25:00.1234Z", 1696433100123),
        ("2023-10-04T17:25:00.5+02:00", 1696433100500),
        ("2023-10-04T10:25:00-05:00", 1696433100000),
    ],
)
def test_rfc3339_times_become_epoch_ms(text: str, ms: int) -> None:
    assert rfc3339_ms(text, "t") == ms


@pytest.mark.parametrize("text", ["2023-10-04", "2023-13-04T15:25:00Z", "2023-10-04T15:25:00", 5])
def test_rfc3339_rejects_what_is_not_one(text: object) -> None:
    with pytest.raises(MalformedMessage):
        rfc3339_ms(text, "t")


def test_every_example_subscribe_message_is_json_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, (url, subscribe) in EXAMPLES.items():
        assert orjson.loads(subscribe)
        assert url in readme and subscribe in readme, name

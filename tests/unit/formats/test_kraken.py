"""The Kraken format, both halves, on the sample messages of its public API docs.

Fixtures, verbatim from the documentation pages named:
- stream: Kraken Spot WebSocket v2 "Candles (OHLC)" (docs.kraken.com/api/docs/websocket-v2/ohlc): subscribe
  and snapshot examples; Kraken "Heartbeat" and "Ping" pages for the heartbeat and pong. The
  subscribe ack is built from that page's ack schema (its example was not available here).
- REST: docs.kraken.com/api/docs/rest-api/get-ohlc-data (GET /0/public/OHLC).
"""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.formats.contract import Rate, Request, Wanted
from candlecast.formats.kraken import KrakenHistory, parse_kraken
from candlecast.model.candle import Candle, MalformedMessage
from candlecast.model.intervals import parse_interval

# -- the stream half -------------------------------------------------------------------------------


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


# -- the history half ------------------------------------------------------------------------------


M1 = parse_interval("1m")


D1 = parse_interval("1d")


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


# -- rates and limit signals ----------------------------------------------------------------------
# Kraken API guide "Spot REST Rate Limits" (docs.kraken.com/api/docs/guides/spot-rest-ratelimits):
# public endpoints about 1 request per second per IP; errors arrive in the ``error`` array of an
# HTTP 200 answer ("EGeneral:Too many requests", "EAPI:Rate limit exceeded"). The bodies below are
# reconstructed from those error strings and the OHLC answer's shape. Kraken states no hold for
# the public endpoints: the 10 s is candlecast's.


def test_kraken_declares_about_one_request_a_second() -> None:
    half = KrakenHistory()
    request = half.request("BTC/USD", parse_interval("1m"), start=None, end=None, limit=720, upstream="")
    assert half.rate(request) == Rate(1, 1.0)


@pytest.mark.parametrize("error", ["EGeneral:Too many requests", "EAPI:Rate limit exceeded"])
def test_kraken_too_many_requests_in_the_error_array_holds(error: str) -> None:
    """A limit error in ``error`` (HTTP 200) holds every request 10 s."""
    assert KrakenHistory().limited(200, {}, {"error": [error]}, 0) == 10.0


def test_kraken_other_errors_and_answers_are_no_limit_signal() -> None:
    half = KrakenHistory()
    assert half.limited(200, {}, {"error": ["EQuery:Unknown asset pair"]}, 0) is None
    assert half.limited(200, {}, {"error": [], "result": {"last": 0}}, 0) is None
    assert half.limited(200, {}, None, 0) is None


def test_kraken_throttled_with_a_time_holds_until_then() -> None:
    """Kraken's REST rate-limit guide (docs.kraken.com, "Spot REST Rate Limits", Errors): "EService:
    Throttled: [UNIX timestamp]" when there are too many concurrent requests: try again after it
    (the body is reconstructed from that text)."""
    now_ms = 1_700_000_000_000
    body = {"error": ["EService: Throttled: 1700000030"], "result": {}}
    assert KrakenHistory().limited(200, {}, body, now_ms) == 30.0
    assert KrakenHistory().limited(200, {}, {"error": ["EService: Throttled: 1600000000"]}, now_ms) == 1.0
    assert KrakenHistory().limited(200, {}, {"error": ["EService:Unavailable"]}, now_ms) is None

"""The OKX format, both halves, on the sample messages of its public API docs.

Fixtures, verbatim from the documentation pages named:
- stream: OKX API v5 "Order Book Trading / Market Data / WS / Candlesticks channel"
  (www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-candlesticks-channel): request,
  successful response, failure response and push data examples.
- REST: www.okx.com/docs-v5/en/#order-book-trading-market-data-get-candlesticks-history
  (GET /api/v5/market/history-candles; /candles answers the same shape).
- volumes: the same pages' tables: ``vol`` is "Trading volume, with a unit of contract. If it is a
  derivatives contract, the value is the number of contracts. If it is SPOT/MARGIN, the value is
  the quantity in base currency."; ``volCcy`` "with a unit of currency. If it is a derivatives
  contract, the value is the number of base currency. If it is SPOT/MARGIN, the value is the
  quantity in quote currency." The documented samples are all SPOT (``BTC-USDT``); the SWAP,
  FUTURES and OPTION rows below are reconstructed: the documented row under a derivative's instId.
- heartbeat: www.okx.com/docs-v5/en/#overview-websocket-overview ("The connection will break
  automatically if ... data has not been pushed for more than 30 seconds ... send the String
  'ping' ... Expect a 'pong' as a response").
"""

from __future__ import annotations

from typing import Any

import pytest

from candlecast.formats.contract import Heartbeat, Rate, Request, Wanted, heartbeat_of
from candlecast.formats.okx import OkxHistory, parse_okx
from candlecast.history.pages import check_page
from candlecast.model.candle import Candle, MalformedMessage
from candlecast.model.intervals import parse_interval

# -- the stream half -------------------------------------------------------------------------------


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
    ("inst_id", "v"),
    [
        ("BTC-USDT", 45247.0),  # SPOT/MARGIN: vol, the base currency (volCcy would be USDT)
        ("BTC-USDT-SWAP", 529.5858061),  # a linear swap: volCcy, BTC (vol counts contracts)
        ("BTC-USD-SWAP", 529.5858061),  # an inverse swap: volCcy, BTC too
        ("BTC-USD-200925", 529.5858061),  # futures
        ("BTC-USD-200925-9000-C", 529.5858061),  # an option
    ],
)
def test_okx_volume_is_the_base_currency_for_every_instrument_type(inst_id: str, v: float) -> None:
    """``v`` is ``vol`` for SPOT/MARGIN and ``volCcy`` for derivatives, whose ``vol`` counts contracts."""
    push = {"arg": {**OKX_PUSH["arg"], "instId": inst_id}, "data": OKX_PUSH["data"]}
    assert [(c.s, c.v) for c in parse_okx(push)] == [(inst_id, v)]
    rest = OkxHistory().parse(inst_id, M1, OKX_SAMPLE)
    expected = [8422410.0, 24912403.0] if inst_id == "BTC-USDT" else [22698348.04828491, 67632347.24399722]
    assert [c.v for c in rest] == expected[::-1]  # the stream and the history agree on the unit


def test_okx_a_derivative_row_without_volccy_has_no_volume() -> None:
    """Never contracts where base currency is promised: a short derivative row has no ``v``."""
    push = {"arg": {"channel": "candle1m", "instId": "BTC-USDT-SWAP"}, "data": [OKX_PUSH["data"][0][:6]]}
    assert [c.v for c in parse_okx(push)] == [None]


def test_okx_declares_its_text_heartbeat_under_the_30_second_limit() -> None:
    """OKX drops a connection quiet for 30 s: the format asks for the text ping well before."""
    beat = heartbeat_of(parse_okx)
    assert beat is not None and (beat.ping, beat.pong) == ("ping", "pong")
    assert 0 < beat.quiet < 30
    assert isinstance(beat, Heartbeat)


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


# -- the history half ------------------------------------------------------------------------------


M1 = parse_interval("1m")


D1 = parse_interval("1d")


OKX_SAMPLE = {
    "code": "0",
    "msg": "",
    "data": [
        ["1597026383085", "3.721", "3.743", "3.677", "3.708", "8422410", "22698348.04828491", "12698348.04828491", "1"],
        ["1597026383085", "3.731", "3.799", "3.494", "3.72", "24912403", "67632347.24399722", "37632347.24399722", "1"],
    ],
}


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
        "/api/v5/market/history-candles", {"instId": "BTC-USDT", "bar": "1Dutc", "limit": "300", "after": "1000"}
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


# -- rates and limit signals ----------------------------------------------------------------------
# OKX API v5 docs, "Get candlesticks" (Rate Limit: 40 requests per 2 seconds) and "Get candlesticks
# history" (Rate Limit: 20 requests per 2 seconds; limit: maximum 300), rule IP; the 429 body below
# is reconstructed from the docs' error code table (50011, "Rate limit reached", HTTP 429): OKX
# sends no Retry-After with it.


def test_okx_declares_each_candles_path_its_own_rate() -> None:
    """market/candles 40 / 2 s and market/history-candles 20 / 2 s, two budgets."""
    half = OkxHistory()
    recent = half.request("BTC-USDT", M1, start=None, end=None, limit=1000, upstream="")
    older = half.request("BTC-USDT", M1, start=None, end=999, limit=1000, upstream="")
    assert half.rate(recent) == Rate(40, 2.0, "market/candles")
    assert half.rate(older) == Rate(20, 2.0, "market/history-candles")
    assert older.params["limit"] == "300" and half.max_limit == 300


def test_okx_a_429_without_retry_after_holds_for_the_window() -> None:
    """HTTP 429 (code 50011) carries no Retry-After: hold for the 2 s window; other answers say nothing."""
    half = OkxHistory()
    assert half.limited(429, {}, {"code": "50011", "msg": "Rate limit reached.", "data": []}, 0) == 2.0
    assert half.limited(429, {}, None, 0) == 2.0
    assert half.limited(200, {}, {"code": "50011", "msg": "Rate limit reached.", "data": []}, 0) == 2.0
    assert half.limited(200, {}, OKX_SAMPLE, 0) is None
    assert half.limited(200, {}, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, 0) is None

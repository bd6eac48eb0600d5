"""The ``okx`` format: OKX v5's ``candle*`` channels and its REST history
(``/api/v5/market/candles`` and ``history-candles``), from OKX's public API documentation. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..model.candle import Candle, MalformedMessage, make_candle
from ..model.intervals import Interval
from .contract import Heartbeat, Rate, Request, Wanted, rest_bar
from .shapes import epoch_ms, epoch_ms_text, json_list, json_object

__all__ = ["EXAMPLE", "HEARTBEAT", "OkxHistory", "base_volume", "parse_okx"]


def parse_okx(msg: object) -> list[Candle]:
    """OKX v5 ``candle*`` channels (``candle1m`` … ``candle1Dutc``, on ``/ws/v5/business``).

    ``{"arg": {"channel": "candle1D", "instId": "BTC-USDT"}, "data": [["<ts ms>", "o", "h",
    "l", "c", "vol", "volCcy", "volCcyQuote", "confirm"], …]}``: the symbol is ``arg.instId``,
    every row of ``data`` is a candle, ``ot`` is ``ts`` (a string of epoch ms) and ``v`` the
    volume in the base currency (:func:`base_volume`). OKX sends no event time, so ``t`` is
    ``ts`` too. Events (``subscribe`` acks, notices) and other channels (``mark-price-candle*``,
    ``index-candle*``) give none; an ``"event": "error"`` raises ``refused``. The text ``pong``
    answering candlecast's ``ping`` is its :data:`HEARTBEAT`'s, never parsed here.
    """
    m = json_object(msg, "message")
    event = m.get("event")
    if event is not None:
        if event == "error":
            raise MalformedMessage("refused", f"okx error {m.get('code')!r}: {m.get('msg')!r:.120}")
        return []
    if "arg" not in m:
        return []
    arg = json_object(m["arg"], "arg")
    channel = arg.get("channel")
    if not isinstance(channel, str) or not channel.startswith("candle"):
        return []
    symbol = arg.get("instId")
    candles = []
    for row in json_list(m.get("data"), "data"):
        bar = json_list(row, "candle row")
        if len(bar) < 5:
            raise MalformedMessage("shape", f"candle row has {len(bar)} fields, want [ts, o, h, l, c, vol, …]")
        ts = epoch_ms_text(bar[0], "ts")
        candles.append(
            make_candle(symbol, ts, ts, bar[1], bar[2], bar[3], bar[4], base_volume(symbol, bar), strings=True)
        )
    return candles


#: OKX closes a connection that received nothing for 30 s and asks for the text ``ping`` before
#: then, answered by the text ``pong`` (docs-v5, "WebSocket / Overview"): sent after 20 s of quiet.
HEARTBEAT: Final = Heartbeat(ping="ping", pong="pong", quiet=20.0)
parse_okx.heartbeat = HEARTBEAT  # type: ignore[attr-defined]  # read by heartbeat_of, as a plug-in's parse.history


def base_volume(inst_id: object, row: list[Any]) -> object:
    """A candle row's volume in the instrument's base currency (``None`` when the row has none).

    OKX's ``vol`` counts contracts for derivatives (``BTC-USDT-SWAP``, futures ``BTC-USD-250328``,
    options ``BTC-USD-250328-60000-C``) and the base currency for SPOT/MARGIN (``BTC-USDT``), where
    ``volCcy`` is the quote currency; for derivatives ``volCcy`` is the base currency. So ``v`` is
    ``vol`` for an ``instId`` of two parts and ``volCcy`` for the others: always the base currency,
    like the other exchanges' volumes.
    """
    spot = isinstance(inst_id, str) and inst_id.count("-") == 1
    index = 5 if spot else 6
    return row[index] if len(row) > index else None


_OKX_INTERVALS: Final = {
    "1s": "1s",
    "1m": "1m",
    "3m": "3m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1H",
    "2h": "2H",
    "4h": "4H",
    "6h": "6Hutc",
    "12h": "12Hutc",
    "1d": "1Dutc",
    "2d": "2Dutc",
    "3d": "3Dutc",
    "1w": "1Wutc",
}

_OKX_NAMES: Final = {**{v: k for k, v in _OKX_INTERVALS.items()}, "6H": None, "12H": None, "1D": None}


#: ``GET /api/v5/market/candles``: 40 requests / 2 s per IP (OKX API v5, "Get candlesticks").
OKX_CANDLES_RATE: Final = Rate(40, 2.0, "market/candles")
#: ``GET /api/v5/market/history-candles``: 20 requests / 2 s per IP ("Get candlesticks history").
OKX_HISTORY_RATE: Final = Rate(20, 2.0, "market/history-candles")
#: OKX's "Rate limit reached" error code (with HTTP 429).
OKX_RATE_LIMIT_CODE: Final = "50011"


class OkxHistory:
    """OKX v5 ``GET /api/v5/market/candles`` (the most recent bars) and
    ``/api/v5/market/history-candles`` (older ones), up to 300 a call each: ``{"code": "0", "data":
    [["ts ms", "o", "h", "l", "c", "vol", "volCcy", …, "confirm"], …]}``, newest first; ``v`` as
    the stream's (:func:`base_volume`). ``after`` asks for bars before a time, ``before`` for bars
    after one. Days and longer use the UTC-aligned bars (``1Dutc``, ``1Wutc`` from Monday), as
    candlecast's intervals are. Streams: the subscribe message's
    ``{"channel": "candle1m", "instId": "BTC-USDT"}`` args."""

    base_url = "https://www.okx.com"
    max_limit = 300

    def streams(self, upstream: str, subscribe: object) -> list[Wanted]:
        out: list[Wanted] = []
        args = subscribe.get("args") if isinstance(subscribe, dict) else None
        for arg in args if isinstance(args, list) else ():
            if not isinstance(arg, dict):
                continue
            channel, inst = arg.get("channel"), arg.get("instId")
            if isinstance(channel, str) and channel.startswith("candle") and isinstance(inst, str) and inst:
                wanted = Wanted(inst, _OKX_NAMES.get(channel[6:], channel[6:]))
                if wanted not in out:
                    out.append(wanted)
        return out

    def serves(self, interval: Interval) -> bool:
        return interval.name in _OKX_INTERVALS

    def request(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int, upstream: str
    ) -> Request:
        params = {"instId": symbol, "bar": _OKX_INTERVALS.get(interval.name, interval.name)}
        params["limit"] = str(min(limit, self.max_limit))
        if start is None and end is None:
            return Request("/api/v5/market/candles", params)
        if end is not None:
            params["after"] = str(end + 1)  # records earlier than `after`
        elif start is not None:
            params["after"] = str(start + min(limit, self.max_limit) * interval.ms)
        if start is not None:
            params["before"] = str(start - 1)  # records newer than `before`
        return Request("/api/v5/market/history-candles", params)

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        m = json_object(body, "answer")
        if m.get("code") != "0":
            raise MalformedMessage("refused", f"okx code {m.get('code')!r}: {m.get('msg')!r:.120}")
        out = []
        for row in json_list(m.get("data"), "data"):
            k = json_list(row, "candle")
            if len(k) < 6:
                raise MalformedMessage("shape", f"candle has {len(k)} fields, want [ts, o, h, l, c, vol, …]")
            out.append(rest_bar(symbol, interval, epoch_ms(k[0], "ts"), k[1], k[2], k[3], k[4], base_volume(symbol, k)))
        out.reverse()  # newest first on the wire
        return out

    def rate(self, request: Request) -> Rate:
        return OKX_HISTORY_RATE if request.path.endswith("/history-candles") else OKX_CANDLES_RATE

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        """A 429 or code 50011 comes with no ``Retry-After``: hold for the limit's window (2 s)."""
        if status == 429 or (isinstance(body, dict) and body.get("code") == OKX_RATE_LIMIT_CODE):
            return OKX_HISTORY_RATE.window
        return None

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        return 0.0  # OKX sends no rate headers: its rates are declared (rate)


#: A public endpoint and the subscribe message for it (one symbol, 1-minute bars).
EXAMPLE: Final = (
    "wss://ws.okx.com:8443/ws/v5/business",
    '{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}',
)

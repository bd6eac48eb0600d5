"""The ``bybit`` format: Bybit v5's public ``kline.{interval}.{symbol}`` stream and its REST
history (``GET /v5/market/kline``), from Bybit's public API documentation. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from ..model.candle import Candle, MalformedMessage, make_candle
from ..model.intervals import Interval
from .contract import Rate, Request, Wanted, rest_bar
from .shapes import epoch_ms, header_int, json_list, json_object

__all__ = ["parse_bybit", "BybitHistory", "EXAMPLE"]


def parse_bybit(msg: object) -> list[Candle]:
    """Bybit v5 public ``kline.{interval}.{symbol}`` pushes (spot, linear, inverse, option).

    ``{"topic": "kline.5.BTCUSDT", "type": "snapshot", "ts": <ms>, "data": [{"start": <ms>,
    "open": "…", "high": …, "low": …, "close": …, "volume": …, "confirm": false, …}, …]}``: the
    symbol comes from the topic, ``ot`` is ``start``, ``t`` the message's ``ts``, ``v`` ``volume``;
    every entry of ``data`` is a candle. Op replies (subscribe acks, pongs) give none; a reply
    with ``"success": false`` raises ``refused``.
    """
    m = json_object(msg, "message")
    topic = m.get("topic")
    if topic is None:
        if m.get("success") is False:
            raise MalformedMessage("refused", f"bybit {m.get('op')!r} failed: {m.get('ret_msg')!r:.120}")
        return []
    if not isinstance(topic, str) or not topic.startswith("kline."):
        return []  # another topic on the same connection
    parts = topic.split(".", 2)
    if len(parts) != 3 or not parts[2]:
        raise MalformedMessage("shape", f"topic {topic[:60]!r} is not kline.<interval>.<symbol>")
    symbol = parts[2]
    candles = []
    for entry in json_list(m.get("data"), "data"):
        k = json_object(entry, "kline")
        try:
            t = m.get("ts", k.get("timestamp"))
            candles.append(
                make_candle(
                    symbol, t, k["start"], k["open"], k["high"], k["low"], k["close"], k.get("volume"), strings=True
                )
            )
        except KeyError as exc:
            raise MalformedMessage("shape", f"kline lacks {exc.args[0]!r}") from None
    return candles


_BYBIT_INTERVALS: Final = {
    "1m": "1",
    "3m": "3",
    "5m": "5",
    "15m": "15",
    "30m": "30",
    "1h": "60",
    "2h": "120",
    "4h": "240",
    "6h": "360",
    "12h": "720",
    "1d": "D",
    "1w": "W",
}

_BYBIT_NAMES: Final = {v: k for k, v in _BYBIT_INTERVALS.items()}


#: Bybit's HTTP IP limit: 600 requests in any 5-second window, every path (v5 "Rate Limit Rules").
BYBIT_RATE: Final = Rate(600, 5.0)
#: "403, access too frequent": the IP exceeded its limit; "wait for at least 10 minutes".
BYBIT_BAN: Final = 600.0
#: ``retCode`` 10006, "Too many visits!": the per-second API rate limit.
BYBIT_TOO_MANY_VISITS: Final = 10006


class BybitHistory:
    """Bybit v5 ``GET /v5/market/kline``: ``{"retCode": 0, "result": {"list": [["start ms", "o",
    "h", "l", "c", "volume", "turnover"], …]}}``, newest first, at most 1,000 a call. The
    category (spot, linear, inverse) is the upstream URL's last path part; streams come from
    the subscribe message's ``kline.<interval>.<symbol>`` topics."""

    base_url = "https://api.bybit.com"
    max_limit = 1000

    def streams(self, upstream: str, subscribe: object) -> list[Wanted]:
        out: list[Wanted] = []
        args = subscribe.get("args") if isinstance(subscribe, dict) else None
        for topic in args if isinstance(args, list) else ():
            if isinstance(topic, str) and topic.startswith("kline."):
                parts = topic.split(".", 2)
                if len(parts) == 3 and parts[2]:
                    wanted = Wanted(parts[2], _BYBIT_NAMES.get(parts[1]))
                    if wanted not in out:
                        out.append(wanted)
        return out

    def serves(self, interval: Interval) -> bool:
        return interval.name in _BYBIT_INTERVALS

    def request(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int, upstream: str
    ) -> Request:
        category = urlsplit(upstream).path.rstrip("/").rsplit("/", 1)[-1]
        params = {
            "category": category if category in ("spot", "linear", "inverse") else "spot",
            "symbol": symbol,
            "interval": _BYBIT_INTERVALS.get(interval.name, interval.name),
            "limit": str(min(limit, self.max_limit)),
        }
        if start is not None:
            params["start"] = str(start)
        if end is not None:
            params["end"] = str(end)
        return Request("/v5/market/kline", params)

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        m = json_object(body, "answer")
        if m.get("retCode") != 0:
            raise MalformedMessage("refused", f"bybit retCode {m.get('retCode')!r}: {m.get('retMsg')!r:.120}")
        rows = json_list(json_object(m.get("result"), "result").get("list"), "result.list")
        out = []
        for row in rows:
            k = json_list(row, "kline")
            if len(k) < 6:
                raise MalformedMessage("shape", f"kline has {len(k)} fields, want [start, o, h, l, c, volume, …]")
            out.append(rest_bar(symbol, interval, epoch_ms(k[0], "start"), k[1], k[2], k[3], k[4], k[5]))
        out.reverse()  # newest first on the wire
        return out

    def rate(self, request: Request) -> Rate:
        return BYBIT_RATE

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        """403 ("access too frequent"): 10 minutes; retCode 10006: until
        ``X-Bapi-Limit-Reset-Timestamp``, and at least the 1 s window of the API limit."""
        if status == 403:
            return BYBIT_BAN
        if isinstance(body, dict) and body.get("retCode") == BYBIT_TOO_MANY_VISITS:
            reset = header_int(headers, "x-bapi-limit-reset-timestamp")
            return max(1.0, (reset - now_ms) / 1000) if reset is not None else 1.0
        return None

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        remaining = header_int(headers, "x-bapi-limit-status")
        reset = header_int(headers, "x-bapi-limit-reset-timestamp")
        if remaining is not None and remaining <= 1 and reset is not None:
            return max(0.0, (reset - now_ms) / 1000)
        return 0.0


#: A public endpoint and the subscribe message for it (one symbol, 1-minute bars).
EXAMPLE: Final = ("wss://stream.bybit.com/v5/public/spot", '{"op":"subscribe","args":["kline.1.BTCUSDT"]}')

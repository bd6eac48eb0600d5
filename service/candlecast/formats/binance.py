"""The ``binance`` format: Binance's public kline stream (raw and combined form) and its REST
history (``GET /api/v3/klines``), from Binance's public API documentation. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qs, urlsplit

from ..model.candle import Candle, MalformedMessage, make_candle
from ..model.intervals import Interval
from .contract import Rate, Request, Wanted, rest_bar
from .shapes import epoch_millis, epoch_ms, header_int, json_list, json_object

__all__ = ["parse_binance", "BinanceHistory", "EXAMPLE"]


def parse_binance(msg: object) -> list[Candle]:
    """Binance kline events, raw (``{"e": "kline", ...}``) or combined (``{"stream", "data"}``).

    Prices and volume arrive as strings; times are epoch milliseconds, or microseconds on a
    stream opened with ``timeUnit=MICROSECOND`` (turned into milliseconds: :func:`epoch_millis`);
    ``ot`` is ``k.t``. Subscription acks (``{"result": null, "id": 1}``) and other events give
    none; an error reply (``{"code": 2, "msg": "Invalid request: ..."}``, or the same wrapped as
    ``{"error": {...}, "id": 1}``) raises ``refused``.
    """
    m = json_object(msg, "message")
    if "data" in m and "stream" in m:
        m = json_object(m["data"], "data")
    error = _error_reply(m)
    if error is not None:
        raise MalformedMessage("refused", f"binance error {error.get('code')!r}: {error.get('msg')!r:.120}")
    if m.get("e") != "kline":
        return []
    k = json_object(m.get("k"), "k")
    try:
        return [
            make_candle(
                k.get("s", m.get("s")),
                epoch_millis(m["E"]),
                epoch_millis(k["t"]),
                k["o"],
                k["h"],
                k["l"],
                k["c"],
                k.get("v"),
                strings=True,
            )
        ]
    except KeyError as exc:
        raise MalformedMessage("shape", f"kline lacks {exc.args[0]!r}") from None


def _error_reply(m: Mapping[str, object]) -> Mapping[str, object] | None:
    """The error of a reply to a request (web-socket-streams.md, "Error Messages"): the message
    itself (``{"code", "msg"}``, as documented) or its ``error`` object (as the servers send it)."""
    if "e" in m:
        return None
    if "code" in m and "msg" in m:
        return m
    error = m.get("error")
    return error if isinstance(error, dict) else None


_BINANCE_INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
)

_BINANCE_STREAM: Final = re.compile(r"^([a-z0-9]+)@kline_(\w+)$", re.IGNORECASE)

#: Binance's request weight budget per minute (``X-MBX-USED-WEIGHT-1M`` counts against it).
BINANCE_WEIGHT_PER_MINUTE: Final = 6000
#: ``GET /api/v3/klines`` costs a weight of 2 (Binance spot REST docs, "Kline/Candlestick data").
BINANCE_KLINES_WEIGHT: Final = 2
#: The klines calls a minute's weight allows (Binance's ``REQUEST_WEIGHT`` limit is per IP).
BINANCE_RATE: Final = Rate(BINANCE_WEIGHT_PER_MINUTE // BINANCE_KLINES_WEIGHT, 60.0)


class BinanceHistory:
    """Binance spot ``GET /api/v3/klines``: ``[[open ms, "o", "h", "l", "c", "v", close ms, …], …]``,
    oldest first, at most 1,000 a call. Streams come from ``/ws/<s>@kline_<i>``,
    ``/stream?streams=a/b`` or a ``SUBSCRIBE`` message's ``params``."""

    base_url = "https://api.binance.com"
    max_limit = 1000

    def streams(self, upstream: str, subscribe: object) -> list[Wanted]:
        names: list[str] = []
        url = urlsplit(upstream)
        if url.path.startswith("/ws/"):
            names.append(url.path[4:])
        for value in parse_qs(url.query).get("streams", ()):
            names.extend(value.split("/"))
        if isinstance(subscribe, dict) and isinstance(subscribe.get("params"), list):
            names.extend(p for p in subscribe["params"] if isinstance(p, str))
        out: list[Wanted] = []
        for name in names:
            m = _BINANCE_STREAM.match(name)
            if m is not None:
                wanted = Wanted(m.group(1).upper(), m.group(2))
                if wanted not in out:
                    out.append(wanted)
        return out

    def serves(self, interval: Interval) -> bool:
        return interval.name in _BINANCE_INTERVALS

    def request(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int, upstream: str
    ) -> Request:
        params = {"symbol": symbol, "interval": interval.name, "limit": str(min(limit, self.max_limit))}
        if start is not None:
            params["startTime"] = str(start)
        if end is not None:
            params["endTime"] = str(end)
        return Request("/api/v3/klines", params)

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        out = []
        for row in json_list(body, "klines"):
            k = json_list(row, "kline")
            if len(k) < 6:
                raise MalformedMessage("shape", f"kline has {len(k)} fields, want [open time, o, h, l, c, v, …]")
            out.append(rest_bar(symbol, interval, epoch_ms(k[0], "open time"), k[1], k[2], k[3], k[4], k[5]))
        return out

    def rate(self, request: Request) -> Rate:
        return BINANCE_RATE

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        return None  # Binance's limit answers are 429 and 418 (a ban) with Retry-After: the client's rule

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        used = header_int(headers, "x-mbx-used-weight-1m")
        if used is not None and used >= BINANCE_WEIGHT_PER_MINUTE * 0.9:
            return (60_000 - now_ms % 60_000) / 1000  # the weight window is the calendar minute
        return 0.0


#: A public endpoint and the subscribe message for it (one symbol, 1-minute bars).
EXAMPLE: Final = ("wss://stream.binance.com:9443/ws", '{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":1}')

"""The history half of a format: REST requests for past bars, and their answers as candles. Pure.

A broker's stream carries only the present; its REST API has the past. A format may come with a
:class:`HistoryFormat` (``formats.history(name)`` finds it): an object that

- reads, from the upstream URL and the subscribe message, which symbols (and at which interval)
  the stream carries (:meth:`~HistoryFormat.streams`), so the usual configuration needs no flag;
- builds the request for the bars of one symbol and interval opening in ``[start, end]``, at most
  ``limit`` of them, the most recent ones when ``start`` is ``None``
  (:meth:`~HistoryFormat.request`);
- parses the answer into candles, oldest first (:meth:`~HistoryFormat.parse`), raising
  :class:`~candlecast.model.candle.MalformedMessage` as a stream format does;
- says how long to hold off before the next request, from the answer's rate-limit headers
  (:meth:`~HistoryFormat.pause`).

Nothing here awaits, reads the clock or touches a socket: :mod:`candlecast.history.client` does the I/O
(paging, the concurrency cap, ``Retry-After``, timeouts). Built in: Binance spot
(``GET /api/v3/klines``), Bybit v5 (``/v5/market/kline``), OKX v5 (``/api/v5/market/candles``
and ``history-candles``) and Kraken (``/0/public/OHLC``), each from the exchange's public API
documentation, whose sample answers are the unit tests' fixtures. Bars parsed from REST carry
``t`` = the bar's last millisecond (``ot`` + interval - 1), ``ot`` in epoch ms, and ``i`` = the
interval's name when it is not the stream's base interval (the caller tags them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

import orjson

from ..model.candle import Candle, MalformedMessage, make_candle
from ..model.intervals import Interval, from_ms


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP ``GET``: ``path`` (joined to the REST base URL) and its query parameters."""

    path: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wanted:
    """One stream the upstream carries: the symbol as candles name it, and its interval's name
    when the URL or the subscribe message says (``None``: not said)."""

    symbol: str
    interval: str | None = None


@runtime_checkable
class HistoryFormat(Protocol):
    """The history half of a format (see the module docstring). Every method is pure."""

    #: The exchange's public REST base URL (``--rest-url`` overrides it).
    base_url: str
    #: Most bars one request returns.
    max_limit: int

    def streams(self, upstream: str, subscribe: object) -> list[Wanted]:
        """The streams the upstream URL and the (decoded) subscribe message ask for."""
        ...

    def serves(self, interval: Interval) -> bool:
        """Whether the exchange has bars of ``interval`` (else they are built from base bars)."""
        ...

    def request(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int, upstream: str
    ) -> Request:
        """The request for bars opening in ``[start, end]`` (epoch ms; ``None``: open), at most
        ``limit``; with no ``start``, the most recent ones."""
        ...

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        """The candles of a decoded answer, oldest first; raises :class:`MalformedMessage`."""
        ...

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        """Seconds to wait before the next request, from this answer's rate-limit headers."""
        ...


# -- helpers ------------------------------------------------------------------------------------


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedMessage("shape", f"{what} must be a list, got {type(value).__name__}")
    return value


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedMessage("shape", f"{what} must be an object, got {type(value).__name__}")
    return value


def _ms(value: object, field: str) -> int:
    """Epoch milliseconds as an int or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    raise MalformedMessage("type", f"{field} must be epoch milliseconds, got {value!r:.40}")


def _bar(symbol: str, interval: Interval, ot: int, o: object, h: object, l: object, c: object, v: object) -> Candle:  # noqa: E741
    return make_candle(symbol, ot + interval.ms - 1, ot, o, h, l, c, v, strings=True)


def subscribe_message(text: str | None) -> object:
    """The subscribe setting decoded (``None`` when unset or not JSON: Settings checked it)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def check_page(candles: Sequence[Candle], symbol: str, interval: Interval) -> tuple[list[Candle], list[str]]:
    """The bars of one answer that can be trusted, and why each other one was not: ``order``
    (not strictly after the previous one: a duplicate or out of order), ``disagree`` (another
    symbol, or an open time off the interval's UTC grid)."""
    kept: list[Candle] = []
    rejected: list[str] = []
    for candle in candles:
        if candle.s != symbol or int(candle.ot) % interval.ms:
            rejected.append("disagree")
        elif kept and candle.ot <= kept[-1].ot:
            rejected.append("order")
        else:
            kept.append(candle)
    return kept, rejected


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


# -- Binance spot ---------------------------------------------------------------------------------

_BINANCE_INTERVALS: Final = frozenset(
    ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
)
_BINANCE_STREAM: Final = re.compile(r"^([a-z0-9]+)@kline_(\w+)$", re.IGNORECASE)
#: Binance's request weight budget per minute (``X-MBX-USED-WEIGHT-1M`` counts against it).
BINANCE_WEIGHT_PER_MINUTE: Final = 6000


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
        for row in _list(body, "klines"):
            k = _list(row, "kline")
            if len(k) < 6:
                raise MalformedMessage("shape", f"kline has {len(k)} fields, want [open time, o, h, l, c, v, …]")
            out.append(_bar(symbol, interval, _ms(k[0], "open time"), k[1], k[2], k[3], k[4], k[5]))
        return out

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        used = _header_int(headers, "x-mbx-used-weight-1m")
        if used is not None and used >= BINANCE_WEIGHT_PER_MINUTE * 0.9:
            return (60_000 - now_ms % 60_000) / 1000  # the weight window is the calendar minute
        return 0.0


# -- Bybit v5 -------------------------------------------------------------------------------------

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
        m = _object(body, "answer")
        if m.get("retCode") != 0:
            raise MalformedMessage("refused", f"bybit retCode {m.get('retCode')!r}: {m.get('retMsg')!r:.120}")
        rows = _list(_object(m.get("result"), "result").get("list"), "result.list")
        out = []
        for row in rows:
            k = _list(row, "kline")
            if len(k) < 6:
                raise MalformedMessage("shape", f"kline has {len(k)} fields, want [start, o, h, l, c, volume, …]")
            out.append(_bar(symbol, interval, _ms(k[0], "start"), k[1], k[2], k[3], k[4], k[5]))
        out.reverse()  # newest first on the wire
        return out

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        remaining = _header_int(headers, "x-bapi-limit-status")
        reset = _header_int(headers, "x-bapi-limit-reset-timestamp")
        if remaining is not None and remaining <= 1 and reset is not None:
            return max(0.0, (reset - now_ms) / 1000)
        return 0.0


# -- OKX v5 ---------------------------------------------------------------------------------------

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


class OkxHistory:
    """OKX v5 ``GET /api/v5/market/candles`` (the most recent bars, up to 300 a call) and
    ``/api/v5/market/history-candles`` (older ones, up to 100 a call): ``{"code": "0", "data":
    [["ts ms", "o", "h", "l", "c", "vol", …, "confirm"], …]}``, newest first. ``after`` asks for
    bars before a time, ``before`` for bars after one. Days and longer use the UTC-aligned bars
    (``1Dutc``), as candlecast's intervals are. Streams: the subscribe message's
    ``{"channel": "candle1m", "instId": "BTC-USDT"}`` args."""

    base_url = "https://www.okx.com"
    max_limit = 100

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
        if start is None and end is None:
            params["limit"] = str(min(limit, 300))
            return Request("/api/v5/market/candles", params)
        params["limit"] = str(min(limit, self.max_limit))
        if end is not None:
            params["after"] = str(end + 1)  # records earlier than `after`
        elif start is not None:
            params["after"] = str(start + min(limit, self.max_limit) * interval.ms)
        if start is not None:
            params["before"] = str(start - 1)  # records newer than `before`
        return Request("/api/v5/market/history-candles", params)

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        m = _object(body, "answer")
        if m.get("code") != "0":
            raise MalformedMessage("refused", f"okx code {m.get('code')!r}: {m.get('msg')!r:.120}")
        out = []
        for row in _list(m.get("data"), "data"):
            k = _list(row, "candle")
            if len(k) < 6:
                raise MalformedMessage("shape", f"candle has {len(k)} fields, want [ts, o, h, l, c, vol, …]")
            out.append(_bar(symbol, interval, _ms(k[0], "ts"), k[1], k[2], k[3], k[4], k[5]))
        out.reverse()  # newest first on the wire
        return out

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        return 0.0  # OKX sends no rate headers; its limit (40 requests / 2 s) is above our concurrency


# -- Kraken ---------------------------------------------------------------------------------------

_KRAKEN_MINUTES: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)


class KrakenHistory:
    """Kraken ``GET /0/public/OHLC``: ``{"error": [], "result": {"<pair>": [[time s, "o", "h", "l",
    "c", "vwap", "volume", count], …], "last": s}}``, oldest first, the last 720 bars at most
    (``since`` narrows them; there is no way further back). The pair is the stream's symbol
    (``BTC/USD``); streams come from the v2 subscribe message's ``params.symbol`` and
    ``params.interval`` (minutes)."""

    base_url = "https://api.kraken.com"
    max_limit = 720

    def streams(self, upstream: str, subscribe: object) -> list[Wanted]:
        params = subscribe.get("params") if isinstance(subscribe, dict) else None
        if not isinstance(params, dict) or params.get("channel") != "ohlc":
            return []
        minutes = params.get("interval")
        name = None
        if isinstance(minutes, int) and not isinstance(minutes, bool) and minutes > 0:
            name = from_ms(minutes * 60_000).name
        symbols = params.get("symbol")
        out: list[Wanted] = []
        for s in symbols if isinstance(symbols, list) else ():
            if isinstance(s, str) and s and Wanted(s, name) not in out:
                out.append(Wanted(s, name))
        return out

    def serves(self, interval: Interval) -> bool:
        return interval.ms % 60_000 == 0 and interval.ms // 60_000 in _KRAKEN_MINUTES

    def request(
        self, symbol: str, interval: Interval, *, start: int | None, end: int | None, limit: int, upstream: str
    ) -> Request:
        params = {"pair": symbol, "interval": str(interval.ms // 60_000)}
        if start is not None:
            params["since"] = str(start // 1000 - 1)  # bars after `since` (seconds)
        return Request("/0/public/OHLC", params)

    def parse(self, symbol: str, interval: Interval, body: object) -> list[Candle]:
        m = _object(body, "answer")
        errors = m.get("error")
        if errors:
            raise MalformedMessage("refused", f"kraken error {errors!r:.120}")
        result = _object(m.get("result"), "result")
        rows: object = next((v for k, v in result.items() if k != "last"), [])
        out = []
        for row in _list(rows, "result.<pair>"):
            k = _list(row, "ohlc")
            if len(k) < 7:
                raise MalformedMessage("shape", f"ohlc has {len(k)} fields, want [time, o, h, l, c, vwap, volume, …]")
            if not isinstance(k[0], int) or isinstance(k[0], bool):
                raise MalformedMessage("type", f"time must be epoch seconds, got {k[0]!r:.40}")
            out.append(_bar(symbol, interval, k[0] * 1000, k[1], k[2], k[3], k[4], k[6]))
        return out

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        return 0.0


#: The built-in formats' history halves, by format name.
HISTORY: Final[dict[str, HistoryFormat]] = {
    "binance": BinanceHistory(),
    "bybit": BybitHistory(),
    "okx": OkxHistory(),
    "kraken": KrakenHistory(),
}


def tagged(candles: Sequence[Candle], name: str | None) -> list[Candle]:
    """``candles`` with ``i`` set to ``name`` (``None``: the base interval)."""
    return [c if c.i == name else replace(c, i=name) for c in candles]


__all__ = [
    "HISTORY",
    "BinanceHistory",
    "BybitHistory",
    "HistoryFormat",
    "KrakenHistory",
    "OkxHistory",
    "Request",
    "Wanted",
    "check_page",
    "subscribe_message",
    "tagged",
]

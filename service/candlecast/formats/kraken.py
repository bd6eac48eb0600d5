"""The ``kraken`` format: Kraken's spot WebSocket v2 ``ohlc`` channel and its REST history
(``GET /0/public/OHLC``), from Kraken's public API documentation. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..model.candle import Candle, MalformedMessage, make_candle
from ..model.intervals import Interval, from_ms
from .contract import Rate, Request, Wanted, rest_bar
from .shapes import json_list, json_object, rfc3339_ms

__all__ = ["parse_kraken", "KrakenHistory", "EXAMPLE"]


def parse_kraken(msg: object) -> list[Candle]:
    """Kraken spot WebSocket v2 ``ohlc`` channel, snapshot and update.

    ``{"channel": "ohlc", "type": "snapshot", "timestamp": "<RFC 3339>", "data": [{"symbol":
    "BTC/USD", "open": …, "high": …, "low": …, "close": …, "volume": …, "interval_begin":
    "<RFC 3339>", "interval": 5, …}, …]}``: every entry of ``data`` is a candle, ``ot`` is
    ``interval_begin`` and ``t`` the message's ``timestamp`` (``interval_begin`` when absent),
    both turned into epoch ms. Heartbeats, ``status``, other channels and method replies
    (subscribe acks, pongs) give none; a reply with ``"success": false`` raises ``refused``.
    """
    m = json_object(msg, "message")
    if m.get("channel") != "ohlc":
        if m.get("success") is False:
            raise MalformedMessage("refused", f"kraken {m.get('method')!r} failed: {m.get('error')!r:.120}")
        return []
    event_time = m.get("timestamp")
    t = None if event_time is None else rfc3339_ms(event_time, "timestamp")
    candles = []
    for entry in json_list(m.get("data"), "data"):
        k = json_object(entry, "candle")
        try:
            ot = rfc3339_ms(k["interval_begin"], "interval_begin")
            candles.append(
                make_candle(
                    k["symbol"],
                    ot if t is None else t,
                    ot,
                    k["open"],
                    k["high"],
                    k["low"],
                    k["close"],
                    k.get("volume"),
                    strings=True,
                )
            )
        except KeyError as exc:
            raise MalformedMessage("shape", f"candle lacks {exc.args[0]!r}") from None
    return candles


_KRAKEN_MINUTES: Final = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)


#: Kraken's public REST endpoints: about 1 request a second per IP (Kraken API guide, "Spot REST
#: Rate Limits").
KRAKEN_RATE: Final = Rate(1, 1.0)
#: What Kraken's ``error`` array says when its limits are hit.
KRAKEN_LIMIT_ERRORS: Final = frozenset({"EGeneral:Too many requests", "EAPI:Rate limit exceeded"})
#: The hold after one (Kraken documents none for public endpoints: candlecast's choice, ten windows).
KRAKEN_HOLD: Final = 10.0


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
        m = json_object(body, "answer")
        errors = m.get("error")
        if errors:
            raise MalformedMessage("refused", f"kraken error {errors!r:.120}")
        result = json_object(m.get("result"), "result")
        rows: object = next((v for k, v in result.items() if k != "last"), [])
        out = []
        for row in json_list(rows, "result.<pair>"):
            k = json_list(row, "ohlc")
            if len(k) < 7:
                raise MalformedMessage("shape", f"ohlc has {len(k)} fields, want [time, o, h, l, c, vwap, volume, …]")
            if not isinstance(k[0], int) or isinstance(k[0], bool):
                raise MalformedMessage("type", f"time must be epoch seconds, got {k[0]!r:.40}")
            out.append(rest_bar(symbol, interval, k[0] * 1000, k[1], k[2], k[3], k[4], k[6]))
        return out

    def rate(self, request: Request) -> Rate:
        return KRAKEN_RATE

    def limited(self, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
        """``EGeneral:Too many requests`` (or ``EAPI:Rate limit exceeded``) in ``error``: hold
        :data:`KRAKEN_HOLD`; ``EService: Throttled: <unix time>`` (too many concurrent requests,
        "try again after [timestamp]" in Kraken's REST rate-limit guide): hold until then."""
        errors = body.get("error") if isinstance(body, dict) else None
        if not isinstance(errors, list):
            return None
        texts = [e for e in errors if isinstance(e, str)]
        if any(e in KRAKEN_LIMIT_ERRORS for e in texts):
            return KRAKEN_HOLD
        for e in texts:
            kind, _, until = e.replace(" ", "").partition("Throttled:")
            if kind == "EService:" and until.isdigit():
                return max(1.0, int(until) - now_ms / 1000)
        return None

    def pause(self, status: int, headers: Mapping[str, str], now_ms: int) -> float:
        return 0.0


#: A public endpoint and the subscribe message for it (one symbol, 1-minute bars).
EXAMPLE: Final = (
    "wss://ws.kraken.com/v2",
    '{"method":"subscribe","params":{"channel":"ohlc","symbol":["BTC/USD"],"interval":1}}',
)

"""Built-in formats for more brokers' public kline/candle streams: Bybit v5, OKX v5, Kraken v2.

Pure, like :mod:`candlecast.model.candle` (same contract: one decoded message -> every candle it
carries, :class:`~candlecast.model.candle.MalformedMessage` for malformed input). Each follows the
exchange's public API documentation, whose sample messages are the unit tests' fixtures. Times
are normalized the way Binance's are: ``t`` (event time) and ``ot`` (bar open time) in epoch
milliseconds, as ints. Prices arrive as strings (Bybit, OKX) or numbers (Kraken); both work.
Acks, pongs, heartbeats and other channels give no candle; a broker's error reply (a refused
subscription) raises with reason ``refused``, so it is counted and logged rather than lost.

:data:`EXAMPLES` holds, per format, a public endpoint and the subscribe message to send there
(the README shows the same, as ``CANDLECAST_*`` settings).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from typing import Any, Final

from ..model.candle import Candle, Format, MalformedMessage, make_candle


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedMessage("shape", f"{what} must be an object, got {type(value).__name__}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedMessage("shape", f"{what} must be a list, got {type(value).__name__}")
    return value


def _epoch_ms_text(value: object, field: str) -> int:
    """Epoch milliseconds sent as a string of digits (OKX's ``ts``)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value)
    raise MalformedMessage("type", f"{field} must be epoch milliseconds as a string of digits, got {value!r:.40}")


_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def rfc3339_ms(value: object, field: str) -> int:
    """An RFC 3339 time (``2023-10-04T15:25:00.000000000Z``, up to nanoseconds) in epoch
    milliseconds, truncated; raises :class:`MalformedMessage`."""
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise MalformedMessage("type", f"{field} must be an RFC 3339 time, got {value!r:.40}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise MalformedMessage("type", f"{field} is not a valid time: {value!r:.40}")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if match.group(9):  # an offset: local time = UTC + offset
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    millis = int((match.group(7) or "0")[:3].ljust(3, "0"))
    return seconds * 1000 + millis


# -- Bybit v5 ------------------------------------------------------------------------------------


def parse_bybit(msg: object) -> list[Candle]:
    """Bybit v5 public ``kline.{interval}.{symbol}`` pushes (spot, linear, inverse, option).

    ``{"topic": "kline.5.BTCUSDT", "type": "snapshot", "ts": <ms>, "data": [{"start": <ms>,
    "open": "…", "high": …, "low": …, "close": …, "volume": …, "confirm": false, …}, …]}``: the
    symbol comes from the topic, ``ot`` is ``start``, ``t`` the message's ``ts``, ``v`` ``volume``;
    every entry of ``data`` is a candle. Op replies (subscribe acks, pongs) give none; a reply
    with ``"success": false`` raises ``refused``.
    """
    m = _object(msg, "message")
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
    for entry in _list(m.get("data"), "data"):
        k = _object(entry, "kline")
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


# -- OKX v5 --------------------------------------------------------------------------------------


def parse_okx(msg: object) -> list[Candle]:
    """OKX v5 ``candle*`` channels (``candle1m`` … ``candle1Dutc``, on ``/ws/v5/business``).

    ``{"arg": {"channel": "candle1D", "instId": "BTC-USDT"}, "data": [["<ts ms>", "o", "h",
    "l", "c", "vol", "volCcy", "volCcyQuote", "confirm"], …]}``: the symbol is ``arg.instId``,
    every row of ``data`` is a candle, ``ot`` is ``ts`` (a string of epoch ms) and ``v`` is
    ``vol``. OKX sends no event time, so ``t`` is ``ts`` too. Events (``subscribe`` acks,
    notices) and other channels (``mark-price-candle*``, ``index-candle*``) give none; an
    ``"event": "error"`` raises ``refused``.
    """
    m = _object(msg, "message")
    event = m.get("event")
    if event is not None:
        if event == "error":
            raise MalformedMessage("refused", f"okx error {m.get('code')!r}: {m.get('msg')!r:.120}")
        return []
    if "arg" not in m:
        return []
    arg = _object(m["arg"], "arg")
    channel = arg.get("channel")
    if not isinstance(channel, str) or not channel.startswith("candle"):
        return []
    symbol = arg.get("instId")
    candles = []
    for row in _list(m.get("data"), "data"):
        bar = _list(row, "candle row")
        if len(bar) < 5:
            raise MalformedMessage("shape", f"candle row has {len(bar)} fields, want [ts, o, h, l, c, vol, …]")
        ts = _epoch_ms_text(bar[0], "ts")
        volume = bar[5] if len(bar) > 5 else None
        candles.append(make_candle(symbol, ts, ts, bar[1], bar[2], bar[3], bar[4], volume, strings=True))
    return candles


# -- Kraken v2 -----------------------------------------------------------------------------------


def parse_kraken(msg: object) -> list[Candle]:
    """Kraken spot WebSocket v2 ``ohlc`` channel, snapshot and update.

    ``{"channel": "ohlc", "type": "snapshot", "timestamp": "<RFC 3339>", "data": [{"symbol":
    "BTC/USD", "open": …, "high": …, "low": …, "close": …, "volume": …, "interval_begin":
    "<RFC 3339>", "interval": 5, …}, …]}``: every entry of ``data`` is a candle, ``ot`` is
    ``interval_begin`` and ``t`` the message's ``timestamp`` (``interval_begin`` when absent),
    both turned into epoch ms. Heartbeats, ``status``, other channels and method replies
    (subscribe acks, pongs) give none; a reply with ``"success": false`` raises ``refused``.
    """
    m = _object(msg, "message")
    if m.get("channel") != "ohlc":
        if m.get("success") is False:
            raise MalformedMessage("refused", f"kraken {m.get('method')!r} failed: {m.get('error')!r:.120}")
        return []
    event_time = m.get("timestamp")
    t = None if event_time is None else rfc3339_ms(event_time, "timestamp")
    candles = []
    for entry in _list(m.get("data"), "data"):
        k = _object(entry, "candle")
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


#: The formats defined in this module.
FORMATS: Final[dict[str, Format]] = {
    "bybit": parse_bybit,
    "okx": parse_okx,
    "kraken": parse_kraken,
}

#: Per format: a public endpoint and the subscribe message for it (one symbol, 1-minute bars).
EXAMPLES: Final[dict[str, tuple[str, str]]] = {
    "binance": ("wss://stream.binance.com:9443/ws", '{"method":"SUBSCRIBE","params":["btcusdt@kline_1m"],"id":1}'),
    "bybit": ("wss://stream.bybit.com/v5/public/spot", '{"op":"subscribe","args":["kline.1.BTCUSDT"]}'),
    "okx": (
        "wss://ws.okx.com:8443/ws/v5/business",
        '{"op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}',
    ),
    "kraken": (
        "wss://ws.kraken.com/v2",
        '{"method":"subscribe","params":{"channel":"ohlc","symbol":["BTC/USD"],"interval":1}}',
    ),
}

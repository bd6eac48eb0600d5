"""The normalized candle, the upstream formats that produce it, and its wire encoding.

Pure: nothing here awaits, reads the clock, or touches a socket or a thread. Every upstream
format is a function ``decoded JSON value -> Sequence[Candle]``: every candle the message
carries, in order (none for a valid message that is not a candle, such as a heartbeat or a
subscription ack; several where a broker batches them). :func:`parse` adds the byte-level
checks (size, JSON). Malformed input raises :class:`MalformedMessage` with a short, stable
``reason`` that metrics count by. The formats defined here are ``seed``, ``binance`` and
``candle``; :mod:`candlecast.formats.brokers` has more, and :mod:`candlecast.formats.registry` finds them all
(and plug-ins) by name. The contract for plug-ins: ``docs/formats.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .rules import is_symbol

#: Largest upstream message accepted, in bytes. Real kline messages are well under 1 KiB.
MAX_MESSAGE_BYTES: Final = 64 * 1024

Number = int | float


class MalformedMessage(ValueError):
    """An upstream message that cannot be turned into a candle.

    ``reason`` is one of :data:`REASONS`; ``detail`` says what was wrong, for the log.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


#: Every ``MalformedMessage.reason``, so metrics can export a zero for each. ``refused``: the
#: broker answered with an error (e.g. a refused subscription); ``format``: the format function
#: itself failed (raised something else, or returned something other than a list of candles).
REASONS: Final = ("oversize", "json", "shape", "type", "symbol", "nonfinite", "ohlc", "refused", "format")


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLC state of one bar. ``t`` is the event time, ``ot`` the bar's open time.

    Times keep the source's unit (epoch milliseconds for the simulator and Binance).
    ``v`` (volume) is ``None`` when the source has none. ``i`` names the bar's interval when it
    is not the source's base interval (an aggregate, or history loaded per interval); frames of
    the base interval carry no ``i``.
    """

    s: str
    t: Number
    ot: Number
    o: float
    h: float
    l: float  # noqa: E741 - the wire name
    c: float
    v: float | None = None
    i: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The client frame, keys in wire order; ``v`` only when known."""
        d: dict[str, Any] = {
            "s": self.s,
            "t": self.t,
            "ot": self.ot,
            "o": self.o,
            "h": self.h,
            "l": self.l,
            "c": self.c,
        }
        if self.v is not None:
            d["v"] = self.v
        if self.i is not None:
            d["i"] = self.i
        return d


def encode(candle: Candle) -> bytes:
    """The candle as one compact JSON object (the ``/ws`` frame)."""
    return orjson.dumps(candle.to_dict())


# -- validation ------------------------------------------------------------------------------


def _symbol(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedMessage("symbol", f"symbol must be a string, got {type(value).__name__}")
    if not is_symbol(value):
        raise MalformedMessage("symbol", f"bad symbol {value[:40]!r}")
    return value


def _number(value: object, field: str, *, strings: bool) -> Number:
    """A finite int or float. Numeric strings are accepted only where the format uses them."""
    if isinstance(value, bool):
        raise MalformedMessage("type", f"{field} must be a number, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedMessage("nonfinite", f"{field} is {value}")
        return value
    if strings and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise MalformedMessage("type", f"{field} is not numeric: {value[:40]!r}") from None
        if not math.isfinite(number):
            raise MalformedMessage("nonfinite", f"{field} is {value[:40]!r}")
        return number
    raise MalformedMessage("type", f"{field} must be a number, got {type(value).__name__}")


def make_candle(
    s: object,
    t: object,
    ot: object,
    o: object,
    h: object,
    l: object,  # noqa: E741
    c: object,
    v: object = None,
    *,
    strings: bool = False,
) -> Candle:
    """Validate the fields and build a :class:`Candle`; raises :class:`MalformedMessage`.

    ``l <= min(o, c) <= max(o, c) <= h`` is checked, never repaired.
    """
    o_ = float(_number(o, "o", strings=strings))
    h_ = float(_number(h, "h", strings=strings))
    l_ = float(_number(l, "l", strings=strings))
    c_ = float(_number(c, "c", strings=strings))
    if not (l_ <= min(o_, c_) and max(o_, c_) <= h_):
        raise MalformedMessage("ohlc", f"impossible bar o={o_} h={h_} l={l_} c={c_}")
    v_ = None if v is None else float(_number(v, "v", strings=strings))
    return Candle(
        s=_symbol(s),
        t=_number(t, "t", strings=False),
        ot=_number(ot, "ot", strings=False),
        o=o_,
        h=h_,
        l=l_,
        c=c_,
        v=v_,
    )


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedMessage("shape", f"{what} must be an object, got {type(value).__name__}")
    return value


# -- formats ---------------------------------------------------------------------------------


def parse_seed(msg: object) -> list[Candle]:
    """``{"symbol": S, "time": T, "candles": [OT, O, C, H, L]}``. Note C before H and L."""
    m = _object(msg, "message")
    if "candles" not in m:
        return []  # heartbeats, acks: not candles
    bar = m["candles"]
    if not isinstance(bar, list) or len(bar) != 5:
        raise MalformedMessage("shape", "candles must be a list [ot, o, c, h, l]")
    if "symbol" not in m or "time" not in m:
        raise MalformedMessage("shape", "symbol and time are required")
    ot, o, c, h, l = bar  # noqa: E741
    return [make_candle(m["symbol"], m["time"], ot, o, h, l, c)]


def parse_binance(msg: object) -> list[Candle]:
    """Binance kline events, raw (``{"e": "kline", ...}``) or combined (``{"stream", "data"}``).

    Prices and volume arrive as strings; times are epoch milliseconds; ``ot`` is ``k.t``.
    Subscription acks (``{"result": null, "id": 1}``) and other events give none.
    """
    m = _object(msg, "message")
    if "data" in m and "stream" in m:
        m = _object(m["data"], "data")
    if m.get("e") != "kline":
        return []
    k = _object(m.get("k"), "k")
    try:
        return [
            make_candle(
                k.get("s", m.get("s")), m["E"], k["t"], k["o"], k["h"], k["l"], k["c"], k.get("v"), strings=True
            )
        ]
    except KeyError as exc:
        raise MalformedMessage("shape", f"kline lacks {exc.args[0]!r}") from None


def parse_candle(msg: object) -> list[Candle]:
    """Already-normalized frames: ``{"s", "t", "ot", "o", "h", "l", "c"[, "v"]}``."""
    m = _object(msg, "message")
    try:
        return [make_candle(m["s"], m["t"], m["ot"], m["o"], m["h"], m["l"], m["c"], m.get("v"))]
    except KeyError as exc:
        raise MalformedMessage("shape", f"candle lacks {exc.args[0]!r}") from None


#: An upstream format: one decoded JSON message -> every candle it carries (see the module docstring).
Format = Callable[[object], Sequence[Candle]]

#: The formats defined in this module; :data:`candlecast.formats.registry.BUILTIN` has every built-in one.
FORMATS: Final[dict[str, Format]] = {
    "seed": parse_seed,
    "binance": parse_binance,
    "candle": parse_candle,
}


def decode(raw: bytes | str) -> object:
    """Size check and JSON decoding of one upstream message; raises :class:`MalformedMessage`."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise MalformedMessage("oversize", f"{len(raw)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage("json", str(exc)) from None


def parse(fmt: Format, raw: bytes | str) -> Sequence[Candle]:
    """Decode one raw upstream message with ``fmt``; raises :class:`MalformedMessage`."""
    return fmt(decode(raw))

"""The normalized candle: its fields and checks, the upstream format type, and its wire encoding.

Pure: nothing here awaits, reads the clock, or touches a socket or a thread. An upstream format
(:data:`Format`) is a function ``decoded JSON value -> Sequence[Candle]``: every candle the
message carries, in order (none for a heartbeat or an ack; several where a broker batches them);
the formats themselves are in :mod:`candlecast.formats`. :func:`make_candle` is the one place a
candle's fields are checked (``l <= min(o, c) <= max(o, c) <= h``, finite numbers, a symbol);
:func:`decode` and :func:`parse` add the byte-level checks (size, JSON). Malformed input raises
:class:`MalformedMessage` with a short, stable ``reason`` that metrics count by.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from .rules import is_symbol

__all__ = [
    "MAX_MESSAGE_BYTES",
    "REASONS",
    "Candle",
    "Format",
    "MalformedMessage",
    "Number",
    "decode",
    "encode",
    "make_candle",
    "parse",
]

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


#: An upstream format: one decoded JSON message -> every candle it carries (see the module docstring).
Format = Callable[[object], Sequence[Candle]]


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

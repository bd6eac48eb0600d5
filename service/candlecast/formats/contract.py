"""The history half of a format: what a broker's REST API is asked for past bars, and how its
answers become candles; and a format's :class:`Heartbeat`. Pure: the I/O is
:mod:`candlecast.history.client`'s and :mod:`candlecast.upstream.websocket`'s.

A format may come with a :class:`HistoryFormat` (:func:`candlecast.formats.history` finds it): an
object that

- reads, from the upstream URL and the subscribe message, which symbols (and at which interval)
  the stream carries (:meth:`~HistoryFormat.streams`), so the usual configuration needs no flag;
- builds the request for the bars of one symbol and interval opening in ``[start, end]``, at most
  ``limit`` of them, the most recent ones when ``start`` is ``None``
  (:meth:`~HistoryFormat.request`);
- parses the answer into candles, oldest first (:meth:`~HistoryFormat.parse`), raising
  :class:`~candlecast.model.candle.MalformedMessage` as a stream format does;
- says how long to hold off before the next request, from the answer's rate-limit headers
  (:meth:`~HistoryFormat.pause`);
- optionally (:func:`rate_of`, :func:`limited_of` read them, with defaults for a half that has
  neither): the exchange's documented :class:`Rate` for a request (``rate(request)``), and its
  *limit signals* (``limited(status, headers, body, now_ms)``: the seconds to hold off every
  request when an answer says "too many", ``None`` when it does not).

A format may also declare a :class:`Heartbeat` as its callable's ``heartbeat`` attribute (as a
plug-in sets ``history``; :func:`heartbeat_of` reads it): the text the broker wants when the feed
has been quiet, and its text answer, which is then no malformed message.

Bars parsed from REST carry ``t`` = the bar's last millisecond (``ot`` + interval - 1), ``ot`` in
epoch ms (:func:`rest_bar`), and ``i`` = the interval's name when it is not the stream's base
interval (the caller tags them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

import orjson

from ..model.candle import Candle, Format, make_candle
from ..model.intervals import Interval

__all__ = [
    "DEFAULT_RATE",
    "Heartbeat",
    "HistoryFormat",
    "Rate",
    "Request",
    "Wanted",
    "heartbeat_of",
    "limited_of",
    "rate_of",
    "rest_bar",
    "subscribe_message",
]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A text keepalive a broker expects: after ``quiet`` seconds with no message the source sends
    ``ping``, and reconnects if nothing (``pong`` or data) comes within ``quiet`` more; ``pong``,
    the broker's answer, is a heartbeat, not a message for the format."""

    ping: str
    pong: str
    quiet: float


def heartbeat_of(fmt: Format) -> Heartbeat | None:
    """The :class:`Heartbeat` the format declares (its ``heartbeat`` attribute), if any."""
    beat = getattr(fmt, "heartbeat", None)
    return beat if isinstance(beat, Heartbeat) else None


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


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``requests`` requests in any ``window`` seconds, as the exchange documents it.

    Requests whose rates are equal share one budget (an exchange's per-IP limit covers every
    path); ``scope`` names an endpoint the exchange limits on its own (OKX's ``market/candles``
    and ``market/history-candles``), so equal numbers of two scopes are two budgets."""

    requests: int
    window: float
    scope: str = ""

    def __post_init__(self) -> None:
        if self.requests < 1 or not self.window > 0:
            raise ValueError(f"a rate needs requests >= 1 and window > 0, got {self.requests} / {self.window}")


#: The rate of a plug-in's half that declares none (or declares something that is no
#: :class:`Rate`): a cautious 5 requests a second.
DEFAULT_RATE: Final = Rate(5, 1.0)


def rate_of(half: HistoryFormat, request: Request) -> Rate:
    """The :class:`Rate` ``half.rate(request)`` declares, else :data:`DEFAULT_RATE`."""
    rate = getattr(half, "rate", None)
    declared = rate(request) if callable(rate) else None
    return declared if isinstance(declared, Rate) else DEFAULT_RATE


def limited_of(half: HistoryFormat, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> float | None:
    """Seconds ``half.limited(...)`` says to hold off every request (the answer is a limit
    signal), ``None`` when it says nothing or the half declares no ``limited``. ``body`` is the
    decoded JSON answer (``None`` when it is not JSON)."""
    limited = getattr(half, "limited", None)
    hold = limited(status, headers, body, now_ms) if callable(limited) else None
    if isinstance(hold, bool) or not isinstance(hold, int | float):
        return None
    return max(0.0, float(hold))


def rest_bar(symbol: str, interval: Interval, ot: int, o: object, h: object, l: object, c: object, v: object) -> Candle:  # noqa: E741
    """A bar from a REST answer: ``t`` is its last millisecond; prices may be strings."""
    return make_candle(symbol, ot + interval.ms - 1, ot, o, h, l, c, v, strings=True)


def subscribe_message(text: str | None) -> object:
    """The subscribe setting decoded (``None`` when unset or not JSON: Settings checked it)."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None

"""Bar intervals and the aggregation of base bars into higher intervals. Pure.

Nothing here awaits, reads the clock or touches I/O: the hub feeds :class:`Aggregator` the
source's base bars (one interval, e.g. 1 m) in arrival order and gets back the new state of the
bar of each higher interval that the base bar belongs to.

Rules (UTC-aligned buckets; 1 d starts at 00:00 UTC, 1 w on Monday 00:00 UTC, as every exchange's
weeks do: :func:`align` is the one grid rule): open = the first base bar's open,
high/low = max/min, close = the latest base bar's close, volume = the sum of the base bars'
latest volumes. An update of the still-open base bar updates the aggregate in place; a late
update of an older base bar corrects the aggregate it belongs to. Each aggregate is kept as a
*prefix* (every base bar but the newest, folded) plus the newest base bar, so the usual update
costs O(1) and the result is exactly what recomputing the bar from its base bars gives.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .candle import Candle
from .rules import EPOCH_MS_ABOVE, is_symbol
from .streams import split_stream, stream_name

__all__ = [
    "MAX_BASE_BARS",
    "MAX_COVER",
    "UNITS",
    "WEEK_ORIGIN_MS",
    "Aggregator",
    "Interval",
    "IntervalError",
    "IntervalSet",
    "align",
    "cover_span",
    "fold",
    "from_ms",
    "parse_interval",
]

UNITS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
#: Most base bars kept per aggregate bucket for late corrections; older ones are folded.
MAX_BASE_BARS: Final = 128
_INTERVAL_RE: Final = re.compile(r"^([1-9][0-9]{0,3})([smhdw])$")
_MONTHS_RE: Final = re.compile(r"^[1-9][0-9]{0,3}(M|mo)$")  # 1M: a calendar month (refused)
#: Where the grid of whole-week intervals starts: Monday 1970-01-05 00:00 UTC (the epoch was a
#: Thursday). Binance, Bybit, OKX and Kraken all open a week on Monday 00:00 UTC.
WEEK_ORIGIN_MS: Final = 4 * UNITS["d"]


class IntervalError(ValueError):
    """Not an interval name (``<n><unit>``, unit one of s, m, h, d, w), or not one served."""


def align(t_ms: int | float, ms: int) -> int:
    """The start of the ``ms``-long bucket that ``t_ms`` (epoch ms) falls in: the one grid rule.

    Buckets count from the epoch (00:00 UTC), except those of whole weeks, which count from
    :data:`WEEK_ORIGIN_MS` so that a week opens on Monday 00:00 UTC.
    """
    t = int(t_ms)
    origin = WEEK_ORIGIN_MS if ms % UNITS["w"] == 0 else 0
    return t - (t - origin) % ms


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A bar length. ``name`` is canonical (``5m``, ``1h``, ``1d``)."""

    ms: int
    name: str

    def start(self, t_ms: int | float) -> int:
        """The UTC-aligned start of the bar that ``t_ms`` (epoch ms) falls in (:func:`align`:
        weeks open on Monday)."""
        return align(t_ms, self.ms)

    def bucket(self, ot: int | float) -> int | float:
        """The start of the bar that a base bar opening at ``ot`` belongs to, in ``ot``'s own
        unit (epoch ms, or seconds; see :data:`candlecast.model.rules.EPOCH_MS_ABOVE`)."""
        if ot > EPOCH_MS_ABOVE:
            return self.start(ot)
        start = self.start(ot * 1000) / 1000
        return int(start) if start == int(start) else start


def from_ms(ms: int) -> Interval:
    """The interval of ``ms`` milliseconds, named in the largest unit that divides it."""
    for unit, size in sorted(UNITS.items(), key=lambda kv: -kv[1]):
        if ms % size == 0:
            return Interval(ms, f"{ms // size}{unit}")
    return Interval(ms, f"{ms}ms")


@dataclass(frozen=True, slots=True)
class IntervalSet:
    """The source's base interval and the higher ones the hub builds from it.

    A *stream* is what a client follows and the hub routes by: ``"BTCUSD"`` (the base
    interval) or ``"BTCUSD@5m"``.
    """

    base: Interval
    higher: tuple[Interval, ...] = ()

    @classmethod
    def build(cls, base: Interval, wanted: tuple[Interval, ...]) -> IntervalSet:
        """``wanted`` less the base itself; raises :class:`IntervalError` for one that is not
        a whole multiple of the base."""
        higher: list[Interval] = []
        for interval in sorted(set(wanted)):
            if interval.ms == base.ms:
                continue
            if interval.ms < base.ms or interval.ms % base.ms:
                raise IntervalError(f"{interval.name} is not a whole multiple of the base interval {base.name}")
            higher.append(interval)
        return cls(base, tuple(higher))

    @property
    def names(self) -> list[str]:
        """Every interval served, base first."""
        return [self.base.name, *(i.name for i in self.higher)]

    def stream(self, item: str) -> str:
        """``"BTCUSD@5m"`` -> ``"BTCUSD@5m"``, ``"BTCUSD@<base>"`` and ``"BTCUSD"`` -> ``"BTCUSD"``.

        Raises :class:`IntervalError` for an interval not served, :class:`ValueError` for a bad
        symbol.
        """
        symbol, name = split_stream(item)
        if not is_symbol(symbol):
            raise ValueError(f"not a symbol: {symbol[:40]!r}")
        if name is None:
            return symbol
        try:
            interval = parse_interval(name)
        except IntervalError:
            raise IntervalError(f"unknown interval {name[:20]!r}; served: {', '.join(self.names)}") from None
        if interval.ms == self.base.ms:
            return symbol
        if interval not in self.higher:
            raise IntervalError(f"interval {interval.name} is not served; served: {', '.join(self.names)}")
        return stream_name(symbol, interval.name)


#: Base bars a history reaches back at most so that the open bar of a higher interval is whole
#: (a day of 1 m bars): the simulator's made-up past and a broker backfill follow the same rule.
MAX_COVER: Final = 1440


def cover_span(higher_ms: Iterable[int], base_ms: int, bars: int) -> int:
    """The longest higher interval (ms) whose open bar a history of ``bars`` base bars reaches
    back to make whole: one spanning at most ``max(bars, MAX_COVER)`` base bars (0: none)."""
    return max((ms for ms in higher_ms if ms // base_ms <= max(bars, MAX_COVER)), default=0)


def parse_interval(text: str) -> Interval:
    """``"5m"`` -> ``Interval(300000, "5m")``; raises :class:`IntervalError`.

    Calendar months (``1M``) are refused with their own message: a month is 28 to 31 days, and
    every interval here is one fixed length (its bars, their REST paging, the hub's buckets and
    the gap checks all count in ``ms``), so a month could only be approximated, never served
    exactly. Weeks are served, from Monday (:func:`align`).
    """
    m = _INTERVAL_RE.match(text.strip())
    if m is None and _MONTHS_RE.match(text.strip()):
        raise IntervalError(
            f"{text.strip()[:20]!r}: calendar months are not served (a month is not a fixed length; "
            "weeks are: 1w, from Monday 00:00 UTC)"
        )
    if m is None:
        raise IntervalError(f"not an interval: {text[:20]!r} (expected e.g. 1m, 5m, 1h, 1d)")
    n, unit = int(m.group(1)), m.group(2)
    return Interval(n * UNITS[unit], f"{n}{unit}")


@dataclass(slots=True)
class _Bar:
    """One aggregate: the fold of its base bars but the newest, and the newest."""

    ot: int | float
    base: dict[int | float, Candle]  # the most recent base bars of this bucket, by their ot
    prefix: Candle | None  # fold of every base bar but the newest; None when there is one
    newest: Candle
    frozen: Candle | None = None  # fold of the base bars no longer kept (oldest first)


def fold(bars: list[Candle], symbol: str, ot: int | float, name: str | None = None) -> Candle:
    """The aggregate of ``bars`` (oldest first) as one bar opening at ``ot``."""
    first, last = bars[0], bars[-1]
    volumes = [b.v for b in bars if b.v is not None]
    return Candle(
        s=symbol,
        t=last.t,
        ot=ot,
        o=first.o,
        h=max(b.h for b in bars),
        l=min(b.l for b in bars),
        c=last.c,
        v=round(sum(volumes), 8) if volumes else None,
        i=name,
    )


def _combine(prefix: Candle | None, newest: Candle, ot: int | float, name: str | None) -> Candle:
    if prefix is None:
        return Candle(newest.s, newest.t, ot, newest.o, newest.h, newest.l, newest.c, newest.v, name)
    if prefix.v is None and newest.v is None:
        v = None
    else:
        v = round((prefix.v or 0.0) + (newest.v or 0.0), 8)
    return Candle(
        newest.s,
        newest.t,
        ot,
        prefix.o,
        max(prefix.h, newest.h),
        min(prefix.l, newest.l),
        newest.c,
        v,
        name,
    )


class Aggregator:
    """Builds one higher interval for every symbol from base bars (``ot`` in epoch ms or s).

    Keeps the last ``keep`` buckets per symbol (their base bars), so late updates within them
    are corrected; older ones are ignored (returned as ``None``). The aggregates carry the
    interval's name in ``i``.
    """

    def __init__(self, interval: Interval, *, keep: int = 2, max_base: int = MAX_BASE_BARS) -> None:
        self.interval = interval
        self.keep = max(1, keep)
        self.max_base = max(2, max_base)
        self._name = interval.name
        self._bars: dict[str, OrderedDict[int | float, _Bar]] = {}

    def seed(self, aggregate: Candle, newest: Candle) -> bool:
        """Continue an aggregate built elsewhere (a new leader taking over): ``aggregate`` is
        the bar's latest state and ``newest`` the latest state of its newest base bar. The
        fold of the older base bars is taken as the aggregate less the newest bar's volume
        (high/low stay, as base bars only widen). Returns whether it applied (same bucket)."""
        ot = self.interval.bucket(newest.ot)
        if aggregate.ot != ot or aggregate.s != newest.s:
            return False
        v = None if aggregate.v is None else round(aggregate.v - (newest.v or 0.0), 8)
        prefix = Candle(aggregate.s, aggregate.t, ot, aggregate.o, aggregate.h, aggregate.l, aggregate.c, v, self._name)
        buckets = self._bars.setdefault(newest.s, OrderedDict())
        buckets[ot] = _Bar(ot, {newest.ot: newest}, prefix, newest, frozen=prefix)
        buckets.move_to_end(ot)
        while len(buckets) > self.keep:
            buckets.popitem(last=False)
        return True

    def update(self, base: Candle) -> Candle | None:
        """The new state of the aggregate ``base`` belongs to, or ``None`` if that bucket is
        older than the ones kept."""
        ot = self.interval.bucket(base.ot)
        name = self._name
        buckets = self._bars.get(base.s)
        if buckets is None:
            buckets = self._bars[base.s] = OrderedDict()
        bar = buckets.get(ot)
        if bar is None:
            if buckets and ot < next(iter(buckets)) and len(buckets) >= self.keep:
                return None  # older than everything kept
            bar = buckets[ot] = _Bar(ot, {base.ot: base}, None, base)
            if len(buckets) > 1 and ot < next(reversed(buckets)):
                buckets = self._bars[base.s] = OrderedDict(sorted(buckets.items()))
            while len(buckets) > self.keep:
                buckets.popitem(last=False)
            return _combine(None, base, ot, name)
        newest = bar.newest
        if base.ot == newest.ot:  # the still-open base bar moved
            bar.base[base.ot] = base
            bar.newest = base
        elif base.ot > newest.ot:  # a new base bar: fold the previous newest into the prefix
            bar.base[base.ot] = base
            bar.prefix = _combine(bar.prefix, newest, ot, name)
            bar.newest = base
            if len(bar.base) > self.max_base:  # bounded: the oldest kept base bar is frozen
                oldest = min(bar.base)
                bar.frozen = _combine(bar.frozen, bar.base.pop(oldest), ot, name)
        elif bar.frozen is not None and base.ot not in bar.base and base.ot < min(bar.base):
            return _combine(bar.prefix, newest, ot, name)  # too old to correct: ignored
        else:  # a late update of an older base bar: recompute the prefix from the base bars
            bar.base[base.ot] = base
            older = [bar.base[k] for k in sorted(bar.base) if k != newest.ot]
            if bar.frozen is not None:
                older.insert(0, bar.frozen)
            bar.prefix = fold(older, base.s, ot, name)
        return _combine(bar.prefix, bar.newest, ot, name)

"""Bar intervals and the aggregation of base bars into higher intervals. Pure.

Nothing here awaits, reads the clock or touches I/O: the hub feeds :class:`Aggregator` the
source's base bars (one interval, e.g. 1 m) in arrival order and gets back the new state of the
bar of each higher interval that the base bar belongs to.

Rules (UTC-aligned buckets; 1 d starts at 00:00 UTC): open = the first base bar's open,
high/low = max/min, close = the latest base bar's close, volume = the sum of the base bars'
latest volumes. An update of the still-open base bar updates the aggregate in place; a late
update of an older base bar corrects the aggregate it belongs to. Each aggregate is kept as a
*prefix* (every base bar but the newest, folded) plus the newest base bar, so the usual update
costs O(1) and the result is exactly what recomputing the bar from its base bars gives.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from .candles import Candle

UNITS: Final = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_INTERVAL_RE: Final = re.compile(r"^([1-9][0-9]{0,3})([smhdw])$")


class IntervalError(ValueError):
    """Not an interval name (``<n><unit>``, unit one of s, m, h, d, w)."""


@dataclass(frozen=True, slots=True, order=True)
class Interval:
    """A bar length. ``name`` is canonical (``5m``, ``1h``, ``1d``)."""

    ms: int
    name: str

    def start(self, t_ms: int | float) -> int:
        """The UTC-aligned start of the bar that ``t_ms`` (epoch ms) falls in."""
        t = int(t_ms)
        return t - t % self.ms


def parse_interval(text: str) -> Interval:
    """``"5m"`` -> ``Interval(300000, "5m")``; raises :class:`IntervalError`."""
    m = _INTERVAL_RE.match(text.strip())
    if m is None:
        raise IntervalError(f"not an interval: {text[:20]!r} (expected e.g. 1m, 5m, 1h, 1d)")
    n, unit = int(m.group(1)), m.group(2)
    return Interval(n * UNITS[unit], f"{n}{unit}")


@dataclass(slots=True)
class _Bar:
    """One aggregate: the fold of its base bars but the newest, and the newest."""

    ot: int
    base: dict[int | float, Candle]  # base bars of this bucket by their ot
    prefix: Candle | None  # fold of every base bar but the newest; None when there is one
    newest: Candle


def fold(bars: list[Candle], symbol: str, ot: int) -> Candle:
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
        v=sum(volumes) if volumes else None,
    )


def _combine(prefix: Candle | None, newest: Candle, ot: int) -> Candle:
    if prefix is None:
        return Candle(newest.s, newest.t, ot, newest.o, newest.h, newest.l, newest.c, newest.v)
    if prefix.v is None and newest.v is None:
        v = None
    else:
        v = (prefix.v or 0.0) + (newest.v or 0.0)
    return Candle(
        newest.s,
        newest.t,
        ot,
        prefix.o,
        max(prefix.h, newest.h),
        min(prefix.l, newest.l),
        newest.c,
        v,
    )


class Aggregator:
    """Builds one higher interval for every symbol from base bars whose ``ot`` is epoch ms.

    Keeps the last ``keep`` buckets per symbol (their base bars), so late updates within them
    are corrected; older ones are ignored (returned as ``None``).
    """

    def __init__(self, interval: Interval, *, keep: int = 2) -> None:
        self.interval = interval
        self.keep = max(1, keep)
        self._bars: dict[str, OrderedDict[int, _Bar]] = {}

    def update(self, base: Candle) -> Candle | None:
        """The new state of the aggregate ``base`` belongs to, or ``None`` if that bucket is
        older than the ones kept."""
        ot = self.interval.start(base.ot)
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
            return _combine(None, base, ot)
        newest = bar.newest
        if base.ot == newest.ot:  # the still-open base bar moved
            bar.base[base.ot] = base
            bar.newest = base
        elif base.ot > newest.ot:  # a new base bar: fold the previous newest into the prefix
            bar.base[base.ot] = base
            bar.prefix = _combine(bar.prefix, newest, ot)
            bar.newest = base
        else:  # a late update of an older base bar: recompute the prefix from the base bars
            bar.base[base.ot] = base
            older = [bar.base[k] for k in sorted(bar.base) if k != newest.ot]
            bar.prefix = fold(older, base.s, ot)
        return _combine(bar.prefix, bar.newest, ot)

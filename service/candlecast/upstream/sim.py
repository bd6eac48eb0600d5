"""The built-in simulator: seeded random-walk candles for a list of symbols.

:class:`Simulator` is pure (time is passed in); :class:`SimSource` paces it in the producer
thread at ``rate`` updates per second across all symbols, waiting on the stop event between
updates (pacing, not polling). It starts with ``backfill`` finished bars of made-up past per
symbol, so dashboards have history at once. Each update moves the current bar's high/low/close; a new bar
opens when the wall clock crosses a ``bar_seconds`` boundary. ``t`` and ``ot`` are epoch ms.

Plausible, whatever ``--rate``: each built-in symbol has its market's price level, tick and
yearly volatility (:data:`PROFILES`); any other symbol a seeded level, six significant digits
and 80 %. A move's size follows the *time* since the symbol's last update (a random walk with
``sigma * sqrt(dt)``), and the made-up past uses the same volatility per unit of time, so live
bars continue the history at its scale however many updates a second there are.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from ..model.candle import Candle
from ..model.intervals import align, cover_span
from .source import Emit, Upstream

__all__ = ["PROFILES", "SimSource", "Simulator"]

# Catch-up bound: after a stall (a full bridge, a suspended process), emit at most this many
# updates at once instead of the whole backlog.
_MAX_BURST = 10_000


#: Built-in symbols: (price level, decimals of the tick, yearly volatility) of their markets.
PROFILES: Final[dict[str, tuple[float, int, float]]] = {
    "BTCUSD": (65_000.0, 2, 0.60),
    "ETHUSD": (3_200.0, 2, 0.70),
    "SOLUSD": (150.0, 3, 0.90),
    "XRPUSD": (0.55, 5, 0.80),
    "EURUSD": (1.085, 5, 0.08),
    "GBPUSD": (1.27, 5, 0.09),
    "USDJPY": (150.0, 3, 0.10),
    "XAUUSD": (2_350.0, 2, 0.15),
}
_YEAR_SECONDS: Final = 365.25 * 86_400
#: Yearly volatility of a symbol without a profile.
_DEFAULT_VOLATILITY: Final = 0.80
#: Moves per made-up base bar (its high and low come from them).
_MOVES_PER_BAR: Final = 12


class _Bar:
    __slots__ = ("c", "h", "l", "o", "ot", "v")

    def __init__(self, ot: int, price: float) -> None:
        self.ot = ot
        self.o = self.h = self.l = self.c = price
        self.v = 0.0


class Simulator:
    """Deterministic for a given seed and sequence of ``now_ms`` values."""

    def __init__(self, symbols: Sequence[str], *, bar_seconds: float = 60.0, seed: int = 1) -> None:
        self._rng = random.Random(seed)
        self._symbols = tuple(symbols)
        self._bar_ms = max(1, round(bar_seconds * 1000))
        self._decimals: dict[str, int] = {}
        self._sigma: dict[str, float] = {}  # per sqrt(second)
        self._price: dict[str, float] = {}
        for s in self._symbols:
            level, decimals, volatility = PROFILES.get(s) or self._unknown()
            self._decimals[s] = decimals
            self._sigma[s] = volatility / math.sqrt(_YEAR_SECONDS)
            self._price[s] = round(level, decimals)
        self._last_ms: dict[str, int] = {}
        self._bars: dict[str, _Bar] = {}
        self._next = 0

    def _unknown(self) -> tuple[float, int, float]:
        level = 10 ** self._rng.uniform(0, 4.5)
        return level, max(0, 5 - math.floor(math.log10(level))), _DEFAULT_VOLATILITY

    def step(self, now_ms: int) -> Candle:
        """The next update: symbols take turns; the price moves by a small random step."""
        s = self._symbols[self._next]
        self._next = (self._next + 1) % len(self._symbols)
        ot = now_ms - now_ms % self._bar_ms
        bar = self._bars.get(s)
        if bar is None or ot > bar.ot:
            bar = self._bars[s] = _Bar(ot, self._price[s])
        last = self._last_ms.get(s)
        self._last_ms[s] = now_ms
        seconds = (now_ms - last) / 1000 if last is not None else self._bar_ms / 1000 / _MOVES_PER_BAR
        self._move(s, bar, max(seconds, 0.001))
        return Candle(s=s, t=now_ms, ot=bar.ot, o=bar.o, h=bar.h, l=bar.l, c=bar.c, v=bar.v)

    def backfill(self, now_ms: int, bars: int, higher: Sequence[tuple[int, str]] = ()) -> list[Candle]:
        """Made-up history before the bar ``now_ms`` falls in, so a dashboard has history from
        the first second, in every interval. Live steps continue from it.

        Without ``higher`` intervals: ``bars`` finished base bars per symbol. With them (each
        ``(length ms, name)``): first ``bars`` finished bars of each higher interval (tagged
        with its name) ending where the base bars start, then base bars from the start of the
        largest interval's bucket (of at most :data:`~candlecast.model.intervals.MAX_COVER` base bars) that is at
        least ``bars`` base bars back, up to now; the hub builds the higher intervals' recent
        bars from those, replacing the made-up ones."""
        out: list[Candle] = []
        current = now_ms - now_ms % self._bar_ms
        start = current - bars * self._bar_ms
        if higher and bars:
            # base bars cover whole buckets of the largest interval that spans at most
            # MAX_COVER base bars; a longer interval's current bar starts partial
            cover = cover_span((ms for ms, _ in higher), self._bar_ms, bars)
            if cover:
                start = align(start, cover)
            for ms, name in higher:
                for s in self._symbols:
                    out.extend(self._made_up(s, align(start, ms), ms, name, bars))
        for ot in range(start, current, self._bar_ms):
            for s in self._symbols:
                bar = _Bar(ot, self._price[s])
                for _ in range(_MOVES_PER_BAR):
                    self._move(s, bar, self._bar_ms / 1000 / _MOVES_PER_BAR)
                out.append(Candle(s, ot + self._bar_ms - 1, ot, bar.o, bar.h, bar.l, bar.c, bar.v))
        return out

    def _made_up(self, s: str, end: int, ms: int, name: str, bars: int) -> list[Candle]:
        """``bars`` bars of ``ms`` ms ending at ``end`` whose last close is the price now: a
        random walk taken backwards."""
        rng = self._rng
        scale = self._sigma[s] * math.sqrt(ms / 1000)  # the same volatility per unit of time as live
        digits = self._decimals[s]
        price = self._price[s]
        made: list[Candle] = []
        for k in range(1, bars + 1):
            close = price
            open_ = round(close * math.exp(rng.gauss(0.0, scale)), digits)
            high = max(open_, close, round(max(open_, close) * (1 + abs(rng.gauss(0.0, scale / 2))), digits))
            low = min(open_, close, round(min(open_, close) * (1 - abs(rng.gauss(0.0, scale / 2))), digits))
            ot = end - k * ms
            volume = round(rng.uniform(0.01, 5.0) * _MOVES_PER_BAR * ms / self._bar_ms, 4)
            made.append(Candle(s, ot + ms - 1, ot, open_, high, low, close, volume, name))
            price = open_
        made.reverse()
        return made

    def _move(self, s: str, bar: _Bar, seconds: float) -> None:
        """One step of the walk, ``seconds`` after the symbol's last one: sigma * sqrt(seconds)."""
        step = self._sigma[s] * math.sqrt(seconds)
        price = round(self._price[s] * math.exp(self._rng.gauss(0.0, step)), self._decimals[s])
        self._price[s] = price
        bar.c = price
        bar.h = max(bar.h, price)
        bar.l = min(bar.l, price)
        bar.v = round(bar.v + self._rng.uniform(0.01, 5.0), 4)


class SimSource:
    """Runs a :class:`Simulator` at ``rate`` updates/s until stopped."""

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        rate: float,
        bar_seconds: float = 60.0,
        seed: int = 1,
        backfill: int = 0,
        higher: Sequence[tuple[int, str]] = (),
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.sim = Simulator(symbols, bar_seconds=bar_seconds, seed=seed)
        self.rate = rate
        self.backfill = backfill
        self.higher = tuple(higher)
        self.upstream = Upstream()
        self.malformed: Mapping[str, int] = {}  # made-up data is never malformed
        self._wall_ms = wall_ms
        self._history_taken = False

    def history(self) -> list[Candle]:
        """The made-up past (:meth:`Simulator.backfill`), once: the feed delivers it as history,
        merged before the source runs, so readiness waits for it and no client gets it as live
        updates. Call it before :meth:`run` (which then starts with the present)."""
        if self._history_taken:
            return []
        self._history_taken = True
        return self.sim.backfill(self._wall_ms(), self.backfill, self.higher)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        up = self.upstream
        up.connected = True
        up.connects += 1
        for candle in self.history():  # not taken by a feed: emitted first, as before
            emit(candle)
        start = time.monotonic()
        sent = 0
        try:
            while not stop.is_set():
                now = time.monotonic()
                due = min(int((now - start) * self.rate) + 1 - sent, _MAX_BURST)
                if due > 0:
                    wall = self._wall_ms()
                    for _ in range(due):
                        emit(self.sim.step(wall))
                    sent += due
                    up.messages += due
                    up.last_message = now
                if due >= _MAX_BURST:  # fell behind: forget the backlog
                    start, sent = now, 0
                stop.wait(max(0.0, start + sent / self.rate - time.monotonic()))
        finally:
            up.connected = False

    def wake(self) -> None:
        """Nothing to interrupt: the stop event itself ends the wait."""

"""The history work beside a live stream: the start-up backfill and the fill after every
reconnect, over the broker's REST API (a :class:`~candlecast.history.client.Historian`).

:class:`HistoryFiller` runs in the event loop, in the runtime's (or an ingest's) task group:
:meth:`~HistoryFiller.run` backfills once, then fills each :class:`~candlecast.history.gaps.Gap`
handed to :meth:`~HistoryFiller.found` as the feed takes it from the bridge. Live candles never
wait for it: each result goes to ``deliver`` (the feed's), which puts it between two live
batches. A failed fetch is retried with backoff; ``/readyz`` says ``backfilling`` until the
backfill is in the hub, or its first attempt failed. :meth:`~HistoryFiller.run` closes the REST
client when it ends.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import anyio
from prometheus_client.core import CounterMetricFamily

from ..metrics import counter, gauge
from ..model.candle import Candle
from ..model.pacing import backoff
from .client import FetchFailed, Historian, live_owned
from .gaps import Gap, GapWatch

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

__all__ = ["Deliver", "HistoryFiller"]

log = logging.getLogger("candlecast.history")

#: How the filler hands bars to the feed: the candles, and what to call once they are merged.
Deliver = Callable[[list[Candle], Callable[[], object] | None], None]


class HistoryFiller:
    """Backfill at start, gap fill after every reconnect; see the module docstring."""

    def __init__(self, historian: Historian, *, retry_min: float = 0.5, retry_max: float = 30.0) -> None:
        self.historian = historian
        self.retry_min = retry_min
        self.retry_max = retry_max
        #: Fed in the producer thread by the feed's emit (see :class:`GapWatch`).
        self.watch = GapWatch()
        self.backfilling = historian.bars > 0 and bool(historian.symbols)
        self.deliver: Deliver | None = None  # set by the feed that carries the bars
        self._gaps: deque[Gap] = deque()
        self._gap_found = anyio.Event()
        self._rng = random.Random()

    def found(self, gap: Gap) -> None:
        """(loop) The producer thread saw a reconnect: fill ``gap``."""
        self._gaps.append(gap)
        self._gap_found.set()

    async def run(self) -> None:
        historian = self.historian
        try:
            async with anyio.create_task_group() as tg:
                if self.backfilling:
                    tg.start_soon(self._backfill)
                while True:
                    await self._gap_found.wait()
                    self._gap_found = anyio.Event()
                    while self._gaps:
                        tg.start_soon(self._fill, self._gaps.popleft())
        finally:
            self.backfilling = False
            with anyio.CancelScope(shield=True):
                await historian.client.aclose()

    def _handoff(self, candles: list[Candle], merged: Callable[[], object] | None = None) -> None:
        assert self.deliver is not None, "HistoryFiller.deliver is set by the feed before run()"
        self.deliver(candles, merged)

    def _backfilled(self) -> None:
        self.backfilling = False

    async def _backfill(self) -> None:
        historian = self.historian
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                got = await historian.backfill()
                break
            except FetchFailed as exc:
                if attempt == 0:
                    log.warning("history: backfill failed (%s); retrying with backoff, live data goes on", exc)
                    self.backfilling = False  # ready without it; it lands when a retry succeeds
                await anyio.sleep(self._delay(attempt))
                attempt += 1
        higher = {i.name: i.ms for i in historian.served}
        first_live = self.watch.first_live
        candles = [c for symbol_bars in got.values() for c in live_owned(symbol_bars, first_live, higher)]
        historian.client.stats.backfills += 1
        historian.client.stats.bars += len(candles)
        log.info(
            "history: backfilled %d bar(s) of %d symbol(s) in %.2fs%s",
            len(candles),
            len(got),
            time.monotonic() - started,
            f" after {attempt} retr(ies)" if attempt else "",
        )
        self._handoff(candles, self._backfilled)

    async def _fill(self, gap: Gap) -> None:
        historian = self.historian
        stats = historian.client.stats
        attempt = 0
        while True:
            try:
                got = await historian.fill(gap.symbol, gap.since, gap.until)
                break
            except FetchFailed as exc:
                stats.fill_failures += 1
                if attempt == 0:
                    log.warning(
                        "history: filling %s after a reconnect failed (%s); retrying with backoff", gap.symbol, exc
                    )
                await anyio.sleep(self._delay(attempt))
                attempt += 1
        stats.fills += 1
        stats.bars += len(got)
        log.info(
            "history: filled %s with %d bar(s) from %s to %s%s",
            gap.symbol,
            len(got),
            gap.since,
            gap.until,
            f" after {attempt} retr(ies)" if attempt else "",
        )
        self._handoff(got)

    def _delay(self, attempt: int) -> float:
        return backoff(attempt, initial=self.retry_min, maximum=self.retry_max, rng=self._rng)

    def metrics(self) -> Iterator[Metric]:
        stats = self.historian.client.stats
        yield gauge("history_backfilling", "1 while the start-up backfill is under way", int(self.backfilling))
        yield counter("history_requests", "REST history requests sent to the broker", stats.requests)
        yield counter(
            "history_rate_limited", "REST answers 429/418: every request waited Retry-After", stats.rate_limited
        )
        yield counter("history_bars", "Bars of history merged into the hub (backfill and gap fills)", stats.bars)
        yield counter("history_backfills", "Start-up backfills completed", stats.backfills)
        yield counter("history_fills", "Gap fills completed after a reconnect", stats.fills)
        yield counter(
            "history_fill_failures", "Gap fill attempts that failed (each is retried with backoff)", stats.fill_failures
        )
        rejected = CounterMetricFamily(
            "candlecast_history_rejected", "REST history answers or bars rejected, by reason", labels=["reason"]
        )
        for reason, count in stats.rejected.items():
            rejected.add_metric([reason], count)
        yield rejected

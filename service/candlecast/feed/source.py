"""The one-process feed: an upstream source in a producer thread, bridged into the event loop,
with its history work beside it.

:class:`SourceFeed` runs a :class:`~candlecast.upstream.source.Source` in a
:class:`~candlecast.upstream.bridge.ProducerThread`; the thread's ``emit`` puts each candle into
the :class:`~candlecast.upstream.bridge.Bridge` (which blocks it while full: backpressure on the
upstream socket, nothing dropped), and with a :class:`~candlecast.history.filler.HistoryFiller`
also shows each base bar to the filler's gap watch, signalling a reconnect's gap through the
bridge, the one thread -> loop crossing. :meth:`SourceFeed.batches` yields live batches, the
filler's history batches between them, and hands the filler its gaps.

Event loop, except ``emit`` (the producer thread). :meth:`SourceFeed.stop` stops the thread and
closes the bridge, and ends :meth:`SourceFeed.run` (the filler's work); idempotent.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, cast

import anyio
from prometheus_client.core import CounterMetricFamily

from ..metrics import counter, gauge
from ..model.candle import Candle
from ..upstream.bridge import Bridge, ProducerThread
from .base import Batch, BatchKind, Ingest, Readiness

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..history.filler import HistoryFiller
    from ..upstream.source import HasHistory, Source

__all__ = ["SourceFeed"]


class SourceFeed:
    """An upstream source run in a producer thread, bridged into the event loop, and (with a
    filler) its history. Create it in the event loop it delivers to; :meth:`start` starts the
    thread, :meth:`run` the filler's work (returns at once without one)."""

    def __init__(
        self, source: Source, *, bridge_size: int, stale_after: float, filler: HistoryFiller | None = None
    ) -> None:
        self.source = source
        self.stale_after = stale_after
        self.bridge: Bridge[Ingest] = Bridge(bridge_size)
        self.filler = filler
        self._history: deque[Batch] = deque()
        self.seeding = False  # the source's own start-up history is not in the hub yet
        self._scope = anyio.CancelScope()
        put = self.bridge.put
        monotonic = time.monotonic

        if filler is None:

            def emit(candle: Candle) -> None:
                put((candle, monotonic()))

        else:
            filler.deliver = self.deliver
            up = source.upstream
            see = filler.watch.see
            signal = self.bridge.signal

            def emit(candle: Candle) -> None:
                if candle.i is None:
                    gap = see(candle, up.connects)
                    if gap is not None:
                        signal(gap)  # the loop hands it to the filler
                put((candle, monotonic()))

        self._producer = ProducerThread(source, emit, self.bridge)

    def start(self) -> None:
        """Take the source's own start-up history, if it has one, as a history batch (readiness
        waits until the hub has merged it), then start the producer thread."""
        history = getattr(self.source, "history", None)
        if callable(history):
            candles = cast("HasHistory", self.source).history()
            if candles:
                self.seeding = True
                self.deliver(candles, self._seeded)
        self._producer.start()

    def _seeded(self) -> None:
        self.seeding = False

    async def run(self) -> None:
        if self.filler is None:
            return
        with self._scope:
            await self.filler.run()

    def deliver(self, candles: list[Candle], merged: Callable[[], object] | None = None) -> None:
        """(loop) Put a history batch between two live batches: the waiting ``get_batch`` is
        interrupted for it; ``merged`` is called once the hub has it."""
        now = time.monotonic()
        self._history.append(Batch(BatchKind.HISTORY, [(c, now) for c in candles], merged))
        self.bridge.interrupt()

    async def batches(self, limit: int) -> AsyncIterator[Batch]:
        bridge = self.bridge
        get_batch, take_events = bridge.get_batch, bridge.take_events
        pending = self._history
        filler = self.filler
        live = BatchKind.LIVE
        while True:
            while pending:
                yield pending.popleft()
            try:
                items = await get_batch(limit)
            except anyio.EndOfStream:
                return
            if filler is not None:
                for gap in take_events():
                    filler.found(gap)  # type: ignore[arg-type]  # the emit above signals only gaps
            if items:
                yield Batch(live, items)

    def readiness(self, now: float) -> Readiness:
        up = self.source.upstream
        age = up.message_age(now)
        if self.seeding or (self.filler is not None and self.filler.backfilling):
            return Readiness("backfilling", age)
        if not up.connected:
            return Readiness("upstream finished" if up.finished else "upstream not connected", age)
        if age is None:
            return Readiness("no upstream data yet")
        if age > self.stale_after:
            return Readiness(f"no upstream data for {age:.1f}s", age)
        return Readiness(None, age)

    def metrics(self) -> Iterator[Metric]:
        up = self.source.upstream
        bridge = self.bridge
        yield gauge("bridge_depth", "Candles waiting in the producer->loop bridge", bridge.qsize())
        yield counter("bridge_wakeups", "Event-loop wake-ups scheduled by the producer thread", bridge.wakeups)
        yield counter("bridge_full_waits", "Times the producer thread waited for room in the bridge", bridge.full_waits)
        yield gauge("upstream_connected", "1 while the upstream is connected", int(up.connected))
        yield counter("upstream_connects", "Upstream connections made", up.connects)
        yield counter("upstream_reconnects", "Upstream reconnect attempts", up.reconnects)
        yield counter("upstream_messages", "Raw upstream messages received", up.messages)
        yield counter(
            "upstream_heartbeats", "Heartbeat answers from the broker (a format's text pong), not data", up.heartbeats
        )
        age = up.message_age(time.monotonic())
        yield gauge(
            "upstream_last_message_age_seconds",
            "Seconds since the last upstream message (-1: none yet)",
            -1.0 if age is None else age,
        )
        malformed = CounterMetricFamily(
            "candlecast_malformed", "Malformed upstream messages skipped, by reason", labels=["reason"]
        )
        for reason, count in self.source.malformed.items():
            malformed.add_metric([reason], count)
        yield malformed
        if self.filler is not None:
            yield from self.filler.metrics()

    async def stop(self) -> None:
        self._scope.cancel()
        await self._producer.stop()

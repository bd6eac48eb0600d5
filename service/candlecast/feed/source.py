"""The feed: the hub's input, an async stream of candle batches, and the pump that drains it.

The hub does not know where candles come from. A :class:`Feed` is anything that yields batches
of ``(candle, received)`` pairs in the event loop -- ``received`` is the ``time.monotonic()`` at
which the process first saw the candle, the start of the delivery-latency clock -- and says
whether it is ready and what it measures. :class:`SourceFeed` is the one-process feed: an
upstream :class:`~candlecast.upstream.source.Source` in a producer thread, carried into the loop by
a :class:`~candlecast.upstream.bridge.Bridge`. :func:`pump` moves batches from a feed into the hub.

Runs in the event loop, except :class:`SourceFeed`'s producer thread. :meth:`Feed.stop` closes
what the feed opened (the thread and the bridge); it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
from prometheus_client.core import CounterMetricFamily

from ..metrics import counter, gauge
from ..model.candle import Candle
from ..model.pacing import backoff
from ..upstream.bridge import Bridge, ProducerThread

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..fanout.hub import Hub
    from ..history.client import Historian
    from ..settings import Settings
    from ..upstream.source import Source

log = logging.getLogger("candlecast.history")

Ingest = tuple[Candle, float]
#: Most candles published per pump step before yielding to the client writers. Each step is
#: also capped at half the per-client bound, so a client that keeps up always has room.
PUMP_BATCH = 512


class Resync(list[Ingest]):
    """A batch that replaces the hub's bars of the symbols it carries and re-snapshots every
    client (:meth:`candlecast.fanout.hub.Hub.resync`): a backplane edge's first load, or its recovery
    from a gap. Every other batch is a plain list of live candles."""

    __slots__ = ()


class History(list[Ingest]):
    """A batch of bars from the broker's REST API (a start-up backfill or a gap fill): the hub
    merges it into its history in order, then re-snapshots every client
    (:meth:`candlecast.fanout.hub.Hub.merge`). A backplane ingest publishes it like live candles."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` says: ``reason`` is why the feed is not ready (``None``: ready), and
    ``age`` the seconds since its last data, when it had any."""

    reason: str | None
    age: float | None = None


class Feed(Protocol):
    """Where the hub's candles come from."""

    def start(self) -> None:
        """Begin producing (in the event loop, once)."""

    async def run(self) -> None:
        """The feed's own background work (a backplane ingest's lease and publishing), run in the
        runtime's task group until :meth:`stop`; returns at once when there is none."""

    def batches(self, limit: int) -> AsyncIterator[list[Ingest]]:
        """Batches of at most ``limit`` candles, oldest first, until the feed ends."""
        ...

    def readiness(self, now: float) -> Readiness:
        """Whether data is flowing, for ``/readyz``."""
        ...

    def metrics(self) -> Iterator[Metric]:
        """The feed's own metric families, for ``/metrics``."""
        ...

    async def stop(self) -> None:
        """Stop producing and release what :meth:`start` took. Idempotent."""


async def pump(feed: Feed, hub: Hub) -> None:
    """Feed -> hub until the feed ends. Yields to the loop after every batch."""
    publish, flush = hub.publish, hub.flush
    limit = max(1, min(PUMP_BATCH, hub.client_queue // 2))
    async for batch in feed.batches(limit):
        if type(batch) is Resync:
            hub.resync(batch)
        elif type(batch) is History:
            hub.merge(batch)
        else:
            for candle, received in batch:
                publish(candle, received)
            flush()  # the direct path: one write per caught-up client for the whole batch
            if hub.behind:  # older bars inserted (an ingest's gap fill, as an edge reads it)
                hub.refresh()
        await anyio.lowlevel.checkpoint()


class SourceFeed:
    """An upstream source run in a producer thread, bridged into the event loop, and its history.

    The thread calls :meth:`emit` per candle; the bridge blocks it while full (backpressure on
    the upstream socket, nothing dropped). Create it in the event loop it delivers to.

    With a :class:`~candlecast.history.client.Historian` (the format has a history half), :meth:`run`
    backfills at start and fills the gap after every reconnect, over the broker's REST API,
    beside the live stream: live candles never wait for it. The producer thread notes, per
    symbol, the first live bar and, on the first bar of a new connection, the last bar before
    the drop; the fill fetches the bars in between. Each result is delivered as a
    :class:`History` batch between two live batches (the bridge's waiting ``get_batch`` is
    interrupted for it). ``/readyz`` says ``backfilling`` until the backfill is in the hub (or
    its first attempt failed; it is retried with backoff meanwhile, as a failed fill is).
    """

    def __init__(
        self,
        source: Source,
        *,
        bridge_size: int,
        stale_after: float,
        historian: Historian | None = None,
        retry_min: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.source = source
        self.stale_after = stale_after
        self.bridge: Bridge[Ingest] = Bridge(bridge_size)
        self.historian = historian
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.backfilling = historian is not None and historian.bars > 0 and bool(historian.symbols)
        self._history: deque[History] = deque()
        self._backfill_batch: History | None = None
        self._first_live: dict[str, int | float] = {}  # written by the producer thread
        self._gaps: deque[tuple[str, int | float, int | float]] = deque()
        self._gap_found = anyio.Event()
        self._scope = anyio.CancelScope()
        self._rng = random.Random()
        put = self.bridge.put
        monotonic = time.monotonic

        if historian is None:

            def emit(candle: Candle) -> None:
                put((candle, monotonic()))

        else:
            up = source.upstream
            last: dict[str, tuple[int | float, int]] = {}
            first_live = self._first_live
            call_soon = asyncio.get_running_loop().call_soon_threadsafe
            found = self._found

            def emit(candle: Candle) -> None:
                if candle.i is None:
                    s, ot, n = candle.s, candle.ot, up.connects
                    prev = last.get(s)
                    if prev is None:
                        first_live[s] = ot
                    elif prev[1] != n and ot > prev[0]:  # the first bar of a new connection
                        try:
                            call_soon(found, s, prev[0], ot)
                        except RuntimeError:  # the loop is closed: nobody to fill for
                            pass
                    last[s] = (ot, n)
                put((candle, monotonic()))

        self._producer = ProducerThread(source, emit, self.bridge)

    def start(self) -> None:
        self._producer.start()

    async def run(self) -> None:
        historian = self.historian
        if historian is None:
            return
        try:
            with self._scope:
                async with anyio.create_task_group() as tg:
                    if self.backfilling:
                        tg.start_soon(self._backfill, historian)
                    while True:
                        await self._gap_found.wait()
                        self._gap_found = anyio.Event()
                        while self._gaps:
                            tg.start_soon(self._fill, historian, *self._gaps.popleft())
        finally:
            self.backfilling = False
            with anyio.CancelScope(shield=True):
                await historian.client.aclose()

    def _found(self, symbol: str, since: int | float, until: int | float) -> None:
        """(loop) The producer thread saw a reconnect: fill ``[since, until)`` of ``symbol``."""
        self._gaps.append((symbol, since, until))
        self._gap_found.set()

    def _deliver(self, candles: list[Candle]) -> History:
        now = time.monotonic()
        batch = History((c, now) for c in candles)
        self._history.append(batch)
        self.bridge.interrupt()
        return batch

    async def _backfill(self, historian: Historian) -> None:
        from ..history.client import FetchFailed, live_owned

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
        candles = [c for symbol_bars in got.values() for c in live_owned(symbol_bars, self._first_live, higher)]
        historian.client.stats.backfills += 1
        historian.client.stats.bars += len(candles)
        log.info(
            "history: backfilled %d bar(s) of %d symbol(s) in %.2fs%s",
            len(candles),
            len(got),
            time.monotonic() - started,
            f" after {attempt} retr(ies)" if attempt else "",
        )
        self._backfill_batch = self._deliver(candles)

    async def _fill(self, historian: Historian, symbol: str, since: int | float, until: int | float) -> None:
        from ..history.client import FetchFailed

        stats = historian.client.stats
        attempt = 0
        while True:
            try:
                got = await historian.fill(symbol, since, until)
                break
            except FetchFailed as exc:
                stats.fill_failures += 1
                if attempt == 0:
                    log.warning("history: filling %s after a reconnect failed (%s); retrying with backoff", symbol, exc)
                await anyio.sleep(self._delay(attempt))
                attempt += 1
        stats.fills += 1
        stats.bars += len(got)
        log.info(
            "history: filled %s with %d bar(s) from %s to %s%s",
            symbol,
            len(got),
            since,
            until,
            f" after {attempt} retr(ies)" if attempt else "",
        )
        self._deliver(got)

    def _delay(self, attempt: int) -> float:
        return backoff(attempt, initial=self.retry_min, maximum=self.retry_max, rng=self._rng)

    async def batches(self, limit: int) -> AsyncIterator[list[Ingest]]:
        get_batch = self.bridge.get_batch
        pending = self._history
        while True:
            while pending:
                history = pending.popleft()
                yield history  # merged by the time the pump asks again
                if history is self._backfill_batch:
                    self._backfill_batch = None
                    self.backfilling = False
            try:
                batch = await get_batch(limit)
            except anyio.EndOfStream:
                return
            if batch:
                yield batch

    def readiness(self, now: float) -> Readiness:
        up = self.source.upstream
        age = up.message_age(now)
        if self.backfilling:
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
        if self.historian is not None:
            yield from _history_metrics(self)

    async def stop(self) -> None:
        self._scope.cancel()
        await self._producer.stop()


def _history_metrics(feed: SourceFeed) -> Iterator[Metric]:
    assert feed.historian is not None
    stats = feed.historian.client.stats
    yield gauge("history_backfilling", "1 while the start-up backfill is under way", int(feed.backfilling))
    yield counter("history_requests", "REST history requests sent to the broker", stats.requests)
    yield counter("history_rate_limited", "REST answers 429/418: every request waited Retry-After", stats.rate_limited)
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


FeedFactory = Callable[["Settings"], Feed]

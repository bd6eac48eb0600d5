"""The feed: the hub's input, an async stream of candle batches, and the pump that drains it.

The hub does not know where candles come from. A :class:`Feed` is anything that yields batches
of ``(candle, received)`` pairs in the event loop -- ``received`` is the ``time.monotonic()`` at
which the process first saw the candle, the start of the delivery-latency clock -- and says
whether it is ready and what it measures. :class:`SourceFeed` is the one-process feed: an
upstream :class:`~candlecast.sources.base.Source` in a producer thread, carried into the loop by
a :class:`~candlecast.bridge.Bridge`. :func:`pump` moves batches from a feed into the hub.

Runs in the event loop, except :class:`SourceFeed`'s producer thread. :meth:`Feed.stop` closes
what the feed opened (the thread and the bridge); it is idempotent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio
from prometheus_client.core import CounterMetricFamily

from .bridge import Bridge, ProducerThread
from .candles import Candle
from .metrics import counter, gauge

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .hub import Hub
    from .settings import Settings
    from .sources.base import Source

Ingest = tuple[Candle, float]
#: Most candles published per pump step before yielding to the client writers. Each step is
#: also capped at half the per-client bound, so a client that keeps up always has room.
PUMP_BATCH = 512


class Resync(list[Ingest]):
    """A batch that replaces the hub's bars of the symbols it carries and re-snapshots every
    client (:meth:`candlecast.hub.Hub.resync`): a backplane edge's first load, or its recovery
    from a gap. Every other batch is a plain list of live candles."""

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
    publish = hub.publish
    limit = max(1, min(PUMP_BATCH, hub.client_queue // 2))
    async for batch in feed.batches(limit):
        if type(batch) is Resync:
            hub.resync(batch)
        else:
            for candle, received in batch:
                publish(candle, received)
        await anyio.lowlevel.checkpoint()


class SourceFeed:
    """An upstream source run in a producer thread, bridged into the event loop.

    The thread calls :meth:`emit` per candle; the bridge blocks it while full (backpressure on
    the upstream socket, nothing dropped). Create it in the event loop it delivers to.
    """

    def __init__(self, source: Source, *, bridge_size: int, stale_after: float) -> None:
        self.source = source
        self.stale_after = stale_after
        self.bridge: Bridge[Ingest] = Bridge(bridge_size)
        put = self.bridge.put
        monotonic = time.monotonic

        def emit(candle: Candle) -> None:
            put((candle, monotonic()))

        self._producer = ProducerThread(source, emit, self.bridge)

    def start(self) -> None:
        self._producer.start()

    async def run(self) -> None:
        return

    async def batches(self, limit: int) -> AsyncIterator[list[Ingest]]:
        get_batch = self.bridge.get_batch
        while True:
            try:
                yield await get_batch(limit)
            except anyio.EndOfStream:
                return

    def readiness(self, now: float) -> Readiness:
        up = self.source.upstream
        age = up.message_age(now)
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

    async def stop(self) -> None:
        await self._producer.stop()


FeedFactory = Callable[["Settings"], Feed]


def for_settings(settings: Settings) -> Feed:
    """The feed ``settings`` select: by ``--role``, their source in a producer thread (``all``),
    that source published to Redis (``ingest``), or candles read from Redis (``edge``). Only the
    last two import the backplane (and redis-py)."""
    if settings.role == "edge":
        from .backplane.edge import EdgeFeed

        return EdgeFeed(settings)
    if settings.role == "ingest":
        from .backplane.ingest import IngestFeed

        return IngestFeed(settings, source_feed)
    return source_feed(settings)


def source_feed(settings: Settings) -> SourceFeed:
    """The upstream source ``settings`` select, in a producer thread (not started)."""
    from . import sources

    return SourceFeed(sources.build(settings), bridge_size=settings.bridge_size, stale_after=settings.stale_after)

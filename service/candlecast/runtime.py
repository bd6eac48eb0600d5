"""The runtime: everything a running candlecast holds, built and torn down by the lifespan.

:func:`running` builds the :class:`Runtime` in the event loop -- counters, hub, feed and the
metrics registry -- starts the feed and the pump (feed -> hub) in its task group, and on exit
tears them down in order: the hub ends every client with 1001 (so sessions close first), then
the feed stops (its producer thread and bridge), which ends the pump. Each step is idempotent,
so an earlier drain (:meth:`candlecast.web.app.Service.drain`) makes the hub's a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from prometheus_client import CollectorRegistry

from .fanout.hub import Hub
from .fanout.stats import Stats
from .feed.source import Feed, FeedFactory, pump
from .metrics import Collector, make_registry
from .settings import Settings, interval_set

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The one way in to a running candlecast's state, for routes, the endpoint and the drain."""

    settings: Settings
    stats: Stats
    hub: Hub
    feed: Feed
    registry: CollectorRegistry


@asynccontextmanager
async def running(settings: Settings, feed_factory: FeedFactory) -> AsyncIterator[Runtime]:
    """Build, start, yield and finally stop a :class:`Runtime`. Event loop only."""
    stats = Stats()
    hub = Hub(
        history=settings.history,
        client_queue=settings.client_queue,
        max_clients=settings.max_clients,
        stats=stats,
        intervals=interval_set(settings),
        aggregate=settings.role != "edge",
        snapshot_bytes=settings.snapshot_bytes,
        snapshot_rate=settings.snapshot_rate,
    )
    feed = feed_factory(settings)
    runtime = Runtime(settings, stats, hub, feed, make_registry(Collector(stats, hub, feed.metrics)))
    async with anyio.create_task_group() as tg:
        tg.start_soon(pump, feed, hub, name="candlecast-pump")
        tg.start_soon(feed.run, name="candlecast-feed")
        feed.start()
        log.info("candlecast: source %s started", settings.source)
        try:
            yield runtime
        finally:
            hub.close()
            with anyio.CancelScope(shield=True):
                await feed.stop()
            log.info("candlecast: stopped")

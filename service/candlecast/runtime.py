"""The runtime: the composition root. Everything a running candlecast holds, assembled from the
settings by role, started and torn down by the lifespan.

By ``--role``: ``all`` runs the upstream source in a producer thread (a
:class:`~candlecast.feed.source.SourceFeed`, with a
:class:`~candlecast.history.filler.HistoryFiller` when the format has a history half) into the
hub; ``edge`` reads Redis into the hub (:class:`~candlecast.backplane.edge.EdgeFeed`); ``ingest``
builds no hub: its :class:`~candlecast.backplane.ingest.IngestPublisher` runs the source into
Redis. Only the last two import the backplane (and redis-py); only a format with a history half
imports the REST client (and httpx).

:func:`running` builds the :class:`Runtime` in the event loop, starts its tasks (the pump feed ->
hub, the source's history work, or the publisher) in its task group, and on exit tears them down
in order: the hub ends every client with 1001 (so sessions close first), then the feed or the
publisher stops (the producer thread and the bridge), which ends the pump. Each step is
idempotent, so an earlier drain (:meth:`candlecast.web.app.Service.drain`) makes the hub's a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import CollectorRegistry

from .fanout.hub import Hub
from .fanout.stats import Stats
from .feed.base import Feed, Observed, pump
from .feed.source import SourceFeed
from .metrics import Collector, make_registry
from .settings import Derived, Settings
from .wire.encoder import ENCODER

if TYPE_CHECKING:
    from .history.filler import HistoryFiller

__all__ = ["Runtime", "running", "source_feed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Runtime:
    """The one way in to a running candlecast's state, for routes, the endpoint and the drain."""

    settings: Settings
    stats: Stats
    #: The input side, for ``/readyz`` and ``/metrics``: the feed, or an ingest's publisher.
    intake: Observed
    registry: CollectorRegistry
    served: Hub | None = field(default=None)

    @property
    def hub(self) -> Hub:
        """The hub the clients are served from; an ingest has none (it serves no client)."""
        if self.served is None:
            raise RuntimeError("an ingest serves no clients: it has no hub")
        return self.served


@asynccontextmanager
async def running(settings: Settings, derived: Derived) -> AsyncIterator[Runtime]:
    """Build, start, yield and finally stop a :class:`Runtime` (``derived``: what the settings
    imply, worked out at start-up). Event loop only."""
    stats = Stats()
    tasks: list[tuple[Callable[[], Coroutine[Any, Any, None]], str]] = []
    hub: Hub | None = None
    stop: Callable[[], Coroutine[Any, Any, None]]
    if settings.role == "ingest":
        from .backplane.ingest import IngestPublisher

        publisher = IngestPublisher(settings, lambda s: source_feed(s, derived), intervals=derived.intervals)
        intake: Observed = publisher
        tasks.append((publisher.run, "candlecast-ingest"))
        stop, start = publisher.stop, None
    else:
        hub = Hub(
            history=settings.history,
            client_queue=settings.client_queue,
            max_clients=settings.max_clients,
            stats=stats,
            encoder=ENCODER,
            intervals=derived.intervals,
            aggregate=settings.role != "edge",
            snapshot_bytes=settings.snapshot_bytes,
            snapshot_rate=settings.snapshot_rate,
        )
        feed: Feed
        if settings.role == "edge":
            from .backplane.edge import EdgeFeed

            feed = EdgeFeed(settings)
            start = None
        else:
            feed = source = source_feed(settings, derived)
            tasks.append((source.run, "candlecast-history"))
            start = source.start
        served = hub

        async def pump_feed() -> None:
            await pump(feed, served)

        tasks.append((pump_feed, "candlecast-pump"))
        intake, stop = feed, feed.stop
    runtime = Runtime(settings, stats, intake, make_registry(Collector(stats, hub, intake.metrics)), hub)
    async with anyio.create_task_group() as tg:
        for task, name in tasks:
            tg.start_soon(task, name=name)
        if start is not None:
            start()
        log.info("candlecast: source %s started", settings.source)
        try:
            yield runtime
        finally:
            if hub is not None:
                hub.close()
            with anyio.CancelScope(shield=True):
                await stop()
            log.info("candlecast: stopped")


def source_feed(settings: Settings, derived: Derived) -> SourceFeed:
    """The upstream source ``settings`` select, in a producer thread (not started), with its
    history work when the format has a history half."""
    from . import upstream

    return SourceFeed(
        upstream.build(settings, derived),
        bridge_size=settings.bridge_size,
        stale_after=settings.stale_after,
        filler=_filler(settings, derived),
    )


def _filler(settings: Settings, derived: Derived) -> HistoryFiller | None:
    """The backfill and gap fill ``settings`` call for: ``--source ws`` with a format that has a
    history half and names its streams in the upstream URL or the subscribe message."""
    if settings.source != "ws" or settings.upstream is None:
        return None
    from .formats.contract import subscribe_message

    half = derived.history
    if half is None:
        return None
    wanted = half.streams(settings.upstream, subscribe_message(settings.subscribe))
    if not wanted:
        log.warning("history: the upstream URL and the subscribe message name no stream: no backfill, no gap fill")
        return None
    from .history.client import Historian, RestClient
    from .history.filler import HistoryFiller

    intervals = derived.intervals
    for w in wanted:
        if w.interval is not None and w.interval != intervals.base.name:
            log.warning(
                "history: %s streams %s bars but the base interval is %s (--base-interval)",
                w.symbol,
                w.interval,
                intervals.base.name,
            )
    client = RestClient(
        half, settings.rest_url or half.base_url, upstream=settings.upstream, timeout=settings.rest_timeout
    )
    historian = Historian(
        client, wanted, base=intervals.base, higher=intervals.higher, bars=min(settings.backfill, settings.history)
    )
    return HistoryFiller(historian, retry_min=settings.reconnect_min, retry_max=settings.reconnect_max)

"""Which feed the settings select, assembled: by ``--role``, the upstream source in a producer
thread with its history over REST (``all``), that source published to Redis (``ingest``), or
candles read from Redis (``edge``).

Start-up only. Kept apart from :mod:`candlecast.feed.source` (the feed protocol and the source feed),
which the backplane's feeds build on: this module sits above both.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .feed.source import Feed, SourceFeed

if TYPE_CHECKING:
    from .history.client import Historian
    from .settings import Settings

log = logging.getLogger(__name__)


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
    """The upstream source ``settings`` select, in a producer thread (not started), with its
    history over REST when the format has a history half."""
    from . import upstream as sources

    return SourceFeed(
        sources.build(settings),
        bridge_size=settings.bridge_size,
        stale_after=settings.stale_after,
        historian=historian_for(settings),
        retry_min=settings.reconnect_min,
        retry_max=settings.reconnect_max,
    )


def historian_for(settings: Settings) -> Historian | None:
    """The backfill and gap fill ``settings`` call for: ``--source ws`` with a format that has a
    history half and names its streams in the upstream URL or the subscribe message."""
    if settings.source != "ws" or settings.upstream is None:
        return None
    from .formats.contract import subscribe_message
    from .formats.registry import history
    from .history.client import Historian, RestClient
    from .settings import interval_set

    half = history(settings.format)  # Settings checked that it resolves
    if half is None:
        return None
    wanted = half.streams(settings.upstream, subscribe_message(settings.subscribe))
    if not wanted:
        log.warning("history: the upstream URL and the subscribe message name no stream: no backfill, no gap fill")
        return None
    intervals = interval_set(settings)
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
    return Historian(
        client, wanted, base=intervals.base, higher=intervals.higher, bars=min(settings.backfill, settings.history)
    )

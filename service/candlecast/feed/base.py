"""The hub's input: the :class:`Feed` protocol, its :class:`Batch` es (each says its kind), and
:func:`pump`, which moves batches from a feed into the hub.

The hub does not know where candles come from. A :class:`Feed` yields batches of ``(candle,
received)`` pairs in the event loop -- ``received`` is the ``time.monotonic()`` at which the
process first saw the candle, the start of the delivery-latency clock -- and says whether it is
ready and what it measures (:class:`Observed`, which an ingest's publisher, feeding no hub, is
too). Event loop only; nothing here owns anything to close.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio

from ..model.candle import Candle

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..fanout.hub import Hub

__all__ = ["PUMP_BATCH", "Batch", "BatchKind", "Feed", "Ingest", "Observed", "Readiness", "pump"]

Ingest = tuple[Candle, float]
#: Most candles published per pump step before yielding to the client writers. Each step is
#: also capped at half the per-client bound, so a client that keeps up always has room.
PUMP_BATCH = 512


class BatchKind(enum.Enum):
    """What the hub does with a batch."""

    #: Live candles: published (and fanned out) one by one.
    LIVE = "live"
    #: Bars from the broker's REST API (a start-up backfill or a gap fill): merged into the
    #: history in order, then every client re-snapshotted (:meth:`~candlecast.fanout.hub.Hub.merge`).
    HISTORY = "history"
    #: Every bar of the symbols carried, replacing the hub's, then every client re-snapshotted
    #: (:meth:`~candlecast.fanout.hub.Hub.resync`): a backplane edge's first load or its recovery.
    RESYNC = "resync"


@dataclass(slots=True)
class Batch:
    """Candles for the hub, oldest first, and what to do with them. ``merged``, if set, is
    called once the hub has taken the batch in (a backfill then stops holding ``/readyz``)."""

    kind: BatchKind
    items: list[Ingest]
    merged: Callable[[], object] | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/readyz`` says: ``reason`` is why the feed is not ready (``None``: ready), and
    ``age`` the seconds since its last data, when it had any."""

    reason: str | None
    age: float | None = None


class Observed(Protocol):
    """What ``/readyz`` and ``/metrics`` ask of the input side (a feed, or an ingest's publisher)."""

    def readiness(self, now: float) -> Readiness:
        """Whether data is flowing."""
        ...

    def metrics(self) -> Iterator[Metric]:
        """Its own metric families."""
        ...


class Feed(Observed, Protocol):
    """Where the hub's candles come from."""

    def batches(self, limit: int) -> AsyncIterator[Batch]:
        """Batches of at most ``limit`` live candles (history and resync batches may be larger),
        until the feed ends or :meth:`stop`."""
        ...

    async def stop(self) -> None:
        """Stop producing and release what the feed holds. Idempotent."""


async def pump(feed: Feed, hub: Hub) -> None:
    """Feed -> hub until the feed ends. Yields to the loop after every batch."""
    publish, flush = hub.publish, hub.flush
    live, history = BatchKind.LIVE, BatchKind.HISTORY
    limit = max(1, min(PUMP_BATCH, hub.client_queue // 2))
    async for batch in feed.batches(limit):
        kind = batch.kind
        if kind is live:
            for candle, received in batch.items:
                publish(candle, received)
            flush()  # the direct path: one write per caught-up client for the whole batch
            if hub.behind:  # older bars inserted (an ingest's gap fill, as an edge reads it)
                hub.refresh()
        elif kind is history:
            hub.merge(batch.items)
        else:
            hub.resync(batch.items)
        if batch.merged is not None:
            batch.merged()
        await anyio.lowlevel.checkpoint()

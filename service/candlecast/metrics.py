"""The Prometheus exposition: ``/metrics``.

Event-loop thread. :class:`Collector` reads, at scrape time, the serving counters
(:class:`~candlecast.fanout.stats.Stats`), the hub's gauges, and whatever the feed reports about itself
(a callable, :meth:`candlecast.feed.source.Feed.metrics` in practice); nothing is copied on the hot
path. Owns nothing to close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector as _Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .fanout.hub import Hub
    from .fanout.stats import Stats

__all__ = ["CONTENT_TYPE_LATEST", "Collector", "counter", "gauge", "make_registry", "render"]


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"candlecast_{name}", doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"candlecast_{name}", doc, value=value)


class Collector(_Collector):
    """Reads the live objects at scrape time."""

    def __init__(self, stats: Stats, hub: Hub | None, feed_metrics: Callable[[], Iterable[Metric]]) -> None:
        self.stats = stats
        self.hub = hub
        self.feed_metrics = feed_metrics

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        hub = self.hub  # None in an ingest, which serves no client
        yield gauge("clients", "WebSocket clients connected now", hub.clients if hub is not None else 0)
        yield counter("clients_connected", "WebSocket clients accepted since start", s.clients_total)
        yield counter(
            "clients_rejected", "WebSocket clients refused (full, auth, origin, bad query)", s.rejected_clients
        )
        yield counter("client_errors", "Error frames sent for bad client messages", s.client_errors)
        yield counter("candles_in", "Candles published by the hub", s.candles_in)
        yield counter("candles_out", "Candles delivered to clients (one per client)", s.candles_out)
        yield counter("frames_out", "WebSocket data frames sent to clients", s.frames_out)
        yield counter("direct_frames", "Frames written on the direct path (caught-up clients)", s.direct_frames)
        yield counter("merged", "Pending updates replaced by a newer state of the same bar", s.merged)
        yield counter("slow_disconnects", "Clients closed with 1013 for falling behind", s.slow_disconnects)
        yield counter(
            "snapshots_refused",
            "Subscribes refused for the client's snapshot budget (--snapshot-bytes, --snapshot-rate)",
            s.snapshots_refused,
        )
        yield gauge(
            "client_queue_items", "Items pending across all client queues", hub.pending() if hub is not None else 0
        )
        yield from self.feed_metrics()
        yield HistogramMetricFamily(
            "candlecast_delivery_latency_seconds",
            "Upstream receipt to socket write, sampled once per client write batch",
            buckets=s.latency.buckets(),
            sum_value=s.latency.sum,
        )


def make_registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(ProcessCollector(registry=None))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)

"""Counters and the Prometheus exposition of them.

The hot paths (hub, client writers) bump plain integers on :class:`Stats`, in the event loop;
nothing there takes a lock or allocates. :class:`Collector` turns them, plus the bridge, the
upstream and the normalizer, into Prometheus metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector as _Collector

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from .bridge import Bridge
    from .hub import Hub
    from .sources.base import Normalizer, Upstream

#: Delivery latency buckets, seconds (upper bounds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """A fixed-bucket histogram on plain ints (no lock: loop thread only)."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class Stats:
    """Plain counters bumped by the hub and the client sessions."""

    def __init__(self) -> None:
        self.candles_in = 0
        self.candles_out = 0
        self.frames_out = 0
        self.merged = 0
        self.slow_disconnects = 0
        self.clients_total = 0
        self.rejected_clients = 0
        self.client_errors = 0
        self.latency = Histogram()


class Collector(_Collector):
    """Reads the live objects at scrape time."""

    def __init__(
        self,
        stats: Stats,
        hub: Hub,
        bridge: Bridge[object],
        upstream: Upstream,
        normalizer: Normalizer | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.hub = hub
        self.bridge = bridge
        self.upstream = upstream
        self.normalizer = normalizer
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        up = self.upstream

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"candlecast_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"candlecast_{name}", doc, value=value)

        yield gauge("clients", "WebSocket clients connected now", self.hub.clients)
        yield counter("clients_connected", "WebSocket clients accepted since start", s.clients_total)
        yield counter("clients_rejected", "WebSocket clients refused (full, auth, origin, bad query)",
                      s.rejected_clients)  # fmt: skip
        yield counter("client_errors", "Error frames sent for bad client messages", s.client_errors)
        yield counter("candles_in", "Candles published by the hub", s.candles_in)
        yield counter("candles_out", "Candles delivered to clients (one per client)", s.candles_out)
        yield counter("frames_out", "WebSocket data frames sent to clients", s.frames_out)
        yield counter("merged", "Pending updates replaced by a newer state of the same bar", s.merged)
        yield counter("slow_disconnects", "Clients closed with 1013 for falling behind", s.slow_disconnects)
        yield gauge("client_queue_items", "Items pending across all client queues", self.hub.pending())
        yield gauge("bridge_depth", "Candles waiting in the producer->loop bridge", self.bridge.qsize())
        yield counter("bridge_wakeups", "Event-loop wake-ups scheduled by the producer thread",
                      self.bridge.wakeups)  # fmt: skip
        yield counter("bridge_full_waits", "Times the producer thread waited for room in the bridge",
                      self.bridge.full_waits)  # fmt: skip
        yield gauge("upstream_connected", "1 while the upstream is connected", int(up.connected))
        yield counter("upstream_connects", "Upstream connections made", up.connects)
        yield counter("upstream_reconnects", "Upstream reconnect attempts", up.reconnects)
        yield counter("upstream_messages", "Raw upstream messages received", up.messages)
        age = up.message_age(self.clock())
        yield gauge("upstream_last_message_age_seconds", "Seconds since the last upstream message (-1: none yet)",
                    -1.0 if age is None else age)  # fmt: skip
        malformed = CounterMetricFamily("candlecast_malformed", "Malformed upstream messages skipped, by reason",
                                        labels=["reason"])  # fmt: skip
        for reason, count in (self.normalizer.malformed if self.normalizer else {}).items():
            malformed.add_metric([reason], count)
        yield malformed
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

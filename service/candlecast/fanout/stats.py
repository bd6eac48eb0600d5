"""Plain counters of the serving side, bumped on the hot paths.

Event-loop thread only: the hub and the client sessions add to plain integers, with no lock and
no allocation. :mod:`candlecast.metrics` reads them when ``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
from typing import Final

__all__ = ["LATENCY_BUCKETS", "Histogram", "Stats"]

#: Delivery latency buckets, seconds (upper bounds).
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """A fixed-bucket histogram on plain ints (no lock: loop thread only)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(upper bound, count)`` pairs, Prometheus style, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


class Stats:
    """Counters bumped by the hub and the client sessions."""

    __slots__ = (
        "candles_in",
        "candles_out",
        "client_errors",
        "clients_total",
        "direct_frames",
        "frames_out",
        "latency",
        "merged",
        "rejected_clients",
        "slow_disconnects",
        "snapshots_refused",
    )

    def __init__(self) -> None:
        self.candles_in = 0
        self.candles_out = 0
        self.frames_out = 0
        self.direct_frames = 0
        self.merged = 0
        self.slow_disconnects = 0
        self.clients_total = 0
        self.rejected_clients = 0
        self.client_errors = 0
        self.snapshots_refused = 0
        self.latency = Histogram()

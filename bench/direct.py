"""Hub cost per delivery on the direct path, in one process (no sockets): CPU per delivery.

    .venv/bin/python -m bench.direct                  # 1000 caught-up clients, 2000 candles, 5 runs

A real :class:`~candlecast.fanout.hub.Hub` with ``--clients`` subscribers on the direct path (a
channel that is always ready and counts its writes), each candle published then flushed as one
pump step: what ``Hub.publish`` and ``Hub.flush`` cost per client, without the kernel's share.
CPU is ``time.process_time()``; the median of the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from candlecast.fanout.hub import Hub
from candlecast.fanout.stats import Stats
from candlecast.model.candle import Candle
from candlecast.wire.encoder import ENCODER


class Channel:
    """A direct path that is always ready and only counts its writes."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0

    def ready(self) -> bool:
        return True

    def write(self, data: bytes) -> None:
        self.writes += 1


async def measure(clients: int, candles: int, runs: int) -> list[float]:
    hub = Hub(stats=Stats(), encoder=ENCODER, history=100, max_clients=clients)
    hub.publish(Candle("A", 0, 0, 1.0, 1.0, 1.0, 1.0), 0.0)
    subscriptions = [hub.subscribe(None, history=0) for _ in range(clients)]
    for subscription in subscriptions:
        sub = await subscription.__aenter__()
        while sub.pending:  # the snapshot
            await sub.next_batch()
        sub.go_direct(Channel(), lambda: None)
    ns: list[float] = []
    for _ in range(runs):
        started = time.process_time()
        for k in range(candles):
            hub.publish(Candle("A", 1 + k, 60_000 * (1 + k // 5), 1.0, 2.0, 0.5, 1.5, 1.0), 0.0)
            hub.flush()
        ns.append((time.process_time() - started) / (candles * clients) * 1e9)
    for subscription in subscriptions:
        await subscription.__aexit__(None, None, None)
    return ns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--candles", type=int, default=2000)
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    ns = asyncio.run(measure(a.clients, a.candles, a.runs))
    print(f"ns of hub CPU per delivery: {', '.join(f'{x:.0f}' for x in ns)}; median {statistics.median(ns):.0f}")


if __name__ == "__main__":
    main()

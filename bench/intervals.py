"""Hub cost of server-side intervals, in one process (no sockets): CPU per incoming candle.

    .venv/bin/python -m bench.intervals                 # 200 clients, 20,000 candles, 3 runs

Two runs of the same feed (1 m base bars of 8 symbols, several updates per bar) through a real
:class:`~candlecast.fanout.hub.Hub` with real subscribers drained by their ``next_batch()``:

* ``single``: the base interval only; every client follows all 8 symbols;
* ``six``: 1m,5m,15m,1h,4h,1d; the clients are spread over the six intervals (each follows all
  8 symbols in its interval), so the deliveries per candle are the same and the difference is
  aggregation, encoding and routing per interval.

CPU is ``time.process_time()`` over publishing and draining; the median of three runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from contextlib import AsyncExitStack

from candlecast.fanout.hub import Hub
from candlecast.fanout.stats import Stats
from candlecast.fanout.subscriber import Subscriber
from candlecast.model.candle import Candle
from candlecast.model.intervals import IntervalSet, parse_interval
from candlecast.wire.encoder import ENCODER

SYMBOLS = [f"SYM{i}" for i in range(8)]
T0 = 1_699_999_200_000


def feed(n: int) -> list[Candle]:
    out: list[Candle] = []
    for k in range(n):
        bar = k // (len(SYMBOLS) * 5)  # five updates of each 1 m bar per symbol
        s = SYMBOLS[k % len(SYMBOLS)]
        price = 100.0 + (k % 97) / 10
        out.append(
            Candle(s, T0 + bar * 60_000 + k % 60_000, T0 + bar * 60_000, price, price + 1, price - 1, price, 1.0)
        )
    return out


async def run(intervals: list[str], clients: int, candles: list[Candle]) -> float:
    iset = IntervalSet.build(parse_interval("1m"), tuple(parse_interval(n) for n in intervals))
    hub = Hub(history=500, client_queue=4096, max_clients=100_000, stats=Stats(), encoder=ENCODER, intervals=iset)
    names = iset.names
    async with AsyncExitStack() as stack:
        subs: list[Subscriber] = []
        for c in range(clients):
            name = names[c % len(names)]
            streams = frozenset(s if name == names[0] else f"{s}@{name}" for s in SYMBOLS)
            subs.append(await stack.enter_async_context(hub.subscribe(streams)))
        delivered = 0
        start = time.process_time()
        for i in range(0, len(candles), 64):  # a pump step, then every client drains
            for candle in candles[i : i + 64]:
                hub.publish(candle, 0.0)
            for sub in subs:
                if sub.pending:
                    batch = await sub.next_batch()
                    delivered += len(batch or ())
        cpu = time.process_time() - start
    return cpu / len(candles) * 1e6


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--candles", type=int, default=20_000)
    p.add_argument("--runs", type=int, default=3)
    ns = p.parse_args()
    candles = feed(ns.candles)
    single = [await run(["1m"], ns.clients, candles) for _ in range(ns.runs)]
    six = [await run(["1m", "5m", "15m", "1h", "4h", "1d"], ns.clients, candles) for _ in range(ns.runs)]
    s, x = statistics.median(single), statistics.median(six)
    print(f"clients={ns.clients} candles={ns.candles} runs={ns.runs} (median)")
    print("| hub | µs CPU per incoming candle | ratio |")
    print("|---|---|---|")
    print(f"| single interval (1m) | {s:.1f} | 1.00× |")
    print(f"| six intervals (1m…1d), clients on each | {x:.1f} | {x / s:.2f}× |")


if __name__ == "__main__":
    asyncio.run(main())

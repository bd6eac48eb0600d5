"""The local feed: a source in a real producer thread, bridged into the event loop. Live
batches in order, a history batch delivered between live ones, a reconnect's gap signalled
through the bridge to the filler, readiness, and the end at stop. The source is in memory and
emits on command; every wait is on what the loop receives, under a deadline."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from candlecast.feed.base import Batch, BatchKind
from candlecast.feed.source import SourceFeed
from candlecast.history.gaps import Gap, GapWatch
from candlecast.model.candle import Candle
from candlecast.upstream.source import Emit, Upstream
from tests.conftest import DEADLINE

CONNECT = "connect"


def bar(symbol: str, ot: int, i: str | None = None) -> Candle:
    return Candle(symbol, ot, ot, 1.0, 2.0, 0.5, 1.5, None, i)


class Scripted:
    """A source that, in the producer thread, does what the test asks: connect (a new
    connection, as a reconnect makes) or emit candles. ``wake`` ends it."""

    def __init__(self) -> None:
        self.upstream = Upstream()
        self.malformed: dict[str, int] = {"json": 2}
        self._steps: queue.SimpleQueue[str | list[Candle] | None] = queue.SimpleQueue()

    def connect(self) -> None:
        self._steps.put(CONNECT)

    def send(self, *candles: Candle) -> None:
        self._steps.put(list(candles))

    def run(self, emit: Emit, stop: threading.Event) -> None:
        up = self.upstream
        while not stop.is_set() and (step := self._steps.get()) is not None:
            if isinstance(step, str):  # CONNECT
                up.connects += 1
                up.connected = True
                continue
            for candle in step:
                up.messages += 1
                up.last_message = time.monotonic()
                emit(candle)

    def wake(self) -> None:
        self._steps.put(None)


class Filler:
    """What the feed asks of a history filler: the gap watch it feeds from the producer thread,
    ``found`` for each gap (loop), ``run``, ``backfilling`` and ``metrics``."""

    def __init__(self) -> None:
        self.watch = GapWatch()
        self.deliver: Any = None
        self.backfilling = False
        self.gaps: list[Gap] = []
        self.found_one = anyio.Event()

    def found(self, gap: Gap) -> None:
        self.gaps.append(gap)
        self.found_one.set()

    async def run(self) -> None:
        await anyio.sleep_forever()

    def metrics(self) -> Iterator[Any]:
        return iter(())


class Reader:
    """The loop side: a task reading the feed's batches into a bounded stream, as the pump would."""

    def __init__(self, feed: SourceFeed) -> None:
        self.feed = feed
        self.send, self.receive = anyio.create_memory_object_stream[Batch](16)

    async def run(self) -> None:
        async with self.send:  # every test stops the feed, which ends the batches
            async for batch in self.feed.batches(16):
                self.send.send_nowait(batch)

    async def next(self) -> Batch:
        with anyio.fail_after(DEADLINE):
            return await self.receive.receive()

    async def live(self, n: int) -> list[Candle]:
        """The next ``n`` live candles, whichever batches they came in."""
        got: list[Candle] = []
        while len(got) < n:
            batch = await self.next()
            assert batch.kind is BatchKind.LIVE
            got += [c for c, _ in batch.items]
        return got


@pytest.fixture
def source() -> Scripted:
    return Scripted()


async def test_live_candles_arrive_in_order_and_the_batches_end_at_stop(source: Scripted) -> None:
    feed = SourceFeed(source, bridge_size=64, stale_after=10.0)
    reader = Reader(feed)
    with reader.receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader.run)
            feed.start()
            source.send(bar("A", 1), bar("B", 1))
            source.send(bar("A", 2))
            assert await reader.live(3) == [bar("A", 1), bar("B", 1), bar("A", 2)]
            with anyio.fail_after(DEADLINE):
                await feed.stop()
        assert [b async for b in reader.receive] == []  # the reader returned: the stream ended
    await feed.stop()  # idempotent


async def test_a_history_batch_is_delivered_between_live_ones(source: Scripted) -> None:
    """deliver() interrupts the waiting read: the history batch comes next, then live again;
    ``merged`` travels with it for the pump to call."""
    feed = SourceFeed(source, bridge_size=64, stale_after=10.0)
    reader = Reader(feed)

    def merged() -> None: ...

    with reader.receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader.run)
            feed.start()
            source.send(bar("A", 5))
            assert await reader.live(1) == [bar("A", 5)]
            await anyio.wait_all_tasks_blocked()  # the reader waits on the bridge
            feed.deliver([bar("A", 3), bar("A", 4)], merged)
            history = await reader.next()
            assert history.kind is BatchKind.HISTORY and history.merged is merged
            assert [c for c, _ in history.items] == [bar("A", 3), bar("A", 4)]
            source.send(bar("A", 6))
            assert await reader.live(1) == [bar("A", 6)]
            with anyio.fail_after(DEADLINE):
                await feed.stop()


async def test_a_reconnects_gap_reaches_the_filler_through_the_bridge(source: Scripted) -> None:
    """The producer thread's gap watch sees the first bar of a new connection; the loop hands
    the gap to the filler while the bar goes on live. Interval bars are not watched."""
    filler = Filler()
    feed = SourceFeed(source, bridge_size=64, stale_after=10.0, filler=filler)  # type: ignore[arg-type]
    assert filler.deliver == feed.deliver  # the filler's bars come back through the feed
    reader = Reader(feed)
    with reader.receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader.run)
            tg.start_soon(feed.run)  # the filler's work, until stop
            feed.start()
            source.connect()
            source.send(bar("A", 60), bar("A", 120), bar("A", 0, i="5m"))
            assert len(await reader.live(3)) == 3
            assert filler.gaps == []
            source.connect()
            source.send(bar("A", 300))
            assert await reader.live(1) == [bar("A", 300)]
            with anyio.fail_after(DEADLINE):
                await filler.found_one.wait()
            assert filler.gaps == [Gap("A", 120, 300)]
            with anyio.fail_after(DEADLINE):
                await feed.stop()  # ends run() too


async def test_readiness_follows_the_upstream_once_data_flows(source: Scripted) -> None:
    feed = SourceFeed(source, bridge_size=64, stale_after=10.0)
    reader = Reader(feed)
    assert feed.readiness(time.monotonic()).reason == "upstream not connected"
    with reader.receive:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader.run)
            feed.start()
            source.connect()
            source.send(bar("A", 1))
            await reader.live(1)
            ready = feed.readiness(time.monotonic())
            assert ready.reason is None and ready.age is not None and ready.age >= 0
            with anyio.fail_after(DEADLINE):
                await feed.stop()


@pytest.mark.parametrize(
    ("connected", "finished", "last_message", "backfilling", "reason"),
    [
        (False, False, None, False, "upstream not connected"),
        (False, True, 90.0, False, "upstream finished"),
        (True, False, None, False, "no upstream data yet"),
        (True, False, 85.0, False, "no upstream data for 15.0s"),
        (True, False, 95.0, False, None),
        (True, False, 95.0, True, "backfilling"),
    ],
)
async def test_readiness_says_why_the_feed_is_not_ready(
    source: Scripted,
    connected: bool,
    finished: bool,
    last_message: float | None,
    backfilling: bool,
    reason: str | None,
) -> None:
    """At ``now`` = 100 with stale_after 10: the backfill first, then the connection, then the data's age."""
    filler = Filler()
    filler.backfilling = backfilling
    feed = SourceFeed(source, bridge_size=8, stale_after=10.0, filler=filler)  # type: ignore[arg-type]
    up = source.upstream
    up.connected, up.finished, up.last_message = connected, finished, last_message
    assert feed.readiness(100.0).reason == reason
    await feed.stop()  # never started: nothing to wait for


async def test_metrics_name_the_bridge_the_upstream_and_the_malformed_counts(source: Scripted) -> None:
    feed = SourceFeed(source, bridge_size=8, stale_after=10.0)
    families = {f.name: f for f in feed.metrics()}
    assert {
        "candlecast_bridge_depth",
        "candlecast_bridge_wakeups",
        "candlecast_upstream_connected",
        "candlecast_upstream_last_message_age_seconds",
        "candlecast_malformed",
    } <= set(families)
    assert [(s.labels, s.value) for s in families["candlecast_malformed"].samples if s.name.endswith("_total")] == [
        ({"reason": "json"}, 2.0)
    ]
    assert families["candlecast_upstream_last_message_age_seconds"].samples[0].value == -1.0
    await feed.stop()
